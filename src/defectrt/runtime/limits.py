"""Bounds on every number that sizes memory or work and comes from a user, a manifest or model metadata.

A manifest or ONNX file is untrusted input: `imgsz` 40000x40000 would allocate 18 GB per image, class
ids of 1e9 a table of a billion entries, `threads=100000` hangs model loading. Each check names the
argument or file and says what to do; all raise defectrt.errors.UserInputError.

The limits (docs/CONTRACTS.md repeats them):
    MAX_CLASSES   = 10000      class ids 0 .. 9999 (COCO has 80, LVIS 1203)
    MAX_IMGSZ_SIDE = 8192      model input height / width in pixels (line-scan models are long and thin)
    MAX_IMGSZ_PIXELS = 4096 * 4096  model input area: a 3 x 4096 x 4096 float32 blob is 201 MB per image
    MAX_DET       = 30000      detections per image (the NMS candidate cap)
    max_threads() = 4 x the CPUs here (at least 4, at most 1024)
"""
from __future__ import annotations

import math
import numbers
import os

from defectrt.errors import InvalidArgument as UserInputError  # every bound is an invalid argument

MAX_CLASSES = 10000
MAX_IMGSZ_SIDE = 8192
MAX_IMGSZ_PIXELS = 4096 * 4096
MAX_DET = 30000
MAX_METADATA_CHARS = 1 << 20  # a names / imgsz metadata string longer than 1 MB is not ours


def max_threads():
    return min(1024, max(4, 4 * (os.cpu_count() or 1)))


def _number(value, what, integer):
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise UserInputError("{}={!r}: expected a number".format(what, value))
    try:
        num = float(value)
    except (TypeError, ValueError):
        raise UserInputError("{}={!r}: expected a number".format(what, value))
    if not math.isfinite(num):
        raise UserInputError("{}={!r}: must be a finite number".format(what, value))
    if integer:
        if num != int(num):
            raise UserInputError("{}={!r}: expected a whole number".format(what, value))
        return int(num)
    return num


def check_threshold(value, what):
    """conf / iou -> float in [0, 1]."""
    num = _number(value, what, integer=False)
    if not 0.0 <= num <= 1.0:
        raise UserInputError("{}={}: must be between 0 and 1".format(what, value))
    return num


def check_max_det(value, what="max_det"):
    num = _number(value, what, integer=True)
    if not 1 <= num <= MAX_DET:
        raise UserInputError("{}={}: must be between 1 and {}".format(what, value, MAX_DET))
    return num


def check_threads(value, what="threads"):
    """ONNX Runtime intra-op threads -> int in [1, max_threads()], or None (its default)."""
    if value is None:
        return None
    num = _number(value, what, integer=True)
    limit = max_threads()
    if not 1 <= num <= limit:
        raise UserInputError("{}={}: use 1 .. {} (4 per CPU here, {} CPUs), or leave it unset for one thread per "
                             "core".format(what, value, limit, os.cpu_count() or 1))
    return num


def check_imgsz(hw, what="imgsz"):
    """(h, w) -> (h, w) within MAX_IMGSZ_SIDE and MAX_IMGSZ_PIXELS."""
    h, w = int(hw[0]), int(hw[1])
    if h < 1 or w < 1:
        raise UserInputError("{} {}x{} (h x w): height and width must be positive".format(what, h, w))
    if h > MAX_IMGSZ_SIDE or w > MAX_IMGSZ_SIDE or h * w > MAX_IMGSZ_PIXELS:
        raise UserInputError("{} {}x{} (h x w) is too large: at most {} pixels a side and {} pixels in all ({}x{}); "
                             "export the model at a smaller input size (images of any size are letterboxed to "
                             "it)".format(what, h, w, MAX_IMGSZ_SIDE, MAX_IMGSZ_PIXELS, 4096, 4096))
    return h, w


def check_class_id(value, what):
    num = _number(value, what, integer=True)
    if not 0 <= num < MAX_CLASSES:
        raise UserInputError("{}: class id {} is out of range (0 .. {})".format(what, value, MAX_CLASSES - 1))
    return num
