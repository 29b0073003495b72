import json
import sys
import types

import numpy as np
import pytest

from defectrt.cli import main
from defectrt.cli import val_cmd
from defectrt.data import synth
from defectrt.data.dataset import Dataset, load_dataset
from defectrt.data.val import evaluate, format_table


class Dets(object):
    def __init__(self, boxes, scores, class_ids):
        self.boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        self.scores = np.asarray(scores, np.float32)
        self.class_ids = np.asarray(class_ids, np.int64)


class FakeDetector(object):
    """Answers with the ground truth of the dataset, in order; `drop` classes are never found."""

    def __init__(self, dataset, drop=(), jitter=0.0, names=None):
        self.items = list(dataset.items)
        self.drop = set(drop)
        self.jitter = jitter
        self.names = names if names is not None else dict(enumerate(dataset.names))
        self.calls = []

    def __call__(self, images):
        self.calls.append(len(images))
        out = []
        for img in images:
            it = self.items.pop(0)
            keep = [c not in self.drop for c in it.labels[:, 0].astype(int)]
            boxes = Dataset.boxes_xyxy(it.labels, img.shape)[keep]
            boxes = boxes + self.jitter
            out.append(Dets(boxes, np.full(len(boxes), 0.9), it.labels[keep, 0]))
        return out


@pytest.fixture(scope="module")
def screw_ds(tmp_path_factory):
    root = tmp_path_factory.mktemp("val") / "screw"
    synth.write_dataset(root, kind="screw", n=8, imgsz=(160, 256), seed=1, val_fraction=0.5, progress=False)
    return str(root)


def test_evaluate_perfect_and_missing_class(screw_ds):
    ds = load_dataset(screw_ds, "val")
    det = FakeDetector(ds)
    r = evaluate(det, ds, batch=3)
    assert det.calls == [3, 1]
    assert r["map50"] == pytest.approx(1.0) and r["map50_95"] == pytest.approx(1.0)
    present = [n for n, c in r["instances"].items() if c > 0]
    assert len(present) >= 2
    r = evaluate(FakeDetector(ds, drop=[ds.names.index(present[0])]), screw_ds, split="val")
    assert r["per_class"][present[0]]["map50"] == 0.0 and r["per_class"][present[0]]["recall"] == 0.0
    assert r["per_class"][present[1]]["map50"] == pytest.approx(1.0)
    assert r["map50"] == pytest.approx(1 - 1.0 / len(present))
    table = format_table(r)
    assert table.splitlines()[1].split()[0] == "all" and all(n in table for n in ds.names)


def test_val_cli_prints_table_and_writes_json(screw_ds, tmp_path, monkeypatch, capsys):
    made = {}

    def fake_make(model, options):
        made["model"], made["options"] = model, options
        return FakeDetector(load_dataset(screw_ds, "val"), jitter=1.0)

    monkeypatch.setattr(val_cmd, "make_detector", fake_make)
    out = tmp_path / "m.json"
    rc = main(["val", "--model", "m.onnx", "--data", screw_ds, "--imgsz", "160", "256", "--conf", "0.01",
               "--iou", "0.5", "--json", str(out)])
    assert rc == 0
    o = made["options"]  # one DetectorOptions, built from the shared flags and passed whole
    assert made["model"] == "m.onnx" and o.imgsz == (160, 256) and o.conf == 0.01 and o.iou == 0.5 and o.max_det == 300
    text = capsys.readouterr().out
    assert "mAP50-95" in text and "scratch" in text
    res = json.loads(out.read_text())
    assert set(res) >= {"precision", "recall", "map50", "map50_95", "per_class"}
    assert set(res["per_class"]) == set(synth.SCREW_NAMES)
    assert res["map50"] == pytest.approx(1.0) and res["map50_95"] < 1.0  # 1 px shift costs at IoU 0.95
    rc = main(["val", "--model", "m.onnx", "--data", screw_ds, "--json", str(out)])
    assert rc == 1 and "already exists" in capsys.readouterr().err


def test_val_cli_reports_bad_dataset(tmp_path, capsys):
    rc = main(["val", "--model", "m.onnx", "--data", str(tmp_path / "missing")])
    assert rc == 1 and "no such dataset" in capsys.readouterr().err


def test_make_detector_routes_runtime_and_torch_models(tmp_path, monkeypatch):
    calls = []

    class FakeDetectorCls(object):
        def __init__(self, model, **kw):
            calls.append(("Detector", model, kw))

    class FakeTorchBackend(object):
        def __init__(self, ref, imgsz=None):
            calls.append(("TorchBackend", ref, imgsz))

    import defectrt.runtime.detector as det_mod

    monkeypatch.setattr(det_mod, "Detector", FakeDetectorCls)
    monkeypatch.setitem(sys.modules, "defectrt.models.torch_backend",
                        types.SimpleNamespace(TorchBackend=FakeTorchBackend))
    val_cmd.make_detector("a.onnx", imgsz=(320, 320), conf=0.001, iou=0.6)
    assert calls[-1][0] == "Detector" and calls[-1][1] == "a.onnx" and calls[-1][2]["options"].conf == 0.001
    assert calls[-1][2]["options"].imgsz == (320, 320)
    val_cmd.make_detector("a.onnx")  # the keyword form keeps val's low thresholds
    assert (calls[-1][2]["options"].conf, calls[-1][2]["options"].iou) == (0.001, 0.6)
    val_cmd.make_detector(str(tmp_path), conf=0.001)  # a bundle folder
    assert calls[-1][:2] == ("Detector", str(tmp_path))
    val_cmd.make_detector("demo:screw", imgsz=(384, 672))
    assert calls[-2] == ("TorchBackend", "demo:screw", (384, 672))
    assert calls[-1][0] == "Detector" and isinstance(calls[-1][1], FakeTorchBackend)
    val_cmd.make_detector("yolo11n-dysample")
    assert calls[-2][:2] == ("TorchBackend", "yolo11n-dysample")


def test_data_synth_cli(tmp_path, capsys):
    out = tmp_path / "pcb"
    rc = main(["data", "synth", "--kind", "pcb", "--n", "2", "--imgsz", "192", "--seed", "3", "-o", str(out),
               "--quiet"])
    assert rc == 0 and "wrote 1 train + 1 val images (192x192" in capsys.readouterr().out
    assert load_dataset(str(out), "train").names == list(synth.PCB_NAMES)
    rc = main(["data", "synth", "--kind", "pcb", "--n", "2", "-o", str(out), "--quiet"])
    assert rc == 1 and "--force" in capsys.readouterr().err
