"""Reading a deployment bundle (see defectrt/export/bundle.py for how it is written).

A bundle is trusted only after every file listed in `manifest.json` matches its sha256: a half-copied
or edited model would otherwise run and give wrong boxes without any error. Then the backend is
chosen: the engine when TensorRT is importable and the engine was built for this TensorRT version and
GPU, else the ONNX model through ONNX Runtime; the reason is kept for logs and `Detector.backend_reason`.

A manifest is untrusted: every path in it must be relative, normalised ("a/b.onnx", "/" separators, no
".", "..", empty or absolute parts) and, with links resolved, inside the bundle folder; its numbers
(thresholds, imgsz, class ids) are bounded (defectrt.runtime.limits). The model is read once: its bytes
are hashed and those same bytes are given to ONNX Runtime (`read_verified`), so the file checked is the
file that runs.
"""
from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
from dataclasses import dataclass

from defectrt import trt_compat
from defectrt.errors import InvalidArgument, NotFound, UserInputError
from defectrt.fileio import sha256_file
from defectrt.runtime import limits

FORMAT = "defectrt-bundle"
MANIFEST = "manifest.json"
REBUILD = "defectrt export build {} --engine --force"
MAX_MANIFEST_BYTES = 16 << 20  # ours are a few KB
MAX_FILES = 10000
MAX_PATH_CHARS = 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def path_problem(rel):
    """-> None when `rel` is a path a manifest may hold, else what is wrong with it."""
    if not isinstance(rel, str) or not rel:
        return "not a non-empty string"
    if len(rel) > MAX_PATH_CHARS:
        return "longer than {} characters".format(MAX_PATH_CHARS)
    if "\\" in rel or "\0" in rel or ":" in rel:
        return "contains a backslash, NUL or colon (use relative paths with /)"
    if rel.startswith("/"):
        return "is absolute"
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "has an empty, '.' or '..' part"
    if posixpath.normpath(rel) != rel:
        return "is not normalised"
    return None


def check_relpath(rel, where):
    why = path_problem(rel)
    if why:
        raise UserInputError("{}: the path {!r} {}; paths in a bundle are relative to its folder, e.g. "
                             "model.onnx. Rebuild the bundle with `defectrt export build`".format(where, rel, why))
    return rel


def resolve_file(folder, rel, where=None):
    """The real path of bundle file `rel`, after checking it stays inside `folder` (links resolved)."""
    where = where or os.path.join(os.fspath(folder), MANIFEST)
    check_relpath(rel, where)
    root = os.path.realpath(os.fspath(folder))
    full = os.path.realpath(os.path.join(root, *rel.split("/")))
    if os.path.commonpath([root, full]) != root:
        raise UserInputError("{}: {} leaves the bundle folder (a link to {}); a bundle holds its own files, copy "
                             "them in instead of linking".format(where, rel, full))
    return full


def is_bundle(path):
    return os.path.isdir(os.fspath(path)) and os.path.isfile(os.path.join(os.fspath(path), MANIFEST))


def read_manifest(folder, verify=True):
    """-> the manifest dict, after checking its format and (verify=True) every file's sha256."""
    folder = os.fspath(folder)
    path = os.path.join(folder, MANIFEST)
    if not os.path.isdir(folder):
        raise NotFound("{}: no such bundle folder".format(folder))
    if not os.path.isfile(path):
        raise UserInputError("{}: not a bundle ({} is missing); build one with `defectrt export build`".format(
            folder, MANIFEST))
    if os.path.getsize(path) > MAX_MANIFEST_BYTES:
        raise UserInputError("{}: {} bytes, too large for a manifest (ours are a few KB); rebuild the bundle".format(
            path, os.path.getsize(path)))
    try:
        with open(path, "rb") as f:
            manifest = json.loads(f.read().decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise UserInputError("{}: not valid JSON ({}); rebuild the bundle".format(path, str(exc)[:200]))
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UserInputError("{}: format is {!r}, expected {!r}; rebuild the bundle".format(
            path, manifest.get("format") if isinstance(manifest, dict) else None, FORMAT))
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise UserInputError("{}: no `files` hashes; rebuild the bundle with `defectrt export build`".format(path))
    check_manifest(manifest, path)
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


def check_manifest(manifest, where):
    """Paths and bounds of a manifest dict (format and `files` presence are checked by read_manifest)."""
    files = manifest["files"]
    if len(files) > MAX_FILES:
        raise UserInputError("{}: {} files listed, more than {}; rebuild the bundle".format(where, len(files), MAX_FILES))
    for rel, digest in files.items():
        check_relpath(rel, where)
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise UserInputError("{}: the sha256 of {} is not 64 hex digits; rebuild the bundle".format(where, rel))
    check_relpath(manifest.get("model", "model.onnx"), where)
    engine = manifest.get("engine")
    if engine is not None and not isinstance(engine, dict):
        raise UserInputError("{}: `engine` must be an object or null; rebuild the bundle".format(where))
    if engine and engine.get("file") is not None:
        check_relpath(engine["file"], where)
    if manifest.get("names") is not None:
        names = manifest["names"]
        if not isinstance(names, (dict, list)):
            raise UserInputError("{}: `names` must be an object {{id: name}} or a list".format(where))
        from defectrt.runtime.modelinfo import parse_names

        parse_names(names, "{} `names`".format(where))
    if manifest.get("imgsz") is not None:
        from defectrt.modelref import parse_imgsz

        hw = parse_imgsz(manifest["imgsz"], strict=False)
        if hw is None:
            raise UserInputError("{}: `imgsz` {!r} is not [h, w]; rebuild the bundle".format(where, manifest["imgsz"]))
        limits.check_imgsz(hw, "{} `imgsz`".format(where))
    thresholds(manifest, where)


def verify_files(folder, files):
    for rel, expected in sorted(files.items()):
        full = resolve_file(folder, rel)
        if not os.path.isfile(full):
            raise UserInputError("bundle {}: {} is listed in {} but missing; copy the whole bundle folder "
                                 "again or rebuild it".format(folder, rel, MANIFEST))
        if sha256_file(full) != expected:
            raise UserInputError(_mismatch(folder, rel))


def _mismatch(folder, rel):
    return ("bundle {}: {} does not match its sha256 in {} (changed or corrupted in transfer); copy the bundle "
            "again or rebuild it".format(folder, rel, MANIFEST))


def read_verified(folder, manifest, rel):
    """The bytes of bundle file `rel`, checked against the manifest's sha256 after reading them: the bytes
    returned are the bytes hashed, whatever happens to the file afterwards."""
    full = resolve_file(folder, rel)
    try:
        with open(full, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise UserInputError("bundle {}: cannot read {} ({})".format(folder, rel, exc.strerror))
    if hashlib.sha256(data).hexdigest() != manifest["files"].get(rel):
        raise UserInputError(_mismatch(folder, rel))
    return data


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
    onnx_path = resolve_file(folder, manifest.get("model", "model.onnx"))
    record = manifest.get("engine")
    if backend == "onnxruntime":
        return "onnxruntime", onnx_path, "ONNX Runtime asked for (backend='onnxruntime')"
    usable, why = engine_compatibility(record, trt_version, gpu)
    if usable:
        return "tensorrt", resolve_file(folder, record.get("file", "model.engine")), why
    if backend == "tensorrt":
        raise UserInputError("bundle {}: cannot run the TensorRT engine: {}. Rebuild it here with: {}".format(
            folder, why, REBUILD.format(folder) + REBUILD_WITHOUT_PYTHON.format(folder)))
    return "onnxruntime", onnx_path, "ONNX Runtime on {} because {}".format(os.path.basename(onnx_path), why)


def pad_value(manifest, where=MANIFEST):
    """The letterbox border value the bundle was validated with (`letterbox.pad_value`, 0 .. 255), else 114."""
    from defectrt.runtime.preprocess import PAD_VALUE

    record = manifest.get("letterbox")
    if record is None or record.get("pad_value") is None:
        return PAD_VALUE
    value = record["pad_value"]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
        raise InvalidArgument("{}: letterbox.pad_value {!r} must be a whole number 0 .. 255; rebuild the "
                              "bundle".format(where, value))
    return value


def write_manifest_file(folder, manifest):
    """Write `manifest` as the bundle's manifest.json, atomically (the one writer of that file)."""
    from defectrt.fileio import atomic_path

    with atomic_path(os.path.join(os.fspath(folder), MANIFEST), force=True) as tmp:
        with open(tmp, "w") as f:
            json.dump(manifest, f, indent=2, sort_keys=False)
            f.write("\n")
    return manifest


@dataclass
class Manifest(object):
    """A bundle's manifest: `read` (format, paths, bounds; verify=True: every file's sha256), `verify`, `write`,
    and the typed fields the runtime uses. `data` is the JSON object (docs/manifest.schema.json) as written."""

    folder: str
    data: dict

    @classmethod
    def read(cls, folder, verify=True):
        return cls(os.fspath(folder), read_manifest(folder, verify=verify))

    def verify(self):
        """Every listed file exists, is a regular file inside the bundle, and matches its sha256."""
        verify_files(self.folder, self.data["files"])
        return self

    def write(self):
        write_manifest_file(self.folder, self.data)
        return self

    @property
    def where(self):
        return os.path.join(self.folder, MANIFEST)

    @property
    def model(self):
        return self.data.get("model", "model.onnx")

    @property
    def model_path(self):
        return resolve_file(self.folder, self.model)

    @property
    def names(self):
        from defectrt.runtime.modelinfo import parse_names

        return parse_names(self.data.get("names"), "{} `names`".format(self.where))

    @property
    def imgsz(self):
        from defectrt.modelref import parse_imgsz

        return parse_imgsz(self.data.get("imgsz"), strict=False)

    @property
    def precision(self):
        return self.data.get("precision")

    @property
    def engine(self):
        return self.data.get("engine")

    @property
    def pad_value(self):
        return pad_value(self.data, self.where)

    @property
    def thresholds(self):
        return thresholds(self.data, self.where)


def thresholds(manifest, where=MANIFEST):
    """The stored conf / iou / max_det that are set, each checked against its bounds."""
    t = manifest.get("thresholds") or {}
    if not isinstance(t, dict):
        raise UserInputError("{}: `thresholds` must be an object; rebuild the bundle".format(where))
    out = {}
    for key in ("conf", "iou"):
        if t.get(key) is not None:
            out[key] = limits.check_threshold(t[key], "{} thresholds.{}".format(where, key))
    if t.get("max_det") is not None:
        out["max_det"] = limits.check_max_det(t["max_det"], "{} thresholds.max_det".format(where))
    return out
