"""Checkpoints: our own format, Ultralytics `.pt` files, and model references.

Our format is ONE `.safetensors` file: the weights, plus a JSON config in the safetensors metadata
(key "defectrt": format, variant, nc, names, imgsz, the architecture dict). safetensors holds no code,
so loading it can never execute anything.
"""
from __future__ import annotations

import hashlib
import json
import os

import torch

from defectrt.errors import NotFound, UserInputError
from defectrt.fileio import atomic_path
from defectrt.modelref import DEMO_DIR, ModelRef
from defectrt.models.torchzip import open_regular
from defectrt.models.yolo import ArchitectureError, DetectionModel, state_dict_shapes

FORMAT = "defectrt-checkpoint"
FORMAT_VERSION = 1
DEMOS = {"screw": "screw.safetensors", "pcb": "pcb.safetensors"}


def save(model, path, imgsz=None, extra=None, force=False):
    """Write `model` (float32 weights) + its config to `path` (.safetensors), atomically."""
    from safetensors.torch import save_file

    if not str(path).endswith(".safetensors"):
        raise UserInputError("{}: checkpoints are saved as .safetensors files".format(path))
    cfg = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "variant": getattr(model, "variant", None),
        "nc": model.nc,
        "names": {str(k): v for k, v in model.names.items()},
        "imgsz": list(imgsz) if imgsz is not None else getattr(model, "imgsz", None),
        "arch": model.yaml,
    }
    if extra:
        cfg["extra"] = extra
    tensors = {k: v.detach().float().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_path(path, force=force) as tmp:
        save_file(tensors, tmp, metadata={"defectrt": json.dumps(cfg)})
    return path


def _few(xs):
    return ", ".join(xs[:6]) + (" ... ({} in all)".format(len(xs)) if len(xs) > 6 else "")


def check_fits(cfg, shapes, path):
    """Refuse unless the architecture `cfg` declares has exactly the tensors `shapes` ({key: shape}) of the file.

    The architecture is built on the meta device (bounded by the limits in yolo.py, no memory for weights), so
    a config that declares a huge network but carries small weights is refused without allocating it.
    """
    try:
        own = state_dict_shapes(cfg)
    except (ArchitectureError, KeyError, TypeError, IndexError, ValueError, AttributeError, ZeroDivisionError,
            OverflowError, RecursionError, RuntimeError) as exc:
        raise UserInputError("{}: cannot rebuild the architecture: {}".format(path, exc)) from None
    missing = [k for k in own if k not in shapes]
    unexpected = [k for k in shapes if k not in own]
    wrong = ["{} {} vs {}".format(k, shapes[k], own[k]) for k in own if k in shapes and shapes[k] != own[k]]
    if missing or unexpected or wrong:
        raise UserInputError(
            "{}: weights do not fit the architecture they declare (missing: {}; unexpected: {}; shape: {})".format(
                path, _few(missing) or "none", _few(unexpected) or "none", _few(wrong) or "none"
            )
        )


def _build(cfg, names, state_dict, path):
    """Rebuild the architecture `cfg` declares (after `check_fits`) and load `state_dict` into it."""
    check_fits(cfg, {k: tuple(v.shape) for k, v in state_dict.items()}, path)
    try:
        model = DetectionModel(cfg, names=names)
    except (ArchitectureError, KeyError, TypeError, IndexError, ValueError, RuntimeError, AttributeError,
            ZeroDivisionError, OverflowError) as exc:
        raise UserInputError("{}: cannot rebuild the architecture: {}".format(path, exc)) from None
    model.load_state_dict({k: v.float() for k, v in state_dict.items()}, strict=True)
    return model.eval()


def _weights_digest(state_dict):
    h = hashlib.sha256()
    for k in sorted(state_dict):
        h.update(k.encode())
        h.update(state_dict[k].detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()


def load(path, nc=None):
    """Load a `.safetensors` (ours) or Ultralytics `.pt` checkpoint -> eval-mode DetectionModel with `.names`."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise NotFound("{}: no such checkpoint file".format(path))
    open_regular(path).close()  # a FIFO or device named best.pt is refused before anything reads it
    if path.endswith(".safetensors"):
        model = _load_safetensors(path)
    elif path.endswith((".pt", ".pth")):
        model = _load_ultralytics(path)
    else:
        raise UserInputError("{}: unknown checkpoint type; expected .safetensors (defectrt) or .pt (Ultralytics)".format(path))
    if nc is not None and nc != model.nc:
        raise UserInputError("{}: the checkpoint has nc={}, but nc={} was asked for".format(path, model.nc, nc))
    model.source_path = path
    return model


def _load_safetensors(path):
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    from defectrt.models.registry import available

    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserInputError("{}: not a readable safetensors file ({}); is it truncated?".format(path, exc)) from None
    try:
        cfg = json.loads(meta["defectrt"])
    except (KeyError, ValueError, TypeError, RecursionError):
        raise UserInputError("{}: a safetensors file without a defectrt config; save it with defectrt.models.save".format(path)) from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        fmt = cfg.get("format") if isinstance(cfg, dict) else cfg
        raise UserInputError("{}: config format {!r:.60} is not {!r}".format(path, fmt, FORMAT))
    variant = cfg.get("variant")
    if variant is not None and variant not in available():
        raise UserInputError("{}: unknown variant {!r:.60} in the config (known: {})".format(path, variant, ", ".join(available())))
    imgsz = cfg.get("imgsz")
    if imgsz is not None and not (isinstance(imgsz, list) and len(imgsz) == 2 and all(
            type(v) is int and 32 <= v <= 8192 for v in imgsz)):
        raise UserInputError("{}: imgsz {!r:.60} in the config is not [height, width] within 32..8192".format(path, imgsz))
    # Validated against the file's tensor shapes before a single weight is read or a module built.
    check_fits(cfg.get("arch"), shapes, path)
    try:
        state_dict = load_file(path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserInputError("{}: not a readable safetensors file ({}); is it truncated?".format(path, exc)) from None
    model = _build(cfg["arch"], cfg.get("names"), state_dict, path)
    model.variant = variant
    model.imgsz = imgsz
    model.weights_sha256 = _weights_digest(state_dict)
    return model


def _load_ultralytics(path):
    from defectrt.models.ultralytics_pt import read_ultralytics_checkpoint

    cfg, names, state_dict, info = read_ultralytics_checkpoint(path)
    model = _build(cfg, names, state_dict, path)
    model.variant = cfg.get("variant") or os.path.splitext(os.path.basename(path))[0]
    model.imgsz = None
    model.weights_sha256 = _weights_digest(state_dict)
    model.source_info = info
    return model


def resolve_model_ref(ref, nc=80, names=None):
    """A model reference -> eval-mode model: an nn.Module, `demo:screw`, a checkpoint path, or a registry name."""
    from defectrt.models.registry import _split, create

    if isinstance(ref, torch.nn.Module):
        return ref.eval()
    parsed = ModelRef.parse(ref)
    ref = os.fspath(ref)
    if parsed.is_demo:
        if parsed.value not in DEMOS:
            raise NotFound("unknown demo model {!r}; available: {}".format(
                ref, ", ".join(str(ModelRef("demo", k)) for k in DEMOS)))
        path = os.path.join(DEMO_DIR, DEMOS[parsed.value])
        if not os.path.isfile(path):
            raise NotFound("{}: the demo checkpoint is not in this installation ({})".format(ref, path))
        return load(path)
    if parsed.kind == "path":
        return load(ref)
    if _split(ref) is None:
        raise UserInputError(
            "{!r} is neither a checkpoint file nor a known model; see `defectrt models` for the names".format(ref)
        )
    model = create(ref, nc=nc, names=names)
    return model.eval()
