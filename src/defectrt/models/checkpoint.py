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

from defectrt.errors import UserInputError
from defectrt.fileio import atomic_path
from defectrt.models.yolo import ArchitectureError, DetectionModel, state_dict_shapes

FORMAT = "defectrt-checkpoint"
FORMAT_VERSION = 1
DEMO_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "demo")
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


def _build(cfg, names, state_dict, path):
    """Rebuild the architecture `cfg` declares and load `state_dict` into it.

    The declared architecture is first built on the meta device and compared key by key, shape by shape,
    with the file's tensors; only a config that matches the weights it carries is built for real, so the
    memory a config can make us allocate is bounded by the weights in the file.
    """
    try:
        own = state_dict_shapes(cfg)
    except (ArchitectureError, KeyError, TypeError, IndexError, ValueError, AttributeError, ZeroDivisionError,
            OverflowError, RecursionError) as exc:
        raise UserInputError("{}: cannot rebuild the architecture: {}".format(path, exc)) from None
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    wrong = [
        "{} {} vs {}".format(k, tuple(state_dict[k].shape), own[k])
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != own[k]
    ]
    if missing or unexpected or wrong:
        raise UserInputError(
            "{}: weights do not fit the architecture they declare (missing: {}; unexpected: {}; shape: {})".format(
                path, _few(missing) or "none", _few(unexpected) or "none", _few(wrong) or "none"
            )
        )
    try:
        model = DetectionModel(cfg, names=names)
    except (ArchitectureError, KeyError, TypeError, IndexError, ValueError) as exc:
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
    if not os.path.isfile(path):
        raise UserInputError("{}: no such checkpoint file".format(path))
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

    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
        state_dict = load_file(path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserInputError("{}: not a readable safetensors file ({}); is it truncated?".format(path, exc)) from None
    try:
        cfg = json.loads(meta["defectrt"])
    except (KeyError, ValueError):
        raise UserInputError("{}: a safetensors file without a defectrt config; save it with defectrt.models.save".format(path)) from None
    if cfg.get("format") != FORMAT:
        raise UserInputError("{}: config format {!r} is not {!r}".format(path, cfg.get("format"), FORMAT))
    model = _build(cfg["arch"], cfg.get("names"), state_dict, path)
    model.variant = cfg.get("variant")
    model.imgsz = cfg.get("imgsz")
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
    ref = os.fspath(ref)
    if ref.startswith("demo:"):
        key = ref.split(":", 1)[1]
        if key not in DEMOS:
            raise UserInputError("unknown demo model {!r}; available: {}".format(ref, ", ".join("demo:" + k for k in DEMOS)))
        path = os.path.join(DEMO_DIR, DEMOS[key])
        if not os.path.isfile(path):
            raise UserInputError("{}: the demo checkpoint is not in this installation ({})".format(ref, path))
        return load(path)
    if os.path.exists(ref) or ref.endswith((".pt", ".pth", ".safetensors")):
        return load(ref)
    if _split(ref) is None:
        raise UserInputError(
            "{!r} is neither a checkpoint file nor a known model; see `defectrt models` for the names".format(ref)
        )
    model = create(ref, nc=nc, names=names)
    return model.eval()
