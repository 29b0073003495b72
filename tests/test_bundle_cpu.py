"""CPU bundles (issue #18): lowered grid sampling for every bundle meant for a CPU, and the bf16 precision
(OpenVINO), offered only with its accuracy measured and within 0.3 points of mAP50-95."""
import json
import os

import pytest

pytest.importorskip("torch")

from defectrt.errors import BackendUnavailable, UserInputError  # noqa: E402
from defectrt.export import bundle as bundle_mod  # noqa: E402
from defectrt.export.bundle import build_bundle, for_cpu  # noqa: E402
from defectrt.runtime import openvino_backend as ovb  # noqa: E402
from defectrt.runtime.detector import Detector  # noqa: E402


def test_which_bundles_are_for_a_cpu():
    assert for_cpu("fp32", None, None, engine_built=False)
    assert for_cpu("bf16", None, None, engine_built=False)
    assert for_cpu("int8", "cpu", None, engine_built=True)  # the flavour says it
    assert not for_cpu("fp32", None, "10.3", engine_built=False)  # a TensorRT target
    assert not for_cpu("fp32", None, None, engine_built=True)  # an engine is built with it
    assert not for_cpu("fp16", None, None, engine_built=False)  # a GPU precision
    assert not for_cpu("int8", "trt", None, engine_built=False)


def test_fp32_bundle_without_a_tensorrt_target_lowers_grid_sampling(tmp_path):
    from defectrt.export.engine import import_tensorrt

    if import_tensorrt() is not None:
        pytest.skip("TensorRT is installed: an engine is built, so the bundle is not CPU-only")
    cpu = build_bundle("yolo11n-dysample", str(tmp_path / "cpu.bundle"), precision="fp32", imgsz=160)
    assert cpu.grid_sample == "lowered" and "CPU" in cpu.grid_sample_reason


def test_bf16_needs_measured_accuracy(tmp_path, monkeypatch):
    with pytest.raises(UserInputError, match="--val"):
        build_bundle("yolo11n-dysample", str(tmp_path / "a.bundle"), precision="bf16", imgsz=160)
    monkeypatch.setattr(ovb, "import_openvino", lambda: None)
    with pytest.raises(BackendUnavailable, match="OpenVINO"):
        build_bundle("yolo11n-dysample", str(tmp_path / "b.bundle"), precision="bf16", imgsz=160, val=str(tmp_path))
    assert not os.path.exists(str(tmp_path / "a.bundle")) and not os.path.exists(str(tmp_path / "b.bundle"))


def test_bf16_loss_gate():
    ok = {"fp32": {"map50_95": 0.700}, "bf16": {"map50_95": 0.698}}
    bundle_mod._check_bf16_loss(ok)
    assert ok["bf16"]["map50_95_loss"] == pytest.approx(0.002)
    with pytest.raises(UserInputError, match="not offered.*0.40 points"):
        bundle_mod._check_bf16_loss({"fp32": {"map50_95": 0.700}, "bf16": {"map50_95": 0.696}})


@pytest.mark.skipif(not ovb.cpu_bf16_support(), reason="needs OpenVINO and a CPU with bf16 (AMX / AVX-512 BF16)")
def test_bf16_bundle_records_its_accuracy_and_runs_on_openvino_bf16(tmp_path, monkeypatch):
    from defectrt.data.synth import write_dataset

    data = str(tmp_path / "data")
    write_dataset(data, kind="screw", n=4, seed=3, val_fraction=0.5, progress=False)
    out = str(tmp_path / "bf16.bundle")
    # Two val images swing mAP by points either way (the gate itself is test_bf16_loss_gate): open it here.
    monkeypatch.setattr(bundle_mod, "BF16_MAX_LOSS", 1.0)
    manifest = build_bundle("yolo11n-dysample", out, precision="bf16", imgsz=160, val=data)
    on_disk = json.load(open(os.path.join(out, "manifest.json")))
    assert on_disk["precision"] == "bf16" and on_disk["runtime"] == {"openvino": {"inference_precision": "bf16"}}
    assert on_disk["grid_sample"] == "lowered" and on_disk["engine"] is None
    val = manifest.val.to_json()
    assert val["bf16"]["runtime"] == "OpenVINO bf16"
    assert val["bf16"]["map50_95_loss"] == pytest.approx(val["fp32"]["map50_95"] - val["bf16"]["map50_95"])
    det = Detector(out)
    assert det.backend_name == "openvino" and "bf16" in det.backend_reason
    assert "bfloat16" in repr(det.backend.compiled.get_property("INFERENCE_PRECISION_HINT"))
