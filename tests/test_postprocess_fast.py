"""The fast class-aware NMS (prefix + grouped fixed point, windowed kept-box loop) against a plain greedy reference.

The reference is the pre-#18 algorithm written out simply: candidates in stable score order, a box kept
when no kept box of its class overlaps it by IoU > threshold, stop at max_det.
"""
import numpy as np
import pytest

from defectrt.runtime import nms as nms_mod
from defectrt.runtime.nms import batched_nms, top_order, window_reach
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


def test_windowed_loop_and_long_chains_match(monkeypatch):
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
    monkeypatch.setattr(nms_mod, "GROUPED_MAX_PAIRS", 10)  # force the windowed kept-box loop
    assert batched_nms(boxes, scores, cls, 0.5).tolist() == ref
    for seed, thr, quantize in ((5, 0.45, False), (6, 0.1, True), (7, 0.7, True), (8, 0.0, False)):
        boxes, scores, cls = _random_case(seed, 1200, 3, 150.0, quantize)
        assert batched_nms(boxes, scores, cls, thr, 100).tolist() == _reference(boxes, scores, cls, thr, 100)


def _dense_one_class_output(imgsz=320, seed=0):
    """A random-weights YOLO11n-like output: every anchor (strides 8/16/32) over conf, all of ONE class."""
    rng = np.random.default_rng(seed)
    cols = []
    for s in (8, 16, 32):
        g = imgsz // s
        gy, gx = np.mgrid[0:g, 0:g]
        side = np.full(g * g, 15.0 * s)
        cols.append(np.stack([(gx.ravel() + 0.5) * s, (gy.ravel() + 0.5) * s, side, side]))
    box = np.concatenate(cols, 1)
    raw = np.empty((1, 5, box.shape[1]), np.float32)
    raw[0, :4] = box + rng.normal(0, 1.0, box.shape)
    raw[0, 4] = rng.uniform(0.3, 0.7, box.shape[1])
    return raw


def test_dense_single_class_matches_reference_without_all_pairs_pass(monkeypatch):
    """The degenerate case of #18: one class, every anchor a candidate, fewer than max_det survive.

    Before the windowed loop it went through OpenCV NMSBoxes over all candidates (the `nms` offset path),
    twice as slow as the old code; it must now stay off that path and still give the greedy answer.
    """
    def all_pairs(*_a, **_k):
        raise AssertionError("the dense one-class case went through the all-pairs NMS")

    monkeypatch.setattr(nms_mod, "nms", all_pairs)
    monkeypatch.setattr(nms_mod, "_cv2_nms", all_pairs)
    raw = _dense_one_class_output()
    q = raw[0]
    boxes = np.stack([q[0] - q[2] / 2, q[1] - q[3] / 2, q[0] + q[2] / 2, q[1] + q[3] / 2], 1).astype(np.float64)
    scores, cls = q[4], np.zeros(q.shape[1], np.int64)
    for thr in (0.45, 0.7):
        ref = _reference(boxes, scores, cls, thr, 300)
        assert 64 < len(ref)  # many survivors, so the prefixes cannot decide it alone
        assert batched_nms(boxes, scores, cls, thr, 300).tolist() == ref
    det = postprocess(raw, [None], conf=0.25, iou=0.45, max_det=300)[0]
    ref = _reference(boxes, scores, cls, 0.45, 300)
    np.testing.assert_array_equal(det.scores, scores[ref])


@pytest.mark.parametrize("thr", [0.05, 0.3, 0.45, 0.5, 0.7, 0.9])
def test_window_reach_bounds_every_suppressing_pair(thr):
    """IoU(a, b) > t must imply |centre_x(a) - centre_x(b)| < window_reach(t) * width(a), for any sizes."""
    rng = np.random.default_rng(int(thr * 100))
    n = 200000
    wa, ha = rng.uniform(1, 100, n), rng.uniform(1, 100, n)
    wb = wa * np.exp(rng.uniform(-2.5, 2.5, n))  # widths from 0.08x to 12x, past the 1/t limit
    hb = ha * np.exp(rng.uniform(-2.5, 2.5, n))
    dx = wa * rng.uniform(-1.2, 1.2, n) * window_reach(thr)
    dy = ha * rng.uniform(-0.2, 0.2, n)
    ow = np.clip(np.minimum(wa / 2, dx + wb / 2) - np.maximum(-wa / 2, dx - wb / 2), 0, None)
    oh = np.clip(np.minimum(ha / 2, dy + hb / 2) - np.maximum(-ha / 2, dy - hb / 2), 0, None)
    inter = ow * oh
    iou = inter / (wa * ha + wb * hb - inter)
    hit = iou > thr
    assert hit.sum() > 5
    ratio = np.abs(dx[hit]) / wa[hit]
    assert ratio.max() < window_reach(thr)
    if thr < 0.5:  # the extreme pair: a inside b of width w_a / t, at b's edge; IoU just above t
        wb_ = 1 / thr * (1 - 1e-6)
        dx_ = (wb_ - 1) / 2
        assert 1 / wb_ > thr and dx_ > 0.99 * window_reach(thr) - 1e-3  # the bound is tight, so it prunes


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
