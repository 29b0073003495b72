"""Greedy non-maximum suppression with torchvision.ops.nms semantics.

Semantics (both implementations): boxes are visited in descending score order (ties: lower index
first), a box is dropped when its IoU with an already kept box is strictly greater than the
threshold, IoU = inter / (area_a + area_b - inter) with no +1 pixel convention.

Implementation: cv2.dnn.NMSBoxes on float (Rect2d) boxes, much faster than the vectorised numpy loop
below (BENCHMARKS.md, "Lab notes"). NMSBoxes itself never stops early: it compares every candidate with
every kept box, which is slow on the thousands of candidates of an untrained model. Greedy NMS decides a box from the boxes ranked above it only,
so the kept list of the `top_k` best candidates is exactly the prefix of the full kept list: it runs on
the best 4 * max_det candidates first and widens (x4) only while fewer than max_det were kept.
batched_nms (what postprocess calls) goes further: it groups the candidates by class, so boxes of
different classes are never compared (benchmarks/bench_postprocess.py), and one class with too many
overlapping candidates for its pairwise matrix goes through a loop over the kept boxes that compares each
only with the candidates near it (_windowed_greedy; OpenCV's all-pairs pass was 2x slower there). Some
OpenCV builds bind NMSBoxes to integer rectangles only, which would round the boxes; a one-off probe
with fractional boxes detects that, and the numpy implementation is used instead. Known difference:
two zero-area boxes count as overlapping for OpenCV and not for torchvision (both IoU 0/0); YOLO
boxes have positive size.
"""
from __future__ import annotations

import numpy as np

_CV2_OK = None


def nms_numpy(boxes, scores, iou_threshold, max_det=None):
    """Reference implementation: a loop over *kept* boxes, each step vectorised over the rest."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    limit = boxes.shape[0] if max_det is None else int(max_det)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1) * (y2 - y1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size and len(keep) < limit:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        union = areas[i] + areas[rest] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def _cv2_nms(boxes, scores, iou_threshold, top_k=0):
    import cv2

    xywh = np.empty_like(boxes)
    xywh[:, :2] = boxes[:, :2]
    xywh[:, 2:] = boxes[:, 2:] - boxes[:, :2]
    # score_threshold 0 (OpenCV asserts >= 0 and keeps score > threshold): candidates passed conf already,
    # so every one has a positive score.
    # top_k > 0: only the top_k best scores take part (OpenCV stable-sorts them, ties by index).
    idx = cv2.dnn.NMSBoxes(xywh, np.asarray(scores, np.float32), 0.0, float(iou_threshold), 1.0, int(top_k))
    return np.asarray(idx, dtype=np.int64).reshape(-1)


def cv2_usable():
    """True when cv2.dnn.NMSBoxes keeps fractional coordinates (checked once)."""
    global _CV2_OK
    if _CV2_OK is None:
        try:
            probe = np.array([[0, 0, 10, 10], [0, 0, 10, 10.9]], np.float64)  # IoU 0.917; 1.0 if rounded to ints
            _CV2_OK = _cv2_nms(probe, np.array([0.9, 0.8], np.float32), 0.95).tolist() == [0, 1]
        except Exception:
            _CV2_OK = False
    return _CV2_OK


def nms(boxes, scores, iou_threshold, max_det=None, use_cv2=None, start_k=None):
    """-> indices of kept boxes, highest score first. boxes (N, 4) x1, y1, x2, y2.

    start_k: the first prefix to try (a caller that knows the best k keep fewer than max_det passes 4 k).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if boxes.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    scores = np.asarray(scores).reshape(-1)
    if (use_cv2 if use_cv2 is not None else cv2_usable()) and scores.min() > 0:  # OpenCV drops scores <= 0
        if max_det is None:
            return _cv2_nms(boxes, scores, iou_threshold)
        limit = int(max_det)
        top_k = int(start_k) if start_k else max(4 * limit, 256)
        while True:
            exhaustive = top_k >= boxes.shape[0]
            keep = _cv2_nms(boxes, scores, iou_threshold, 0 if exhaustive else top_k)
            if exhaustive or len(keep) >= limit:
                return keep[:limit]
            top_k *= 4
    return nms_numpy(boxes, scores, iou_threshold, max_det)


# Largest (classes x m x m) pairwise block the grouped NMS builds (float64: 8 bytes an entry per temporary;
# above ~256 boxes of one class the windowed loop is faster);
# a prefix needing more goes to _windowed_greedy instead, so memory stays bounded.
GROUPED_MAX_PAIRS = 1 << 18


def top_order(scores, k):
    """Indices of the k best scores, best first, ties by lower index (= a stable argsort's first k).

    argpartition picks the k-th value; every score above it and the first (by index) equal ones are taken,
    so the result equals np.argsort(-scores, kind="stable")[:k] at a fraction of the cost for k << n.
    """
    scores = np.asarray(scores).reshape(-1)
    n = scores.shape[0]
    if k >= n:
        return np.argsort(-scores, kind="stable")
    kth = scores[np.argpartition(-scores, k - 1)[k - 1]]
    above = np.flatnonzero(scores > kth)
    ties = np.flatnonzero(scores == kth)[:k - above.size]
    sel = np.sort(np.concatenate([above, ties]))
    return sel[np.argsort(-scores[sel], kind="stable")]


def _grouped_greedy(boxes, class_ids, iou_threshold):
    """Greedy class-aware NMS of boxes already in score order -> bool keep mask, or None when too large.

    The boxes are grouped by class into a padded (classes, m, 4) array; the pairwise "j suppresses i"
    matrix (j before i, same class, IoU > threshold) is one vectorised computation. The greedy answer is
    the unique fixed point of keep[i] = not any(keep[j] and S[j, i], j < i), and iterating that map from
    all-True fixes one more position per step, so a few whole-matrix steps usually settle it; long
    suppression chains are resolved by the greedy sweep over positions (each step vectorised over classes).
    """
    n = boxes.shape[0]
    by_class = np.argsort(class_ids, kind="stable")  # within a class: still score order
    cls_sorted = class_ids[by_class]
    uniq, starts, counts = np.unique(cls_sorted, return_index=True, return_counts=True)
    m = int(counts.max())
    groups = uniq.size
    if groups * m * m > GROUPED_MAX_PAIRS:
        return None
    g = np.repeat(np.arange(groups), counts)
    pos = np.arange(n) - starts[g]
    padded = np.zeros((groups, m, 4), np.float64)
    padded[g, pos] = boxes[by_class]
    valid = np.zeros((groups, m), bool)
    valid[g, pos] = True
    x1, y1, x2, y2 = (padded[:, :, k] for k in range(4))
    area = (x2 - x1) * (y2 - y1)
    w = np.minimum(x2[:, :, None], x2[:, None, :]) - np.maximum(x1[:, :, None], x1[:, None, :])
    h = np.minimum(y2[:, :, None], y2[:, None, :]) - np.maximum(y1[:, :, None], y1[:, None, :])
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)
    union = area[:, :, None] + area[:, None, :] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    sup = (iou > iou_threshold) & np.triu(np.ones((m, m), bool), 1)  # sup[:, j, i]: j (earlier) suppresses i
    sup &= valid[:, :, None] & valid[:, None, :]
    keep = valid.copy()
    for step in range(min(m, 8)):
        nxt = valid & ~np.any(sup & keep[:, :, None], axis=1)
        if np.array_equal(nxt, keep):
            break
        keep = nxt
    else:  # not settled (a long suppression chain): the plain greedy sweep, one position at a time, each
        # step a contiguous row of sup across all classes
        removed = ~valid
        for i in range(m):
            alive = ~removed[:, i]
            removed |= sup[:, i, :] & alive[:, None]
        keep = ~removed
    out = np.zeros(n, bool)
    out[by_class] = keep[g, pos]
    return out


def window_reach(iou_threshold):
    """-> r such that IoU(a, b) > t implies |centre_x(a) - centre_x(b)| < r * width(a) (inf for t <= 0).

    IoU > t needs the x-overlap ow > t * max(w_a, w_b) (inter = ow * oh > t * area of either box, oh <= its
    height) and ow <= (w_a + w_b) / 2 - |dx|; ow <= w_a also bounds w_b < w_a / t. The largest |dx| left is
    (1 - t) * w_a for t >= 1/2 and (1 - t) / (2 t) * w_a below. The 1e-3 margin covers rounding.
    """
    t = float(iou_threshold)
    if not t > 0:
        return np.inf
    return (1.0 - t) * max(1.0, 0.5 / t) + 1e-3


def _windowed_greedy(boxes, scores, class_ids, iou_threshold, limit):
    """Greedy class-aware NMS over all candidates: a loop over KEPT boxes (at most `limit` steps).

    For large one-class blocks (thousands of overlapping boxes, few survivors), where every candidate must be
    compared with every kept box ranked above it. The candidates are sorted by box centre x; a kept box can
    only suppress those within window_reach * its width of its centre, a contiguous slice found by binary
    search, so each step computes the IoU of one box against that slice only (vectorised). Suppressed and kept
    candidates get the rank `n` (done); the next kept box is the smallest rank left; the arrays are compacted
    every few steps so that done candidates stop costing.
    """
    n = boxes.shape[0]
    order = np.argsort(-scores, kind="stable")
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    cx = (boxes[:, 0] + boxes[:, 2]) * 0.5
    by_x = np.argsort(cx, kind="stable")
    cx = cx[by_x]
    x1, y1, x2, y2 = (np.ascontiguousarray(boxes[by_x, k]) for k in range(4))
    area = (x2 - x1) * (y2 - y1)
    rank, cls = rank[by_x], class_ids[by_x]
    multi_class = bool((class_ids != class_ids[0]).any())
    reach = window_reach(iou_threshold)
    keep = []
    with np.errstate(invalid="ignore", divide="ignore"):  # 0 / 0 gives nan, which suppresses nothing (t >= 0)
        while len(keep) < limit:
            i = int(rank.argmin())
            r = int(rank[i])
            if r == n:
                break
            keep.append(r)
            rank[i] = n
            # Python floats (same values): numpy scalars cost more in the per-step calls
            bx1, by1, bx2, by2, ba = float(x1[i]), float(y1[i]), float(x2[i]), float(y2[i]), float(area[i])
            rad = (bx2 - bx1) * reach + 1e-6
            if rad < np.inf:
                c = float(cx[i])
                lo = int(cx.searchsorted(c - rad, "left"))
                hi = int(cx.searchsorted(c + rad, "right"))
            else:
                lo, hi = 0, rank.size
            w = np.minimum(x2[lo:hi], bx2)
            w -= np.maximum(x1[lo:hi], bx1)
            np.maximum(w, 0, out=w)
            h = np.minimum(y2[lo:hi], by2)
            h -= np.maximum(y1[lo:hi], by1)
            np.maximum(h, 0, out=h)
            w *= h  # intersection
            union = area[lo:hi] + ba
            union -= w
            if iou_threshold < 0:  # the reference counts IoU 0 / 0 as 0, which a negative threshold suppresses
                w = np.divide(w, union, out=np.zeros_like(w), where=union > 0)
            else:
                w /= union
            gone = w > iou_threshold
            if multi_class:
                gone &= cls[lo:hi] == cls[i]
            rank[lo:hi][gone] = n
            if len(keep) % 16 == 0:
                live = rank != n
                cx, x1, y1, x2, y2, area, rank, cls = (a[live] for a in (cx, x1, y1, x2, y2, area, rank, cls))
                if not rank.size:
                    break
    return order[np.asarray(keep, dtype=np.int64)]


def batched_nms(boxes, scores, class_ids, iou_threshold, max_det=None):
    """Class-aware NMS: boxes of different classes never suppress each other. -> kept indices, best first.

    Greedy NMS decides a box from the boxes ranked above it only, so the kept boxes among the k best
    candidates are exactly the first kept boxes of the whole run: the k = 2 * max_det best go through
    the grouped NMS (_grouped_greedy), and k grows (x4) only while fewer than max_det were kept.
    A prefix too large for the grouped form (one class with hundreds of overlapping boxes) goes to
    _windowed_greedy over all candidates: a loop over the kept boxes, each compared with the candidates
    near it only.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    n = boxes.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    scores = np.asarray(scores).reshape(-1)
    class_ids = np.asarray(class_ids, dtype=np.int64).reshape(-1)
    limit = n if max_det is None else min(n, int(max_det))
    k = min(n, max(2 * limit, 64))
    while True:
        order = top_order(scores, k)
        keep = _grouped_greedy(boxes[order], class_ids[order], iou_threshold)
        if keep is None:
            return _windowed_greedy(boxes, scores, class_ids, iou_threshold, limit)
        kept = order[keep]
        if kept.size >= limit or k >= n:
            return kept[:limit].astype(np.int64)
        k = min(n, k * 4)
