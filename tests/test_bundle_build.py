"""`defectrt export build`: bundle contents, loading, integrity errors, no clobbering, atomic failure."""
import json
import os

import numpy as np
import pytest

pytest.importorskip("torch")

from defectrt.cli import main  # noqa: E402
from defectrt.errors import BackendUnavailable, UserInputError  # noqa: E402
from defectrt.export.bundle import build_bundle  # noqa: E402
from defectrt.export.check import model_opset  # noqa: E402
from defectrt.runtime.detector import Detector  # noqa: E402


@pytest.fixture(scope="module")
def fp32_bundle(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("b") / "m.bundle")
    manifest = build_bundle("yolo11n-dysample", out, precision="fp32", imgsz=160, grid_sample="lowered", conf=0.3)
    return out, manifest


def test_bundle_contents_and_manifest(fp32_bundle):
    out, manifest = fp32_bundle
    assert sorted(os.listdir(out)) == ["build_engine.bat", "build_engine.sh", "golden", "manifest.json", "model.onnx"]
    on_disk = json.load(open(os.path.join(out, "manifest.json")))
    assert on_disk == json.loads(json.dumps(manifest.to_json()))  # the Manifest returned is the file written
    assert on_disk["format"] == "defectrt-bundle" and on_disk["imgsz"] == [160, 160]
    assert on_disk["grid_sample"] == "lowered" and on_disk["precision"] == "fp32"
    assert set(on_disk["files"]) == {"model.onnx", "golden/inputs.json", "golden/outputs.json", "build_engine.sh",
                                     "build_engine.bat"}
    assert on_disk["engine"] is None and on_disk["thresholds"]["conf"] == 0.3
    assert len(on_disk["names"]) == 80 and on_disk["letterbox"]["pad_value"] == 114


def test_bundle_manifest_is_schema_valid(fp32_bundle):
    from manifest_schema import assert_schema_valid

    assert assert_schema_valid(fp32_bundle[0])["letterbox"]["pad_value"] == 114


def test_bundle_loads_in_detector_like_its_onnx(fp32_bundle):
    out, _ = fp32_bundle
    img = np.random.default_rng(0).integers(0, 255, (120, 200, 3), dtype=np.uint8)
    a = Detector(out, conf=0.0001)
    b = Detector(os.path.join(out, "model.onnx"), conf=0.0001)
    assert a.backend_name == "onnxruntime" and "no TensorRT engine" in a.backend_reason
    da, db = a(img), b(img)
    assert len(da) == len(db) > 0
    np.testing.assert_allclose(da.boxes, db.boxes, atol=1e-4)
    assert Detector(out).conf == 0.3  # thresholds stored in the manifest are the defaults


def test_golden_outputs_match_onnxruntime(fp32_bundle):
    from polygraphy.comparator import RunResults
    from polygraphy.json import load_json

    out, _ = fp32_bundle
    feeds = load_json(os.path.join(out, "golden", "inputs.json"))
    results = RunResults.load(os.path.join(out, "golden", "outputs.json"))
    (_, iterations), = results.items()
    ref = iterations[0]["output0"]
    got = Detector(out).infer(feeds[0]["images"])
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_tampered_or_incomplete_bundle_is_refused(fp32_bundle, tmp_path):
    import shutil

    out, _ = fp32_bundle
    bad = str(tmp_path / "bad.bundle")
    shutil.copytree(out, bad)
    with open(os.path.join(bad, "model.onnx"), "ab") as f:
        f.write(b"x")
    with pytest.raises(UserInputError, match="model.onnx"):
        Detector(bad)
    os.remove(os.path.join(bad, "golden", "inputs.json"))
    with pytest.raises(UserInputError, match="inputs.json"):
        Detector(bad)


def test_existing_bundle_not_replaced_without_force(fp32_bundle, capsys):
    out, _ = fp32_bundle
    before = open(os.path.join(out, "manifest.json")).read()
    assert main(["export", "build", "yolo11n", "-o", out, "--precision", "fp32", "--imgsz", "160"]) == 1
    assert "--force" in capsys.readouterr().err
    assert open(os.path.join(out, "manifest.json")).read() == before


def test_failed_build_leaves_nothing_behind(tmp_path):
    empty = tmp_path / "calib"
    empty.mkdir()
    out = tmp_path / "x.bundle"
    with pytest.raises(UserInputError, match="no images"):
        build_bundle("yolo11n", str(out), precision="int8", calib=str(empty), imgsz=160)
    with pytest.raises(UserInputError):
        build_bundle("no-such-model", str(out), precision="fp32", imgsz=160)
    assert os.listdir(tmp_path) == ["calib"]


def test_bad_arguments(tmp_path):
    with pytest.raises(UserInputError, match="needs --calib"):
        build_bundle("yolo11n", str(tmp_path / "a"), precision="int8")
    with pytest.raises(UserInputError, match="DLA runs no FP32"):
        build_bundle("yolo11n", str(tmp_path / "a"), precision="fp32", dla_core=0)
    with pytest.raises(BackendUnavailable, match="TensorRT is not installed"):
        main_args = ["export", "build", str(tmp_path), "--engine"]
        from defectrt.export.bundle import add_engine

        add_engine(str(tmp_path))
    del main_args


@pytest.mark.filterwarnings("ignore:INT8 calibration with 12 images")
def test_demo_int8_bundle_gives_the_val_metrics_its_manifest_claims(tmp_path, capsys):
    """demo:screw -> INT8 (cpu flavour) bundle with --val, through the CLI; the Detector on the bundle then
    measures exactly the metrics the manifest recorded, and the manifest's opset is the file's."""
    import onnx

    from defectrt.data.dataset import load_dataset
    from defectrt.data.synth import write_dataset
    from defectrt.data.val import evaluate

    data = str(tmp_path / "screw")
    write_dataset(data, kind="screw", n=24, seed=5151, val_fraction=0.5, progress=False)
    out = str(tmp_path / "int8.bundle")
    rc = main(["export", "build", "demo:screw", "-o", out, "--precision", "int8", "--int8-flavour", "cpu",
               "--calib", data, "--calib-count", "12", "--calib-method", "entropy", "--val", data,
               "--no-strict-gate"])  # 12 val images cannot put the interval's end within 0.5 points
    printed = capsys.readouterr().out
    assert rc == 0 and "val int8: mAP50" in printed and "val fp32: mAP50" in printed
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    assert manifest["precision"] == "int8" and manifest["int8_flavour"] == "cpu"
    assert "entropy" in manifest["int8_calibration"] and "12 images" in manifest["int8_calibration"]
    assert "stem" in manifest["int8_unquantized"] and "DySample islands" in manifest["int8_unquantized"]
    assert manifest["grid_sample"] == "lowered"  # auto, for ONNX Runtime on a CPU: the faster form there
    model = onnx.load(os.path.join(out, "model.onnx"))
    assert manifest["opset"] == model_opset(model)
    claimed = manifest["val"]
    det = Detector(out, conf=claimed["conf"], iou=claimed["iou"])
    got = evaluate(det, load_dataset(data, split=claimed["split"]))
    for key in ("precision", "recall", "map50", "map50_95"):
        assert got[key] == pytest.approx(claimed["int8"][key], abs=1e-9), key
    assert claimed["fp32"]["map50"] > 0.5  # a trained model on its task, not a random network
    assert abs(claimed["int8"]["map50_95"] - claimed["fp32"]["map50_95"]) < 0.1


@pytest.mark.filterwarnings("ignore:INT8 calibration with")
def test_int8_trt_manifest_records_the_opset_of_the_shipped_file(tmp_path):
    """ModelOpt writes opset 19 for TensorRT >= 10 but keeps the source opset for 8.x: the manifest follows."""
    pytest.importorskip("modelopt")
    import cv2
    import onnx

    calib = tmp_path / "calib"
    calib.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        cv2.imwrite(str(calib / "{}.png".format(i)), rng.integers(0, 255, (64, 96, 3), dtype=np.uint8))
    for target, expected in (("10.3", 19), ("8.6", 17)):
        out = str(tmp_path / "trt{}.bundle".format(target))
        manifest = build_bundle("yolo11n", out, precision="int8", calib=str(calib), calib_count=4, imgsz=64,
                                target_trt=target)
        model = onnx.load(os.path.join(out, "model.onnx"))
        assert manifest.opset == model_opset(model) == expected, target
