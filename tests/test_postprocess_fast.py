"""The fast class-aware NMS (prefix + grouped fixed point, offset fallback) against a plain greedy reference.

The reference is the pre-#18 algorithm written out simply: candidates in stable score order, a box kept
when no kept box of its class overlaps it by IoU > threshold, stop at max_det.
"""
import numpy as np
import pytest

from defectrt.runtime import nms as nms_mod
from defectrt.runtime.nms import batched_nms, top_order
from defectrt.runtime.postprocess import postprocess


def _reference(boxes, scores, cls, thr, max_det):
    boxes = np.asarray(boxes, np.float64)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    kept = []
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        if len(kept) >= max_det:
            break
        k = np.asarray([j for j in kept if cls[j] == cls[i]], np.int64)
        if k.size:
            w = np.clip(np.minimum(boxes[k, 2], boxes[i, 2]) - np.maximum(boxes[k, 0], boxes[i, 0]), 0, None)
            h = np.clip(np.minimum(boxes[k, 3], boxes[i, 3]) - np.maximum(boxes[k, 1], boxes[i, 1]), 0, None)
            inter = w * h
            union = area[k] + area[i] - inter
            iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0)
            if (iou > thr).any():
                continue
        kept.append(int(i))
    return kept


def _random_case(seed, n, nc, size=80.0, quantize=False):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 640, (n, 2))
    wh = rng.uniform(size / 4, size, (n, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    scores = rng.uniform(0.25, 1, n).astype(np.float32)
    if quantize:  # many exact ties: order must fall back to the lower index, as a stable sort does
        scores = np.round(scores * 20) / 20
    return boxes, scores, rng.integers(0, nc, n)


@pytest.mark.parametrize("seed,n,nc,size,thr,max_det,quantize", [
    (0, 3000, 80, 120.0, 0.45, 300, False),   # many classes, mostly kept: the worst case of the issue
    (1, 2000, 1, 200.0, 0.45, 300, False),    # one class, heavy overlap: the prefix must widen to all
    (2, 1500, 4, 60.0, 0.7, 50, True),        # ties
    (3, 800, 3, 300.0, 0.3, 1000, False),     # max_det above n
    (4, 5, 2, 50.0, 0.5, 300, True),
])
def test_batched_nms_matches_plain_greedy(seed, n, nc, size, thr, max_det, quantize):
    boxes, scores, cls = _random_case(seed, n, nc, size, quantize)
    got = batched_nms(boxes, scores, cls, thr, max_det)
    assert got.tolist() == _reference(boxes, scores, cls, thr, max_det)


def test_offset_fallback_and_long_chains_match(monkeypatch):
    # A chain: each box suppresses the next only (IoU 0.6 > 0.5 between neighbours, 0.2 two apart), so
    # the fixed point needs one step per link and the sweep finishes it.
    n = 40
    x = np.arange(n, dtype=np.float64) * 2.5
    boxes = np.stack([x, np.zeros(n), x + 10, np.full(n, 10.0)], 1)
    scores = np.linspace(0.9, 0.3, n).astype(np.float32)
    cls = np.zeros(n, np.int64)
    ref = _reference(boxes, scores, cls, 0.5, 300)
    assert batched_nms(boxes, scores, cls, 0.5) .tolist() == ref
    assert ref == list(range(0, n, 2))
    boxes, scores, cls = _random_case(5, 1200, 3, 150.0)
    ref = _reference(boxes, scores, cls, 0.45, 100)
    monkeypatch.setattr(nms_mod, "GROUPED_MAX_PAIRS", 10)  # force the offset path (OpenCV or numpy)
    assert batched_nms(boxes, scores, cls, 0.45, 100).tolist() == ref
    monkeypatch.setattr(nms_mod, "_CV2_OK", False)
    assert batched_nms(boxes, scores, cls, 0.45, 100).tolist() == ref


def test_top_order_is_a_stable_sort_prefix():
    rng = np.random.default_rng(3)
    s = np.round(rng.uniform(0, 1, 500), 1).astype(np.float32)  # 11 distinct values: ties everywhere
    full = np.argsort(-s, kind="stable")
    for k in (1, 7, 50, 499, 500, 900):
        assert top_order(s, k).tolist() == full[:k].tolist()


def test_postprocess_worst_case_output_matches_reference():
    """A YOLO11n-like dense output (every anchor over conf, 80 classes) through postprocess."""
    rng = np.random.default_rng(11)
    nc, a = 80, 2100
    raw = np.zeros((1, 4 + nc, a), np.float32)
    raw[0, :2] = rng.uniform(0, 640, (2, a))
    raw[0, 2:4] = rng.uniform(60, 240, (2, a))
    raw[0, 4:] = rng.uniform(0.3, 0.7, (nc, a))
    det = postprocess(raw, [None], conf=0.25, iou=0.45, max_det=300)[0]
    q = raw[0]
    boxes = np.stack([q[0] - q[2] / 2, q[1] - q[3] / 2, q[0] + q[2] / 2, q[1] + q[3] / 2], 1).astype(np.float64)
    ref = _reference(boxes, q[4:].max(0), q[4:].argmax(0), 0.45, 300)
    assert len(det) == len(ref) == 300
    np.testing.assert_array_equal(det.scores, q[4:].max(0)[ref])
    np.testing.assert_allclose(det.boxes, boxes[ref], atol=1e-4)
