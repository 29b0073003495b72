"""Class names, input size and batch of a model, from its metadata and input shape.

Shared by the ONNX Runtime and TensorRT backends and by bundles, so every model kind reads the
`names` / `imgsz` metadata (docs/CONTRACTS.md) the same way.
"""
from __future__ import annotations

import ast
import json

from defectrt.errors import UserInputError


def parse_names(value):
    """`names` metadata -> {int: str}. JSON object / list, or the Python-literal dict older exporters wrote."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                return {}
    if isinstance(value, (list, tuple)):
        return {i: str(n) for i, n in enumerate(value)}
    if isinstance(value, dict):
        try:
            return {int(k): str(v) for k, v in value.items()}
        except (TypeError, ValueError):
            return {}
    return {}


def parse_imgsz(value):
    """`imgsz` metadata / argument -> (h, w) or None."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if isinstance(value, (int, float)):
        return int(value), int(value)
    try:
        vals = [int(v) for v in value]
    except (TypeError, ValueError):
        return None
    if len(vals) == 1:
        vals = vals * 2
    return (vals[0], vals[1]) if len(vals) == 2 and min(vals) > 0 else None


def _static(dim):
    return dim if isinstance(dim, int) and dim > 0 else None


def resolve_imgsz(source, input_shape, metadata_imgsz=None, imgsz=None):
    """(h, w) from, in order: an explicit imgsz, the fixed input shape, the `imgsz` metadata.

    A fixed input shape wins over metadata (the model cannot take anything else); an explicit imgsz that
    contradicts a fixed shape is an error rather than a silent resize mismatch.
    """
    shape = list(input_shape or [])
    h, w = (_static(shape[2]), _static(shape[3])) if len(shape) == 4 else (None, None)
    explicit = parse_imgsz(imgsz)
    if explicit is not None:
        if h is not None and w is not None and explicit != (h, w):
            raise UserInputError("imgsz {}: {} takes a fixed input of {}x{} (h x w); drop imgsz or re-export".format(
                list(explicit), source, h, w))
        return explicit
    if h is not None and w is not None:
        return h, w
    meta = parse_imgsz(metadata_imgsz)
    if meta is not None:
        return meta
    raise UserInputError("{} has a dynamic input size and no `imgsz` metadata; pass imgsz=(h, w) "
                         "(CLI: --imgsz H W)".format(source))


def resolve_batch(input_shape):
    """Fixed batch size, or None when the batch dimension is dynamic."""
    shape = list(input_shape or [])
    return _static(shape[0]) if shape else None


def default_names(names, nc):
    """Fill ids the metadata does not name with "class{i}"."""
    names = dict(names or {})
    for i in range(int(nc or 0)):
        names.setdefault(i, "class{}".format(i))
    return names
