"""Letterbox pre-processing and its exact inverse.

The forward rounding is the one YOLO11 models are trained and validated with (Ultralytics' LetterBox
with auto=False, scaleup=True, center=True), so a model sees the same pixels here as in training:

    r = min(h / h0, w / w0); new_unpad = (round(w0 * r), round(h0 * r))
    dw, dh = (w - new_w) / 2, (h - new_h) / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1); left, right = round(dw - 0.1), round(dw + 0.1)
    cv2.resize (INTER_LINEAR) when the size changes, cv2.copyMakeBorder with 114

The inverse divides by the per-axis scale the resize really applied (new_w / w0, new_h / h0) rather
than by r: they differ by up to half a pixel after rounding new_unpad, and the real scale is what maps
an edge of the original image onto the same edge of the resized one.
"""
from __future__ import annotations

import threading

import cv2
import numpy as np

from defectrt.errors import UserInputError

PAD_VALUE = 114


class LetterboxInfo(object):
    """How one image was placed into the model input: enough to map boxes both ways."""

    __slots__ = ("orig_shape", "new_shape", "ratio", "scale", "pad", "unpad_shape")

    def __init__(self, orig_shape, new_shape, ratio, unpad_shape, pad):
        self.orig_shape = (int(orig_shape[0]), int(orig_shape[1]))  # (h0, w0)
        self.new_shape = (int(new_shape[0]), int(new_shape[1]))  # (h, w) of the model input
        self.ratio = float(ratio)  # r = min(h / h0, w / w0)
        self.unpad_shape = (int(unpad_shape[0]), int(unpad_shape[1]))  # (new_h, new_w) of the resized image
        self.pad = (int(pad[0]), int(pad[1]))  # (left, top)
        self.scale = (self.unpad_shape[1] / float(self.orig_shape[1]), self.unpad_shape[0] / float(self.orig_shape[0]))

    def to_original(self, boxes, clip=True):
        """(N, 4) x1, y1, x2, y2 in model-input pixels -> original-image pixels (float32)."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        sx, sy = self.scale
        left, top = self.pad
        out = np.empty_like(boxes)
        out[:, 0::2] = (boxes[:, 0::2] - left) / sx
        out[:, 1::2] = (boxes[:, 1::2] - top) / sy
        if clip:
            h0, w0 = self.orig_shape
            np.clip(out[:, 0::2], 0, w0, out=out[:, 0::2])
            np.clip(out[:, 1::2], 0, h0, out=out[:, 1::2])
        return out.astype(np.float32)

    def to_input(self, boxes):
        """Original-image pixels -> model-input pixels (the forward mapping; used by tests and tools)."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        sx, sy = self.scale
        left, top = self.pad
        out = np.empty_like(boxes)
        out[:, 0::2] = boxes[:, 0::2] * sx + left
        out[:, 1::2] = boxes[:, 1::2] * sy + top
        return out.astype(np.float32)

    def __repr__(self):
        return "LetterboxInfo(orig_shape={}, new_shape={}, ratio={:.6f}, pad={})".format(
            self.orig_shape, self.new_shape, self.ratio, self.pad)


def _shape(imgsz):
    if isinstance(imgsz, (int, np.integer)):
        return int(imgsz), int(imgsz)
    try:
        h, w = (int(v) for v in imgsz)
    except (TypeError, ValueError):
        raise UserInputError("imgsz {!r}: expected an int or (height, width)".format(imgsz))
    if h <= 0 or w <= 0:
        raise UserInputError("imgsz {!r}: height and width must be positive".format(imgsz))
    return h, w


def as_bgr(img, what="image"):
    """Check one image and bring it to contiguous BGR uint8 (H, W, 3); `what` names it in errors."""
    if img is None:
        raise UserInputError("{} is None (cv2.imread returns None for a missing or unreadable file)".format(what))
    if not isinstance(img, np.ndarray):
        raise UserInputError("{} is a {}, expected a numpy array (BGR uint8, as cv2.imread returns)".format(
            what, type(img).__name__))
    if img.size == 0:
        raise UserInputError("{} is empty (shape {})".format(what, img.shape))
    if img.dtype == np.uint16:  # as cv2.imread(IMREAD_COLOR) reads a 16-bit file: the high byte
        img = (img >> 8).astype(np.uint8)
    if img.dtype != np.uint8:
        raise UserInputError("{} has dtype {}, expected uint8 (0-255 BGR as cv2.imread returns); "
                             "convert with np.clip(img * 255, 0, 255).astype(np.uint8) if it is 0-1 float".format(
                                 what, img.dtype))
    if img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
        return cv2.cvtColor(np.ascontiguousarray(img.reshape(img.shape[:2])), cv2.COLOR_GRAY2BGR)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise UserInputError("{} has shape {}, expected (H, W), (H, W, 1), (H, W, 3) BGR or (H, W, 4) BGRA".format(
            what, img.shape))
    if img.shape[2] == 4:
        return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(img)


def letterbox_info(orig_shape, new_shape):
    h0, w0 = int(orig_shape[0]), int(orig_shape[1])
    h, w = _shape(new_shape)
    r = min(h / float(h0), w / float(w0))
    # At least one pixel: a line-scan image (1 x 2000, 20000 x 1) would otherwise round to an empty resize.
    new_w, new_h = max(1, int(round(w0 * r))), max(1, int(round(h0 * r)))
    dw, dh = (w - new_w) / 2.0, (h - new_h) / 2.0
    left, top = int(round(dw - 0.1)), int(round(dh - 0.1))
    return LetterboxInfo((h0, w0), (h, w), r, (new_h, new_w), (left, top))


def letterbox(img, new_shape=(640, 640), color=PAD_VALUE):
    """-> (letterboxed BGR uint8 image of new_shape, LetterboxInfo)."""
    img = as_bgr(img)
    info = letterbox_info(img.shape[:2], new_shape)
    h, w = info.new_shape
    new_h, new_w = info.unpad_shape
    if (new_h, new_w) != img.shape[:2]:
        img = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    left, top = info.pad
    # round(dw + 0.1) == w - new_w - left for every half-integer dw, so the output is exactly (h, w).
    right, bottom = w - new_w - left, h - new_h - top
    if top or bottom or left or right:
        img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(color, color, color))
    return img, info


_scratch = threading.local()  # per thread: Detector.stream pre-processes in its own thread


def _buffer(key, shape):
    """A reusable uint8 buffer: fresh ~0.25-1 MB arrays per frame cost page faults (glibc mmaps them)."""
    bufs = getattr(_scratch, "bufs", None)
    if bufs is None:
        bufs = _scratch.bufs = {}
    buf = bufs.get(key)
    if buf is None or buf.shape != shape:
        buf = bufs[key] = np.empty(shape, np.uint8)
    return buf


def _letterbox_reused(img, new_shape, color=PAD_VALUE):
    """letterbox() into a reused canvas: the resize writes straight into the canvas' centre region."""
    info = letterbox_info(img.shape[:2], new_shape)
    new_h, new_w = info.unpad_shape
    if info.new_shape == (new_h, new_w) and img.shape[:2] == (new_h, new_w):
        return img, info
    h, w = info.new_shape
    canvas = _buffer("canvas", (h, w, 3))
    canvas.fill(color)
    left, top = info.pad
    region = canvas[top:top + new_h, left:left + new_w]
    if (new_h, new_w) == img.shape[:2]:
        region[...] = img
    else:
        resized = cv2.resize(img, (new_w, new_h), dst=region, interpolation=cv2.INTER_LINEAR)
        if resized is not region and not np.shares_memory(resized, canvas):  # an OpenCV that reallocated dst
            region[...] = resized
    return canvas, info


def _fill(dst, bgr):
    """BGR uint8 (H, W, 3) -> RGB float32 [0, 1] planes written into dst (3, H, W).

    cv2.split into reused planes + np.divide into the destination measured fastest on one core (vs a
    transpose copy, strided per-channel division or cv2.dnn.blobFromImage), and divides exactly like the
    training pipeline's x / 255.
    """
    h, w = bgr.shape[:2]
    planes = [_buffer("plane%d" % i, (h, w)) for i in range(3)]
    cv2.split(bgr, planes)
    for i, plane in enumerate(planes[::-1]):
        np.divide(plane, np.float32(255.0), out=dst[i], dtype=np.float32)


def preprocess(images, imgsz, out=None, pad_value=PAD_VALUE):
    """One image or a list -> (blob (B, 3, h, w) float32 RGB [0, 1] C-contiguous, [LetterboxInfo]).

    `out` is an optional preallocated blob of the right shape, reused to avoid an allocation per frame.
    pad_value: the letterbox border's grey level (a bundle's `letterbox.pad_value`; 114 as Ultralytics trains).
    """
    if isinstance(images, np.ndarray) or images is None:
        images = [images]
    images = list(images)
    if not images:
        raise UserInputError("no images given: pass one image or a non-empty list")
    h, w = _shape(imgsz)
    shape = (len(images), 3, h, w)
    if out is None or out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        out = np.empty(shape, dtype=np.float32)
    infos = []
    for i, img in enumerate(images):
        img = as_bgr(img, "image {} of {}".format(i, len(images)) if len(images) > 1 else "image")
        boxed, info = _letterbox_reused(img, (h, w), pad_value)
        _fill(out[i], boxed)
        infos.append(info)
    return out, infos
