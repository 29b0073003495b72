"""The TensorRT builder: pure parts tested here; engine builds only where TensorRT exists."""
import os

import pytest

from defectrt.errors import BackendUnavailable, UserInputError
from defectrt.export import engine


def test_parse_size_and_version():
    assert engine.parse_size("2G") == 2 << 30
    assert engine.parse_size("512M") == 512 << 20
    assert engine.parse_size("1024") == 1024
    with pytest.raises(UserInputError, match="--workspace"):
        engine.parse_size("lots")
    assert engine.parse_version("8.2.1.8") == (8, 2, 1)
    assert engine.parse_version("10.3") == (10, 3, 0)


def test_gpu_identity_never_raises_and_says_unknown_without_gpu():
    info = engine.gpu_identity()
    assert set(info) == {"gpu_name", "compute_capability"}


@pytest.mark.skipif(engine.import_tensorrt() is not None, reason="TensorRT is installed here")
def test_build_engine_without_tensorrt_is_a_clear_error(tmp_path):
    with pytest.raises(BackendUnavailable, match="TensorRT is not installed"):
        engine.build_engine("m.onnx", str(tmp_path / "m.engine"))


@pytest.mark.tensorrt
def test_build_engine_fp16_from_exported_model(tmp_path):
    """Unverified on hardware here: runs only where TensorRT and a GPU exist."""
    torch = pytest.importorskip("torch")
    from defectrt import models
    from defectrt.export.onnx import export_onnx

    onnx_path = str(tmp_path / "m.onnx")
    export_onnx(models.create("yolo11n-dysample", nc=2), onnx_path, imgsz=160, grid_sample="lowered")
    record = engine.build_engine(onnx_path, str(tmp_path / "m.engine"), precision="fp16", imgsz=(160, 160))
    assert os.path.getsize(tmp_path / "m.engine") > 0 and record["tensorrt_version"]
    del torch


def test_a_build_that_returns_nothing_is_a_runtime_failure(tmp_path, monkeypatch):
    """TensorRT's builder returns None (its reasons go to its log): a RuntimeFailure naming the ONNX file."""
    import types

    from defectrt.errors import RuntimeFailure

    fake = types.SimpleNamespace(__version__="10.3.0")
    monkeypatch.setattr(engine, "_logger", lambda trt: None)
    monkeypatch.setattr(engine, "load_plugin_libraries", lambda *a: None)
    monkeypatch.setattr(engine, "_build_with_polygraphy", lambda *a: None)
    monkeypatch.setattr(engine, "_build_raw", lambda *a: None)
    with pytest.raises(RuntimeFailure, match="TensorRT 10.3.0 failed to build m.onnx.*--workspace"):
        engine.build_engine("m.onnx", str(tmp_path / "m.engine"), workspace="1G", trt=fake)
    assert not os.path.exists(str(tmp_path / "m.engine"))
