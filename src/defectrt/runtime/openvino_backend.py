"""OpenVINO backend: Intel's CPU runtime for line PCs without an NVIDIA GPU (`pip install defectrt[openvino]`).

It reads our ONNX files directly (FP32, FP16, INT8 Q/DQ; no IR conversion step) and implements the same
contract as the ONNX Runtime backend (docs/CONTRACTS.md): `infer(blob)`, `imgsz`, `names`, `batch`,
`name`, `close()`, plus `parallel(inflight)` for Detector.stream's throughput mode.

Settings, and why:
- precision "f32" by default: OpenVINO's own default on CPUs with bf16 support (AMX, AVX-512 BF16) is bf16
  execution, which changes the detections. bf16 is opt-in (`precision="bf16"`, `export build --precision
  bf16`), with its accuracy measured (BENCHMARKS.md).
- threads -> INFERENCE_NUM_THREADS; streams -> NUM_STREAMS (None: 1 stream, the latency layout; the
  throughput mode asks for as many streams as requests in flight).
- cache_dir -> CACHE_DIR: the compiled model is stored there and the next load skips compilation.
- Outputs are copied out of the request's tensor: OpenVINO reuses that memory on the next call.
"""
from __future__ import annotations

import atexit
import concurrent.futures
import logging
import os

import numpy as np

from defectrt.errors import BackendUnavailable, NotFound, UnsupportedFormat, UserInputError, library_failure
from defectrt.modelref import onnx_metadata
from defectrt.runtime import modelinfo
from defectrt.runtime.backend import Backend

log = logging.getLogger("defectrt")

PRECISIONS = {"f32": "f32", "fp32": "f32", "bf16": "bf16", "f16": "f16", "fp16": "f16"}
INSTALL_HINT = "pip install 'defectrt[openvino]' (or pip install openvino)"


def import_openvino():
    """The openvino module, or None when it is not installed."""
    try:
        import openvino
    except ImportError:
        return None
    return openvino


def cpu_is_intel():
    """True on an Intel CPU (what `auto` may pick OpenVINO for); reads /proc/cpuinfo, else platform."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return "GenuineIntel" in line
    except OSError:
        pass
    import platform

    return "intel" in (platform.processor() or "").lower()


def cpu_bf16_support():
    """True when OpenVINO reports bf16 execution on this CPU (AMX or AVX-512 BF16)."""
    ov = import_openvino()
    if ov is None:
        return False
    try:
        return "BF16" in list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception:
        return False


def _onnx_metadata(path):
    import onnx

    try:
        model = onnx.load(path, load_external_data=False)
    except Exception:  # OpenVINO's own error for a bad file is clearer; metadata is optional
        return {}
    return onnx_metadata(model)


class OpenVinoBackend(Backend):
    name = "openvino"
    device = "cpu"  # host arrays in and out, synchronous calls: bench times it like ONNX Runtime's CPU provider

    def __init__(self, path, threads=None, imgsz=None, precision="f32", streams=None, cache_dir=None,
                 device="CPU", performance_hint=None):
        ov = import_openvino()
        if ov is None:
            raise BackendUnavailable("backend 'openvino': OpenVINO is not installed; {}".format(INSTALL_HINT))
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise NotFound("{}: no such ONNX file".format(self.path))
        if str(precision).lower() not in PRECISIONS:
            raise UserInputError("precision {!r}: choose f32 (default) or bf16".format(precision))
        if threads is not None and int(threads) < 1:
            raise UserInputError("threads={}: must be at least 1 (or None for OpenVINO's default)".format(threads))
        if streams is not None and int(streams) < 1:
            raise UserInputError("streams={}: must be at least 1".format(streams))
        self.precision = PRECISIONS[str(precision).lower()]
        self.threads = None if threads is None else int(threads)
        self.streams = None if streams is None else int(streams)
        self.cache_dir = cache_dir
        self.ov_device = device
        self.core = ov.Core()
        if cache_dir:
            os.makedirs(cache_dir, exist_ok=True)
            self.core.set_property({"CACHE_DIR": os.fspath(cache_dir)})
        if self.precision == "bf16" and "BF16" not in self._capabilities():
            log.warning("defectrt: this CPU has no bf16 support (AMX / AVX-512 BF16); OpenVINO runs f32 instead")
        config = {"INFERENCE_PRECISION_HINT": self.precision,
                  "PERFORMANCE_HINT": performance_hint or ("THROUGHPUT" if (self.streams or 1) > 1 else "LATENCY"),
                  "NUM_STREAMS": str(self.streams or 1)}
        if self.threads is not None:
            config["INFERENCE_NUM_THREADS"] = self.threads
        try:
            self.compiled = self.core.compile_model(self.path, device, config)
        except Exception as exc:  # OpenVINO raises RuntimeError with a long multi-line text
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise library_failure(exc, "{}: OpenVINO loading it".format(self.path), UnsupportedFormat(
                "{}: OpenVINO cannot load it ({}); is it an ONNX model from `defectrt export`? Try "
                "backend='onnxruntime'".format(self.path, first[:300]))) from None
        inputs = self.compiled.inputs
        if len(inputs) != 1:
            raise UserInputError("{} has {} inputs; a defectrt detector has one (images (B, 3, H, W))".format(
                self.path, len(inputs)))
        self.input_shape = [d.get_length() if d.is_static else None for d in inputs[0].get_partial_shape()]
        self.output_names = [next(iter(o.get_names()), "output{}".format(i)) for i, o in enumerate(self.compiled.outputs)]
        meta = _onnx_metadata(self.path)
        self.metadata = meta
        self.imgsz = modelinfo.resolve_imgsz(self.path, self.input_shape, meta.get("imgsz"), imgsz)
        self.batch = modelinfo.resolve_batch(self.input_shape)
        self.nms = meta.get("nms", "none")
        self.names = modelinfo.default_names(modelinfo.parse_names(meta.get("names")), self._num_classes())
        self.providers = ["OpenVINO {} ({})".format(device, self.precision)]
        self._request = self.compiled.create_infer_request()

    def _capabilities(self):
        try:
            return list(self.core.get_property(self.ov_device, "OPTIMIZATION_CAPABILITIES"))
        except Exception:
            return []

    def _num_classes(self):
        outs = self.compiled.outputs
        if len(outs) == 1:
            shape = outs[0].get_partial_shape()
            if shape.rank.get_length() == 3 and shape[1].is_static:
                return shape[1].get_length() - 4
        return 0

    def _outputs(self, request):
        outs = [np.array(request.get_output_tensor(i).data, copy=True) for i in range(len(self.output_names))]
        return outs[0] if len(outs) == 1 else dict(zip(self.output_names, outs))

    def infer(self, blob):
        """(B, 3, H, W) float32 -> the single output array, or {name: array} for multi-output models."""
        self._request.infer({0: np.ascontiguousarray(blob, dtype=np.float32)})
        return self._outputs(self._request)

    def parallel(self, inflight):
        """Throughput mode: `inflight` asynchronous infer requests over one compiled model (see _AsyncRunner)."""
        return _AsyncRunner(self, inflight)

    def close(self):
        self._request = None
        self.compiled = None


class _AsyncRunner(object):
    """submit(blob) -> Future of the output, on OpenVINO's AsyncInferQueue.

    The model is compiled again with one stream per request in flight (the streams split the threads), so
    the requests really run side by side; submit blocks while all `inflight` requests are busy.
    """

    def __init__(self, backend, inflight):
        import openvino as ov

        self.backend = backend
        config = {"INFERENCE_PRECISION_HINT": backend.precision, "PERFORMANCE_HINT": "THROUGHPUT",
                  "NUM_STREAMS": str(backend.streams or inflight)}
        if backend.threads is not None:
            config["INFERENCE_NUM_THREADS"] = backend.threads
        self.compiled = backend.core.compile_model(backend.path, backend.ov_device, config)
        self.queue = ov.AsyncInferQueue(self.compiled, int(inflight))
        # The callback must not refer to self: a reference cycle through the queue could be collected in
        # one of OpenVINO's callback threads, whose destructor then joins itself (std::terminate). For the
        # same reason a queue still alive at interpreter exit is closed first.
        self.queue.set_callback(_completion(list(backend.output_names)))
        atexit.register(self.close)

    def submit(self, blob):
        future = concurrent.futures.Future()
        self.queue.start_async({0: np.ascontiguousarray(blob, dtype=np.float32)}, future)
        return future

    def close(self):
        atexit.unregister(self.close)
        if self.queue is not None:
            self.queue.wait_all()
        self.queue = None
        self.compiled = None


def _completion(output_names):
    def done(request, future):
        try:
            outs = [np.array(request.get_output_tensor(i).data, copy=True) for i in range(len(output_names))]
            future.set_result(outs[0] if len(outs) == 1 else dict(zip(output_names, outs)))
        except BaseException as exc:  # reaches the consumer through the future
            future.set_exception(exc)

    return done
