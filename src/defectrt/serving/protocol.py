"""The wire format between a defectrt Triton model and its clients (Python 3.8, no torch).

One request is one image; Triton's dynamic batcher stacks requests of the same image size into a batch
(the batch dimension comes from `max_batch_size`, so the dims below are per image):

    input   image        UINT8  [-1, -1, 3]   BGR, as cv2.imread returns (H, W, 3)
    outputs boxes        FP32   [-1, 4]       x1, y1, x2, y2 in original-image pixels
            scores       FP32   [-1]
            class_ids    INT64  [-1]
            names        BYTES  [-1]          utf-8 class name of each detection
            count        INT32  [1]           detections of this image

Detections of the images in one batch differ in number, so the per-detection outputs are padded to the
batch's largest count (at least 1 row) and `count` says how many rows of each image are real. The same names are used by
`defectrt serve` (PyTriton) and by the ensemble of `defectrt export triton`, so one client reads both.
"""
from __future__ import annotations

import numpy as np

from defectrt.errors import UserInputError

IMAGE = "image"
OUTPUTS = ("boxes", "scores", "class_ids", "names", "count")
# name -> (numpy dtype, Triton datatype, per-image dims)
SPEC = {
    "image": (np.uint8, "UINT8", (-1, -1, 3)),
    "boxes": (np.float32, "FP32", (-1, 4)),
    "scores": (np.float32, "FP32", (-1,)),
    "class_ids": (np.int64, "INT64", (-1,)),
    "names": (np.object_, "BYTES", (-1,)),
    "count": (np.int32, "INT32", (1,)),
}
# Largest image side accepted by the server: bounds the memory one request can make it allocate.
MAX_SIDE = 8192


def check_image(img, what="image"):
    """Server side: one request's image (H, W, 3) uint8 -> itself, or a UserInputError saying what is wrong."""
    if img.dtype != np.uint8:
        raise UserInputError("{} has dtype {}, expected uint8 BGR".format(what, img.dtype))
    if img.ndim != 3 or img.shape[2] != 3:
        raise UserInputError("{} has shape {}, expected (H, W, 3) BGR".format(what, tuple(img.shape)))
    if img.shape[0] < 1 or img.shape[1] < 1:
        raise UserInputError("{} is empty (shape {}); send an image of at least 1x1 pixels".format(
            what, tuple(img.shape)))
    if max(img.shape[:2]) > MAX_SIDE:
        raise UserInputError("{} is {}x{} pixels; the server takes at most {} per side: resize it first".format(
            what, img.shape[0], img.shape[1], MAX_SIDE))
    return img


def pack(detections):
    """[Detections] of one batch -> {output name: array with a leading batch dimension}, padded per batch."""
    n = max([len(d) for d in detections] + [1])  # at least one (padding) row: PyTriton cannot send empty tensors
    b = len(detections)
    out = {
        "boxes": np.zeros((b, n, 4), np.float32),
        "scores": np.zeros((b, n), np.float32),
        "class_ids": np.full((b, n), -1, np.int64),
        "names": np.full((b, n), b"", dtype=object),
        "count": np.zeros((b, 1), np.int32),
    }
    for i, d in enumerate(detections):
        k = len(d)
        out["boxes"][i, :k] = d.boxes
        out["scores"][i, :k] = d.scores
        out["class_ids"][i, :k] = d.class_ids
        for j, name in enumerate(d.names):
            out["names"][i, j] = str(name).encode("utf-8")
        out["count"][i, 0] = k
    return out


def unpack(outputs, image_shape=None):
    """One response's outputs {name: array} (batch dimension of 1, or none) -> Detections."""
    from defectrt.runtime.postprocess import Detections

    missing = [k for k in OUTPUTS if outputs.get(k) is None]
    if missing:
        raise UserInputError("the server's response lacks the outputs {}; is this a defectrt model "
                             "(defectrt serve / defectrt export triton)?".format(", ".join(missing)))
    count = int(np.asarray(outputs["count"]).reshape(-1)[0])
    boxes = np.asarray(outputs["boxes"], np.float32).reshape(-1, 4)
    scores = np.asarray(outputs["scores"], np.float32).reshape(-1)
    class_ids = np.asarray(outputs["class_ids"], np.int64).reshape(-1)
    names = np.asarray(outputs["names"], dtype=object).reshape(-1)
    if not 0 <= count <= min(len(boxes), len(scores), len(class_ids), len(names)):
        raise UserInputError("the server's response says {} detections but carries {}".format(count, len(scores)))
    return Detections(boxes[:count], scores[:count], class_ids[:count],
                      [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names[:count]], image_shape)
