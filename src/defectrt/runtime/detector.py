"""`Detector`: one API over ONNX Runtime, TensorRT engines, bundles and in-process backends.

    from defectrt import Detector
    det = Detector("screw.bundle")          # the engine if it fits this device, else ONNX Runtime
    dets = det(cv2.imread("part.jpg"))      # Detections in original pixels
    for d in det.stream(frames): ...        # pre-processing, inference and NMS overlapped in threads
    for d in det.stream(frames, inflight=4): ...  # throughput mode: 4 requests in flight, results in order

Every model kind goes through the same letterbox and NMS (defectrt.runtime.preprocess / postprocess),
so a PyTorch model wrapped as a backend object and its exported engine differ only in the network.
A Detector is not meant to be called from several threads at once (it reuses its input buffer);
use one per thread, or `stream`.
"""
from __future__ import annotations

import logging
import os
import time

import numpy as np

from defectrt.errors import (BackendUnavailable, DefectrtError, InvalidArgument, NotFound, UnsupportedFormat,
                             UserInputError, is_library_failure, library_failure)
from defectrt.options import DetectorOptions
from defectrt.options import resolve as resolve_options
from defectrt.runtime import bundle as bundle_mod
from defectrt.runtime import limits
from defectrt.runtime.backend import Backend
from defectrt.runtime.pipeline import pipelined
from defectrt.runtime.postprocess import postprocess as _postprocess
from defectrt.runtime.preprocess import PAD_VALUE
from defectrt.runtime.preprocess import preprocess as _preprocess
from defectrt.modelref import DEMO_DIR, ModelRef, parse_imgsz

log = logging.getLogger("defectrt")

BACKENDS = ("auto", "onnxruntime", "tensorrt", "openvino")
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
DEFAULTS = {"conf": 0.25, "iou": 0.45, "max_det": 300}
DEFAULT_MAX_BATCH = 16  # chunk size for models with a dynamic batch: bounds memory for long lists


def resolve_model_path(model):
    """`demo:NAME` -> the bundle shipped in defectrt/demo; anything else is taken as a path."""
    ref = ModelRef.parse(model)
    if ref.is_demo:
        for candidate in (os.path.join(DEMO_DIR, ref.value + ".bundle"), os.path.join(DEMO_DIR, ref.value)):
            if bundle_mod.is_bundle(candidate):
                return candidate
        raise NotFound("{}: no demo bundle of that name is shipped in this build (looked in {}); pass a bundle "
                       "folder, an .onnx or an .engine path".format(ref, DEMO_DIR))
    return os.fspath(model)


def _sibling_names(engine_path):
    """Class names for a bare engine from the manifest beside it (engines carry no metadata), else {}."""
    folder = os.path.dirname(os.path.abspath(engine_path))
    if not bundle_mod.is_bundle(folder):
        return {}
    try:
        return bundle_mod.Manifest.read(folder, verify=False).class_names
    except UserInputError:
        return {}


def _openvino_hint(device):
    """The note `auto` adds to its reason where OpenVINO would be worth trying (an Intel CPU that has it)."""
    if device not in (None, "cpu"):
        return ""
    from defectrt.runtime.openvino_backend import cpu_is_intel, import_openvino

    if cpu_is_intel() and import_openvino() is not None:
        return " (OpenVINO is installed on this Intel CPU: backend='openvino' is usually faster)"
    return ""


def _is_backend_object(model):
    if isinstance(model, Backend):
        return True
    if not isinstance(model, (str, bytes, os.PathLike)):
        raise InvalidArgument("model {!r}: pass a path (.onnx, .engine, bundle folder), demo:NAME, or a backend "
                              "object that subclasses defectrt.runtime.backend.Backend".format(type(model).__name__))
    return False


class Detector(object):
    """Run a detector on BGR uint8 images (as cv2 reads them).

    model: an ONNX file, a TensorRT engine (.engine / .plan), a bundle folder, `demo:NAME`, or a backend
    object (a defectrt.runtime.backend.Backend: `.infer(blob) -> outputs`, `.imgsz` (h, w), `.names`, `.name`).
    backend: "auto" (bundle: engine when it fits this device, else ONNX Runtime; a bf16 bundle: OpenVINO when
    installed), "onnxruntime", "tensorrt", "openvino". `auto` never switches an FP32 / INT8 model to OpenVINO
    by itself (results stay those the bundle was validated with); on an Intel CPU with OpenVINO installed its
    reason says that backend="openvino" is there to try.
    conf / iou / max_det: None takes the bundle's stored thresholds, else 0.25 / 0.45 / 300.
    classes: keep only these class ids. threads: ONNX Runtime intra-op threads (None: its default).
    imgsz: (h, w) for models with a dynamic input size. plugins: TensorRT plugin libraries.
    device: ONNX Runtime device ("cpu" default, "cuda"). cuda_graph: replay TensorRT runs as CUDA graphs.
    openvino: OpenVINO options {"precision": "f32" | "bf16", "streams": N, "cache_dir": path, "qdq": "weighted" |
    "all"} (precision None: the bundle's, else f32; qdq: see runtime/openvino_backend.py).
    """

    def __init__(self, model, backend="auto", conf=None, iou=None, max_det=None, classes=None, threads=None,
                 imgsz=None, plugins=(), device=None, cuda_graph=False, max_batch=None, openvino=None, options=None):
        # issue 15: the settings as one frozen DetectorOptions (given whole, or built from the keywords)
        o = self.options = resolve_options(DetectorOptions, options, dict(
            backend=backend, conf=conf, iou=iou, max_det=max_det, classes=classes, threads=threads, imgsz=imgsz,
            plugins=plugins, device=device, cuda_graph=cuda_graph, max_batch=max_batch, openvino=openvino), "Detector")
        backend, conf, iou, max_det, classes, threads = o.backend, o.conf, o.iou, o.max_det, o.classes, o.threads
        imgsz, plugins, device, cuda_graph, max_batch, openvino = (o.imgsz, o.plugins, o.device, o.cuda_graph,
                                                                   o.max_batch, o.openvino)
        if backend not in BACKENDS:
            raise UserInputError("backend {!r}: choose one of {}".format(backend, ", ".join(BACKENDS)))
        threads = limits.check_threads(threads)
        # Checked once, before a model is loaded (a typo costs no load time); stored ones by the Manifest.
        conf, iou, max_det = self._check_thresholds(conf, iou, max_det)
        self.manifest = None
        self._openvino = dict(openvino or {})
        stored = {}
        if _is_backend_object(model):
            self.backend = model
            self.backend_reason = "backend object {} given".format(model.name)
            self.source = "the {} backend object".format(model.name)  # what errors name
        else:
            self.source = resolve_model_path(model)
            self.backend, self.backend_reason = self._open(self.source, backend, threads, imgsz, plugins, device,
                                                           cuda_graph)
            if self.manifest is not None:
                stored = self.manifest.stored_thresholds()
        # The letterbox border the bundle was validated with (its `letterbox` record); 114 otherwise.
        self.pad_value = self.manifest.pad_value if self.manifest is not None else PAD_VALUE
        self.backend_name = self.backend.name
        log.info("defectrt: running on %s: %s", self.backend_name, self.backend_reason)
        self.imgsz = parse_imgsz(imgsz, strict=False) if _is_backend_object(model) and imgsz is not None else None
        self.imgsz = self.imgsz or parse_imgsz(self.backend.imgsz, strict=False)
        if self.imgsz is None:
            raise UserInputError("the model's input size is unknown; pass imgsz=(h, w)")
        self.imgsz = limits.check_imgsz(self.imgsz)
        self.names = dict(self.backend.names or {})
        if self.manifest is not None and self.manifest.names:
            self.names.update(self.manifest.class_names)
        self.conf = conf if conf is not None else stored.get("conf", DEFAULTS["conf"])
        self.iou = iou if iou is not None else stored.get("iou", DEFAULTS["iou"])
        self.max_det = max_det if max_det is not None else stored.get("max_det", DEFAULTS["max_det"])
        self.classes = None if classes is None else [limits.check_class_id(c, "classes") for c in classes]
        self.batch = self.backend.batch  # fixed batch size, or None (dynamic)
        self.max_batch = int(max_batch or self.backend.batch_range()[1] or DEFAULT_MAX_BATCH)
        self._blob = None
        self._runners = {}  # inflight -> the backend's parallel runner (throughput mode)
        # Stage-timing hook: hook(stage, ms) after each stage of a call ("preprocess", "infer", "postprocess");
        # bench's end-to-end mode sets it. None: nothing is timed.
        self.stage_hook = None

    @staticmethod
    def _check_thresholds(conf, iou, max_det):
        """-> (conf, iou, max_det) checked against their bounds; None stays None."""
        return (None if conf is None else limits.check_threshold(conf, "conf"),
                None if iou is None else limits.check_threshold(iou, "iou"),
                None if max_det is None else limits.check_max_det(max_det))

    def _open(self, path, backend, threads, imgsz, plugins, device, cuda_graph):
        if os.path.isdir(path):
            return self._open_bundle(path, backend, threads, imgsz, plugins, device, cuda_graph)
        if not os.path.exists(path):
            raise NotFound("{}: no such model file or bundle folder".format(path))
        lower = path.lower()
        if lower.endswith(ENGINE_SUFFIXES):
            if backend == "onnxruntime":
                raise UnsupportedFormat("{} is a TensorRT engine; ONNX Runtime needs the .onnx file".format(path))
            from defectrt.runtime.tensorrt_backend import TensorRTBackend

            names = _sibling_names(path)
            runner = TensorRTBackend(path, plugins=plugins, imgsz=imgsz, names=names, cuda_graph=cuda_graph)
            return runner, "TensorRT engine given"
        if lower.endswith(".onnx"):
            if backend == "tensorrt":
                raise UnsupportedFormat("{} is an ONNX model; build an engine first (defectrt export build) or use "
                                        "backend='onnxruntime'".format(path))
            if backend == "openvino":
                return self._openvino_backend(path, threads, imgsz, None), "OpenVINO asked for (backend='openvino')"
            return self._onnxruntime(path, threads, imgsz, device), "ONNX model given" + _openvino_hint(device)
        raise UnsupportedFormat("{}: unknown model type; expected .onnx, .engine / .plan or a bundle folder".format(path))

    @staticmethod
    def _onnxruntime(path, threads, imgsz, device, model_bytes=None):
        try:
            import onnxruntime  # noqa: F401  (the embedded default; a broken install fails here, in words)
        except ImportError as exc:
            raise BackendUnavailable("{}: ONNX Runtime is not installed ({}); pip install onnxruntime (or "
                                     "onnxruntime-gpu), or run it with backend='openvino'".format(path, exc)) from None
        from defectrt.runtime.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, threads=threads, device=device, imgsz=imgsz, model_bytes=model_bytes)

    def _openvino_backend(self, path, threads, imgsz, manifest):
        from defectrt.runtime.openvino_backend import OpenVinoBackend

        opts = dict(self._openvino)
        stored = manifest.openvino_settings if manifest is not None else {}
        precision = opts.pop("precision", None) or stored.get("inference_precision") or "f32"
        return OpenVinoBackend(path, threads=threads, imgsz=imgsz, precision=precision, **opts)

    def _open_bundle(self, folder, backend, threads, imgsz, plugins, device, cuda_graph):
        from defectrt.runtime import tensorrt_backend as trt_mod

        manifest = bundle_mod.Manifest.read(folder)
        self.manifest = manifest
        onnx_rel = manifest.model
        onnx_path = bundle_mod.resolve_file(folder, onnx_rel)  # relative and inside the bundle (issue 14)
        if backend == "openvino":
            return (self._openvino_backend(onnx_path, threads, imgsz or manifest.imgsz, manifest),
                    "OpenVINO asked for (backend='openvino')")
        trt_version = trt_mod.tensorrt_version() if backend != "onnxruntime" and manifest.engine else None
        gpu = None
        if trt_version is not None:
            from defectrt.runtime.tensorrt_backend import gpu_identity

            gpu = gpu_identity()
        kind, path, reason = bundle_mod.choose_backend(folder, manifest, backend, trt_version, gpu)
        imgsz = imgsz or manifest.imgsz
        if kind == "tensorrt":
            try:
                runner = trt_mod.TensorRTBackend(path, plugins=plugins, imgsz=imgsz, expected=manifest.engine.to_json(),
                                                 names=manifest.class_names, cuda_graph=cuda_graph)
                return runner, reason
            except DefectrtError as exc:  # a bad, foreign or unloadable engine: the ONNX model still runs
                if backend == "tensorrt":
                    raise
                log.warning("defectrt: the engine of %s did not load (%s); falling back to ONNX Runtime", folder, exc)
                path = onnx_path
                reason = "ONNX Runtime because the engine did not load: {}".format(exc)
        if manifest.precision == "bf16" and backend == "auto" and device in (None, "cpu"):
            from defectrt.runtime.openvino_backend import import_openvino

            if import_openvino() is not None:
                return (self._openvino_backend(path, threads, imgsz, manifest),
                        "OpenVINO with bf16 execution: a bf16 bundle is made for it")
            reason += "; this bf16 bundle runs in FP32 on ONNX Runtime (install OpenVINO for bf16)"
        if manifest.precision == "int8" and manifest.int8_flavour == "trt":  # issue 19
            log.warning("defectrt: %s is a TensorRT-flavour INT8 bundle; on a CPU it runs slower than its FP32 "
                        "(Q/DQ ops in ONNX Runtime); for a CPU build it with --int8-flavour cpu, or use an FP32 bundle",
                        folder)
        # The bytes hashed are the bytes run: nothing can swap the file between the check and the load.
        model_bytes = bundle_mod.read_verified(folder, manifest, onnx_rel)
        return self._onnxruntime(path, threads, imgsz, device, model_bytes), reason + _openvino_hint(device)

    # -- stages ---------------------------------------------------------------------------------

    def preprocess(self, images, out=None):
        """Image(s) -> (blob (B, 3, h, w) float32, [LetterboxInfo])."""
        try:
            return _preprocess(images, self.imgsz, out=out, pad_value=self.pad_value)
        except MemoryError as exc:
            raise library_failure(exc, "preprocessing {} image(s) to {}x{}".format(
                len(images) if isinstance(images, (list, tuple)) else 1, *self.imgsz)) from exc

    def infer(self, blob):
        """Run the model on a blob; pads it to the model's fixed (or smallest allowed) batch size.

        Only the first n results are read back by postprocess, so the padding never shows. A failure inside
        the backend's library is a RuntimeFailure (OutOfMemory when it ran out of memory) naming the model.
        """
        try:
            return self.backend.infer(self._padded(blob))
        except DefectrtError:
            raise
        except Exception as exc:
            if not is_library_failure(exc):
                raise  # a bug of ours: keep its traceback
            raise library_failure(exc, "{} running {} on a batch of shape {}".format(
                self.backend_name, self.source, tuple(blob.shape))) from exc

    def _padded(self, blob):
        n = blob.shape[0]
        target = self.batch or max(n, self.backend.batch_range()[0])
        if n != target:
            if n > target:
                raise UserInputError("the model takes a fixed batch of {}, got {} images in one blob".format(target, n))
            padded = np.zeros((target,) + blob.shape[1:], dtype=blob.dtype)
            padded[:n] = blob
            blob = padded
        return blob

    def postprocess(self, pred, infos):
        return _postprocess(pred, infos, conf=self.conf, iou=self.iou, max_det=self.max_det, classes=self.classes,
                            names=self.names)

    # -- calls ----------------------------------------------------------------------------------

    def __call__(self, images):
        """One image -> Detections; a list of images -> [Detections] (batched where the model allows)."""
        if isinstance(images, np.ndarray) or images is None:
            return self._run([images])[0]
        images = list(images)
        results = []
        for start in range(0, len(images), self.max_batch):
            results.extend(self._run(images[start:start + self.max_batch]))
        return results

    predict = __call__

    def _run(self, images):
        shape = (len(images), 3) + tuple(self.imgsz)
        out = self._blob if self._blob is not None and self._blob.shape == shape else None
        hook = self.stage_hook
        if hook is None:
            blob, infos = self.preprocess(images, out=out)
            self._blob = blob  # reused next call: saves an allocation and page faults per frame
            return self.postprocess(self.infer(blob), infos)
        t0 = time.perf_counter_ns()
        blob, infos = self.preprocess(images, out=out)
        self._blob = blob
        t1 = time.perf_counter_ns()
        pred = self.infer(blob)
        t2 = time.perf_counter_ns()
        dets = self.postprocess(pred, infos)
        t3 = time.perf_counter_ns()
        for stage, ns in (("preprocess", t1 - t0), ("infer", t2 - t1), ("postprocess", t3 - t2)):
            hook(stage, ns / 1e6)
        return dets

    def stream(self, frames, maxsize=4, inflight=None):
        """Iterate Detections for an iterable of frames, in order.

        inflight None / 1: the three stages in parallel threads (one inference at a time: lowest latency).
        inflight N > 1: throughput mode, N inference requests in flight at once (OpenVINO asynchronous
        requests; ONNX Runtime sessions on worker threads, the threads split between them); results still
        come in input order, and at most N frames are held (memory stays bounded).
        """
        if inflight is not None and int(inflight) > 1:
            return self._stream_inflight(frames, int(inflight))

        def pre(frame):
            return self.preprocess([frame])

        def run(item):
            blob, infos = item
            return self.infer(blob), infos

        def post(item):
            pred, infos = item
            return self.postprocess(pred, infos)[0]

        return pipelined(frames, [pre, run, post], maxsize=maxsize)

    def _stream_inflight(self, frames, inflight):
        from defectrt.runtime.throughput import ordered_inflight

        # The runner (compiled model / sessions) is kept for the next stream with the same inflight.
        runner = self._runners.get(inflight)
        if runner is None:
            self._close_runners()
            runner = self.backend.parallel(inflight)
            if runner is None:
                raise UserInputError("inflight={}: the {} backend has no throughput mode (OpenVINO and ONNX Runtime "
                                     "have); use inflight=None".format(inflight, self.backend_name))
            self._runners[inflight] = runner

        def prepare(frame):  # a fresh blob per request: each is in flight
            return _preprocess([frame], self.imgsz, pad_value=self.pad_value)

        def submit(ready):
            blob, infos = ready
            return runner.submit(self._padded(blob)), infos

        def finish(pending):
            future, infos = pending
            return self.postprocess(future.result(), infos)[0]

        return ordered_inflight(frames, submit, finish, inflight, prepare=prepare)

    def _close_runners(self):
        for runner in self._runners.values():
            runner.close()
        self._runners = {}

    def close(self):
        self._close_runners()
        self.backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "Detector({}, imgsz={}, classes={}, conf={}, iou={})".format(
            self.backend_name, self.imgsz, len(self.names), self.conf, self.iou)
