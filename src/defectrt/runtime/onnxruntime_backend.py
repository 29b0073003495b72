"""ONNX Runtime backend: the CPU default, and CUDA where onnxruntime-gpu is installed.

Session settings, and why:
- graph optimisation ORT_ENABLE_ALL (layout / fusion passes; a one-off cost at load).
- intra-op threads = `threads` (None: ONNX Runtime's default, one per physical core); inter-op 1 with
  sequential execution, since a YOLO graph is a chain and parallel branches only add contention.
- `session.run` with the output names resolved once. IOBinding with preallocated outputs gains nothing on
  the CPU provider (BENCHMARKS.md, "Lab notes"), since the outputs are small and the input is used in place
  either way. So the simpler call stays; the Detector reuses its input blob.
"""
from __future__ import annotations

import logging
import os

import numpy as np

from defectrt.errors import BackendUnavailable, NotFound, UnsupportedFormat, UserInputError, library_failure
from defectrt.runtime import limits, modelinfo
from defectrt.runtime.backend import Backend, TensorInfo

log = logging.getLogger("defectrt")

_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def resolve_providers(device, available):
    """device "cpu" / "cuda" / None / a provider list -> the provider list to ask ONNX Runtime for."""
    if device is None or device == "cpu":
        return ["CPUExecutionProvider"]
    if isinstance(device, str):
        name = _PROVIDERS.get(device.lower().split(":")[0], device)
        if name not in available:
            raise BackendUnavailable("device {!r}: ONNX Runtime here offers only {}; install onnxruntime-gpu for "
                                     "CUDA, or use device='cpu'".format(device, ", ".join(available)))
        return [name, "CPUExecutionProvider"] if name != "CPUExecutionProvider" else [name]
    return list(device)


def _info(arg):
    """An ONNX Runtime NodeArg -> TensorInfo (dynamic dimensions None; dtype as numpy names it)."""
    dtype = _NUMPY_TYPES.get(arg.type)
    return TensorInfo(arg.name, tuple(d if isinstance(d, int) else None for d in arg.shape),
                      np.dtype(dtype).name if dtype is not None else arg.type)


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, path, threads=None, device=None, imgsz=None, optimization="all", model_bytes=None):
        """model_bytes: the model already read (and checked) from `path`; then `path` only names it."""
        import onnxruntime as ort

        self._settings = {"threads": threads, "device": device, "imgsz": imgsz, "optimization": optimization}
        self.path = os.fspath(path)
        if model_bytes is None and not os.path.isfile(self.path):
            raise NotFound("{}: no such ONNX file".format(self.path))
        threads = limits.check_threads(threads)
        opts = ort.SessionOptions()
        levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
        if optimization not in levels:
            raise UserInputError("optimization {!r}: choose one of {}".format(optimization, ", ".join(levels)))
        opts.graph_optimization_level = levels[optimization]
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if threads is not None:
            opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # its warnings about unused initialisers etc. are noise to users
        providers = resolve_providers(device, ort.get_available_providers())
        try:
            self.session = ort.InferenceSession(self.path if model_bytes is None else model_bytes, sess_options=opts,
                                                providers=providers)
        except Exception as exc:  # ORT raises its own pybind classes (InvalidProtobuf, Fail, ...)
            raise library_failure(exc, "{}: ONNX Runtime loading it".format(self.path),
                                  UnsupportedFormat(self._load_error(exc))) from None
        self.providers = self.session.get_providers()
        # CPU provider only: tensors and compute on the host; a CUDA / TensorRT provider copies to a GPU.
        self.device = "cpu" if all(p == "CPUExecutionProvider" for p in self.providers) else "cuda"
        meta = self.session.get_modelmeta().custom_metadata_map or {}
        self.metadata = dict(meta)
        inp = self.session.get_inputs()
        if len(inp) != 1:
            raise UserInputError("{} has {} inputs; a defectrt detector has one (images (B, 3, H, W))".format(
                self.path, len(inp)))
        self.input_name = inp[0].name
        self.input_shape = list(inp[0].shape)
        self.input_dtype = _NUMPY_TYPES.get(inp[0].type, np.float32)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.imgsz = modelinfo.resolve_imgsz(self.path, self.input_shape, meta.get("imgsz"), imgsz)
        self.batch = modelinfo.resolve_batch(self.input_shape)
        self.nms = meta.get("nms", "none")
        self.names = modelinfo.default_names(modelinfo.parse_names(meta.get("names"), "{}: its `names` metadata".format(
            self.path)), self._num_classes())

    def _load_error(self, exc):
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "EfficientNMS_TRT" in str(exc):
            return ("{} contains the TensorRT-only EfficientNMS_TRT op; run it with backend='tensorrt' "
                    "(on the device) or export with --nms none / onnx for ONNX Runtime".format(self.path))
        return "{}: ONNX Runtime cannot load it ({}); is it an ONNX model? Re-export it with `defectrt export`".format(
            self.path, text[:300])

    def _num_classes(self):
        outs = self.session.get_outputs()
        if len(outs) == 1 and len(outs[0].shape) == 3 and isinstance(outs[0].shape[1], int):
            return outs[0].shape[1] - 4
        return 0

    def input_info(self):
        return [_info(i) for i in self.session.get_inputs()]

    def output_info(self):
        return [_info(o) for o in self.session.get_outputs()]

    def infer(self, blob):
        """(B, 3, H, W) float32 -> the single output array, or {name: array} for multi-output models."""
        if blob.dtype != self.input_dtype:
            blob = blob.astype(self.input_dtype)
        outs = self.session.run(self.output_names, {self.input_name: blob})
        if len(outs) == 1:
            return outs[0]
        return dict(zip(self.output_names, outs))

    def parallel(self, inflight):
        """Throughput mode: `inflight` sessions, each on its own worker thread with its share of the threads."""
        from defectrt.runtime.throughput import ThreadedRunner, split_threads

        settings = dict(self._settings, threads=split_threads(self._settings["threads"], inflight))
        return ThreadedRunner(lambda: OnnxRuntimeBackend(self.path, **settings), inflight)

    def close(self):
        self.session = None
