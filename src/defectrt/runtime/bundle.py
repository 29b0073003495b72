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

import dataclasses
import hashlib
import json
import os
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from defectrt import trt_compat
from defectrt.errors import BackendUnavailable, InvalidArgument, NotFound, UnsupportedFormat, UserInputError
from defectrt.fileio import sha256_file
from defectrt.runtime import limits

FORMAT = "defectrt-bundle"
MANIFEST = "manifest.json"
REBUILD = "defectrt export build {} --engine --force"
MAX_MANIFEST_BYTES = 16 << 20  # ours are a few KB
MAX_PEEK_BYTES = 1 << 20  # Manifest.peek reads at most this much
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
        raise UnsupportedFormat("{}: the path {!r} {}; paths in a bundle are relative to its folder, e.g. "
                                "model.onnx. Rebuild the bundle with `defectrt export build`".format(where, rel, why))
    return rel


def resolve_file(folder, rel, where=None):
    """The real path of bundle file `rel`, after checking it stays inside `folder` (links resolved)."""
    where = where or os.path.join(os.fspath(folder), MANIFEST)
    check_relpath(rel, where)
    root = os.path.realpath(os.fspath(folder))
    full = os.path.realpath(os.path.join(root, *rel.split("/")))
    if os.path.commonpath([root, full]) != root:
        raise UnsupportedFormat("{}: {} leaves the bundle folder (a link to {}); a bundle holds its own files, copy "
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
        raise UnsupportedFormat("{}: not a bundle ({} is missing); build one with `defectrt export build`".format(
            folder, MANIFEST))
    if os.path.getsize(path) > MAX_MANIFEST_BYTES:
        raise UnsupportedFormat("{}: {} bytes, too large for a manifest (ours are a few KB); rebuild the bundle".format(
            path, os.path.getsize(path)))
    try:
        with open(path, "rb") as f:
            manifest = json.loads(f.read().decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise UnsupportedFormat("{}: not valid JSON ({}); rebuild the bundle".format(path, str(exc)[:200]))
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UnsupportedFormat("{}: format is {!r}, expected {!r}; rebuild the bundle".format(
            path, manifest.get("format") if isinstance(manifest, dict) else None, FORMAT))
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise UnsupportedFormat("{}: no `files` hashes; rebuild the bundle with `defectrt export build`".format(path))
    check_manifest(manifest, path)
    model = manifest.get("model", "model.onnx")
    if model not in files:
        raise UnsupportedFormat("{}: the model file {} is not listed in `files`; rebuild the bundle".format(path, model))
    engine = manifest.get("engine")
    if engine and engine.get("file") and engine["file"] not in files:
        raise UnsupportedFormat("{}: the engine {} is not listed in `files`; run {}".format(
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
            raise UnsupportedFormat("{}: the sha256 of {} is not 64 hex digits; rebuild the bundle".format(where, rel))
    check_relpath(manifest.get("model", "model.onnx"), where)
    engine = manifest.get("engine")
    if engine is not None and not isinstance(engine, dict):
        raise InvalidArgument("{}: `engine` must be an object or null; rebuild the bundle".format(where))
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
    _thresholds_json(manifest, where)


def verify_files(folder, files):
    for rel, expected in sorted(files.items()):
        full = resolve_file(folder, rel)
        if not os.path.isfile(full):
            raise NotFound("bundle {}: {} is listed in {} but missing; copy the whole bundle folder "
                           "again or rebuild it".format(folder, rel, MANIFEST))
        if sha256_file(full) != expected:
            raise UnsupportedFormat(_mismatch(folder, rel))


def _mismatch(folder, rel):
    return ("bundle {}: {} does not match its sha256 in {} (changed or corrupted in transfer); copy the bundle "
            "again or rebuild it".format(folder, rel, MANIFEST))


def read_verified(folder, manifest, rel):
    """The bytes of bundle file `rel` (`manifest`: its Manifest), checked against the manifest's sha256 after reading them: the bytes
    returned are the bytes hashed, whatever happens to the file afterwards."""
    full = resolve_file(folder, rel)
    try:
        with open(full, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise NotFound("bundle {}: cannot read {} ({})".format(folder, rel, exc.strerror))
    if hashlib.sha256(data).hexdigest() != manifest.files.get(rel):
        raise UnsupportedFormat(_mismatch(folder, rel))
    return data


def engine_compatibility(record, trt_version, gpu=None):
    """-> (usable, reason). `record` is the manifest's EngineRecord (or its JSON object); gpu {'gpu_name',
    'compute_capability'}."""
    record = EngineRecord.from_json(record, MANIFEST, "engine")
    if record is None or not record.to_json():
        return False, "the bundle has no TensorRT engine (add one on the device: defectrt export build BUNDLE --engine)"
    if trt_version is None:
        return False, "TensorRT is not installed here"
    built = record.tensorrt_version
    if built and not trt_compat.same_release(built, trt_version):
        return False, "the engine was built with TensorRT {}, this device has {}".format(built, trt_version)
    gpu = gpu or {}
    for key, label in (("compute_capability", "compute capability"), ("gpu_name", "GPU")):
        want, have = getattr(record, key), gpu.get(key)
        if want and have and "unknown" not in (want, have) and str(want) != str(have):
            return False, "the engine was built for {} {}, this device has {}".format(label, want, have)
    return True, "TensorRT {} engine built for this {}".format(trt_version, gpu.get("gpu_name") or "GPU")


# issue 16: where defectrt's Python is not available (JetPack 4.6), the bundle's own trtexec script rebuilds it
REBUILD_WITHOUT_PYTHON = " (without defectrt's Python: sh {}/build_engine.sh)"


def choose_backend(folder, manifest, backend="auto", trt_version=None, gpu=None):
    """-> (kind "tensorrt" | "onnxruntime", file path, reason) for a Manifest read from `folder`."""
    folder = os.fspath(folder)
    onnx_path = resolve_file(folder, manifest.model)
    record = manifest.engine
    if backend == "onnxruntime":
        return "onnxruntime", onnx_path, "ONNX Runtime asked for (backend='onnxruntime')"
    usable, why = engine_compatibility(record, trt_version, gpu)
    if usable:
        return "tensorrt", resolve_file(folder, record.file or "model.engine"), why
    if backend == "tensorrt":  # TensorRT missing here, or no engine / one for another TensorRT or GPU
        kind = BackendUnavailable if trt_version is None and record is not None else UnsupportedFormat
        raise kind("bundle {}: cannot run the TensorRT engine: {}. Rebuild it here with: {}".format(
            folder, why, REBUILD.format(folder) + REBUILD_WITHOUT_PYTHON.format(folder)))
    return "onnxruntime", onnx_path, "ONNX Runtime on {} because {}".format(os.path.basename(onnx_path), why)


def write_manifest_file(folder, manifest):
    """Write `manifest` (a Manifest) as the bundle's manifest.json, atomically (the one writer of that file)."""
    from defectrt.fileio import atomic_path

    with atomic_path(os.path.join(os.fspath(folder), MANIFEST), force=True) as tmp:
        with open(tmp, "w") as f:
            json.dump(manifest.to_json(), f, indent=2, sort_keys=False)
            f.write("\n")
    return manifest


# ------------------------------------------------------------------------------ the typed manifest
# A record is a frozen dataclass whose fields are the JSON keys it knows (same names). Two bookkeeping fields
# make reading and writing a record change nothing: `extra` keeps the keys this version does not know (written
# by a newer defectrt) and `keys` the keys present, in their order (a key present with null stays null, an
# absent one stays absent; older bundles and the native reader, native/src/bundle.cpp, see the same keys).
_BOOKKEEPING = ("extra", "keys", "folder")


def _json_fields(cls):
    return [f for f in dataclasses.fields(cls) if f.name not in _BOOKKEEPING]


def _field_default(f):
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def _plain(value):
    """A field value as JSON: records to objects, tuples to arrays."""
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class Record(object):
    """Base of the manifest's records (see the comment above)."""

    extra: Dict[str, Any] = field(default_factory=dict)
    keys: Optional[Tuple[str, ...]] = field(default=None, compare=False, repr=False)

    @classmethod
    def from_json(cls, obj, where=MANIFEST, key=None):
        """A JSON object -> this record (None -> None). Nested records are read by their field's type."""
        if obj is None:
            return None
        if isinstance(obj, cls):
            return obj
        if not isinstance(obj, dict):
            raise InvalidArgument("{}: `{}` must be an object, not {}; rebuild the bundle".format(
                where, key or cls.__name__, type(obj).__name__))
        known = {f.name: f for f in _json_fields(cls)}
        values = {}
        for name, f in known.items():
            if name in obj:
                sub = f.metadata.get("record")
                values[name] = sub.from_json(obj[name], where, name) if sub else obj[name]
        values.update(cls._convert(values, where))
        extra = {k: v for k, v in obj.items() if k not in known}
        return cls(extra=extra, keys=tuple(obj), **values)

    @classmethod
    def _convert(cls, values, where):
        """Hook: typed values from the JSON ones read (e.g. imgsz -> a tuple)."""
        return {}

    @classmethod
    def create(cls, **values):
        """A new record with `values` set; each key given is written, null included, in the field order."""
        order = [f.name for f in _json_fields(cls) if f.name in values]
        return cls(keys=tuple(order), **values)

    def set(self, **values):
        """A copy with `values` set (frozen records change by copy); new keys are written after the others."""
        present = self._present()
        return dataclasses.replace(self, keys=present + tuple(k for k in values if k not in present), **values)

    def _present(self):
        if self.keys is not None:
            return self.keys
        return tuple(f.name for f in _json_fields(type(self)) if getattr(self, f.name) != _field_default(f))

    def value(self, name, default):
        """Field `name`, or `default` where it is absent or null."""
        got = getattr(self, name)
        return default if got is None else got

    def to_json(self):
        """The JSON object: the keys present in their order, then fields set since, then unknown keys kept."""
        known = {f.name: f for f in _json_fields(type(self))}
        out = {}
        for name in self._present():
            if name in known:
                out[name] = _plain(getattr(self, name))
            elif name in self.extra:
                out[name] = self.extra[name]
        for name, f in known.items():
            if name not in out and getattr(self, name) != _field_default(f):
                out[name] = _plain(getattr(self, name))
        for name, value in self.extra.items():
            out.setdefault(name, value)
        return out


def _record(cls):
    return field(default=None, metadata={"record": cls})


@dataclass(frozen=True)
class Letterbox(Record):
    """How images are letterboxed for the model: the border value the bundle was validated with, and the
    facts the runtime assumes (centred, RGB, 1/255, NCHW)."""

    center: Optional[bool] = None
    pad_value: Optional[int] = None
    scaleup: Optional[bool] = None
    stride: Optional[int] = None
    color: Optional[str] = None
    scale: Optional[str] = None
    layout: Optional[str] = None


@dataclass(frozen=True)
class Thresholds(Record):
    """The stored defaults of conf / iou / max_det (checked by Manifest.stored_thresholds)."""

    conf: Optional[float] = None
    iou: Optional[float] = None
    max_det: Optional[int] = None


@dataclass(frozen=True)
class Batch(Record):
    """The ONNX model's batch axis: fixed `size`, or dynamic up to `max`."""

    dynamic: Optional[bool] = None
    size: Optional[int] = None
    max: Optional[int] = None


@dataclass(frozen=True)
class Golden(Record):
    """Polygraphy-format golden inputs / outputs (bundle paths) and the tolerance of their comparison."""

    inputs: Optional[str] = None
    outputs: Optional[str] = None
    atol: Optional[float] = None
    rtol: Optional[float] = None


@dataclass(frozen=True)
class BuildSettings(Record):
    """How the engine is (re)built on the device: workspace, DLA core, timing cache and plugin file names."""

    workspace: Any = None
    dla_core: Optional[int] = None
    timing_cache: Optional[str] = None
    plugins: Any = None


@dataclass(frozen=True)
class EngineRecord(Record):
    """A TensorRT engine of the bundle (export/engine.build_engine): its file and what it was built for."""

    file: Optional[str] = None
    tensorrt_version: Optional[str] = None
    precision: Optional[str] = None
    strongly_typed: Optional[bool] = None
    batch: Any = None  # {"min", "opt", "max"}
    dla_core: Optional[int] = None
    workspace_bytes: Optional[int] = None
    build_seconds: Optional[float] = None
    plugins: Any = None
    gpu_name: Optional[str] = None
    compute_capability: Optional[str] = None


@dataclass(frozen=True)
class ValRecord(Record):
    """Accuracy measured at build time (--val): the dataset, the thresholds used and one metrics object
    ({precision, recall, map50, map50_95, ...}) per precision measured."""

    data: Optional[str] = None
    split: Optional[str] = None
    conf: Optional[float] = None
    iou: Optional[float] = None
    recall_conf: Optional[float] = None  # the bundle's own conf, at which the accuracy gate reads recall
    fp32: Optional[dict] = None
    fp16: Optional[dict] = None
    int8: Optional[dict] = None
    bf16: Optional[dict] = None

    def metrics(self, precision):
        """The metrics object measured at `precision`, or None."""
        return getattr(self, precision, None) if precision in ("fp32", "fp16", "int8", "bf16") else None


@dataclass(frozen=True)
class RuntimeSettings(Record):
    """Per-runtime settings the bundle asks for (e.g. OpenVINO bf16 execution)."""

    openvino: Optional[dict] = None


@dataclass(frozen=True)
class Manifest(Record):
    """A bundle's manifest.json (docs/manifest.schema.json) as a typed, frozen value.

    `Manifest.read(folder)` checks it (format, paths, bounds; verify=True: every file's sha256) and types it;
    `verify()` re-checks the files; `write()` writes it atomically. Nested records: letterbox, thresholds,
    batch, golden, build, engine, val, runtime. Change a manifest by copy: `m.set(engine=record)`.
    """

    format: str = FORMAT
    version: Optional[int] = None
    model: str = "model.onnx"
    names: Any = None  # {"0": name, ...} or [name, ...] as written; class_names parses it
    imgsz: Optional[Tuple[int, int]] = None
    letterbox: Optional[Letterbox] = _record(Letterbox)
    precision: Optional[str] = None
    int8_flavour: Optional[str] = None
    int8_calibration: Any = None
    int8_unquantized: Any = None
    opset: Optional[int] = None
    grid_sample: Optional[str] = None
    grid_sample_reason: Optional[str] = None
    nms: Optional[str] = None
    variant: Optional[str] = None
    weights_sha256: Optional[str] = None
    batch: Optional[Batch] = _record(Batch)
    target_trt: Optional[str] = None
    thresholds: Optional[Thresholds] = _record(Thresholds)
    golden: Optional[Golden] = _record(Golden)
    build: Optional[BuildSettings] = _record(BuildSettings)
    versions: Optional[dict] = None
    engine: Optional[EngineRecord] = _record(EngineRecord)
    val: Optional[ValRecord] = _record(ValRecord)
    runtime: Optional[RuntimeSettings] = _record(RuntimeSettings)
    accuracy_gate: Optional[dict] = None
    int8_calibration_sample: Any = None
    int8_qat: Any = None
    device_scripts: Optional[dict] = None
    files: Dict[str, str] = field(default_factory=dict)
    folder: Optional[str] = field(default=None, compare=False, repr=False)  # where it was read from

    @classmethod
    def _convert(cls, values, where):
        if values.get("imgsz") is not None:
            from defectrt.modelref import parse_imgsz

            hw = parse_imgsz(values["imgsz"], strict=False)
            if hw is None:
                raise InvalidArgument("{}: `imgsz` {!r} is not [h, w]; rebuild the bundle".format(where, values["imgsz"]))
            return {"imgsz": tuple(hw)}
        return {}

    @classmethod
    def read(cls, folder, verify=True):
        folder = os.fspath(folder)
        return dataclasses.replace(cls.from_json(read_manifest(folder, verify=verify), os.path.join(folder, MANIFEST)),
                                   folder=folder)

    @classmethod
    def peek(cls, folder):
        """The manifest of `folder` read without its checks, or None when there is none or it is not readable
        JSON: for showing what an engine's manifest says (defectrt inspect), never for running a bundle."""
        path = os.path.join(os.fspath(folder), MANIFEST)
        try:
            with open(path, "rb") as f:
                data = json.loads(f.read(MAX_PEEK_BYTES).decode("utf-8"))
            return dataclasses.replace(cls.from_json(data, path), folder=os.fspath(folder))
        except (OSError, ValueError, RecursionError, TypeError):
            return None

    def verify(self):
        """Every listed file exists, is a regular file inside the bundle, and matches its sha256."""
        verify_files(self.folder, self.files)
        return self

    def write(self, folder=None):
        """Write manifest.json into `folder` (default: the folder it was read from), atomically."""
        write_manifest_file(folder or self.folder, self)
        return self

    @property
    def where(self):
        return os.path.join(self.folder or ".", MANIFEST)

    @property
    def model_path(self):
        return resolve_file(self.folder, self.model)

    @property
    def class_names(self):
        """{id: name}, checked (ids bounded), from `names`."""
        from defectrt.runtime.modelinfo import parse_names

        return parse_names(self.names, "{} `names`".format(self.where))

    @property
    def pad_value(self):
        """The letterbox border value the bundle was validated with (0 .. 255), else 114."""
        from defectrt.runtime.preprocess import PAD_VALUE

        value = self.letterbox.pad_value if self.letterbox is not None else None
        if value is None:
            return PAD_VALUE
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
            raise InvalidArgument("{}: letterbox.pad_value {!r} must be a whole number 0 .. 255; rebuild the "
                                  "bundle".format(self.where, value))
        return value

    def stored_thresholds(self):
        """The stored conf / iou / max_det that are set, each checked against its bounds."""
        t = self.thresholds or Thresholds()
        return _checked_thresholds({"conf": t.conf, "iou": t.iou, "max_det": t.max_det}, self.where)

    @property
    def openvino_settings(self):
        """What the bundle asks of OpenVINO ({} when nothing)."""
        return dict((self.runtime.openvino if self.runtime else None) or {})


def _thresholds_json(manifest, where):
    """The stored conf / iou / max_det of a manifest JSON object that are set, each checked."""
    t = manifest.get("thresholds") or {}
    if not isinstance(t, dict):
        raise InvalidArgument("{}: `thresholds` must be an object, not {}; rebuild the bundle".format(
            where, type(t).__name__))
    return _checked_thresholds(t, where)


def _checked_thresholds(t, where):
    out = {}
    for key in ("conf", "iou"):
        if t.get(key) is not None:
            out[key] = limits.check_threshold(t[key], "{} thresholds.{}".format(where, key))
    if t.get("max_det") is not None:
        out["max_det"] = limits.check_max_det(t["max_det"], "{} thresholds.max_det".format(where))
    return out
