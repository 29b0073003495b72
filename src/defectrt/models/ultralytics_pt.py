"""Read Ultralytics `best.pt` files without Ultralytics and without executing code from them.

A `best.pt` is a torch.save'd dict whose `model` / `ema` entry is a pickled DetectionModel: the whole
module tree, pickled by class path (ultralytics.nn.modules.conv.Conv, a fork's
ultralytics.nn.extra_modules.dysample.DySample, ...). Unpickling normally imports those classes and
runs their code. Here the file is read by `torchzip` (never torch.load): globals go through an
allow-list, every other class becomes an inert placeholder that only records the state pickle gives
it, and storages are read with bounds (see torchzip's docstring).

From the placeholder tree we recover the state dict (parameters and persistent buffers), the
architecture `yaml` dict and the class `names`, then rebuild our own modules from the yaml.
"""
from __future__ import annotations

import collections

import torch

from defectrt.errors import UserInputError
from defectrt.models import torchzip
from defectrt.models.torchzip import Placeholder

# A YOLO11x holds about 1,000 module paths and 57M weights; these bounds leave room for any detector.
MAX_MODULE_PATHS = 100_000
MAX_MODEL_ELEMENTS = 150_000_000


def safe_torch_load(path):
    """The object a torch.save file holds, read by `torchzip` (never torch.load). Raises UserInputError."""
    return torchzip.load(path)


def _module_parts(obj):
    """(tensors [(name, tensor)], children [(name, module)]) of one pickled module: its `_parameters`,
    persistent `_buffers` and `_modules`."""
    state = obj.state if isinstance(obj, Placeholder) else {}
    non_persistent = state.get("_non_persistent_buffers_set")
    non_persistent = non_persistent if isinstance(non_persistent, (set, frozenset)) else set()
    params, buffers, children = (state.get(k) for k in ("_parameters", "_buffers", "_modules"))
    tensors = list(params.items()) if isinstance(params, dict) else []
    if isinstance(buffers, dict):
        tensors += [(k, v) for k, v in buffers.items() if k not in non_persistent]
    tensors = [(k, v) for k, v in tensors if isinstance(k, str) and isinstance(v, torch.Tensor)]
    children = [(k, c) for k, c in children.items() if isinstance(k, str) and c is not None] if isinstance(children, dict) else []
    return tensors, children


def _module_state_dict(root, path):
    """The state dict of a pickled module tree, in bounded time and memory.

    Each object is read once and each tensor converted to float32 once. Ultralytics itself shares modules
    (every Conv's `act` is one SiLU), so a shared child is legal and appears under each path, as in torch's
    state_dict; but the paths are expanded within a budget, so a graph that shares children 40 levels deep
    (2^40 paths) or a cycle is refused instead of walked, and the elements the keys address are bounded.
    """
    out = collections.OrderedDict()
    parts, floats = {}, {}
    stack = [("", root)]
    paths = elements = 0
    while stack:
        prefix, obj = stack.pop()
        paths += 1
        if paths > MAX_MODULE_PATHS:
            raise torchzip.CheckpointError(
                "{}: refused: its module graph expands to more than {} module paths (submodules shared over and "
                "over, or a cycle); not a detector checkpoint".format(path, MAX_MODULE_PATHS))
        if id(obj) not in parts:
            parts[id(obj)] = _module_parts(obj)
        tensors, children = parts[id(obj)]
        for key, value in tensors:
            if id(value) not in floats:
                floats[id(value)] = value.detach().float()
            elements += value.numel()
            if elements > MAX_MODEL_ELEMENTS:
                raise torchzip.CheckpointError(
                    "{}: refused: its weights address more than {} elements (limit)".format(path, MAX_MODEL_ELEMENTS))
            out[prefix + key] = floats[id(value)]
        # reversed: the stack then pops children in their declared order
        stack.extend((prefix + key + ".", child) for key, child in reversed(children))
    return out


def read_ultralytics_checkpoint(path):
    """-> (yaml dict, names {id: name}, state_dict float32, info dict). Never imports Ultralytics."""
    ckpt = safe_torch_load(path)
    try:
        return _from_checkpoint(ckpt, path)
    except UserInputError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, RuntimeError, RecursionError, MemoryError) as exc:
        raise torchzip.CheckpointError("{}: not a usable Ultralytics checkpoint ({}: {:.200})".format(
            path, type(exc).__name__, str(exc))) from None


def _from_checkpoint(ckpt, path):
    if not isinstance(ckpt, dict):
        raise UserInputError("{}: expected a checkpoint dict with a 'model' or 'ema' entry, got {}".format(path, type(ckpt).__name__))
    ema = ckpt.get("ema")
    model = ema if isinstance(ema, Placeholder) else ckpt.get("model")  # EMA weights when training left them
    if not isinstance(model, Placeholder):
        raise UserInputError(
            "{}: no pickled model under 'model' or 'ema' (keys: {}); is this an Ultralytics checkpoint?".format(
                path, ", ".join(str(k)[:40] for k in list(ckpt)[:12])
            )
        )
    state = model.state
    cfg = state.get("yaml")
    if not isinstance(cfg, dict) or "backbone" not in cfg or "head" not in cfg:
        raise UserInputError("{}: the pickled model carries no architecture ('yaml' dict with backbone/head)".format(path))
    names = state.get("names")
    state_dict = _module_state_dict(model, path)
    if not state_dict:
        raise UserInputError("{}: the pickled model holds no weights".format(path))
    info = {k: ckpt[k] for k in ("epoch", "date", "version") if isinstance(ckpt.get(k), (int, str))}
    info["source_class"] = "{}.{}".format(model._pickled_module, model._pickled_name)
    return cfg, names, state_dict, info
