"""The Backend protocol: what Detector and bench may ask of any inference backend (Polygraphy's BaseRunner style).

Every backend subclasses `Backend`: ONNX Runtime, OpenVINO, TensorRT, the PyTorch reference
(defectrt.models.torch_backend), the test fakes. Detector and bench read these attributes and call these
methods and nothing else: no probing by attribute or class name.

Required: `infer(blob) -> output` ((B, 3, h, w) float32 in, the model's output array, or {name: array} for
multi-output models, out).
Description (class or instance attributes, set in __init__): `name`, `imgsz` (h, w) or None, `names`
{id: name}, `batch` (a fixed batch size, or None when dynamic), `min_batch` / `max_batch` (the range a
dynamic batch accepts; None: 1 / unbounded), `device` (where the input / output tensors live and the model
computes: "cpu" = the host, synchronously; "cuda" = a GPU), `providers` (ONNX Runtime's list, else ()).
Optional hooks, with defaults that say "not offered":
- `offers_stage_timing` / `time_stages(blob) -> (output, {"h2d", "compute", "d2h", "enqueue": ms, "method"})`:
  GPU-event timing per stage (docs/CONTRACTS.md); bench uses it when offered.
- `device_memory_bytes() -> int | None`: engine + I/O buffers on the device.
- `enable_cuda_graph()`: capture / replay the enqueue as a CUDA graph (bench --cuda-graph).
- `parallel(inflight) -> runner | None`: throughput mode (`runner.submit(blob) -> Future`, `runner.close()`).
- `close()`.
"""
from __future__ import annotations

import abc
import collections

from defectrt.errors import InvalidArgument

TensorInfo = collections.namedtuple("TensorInfo", "name shape dtype")  # shape: ints, None for a dynamic dim


class Backend(abc.ABC):
    name = "backend"
    imgsz = None
    names = {}
    batch = None
    min_batch = None
    max_batch = None
    device = "cpu"
    providers = ()
    offers_stage_timing = False

    @abc.abstractmethod
    def infer(self, blob):
        """(B, 3, h, w) float32 -> the model's output."""

    # -- description ---------------------------------------------------------------------------

    def input_info(self):
        """[TensorInfo] of the inputs: one image tensor (B, 3, h, w) float32 for every defectrt model."""
        h, w = tuple(self.imgsz) if self.imgsz else (None, None)
        return [TensorInfo("images", (self.batch, 3, h, w), "float32")]

    def output_info(self):
        """[TensorInfo] of the outputs, where the backend knows them (else [])."""
        return []

    def batch_range(self):
        """-> (smallest, largest) batch one infer call takes; largest None = unbounded."""
        if self.batch:
            return int(self.batch), int(self.batch)
        return int(self.min_batch or 1), (int(self.max_batch) if self.max_batch else None)

    @property
    def runs_on_host(self):
        """True when the model computes on the CPU, synchronously (no host-device copies to time)."""
        return self.device == "cpu"

    # -- optional hooks ------------------------------------------------------------------------

    def time_stages(self, blob):
        raise InvalidArgument("the {} backend offers no per-stage device timing (time_stages)".format(self.name))

    def device_memory_bytes(self):
        return None

    def enable_cuda_graph(self):
        raise InvalidArgument("--cuda-graph needs a backend that can capture CUDA graphs (the TensorRT backend); "
                              "{} cannot".format(self.name))

    def parallel(self, inflight):
        """A throughput-mode runner for `inflight` requests, or None when the backend has none."""
        return None

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
