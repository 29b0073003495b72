"""`defectrt verify` on every demo bundle precision (ONNX Runtime here), a perturbed golden output failing with a
clear report, and `defectrt doctor` against fakes. The TensorRT paths of both are unverified on hardware."""
import json
import os
import types

import numpy as np
import pytest

from defectrt.bench import doctor
from defectrt.cli import main
from defectrt.runtime.verify import compare, match_detections, verify_bundle

IMGSZ = 160


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    import cv2

    from defectrt.data.synth import generate

    folder = tmp_path_factory.mktemp("calib")
    for i in range(6):
        image, _ = generate("screw", 1, seed=900 + i)
        cv2.imwrite(str(folder / "{}.png".format(i)), image)
    return str(folder)


@pytest.fixture(scope="module")
def demo_bundles(tmp_path_factory, calib_dir):
    """demo:screw at every precision the bundle writer makes (FP32 as `make demo` does, smaller for the rest)."""
    pytest.importorskip("torch")
    from defectrt.export.bundle import build_bundle

    root = tmp_path_factory.mktemp("verify")
    out = {}
    specs = [("fp32", {}), ("fp16", {}), ("int8-cpu", dict(precision="int8", int8_flavour="cpu")),
             ("int8-trt", dict(precision="int8", int8_flavour="trt", target_trt="10.3"))]
    for name, kw in specs:
        if name == "int8-trt":
            try:
                import modelopt  # noqa: F401
            except ImportError:
                continue
        kw = dict(kw)
        kw.setdefault("precision", name)
        if kw["precision"] == "int8":
            kw.update(calib=calib_dir, calib_count=6)
        path = str(root / (name + ".bundle"))
        build_bundle("demo:screw", path, imgsz=IMGSZ, **kw)
        out[name] = path
    return out


@pytest.mark.filterwarnings("ignore:INT8 calibration with")
def test_verify_passes_on_onnxruntime_for_every_demo_precision(demo_bundles, tmp_path):
    assert {"fp32", "fp16", "int8-cpu"} <= set(demo_bundles)
    for name, path in demo_bundles.items():
        report = verify_bundle(path, backend="onnxruntime", runs=2, warmup=1)
        assert report["verdict"] == "pass", (name, report["reasons"])
        assert report["precision"] == name.split("-")[0]
        (out_name, rec), = report["outputs"].items()
        assert rec["ok"] and rec["max_abs_error"] <= report["tolerance"]["atol"] and rec["elements"] > 1000
        assert report["latency_ms"]["runs"] == 2 and report["device"]["onnxruntime"]
        assert report["detections"]["golden_found_again"] == report["detections"]["golden_count"]
    # the CLI: verdict, exit status 0, the JSON report
    out = str(tmp_path / "r.json")
    assert main(["verify", demo_bundles["fp16"], "--json", out, "--runs", "1"]) == 0
    saved = json.load(open(out))
    assert saved["verdict"] == "pass" and saved["tolerance"] == {"atol": 2e-2, "rtol": 2e-2}


def _perturb(bundle, tmp_path, delta):
    """A copy of `bundle` whose golden output differs by `delta` at one element (manifest re-hashed, as if the
    reference had been computed by a device that gets it wrong)."""
    import shutil

    from polygraphy.comparator import RunResults

    from defectrt.export.bundle import write_manifest

    copy = str(tmp_path / "perturbed.bundle")
    shutil.copytree(bundle, copy)
    path = os.path.join(copy, "golden", "outputs.json")
    results = RunResults.load(path)
    (_, iterations), = results.items()
    name = list(iterations[0].keys())[0]
    arr = np.array(iterations[0][name])
    arr.reshape(-1)[arr.size // 2] += delta
    iterations[0][name] = arr
    results.save(path)
    with open(os.path.join(copy, "manifest.json")) as f:
        manifest = json.load(f)
    write_manifest(copy, manifest)
    return copy, name


def test_verify_fails_clearly_on_a_perturbed_golden_output(demo_bundles, tmp_path, capsys):
    copy, name = _perturb(demo_bundles["fp32"], tmp_path, 0.5)
    capsys.readouterr()  # polygraphy's own log lines from _perturb
    report = verify_bundle(copy, runs=1, warmup=0)
    assert report["verdict"] == "fail"
    rec = report["outputs"][name]
    assert not rec["ok"] and rec["outside_tolerance"] == 1 and rec["max_abs_error"] == pytest.approx(0.5, abs=1e-3)
    assert any("output {}: 1 of".format(name) in r and "atol 0.001" in r for r in report["reasons"])
    out = str(tmp_path / "fail.json")
    assert main(["verify", copy, "--json", out, "--runs", "1"]) == 1
    printed = capsys.readouterr().out
    assert printed.startswith("FAIL: ") and "FAIL" in printed.splitlines()[2] and "reason: output" in printed
    assert json.load(open(out))["verdict"] == "fail"


def test_verify_reports_a_tampered_bundle_as_a_failure(demo_bundles, tmp_path):
    import shutil

    copy = str(tmp_path / "tampered.bundle")
    shutil.copytree(demo_bundles["fp32"], copy)
    with open(os.path.join(copy, "golden", "outputs.json"), "a") as f:
        f.write(" ")
    report = verify_bundle(copy)
    assert report["verdict"] == "fail" and "sha256" in report["reasons"][0] and "outputs" not in report


def test_verify_tensorrt_without_tensorrt_is_a_clear_failure(demo_bundles):
    report = verify_bundle(demo_bundles["fp32"], backend="tensorrt")
    assert report["verdict"] == "fail" and "tensorrt" in report["reasons"][0].lower()


def test_compare_and_detection_matching():
    want = np.array([[1.0, 100.0], [0.5, -3.0]])
    rec = compare("o", want + [[0.01, 1.0], [0.0, 0.0]], want, atol=0.02, rtol=0.02)
    assert rec["ok"] and rec["max_abs_error"] == pytest.approx(1.0)
    rec = compare("o", want + [[0.05, 0.0], [0.0, 0.0]], want, atol=0.02, rtol=0.02)
    assert not rec["ok"] and rec["outside_tolerance"] == 1 and rec["worst_index"] == [0, 0]
    assert not compare("o", want[:1], want, 1, 1)["ok"]
    assert "non-finite" in compare("o", want * np.nan, want, 1, 1)["problem"]
    a = [[{"class": 0, "box": [0, 0, 10, 10]}, {"class": 1, "box": [20, 20, 30, 30]}]]
    b = [[{"class": 0, "box": [1, 1, 10, 10]}, {"class": 0, "box": [20, 20, 30, 30]}]]
    assert match_detections(a, b) == (1, 2, 2)


# ------------------------------------------------------------------------------------ doctor

def _fake_trt(version):
    return types.SimpleNamespace(__version__=version)


def _env(jetson=None):
    return {"software": {"onnxruntime": "1.31.1", "onnxruntime_providers": ["CPUExecutionProvider"],
                         "cuda": {"version": "11.4"}},
            "gpu": "unknown", "jetson": jetson or {"is_jetson": False}}


def test_doctor_on_a_jetpack_5_0_orin_with_tensorrt_8_4():
    jet = {"is_jetson": True, "model": "NVIDIA Jetson AGX Orin Developer Kit",
           "l4t_release": "# R35 (release), REVISION: 1.0, GCID: 31250864, BOARD: t186ref", "power_mode": "MAXN"}
    facts = doctor.collect(trt=_fake_trt("8.4.1.5"), environment=_env(jet), which=lambda n: "/usr/bin/trtexec",
                           gpu={"gpu_name": "Orin", "compute_capability": "8.7"}, plugins=[], find_library=lambda n: None)
    assert facts["jetson"]["l4t"] == "35.1.0" and facts["jetson"]["jetpack"] == "5.0.2"
    assert facts["tensorrt"]["io_api"] == "bindings" and facts["tensorrt"]["parser_has_gridsample"] is False
    checks = {w.split(" (")[0]: (ok, why) for w, ok, why in doctor.will_work(facts)}
    assert checks["native GridSample"][0] is False and "--target-trt 8.4" in checks["native GridSample"][1]
    assert checks["DLA"][0] is True
    text = doctor.format_doctor(facts, doctor.will_work(facts))
    assert "JetPack 5.0.2" in text and "compute capability 8.7" in text and "[ no] native GridSample" in text


def test_doctor_without_tensorrt_points_to_the_trtexec_script_or_the_extra():
    facts = doctor.collect(trt=None, environment=_env(), which=lambda n: None, gpu={}, plugins=[],
                           find_library=lambda n: None)
    facts["tensorrt"] = None
    checks = doctor.will_work(facts)
    assert checks[0][1] is True
    trt_line = [c for c in checks if c[0].startswith("TensorRT")][0]
    assert trt_line[1] is False and "defectrt[trt]" in trt_line[2]
    facts11 = doctor.collect(trt=_fake_trt("11.1.0"), environment=_env(), which=lambda n: None,
                             gpu={"gpu_name": "RTX 5090", "compute_capability": "12.0"}, plugins=[],
                             find_library=lambda n: None)
    assert facts11["tensorrt"]["strongly_typed"] is True and facts11["tensorrt"]["precision_flags"] is False
    assert doctor.collect(trt=_fake_trt("7.1.3"), environment=_env(), which=lambda n: None, gpu={}, plugins=[],
                          find_library=lambda n: None)["tensorrt"]["supported"] is False


def test_doctor_cli_runs_here(tmp_path, capsys):
    out = str(tmp_path / "d.json")
    assert main(["doctor", "--json", out]) == 0
    assert "What will work:" in capsys.readouterr().out
    saved = json.load(open(out))
    assert saved["will_work"][0]["what"].startswith("ONNX Runtime")
