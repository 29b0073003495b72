"""Drawing detections on images: one distinct colour per class, a label with name and score.

Colours step round the hue circle by the golden angle, so neighbouring class ids differ strongly and no
two of the first thousand classes share a colour (a fixed palette taken modulo its length repeats).
"""
from __future__ import annotations

import colorsys

_GOLDEN = 0.618033988749895


def class_color(class_id):
    """BGR colour (ints 0-255) of a class id: the same id always gets the same colour."""
    hue = (0.02 + int(class_id) * _GOLDEN) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(round(b * 255)), int(round(g * 255)), int(round(r * 255))


def _text_color(bgr):
    luma = 0.114 * bgr[0] + 0.587 * bgr[1] + 0.299 * bgr[2]
    return (0, 0, 0) if luma > 150 else (255, 255, 255)


def annotate(img, dets):
    """-> a copy of BGR `img` with the boxes, names and scores of `dets` (a Detections) drawn on it."""
    import cv2

    out = img.copy()
    thickness = max(1, int(round(sum(out.shape[:2]) / 600)))
    for box, score, cls, name in zip(dets.boxes, dets.scores, dets.class_ids, dets.names):
        color = class_color(int(cls))
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness)
        label = "{} {:.2f}".format(name, float(score))
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        ty = y1 - 4 if y1 - th - base - 4 >= 0 else y1 + th + 4
        cv2.rectangle(out, (x1, ty - th - 2), (x1 + tw + 2, ty + base - 2), color, -1)
        cv2.putText(out, label, (x1 + 1, ty - 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5, _text_color(color), 1, cv2.LINE_AA)
    return out


def count_by_name(names):
    """"2 dent, 1 scratch" (sorted by name) or "no detections"."""
    counts = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    return ", ".join("{} {}".format(v, k) for k, v in sorted(counts.items())) or "no detections"
