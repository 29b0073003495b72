"""runtime.bundle.Manifest: a frozen, typed manifest that reads and writes manifest.json without changing it
(keys, their order, nulls, and the keys of newer writers it does not know)."""
import dataclasses
import json
import os

import pytest

from defectrt.errors import InvalidArgument
from defectrt.runtime import bundle
from defectrt.runtime.bundle import EngineRecord, Letterbox, Manifest, Thresholds
from manifest_schema import schema_errors
from test_runtime_models import make_bundle, rect_finder


def _text(folder):
    with open(os.path.join(folder, "manifest.json")) as f:
        return f.read()


def test_a_built_bundles_manifest_is_written_back_byte_for_byte(demo_bundle, tmp_path):
    """What export build wrote is what the Manifest type writes: same keys, order, nulls and bytes."""
    m = Manifest.read(demo_bundle)
    assert m.engine is None and m.val is None and m.precision == "fp32" and m.imgsz == (384, 672)
    assert isinstance(m.letterbox, Letterbox) and m.letterbox.pad_value == 114 and m.batch.size == 1
    assert m.golden.inputs == "golden/inputs.json" and m.golden.atol > 0 and m.device_scripts["sh"]
    m.write(str(tmp_path))
    assert _text(str(tmp_path)) == _text(demo_bundle)
    assert schema_errors(json.loads(_text(str(tmp_path)))) == []


def test_unknown_keys_nulls_and_absent_keys_survive_a_round_trip(tmp_path):
    folder = make_bundle(str(tmp_path / "b"), rect_finder())
    with open(os.path.join(folder, "manifest.json")) as f:
        data = json.load(f)
    data["from_a_newer_defectrt"] = {"x": [1, 2]}
    data["letterbox"] = {"pad_value": 0, "future_option": True}
    data["engine"] = None
    data.pop("model", None)  # absent: the reader's default (model.onnx), and absent again when written
    data["thresholds"] = {"max_det": 5, "conf": 0.4}
    m = Manifest.from_json(data)
    assert m.extra == {"from_a_newer_defectrt": {"x": [1, 2]}} and m.letterbox.extra == {"future_option": True}
    assert m.model == "model.onnx" and m.pad_value == 0 and m.stored_thresholds() == {"conf": 0.4, "max_det": 5}
    assert list(m.to_json().items()) == list(data.items())  # same keys, same order, same values
    assert list(m.to_json()["thresholds"]) == ["max_det", "conf"]
    # a change is a copy; a key set later is written after the others, unknown keys stay
    changed = m.set(engine=EngineRecord.create(file="model.engine", tensorrt_version="10.3.0"), precision="fp16")
    assert m.engine is None and m.precision is None
    out = changed.to_json()
    assert out["engine"] == {"file": "model.engine", "tensorrt_version": "10.3.0"}
    assert list(out)[-1] == "precision" and out["from_a_newer_defectrt"] == {"x": [1, 2]}
    with pytest.raises(dataclasses.FrozenInstanceError):
        changed.engine = None


def test_a_new_manifest_writes_the_keys_it_was_given_in_field_order():
    m = Manifest.create(imgsz=(64, 96), format="defectrt-bundle", engine=None,
                        thresholds=Thresholds.create(iou=0.5, conf=0.2))
    assert m.to_json() == {"format": "defectrt-bundle", "imgsz": [64, 96], "thresholds": {"conf": 0.2, "iou": 0.5},
                           "engine": None}
    assert list(m.to_json()) == ["format", "imgsz", "thresholds", "engine"]
    assert list(m.to_json()["thresholds"]) == ["conf", "iou"]


@pytest.mark.parametrize("key", ["letterbox", "thresholds", "batch", "golden", "build", "engine", "val", "runtime"])
def test_a_record_that_is_not_an_object_is_refused_naming_the_file_and_key(tmp_path, key):
    folder = make_bundle(str(tmp_path / "b"), rect_finder())
    path = os.path.join(folder, "manifest.json")
    with open(path) as f:
        data = json.load(f)
    data[key] = [1, 2]
    with open(path, "w") as f:
        json.dump(data, f)
    with pytest.raises(InvalidArgument) as exc:
        Manifest.read(folder)
    assert path in str(exc.value) and "`{}`".format(key) in str(exc.value) and "rebuild" in str(exc.value)


def test_peek_reads_what_it_can_and_never_raises(tmp_path):
    folder = make_bundle(str(tmp_path / "b"), rect_finder())
    assert Manifest.peek(folder).imgsz == (384, 672) and Manifest.peek(str(tmp_path)) is None
    with open(os.path.join(folder, "manifest.json"), "w") as f:
        f.write('{"engine": 3')
    assert Manifest.peek(folder) is None


def test_engine_compatibility_takes_the_record_or_its_json():
    record = {"file": "model.engine", "tensorrt_version": "10.3.0", "gpu_name": "Orin"}
    gpu = {"gpu_name": "Orin", "compute_capability": "8.7"}
    assert bundle.engine_compatibility(record, "10.3.0", gpu)[0]
    assert bundle.engine_compatibility(EngineRecord.from_json(record), "10.3.0", gpu)[0]
    assert not bundle.engine_compatibility(EngineRecord(), "10.3.0", gpu)[0]
