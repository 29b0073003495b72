"""Post-processing worst case (issue #18): a YOLO11n-like output with every anchor over the threshold.

    python benchmarks/bench_postprocess.py [--rounds 7] [--iters 30]

The output is what a random-weights YOLO11n gives at 640x640 (8400 anchors of strides 8/16/32): boxes
centred on their anchors with the DFL mean size (15 strides a side, jittered), 80 class scores, the best of
each anchor in 0.3..0.7, so all 8400 candidates pass conf 0.25 and NMS keeps max_det=300. Cells, interleaved
per round, one thread (OpenCV and numpy single-threaded): `postprocess` now, and the pre-#18 NMS (OpenCV
NMSBoxes over every candidate, offset trick, then the first 300) on the same decoded candidates, also
for 4 classes and 1 class. Figures: median of round medians, in ms. Results must be identical (checked).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402


def yolo_like_output(nc=80, imgsz=640, seed=0):
    rng = np.random.default_rng(seed)
    cols = []
    for s in (8, 16, 32):
        n = imgsz // s
        gy, gx = np.mgrid[0:n, 0:n]
        cols.append(np.stack([(gx.ravel() + 0.5) * s, (gy.ravel() + 0.5) * s, np.full(n * n, 15.0 * s),
                              np.full(n * n, 15.0 * s)]))
    box = np.concatenate(cols, 1)
    a = box.shape[1]
    out = np.empty((1, 4 + nc, a), np.float32)
    out[0, :4] = box + rng.normal(0, 1.0, box.shape)
    out[0, 4:] = rng.uniform(0.0, 0.3, (nc, a))
    out[0, 4 + rng.integers(0, nc, a), np.arange(a)] = rng.uniform(0.3, 0.7, a)
    return out


def old_nms(pred, conf=0.25, iou=0.45, max_det=300):
    """The pre-#18 path: decode as postprocess does, then OpenCV NMSBoxes over all candidates (offset trick)."""
    import cv2

    q = pred[0]
    best = q[4:].max(0)
    anchors = np.flatnonzero(best > conf)
    score = best[anchors]
    cls = q[4:, anchors].argmax(0)
    cx, cy, w, h = (q[k, anchors].astype(np.float64) for k in range(4))
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    span = float(boxes.max() - boxes.min()) + 1.0
    shifted = boxes + (cls * span)[:, None]
    xywh = shifted.copy()
    xywh[:, 2:] -= xywh[:, :2]
    keep = np.asarray(cv2.dnn.NMSBoxes(xywh, score.astype(np.float32), 0.0, iou), np.int64).reshape(-1)[:max_det]
    return boxes[keep], score[keep], cls[keep]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--iters", type=int, default=30)
    args = p.parse_args()
    import cv2

    from defectrt.runtime.postprocess import postprocess

    cv2.setNumThreads(1)
    preds = {nc: yolo_like_output(nc) for nc in (80, 4, 1)}
    cells = {}
    for nc, pred in preds.items():
        cells["new nc={}".format(nc)] = (lambda pr=pred: postprocess(pr, [None], conf=0.25, iou=0.45, max_det=300))
        cells["old nc={}".format(nc)] = (lambda pr=pred: old_nms(pr))
        new, old = cells["new nc={}".format(nc)]()[0], cells["old nc={}".format(nc)]()
        same = len(new) == len(old[1]) and np.array_equal(new.scores, old[1].astype(np.float32)) and \
            np.array_equal(new.class_ids, old[2])
        print("nc={}: candidates {}, kept {}, identical to the old path: {}".format(
            nc, int((pred[0, 4:].max(0) > 0.25).sum()), len(new), same))
    rounds = {k: [] for k in cells}
    for r in range(args.rounds):
        for k, fn in cells.items():
            iters = args.iters if k.startswith("new") else max(3, args.iters // 10)
            times = []
            for _ in range(iters):
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1e3)
            rounds[k].append(statistics.median(times))
    print("| cell | median ms (1 thread) | round medians |\n|---|---|---|")
    for k, v in rounds.items():
        print("| {} | {:.2f} | {} |".format(k, statistics.median(v), " ".join("{:.2f}".format(x) for x in v)))
    print("load average: {}".format(" ".join("{:.1f}".format(x) for x in os.getloadavg())), file=sys.stderr)


if __name__ == "__main__":
    main()
