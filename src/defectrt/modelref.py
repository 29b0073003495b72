"""What a user names a model by, and the model's input size: one parser each (bottom floor, no torch, Python 3.8).

- `ModelRef.parse(ref)`: `demo:NAME` (a model shipped in defectrt/demo), a file or folder that exists (or
  has a model suffix), else a registry name (`yolo11n-dysample`). Every `demo:` prefix is read here only.
- `parse_imgsz(value)`: 640 | (640,) | (384, 672) | [h, w] | "384,672" | "384x672" | "[384, 672]" -> (h, w).
  One rule set: one value means a square; two mean height, width; every side a positive whole number.
  `strict=False` is for untrusted metadata (an unreadable value is None: "no imgsz"); otherwise an
  InvalidArgument names `what`. `multiple_of=32` where a model runs at exactly that size and its largest
  stride is 32 (bench); export checks against the model's own stride, and the runtime takes any size the
  model declares (images are letterboxed to it). Bounds (limits.check_imgsz) are checked by the callers
  that allocate.
- `onnx_metadata(model)`: an onnx ModelProto's `metadata_props` -> {key: value}.
"""
from __future__ import annotations

import json
import numbers
import os
from dataclasses import dataclass

from defectrt.errors import InvalidArgument

DEMO_PREFIX = "demo:"
DEMO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".safetensors")


@dataclass(frozen=True)
class ModelRef(object):
    """A parsed model reference. kind: "demo" (value = the demo's name), "path" (value = the path as given:
    it exists, or has a checkpoint suffix), or "name" (value = a registry name, or a path that does not exist)."""

    kind: str
    value: str

    @classmethod
    def parse(cls, ref):
        text = os.fspath(ref)
        if isinstance(text, bytes):
            text = os.fsdecode(text)
        if text.startswith(DEMO_PREFIX):
            return cls("demo", text[len(DEMO_PREFIX):])
        if os.path.exists(text) or text.endswith(CHECKPOINT_SUFFIXES):
            return cls("path", text)
        return cls("name", text)

    @property
    def is_demo(self):
        return self.kind == "demo"

    def __str__(self):
        return DEMO_PREFIX + self.value if self.kind == "demo" else self.value


MAX_TEXT = 1 << 20  # an imgsz string longer than 1 MB is not ours (untrusted metadata)


def _sides(value):
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise ValueError("too long")
        text = value.strip()
        if text.startswith("["):
            value = json.loads(text)
        else:
            value = [v for v in text.replace("x", ",").replace(" ", ",").split(",") if v.strip()]
    if isinstance(value, (bool, bytes)) or value is None:
        raise ValueError(value)
    if isinstance(value, (numbers.Real, str)):
        value = [value]
    vals = []
    for v in value:
        if isinstance(v, bool):
            raise ValueError(v)
        num = float(v)
        if num != int(num):
            raise ValueError(v)
        vals.append(int(num))
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or min(vals) < 1:
        raise ValueError(value)
    return vals[0], vals[1]


def parse_imgsz(value, what="imgsz", strict=True, multiple_of=None):
    """-> (h, w), or None when value is None / "" (and, strict=False, when it cannot be read)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        hw = _sides(value)
    except (TypeError, ValueError, OverflowError, RecursionError, MemoryError):
        if not strict:
            return None
        raise InvalidArgument("{} {!r}: give one size (640) or two (H W), positive whole numbers".format(
            what, value)) from None
    if multiple_of and (hw[0] % multiple_of or hw[1] % multiple_of):
        raise InvalidArgument("{} {}x{} (h x w): height and width must be multiples of {}".format(
            what, hw[0], hw[1], multiple_of))
    return hw


def onnx_metadata(model):
    """An onnx ModelProto -> its metadata_props as {key: value} (all strings)."""
    return {p.key: p.value for p in model.metadata_props}
