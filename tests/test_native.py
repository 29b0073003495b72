"""The native library (native/, built by `make native`) against the Python runtime, through ctypes.

On demo bundles (FP32, INT8 `cpu` flavour, DySample native and lowered) and an ONNX export with in-graph NMS
(`--nms onnx`), the C ABI returns the Python Detector's detections (same count, boxes within 0.05 px, scores
within 1e-4) on 24 images of varied sizes, row strides and pixel formats. Also: the shared letterbox arithmetic
(letterbox_math.h, compiled here into a tiny shim) is bit-exact against the Python letterbox (cv2.resize) on 150
sizes and all pixel formats (the core's ctest checks the fast CPU path against that arithmetic), and defectrt_bench
writes a report that `defectrt bench merge` accepts.
"""
import ctypes
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NATIVE = os.environ.get("DEFECTRT_NATIVE_DIR") or os.path.join(ROOT, "build", "native")
LIB = os.path.join(NATIVE, "libdefectrt.so")
IMGSZ = (192, 320)

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the native build is tested on Linux"),
    pytest.mark.skipif(not os.path.isfile(LIB), reason="{}: no libdefectrt.so (run `make native`)".format(NATIVE)),
]


class Det(ctypes.Structure):
    _fields_ = [("x1", ctypes.c_float), ("y1", ctypes.c_float), ("x2", ctypes.c_float), ("y2", ctypes.c_float),
                ("score", ctypes.c_float), ("class_id", ctypes.c_int32)]


class Opts(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("backend", ctypes.c_char_p), ("conf", ctypes.c_float),
                ("iou", ctypes.c_float), ("max_det", ctypes.c_int32), ("threads", ctypes.c_int32)]


FORMATS = {"bgr": (0, 3), "rgb": (1, 3), "gray": (2, 1), "bgra": (3, 4), "rgba": (4, 4)}


class Native(object):
    def __init__(self, model):
        self.lib = ctypes.CDLL(LIB)
        self.lib.drt_last_error.restype = ctypes.c_char_p
        opts = Opts()
        self.lib.drt_options_init(ctypes.byref(opts))
        opts.threads = 1
        self.handle = ctypes.c_void_p()
        status = self.lib.drt_detector_create(model.encode(), ctypes.byref(opts), ctypes.byref(self.handle))
        assert status == 0, self.lib.drt_last_error()

    def detect(self, pixels, fmt, width, height, stride):
        out = (Det * 1024)()
        count = ctypes.c_int()
        status = self.lib.drt_detect(self.handle, pixels.ctypes.data_as(ctypes.c_void_p), width, height, stride,
                                     FORMATS[fmt][0], out, 1024, ctypes.byref(count))
        assert status == 0, self.lib.drt_last_error()
        rows = [(d.x1, d.y1, d.x2, d.y2, d.score, d.class_id) for d in out[:count.value]]
        return np.array(rows, np.float64).reshape(-1, 6)

    def close(self):
        self.lib.drt_detector_destroy(self.handle)


def _images():
    """24 (bgr reference image, caller buffer, format, width, height, stride) of varied sizes and layouts."""
    import cv2

    from defectrt.data.synth import generate

    out = []
    sizes = [(384, 672), (192, 320), (200, 300), (480, 640), (97, 181), (720, 1280), (333, 517), (640, 480),
             (96, 160), (250, 250), (123, 677), (384, 336)]
    fmts = ["bgr", "rgb", "bgra", "rgba", "gray", "bgr"]
    for i in range(24):
        img, _ = generate("screw", 3, seed=1000 + i)
        h, w = sizes[i % len(sizes)]
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        fmt = fmts[i % len(fmts)]
        pad = (i % 3) * 7
        cn = FORMATS[fmt][1]
        conv = {"bgr": None, "rgb": cv2.COLOR_BGR2RGB, "bgra": cv2.COLOR_BGR2BGRA, "rgba": cv2.COLOR_BGR2RGBA,
                "gray": cv2.COLOR_BGR2GRAY}[fmt]
        data = img if conv is None else cv2.cvtColor(img, conv)
        data = data.reshape(h, w, cn)
        buf = np.zeros((h, w * cn + pad), np.uint8)
        buf[:, :w * cn] = data.reshape(h, w * cn)
        ref = data[:, :, 0] if fmt == "gray" else img
        out.append((ref, buf, fmt, w, h, w * cn + pad if pad else 0))
    return out


@pytest.fixture(scope="session")
def native_models(tmp_path_factory):
    """{name: path}: the demo model as FP32 bundles (DySample native and lowered), an INT8 cpu bundle and an ONNX
    export with in-graph NMS, all at 192x320 to stay quick."""
    pytest.importorskip("torch")
    import cv2

    from defectrt.data.synth import generate
    from defectrt.export.bundle import build_bundle
    from defectrt.export.onnx import export_onnx

    base = tmp_path_factory.mktemp("native_models")
    calib = base / "calib"
    calib.mkdir()
    for i in range(8):
        cv2.imwrite(str(calib / "c{}.png".format(i)), generate("screw", 3, seed=7000 + i)[0])
    models = {}
    models["fp32"] = str(base / "fp32.bundle")
    build_bundle("demo:screw", models["fp32"], precision="fp32", imgsz=IMGSZ, grid_sample="native", engine="never")
    models["lowered"] = str(base / "lowered.bundle")
    build_bundle("demo:screw", models["lowered"], precision="fp32", imgsz=IMGSZ, grid_sample="lowered",
                 engine="never")
    models["int8_cpu"] = str(base / "int8.bundle")
    build_bundle("demo:screw", models["int8_cpu"], precision="int8", int8_flavour="cpu", calib=str(calib),
                 calib_count=8, imgsz=IMGSZ, engine="never")
    models["nms_onnx"] = str(base / "nms.onnx")
    export_onnx("demo:screw", models["nms_onnx"], imgsz=IMGSZ, nms="onnx")
    return models


@pytest.mark.parametrize("kind", ["fp32", "lowered", "int8_cpu"])
def test_the_native_reader_loads_schema_valid_manifests(native_models, kind):
    """docs/manifest.schema.json is the contract of both readers: a real bundle's manifest passes it, and the
    native library (native/src/bundle.cpp) opens that bundle."""
    from manifest_schema import assert_schema_valid

    assert_schema_valid(native_models[kind])
    Native(native_models[kind]).close()


@pytest.mark.parametrize("kind", ["fp32", "lowered", "int8_cpu", "nms_onnx"])
def test_native_detections_equal_the_python_detector(native_models, kind):
    from defectrt.runtime.detector import Detector

    model = native_models[kind]
    py = Detector(model, backend="onnxruntime", threads=1)
    nat = Native(model)
    total = 0
    try:
        for ref, buf, fmt, w, h, stride in _images():
            got = nat.detect(buf, fmt, w, h, stride)
            d = py(ref)
            order = np.argsort(-d.scores, kind="stable")
            where = "{} {} {}x{} stride {}".format(kind, fmt, w, h, stride)
            assert len(got) == len(d), where
            np.testing.assert_allclose(got[:, :4], d.boxes[order], atol=0.05, err_msg=where)
            np.testing.assert_allclose(got[:, 4], d.scores[order], atol=1e-4, err_msg=where)
            np.testing.assert_array_equal(got[:, 5], d.class_ids[order], err_msg=where)
            total += len(got)
    finally:
        nat.close()
    assert total >= 10, "the model found too few defects for a meaningful comparison ({})".format(total)


def test_letterbox_arithmetic_matches_cv2_bit_exactly(tmp_path):
    """native/src/letterbox_math.h (shared by the CPU path and the CUDA kernel) vs the Python letterbox on 150
    random sizes (down, up, exact 2x, equal) and all five pixel formats."""
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("no C++ compiler")
    src = tmp_path / "lb.cpp"
    src.write_text('#include "letterbox_math.h"\n'
                   'extern "C" void lb(const uint8_t* s, int w, int h, int stride, int fmt, int dw, int dh,'
                   ' uint8_t* out) {\n  auto g = drt::lb::geometry(w, h, dw, dh);\n'
                   '  for (int y = 0; y < dh; y++) for (int x = 0; x < dw; x++) for (int c = 0; c < 3; c++)\n'
                   '    out[(y * dw + x) * 3 + (2 - c)] = drt::lb::sample(s, stride, (drt::lb::PixelFormat)fmt, g, x,'
                   ' y, c);\n}\n')
    so = str(tmp_path / "liblb.so")
    proc = subprocess.run([gxx, "-std=c++17", "-O1", "-shared", "-fPIC", "-I", os.path.join(ROOT, "native", "src"),
                           str(src), "-o", so], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True)
    assert proc.returncode == 0, proc.stdout
    import cv2

    from defectrt.runtime.preprocess import letterbox

    lib = ctypes.CDLL(so)
    rng = np.random.default_rng(0)
    cases = [(640, 640, 1280, 1280), (640, 640, 1280, 960), (64, 64, 64, 64), (320, 320, 333, 517)]
    cases += [(int(rng.integers(16, 400)), int(rng.integers(16, 400)), int(rng.integers(1, 900)),
               int(rng.integers(1, 900))) for _ in range(146)]
    codes = {1: cv2.COLOR_BGR2RGB, 2: cv2.COLOR_BGR2BGRA, 3: cv2.COLOR_BGR2RGBA, 4: cv2.COLOR_BGR2GRAY}
    for i, (dh, dw, h, w) in enumerate(cases):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        fmt = i % 5
        data = img if fmt == 0 else cv2.cvtColor(img, codes[fmt])
        ref_in = data if fmt == 4 else img
        ref, _ = letterbox(ref_in, (dh, dw))
        data = np.ascontiguousarray(data)
        out = np.zeros((dh, dw, 3), np.uint8)
        lib.lb(data.ctypes.data_as(ctypes.c_void_p), w, h, data.strides[0], [0, 1, 2, 3, 4][fmt], dw, dh,
               out.ctypes.data_as(ctypes.c_void_p))
        assert np.array_equal(out, ref), (dh, dw, h, w, fmt, int((out != ref).sum()))


def test_defectrt_bench_report_is_accepted_by_bench_merge(native_models, tmp_path):
    exe = os.path.join(NATIVE, "defectrt_bench")
    if not os.path.isfile(exe):
        pytest.skip("defectrt_bench was not built")
    report = str(tmp_path / "native.json")
    proc = subprocess.run([exe, native_models["fp32"], "--synthetic", "640x360", "--warmup", "2", "--iters", "12",
                           "--threads", "1", "--label", "native", "--bare-run", "-o", report], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=300)
    assert proc.returncode == 0, proc.stdout
    with open(report) as f:
        data = json.load(f)
    r = data["results"][0]
    assert r["status"] == "ok" and r["imgsz"] == list(IMGSZ) and r["stages"]["end_to_end"]["count"] == 12
    s = r["stages"]
    assert r["bare_run"]["count"] == 12 and r["end_to_end_over_bare_run"] > 0.5
    assert s["preprocess"]["median"] + s["compute"]["median"] + s["postprocess"]["median"] <= \
        s["end_to_end"]["max"] * 1.5
    from defectrt.bench.report import load, merge

    table = merge([load(report), load(report)])
    assert table["machines"] == ["native", "native #2"]
    assert table["rows"][0]["cells"]["native"]["median_ms"] == r["stages"]["end_to_end"]["median"]
    merged = str(tmp_path / "merged.md")
    proc = subprocess.run([sys.executable, "-m", "defectrt", "bench", "merge", report, report, "--md", merged],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert proc.returncode == 0, proc.stdout
    with open(merged) as f:
        assert "native #2" in f.read()
    # a bad model: status failed with the reason, exit 1, the report still written
    bad = str(tmp_path / "bad.json")
    proc = subprocess.run([exe, str(tmp_path / "missing.onnx"), "-o", bad], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True)
    assert proc.returncode == 1 and "no such file" in proc.stdout
    with open(bad) as f:
        assert json.load(f)["results"][0]["status"] == "failed"
