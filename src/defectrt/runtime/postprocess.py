"""Model outputs -> Detections in original-image pixels.

Three output layouts are read (the layout is told by the outputs themselves, not by metadata, so a
model whose metadata was lost still decodes):
- raw `(B, 4 + nc, A)` (`output0`): cx, cy, w, h in input pixels and class scores. Decoded here:
  confidence filter, class-aware NMS (defectrt.runtime.nms), max_det.
- EfficientNMS_TRT's four outputs `num_dets (B, 1)`, `det_boxes (B, K, 4)` x1, y1, x2, y2 in input
  pixels, `det_scores (B, K)`, `det_classes (B, K)`: NMS already ran in the graph.
- `detections (N, 7)` rows [batch, x1, y1, x2, y2, score, class] (defectrt's ONNX NonMaxSuppression
  export): NMS already ran; rows are grouped per image and capped at max_det here.
In-graph NMS was run with the thresholds baked in at export; conf, classes and max_det are still applied
here, so they can only tighten it.

`classes=[...]` restricts the candidate classes: an anchor's score is its best score among those
classes (so asking for "scratch" finds scratches even where "dent" scored higher on the same anchor).
"""
from __future__ import annotations

import json

import numpy as np

from defectrt.errors import UserInputError
from defectrt.runtime.nms import batched_nms

# Candidates kept for NMS after the confidence filter: bounds NMS time at very low thresholds (mAP runs).
MAX_NMS = 30000
EFFICIENT_NMS_OUTPUTS = ("num_dets", "det_boxes", "det_scores", "det_classes")


class Detections(object):
    """Detections of one image: boxes (N, 4) float32 x1, y1, x2, y2 in original pixels, scores (N,)
    float32, class_ids (N,) int64, names (N,) list of str, image_shape (h, w)."""

    __slots__ = ("boxes", "scores", "class_ids", "names", "image_shape")

    def __init__(self, boxes, scores, class_ids, names, image_shape=None):
        self.boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        self.class_ids = np.asarray(class_ids, dtype=np.int64).reshape(-1)
        self.names = [str(n) for n in names]
        self.image_shape = tuple(int(v) for v in image_shape) if image_shape is not None else None
        if not (len(self.boxes) == len(self.scores) == len(self.class_ids) == len(self.names)):
            raise ValueError("Detections: boxes, scores, class_ids and names differ in length")

    @classmethod
    def empty(cls, image_shape=None):
        return cls(np.zeros((0, 4)), [], [], [], image_shape)

    def __len__(self):
        return len(self.scores)

    def __repr__(self):
        return "Detections({} on {}: {})".format(len(self), self.image_shape, ", ".join(
            "{} {:.2f}".format(n, s) for n, s in zip(self.names[:5], self.scores[:5])) + (" ..." if len(self) > 5 else ""))

    def to_dict(self):
        """JSON-serialisable; float32 values go through float() so from_dict restores them bit-exactly."""
        return {
            "image_shape": list(self.image_shape) if self.image_shape is not None else None,
            "detections": [
                {"class_id": int(c), "name": n, "score": float(s), "box": [float(v) for v in b]}
                for b, s, c, n in zip(self.boxes, self.scores, self.class_ids, self.names)
            ],
        }

    def to_json(self):
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d):
        dets = d.get("detections", [])
        return cls([x["box"] for x in dets] or np.zeros((0, 4)), [x["score"] for x in dets],
                   [x["class_id"] for x in dets], [x["name"] for x in dets], d.get("image_shape"))


def class_name(names, i):
    return (names or {}).get(int(i), "class{}".format(int(i)))


def _make(boxes, scores, cls, info, names):
    boxes = info.to_original(boxes) if info is not None else np.asarray(boxes, np.float32)
    shape = info.orig_shape if info is not None else None
    return Detections(boxes, scores, cls, [class_name(names, c) for c in cls], shape)


def _candidate_classes(classes, nc):
    if classes is None:
        return None
    idx = np.unique(np.asarray(list(classes), dtype=np.int64).reshape(-1))
    if idx.size and (idx.min() < 0 or idx.max() >= nc):
        raise UserInputError("classes {}: the model has {} classes (ids 0..{})".format(list(classes), nc, nc - 1))
    return idx


def decode(pred_b, conf, iou, max_det, classes=None):
    """One image's raw (4 + nc, A) -> (boxes xyxy (N, 4), scores (N,), class ids (N,)) in input pixels."""
    nc = pred_b.shape[0] - 4
    if nc < 1:
        raise UserInputError("model output has {} rows; expected 4 box rows plus at least one class".format(pred_b.shape[0]))
    scores = pred_b[4:]
    idx = _candidate_classes(classes, nc)
    if idx is not None:
        scores = scores[idx]
    best = scores.max(0) if scores.shape[0] else np.zeros(pred_b.shape[1], pred_b.dtype)
    anchors = np.flatnonzero(best > conf)
    if anchors.size > MAX_NMS:
        anchors = anchors[np.argsort(-best[anchors], kind="stable")[:MAX_NMS]]
    score = best[anchors]
    cls = scores[:, anchors].argmax(0)
    if idx is not None:
        cls = idx[cls]
    cx, cy, w, h = (pred_b[k, anchors].astype(np.float64) for k in range(4))
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    keep = batched_nms(boxes, score, cls, iou, max_det)
    return boxes[keep], score[keep], cls[keep]


def _filter(boxes, scores, cls, conf, max_det, classes):
    keep = scores > conf
    if classes is not None:
        keep &= np.isin(cls, np.asarray(list(classes), dtype=np.int64))
    boxes, scores, cls = boxes[keep], scores[keep], cls[keep]
    order = np.argsort(-scores, kind="stable")[:max_det]
    return boxes[order], scores[order], cls[order]


def _as_layout(pred):
    """-> ("raw", array) | ("efficient", (num, boxes, scores, classes)) | ("rows", array)."""
    if isinstance(pred, dict):
        if all(k in pred for k in EFFICIENT_NMS_OUTPUTS):
            return "efficient", tuple(np.asarray(pred[k]) for k in EFFICIENT_NMS_OUTPUTS)
        if "detections" in pred:
            return "rows", np.asarray(pred["detections"])
        if "output0" in pred:
            return "raw", np.asarray(pred["output0"])
        if len(pred) == 1:
            return _as_layout(next(iter(pred.values())))
        raise UserInputError("model outputs {} are none of the known layouts (output0; num_dets/det_boxes/"
                             "det_scores/det_classes; detections)".format(sorted(pred)))
    if isinstance(pred, (list, tuple)):
        if len(pred) == 1:
            return _as_layout(pred[0])
        if len(pred) == 4:
            return "efficient", tuple(np.asarray(p) for p in pred)
        raise UserInputError("model returned {} outputs; expected 1 (raw) or 4 (EfficientNMS)".format(len(pred)))
    pred = np.asarray(pred)
    if pred.ndim == 3:
        return "raw", pred
    if pred.ndim == 2 and pred.shape[1] == 7:
        return "rows", pred
    raise UserInputError("model output has shape {}; expected (B, 4 + nc, A) or (N, 7) detections".format(pred.shape))


def finite_only(kind, data):
    """Drop detections with a NaN / Inf score or box (a broken engine, an FP16 overflow): they would
    pass or fail the confidence test at random and give boxes that cannot be drawn or compared.

    raw: the scores of such anchors become 0 (never above conf); efficient: their scores become -1;
    rows: they are removed. A finite array (the usual case) costs one np.isfinite pass (measured faster than
    a sum) and is returned as is.
    """
    if kind == "efficient":
        num, boxes, scores, cls = data
        if np.isfinite(boxes).all() and np.isfinite(scores).all():
            return kind, data
        bad = ~(np.isfinite(boxes).all(-1) & np.isfinite(scores) & np.isfinite(cls.astype(np.float64)))
        return kind, (num, np.nan_to_num(boxes), np.where(bad, -1.0, scores).astype(scores.dtype), np.nan_to_num(cls))
    arr = np.asarray(data)
    if not np.issubdtype(arr.dtype, np.floating) or np.isfinite(arr).all():
        return kind, data
    if kind == "raw":  # (B, 4 + nc, A)
        bad = ~np.isfinite(arr).all(1)
        arr = np.nan_to_num(arr)  # a copy: the backend's buffer is left alone
        arr[:, 4:, :] *= ~bad[:, None, :]
        return kind, arr
    return kind, arr.reshape(-1, 7)[np.isfinite(arr.reshape(-1, 7)).all(1)]


def postprocess(pred, infos, conf=0.25, iou=0.45, max_det=300, classes=None, names=None):
    """Model output(s) for a batch -> [Detections], one per LetterboxInfo in `infos`."""
    kind, data = finite_only(*_as_layout(pred))
    out = []
    if kind == "raw":
        data = np.asarray(data, dtype=np.float32)
        if data.shape[0] < len(infos):
            raise UserInputError("model returned {} images for a batch of {}".format(data.shape[0], len(infos)))
        for b, info in enumerate(infos):
            boxes, scores, cls = decode(data[b], conf, iou, max_det, classes)
            out.append(_make(boxes, scores, cls, info, names))
        return out
    if kind == "efficient":
        num, boxes, scores, cls = data
        num = num.reshape(num.shape[0], -1)[:, 0].astype(np.int64)
        for b, info in enumerate(infos):
            n = int(min(num[b], boxes.shape[1]))
            res = _filter(boxes[b, :n].astype(np.float64), scores[b, :n].astype(np.float32),
                          cls[b, :n].astype(np.int64), conf, max_det, classes)
            out.append(_make(res[0], res[1], res[2], info, names))
        return out
    rows = np.asarray(data, dtype=np.float64).reshape(-1, 7)
    batch_ids = rows[:, 0].astype(np.int64)
    for b, info in enumerate(infos):
        r = rows[batch_ids == b]
        res = _filter(r[:, 1:5], r[:, 5].astype(np.float32), r[:, 6].astype(np.int64), conf, max_det, classes)
        out.append(_make(res[0], res[1], res[2], info, names))
    return out
