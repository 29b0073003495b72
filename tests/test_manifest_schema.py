"""docs/manifest.schema.json: the manifests our writers produce pass it, and what the readers refuse fails it.

Real `export build` manifests are validated in tests/test_bundle_build.py (Python reader) and
tests/test_native.py (the native reader loads the same schema-valid bundles).
"""
import json
import os

import pytest

from defectrt.errors import UserInputError
from defectrt.runtime import bundle
from manifest_schema import schema_errors
from test_runtime_models import make_bundle, rect_finder


def test_a_test_bundle_manifest_is_schema_valid_and_loads(tmp_path):
    folder = make_bundle(str(tmp_path / "b"), rect_finder(), engine_record={"file": "model.onnx"})
    with open(os.path.join(folder, "manifest.json")) as f:
        manifest = json.load(f)
    assert schema_errors(manifest) == []
    assert bundle.read_manifest(folder)["format"] == "defectrt-bundle"


@pytest.mark.parametrize("change,where", [
    ({"model": "../model.onnx"}, "model"),
    ({"model": "/etc/passwd"}, "model"),
    ({"files": {"a\\b": "0" * 64}}, "files"),
    ({"files": {"model.onnx": "not-a-hash"}}, "files/model.onnx"),
    ({"imgsz": [40000, 40000]}, "imgsz/0"),
    ({"names": {"1000000000": "x"}}, "names"),
    ({"letterbox": {"pad_value": 300}}, "letterbox/pad_value"),
    ({"thresholds": {"conf": 1.5}}, "thresholds/conf"),
    ({"format": "something-else"}, "format"),
    ({"engine": {"file": "a/../../x.engine"}}, "engine"),
])
def test_what_the_readers_refuse_the_schema_refuses(tmp_path, change, where):
    folder = make_bundle(str(tmp_path / "b"), rect_finder())
    with open(os.path.join(folder, "manifest.json")) as f:
        manifest = json.load(f)
    manifest.update(change)
    errors = schema_errors(manifest)
    assert errors and any(e.startswith(where) for e in errors), errors
    with open(os.path.join(folder, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    with pytest.raises(UserInputError):  # the Python reader (and Detector) refuse it too
        m = bundle.Manifest.read(folder)
        assert m.pad_value is not None and m.stored_thresholds() is not None
        bundle.resolve_file(folder, m.model)
