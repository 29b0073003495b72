"""Read Ultralytics `best.pt` files without Ultralytics and without executing code from them.

A `best.pt` is a torch.save'd dict whose `model` / `ema` entry is a pickled DetectionModel: the whole
module tree, pickled by class path (ultralytics.nn.modules.conv.Conv, a fork's
ultralytics.nn.extra_modules.dysample.DySample, ...). Unpickling normally imports those classes and
runs their code. Here every global the pickle names goes through an allow-list:

- tensor / storage rebuild functions, dtypes and plain containers are allowed (they only make data);
- globals from modules that can run code (os, subprocess, builtins' eval/exec, ...) are REFUSED:
  such a file is a code-execution payload, never a checkpoint;
- every other class becomes an inert placeholder that only records the state pickle gives it.

From the placeholder tree we recover the state dict (parameters and persistent buffers), the
architecture `yaml` dict and the class `names`, then rebuild our own modules from the yaml.
"""
from __future__ import annotations

import _compat_pickle
import collections
import pickle
import zipfile

import torch

from defectrt.errors import UserInputError

# Globals that only rebuild data. Anything that can reach the file system, processes or the
# interpreter is absent by construction.
_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): collections.defaultdict,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
}
_DTYPES = {name for name in dir(torch) if isinstance(getattr(torch, name, None), torch.dtype)}

# Module prefixes whose globals are never data: a pickle naming them is an attack or a broken file.
_DANGEROUS_MODULES = (
    "os", "posix", "nt", "subprocess", "sys", "shutil", "socket", "importlib", "pickle", "marshal",
    "runpy", "ctypes", "types", "code", "codeop", "pty", "signal", "multiprocessing", "webbrowser",
    "urllib", "http", "ftplib", "smtplib", "asyncio", "threading", "functools", "operator", "inspect",
    "torch.hub", "torch.jit", "torch.package", "torch.ops", "torch._ops", "torch.cuda", "numpy.lib.npyio",
    "io", "pathlib", "tempfile", "glob", "zipimport",
)
_DANGEROUS_BUILTINS = {"eval", "exec", "compile", "open", "__import__", "getattr", "setattr", "delattr",
                       "globals", "locals", "vars", "input", "breakpoint", "help", "exit", "quit", "print", "memoryview"}


class Placeholder:
    """An inert stand-in for any class the pickle names: it stores what it is given and does nothing."""

    _pickled_module = "?"
    _pickled_name = "?"

    def __init__(self, *args, **kwargs):
        self._args, self._kwargs = args, kwargs

    def __setstate__(self, state):
        self._state = state

    def __call__(self, *args, **kwargs):  # a placeholder used as a function: stays inert
        return type(self)(*args, **kwargs)

    @property
    def state(self):
        state = getattr(self, "_state", None)
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):
            merged = dict(state[0])
            merged.update(state[1] or {})
            return merged
        return state if isinstance(state, dict) else {}

    def __repr__(self):
        return "<placeholder {}.{}>".format(self._pickled_module, self._pickled_name)


_placeholder_cache = {}


def _placeholder(module, name):
    key = (module, name)
    if key not in _placeholder_cache:
        _placeholder_cache[key] = type(name, (Placeholder,), {"_pickled_module": module, "_pickled_name": name})
    return _placeholder_cache[key]


class RefusedPickle(pickle.UnpicklingError):
    pass


class SafeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        # torch.save writes protocol 2, which names Python 2 modules (__builtin__, copy_reg, ...).
        # The mapping only renames Python 2 modules, so applying it to any protocol is harmless.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _DTYPES:
            return getattr(torch, name)
        if module == "torch" and name.endswith("Storage") and hasattr(torch, name):
            return getattr(torch, name)
        root = module.split(".")
        if module == "builtins" and name in _DANGEROUS_BUILTINS or any(
            module == d or module.startswith(d + ".") for d in _DANGEROUS_MODULES
        ) or root[0] in ("os", "posix", "nt", "subprocess"):
            raise RefusedPickle("it names {}.{}, which can execute code".format(module, name))
        if module == "builtins":
            import builtins

            obj = getattr(builtins, name, None)
            if isinstance(obj, type) and obj in (dict, list, tuple, str, bytes, bytearray, int, float, bool, range):
                return obj
            raise RefusedPickle("it names builtins.{}".format(name))
        return _placeholder(module, name)


class _SafePickleModule:
    """What torch.load needs of a `pickle_module`: our Unpickler plus pickle's load/errors."""

    Unpickler = SafeUnpickler
    UnpicklingError = pickle.UnpicklingError
    __name__ = "defectrt_safe_pickle"

    @staticmethod
    def load(f, **kwargs):
        return SafeUnpickler(f, **kwargs).load()


def safe_torch_load(path):
    """torch.load through the allow-list unpickler. Raises UserInputError naming the file."""
    try:
        return torch.load(path, map_location="cpu", pickle_module=_SafePickleModule, weights_only=False)
    except RefusedPickle as exc:
        raise UserInputError(
            "{}: refused to load: {}. This file is not a plain checkpoint; nothing from it was executed. "
            "Ask for the weights as .safetensors or re-export them from a trusted machine.".format(path, exc)
        ) from None
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, RuntimeError, ValueError, AttributeError, KeyError, IndexError) as exc:
        raise UserInputError(
            "{}: not a readable PyTorch checkpoint ({}: {}); is the file truncated or of another kind?".format(
                path, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else ""
            )
        ) from None


def _module_state_dict(obj, prefix="", out=None):
    """Walk a placeholder module tree: `_parameters`, persistent `_buffers`, `_modules`."""
    out = collections.OrderedDict() if out is None else out
    state = obj.state if isinstance(obj, Placeholder) else {}
    non_persistent = state.get("_non_persistent_buffers_set") or set()
    for key, value in (state.get("_parameters") or {}).items():
        if isinstance(value, torch.Tensor):
            out[prefix + key] = value.detach()
    for key, value in (state.get("_buffers") or {}).items():
        if isinstance(value, torch.Tensor) and key not in non_persistent:
            out[prefix + key] = value.detach()
    for key, child in (state.get("_modules") or {}).items():
        if child is not None:
            _module_state_dict(child, prefix + key + ".", out)
    return out


def read_ultralytics_checkpoint(path):
    """-> (yaml dict, names {id: name}, state_dict float32, info dict). Never imports Ultralytics."""
    ckpt = safe_torch_load(path)
    if not isinstance(ckpt, dict):
        raise UserInputError("{}: expected a checkpoint dict with a 'model' or 'ema' entry, got {}".format(path, type(ckpt).__name__))
    model = ckpt.get("ema") or ckpt.get("model")
    if not isinstance(model, Placeholder):
        raise UserInputError(
            "{}: no pickled model under 'model' or 'ema' (keys: {}); is this an Ultralytics checkpoint?".format(
                path, ", ".join(map(str, ckpt))
            )
        )
    state = model.state
    cfg = state.get("yaml")
    if not isinstance(cfg, dict) or "backbone" not in cfg or "head" not in cfg:
        raise UserInputError("{}: the pickled model carries no architecture ('yaml' dict with backbone/head)".format(path))
    names = state.get("names")
    state_dict = collections.OrderedDict((k, v.float()) for k, v in _module_state_dict(model).items())
    if not state_dict:
        raise UserInputError("{}: the pickled model holds no weights".format(path))
    info = {k: ckpt[k] for k in ("epoch", "date", "version") if isinstance(ckpt.get(k), (int, str))}
    info["source_class"] = "{}.{}".format(model._pickled_module, model._pickled_name)
    return cfg, names, state_dict, info
