"""TensorRT backend: run a serialized engine (the only runtime module that imports tensorrt).

UNVERIFIED ON HARDWARE: no machine this project is developed on has TensorRT or a GPU. The code
follows NVIDIA's documented Python API of each version; the tests run its logic against fakes and the
real-engine tests are marked `tensorrt` (skipped where TensorRT is absent).

Per TensorRT version:
- 8.5+ (JetPack 5.1+, desktops, 10.x, 11.x): the tensor-name API: num_io_tensors, get_tensor_name,
  get_tensor_mode, set_input_shape, set_tensor_address, execute_async_v3.
- 8.0-8.4 (JetPack 4.6 / 5.0): bindings: num_bindings, binding_is_input, set_binding_shape,
  execute_async_v2 with a list of device pointers.
Memory: device and pinned host buffers from defectrt.runtime.cuda_buffers (polygraphy.cuda), one
non-default stream, buffers reused across calls. Optional CUDA graph replay (cuda_graph=True, needs
cuda-python; 8.5+ only): captured after a warm run, re-captured when a shape or address changes.
Plugins (`plugins=[paths]`) are loaded with ctypes.CDLL, after trt.init_libnvinfer_plugins, before
the engine is deserialised.
Benchmark hooks (defectrt.bench.timing): `time_stages(blob)` (CUDA-event timed h2d / compute / d2h
plus the host time of the enqueue call) and `device_memory_bytes()`.
"""
from __future__ import annotations

import ctypes
import logging
import os
import subprocess
import sys
import time

import numpy as np

from defectrt import trt_compat
from defectrt.errors import (MEMORY_HINT, BackendUnavailable, NotFound, OutOfMemory, RuntimeFailure, UnsupportedFormat,
                             UserInputError)
from defectrt.runtime import modelinfo
from defectrt.runtime.backend import Backend

log = logging.getLogger("defectrt")

REBUILD_HINT = ("rebuild it on this device with `defectrt export build BUNDLE --engine --force` (or the bundle's "
                "build_engine.sh, which runs trtexec)")


_DLL_DIRECTORIES = []  # handles from os.add_dll_directory: a directory stays searchable while its handle lives


def add_tensorrt_dll_directories(environ=None, platform=None, add_dll_directory=None, isdir=os.path.isdir,
                                 listdir=os.listdir):
    """Windows, Python 3.8+: DLL dependencies are no longer searched on PATH (only the loading module's folder,
    the system folders and os.add_dll_directory ones), so nvinfer*.dll - which our plugin DLL and tensorrt's
    own .pyd need - is not found from a PATH-only TensorRT install. Add TensorRT's lib folder (TENSORRT_DIR /
    TRT_LIB_DIR, or the PATH entries that hold nvinfer*.dll) and CUDA's bin folder (CUDA_PATH). -> the folders
    added. Does nothing elsewhere. UNVERIFIED ON HARDWARE (no Windows machine with TensorRT here)."""
    platform = platform or sys.platform
    add_dll_directory = add_dll_directory or getattr(os, "add_dll_directory", None)
    if not platform.startswith("win") or add_dll_directory is None:
        return []
    environ = os.environ if environ is None else environ
    candidates = []
    for var in ("TENSORRT_DIR", "TRT_LIB_DIR"):
        if environ.get(var):
            candidates += [environ[var], os.path.join(environ[var], "lib"), os.path.join(environ[var], "bin")]
    for entry in (environ.get("PATH") or "").split(os.pathsep):
        try:
            if entry and any(n.lower().startswith("nvinfer") and n.lower().endswith(".dll") for n in listdir(entry)):
                candidates.append(entry)
        except OSError:
            continue
    if environ.get("CUDA_PATH"):
        candidates.append(os.path.join(environ["CUDA_PATH"], "bin"))
    added = []
    for folder in candidates:
        if folder not in added and isdir(folder):
            _DLL_DIRECTORIES.append(add_dll_directory(folder))
            added.append(folder)
    return added


def import_tensorrt():
    add_tensorrt_dll_directories()
    try:
        import tensorrt as trt
    except ImportError:
        return None
    return trt


_LOGGERS = {}


def _logger(trt):
    """One logger per process: TensorRT keeps the first one it sees and warns when given another."""
    if id(trt) not in _LOGGERS:
        _LOGGERS[id(trt)] = trt.Logger(trt.Logger.WARNING)
    return _LOGGERS[id(trt)]


def tensorrt_version():
    trt = import_tensorrt()
    return getattr(trt, "__version__", None) if trt is not None else None


parse_version = trt_compat.parse_version  # kept importable from here; the one parser lives in trt_compat


def gpu_identity():
    """{'gpu_name', 'compute_capability'} of device 0, or 'unknown' values. Never raises."""
    info = {"gpu_name": "unknown", "compute_capability": "unknown"}
    try:  # cuda-python, where installed (cuda.bindings.runtime from 12.6, `from cuda import cudart` before)
        from defectrt.runtime.cuda_buffers import import_cudart

        cudart = import_cudart()
        err, prop = cudart.cudaGetDeviceProperties(0)
        if int(err) == 0:
            name = prop.name.decode() if isinstance(prop.name, bytes) else str(prop.name)
            return {"gpu_name": name.strip("\x00 "), "compute_capability": "{}.{}".format(prop.major, prop.minor)}
    except Exception:
        pass
    try:  # desktops
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.splitlines()[0]
        name, cc = [x.strip() for x in out.split(",")]
        return {"gpu_name": name, "compute_capability": cc}
    except Exception:
        pass
    try:  # Jetson: no nvidia-smi; the board name tells the GPU generation
        with open("/proc/device-tree/model") as f:
            model = f.read().strip("\x00 \n")
        cc = {"orin": "8.7", "xavier": "7.2", "nano": "5.3", "tx2": "6.2", "thor": "11.0"}
        for key, value in cc.items():
            if key in model.lower():
                return {"gpu_name": model, "compute_capability": value}
        info["gpu_name"] = model
    except OSError:
        pass
    return info


def load_plugin_libraries(trt, logger, plugins=()):
    """Built-in plugins (EfficientNMS_TRT ...) and our own libraries, before any parse or deserialise."""
    trt.init_libnvinfer_plugins(logger, "")
    handles = []
    for path in plugins or ():
        if not os.path.isfile(path):
            raise NotFound("plugin library {} not found; build it with plugins/README.md".format(path))
        handles.append(ctypes.CDLL(os.path.abspath(path)))
    return handles


def select_api(version):
    """"tensor" (names + execute_async_v3, 8.5+) or "bindings" (execute_async_v2, 8.0-8.4): trt_compat's io_api."""
    return trt_compat.flavour(version).io_api


class IOTensor(object):
    __slots__ = ("name", "index", "is_input", "shape", "dtype")

    def __init__(self, name, index, is_input, shape, dtype):
        self.name, self.index, self.is_input = name, index, bool(is_input)
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)

    def __repr__(self):
        return "IOTensor({!r}, {}, {}, {})".format(self.name, "in" if self.is_input else "out", self.shape, self.dtype)


def describe_io(trt, engine, api):
    """-> [IOTensor] in engine order, through whichever API this TensorRT has."""
    out = []
    if api == "tensor":
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            out.append(IOTensor(name, i, engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
                                engine.get_tensor_shape(name), trt.nptype(engine.get_tensor_dtype(name))))
    else:
        for i in range(engine.num_bindings):
            out.append(IOTensor(engine.get_binding_name(i), i, engine.binding_is_input(i),
                                engine.get_binding_shape(i), trt.nptype(engine.get_binding_dtype(i))))
    return out


def profile_shapes(engine, tensor, api):
    """(min, opt, max) of optimisation profile 0 for an input, or None when the engine has none."""
    try:
        if api == "tensor" and hasattr(engine, "get_tensor_profile_shape"):
            shapes = engine.get_tensor_profile_shape(tensor.name, 0)
        else:
            shapes = engine.get_profile_shape(0, tensor.index)
        return tuple(tuple(int(d) for d in s) for s in shapes)
    except Exception:  # engines without dynamic inputs may report no profile
        return None


def check_input_shape(tensor, shape, profile):
    """Raise a clear error when `shape` cannot run on this engine (fixed dims or profile range)."""
    if len(shape) != len(tensor.shape):
        raise UserInputError("engine input {} is {}-D, got a {}-D batch".format(tensor.name, len(tensor.shape), len(shape)))
    for axis, (want, got) in enumerate(zip(tensor.shape, shape)):
        if want >= 0 and want != got:
            raise UserInputError("engine input {} has fixed shape {}, got {} (axis {})".format(
                tensor.name, tensor.shape, tuple(shape), axis))
    if profile is not None:
        lo, _, hi = profile
        if any(g < a or g > b for g, a, b in zip(shape, lo, hi)):
            raise UserInputError("input shape {} is outside the engine's profile (min {}, max {}); rebuild the engine "
                                 "with a larger --max-batch or feed smaller batches".format(tuple(shape), lo, hi))


def read_engine_file(path):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise NotFound("{}: no such TensorRT engine file".format(path))
    with open(path, "rb") as f:
        return f.read()


def check_recorded_version(path, expected, trt_version):
    """Compare a manifest's engine record with this TensorRT before trying to deserialise."""
    if expected and expected.get("tensorrt_version"):
        built = expected["tensorrt_version"]
        if not trt_compat.same_release(built, trt_version):
            raise UnsupportedFormat("{} was built with TensorRT {} but this device has TensorRT {}; engines only run on "
                                 "the version they were built with: {}".format(path, built, trt_version, REBUILD_HINT))


def deserialize_error(path, trt_version, expected):
    built = ""
    if expected:
        built = " (it was built with TensorRT {} for {} {})".format(
            expected.get("tensorrt_version", "?"), expected.get("gpu_name", "?"),
            "compute capability " + str(expected.get("compute_capability")) if expected.get("compute_capability") else "")
    return ("{}: TensorRT {} could not deserialize this engine{}. Engines run only on the TensorRT version and GPU "
            "they were built for, and need the plugins they use (plugins=[...]); {}".format(
                path, trt_version, built, REBUILD_HINT))


class TensorRTBackend(Backend):
    name = "tensorrt"
    device = "cuda"
    offers_stage_timing = True  # time_stages: CUDA events (unverified on hardware)

    def __init__(self, path, plugins=(), imgsz=None, names=None, expected=None, cuda_graph=False, cuda=None, trt=None):
        self.path = os.fspath(path)
        trt = trt or import_tensorrt()
        if trt is None:
            raise BackendUnavailable("{}: TensorRT is not installed here; run the bundle's ONNX model with "
                                     "backend='onnxruntime' or install TensorRT (JetPack provides it)".format(self.path))
        self.trt = trt
        self.version = trt.__version__
        self.api = select_api(self.version)
        check_recorded_version(self.path, expected, self.version)
        data = read_engine_file(self.path)
        self._logger = _logger(trt)

        self._plugin_handles = load_plugin_libraries(trt, self._logger, plugins)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise RuntimeFailure(deserialize_error(self.path, self.version, expected))
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise OutOfMemory("{}: TensorRT could not create an execution context (out of GPU memory); {}".format(
                self.path, MEMORY_HINT))
        self.io = describe_io(trt, self.engine, self.api)
        inputs = [t for t in self.io if t.is_input]
        if len(inputs) != 1:
            raise UserInputError("{} has {} inputs; a defectrt detector has one (images)".format(self.path, len(inputs)))
        self.input = inputs[0]
        self.outputs = [t for t in self.io if not t.is_input]
        self.output_names = [t.name for t in self.outputs]
        self.profile = profile_shapes(self.engine, self.input, self.api)
        self.batch = self.input.shape[0] if self.input.shape[0] > 0 else None
        self.max_batch = self.batch or (self.profile[2][0] if self.profile else None)
        self.min_batch = self.batch or (self.profile[0][0] if self.profile else 1)
        self.imgsz = modelinfo.resolve_imgsz(self.path, self.input.shape, None, imgsz)
        raw = self.outputs[0].shape if len(self.outputs) == 1 and len(self.outputs[0].shape) == 3 else None
        self.names = modelinfo.default_names(names, raw[1] - 4 if raw and raw[1] > 4 else 0)
        self.metadata = {"tensorrt_version": self.version}
        from defectrt.runtime.cuda_buffers import BufferSet, CudaGraph, default_cuda, import_cudart

        self.cuda = cuda or default_cuda()
        self.buffers = BufferSet(self.cuda)
        self._shape = None
        self._bindings = None
        self._graph = None
        if cuda_graph:
            cudart = import_cudart()
            if self.api != "tensor":
                log.warning("CUDA graphs need TensorRT 8.5+ (execute_async_v3); running without them")
            elif cudart is None:
                log.warning("CUDA graphs need cuda-python (pip install cuda-python); running without them")
            else:
                self._graph = CudaGraph(cudart)
        self._events = self._create_events()

    # -- shapes and addresses -------------------------------------------------------------------

    def _set_shape(self, shape):
        """Set the input shape, size every buffer; -> True when any device address changed."""
        check_input_shape(self.input, shape, self.profile)
        ctx = self.context
        if self.api == "tensor":
            if not ctx.set_input_shape(self.input.name, tuple(shape)):
                raise UserInputError("{}: TensorRT rejected input shape {}".format(self.path, tuple(shape)))
            out_shapes = [tuple(ctx.get_tensor_shape(t.name)) for t in self.outputs]
        else:
            if not ctx.set_binding_shape(self.input.index, tuple(shape)):
                raise UserInputError("{}: TensorRT rejected input shape {}".format(self.path, tuple(shape)))
            out_shapes = [tuple(ctx.get_binding_shape(t.index)) for t in self.outputs]
        for t, s in zip(self.outputs, out_shapes):
            if any(int(d) < 0 for d in s):
                raise UserInputError("{}: output {} has a data-dependent shape {}; export with --nms none or trt "
                                     "(ONNX NonMaxSuppression outputs are not supported by this runner)".format(
                                         self.path, t.name, tuple(s)))
        changed = self.buffers.ensure(self.input.name, shape, self.input.dtype)
        for t, s in zip(self.outputs, out_shapes):
            changed = self.buffers.ensure(t.name, s, t.dtype) or changed
        self._shape = tuple(shape)
        return changed

    def _bind(self):
        """Give TensorRT the buffer addresses; -> the bindings list execute_async_v2 takes."""
        if self.api == "tensor":
            for t in self.io:
                if not self.context.set_tensor_address(t.name, self.buffers.ptr(t.name)):
                    raise RuntimeError("set_tensor_address failed for " + t.name)
        return [self.buffers.ptr(t.name) for t in sorted(self.io, key=lambda t: t.index)]

    # -- inference ------------------------------------------------------------------------------

    def _prepare(self, blob):
        """Shapes, buffers and addresses for `blob`, then stage it in the host input buffer; -> shape."""
        blob = np.ascontiguousarray(blob)
        shape = tuple(blob.shape)
        if shape != self._shape:
            if self._set_shape(shape) or self._bindings is None:
                self._bindings = self._bind()
        self.buffers.stage(self.input.name, blob)
        return shape

    def _results(self):
        """The outputs after the stream has been synchronised (copied: the pinned buffers are reused)."""
        results = [self.buffers.host(t.name).copy() for t in self.outputs]
        if len(results) == 1:
            return results[0]
        return dict(zip(self.output_names, results))

    def _download(self):
        for t in self.outputs:
            self.buffers.download(t.name)

    def infer(self, blob):
        """(B, 3, H, W) float32 -> the single output array, or {name: array} for several outputs."""
        shape = self._prepare(blob)
        self.buffers.h2d(self.input.name)
        self._execute(shape)
        self._download()
        self.cuda.synchronize()
        return self._results()

    # -- benchmark hooks (defectrt.bench.timing; UNVERIFIED ON HARDWARE) ------------------------

    def _create_events(self):
        """Four reusable timing events, or None when this CUDA layer cannot create them."""
        if not callable(getattr(self.cuda, "event_create", None)):
            return None
        events = []
        try:
            for _ in range(4):
                events.append(self.cuda.event_create())
        except Exception as exc:
            log.warning("cannot create CUDA events (%s); time_stages falls back to host timing with a "
                        "synchronize after each stage", exc)
            self._destroy_events(events)
            return None
        return events

    def _destroy_events(self, events):
        for ev in events or ():
            try:
                self.cuda.event_destroy(ev)
            except Exception:  # best effort at teardown
                pass

    def time_stages(self, blob):
        """Run `blob` like `infer` and time its stages; -> (output, {"h2d", "compute", "d2h", "enqueue": ms,
        "method"}).

        UNVERIFIED ON HARDWARE. With "method" "cuda-events": events created once (in __init__) are
        recorded on this backend's own non-default stream before the input copy, after it, after the
        enqueue and after the output copies; one synchronize, then cudaEventElapsedTime for h2d, compute
        and d2h. Staging the blob into the pinned host buffer happens before the first event, so h2d is
        the device copy alone. As with trtexec, compute runs from the event before the enqueue to the
        one after it. "enqueue" is the host wall time of the asynchronous execute call alone
        (perf_counter) and is never a latency on its own. With "method" "host-sync" (the CUDA layer
        has no events): the stream is synchronised after each stage and each stage is host-timed, so
        compute includes the enqueue and synchronisation overhead. On the first call with a CUDA graph,
        the enqueue includes the warm run and the capture (warm-up discards it).
        """
        shape = self._prepare(blob)
        cuda, name = self.cuda, self.input.name
        clock = time.perf_counter
        if self._events:
            e0, e1, e2, e3 = self._events
            cuda.event_record(e0)
            self.buffers.h2d(name)
            cuda.event_record(e1)
            t0 = clock()
            self._execute(shape)
            t1 = clock()
            cuda.event_record(e2)
            self._download()
            cuda.event_record(e3)
            cuda.event_synchronize(e3)
            times = {"h2d": cuda.event_elapsed_ms(e0, e1), "compute": cuda.event_elapsed_ms(e1, e2),
                     "d2h": cuda.event_elapsed_ms(e2, e3), "enqueue": (t1 - t0) * 1e3, "method": "cuda-events"}
            return self._results(), times
        cuda.synchronize()  # nothing of an earlier call may leak into the first stage
        t0 = clock()
        self.buffers.h2d(name)
        cuda.synchronize()
        t1 = clock()
        self._execute(shape)
        t2 = clock()
        cuda.synchronize()
        t3 = clock()
        self._download()
        cuda.synchronize()
        t4 = clock()
        times = {"h2d": (t1 - t0) * 1e3, "compute": (t3 - t1) * 1e3, "d2h": (t4 - t3) * 1e3,
                 "enqueue": (t2 - t1) * 1e3, "method": "host-sync"}
        return self._results(), times

    def device_memory_bytes(self):
        """Bytes of device memory this backend holds: the engine's execution-context memory
        (device_memory_size_v2 where TensorRT has it - 10.x+, the only one in 11.x - else
        device_memory_size) plus the I/O buffers allocated so far. Not counted: the engine's weights and
        the CUDA context itself (use nvidia-smi for the process total). None once closed.
        UNVERIFIED ON HARDWARE.
        """
        if self.engine is None:
            return None
        size = getattr(self.engine, "device_memory_size_v2", None)
        if size is None:
            size = getattr(self.engine, "device_memory_size", 0)
        return int(size or 0) + self.buffers.allocated_bytes()

    def _execute(self, shape):
        stream = self.cuda.stream_ptr
        if self.api == "bindings":
            if not self.context.execute_async_v2(bindings=self._bindings, stream_handle=stream):
                raise RuntimeError("{}: execute_async_v2 failed (see the TensorRT log above)".format(self.path))
            return
        key = (shape, tuple(self.buffers.ptr(t.name) for t in self.io))
        if self._graph is not None and self._graph.key == key:
            self._graph.launch(stream)
            return
        if not self.context.execute_async_v3(stream):
            raise RuntimeError("{}: execute_async_v3 failed (see the TensorRT log above)".format(self.path))
        if self._graph is not None:
            self.cuda.synchronize()  # the warm run must finish before capture
            try:
                self._graph.capture(self.context, stream, key)
            except Exception as exc:  # some engines cannot be captured; run them plainly
                log.warning("CUDA graph capture failed (%s); running without graphs", exc)
                self._graph = None

    def close(self):
        if self._graph is not None:
            self._graph.reset()
        self._destroy_events(self._events)
        self._events = None
        self.buffers.close()
        self.context = None
        self.engine = None
