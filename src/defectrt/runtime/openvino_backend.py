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
- a dynamic input height / width is fixed to imgsz (the argument, else the `imgsz` metadata) before
  compiling: static shapes get OpenVINO's faster kernels; our bundles are static already.
- INT8 Q/DQ models (qdq="weighted", the default): activation Q/DQ pairs that feed no Conv / MatMul / Gemm
  are dropped at load (`weighted_qdq_only`), so those tensors stay float. Our `cpu` INT8 bundle is placed for
  ONNX Runtime, whose QLinear* kernels want a Q/DQ pair around every op (Sigmoid, Mul, Concat, ...);
  OpenVINO instead fuses a convolution with its activation and the next layer's quantization, which such
  a pair in between prevents: it then runs each SiLU as a separate quantized subgraph (a third of the INT8
  model's time on the demo model). The convolutions and their calibrated input scales are kept as they are;
  mAP50-95 of the result is measured in BENCHMARKS.md. qdq="all" runs the file exactly as written.
- Outputs are copied out of the request's tensor: OpenVINO reuses that memory on the next call.
"""
from __future__ import annotations

import atexit
import concurrent.futures
import logging
import os

import numpy as np

from defectrt.errors import BackendUnavailable, NotFound, UnsupportedFormat, UserInputError, library_failure
from defectrt.modelref import onnx_metadata, parse_imgsz
from defectrt.runtime import limits, modelinfo
from defectrt.runtime.backend import Backend

log = logging.getLogger("defectrt")

PRECISIONS = {"f32": "f32", "fp32": "f32", "bf16": "bf16", "f16": "f16", "fp16": "f16"}
QDQ_MODES = ("weighted", "all")
WEIGHTED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")  # where OpenVINO runs INT8 arithmetic
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


def _read_onnx(path):
    """The ONNX graph of `path` without its external weights (read once, for the header and for the Q/DQ edit);
    None when unreadable: OpenVINO's own error for a bad file is clearer, and metadata is optional."""
    import onnx

    try:
        return onnx.load(path, load_external_data=False)
    except Exception:
        return None


def _onnx_header(model):
    """(metadata, input dims) of an ONNX graph; dims are ints, or None where dynamic. ({}, None) for None."""
    if model is None:
        return {}, None
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    dims = None
    if len(inputs) == 1 and inputs[0].type.HasField("tensor_type"):
        dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    return onnx_metadata(model), dims


def _static_hw(core, model, dims, imgsz):
    """A model whose input height / width are dynamic gets them fixed to imgsz before compiling (OpenVINO's
    static-shape kernels are faster and it skips shape inference per call); the batch dimension is kept."""
    if imgsz is None or dims is None or len(dims) != 4 or (dims[2] is not None and dims[3] is not None):
        return model
    import openvino as ov

    imgsz = limits.check_imgsz(imgsz, "imgsz")
    if isinstance(model, str):
        model = core.read_model(model)
    model.reshape({model.inputs[0]: ov.PartialShape([dims[0] or -1, dims[1] or 3, imgsz[0], imgsz[1]])})
    return model


def weighted_qdq_only(model):
    """Drop, in place, every activation QuantizeLinear -> DequantizeLinear pair none of whose consumers is a
    Conv / ConvTranspose / MatMul / Gemm: those consumers then read the float tensor. Returns how many
    DequantizeLinear nodes were bypassed. Weight DequantizeLinear nodes (constant input) are left alone."""
    graph = model.graph
    constants = {i.name for i in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in graph.output}
    quantizers = {n.output[0]: n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in constants}
    rename, dropped = {}, set()
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in quantizers or node.output[0] in graph_outputs:
            continue
        if any(c.op_type in WEIGHTED_OPS for c in consumers.get(node.output[0], [])):
            continue
        rename[node.output[0]] = quantizers[node.input[0]].input[0]
        dropped.add(id(node))
    if not dropped:
        return 0
    keep = [n for n in graph.node if id(n) not in dropped]
    still_read = {name for n in keep for name in n.input}
    keep = [n for n in keep if not (n.op_type == "QuantizeLinear" and n.output[0] in quantizers
                                    and n.output[0] not in still_read and n.output[0] not in graph_outputs)]
    for node in keep:
        node.input[:] = [rename.get(name, name) for name in node.input]
    del graph.node[:]
    graph.node.extend(keep)
    return len(dropped)


def _model_for_openvino(core, path, model, qdq):
    """The path itself, or (qdq "weighted" and an INT8 Q/DQ file) the model with its non-weighted Q/DQ pairs
    dropped (see weighted_qdq_only), read by OpenVINO from memory. `model`: _read_onnx(path) (edited in place)."""
    if qdq == "all" or model is None or not any(n.op_type == "QuantizeLinear" for n in model.graph.node):
        return path, 0
    from onnx.external_data_helper import load_external_data_for_model

    load_external_data_for_model(model, os.path.dirname(os.path.abspath(path)))  # a no-op without external data
    dropped = weighted_qdq_only(model)
    if not dropped:
        return path, 0
    return core.read_model(model.SerializeToString(), b""), dropped


class OpenVinoBackend(Backend):
    name = "openvino"
    device = "cpu"  # host arrays in and out, synchronous calls: bench times it like ONNX Runtime's CPU provider

    def __init__(self, path, threads=None, imgsz=None, precision="f32", streams=None, cache_dir=None,
                 device="CPU", performance_hint=None, qdq="weighted"):
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
        if qdq not in QDQ_MODES:
            raise UserInputError("qdq={!r}: choose 'weighted' (default: INT8 where the arithmetic is) or 'all' "
                                 "(run every Q/DQ pair of the file)".format(qdq))
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
        onnx_model = _read_onnx(self.path)
        meta, dims = _onnx_header(onnx_model)
        config = {"INFERENCE_PRECISION_HINT": self.precision,
                  "PERFORMANCE_HINT": performance_hint or ("THROUGHPUT" if (self.streams or 1) > 1 else "LATENCY"),
                  "NUM_STREAMS": str(self.streams or 1)}
        if self.threads is not None:
            config["INFERENCE_NUM_THREADS"] = self.threads
        try:
            self.model, self.qdq_dropped = _model_for_openvino(self.core, self.path, onnx_model, qdq)
            self.model = _static_hw(self.core, self.model, dims, parse_imgsz(imgsz, strict=False)
                                    or parse_imgsz(meta.get("imgsz"), strict=False))
            self.compiled = self.core.compile_model(self.model, device, config)
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
        self.model = None


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
        self.compiled = backend.core.compile_model(backend.model, backend.ov_device, config)
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
