"""Turn an unexpected exception into one actionable line for the CLI (issue 19: no raw tracebacks).

`explain(exc)` -> a message, or None where the exception is a bug we cannot explain (the CLI then says so
and points at --debug). Python 3.8 compatible (device side).
"""
from __future__ import annotations

import re

# atomic_path / atomic_dir write to ".tmp-<pid>-<8 random chars><final name>": users should see the final name.
_TEMPORARY = re.compile(r"\.tmp-\d+-[A-Za-z0-9_]{8}")
_IR_VERSION = re.compile(r"Unsupported model IR version: (\d+), max supported IR version: (\d+)")


def clean(message):
    """The message with our temporary names replaced by the final ones (issue 19)."""
    return _TEMPORARY.sub("", str(message))

# Modules of the PyTorch side: a device-only install (`pip install defectrt`) lacks them.
_EXPORT_MODULES = ("torch", "torchvision", "safetensors", "onnxslim", "onnxscript", "modelopt")


def explain(exc):
    ir = _IR_VERSION.search(str(exc))
    if ir:
        return ("the ONNX model has IR version {} but this ONNX Runtime reads at most {}: upgrade onnxruntime "
                "(pip install -U onnxruntime), or re-save the model with an onnx release whose IR version is {} or "
                "lower".format(ir.group(1), ir.group(2), ir.group(2)))
    if isinstance(exc, ModuleNotFoundError):
        top = (exc.name or "").split(".")[0]
        if top in _EXPORT_MODULES:
            return ("this needs the PyTorch side ({} is not installed): install it with "
                    "pip install 'defectrt[export]' (CPU machines: pip install torch==2.13.0 first, from a CPU "
                    "build), or run the device-side commands (detect, val on ONNX / bundles, bench) only".format(top))
        if top == "tensorrt":
            return ("TensorRT's Python package is not installed: on a desktop pip install 'defectrt[trt]'; on a "
                    "Jetson use JetPack's python3-libnvinfer in a venv made with --system-site-packages")
        if top == "matplotlib":
            return "plots need matplotlib: pip install 'defectrt[plot]'"
        if top == "openvino":
            return "the OpenVINO backend needs pip install 'defectrt[openvino]'"
        return "a Python module is missing: {} (pip install it, or reinstall defectrt)".format(exc.name)
    if isinstance(exc, PermissionError):
        return "permission denied: {} (choose a folder you can write to, e.g. --save-dir ~/runs)".format(
            getattr(exc, "filename", None) or exc)
    if isinstance(exc, IsADirectoryError):
        return "expected a file, got a folder: {}".format(exc.filename)
    if isinstance(exc, FileNotFoundError):
        return "file not found: {}".format(exc.filename or exc)
    if isinstance(exc, OSError) and getattr(exc, "filename", None):
        return "{}: {} ({})".format(exc.filename, exc.strerror or exc, type(exc).__name__)
    if isinstance(exc, MemoryError):
        return "out of memory: try a smaller --imgsz or --batch"
    return None
