"""Validate a detector on a YOLO dataset split: mAP50, mAP50-95, precision, recall (no torch).

    from defectrt import Detector
    from defectrt.data.val import evaluate
    res = evaluate(Detector("screw.bundle", conf=0.001, iou=0.6), "datasets/screw", split="val")
    print(format_table(res))

`detector` is anything with the runtime Detector call interface: `detector([img, ...])` on BGR uint8
images returns one Detections (`.boxes` x1, y1, x2, y2 original pixels, `.scores`, `.class_ids`) per
image. For mAP, build it with a low confidence threshold (0.001) so the whole precision-recall curve
is seen; the precision / recall columns are then taken at the max-F1 threshold (see metrics.py).
"""
from __future__ import annotations

import time

import numpy as np

from defectrt.data.dataset import Dataset, load_dataset
from defectrt.data.metrics import detection_metrics
from defectrt.errors import UserInputError


def evaluate(detector, dataset, split="val", batch=8, conf=None, max_dets=300, names=None, progress=False,
             keep=None):
    """Run `detector` over a dataset split and score it.

    dataset: a Dataset, or a path for load_dataset(path, split). conf: see detection_metrics.
    names: class names to report under (default: the dataset's). keep: a list that receives the
    (ground truth, detections) pair of every image, for scores beyond these (the accuracy gate's paired
    bootstrap). Returns detection_metrics' dict plus "seconds" (wall time of the whole run) and "split".
    """
    if not isinstance(dataset, Dataset):
        dataset = load_dataset(dataset, split)
    if int(batch) < 1:
        raise UserInputError("--batch {}: use at least 1".format(batch))
    names = list(names) if names is not None else dataset.names
    truths, preds = [], []
    t0 = time.perf_counter()
    images = dataset.images()
    if progress:
        from defectrt import progress  # issue 19: on a terminal only, none at -q

        images = progress.bar(images, total=len(dataset), desc="val", unit="img")
    pending = []

    def flush():
        out = detector([img for _, img in pending])
        out = list(out) if not hasattr(out, "boxes") else [out]
        if len(out) != len(pending):
            raise RuntimeError("the detector returned {} results for {} images".format(len(out), len(pending)))
        for (item, img), det in zip(pending, out):
            truths.append((Dataset.boxes_xyxy(item.labels, img.shape), item.labels[:, 0].astype(np.int64)))
            preds.append(det)
        del pending[:]

    for item, img in images:
        pending.append((item, img))
        if len(pending) >= batch:
            flush()
    if pending:
        flush()
    if keep is not None:
        keep.extend(zip(truths, preds))
    res = detection_metrics(truths, preds, names, conf=conf, max_dets=max_dets)
    res["seconds"] = time.perf_counter() - t0
    res["split"] = dataset.split
    return res


def _fmt(v, digits=3):
    return "-" if v is None else "{:.{}f}".format(v, digits)


def format_table(res):
    """The result of evaluate() as a text table: one "all" row, then one row per class."""
    names = list(res["per_class"])
    width = max([len(n) for n in names] + [5])
    head = "{:<{w}} {:>7} {:>9} {:>7} {:>7} {:>7} {:>9}".format("class", "images", "instances", "P", "R", "mAP50",
                                                               "mAP50-95", w=width)
    rows = [head]
    total = sum(res["instances"].values())
    rows.append("{:<{w}} {:>7} {:>9} {:>7} {:>7} {:>7} {:>9}".format(
        "all", res["images"], total, _fmt(res["precision"]), _fmt(res["recall"]), _fmt(res["map50"]),
        _fmt(res["map50_95"]), w=width))
    for n in names:
        m = res["per_class"][n]
        rows.append("{:<{w}} {:>7} {:>9} {:>7} {:>7} {:>7} {:>9}".format(
            n, "", res["instances"][n], _fmt(m["precision"]), _fmt(m["recall"]), _fmt(m["map50"]),
            _fmt(m["map50_95"]), w=width))
    if res.get("conf") is not None:
        rows.append("(P and R at IoU 0.5 and confidence {:.3f})".format(res["conf"]))
    return "\n".join(rows)
