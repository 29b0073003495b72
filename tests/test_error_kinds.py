"""issue 15: the error kinds are raised where they belong, each naming the file or argument and what to do.

BackendUnavailable / RuntimeFailure / OutOfMemory are not user-input errors (`except UserInputError` does
not swallow them); the CLI still prints every DefectrtError as one line and exits 1.
"""
import json
import os
import sys

import numpy as np
import pytest

from defectrt import Detector
from defectrt import errors
from defectrt.errors import (BackendUnavailable, DefectrtError, OutOfMemory, RuntimeFailure, UnsupportedFormat,
                             UserInputError)
from defectrt.runtime import bundle
from defectrt.runtime.backend import Backend
from test_runtime_models import make_bundle, rect_finder, save


def test_backend_and_runtime_kinds_are_not_user_input_errors():
    for cls in (BackendUnavailable, RuntimeFailure, OutOfMemory):
        assert issubclass(cls, DefectrtError) and not issubclass(cls, (UserInputError, ValueError))
    assert issubclass(OutOfMemory, RuntimeFailure) and issubclass(OutOfMemory, MemoryError)
    assert issubclass(UnsupportedFormat, UserInputError)


class _OrtFail(Exception):
    """Shaped like ONNX Runtime's pybind exceptions (they derive from Exception, not RuntimeError)."""


_OrtFail.__module__ = "onnxruntime.capi.onnxruntime_pybind11_state"


def test_library_failures_are_told_apart_from_our_bugs():
    assert errors.is_library_failure(_OrtFail("x")) and errors.is_library_failure(RuntimeError("x"))
    assert errors.is_library_failure(MemoryError()) and not errors.is_library_failure(TypeError("x"))
    oom = errors.library_failure(_OrtFail("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : std::bad_alloc"), "m.onnx")
    assert isinstance(oom, OutOfMemory) and oom.status == "OutOfMemory" and oom.c_status == "DRT_E_OUT_OF_MEMORY"
    assert "m.onnx" in str(oom) and "--batch" in str(oom) and "bad_alloc" in str(oom)
    assert isinstance(errors.library_failure(MemoryError(), "m.onnx"), OutOfMemory)
    assert isinstance(errors.library_failure(RuntimeError("CUDA error: out of memory"), "e.engine"), OutOfMemory)
    fail = errors.library_failure(RuntimeError("Exception from src/inference/src/infer_request.cpp"), "m.onnx")
    assert type(fail) is RuntimeFailure and "m.onnx" in str(fail) and "RuntimeError" in str(fail)
    given = UnsupportedFormat("m.onnx: not an ONNX model")
    assert errors.library_failure(_OrtFail("INVALID_PROTOBUF"), "m.onnx", given) is given


class _Failing(Backend):
    name = "failing"
    imgsz = (32, 32)
    names = {0: "a"}

    def __init__(self, exc):
        self.exc = exc

    def infer(self, blob):
        raise self.exc


@pytest.mark.parametrize("exc, kind, words", [
    (_OrtFail("Failed to allocate memory for requested buffer of size 1234"), OutOfMemory, "--imgsz"),
    (RuntimeError("Exception from src/plugins/intel_cpu: something broke"), RuntimeFailure, "something broke"),
])
def test_a_failure_inside_the_backend_is_a_runtime_kind_naming_the_model(exc, kind, words):
    det = Detector(_Failing(exc))
    with pytest.raises(kind) as info:
        det(np.zeros((32, 32, 3), np.uint8))
    text = str(info.value)
    assert "failing" in text and "(1, 3, 32, 32)" in text and words in text
    assert info.value.__cause__ is exc  # the library's own exception stays attached for --debug


def test_a_bug_of_ours_is_not_relabelled():
    det = Detector(_Failing(TypeError("a bug")))
    with pytest.raises(TypeError, match="a bug"):
        det(np.zeros((32, 32, 3), np.uint8))


def test_a_failed_blob_allocation_is_out_of_memory(monkeypatch):
    from defectrt.runtime import detector as detector_mod

    def no_memory(*a, **k):
        raise MemoryError()

    det = Detector(_Failing(RuntimeError("unused")))
    monkeypatch.setattr(detector_mod, "_preprocess", no_memory)
    with pytest.raises(OutOfMemory, match=r"preprocessing 2 image\(s\) to 32x32.*--batch"):
        det([np.zeros((8, 8, 3), np.uint8)] * 2)


def test_onnx_runtime_load_failures(tmp_path, monkeypatch):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all")
    with pytest.raises(UnsupportedFormat, match="bad.onnx.*Re-export"):
        Detector(str(bad))
    import onnxruntime as ort

    def oom(*a, **k):
        raise _OrtFail("[ONNXRuntimeError] : 1 : FAIL : bad_alloc while creating the session")

    good = save(rect_finder(), str(tmp_path / "good.onnx"))
    monkeypatch.setattr(ort, "InferenceSession", oom)
    with pytest.raises(OutOfMemory, match="good.onnx: ONNX Runtime loading it: out of memory"):
        Detector(good)


def test_missing_onnx_runtime_is_backend_unavailable(tmp_path, monkeypatch):
    good = save(rect_finder(), str(tmp_path / "good.onnx"))
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError
    with pytest.raises(BackendUnavailable, match="good.onnx.*pip install onnxruntime"):
        Detector(good)


def test_openvino_load_failure_is_unsupported_format(tmp_path):
    pytest.importorskip("openvino")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all")
    with pytest.raises(UnsupportedFormat, match="bad.onnx: OpenVINO cannot load it.*backend='onnxruntime'"):
        Detector(str(bad), backend="openvino")


def test_wrong_model_files_are_unsupported_format(tmp_path):
    weird = tmp_path / "model.tflite"
    weird.write_bytes(b"x")
    with pytest.raises(UnsupportedFormat, match="model.tflite: unknown model type; expected .onnx"):
        Detector(str(weird))
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    with pytest.raises(UnsupportedFormat, match="m.engine is a TensorRT engine; ONNX Runtime needs the .onnx"):
        Detector(str(engine), backend="onnxruntime")


def test_bundle_format_problems_are_unsupported_format(tmp_path):
    folder = make_bundle(str(tmp_path / "b"), rect_finder())
    path = os.path.join(folder, "manifest.json")
    with open(path) as f:
        good = json.load(f)
    for text, words in (("{not json", "not valid JSON"), (json.dumps(dict(good, format="other")), "format is 'other'"),
                        (json.dumps(dict(good, files={})), "no `files` hashes")):
        with open(path, "w") as f:
            f.write(text)
        with pytest.raises(UnsupportedFormat) as info:
            bundle.Manifest.read(folder)
        assert path in str(info.value) and words in str(info.value) and "rebuild" in str(info.value)
    os.remove(path)
    with pytest.raises(UnsupportedFormat, match="not a bundle.*defectrt export build"):
        bundle.Manifest.read(folder)


def test_bundle_file_problems_have_the_native_librarys_statuses(tmp_path):
    # native/src/bundle.cpp: a listed file missing -> NotFound; changed bytes, a malformed hash or path, an
    # unlisted model -> UnsupportedFormat. The Python runtime must say the same status for the same bundle.
    from defectrt.errors import NotFound

    folder = make_bundle(str(tmp_path / "b"), rect_finder())
    path = os.path.join(folder, "manifest.json")
    with open(path) as f:
        good = json.load(f)
    model = os.path.join(folder, "model.onnx")
    with open(model, "ab") as f:
        f.write(b"\0")
    with pytest.raises(UnsupportedFormat, match="model.onnx does not match its sha256.*copy the bundle again"):
        bundle.Manifest.read(folder, verify=True)
    os.remove(model)
    with pytest.raises(NotFound, match="model.onnx is listed in manifest.json but missing"):
        bundle.Manifest.read(folder, verify=True)
    for files, words in (({"model.onnx": "xyz"}, "not 64 hex digits"), ({"../x": "0" * 64}, "'../x'"),
                         ({"other.onnx": "0" * 64}, "model file model.onnx is not listed")):
        with open(path, "w") as f:
            json.dump(dict(good, files=files), f)
        with pytest.raises(UnsupportedFormat, match=words) as info:
            bundle.Manifest.read(folder)
        assert info.value.status == "UnsupportedFormat"


def test_tensorrt_engine_choice_errors(tmp_path):
    record = {"file": "model.engine", "tensorrt_version": "10.3.0"}
    m = bundle.Manifest.from_json({"model": "model.onnx", "engine": record})
    with pytest.raises(BackendUnavailable, match="TensorRT is not installed here.*--engine --force"):
        bundle.choose_backend(str(tmp_path), m, "tensorrt", None)
    with pytest.raises(UnsupportedFormat, match="built with TensorRT 10.3.0, this device has 8.6.2"):
        bundle.choose_backend(str(tmp_path), m, "tensorrt", "8.6.2")


def test_cli_prints_runtime_kinds_as_one_line_and_exits_1(monkeypatch, capsys):
    from defectrt.cli import main, verify_cmd

    def fails(args):
        raise OutOfMemory("b.bundle: out of memory (bad_alloc); " + errors.MEMORY_HINT)

    monkeypatch.setattr(verify_cmd, "run", fails)
    assert main(["verify", "b.bundle"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("defectrt verify: error: b.bundle: out of memory") and "Traceback" not in "".join(err)


def test_files_of_the_wrong_kind_are_unsupported_format(tmp_path):
    from defectrt.bench import flops, report
    from defectrt.export.check import load_onnx

    garbage = tmp_path / "m.onnx"
    garbage.write_bytes(b"\x00not an onnx file")
    for call in (lambda: load_onnx(str(garbage)), lambda: flops.count_flops(str(garbage))):
        with pytest.raises(UnsupportedFormat) as info:
            call()
        assert str(garbage) in str(info.value) and "defectrt export onnx" in str(info.value)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"schema": "something-else"}))
    with pytest.raises(UnsupportedFormat, match="other.json: not a defectrt bench report.*--json"):
        report.load(str(other))


def test_serving_a_folder_that_is_not_a_bundle_is_unsupported_format(tmp_path):
    from defectrt.serving.server import serve

    with pytest.raises(UnsupportedFormat, match="not a bundle folder.*defectrt export build"):
        serve(str(tmp_path))
