"""Box arithmetic for the tests, written independently of the package's own (a reference, not a reuse)."""
import numpy as np


def labels_xyxy(labels, h, w):
    """YOLO label rows [class, cx, cy, w, h] (normalised) -> (N, 4) pixel boxes x1, y1, x2, y2."""
    c = np.asarray(labels, np.float64).reshape(-1, 5)
    return np.stack([(c[:, 1] - c[:, 3] / 2) * w, (c[:, 2] - c[:, 4] / 2) * h,
                     (c[:, 1] + c[:, 3] / 2) * w, (c[:, 2] + c[:, 4] / 2) * h], 1)


def pairwise_iou(a, b):
    """(N, 4) x (M, 4) xyxy boxes -> (N, M) IoU."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def labels_found(labels, h, w, boxes, class_ids, iou=0.5):
    """Per label: whether a detection of its class overlaps it by more than `iou`."""
    truth = labels_xyxy(labels, h, w)
    cls = np.asarray(labels).reshape(-1, 5)[:, 0].astype(int)
    boxes, class_ids = np.asarray(boxes).reshape(-1, 4), np.asarray(class_ids)
    if not len(boxes):
        return np.zeros(len(truth), bool)
    same = cls[:, None] == class_ids[None, :]
    return ((pairwise_iou(truth, boxes) > iou) & same).any(axis=1)
