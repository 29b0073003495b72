"""Detection metrics: precision, recall, mAP50 and mAP50-95, overall and per class (pycocotools).

AP is COCO's: pycocotools' COCOeval on boxes, IoU thresholds 0.50:0.05:0.95, 101-point interpolated
precision, area range "all", up to `max_dets` (default 300) detections per image and class. mAP is
the mean over the classes that have ground truth in the evaluated images (classes without any are
reported as None and left out, as COCO does).

Precision and recall are reported at one operating point, the way the YOLO papers' tools report
them: detections matched to ground truth at IoU 0.5 (COCOeval's own greedy, score-ordered
matching), one confidence threshold shared by all classes, chosen as the detection score that
maximises the F1 score averaged over classes (ties: the higher threshold). Pass `conf=` to report
them at a fixed threshold instead (e.g. the one a line will run at). Per-class precision and recall
are taken at that same threshold. A class with ground truth but no detection above the threshold
has precision 0 and recall 0.
"""
from __future__ import annotations

import contextlib
import copy
import io

import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)


def _as_prediction(p):
    """(boxes, scores, class_ids) from a Detections-like object or a 3-tuple."""
    if hasattr(p, "boxes"):
        boxes, scores, cls = p.boxes, p.scores, p.class_ids
    else:
        boxes, scores, cls = p
    return (np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(scores, np.float64).reshape(-1),
            np.asarray(cls, np.int64).reshape(-1))


def _as_truth(g):
    """(boxes, class_ids) from an object with .boxes/.class_ids or a 2-tuple."""
    if hasattr(g, "boxes"):
        boxes, cls = g.boxes, g.class_ids
    else:
        boxes, cls = g
    return np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(cls, np.int64).reshape(-1)


def _coco_objects(truths, preds, nc):
    """In-memory COCO ground truth and detections (ids from 1: COCOeval treats id 0 as "no match")."""
    from pycocotools.coco import COCO

    cats = [{"id": k + 1, "name": str(k)} for k in range(nc)]
    images = [{"id": i + 1} for i in range(len(truths))]
    gt_anns, dt_anns = [], []
    for i, (g, p) in enumerate(zip(truths, preds)):
        boxes, cls = g
        for b, c in zip(boxes, cls):
            w, h = b[2] - b[0], b[3] - b[1]
            gt_anns.append({"id": len(gt_anns) + 1, "image_id": i + 1, "category_id": int(c) + 1,
                            "bbox": [float(b[0]), float(b[1]), float(w), float(h)], "area": float(w * h),
                            "iscrowd": 0})
        boxes, scores, cls = p
        for b, s, c in zip(boxes, scores, cls):
            if not 0 <= c < nc:
                continue  # a class the dataset does not have cannot match anything
            w, h = b[2] - b[0], b[3] - b[1]
            dt_anns.append({"id": len(dt_anns) + 1, "image_id": i + 1, "category_id": int(c) + 1,
                            "bbox": [float(b[0]), float(b[1]), float(w), float(h)], "area": float(w * h),
                            "score": float(s), "iscrowd": 0})
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        gt = COCO()
        gt.dataset = {"images": images, "categories": cats, "annotations": gt_anns}
        gt.createIndex()
        dt = COCO()
        dt.dataset = {"images": images, "categories": cats, "annotations": dt_anns}
        dt.createIndex()
    return gt, dt


def _pr_curves(E, nc):
    """Per class at IoU 0.5: (scores sorted descending, cumulative TP) from COCOeval's matches."""
    p = E.params
    n_img = len(p.imgIds)
    curves = []
    for k in range(nc):
        scores, tps = [], []
        for i in range(n_img):
            e = E.evalImgs[k * len(p.areaRng) * n_img + i]  # order: category, area range, image
            if e is None or not len(e["dtScores"]):
                continue
            keep = ~e["dtIgnore"][0].astype(bool)
            scores.append(np.asarray(e["dtScores"])[keep])
            tps.append((e["dtMatches"][0] > 0)[keep])
        if scores:
            s, t = np.concatenate(scores), np.concatenate(tps)
            order = np.argsort(-s, kind="mergesort")
            curves.append((s[order], np.cumsum(t[order])))
        else:
            curves.append((np.zeros(0), np.zeros(0)))
    return curves


def _pr_at(curve, n_gt, thr):
    """Precision and recall of one class keeping detections with score >= thr (each thr an array)."""
    s, ctp = curve
    n = np.searchsorted(-s, -np.asarray(thr, np.float64), side="right")  # detections with score >= thr
    tp = np.where(n > 0, ctp[np.maximum(n - 1, 0)] if len(ctp) else 0, 0).astype(np.float64)
    precision = np.where(n > 0, tp / np.maximum(n, 1), 0.0)
    recall = tp / n_gt if n_gt else np.zeros_like(tp)
    return precision, recall


def _evaluated(truths, preds, nc, max_dets):
    """COCOeval with every image matched (evaluate() run, accumulate() not yet)."""
    from pycocotools.cocoeval import COCOeval

    gt, dt = _coco_objects(truths, preds, nc)
    E = COCOeval(gt, dt, "bbox")
    E.params.imgIds = list(range(1, len(truths) + 1))
    E.params.catIds = list(range(1, nc + 1))
    E.params.iouThrs = IOU_THRESHOLDS.copy()
    E.params.maxDets = [int(max_dets)]
    E.params.areaRng = [[0.0, 1e10]]
    E.params.areaRngLbl = ["all"]
    with contextlib.redirect_stdout(io.StringIO()):
        E.evaluate()
    return E


def _ap(prec, k):
    """AP50-95 of class k from COCOeval's precision array (0 where nothing was detected)."""
    pk = prec[:, :, k, 0, -1]
    return float(np.mean(pk[pk > -1])) if (pk > -1).any() else 0.0


def detection_metrics(truths, predictions, names, conf=None, max_dets=300):
    """Metrics of `predictions` against `truths`, image by image.

    truths: per image (boxes (N, 4) x1, y1, x2, y2 pixels, class_ids (N,)) or objects with
        `.boxes` / `.class_ids`.
    predictions: per image (boxes, scores, class_ids) or Detections (`.boxes`, `.scores`, `.class_ids`).
    names: class names (list, or {id: name}); class ids index it.
    conf: None -> precision / recall at the max-mean-F1 threshold; a float -> at that threshold.

    Returns {"precision", "recall", "map50", "map50_95": float or None,
             "per_class": {name: {the same four}}, "conf": operating threshold or None,
             "instances": {name: ground-truth count}, "images": n}.
    """
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    names = list(names)
    nc = len(names)
    truths = [_as_truth(g) for g in truths]
    preds = [_as_prediction(p) for p in predictions]
    if len(truths) != len(preds):
        raise ValueError("{} ground-truth images but {} prediction lists".format(len(truths), len(preds)))
    for _, cls in truths:
        if len(cls) and (cls.min() < 0 or cls.max() >= nc):
            raise ValueError("ground-truth class id outside 0..{}".format(nc - 1))
    n_gt = np.zeros(nc, np.int64)
    for _, cls in truths:
        n_gt += np.bincount(cls, minlength=nc)[:nc]
    result = {"precision": None, "recall": None, "map50": None, "map50_95": None,
              "per_class": {n: {"precision": None, "recall": None, "map50": None, "map50_95": None} for n in names},
              "conf": None, "instances": {n: int(c) for n, c in zip(names, n_gt)}, "images": len(truths)}
    if not truths:
        return result

    E = _evaluated(truths, preds, nc, max_dets)
    with contextlib.redirect_stdout(io.StringIO()):
        E.accumulate()
    prec = E.eval["precision"]  # (T iou, R recall points, K classes, A areas, M maxDets)

    valid = [k for k in range(nc) if n_gt[k] > 0]
    if not valid:
        return result
    ap50, ap = {}, {}
    for k in valid:
        pk = prec[:, :, k, 0, -1]
        ap50[k] = float(np.mean(pk[0][pk[0] > -1])) if (pk[0] > -1).any() else 0.0
        ap[k] = _ap(prec, k)

    curves = _pr_curves(E, nc)
    if conf is None:
        cand = np.unique(np.concatenate([curves[k][0] for k in valid]))[::-1]  # descending
        if cand.size:
            f1 = np.zeros(cand.size)
            for k in valid:
                p, r = _pr_at(curves[k], n_gt[k], cand)
                f1 += np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0.0)
            thr = float(cand[int(np.argmax(f1))])  # first maximum = highest threshold among ties
        else:
            thr = None
    else:
        thr = float(conf)
    pr = {}
    for k in valid:
        if thr is None:
            pr[k] = (0.0, 0.0)
        else:
            p, r = _pr_at(curves[k], n_gt[k], [thr])
            pr[k] = (float(p[0]), float(r[0]))

    for k in valid:
        result["per_class"][names[k]] = {"precision": pr[k][0], "recall": pr[k][1], "map50": ap50[k],
                                         "map50_95": ap[k]}
    result["precision"] = float(np.mean([pr[k][0] for k in valid]))
    result["recall"] = float(np.mean([pr[k][1] for k in valid]))
    result["map50"] = float(np.mean([ap50[k] for k in valid]))
    result["map50_95"] = float(np.mean([ap[k] for k in valid]))
    result["conf"] = thr
    return result


def _resampled_precision(E, picks):
    """COCOeval's precision array for the images `picks` (indices, repeats allowed) of an evaluated E.

    accumulate() reads per-image match records laid out as [class][area][image]; a resample is a new
    layout of the same records (a repeated image counts twice, as a bootstrap needs), so no image is
    matched again and a resample costs one accumulate()."""
    n, n_cls, n_area = len(E.params.imgIds), len(E.params.catIds), len(E.params.areaRng)
    R = copy.copy(E)
    R.params, R._paramsEval = copy.copy(E.params), copy.copy(E._paramsEval)
    R.evalImgs = [E.evalImgs[(k * n_area + a) * n + i] for k in range(n_cls) for a in range(n_area) for i in picks]
    R.params.imgIds = R._paramsEval.imgIds = list(range(len(picks)))
    with contextlib.redirect_stdout(io.StringIO()):
        R.accumulate()
    return R.eval["precision"]


def map_change_interval(truths, reference, candidate, nc, resamples=200, level=0.9, seed=0, max_dets=300):
    """How precisely a val split measures a change of mAP50-95: a paired bootstrap over images.

    truths / reference / candidate: per image, as detection_metrics takes them (the two models'
    detections on the same images). Each resample draws the split's images with replacement and scores
    both models on the same draw (paired: what the two models have in common cancels). Returns
    (low, high) of the `level` percentile interval of mAP50-95(candidate) - mAP50-95(reference), in
    points; mAP as detection_metrics computes it (mean over the classes with ground truth in the draw).
    """
    truths = [_as_truth(g) for g in truths]
    a = _evaluated(truths, [_as_prediction(p) for p in reference], nc, max_dets)
    b = _evaluated(truths, [_as_prediction(p) for p in candidate], nc, max_dets)
    has = np.array([[np.any(cls == k) for k in range(nc)] for _, cls in truths], bool).reshape(len(truths), nc)
    rng = np.random.default_rng(seed)
    changes = []
    for _ in range(int(resamples)):
        picks = rng.integers(0, len(truths), len(truths))
        valid = [k for k in range(nc) if has[picks, k].any()]
        if not valid:
            continue
        pa, pb = _resampled_precision(a, picks), _resampled_precision(b, picks)
        changes.append(100.0 * np.mean([_ap(pb, k) - _ap(pa, k) for k in valid]))
    if not changes:
        return None
    tail = 100.0 * (1.0 - float(level)) / 2.0
    low, high = np.percentile(changes, [tail, 100.0 - tail])
    return float(low), float(high)
