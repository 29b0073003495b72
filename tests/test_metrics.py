import numpy as np
import pytest

from defectrt.data.metrics import IOU_THRESHOLDS, detection_metrics

NAMES = ["a", "b"]


def _iou(p, q):
    ix = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
    iy = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
    inter = ix * iy
    return inter / ((p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter)


def gt(*boxes_cls):
    return (np.array([b for b, _ in boxes_cls], float).reshape(-1, 4), np.array([c for _, c in boxes_cls], int))


def pred(*boxes_score_cls):
    return (np.array([b for b, _, _ in boxes_score_cls], float).reshape(-1, 4),
            np.array([s for _, s, _ in boxes_score_cls], float), np.array([c for _, _, c in boxes_score_cls], int))


BOX1, BOX2, BOX3 = [10, 10, 60, 40], [100, 50, 140, 130], [200, 20, 230, 35]


def test_perfect_predictions_score_one():
    truths = [gt((BOX1, 0), (BOX2, 1)), gt((BOX3, 0))]
    preds = [pred((BOX1, 0.9, 0), (BOX2, 0.8, 1)), pred((BOX3, 0.7, 0))]
    r = detection_metrics(truths, preds, NAMES)
    for k in ("precision", "recall", "map50", "map50_95"):
        assert r[k] == pytest.approx(1.0)
        for n in NAMES:
            assert r["per_class"][n][k] == pytest.approx(1.0)
    assert r["instances"] == {"a": 2, "b": 1} and r["images"] == 2


@pytest.mark.parametrize("v", [0.72, 0.57, 0.86, 0.93])
def test_shifted_box_counts_only_thresholds_below_its_iou(v):
    dx = 100 * (1 - v) / (1 + v)  # a 100x100 box shifted by dx overlaps with IoU (100 - dx) / (100 + dx)
    g, p = [0, 0, 100, 100], [dx, 0, 100 + dx, 100]
    iou = _iou(g, p)
    assert iou == pytest.approx(v)
    r = detection_metrics([gt((g, 0))], [pred((p, 0.9, 0))], ["a"])
    expected = float(np.mean(IOU_THRESHOLDS <= iou))
    assert r["map50_95"] == pytest.approx(expected)
    assert r["map50"] == pytest.approx(1.0) and r["precision"] == pytest.approx(1.0) and r["recall"] == pytest.approx(1.0)
    assert {0.72: 0.5, 0.57: 0.2, 0.86: 0.8, 0.93: 0.9}[v] == pytest.approx(expected)


def test_below_half_iou_is_a_miss():
    r = detection_metrics([gt((BOX1, 0))], [pred(([30, 10, 80, 40], 0.9, 0))], ["a"])  # IoU 0.43
    assert r["map50"] == 0.0 and r["map50_95"] == 0.0 and r["recall"] == 0.0 and r["precision"] == 0.0


def test_missed_objects_lower_recall_by_their_share():
    truths = [gt((BOX1, 0), (BOX2, 0)), gt((BOX3, 0), ([300, 300, 340, 350], 0))]
    preds = [pred((BOX1, 0.9, 0), (BOX2, 0.8, 0)), pred((BOX3, 0.7, 0))]
    r = detection_metrics(truths, preds, ["a"])
    assert r["recall"] == pytest.approx(3 / 4) and r["precision"] == pytest.approx(1.0)
    # 101-point interpolated AP: precision 1 at recall points 0.00 .. 0.75, 0 above.
    assert r["map50"] == pytest.approx(76 / 101) and r["map50_95"] == pytest.approx(76 / 101)


def test_false_positive_above_the_true_ones_lowers_precision():
    truths = [gt((BOX1, 0), (BOX2, 0))]
    preds = [pred((BOX1, 0.9, 0), (BOX2, 0.8, 0), (BOX3, 0.95, 0))]
    r = detection_metrics(truths, preds, ["a"])
    # Best F1 keeps all three: P = 2/3, R = 1; AP: interpolated precision is 2/3 everywhere.
    assert r["conf"] == pytest.approx(0.8)
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == pytest.approx(1.0)
    assert r["map50"] == pytest.approx(2 / 3)


def test_false_positive_below_the_true_ones_is_cut_by_the_threshold():
    truths = [gt((BOX1, 0), (BOX2, 0))]
    preds = [pred((BOX1, 0.9, 0), (BOX2, 0.8, 0), (BOX3, 0.3, 0))]
    r = detection_metrics(truths, preds, ["a"])
    assert r["conf"] == pytest.approx(0.8) and r["precision"] == pytest.approx(1.0) and r["map50"] == pytest.approx(1.0)
    fixed = detection_metrics(truths, preds, ["a"], conf=0.25)
    assert fixed["conf"] == 0.25 and fixed["precision"] == pytest.approx(2 / 3) and fixed["recall"] == pytest.approx(1.0)
    high = detection_metrics(truths, preds, ["a"], conf=0.85)
    assert high["precision"] == pytest.approx(1.0) and high["recall"] == pytest.approx(0.5)


def test_duplicate_detection_is_a_false_positive():
    r = detection_metrics([gt((BOX1, 0))], [pred((BOX1, 0.9, 0), (BOX1, 0.8, 0))], ["a"], conf=0.5)
    assert r["precision"] == pytest.approx(0.5) and r["recall"] == pytest.approx(1.0) and r["map50"] == pytest.approx(1.0)


def test_wrong_class_and_missing_class_per_class():
    truths = [gt((BOX1, 0), (BOX2, 1))]
    preds = [pred((BOX1, 0.9, 0), (BOX2, 0.9, 0))]  # BOX2 found but called "a"
    r = detection_metrics(truths, preds, NAMES)
    assert r["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "map50": 0.0, "map50_95": 0.0}
    assert r["per_class"]["a"]["recall"] == pytest.approx(1.0) and r["per_class"]["a"]["precision"] == pytest.approx(0.5)
    assert r["map50"] == pytest.approx((r["per_class"]["a"]["map50"] + 0.0) / 2)


def test_class_without_ground_truth_is_left_out():
    r = detection_metrics([gt((BOX1, 0))], [pred((BOX1, 0.9, 0), (BOX2, 0.9, 1))], NAMES + ["c"])
    assert r["per_class"]["b"]["map50"] is None and r["per_class"]["c"]["precision"] is None
    assert r["map50"] == pytest.approx(1.0) and r["precision"] == pytest.approx(1.0) and r["instances"]["b"] == 0


def test_no_detections_and_empty_images():
    truths = [gt((BOX1, 0)), gt()]
    r = detection_metrics(truths, [pred(), pred()], ["a"])
    assert r["map50"] == 0.0 and r["precision"] == 0.0 and r["recall"] == 0.0 and r["conf"] is None
    # A false positive on an image without objects counts.
    r = detection_metrics(truths, [pred((BOX1, 0.5, 0)), pred((BOX2, 0.9, 0))], ["a"], conf=0.1)
    assert r["precision"] == pytest.approx(0.5)


def test_accepts_detections_like_objects_and_caps_detections():
    class Det:
        def __init__(self, boxes, scores, class_ids):
            self.boxes, self.scores, self.class_ids = boxes, scores, class_ids

    many = Det(np.tile(np.array([[300, 300, 310, 310]], float), (5, 1)), np.linspace(0.99, 0.95, 5), np.zeros(5, int))
    boxes = np.vstack([many.boxes, [BOX1]])
    r = detection_metrics([gt((BOX1, 0))], [Det(boxes, np.append(many.scores, 0.5), np.zeros(6, int))], ["a"],
                          max_dets=5)
    assert r["map50"] == 0.0  # the true box is the 6th by score, beyond max_dets
    r = detection_metrics([gt((BOX1, 0))], [Det(boxes, np.append(many.scores, 0.5), np.zeros(6, int))], ["a"])
    assert r["map50"] == pytest.approx(1 / 6)


# ------------------------------------------------------------ paired bootstrap of a mAP change (issue 21)

def _split(n_images, seed, jitter=0.0, drop_every=0):
    """n_images images with 1-3 objects of 2 classes; predictions = truths moved by `jitter` px (random
    sign), distinct scores in 0.5-1 (no ties: then the order of images cannot matter), every
    `drop_every`-th object missing."""
    from defectrt.data import metrics as M

    rng = np.random.default_rng(seed)
    truths, preds, k = [], [], 0
    for _ in range(n_images):
        boxes, cls, pb, ps, pc = [], [], [], [], []
        for j in range(int(rng.integers(1, 4))):
            x, y = rng.uniform(0, 500, 2)
            box = [x, y, x + 60, y + 40]
            c = int(rng.integers(0, 2))
            boxes.append(box), cls.append(c)
            k += 1
            if drop_every and k % drop_every == 0:
                continue
            d = rng.choice([-1, 1], 4) * jitter * rng.uniform(0.5, 1.5, 4)
            pb.append(np.add(box, d)), ps.append(rng.uniform(0.5, 1.0)), pc.append(c)
        truths.append((np.array(boxes), np.array(cls)))
        preds.append((np.array(pb).reshape(-1, 4), np.array(ps), np.array(pc)))
    return M, truths, preds


def test_a_resample_of_every_image_once_is_the_full_score():
    M, truths, preds = _split(40, 1, jitter=6.0)
    E = M._evaluated([M._as_truth(g) for g in truths], [M._as_prediction(p) for p in preds], 2, 300)
    full = detection_metrics(truths, preds, ["a", "b"])["map50_95"]
    prec = M._resampled_precision(E, list(range(40)))
    assert np.mean([M._ap(prec, k) for k in range(2)]) == pytest.approx(full, abs=1e-12)
    reordered = M._resampled_precision(E, list(range(40))[::-1])  # order of images does not matter
    assert np.mean([M._ap(reordered, k) for k in range(2)]) == pytest.approx(full, abs=1e-12)
    half = M._resampled_precision(E, list(range(20)))  # a subset scores as if only it had been evaluated
    sub = detection_metrics(truths[:20], preds[:20], ["a", "b"])["map50_95"]
    assert np.mean([M._ap(half, k) for k in range(2)]) == pytest.approx(sub, abs=1e-12)


def test_interval_is_zero_for_the_same_model_and_brackets_a_real_change():
    M, truths, ref = _split(60, 2, jitter=3.0)
    assert M.map_change_interval(truths, ref, ref, 2, resamples=50) == (0.0, 0.0)
    _, _, worse = _split(60, 2, jitter=9.0, drop_every=7)
    change = 100 * (detection_metrics(truths, worse, ["a", "b"])["map50_95"]
                    - detection_metrics(truths, ref, ["a", "b"])["map50_95"])
    low, high = M.map_change_interval(truths, ref, worse, 2, resamples=100)
    assert change < -5 and low < change < high < 0  # a clear loss: the whole interval is a loss


def test_interval_narrows_with_more_images():
    widths = []
    for n in (30, 240):
        M, truths, ref = _split(n, 3, jitter=3.0)
        _, _, other = _split(n, 3, jitter=5.0, drop_every=11)
        low, high = M.map_change_interval(truths, ref, other, 2, resamples=100)
        widths.append(high - low)
    assert widths[1] < 0.6 * widths[0]  # about 1/sqrt(8) in theory
