"""Reading a deployment bundle (see defectrt/export/bundle.py for how it is written).

A bundle is trusted only after every file listed in `manifest.json` matches its sha256: a half-copied
or edited model would otherwise run and give wrong boxes without any error. Then the backend is
chosen: the engine when TensorRT is importable and the engine was built for this TensorRT version and
GPU, else the ONNX model through ONNX Runtime; the reason is kept for logs and `Detector.backend_reason`.
"""
from __future__ import annotations

import json
import os
import re

from defectrt import trt_compat
from defectrt.errors import UserInputError
from defectrt.fileio import sha256_file

FORMAT = "defectrt-bundle"
MANIFEST = "manifest.json"
REBUILD = "defectrt export build {} --engine --force"


def is_bundle(path):
    return os.path.isdir(os.fspath(path)) and os.path.isfile(os.path.join(os.fspath(path), MANIFEST))


def read_manifest(folder, verify=True):
    """-> the manifest dict, after checking its format and (verify=True) every file's sha256."""
    folder = os.fspath(folder)
    path = os.path.join(folder, MANIFEST)
    if not os.path.isdir(folder):
        raise UserInputError("{}: no such bundle folder".format(folder))
    if not os.path.isfile(path):
        raise UserInputError("{}: not a bundle ({} is missing); build one with `defectrt export build`".format(
            folder, MANIFEST))
    try:
        with open(path) as f:
            manifest = json.load(f)
    except ValueError as exc:
        raise UserInputError("{}: not valid JSON ({}); rebuild the bundle".format(path, exc))
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UserInputError("{}: format is {!r}, expected {!r}; rebuild the bundle".format(
            path, manifest.get("format") if isinstance(manifest, dict) else None, FORMAT))
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise UserInputError("{}: no `files` hashes; rebuild the bundle with `defectrt export build`".format(path))
    model = manifest.get("model", "model.onnx")
    if model not in files:
        raise UserInputError("{}: the model file {} is not listed in `files`; rebuild the bundle".format(path, model))
    engine = manifest.get("engine")
    if engine and engine.get("file") and engine["file"] not in files:
        raise UserInputError("{}: the engine {} is not listed in `files`; run {}".format(
            path, engine["file"], REBUILD.format(folder)))
    if verify:
        verify_files(folder, files)
    return manifest


def verify_files(folder, files):
    for rel, expected in sorted(files.items()):
        full = os.path.join(folder, *rel.split("/"))
        if not os.path.isfile(full):
            raise UserInputError("bundle {}: {} is listed in {} but missing; copy the whole bundle folder "
                                 "again or rebuild it".format(folder, rel, MANIFEST))
        if sha256_file(full) != expected:
            raise UserInputError("bundle {}: {} does not match its sha256 in {} (changed or corrupted in "
                                 "transfer); copy the bundle again or rebuild it".format(folder, rel, MANIFEST))


def engine_compatibility(record, trt_version, gpu=None):
    """-> (usable, reason). `record` is the manifest's engine entry; gpu {'gpu_name', 'compute_capability'}."""
    if not record:
        return False, "the bundle has no TensorRT engine (add one on the device: defectrt export build BUNDLE --engine)"
    if trt_version is None:
        return False, "TensorRT is not installed here"
    built = record.get("tensorrt_version")
    if built and not trt_compat.same_release(built, trt_version):
        return False, "the engine was built with TensorRT {}, this device has {}".format(built, trt_version)
    gpu = gpu or {}
    for key, label in (("compute_capability", "compute capability"), ("gpu_name", "GPU")):
        want, have = record.get(key), gpu.get(key)
        if want and have and "unknown" not in (want, have) and str(want) != str(have):
            return False, "the engine was built for {} {}, this device has {}".format(label, want, have)
    return True, "TensorRT {} engine built for this {}".format(trt_version, gpu.get("gpu_name") or "GPU")


# issue 16: where defectrt's Python is not available (JetPack 4.6), the bundle's own trtexec script rebuilds it
REBUILD_WITHOUT_PYTHON = " (without defectrt's Python: sh {}/build_engine.sh)"


def choose_backend(folder, manifest, backend="auto", trt_version=None, gpu=None):
    """-> (kind "tensorrt" | "onnxruntime", file path, reason)."""
    folder = os.fspath(folder)
    onnx_path = os.path.join(folder, manifest.get("model", "model.onnx"))
    record = manifest.get("engine")
    if backend == "onnxruntime":
        return "onnxruntime", onnx_path, "ONNX Runtime asked for (backend='onnxruntime')"
    usable, why = engine_compatibility(record, trt_version, gpu)
    if usable:
        return "tensorrt", os.path.join(folder, record.get("file", "model.engine")), why
    if backend == "tensorrt":
        raise UserInputError("bundle {}: cannot run the TensorRT engine: {}. Rebuild it here with: {}".format(
            folder, why, REBUILD.format(folder) + REBUILD_WITHOUT_PYTHON.format(folder)))
    return "onnxruntime", onnx_path, "ONNX Runtime on {} because {}".format(os.path.basename(onnx_path), why)


def thresholds(manifest):
    t = manifest.get("thresholds") or {}
    return {k: t[k] for k in ("conf", "iou", "max_det") if t.get(k) is not None}
