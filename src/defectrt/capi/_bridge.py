"""The Python half of the C ABI: what `defectrt_capi.c` calls inside the embedded interpreter.

Kept small and free of policy: the C side validates arguments and owns handles and locks; this
module turns a caller's pixel buffer into a numpy view (no copy for packed BGR / GRAY / BGRA), runs
`defectrt.runtime.detector.Detector` and packs the detections into the exact bytes of a
`drt_detection` array (x1, y1, x2, y2, score as float32, class_id as int32: 24 bytes each, little
or native endian as the C struct), which the C side copies into the caller's array.

Errors the caller can act on are raised as `CapiError(status, message)`; the C side maps
`exc.drt_status` to the returned drt_status and `str(exc)` to drt_last_error(). Any other
exception becomes DRT_E_RUNTIME (while loading or running a model) with "Type: message".

No torch here, Python 3.8 syntax.
"""
import os

import numpy as np

# drt_status values (defectrt.h); kept in sync by tests/test_capi.py, which parses the header.
OK = 0
INVALID_ARGUMENT = 1
NULL_POINTER = 2
NOT_FOUND = 3
UNSUPPORTED_FORMAT = 4
CAPACITY_TOO_SMALL = 5
RUNTIME = 6
PYTHON = 7
INIT_FAILED = 8

# drt_pixel_format values -> channels
PIXEL_BGR, PIXEL_RGB, PIXEL_GRAY, PIXEL_BGRA, PIXEL_RGBA = 0, 1, 2, 3, 4
CHANNELS = {PIXEL_BGR: 3, PIXEL_RGB: 3, PIXEL_GRAY: 1, PIXEL_BGRA: 4, PIXEL_RGBA: 4}

# One drt_detection: native byte order, no padding (24 bytes; the C side checks the size).
DETECTION_DTYPE = np.dtype([("box", "=f4", (4,)), ("score", "=f4"), ("class_id", "=i4")])
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
BACKENDS = ("auto", "onnxruntime", "tensorrt")


_DLL_DIRECTORIES = []  # handles of os.add_dll_directory, kept so the folders stay on the search path


def add_dll_directories(value=None):
    """Windows: put the folders of DEFECTRT_DLL_DIRS (os.pathsep-separated) on the DLL search path.

    Python 3.8+ ignores PATH when an extension module loads its DLLs, so a TensorRT or CUDA folder
    that the packages do not register themselves is named here. A no-op elsewhere. Returns the folders
    added.
    """
    value = os.environ.get("DEFECTRT_DLL_DIRS", "") if value is None else value
    added = []
    if not hasattr(os, "add_dll_directory"):
        return added
    for folder in value.split(os.pathsep):
        if folder and os.path.isdir(folder):
            _DLL_DIRECTORIES.append(os.add_dll_directory(folder))
            added.append(folder)
    return added


add_dll_directories()


class CapiError(Exception):
    """An error with the drt_status the C caller gets."""

    def __init__(self, status, message):
        Exception.__init__(self, message)
        self.drt_status = int(status)


def _check_model_path(model_path):
    if not os.path.exists(model_path):
        raise CapiError(NOT_FOUND, "{}: no such file or folder".format(model_path))
    if os.path.isdir(model_path):
        if not os.path.isfile(os.path.join(model_path, "manifest.json")):
            raise CapiError(UNSUPPORTED_FORMAT, "{}: a folder but not a defectrt bundle (no manifest.json); "
                                                "give an .onnx file, an engine or a bundle folder".format(model_path))
        return
    if not os.access(model_path, os.R_OK):
        raise CapiError(NOT_FOUND, "{}: cannot be read (permission denied)".format(model_path))
    lower = model_path.lower()
    if not (lower.endswith(".onnx") or lower.endswith(ENGINE_SUFFIXES)):
        raise CapiError(UNSUPPORTED_FORMAT, "{}: unsupported model format; give an .onnx file, a TensorRT engine "
                                            "({}) or a bundle folder".format(model_path, "/".join(ENGINE_SUFFIXES)))


def _class_names(names, nc_hint=None):
    """Detector.names ({id: name} or a list) -> list indexed by class id (gaps filled with str(id))."""
    if names is None:
        names = {}
    if not isinstance(names, dict):
        names = dict(enumerate(names))
    ids = [int(k) for k in names]
    n = max(ids) + 1 if ids else int(nc_hint or 0)
    table = dict((int(k), str(v)) for k, v in names.items())
    return [table.get(i, str(i)) for i in range(n)]


class CDetector(object):
    """One drt_detector's Python side. The C side serialises calls per handle."""

    def __init__(self, model_path, backend, conf, iou, max_det, threads):
        """conf / iou < 0 and max_det / threads == 0 mean "the model's default" (a bundle's stored
        thresholds, else 0.25 / 0.45 / 300; ONNX Runtime's thread count), as None does in Python."""
        if backend not in BACKENDS:
            raise CapiError(INVALID_ARGUMENT, "backend {!r}: expected one of {}".format(backend, ", ".join(BACKENDS)))
        if not (conf < 0.0 or 0.0 <= conf <= 1.0):
            raise CapiError(INVALID_ARGUMENT, "conf {}: expected 0..1 (or negative for the default)".format(conf))
        if not (iou < 0.0 or 0.0 <= iou <= 1.0):
            raise CapiError(INVALID_ARGUMENT, "iou {}: expected 0..1 (or negative for the default)".format(iou))
        if max_det < 0:
            raise CapiError(INVALID_ARGUMENT, "max_det {}: expected >= 1 (or 0 for the default)".format(max_det))
        if threads < 0:
            raise CapiError(INVALID_ARGUMENT, "threads {}: expected >= 1 (or 0 for the default)".format(threads))
        try:
            from defectrt.runtime.detector import Detector, resolve_model_path
        except ImportError as exc:
            raise CapiError(INIT_FAILED, "cannot import the defectrt runtime: {}".format(exc))
        from defectrt.errors import DefectrtError

        if model_path.startswith("demo:"):
            try:
                model_path = resolve_model_path(model_path)
            except DefectrtError as exc:
                raise CapiError(NOT_FOUND, str(exc))
        _check_model_path(model_path)
        try:
            self.detector = Detector(model_path, backend=backend, conf=None if conf < 0 else conf,
                                     iou=None if iou < 0 else iou, max_det=max_det or None, threads=threads or None)
        except ImportError as exc:  # e.g. onnxruntime / tensorrt missing in the environment
            raise CapiError(INIT_FAILED, "{}: {}".format(model_path, exc))
        except DefectrtError as exc:
            raise CapiError(RUNTIME, str(exc))
        self.names = _class_names(getattr(self.detector, "names", None))

    def class_names(self):
        """List of class names, index = class id (the C side copies them once)."""
        return list(self.names)

    def detect(self, buf, width, height, stride, fmt):
        """buf: a memoryview of the caller's pixels (stride * (height - 1) + width * channels bytes).

        Returns the detections as bytes of a drt_detection array, best score first. Nothing keeps a
        reference to `buf` after the return (the C side releases it and checks that).
        """
        channels = CHANNELS.get(fmt)
        if channels is None:
            raise CapiError(UNSUPPORTED_FORMAT, "pixel format {}".format(fmt))
        flat = np.frombuffer(buf, dtype=np.uint8)
        if stride == width * channels:
            img = flat.reshape(height, width, channels)
        else:  # row padding: a strided view; as_bgr() copies it to contiguous once
            img = np.lib.stride_tricks.as_strided(flat, shape=(height, width, channels), strides=(stride, channels, 1),
                                                  writeable=False)
        if fmt == PIXEL_GRAY:
            img = img[:, :, 0]
        elif fmt == PIXEL_RGB or fmt == PIXEL_RGBA:
            import cv2

            code = cv2.COLOR_RGB2BGR if fmt == PIXEL_RGB else cv2.COLOR_RGBA2BGR
            img = cv2.cvtColor(img, code)
        try:
            dets = self.detector(img)
        finally:
            del img, flat  # no view of the caller's memory outlives the call
        return pack(dets)


def pack(dets):
    """Detections -> bytes of drt_detection structs sorted by score, highest first (~20 us for 100)."""
    scores = np.asarray(dets.scores, dtype=np.float32).reshape(-1)
    n = scores.shape[0]
    if n == 0:
        return b""
    order = np.argsort(-scores, kind="stable")
    out = np.empty(n, dtype=DETECTION_DTYPE)
    out["box"] = np.asarray(dets.boxes, dtype=np.float32).reshape(-1, 4)[order]
    out["score"] = scores[order]
    out["class_id"] = np.asarray(dets.class_ids).reshape(-1)[order]
    return out.tobytes()


def create(model_path, backend, conf, iou, max_det, threads):
    return CDetector(model_path, backend, conf, iou, max_det, threads)


def environment():
    """A one-line description of the interpreter (for drt_last_error() texts and debugging)."""
    import sys

    return "Python {} at {} (sys.path: {})".format(sys.version.split()[0], sys.prefix, os.pathsep.join(sys.path))
