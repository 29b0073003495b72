"""The C ABI (native/: libdefectrt, no Python), driven from C programs compiled with gcc.

The library is the one `make native` builds (build/native, or DEFECTRT_NATIVE_DIR); without it these tests skip
with the reason. The AddressSanitizer + UBSan build (build/native-asan, DEFECTRT_NATIVE_ASAN_DIR) runs the error
paths and the thread test again, with the C programs compiled with the same sanitizers.

The C programs (tests/capi/*.c) print what the library returned; the assertions are made here, against
the Python API on the same model and pixels: the demo bundle (demo:screw exported to an FP32 bundle) on
a synthetic screw image; and, for the pixel formats and error paths, YOLO11n (nc=4) exported at 128x128
with its BatchNorm statistics and class-logit scale calibrated on the test image so that it finds a few
dozen boxes with distinct scores and all four classes, else (no torch) the tiny rect_finder ONNX of test_runtime_models, whose two boxes are known.
"""
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from box_helpers import labels_found
from defectrt import __version__

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAPI = os.path.join(ROOT, "native", "include")
TESTS_C = os.path.join(ROOT, "tests", "capi")
NAMES = ["scratch", "dent", "coating", "unprocessed"]
IMGSZ = 128

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the C test programs use POSIX APIs")


def _run(args, env=None, timeout=300):
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          env=full_env, timeout=timeout)
    return proc.returncode, proc.stdout


def _gcc():
    gcc = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler")
    return gcc


# -- fixtures: library, programs, model, image -----------------------------------------------------


def native_dir(env_var, default):
    folder = os.environ.get(env_var) or os.path.join(ROOT, "build", default)
    if not os.path.isfile(os.path.join(folder, "libdefectrt.so")):
        pytest.skip("{}: no libdefectrt.so (build it with `make native`, or set {})".format(folder, env_var))
    return folder


@pytest.fixture(scope="session")
def capi_dir():
    """The native library and defectrt.h (CMake copies the header into the build folder)."""
    _gcc()
    return native_dir("DEFECTRT_NATIVE_DIR", "native")


@pytest.fixture(scope="session")
def asan_dir():
    _gcc()
    return native_dir("DEFECTRT_NATIVE_ASAN_DIR", "native-asan")


SANITIZE = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
# ONNX Runtime is not instrumented: its allocations at exit are not ours (suppressed by library name).
ASAN_ENV = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:halt_on_error=1",
            "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}


def _compile_test_capi(lib_dir, exe, extra=()):
    rc, text = _run([_gcc(), "-std=c99", "-D_POSIX_C_SOURCE=200809L", "-Wall", "-Wextra", "-Werror", "-O1"] +
                    list(extra) + ["-I", CAPI, os.path.join(TESTS_C, "test_capi.c"), "-L", lib_dir, "-ldefectrt",
                                   "-Wl,-rpath," + lib_dir, "-lpthread", "-o", exe])
    assert rc == 0, text
    return exe


@pytest.fixture(scope="session")
def test_capi_asan(asan_dir, tmp_path_factory):
    exe = str(tmp_path_factory.mktemp("capi_asan") / "test_capi")
    _compile_test_capi(asan_dir, exe, SANITIZE)
    supp = str(tmp_path_factory.mktemp("lsan") / "lsan.supp")
    with open(supp, "w") as f:
        f.write("leak:libonnxruntime\n")
    env = dict(ASAN_ENV)
    env["LSAN_OPTIONS"] = "suppressions=" + supp
    return exe, env


@pytest.fixture(scope="session")
def test_capi(capi_dir, tmp_path_factory):
    return _compile_test_capi(capi_dir, str(tmp_path_factory.mktemp("capi_exe") / "test_capi"))


def _test_image():
    """BGR (120, 200, 3): noise and a white rectangle (not the model's 128x128: letterboxing is exercised)."""
    import cv2

    rng = np.random.default_rng(0)
    img = (rng.random((120, 200, 3)) * 255).astype(np.uint8)
    cv2.rectangle(img, (30, 30), (90, 70), (255, 255, 255), -1)
    return img


def _calibrated_yolo(path, image):
    """YOLO11n whose BatchNorm statistics come from `image` and whose class logits on it have mean -3 and
    std 1.5 per level and class: a random-weight network that still yields varied, meaningful detections."""
    import torch

    from defectrt import models
    from defectrt.export.onnx import export_onnx
    from defectrt.runtime.preprocess import preprocess

    torch.manual_seed(0)
    model = models.create("yolo11n", nc=len(NAMES), names=NAMES)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
            m.reset_running_stats()
    x = torch.from_numpy(preprocess(image, (IMGSZ, IMGSZ))[0])
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()
    head = model.model[-1]
    outs = {}
    hooks = [seq[-1].register_forward_hook(lambda mod, i, o, k=k: outs.__setitem__(k, o))
             for k, seq in enumerate(head.cv3)]
    with torch.no_grad():
        model(x)
        for h in hooks:
            h.remove()
        for k, seq in enumerate(head.cv3):  # per class channel, so that every class gets boxes
            conv = seq[-1]
            logits = (outs[k] - conv.bias.view(1, -1, 1, 1)).transpose(0, 1).reshape(conv.out_channels, -1)
            scale = 1.5 / logits.std(1)
            conv.weight.mul_(scale.view(-1, 1, 1, 1))
            conv.bias.copy_(-3.0 - logits.mean(1) * scale)
    export_onnx(model, path, imgsz=IMGSZ, force=True)
    return path


@pytest.fixture(scope="session")
def image():
    return _test_image()


@pytest.fixture(scope="session")
def small_model(tmp_path_factory, image):
    """A small ONNX model (128x128) that finds several boxes on the test image."""
    path = str(tmp_path_factory.mktemp("capi_model") / "yolo11n.onnx")
    try:
        import torch  # noqa: F401

        from defectrt.export.onnx import export_onnx  # noqa: F401
    except ImportError:
        from test_runtime_models import rect_finder, save

        return str(save(rect_finder(h=IMGSZ, w=IMGSZ), path))
    return _calibrated_yolo(path, image)


@pytest.fixture(scope="session")
def image_files(tmp_path_factory, image):
    import cv2

    folder = tmp_path_factory.mktemp("capi_img")
    ppm, pgm = str(folder / "img.ppm"), str(folder / "img.pgm")
    with open(ppm, "wb") as f:  # P6 stores RGB
        f.write(b"P6\n# written by test_capi\n200 120\n255\n" + np.ascontiguousarray(image[:, :, ::-1]).tobytes())
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    with open(pgm, "wb") as f:
        f.write(b"P5\n200 120\n255\n" + gray.tobytes())
    return {"ppm": ppm, "pgm": pgm, "gray": gray}


def _python_detections(model, img):
    from defectrt.runtime.detector import Detector

    det = Detector(model, backend="onnxruntime", threads=1)
    d = det(img)
    order = np.argsort(-d.scores, kind="stable")  # the C ABI documents best-first
    return d.boxes[order], d.scores[order], d.class_ids[order], det.names


def _parse_dets(text):
    rows = [line.split()[1:] for line in text.splitlines() if line.startswith("DET ")]
    count = int(re.search(r"^COUNT (\d+)$", text, re.M).group(1))
    arr = np.array([[float(v) for v in r] for r in rows], dtype=np.float64).reshape(-1, 6)
    assert len(arr) == count
    return arr[:, :4], arr[:, 4], arr[:, 5].astype(np.int64)


def _results(text):
    """RESULT lines -> {check: (status, count, message)}."""
    out = {}
    for line in text.splitlines():
        if line.startswith("RESULT "):
            head, _, msg = line.partition(" | ")
            _, name, status, count = head.split()
            out[name] = (status, int(count), msg)
    return out


# -- header <-> bridge <-> C# consistency (no compiler needed) ---------------------------------------


def _header():
    with open(os.path.join(CAPI, "defectrt.h")) as f:
        return f.read()


def _enum(text, name):
    body = re.search(r"typedef enum %s \{(.*?)\} %s;" % (name, name), text, re.S).group(1)
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    return {k: int(v) for k, v in re.findall(r"(DRT_\w+) = (\d+)", body)}


def test_header_enums_match_the_csharp_example():
    status = _enum(_header(), "drt_status")
    assert status["DRT_OK"] == 0 and len(set(status.values())) == len(status)
    fmts = _enum(_header(), "drt_pixel_format")
    assert {k[len("DRT_PIXEL_"):]: v for k, v in fmts.items()} == {"BGR": 0, "RGB": 1, "GRAY": 2, "BGRA": 3, "RGBA": 4}
    with open(os.path.join(ROOT, "examples", "csharp", "Detect.cs")) as f:
        cs = f.read()
    cs_status = dict(re.findall(r"^\s+(\w+) = (\d+),", cs.split("enum DrtStatus")[1].split("}")[0], re.M))
    camel = {k: "".join(p.capitalize() for p in k[len("DRT_E_"):].lower().split("_")) for k in status if k != "DRT_OK"}
    cs_status.pop("Ok")
    assert {camel[k]: str(v) for k, v in status.items() if k != "DRT_OK"} == cs_status
    exported = set(re.findall(r"DRT_API [^;]*?\bDRT_CALL (drt_\w+)\(", _header()))
    assert len(exported) == 12
    declared = set(re.findall(r"public static extern \w+ (drt_\w+)\(", cs))
    assert declared == exported
    # field order of the two structs
    assert re.findall(r"public (?:uint|IntPtr|float|int) (\w+);", cs.split("struct DrtOptions")[1].split("}")[0]) == \
        ["StructSize", "Backend", "Conf", "Iou", "MaxDet", "Threads"]


def test_the_header_compiles_as_c89_and_cplusplus(tmp_path):
    gcc = _gcc()
    src = tmp_path / "h.c"
    src.write_text('#include "defectrt.h"\nint main(void) { drt_options o; drt_detection d; (void)d;\n'
                   '  return drt_options_init(&o) == DRT_OK ? 0 : (int)sizeof(drt_detection); }\n')
    rc, text = _run([gcc, "-std=c89", "-pedantic", "-Wall", "-Werror", "-fsyntax-only", "-I", CAPI, str(src)])
    assert rc == 0, text
    gxx = shutil.which("g++")
    if gxx:
        cpp = tmp_path / "h.cpp"
        cpp.write_text(src.read_text())
        rc, text = _run([gxx, "-std=c++98", "-pedantic", "-Wall", "-Werror", "-fsyntax-only", "-I", CAPI, str(cpp)])
        assert rc == 0, text


# -- the library ------------------------------------------------------------------------------------


def test_the_library_exports_only_the_api_and_links_no_python(capi_dir):
    lib = os.path.join(capi_dir, "libdefectrt.so")
    readelf, nm = shutil.which("readelf"), shutil.which("nm")
    if not (readelf and nm):
        pytest.skip("binutils not available")
    rc, text = _run([readelf, "-d", lib])
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", text)
    assert rc == 0 and "libonnxruntime.so.1" in needed, text
    assert not [n for n in needed if "python" in n.lower()], needed
    rc, text = _run([nm, "-D", "--defined-only", lib])
    exported = sorted(line.split()[-1] for line in text.splitlines() if " T " in line)
    assert exported == sorted(set(re.findall(r"DRT_API [^;]*?\bDRT_CALL (drt_\w+)\(", _header())))
    assert os.path.isfile(os.path.join(capi_dir, "defectrt.h"))
    ldd = shutil.which("ldd")
    if ldd:
        rc, text = _run([ldd, lib])
        assert "python" not in text.lower() and "not found" not in text, text


CASES = [("bgr", 0), ("bgr", 13), ("rgb", 0), ("bgra", 5), ("rgba", 0), ("gray", 3)]


@pytest.mark.parametrize("fmt,pad", CASES)
def test_c_detections_equal_the_python_api(test_capi, small_model, image_files, image, fmt, pad):
    src = image_files["pgm"] if fmt == "gray" else image_files["ppm"]
    rc, text = _run([test_capi, "detect", small_model, src, fmt, str(pad)])
    assert rc == 0, text
    boxes, scores, classes = _parse_dets(text)
    ref_img = image_files["gray"] if fmt == "gray" else image
    rboxes, rscores, rclasses, names = _python_detections(small_model, ref_img)
    assert len(boxes) == len(rboxes)
    if small_model.endswith("yolo11n.onnx"):  # the calibrated model: a meaningful comparison
        assert len(boxes) >= 10 and len(set(classes.tolist())) >= 3, text
    np.testing.assert_allclose(boxes, rboxes, atol=1e-3)
    np.testing.assert_allclose(scores, rscores, atol=1e-5)
    np.testing.assert_array_equal(classes, rclasses)
    got_names = dict((int(i), n) for i, n in re.findall(r"^NAME (\d+) (.+)$", text, re.M))
    assert got_names == {int(k): v for k, v in names.items()}


def test_c_detections_on_the_demo_bundle_equal_the_python_api(test_capi, demo_bundle, screw_image, tmp_path):
    """The trained demo model (FP32 bundle, ONNX Runtime) on a synthetic screw it never saw: the C path and
    the Python API agree box for box, and the defects it finds match the image's labels."""
    img, labels = screw_image
    h, w = img.shape[:2]
    ppm = str(tmp_path / "screw.ppm")
    with open(ppm, "wb") as f:
        f.write("P6\n{} {}\n255\n".format(w, h).encode() + np.ascontiguousarray(img[:, :, ::-1]).tobytes())
    rc, text = _run([test_capi, "detect", demo_bundle, ppm, "bgr", "0"])
    assert rc == 0, text
    boxes, scores, classes = _parse_dets(text)
    rboxes, rscores, rclasses, names = _python_detections(demo_bundle, img)
    assert len(boxes) == len(rboxes) >= 1
    np.testing.assert_allclose(boxes, rboxes, atol=1e-3)
    np.testing.assert_allclose(scores, rscores, atol=1e-5)
    np.testing.assert_array_equal(classes, rclasses)
    assert dict((int(i), n) for i, n in re.findall(r"^NAME (\d+) (.+)$", text, re.M)) == \
        {int(k): v for k, v in names.items()}
    # The detections are the image's defects (a trained model, not noise): each label is found.
    assert labels_found(labels, h, w, boxes, classes).all(), text


def test_error_paths_return_codes_and_messages_and_never_crash(test_capi, small_model, image_files, tmp_path):
    _check_error_paths(test_capi, {}, small_model, image_files, tmp_path)


def test_error_paths_under_address_and_ub_sanitizers(test_capi_asan, small_model, image_files, tmp_path):
    _check_error_paths(test_capi_asan[0], test_capi_asan[1], small_model, image_files, tmp_path)


def _check_error_paths(test_capi, env, small_model, image_files, tmp_path):
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(b"this is not a protobuf")
    plain = tmp_path / "plain_folder"
    plain.mkdir()
    rc, text = _run([test_capi, "errors", small_model, image_files["ppm"], str(bad), str(plain)], env=env)
    assert rc == 0 and "DONE" in text, text
    r = _results(text)

    assert "ABI 65537 65537 VERSION " + __version__ in text
    assert "STATUS_STR DRT_E_DESTROYED DRT_E_UNKNOWN" in text
    expected = {
        "options_null": "DRT_E_NULL_POINTER",
        "create_null_path": "DRT_E_NULL_POINTER",
        "create_null_out": "DRT_E_NULL_POINTER",
        "create_bad_path": "DRT_E_NOT_FOUND",
        "create_unsupported_file": "DRT_E_UNSUPPORTED_FORMAT",
        "create_plain_dir": "DRT_E_UNSUPPORTED_FORMAT",
        "create_corrupt_onnx": "DRT_E_RUNTIME",
        "create_non_utf8_path": "DRT_E_INVALID_ARGUMENT",
        "create_bad_backend": "DRT_E_INVALID_ARGUMENT",
        "create_bad_conf": "DRT_E_INVALID_ARGUMENT",
        "create_struct_size_0": "DRT_E_INVALID_ARGUMENT",
        "num_classes": "DRT_OK",
        "class_name_too_big": "DRT_E_NOT_FOUND",
        "class_name_negative": "DRT_E_NOT_FOUND",
        "class_name_null_out": "DRT_E_NULL_POINTER",
        "detect_null_handle": "DRT_E_NULL_POINTER",
        "detect_null_pixels": "DRT_E_NULL_POINTER",
        "detect_null_count": "DRT_E_NULL_POINTER",
        "detect_null_out": "DRT_E_NULL_POINTER",
        "detect_zero_width": "DRT_E_INVALID_ARGUMENT",
        "detect_small_stride": "DRT_E_INVALID_ARGUMENT",
        "detect_bad_format": "DRT_E_UNSUPPORTED_FORMAT",
        "detect_negative_capacity": "DRT_E_INVALID_ARGUMENT",
        "detect_full": "DRT_OK",
        "detect_capacity_0": "DRT_E_CAPACITY_TOO_SMALL",
        "detect_capacity_half": "DRT_E_CAPACITY_TOO_SMALL",
        "detect_capacity_exact": "DRT_OK",
        "detect_foreign_handle": "DRT_E_INVALID_HANDLE",
        "num_classes_foreign_handle": "DRT_E_INVALID_HANDLE",
        "destroy_foreign_handle": "DRT_E_INVALID_HANDLE",
        "destroy": "DRT_OK",
        "detect_after_destroy": "DRT_E_DESTROYED",
        "num_classes_after_destroy": "DRT_E_DESTROYED",
        "class_name_after_destroy": "DRT_E_DESTROYED",
        "destroy_twice": "DRT_E_DESTROYED",
        "destroy_null": "DRT_OK",
        "second_detector_still_works": "DRT_OK",
    }
    assert {k: r[k][0] for k in expected} == expected
    # failures set the thread's message, successes clear it; outputs hold their "empty" values
    for name, (status, count, msg) in r.items():
        assert (msg == "") == (status == "DRT_OK"), (name, msg)
    for name in ("create_null_path", "create_bad_path", "create_unsupported_file", "create_corrupt_onnx",
                 "create_bad_backend", "class_name_too_big", "class_name_after_destroy"):
        assert r[name][1] == 0, name  # *out / *name set to NULL
    for name in ("detect_null_handle", "detect_null_pixels", "detect_after_destroy", "detect_bad_format"):
        assert r[name][1] == 0, name  # *count = 0 on failure
    assert "/nonexistent/dir/model.onnx: no such file" in r["create_bad_path"][2]
    assert "ONNX Runtime cannot load it" in r["create_corrupt_onnx"][2]
    assert "pixel format 42" in r["detect_bad_format"][2]
    assert "destroyed" in r["detect_after_destroy"][2]
    assert "not a detector handle" in r["detect_foreign_handle"][2]
    names = _python_detections(small_model, _test_image())[3]
    assert r["num_classes"][1] == len(names) and "CLASS0 DRT_OK {}".format(names[0]) in text
    # capacity: count reports what is needed, exactly `capacity` are written and they are the best ones
    n = r["detect_full"][1]
    assert n >= 2 and "CAPACITY_K {}".format(n // 2) in text
    assert r["detect_capacity_0"][1] == n and r["detect_capacity_half"][1] == n and r["detect_capacity_exact"][1] == n
    assert "capacity >= {}".format(n) in r["detect_capacity_half"][2]
    assert "CAPACITY_PREFIX_MATCH 1" in text and "CAPACITY_UNTOUCHED 1" in text and "NOT_SORTED" not in text
    assert r["second_detector_still_works"][1] == n
    # drt_last_error is per thread
    assert re.search(r"^THREAD_LOCAL empty \| .*main-thread\.onnx: no such file", text, re.M), text
    assert "AFTER_SUCCESS []" in text


def test_runtime_dlopen_with_rtld_local(capi_dir, small_model, image_files, test_capi):
    """.NET / LabVIEW load the library RTLD_LOCAL: it must run loaded that way."""
    exe = os.path.join(capi_dir, "test_dlopen")
    rc, text = _run([_gcc(), "-Wall", "-Werror", "-I", CAPI, os.path.join(TESTS_C, "test_dlopen.c"), "-ldl", "-o", exe])
    assert rc == 0, text
    rc, text = _run([exe, os.path.join(capi_dir, "libdefectrt.so"), small_model, image_files["ppm"]])
    assert rc == 0 and "STATUS 0" in text, text
    rc2, linked = _run([test_capi, "detect", small_model, image_files["ppm"], "bgr", "0"])
    assert rc2 == 0
    got, ref = _parse_dets(text), _parse_dets(linked)
    assert len(got[0]) == len(ref[0]) > 0
    np.testing.assert_allclose(got[0], ref[0], atol=1e-4)


@pytest.mark.slow
def test_threads_own_and_shared_detectors_without_errors_or_leaks(test_capi, small_model, image_files):
    """4 threads with their own detector and 4 sharing one, 200 calls each, all at once (1600 in total)."""
    _check_threads(test_capi, {}, small_model, image_files, 200)


@pytest.mark.slow
def test_threads_under_address_and_ub_sanitizers(test_capi_asan, small_model, image_files):
    """The same 4 + 4 threads on the sanitizer build (24 calls each, a multiple of the 4 rounds: ASan is slower); any race on the handle
    table, use after destroy or overflow aborts the program."""
    _check_threads(test_capi_asan[0], test_capi_asan[1], small_model, image_files, 24, rss=False)


def _check_threads(test_capi, env, small_model, image_files, calls, rss=True):
    rc, text = _run([test_capi, "threads", small_model, image_files["ppm"], "4", str(calls), "4"], env=env,
                    timeout=600)
    assert rc == 0, text
    values = dict(re.findall(r"^([A-Z_]+) (-?\d+)$", text, re.M))
    assert int(values["REF_COUNT"]) > 0
    assert int(values["CALLS"]) == 8 * calls
    assert int(values["ERRORS"]) == 0 and int(values["MISMATCHES"]) == 0, text
    assert "WORKER_ERROR" not in text
    if not rss:
        return
    warm, end = int(values["RSS_WARM"]), int(values["RSS_END"])
    # 1600 leaked image copies (72 KB each) would be ~115 MB; steady state moves by ~1 MB
    assert end - warm < 10 * 1024, text


def test_create_destroy_cycles_do_not_leak(test_capi, small_model, image_files):
    rc, text = _run([test_capi, "cycle", small_model, image_files["ppm"], "8"])
    assert rc == 0, text
    values = dict(re.findall(r"^([A-Z_]+) (-?\d+)$", text, re.M))
    assert int(values["ERRORS"]) == 0
    # a leaked ONNX Runtime session (weights + arena) per cycle would add > 10 MB per cycle
    assert int(values["RSS_END"]) - int(values["RSS_WARM"]) < 16 * 1024, text


def test_destroy_while_other_threads_detect(test_capi, small_model, image_files):
    rc, text = _run([test_capi, "race", small_model, image_files["ppm"]])
    assert rc == 0, text
    values = dict(re.findall(r"^([A-Z_]+) (\S+)$", text, re.M))
    assert values["DESTROY"] == "DRT_OK"
    assert int(values["DESTROYED"]) == 4  # every thread saw DRT_E_DESTROYED and stopped
    assert int(values["ERRORS"]) == 0
    assert int(values["CALLS"]) >= 4


def test_the_c_example_builds_and_prints_the_detections(capi_dir, small_model, image_files, test_capi):
    exe = os.path.join(capi_dir, "detect_image")
    rc, text = _run([_gcc(), "-std=c89", "-pedantic", "-Wall", "-Werror", "-I", capi_dir,
                     os.path.join(ROOT, "examples", "c", "detect_image.c"), "-L", capi_dir, "-ldefectrt",
                     "-Wl,-rpath," + capi_dir, "-o", exe])
    assert rc == 0, text
    rc, text = _run([exe, small_model, image_files["ppm"]])
    assert rc == 0, text
    n = len(_parse_dets(_run([test_capi, "detect", small_model, image_files["ppm"], "bgr", "0"])[1])[0])
    assert text.splitlines()[0].startswith("{} detection(s)".format(n))
    assert len(text.strip().splitlines()) == n + 1
    rc, text = _run([exe, "/nonexistent.onnx", image_files["ppm"]])
    assert rc == 1 and "DRT_E_NOT_FOUND" in text
