"""Bundles: hashes verified, engine-or-ONNX choice and its reason, stored thresholds."""
import dataclasses
import json
import logging
import os

import pytest

from defectrt import Detector
from defectrt.errors import BackendUnavailable, UserInputError
from defectrt.runtime import bundle, tensorrt_backend
from defectrt.runtime.backend import Backend
from test_runtime_models import draw_rect, make_bundle, rect_finder

ENGINE = {"file": "model.engine", "tensorrt_version": "10.3.0", "gpu_name": "Orin", "compute_capability": "8.7"}


@pytest.fixture
def onnx_bundle(tmp_path):
    return make_bundle(str(tmp_path / "screw.bundle"), rect_finder(), thresholds={"conf": 0.8, "iou": 0.45, "max_det": 5})


def test_bundle_runs_on_onnxruntime_with_its_names_and_thresholds(onnx_bundle, caplog):
    with caplog.at_level(logging.INFO, logger="defectrt"):
        det = Detector(onnx_bundle)
    assert det.backend_name == "onnxruntime"
    assert "no TensorRT engine" in det.backend_reason and det.backend_reason in caplog.text
    assert det.conf == 0.8 and det.max_det == 5
    d = det(draw_rect(333, 517, 101, 57, 300, 211))
    assert d.names == ["scratch"]  # dent 0.7 is below the bundle's conf 0.8
    assert Detector(onnx_bundle, conf=0.5).conf == 0.5  # an explicit threshold wins


def _rewrite_manifest(folder, **changes):
    path = os.path.join(folder, "manifest.json")
    with open(path) as f:
        manifest = json.load(f)
    manifest.update(changes)
    with open(path, "w") as f:
        json.dump(manifest, f)


def test_a_changed_file_is_named(onnx_bundle):
    with open(os.path.join(onnx_bundle, "model.onnx"), "ab") as f:
        f.write(b"\0")
    with pytest.raises(UserInputError) as exc:
        Detector(onnx_bundle)
    assert "model.onnx does not match its sha256" in str(exc.value) and onnx_bundle in str(exc.value)


def test_a_missing_file_is_named(tmp_path):
    folder = make_bundle(str(tmp_path / "b"), rect_finder(), extra_files={"golden.json": b"{}"})
    os.remove(os.path.join(folder, "golden.json"))
    with pytest.raises(UserInputError, match="golden.json is listed in manifest.json but missing"):
        bundle.read_manifest(folder)


@pytest.mark.parametrize("changes,words", [
    ({"format": "something-else"}, "format is 'something-else'"),
    ({"files": {}}, "no `files` hashes"),
    ({"engine": ENGINE}, "engine model.engine is not listed"),
])
def test_malformed_manifests_are_refused(onnx_bundle, changes, words):
    _rewrite_manifest(onnx_bundle, **changes)
    with pytest.raises(UserInputError, match=words.replace("(", r"\(")):
        bundle.read_manifest(onnx_bundle)


def test_a_folder_without_manifest_is_not_a_bundle(tmp_path):
    with pytest.raises(UserInputError, match="not a bundle"):
        Detector(str(tmp_path))
    (tmp_path / "manifest.json").write_text("{broken")
    with pytest.raises(UserInputError, match="not valid JSON"):
        Detector(str(tmp_path))


@pytest.mark.parametrize("trt,gpu,usable,words", [
    ("10.3.0.30", {"gpu_name": "Orin", "compute_capability": "8.7"}, True, "TensorRT 10.3.0.30 engine"),
    ("10.3.0", {"gpu_name": "unknown", "compute_capability": "unknown"}, True, "engine"),
    (None, None, False, "not installed"),
    ("8.6.2", {"gpu_name": "Orin", "compute_capability": "8.7"}, False, "built with TensorRT 10.3.0, this device has 8.6.2"),
    ("10.3.0", {"gpu_name": "Xavier", "compute_capability": "7.2"}, False, "compute capability 8.7"),
])
def test_engine_compatibility(trt, gpu, usable, words):
    ok, reason = bundle.engine_compatibility(ENGINE, trt, gpu)
    assert ok is usable and words in reason


def test_choose_backend_prefers_a_fitting_engine_and_explains_otherwise(tmp_path):
    manifest = bundle.Manifest.from_json({"model": "model.onnx", "engine": ENGINE})
    gpu = {"gpu_name": "Orin", "compute_capability": "8.7"}
    kind, path, _ = bundle.choose_backend(str(tmp_path), manifest, "auto", "10.3.0", gpu)
    assert kind == "tensorrt" and path.endswith("model.engine")
    kind, path, reason = bundle.choose_backend(str(tmp_path), manifest, "auto", "10.4.0", gpu)
    assert kind == "onnxruntime" and path.endswith("model.onnx") and "10.4.0" in reason
    with pytest.raises(UserInputError) as exc:
        bundle.choose_backend(str(tmp_path), manifest, "tensorrt", "10.4.0", gpu)
    assert "defectrt export build" in str(exc.value) and "--engine" in str(exc.value)
    assert bundle.choose_backend(str(tmp_path), manifest, "onnxruntime", "10.3.0", gpu)[0] == "onnxruntime"


def _engine_bundle(tmp_path):
    return make_bundle(str(tmp_path / "e.bundle"), rect_finder(), engine_record=ENGINE,
                       extra_files={"model.engine": b"fake engine bytes"})


def test_bundle_with_engine_falls_back_to_onnx_when_tensorrt_is_absent(tmp_path, monkeypatch):
    monkeypatch.setattr(tensorrt_backend, "tensorrt_version", lambda: None)
    det = Detector(_engine_bundle(tmp_path))
    assert det.backend_name == "onnxruntime" and "TensorRT is not installed here" in det.backend_reason
    with pytest.raises(BackendUnavailable, match="not installed"):
        Detector(_engine_bundle(tmp_path / "x"), backend="tensorrt")


def test_an_engine_that_fails_to_load_falls_back_with_a_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(tensorrt_backend, "tensorrt_version", lambda: "10.3.0")
    monkeypatch.setattr(tensorrt_backend, "gpu_identity", lambda: {"gpu_name": "Orin", "compute_capability": "8.7"})
    seen = {}

    class Failing(Backend):
        def __init__(self, path, **kwargs):
            seen.update(kwargs, path=path)
            raise UserInputError("{}: could not deserialize".format(path))

        def infer(self, blob):  # never reached: loading failed
            raise AssertionError

    monkeypatch.setattr(tensorrt_backend, "TensorRTBackend", Failing)
    folder = _engine_bundle(tmp_path)
    with caplog.at_level(logging.WARNING, logger="defectrt"):
        det = Detector(folder)
    assert seen["path"].endswith("model.engine") and seen["expected"] == ENGINE
    assert seen["names"] == {0: "scratch", 1: "dent"}
    assert det.backend_name == "onnxruntime" and "did not load" in det.backend_reason
    assert "falling back to ONNX Runtime" in caplog.text
    with pytest.raises(UserInputError, match="could not deserialize"):
        Detector(folder, backend="tensorrt")


def test_a_bare_engine_inside_a_bundle_takes_the_manifest_names(tmp_path, monkeypatch):
    folder = _engine_bundle(tmp_path)
    seen = {}

    class Recording(Backend):
        name, imgsz, batch = "tensorrt", (384, 672), None

        def __init__(self, path, **kwargs):
            seen.update(kwargs, path=path)
            self.names = kwargs["names"]

        def infer(self, blob):
            raise AssertionError

    monkeypatch.setattr(tensorrt_backend, "TensorRTBackend", Recording)
    det = Detector(os.path.join(folder, "model.engine"))
    assert seen["path"].endswith("model.engine") and det.names == {0: "scratch", 1: "dent"}
    assert det.backend_reason == "TensorRT engine given"


def test_the_letterbox_record_is_read():
    import numpy as np
    import pytest

    from defectrt.errors import UserInputError
    from defectrt.runtime import bundle as bundle_mod
    from defectrt.runtime.preprocess import preprocess

    def pad_value(data):
        return bundle_mod.Manifest.from_json(data).pad_value

    assert pad_value({}) == 114
    assert pad_value({"letterbox": {"pad_value": 0}}) == 0
    for bad in (300, -1, 1.5, True, "114"):
        with pytest.raises(UserInputError, match="pad_value"):
            pad_value({"letterbox": {"pad_value": bad}})
    img = np.full((32, 64, 3), 200, np.uint8)  # letterboxed to 64x64: rows 0..15 are border
    blob, _ = preprocess(img, (64, 64), pad_value=0)
    assert blob[0, :, 0, 0].tolist() == [0.0, 0.0, 0.0] and abs(blob[0, 0, 32, 32] - 200 / 255.0) < 1e-6
    blob, _ = preprocess(img, (64, 64))
    assert abs(blob[0, 0, 0, 0] - 114 / 255.0) < 1e-6


def test_the_manifest_type_reads_verifies_and_writes(tmp_path):
    import pytest

    from defectrt.runtime.bundle import Manifest
    from manifest_schema import schema_errors

    folder = make_bundle(str(tmp_path / "b"), rect_finder(), thresholds={"conf": 0.3, "iou": 0.5, "max_det": 10})
    m = Manifest.read(folder)
    assert m.model == "model.onnx" and m.model_path == os.path.realpath(os.path.join(folder, "model.onnx"))
    assert m.imgsz == (384, 672) and m.pad_value == 114
    assert m.stored_thresholds() == {"conf": 0.3, "iou": 0.5, "max_det": 10} and m.thresholds.conf == 0.3
    assert m.class_names and m.engine is None and schema_errors(m.to_json()) == []
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.precision = "fp16"
    m.set(letterbox=bundle.Letterbox.create(pad_value=0)).write()
    assert Manifest.read(folder).pad_value == 0
    with open(os.path.join(folder, "model.onnx"), "ab") as f:
        f.write(b"x")
    with pytest.raises(UserInputError, match="model.onnx"):
        m.verify()
