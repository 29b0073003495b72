"""Class names, input size and batch of a model, from its metadata and input shape.

Shared by the ONNX Runtime and TensorRT backends and by bundles, so every model kind reads the
`names` / `imgsz` metadata (docs/CONTRACTS.md) the same way.
"""
from __future__ import annotations

import ast
import json

from defectrt.errors import UserInputError
from defectrt.runtime import limits
from defectrt.modelref import parse_imgsz


def _literal(text, parsers):
    """Text -> the first parser's value; None when none reads it (or the text is too long / too deep)."""
    if len(text) > limits.MAX_METADATA_CHARS:
        return None
    for parse in parsers:
        try:
            return parse(text)
        except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError):
            continue
    return None


def parse_names(value, source="names"):
    """`names` metadata -> {int: str}. JSON object / list, or the Python-literal dict older exporters wrote.

    Text that is none of these gives {} (the names are then "class{i}"); ids outside 0 .. MAX_CLASSES-1
    or more than MAX_CLASSES entries are an error naming `source`, since a table sized by them would not fit.
    """
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        value = _literal(value, (json.loads, ast.literal_eval))
    if isinstance(value, (list, tuple)):
        if len(value) > limits.MAX_CLASSES:
            raise UserInputError("{}: {} class names, more than the {} supported; check the model's `names` "
                                 "metadata".format(source, len(value), limits.MAX_CLASSES))
        return {i: str(n) for i, n in enumerate(value)}
    if isinstance(value, dict):
        if len(value) > limits.MAX_CLASSES:
            raise UserInputError("{}: {} class names, more than the {} supported; check the model's `names` "
                                 "metadata".format(source, len(value), limits.MAX_CLASSES))
        try:
            ids = [int(k) for k in value]
        except (TypeError, ValueError, OverflowError):
            return {}
        return {limits.check_class_id(i, source): str(v) for i, v in zip(ids, value.values())}
    return {}


def _static(dim):
    return dim if isinstance(dim, int) and dim > 0 else None


def resolve_imgsz(source, input_shape, metadata_imgsz=None, imgsz=None):
    """(h, w) from, in order: an explicit imgsz, the fixed input shape, the `imgsz` metadata.

    A fixed input shape wins over metadata (the model cannot take anything else); an explicit imgsz that
    contradicts a fixed shape is an error rather than a silent resize mismatch.
    """
    shape = list(input_shape or [])
    h, w = (_static(shape[2]), _static(shape[3])) if len(shape) == 4 else (None, None)
    explicit = parse_imgsz(imgsz, strict=False)
    if explicit is not None:
        if h is not None and w is not None and explicit != (h, w):
            raise UserInputError("imgsz {}: {} takes a fixed input of {}x{} (h x w); drop imgsz or re-export".format(
                list(explicit), source, h, w))
        return limits.check_imgsz(explicit, "imgsz")
    if h is not None and w is not None:
        return limits.check_imgsz((h, w), "{}: its fixed input".format(source))
    meta = parse_imgsz(metadata_imgsz, strict=False)
    if meta is not None:
        return limits.check_imgsz(meta, "{}: its `imgsz` metadata".format(source))
    raise UserInputError("{} has a dynamic input size and no `imgsz` metadata; pass imgsz=(h, w) "
                         "(CLI: --imgsz H W)".format(source))


def resolve_batch(input_shape):
    """Fixed batch size, or None when the batch dimension is dynamic."""
    shape = list(input_shape or [])
    return _static(shape[0]) if shape else None


def default_names(names, nc):
    """Fill ids the metadata does not name with "class{i}"; nc comes from the output shape (bounded)."""
    names = dict(names or {})
    if int(nc or 0) > limits.MAX_CLASSES:
        raise UserInputError("the model's output declares {} classes, more than the {} supported; check its output "
                             "shape (B, 4 + classes, anchors)".format(nc, limits.MAX_CLASSES))
    for i in range(int(nc or 0)):
        names.setdefault(i, "class{}".format(i))
    return names
