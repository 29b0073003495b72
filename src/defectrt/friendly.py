"""Turn an unexpected exception into one actionable line for the CLI (issue 19: no raw tracebacks).

`explain(exc)` -> a message, or None where the exception is a bug we cannot explain (the CLI then says so
and points at --debug). Python 3.8 compatible (device side).
"""
from __future__ import annotations

# Modules of the PyTorch side: a device-only install (`pip install defectrt`) lacks them.
_EXPORT_MODULES = ("torch", "torchvision", "safetensors", "onnxslim", "onnxscript", "modelopt")


def explain(exc):
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
