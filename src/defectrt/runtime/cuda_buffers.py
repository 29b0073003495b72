"""CUDA memory, streams and graphs for the TensorRT backend, without a compiled CUDA package.

UNVERIFIED ON HARDWARE: no machine this was written on has a GPU; the fake-CUDA tests check the
bookkeeping only.

- `PolygraphyCuda` (the default): polygraphy.cuda's ctypes wrapper over libcudart, which works on
  Jetsons and desktops alike: DeviceArray for device memory, Stream, memcpy; pinned host memory with
  cudaMallocHost/cudaFreeHost through the same libcudart handle (polygraphy has no pinned allocator).
  Pinned host buffers make the async copies truly asynchronous; when pinning fails, pageable numpy
  memory is used (still correct, copies just serialise).
- `CudaPythonCuda`: the same through cuda-python's cudart, for a platform where polygraphy cannot find
  libcudart but cuda-python is installed.
- `BufferSet`: one device + host buffer per tensor, grown only when a shape needs more bytes (and
  reporting when an address changed, which invalidates a captured CUDA graph).
- `CudaGraph`: capture / replay of `execute_async_v3` through cuda-python's cudart (optional).
- Timing events (for the benchmark hook `TensorRTBackend.time_stages`): `event_create()`,
  `event_record(event)` (on the layer's own stream), `event_synchronize(event)`,
  `event_elapsed_ms(start, end)`, `event_destroy(event)`. polygraphy.cuda wraps no events, so
  `PolygraphyCuda` calls cudaEvent* on the libcudart handle it already uses for pinned memory;
  `CudaPythonCuda` calls cuda-python's cudart. A layer without these methods (or whose
  `event_create` raises) makes the backend fall back to host timing with a synchronize per stage.
"""
from __future__ import annotations

import ctypes
import logging

import numpy as np

log = logging.getLogger("defectrt")


class PolygraphyCuda(object):
    name = "polygraphy.cuda"

    def __init__(self):
        from polygraphy import cuda

        self._cuda = cuda
        self._lib = cuda.wrapper().handle
        self.stream = cuda.Stream()  # a non-default stream: the legacy default stream serialises everything
        self.stream_ptr = int(self.stream.ptr)

    def device_alloc(self, nbytes):
        return self._cuda.DeviceArray(shape=(int(nbytes),), dtype=np.uint8)

    @staticmethod
    def device_ptr(buf):
        return int(buf.ptr)

    @staticmethod
    def device_free(buf):
        buf.free()

    def host_alloc(self, nbytes):
        """-> (uint8 array of nbytes, release callable). Pinned when the driver allows it."""
        ptr = ctypes.c_void_p()
        try:
            status = self._lib.cudaMallocHost(ctypes.byref(ptr), ctypes.c_size_t(int(nbytes)))
        except AttributeError:
            status = -1
        if status != 0 or not ptr.value:
            log.debug("pinned host allocation of %d bytes failed (status %s); using pageable memory", nbytes, status)
            return np.empty(int(nbytes), np.uint8), None
        array = np.ctypeslib.as_array((ctypes.c_uint8 * int(nbytes)).from_address(ptr.value))
        return array, lambda: self._lib.cudaFreeHost(ctypes.c_void_p(ptr.value))

    def h2d(self, dst_ptr, host, nbytes):
        self._cuda.wrapper().memcpy(dst_ptr, host.ctypes.data, nbytes, self._cuda.MemcpyKind.HostToDevice, self.stream_ptr)

    def d2h(self, host, src_ptr, nbytes):
        self._cuda.wrapper().memcpy(host.ctypes.data, src_ptr, nbytes, self._cuda.MemcpyKind.DeviceToHost, self.stream_ptr)

    def synchronize(self):
        self.stream.synchronize()

    # -- timing events (CUDA runtime C API through ctypes; unverified on hardware) --------------

    def _call(self, what, *args):
        status = getattr(self._lib, what)(*args)  # cudaError_t (int, ctypes' default restype)
        if status != 0:
            raise RuntimeError("{} failed: CUDA error {}".format(what, status))

    def event_create(self):
        event = ctypes.c_void_p()
        self._call("cudaEventCreate", ctypes.byref(event))
        return event.value

    def event_record(self, event):
        self._call("cudaEventRecord", ctypes.c_void_p(event), ctypes.c_void_p(self.stream_ptr))

    def event_synchronize(self, event):
        self._call("cudaEventSynchronize", ctypes.c_void_p(event))

    def event_elapsed_ms(self, start, end):
        ms = ctypes.c_float()
        self._call("cudaEventElapsedTime", ctypes.byref(ms), ctypes.c_void_p(start), ctypes.c_void_p(end))
        return float(ms.value)

    def event_destroy(self, event):
        self._lib.cudaEventDestroy(ctypes.c_void_p(event))

    def close(self):
        self.stream.free()


def import_cudart():
    """cuda-python's runtime module (it moved to cuda.bindings in 12.6+), or None."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            return None
    return cudart


def _check(result, what):
    """cuda-python returns (error, *values); raise on a non-zero error, return the values."""
    err = result[0] if isinstance(result, tuple) else result
    if int(err) != 0:
        raise RuntimeError("{} failed: {}".format(what, err))
    if isinstance(result, tuple):
        return result[1] if len(result) == 2 else result[1:]
    return None


class CudaPythonCuda(object):
    name = "cuda-python"

    def __init__(self, cudart=None):
        self._rt = cudart or import_cudart()
        if self._rt is None:
            raise ImportError("cuda-python is not installed")
        self.stream = _check(self._rt.cudaStreamCreate(), "cudaStreamCreate")
        self.stream_ptr = int(self.stream)

    def device_alloc(self, nbytes):
        return int(_check(self._rt.cudaMalloc(int(nbytes)), "cudaMalloc"))

    @staticmethod
    def device_ptr(buf):
        return int(buf)

    def device_free(self, buf):
        self._rt.cudaFree(buf)

    def host_alloc(self, nbytes):
        try:
            ptr = int(_check(self._rt.cudaMallocHost(int(nbytes)), "cudaMallocHost"))
        except RuntimeError:
            return np.empty(int(nbytes), np.uint8), None
        array = np.ctypeslib.as_array((ctypes.c_uint8 * int(nbytes)).from_address(ptr))
        return array, lambda: self._rt.cudaFreeHost(ptr)

    def h2d(self, dst_ptr, host, nbytes):
        _check(self._rt.cudaMemcpyAsync(dst_ptr, host.ctypes.data, nbytes,
                                        self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream), "cudaMemcpyAsync")

    def d2h(self, host, src_ptr, nbytes):
        _check(self._rt.cudaMemcpyAsync(host.ctypes.data, src_ptr, nbytes,
                                        self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream), "cudaMemcpyAsync")

    def synchronize(self):
        _check(self._rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    # -- timing events (cuda-python returns (error, *values); unverified on hardware) ----------

    def event_create(self):
        return _check(self._rt.cudaEventCreate(), "cudaEventCreate")

    def event_record(self, event):
        _check(self._rt.cudaEventRecord(event, self.stream), "cudaEventRecord")

    def event_synchronize(self, event):
        _check(self._rt.cudaEventSynchronize(event), "cudaEventSynchronize")

    def event_elapsed_ms(self, start, end):
        return float(_check(self._rt.cudaEventElapsedTime(start, end), "cudaEventElapsedTime"))

    def event_destroy(self, event):
        self._rt.cudaEventDestroy(event)

    def close(self):
        self._rt.cudaStreamDestroy(self.stream)


def default_cuda():
    """polygraphy.cuda first (a declared dependency); cuda-python where polygraphy cannot load libcudart."""
    errors = []
    for factory in (PolygraphyCuda, CudaPythonCuda):
        try:
            return factory()
        except Exception as exc:  # polygraphy raises its own exception type when libcudart is missing
            errors.append("{}: {}".format(factory.name, exc))
    raise RuntimeError("no usable CUDA runtime: " + "; ".join(errors))


class BufferSet(object):
    """Device and host buffers per tensor name, reused across calls and grown only when needed."""

    def __init__(self, cuda):
        self.cuda = cuda
        self._device = {}
        self._host = {}
        self._capacity = {}
        self._layout = {}

    def ensure(self, name, shape, dtype):
        """Make room for `name` with this shape and dtype; True when its device address changed."""
        shape = tuple(int(d) for d in shape)
        if any(d < 0 for d in shape):
            raise ValueError("tensor {} has an unresolved shape {}".format(name, shape))
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        self._layout[name] = (shape, dtype, nbytes)
        if self._capacity.get(name, -1) >= nbytes:
            return False
        self._release(name)
        size = max(nbytes, 1)
        self._device[name] = self.cuda.device_alloc(size)
        self._host[name] = self.cuda.host_alloc(size)
        self._capacity[name] = size
        return True

    def ptr(self, name):
        return self.cuda.device_ptr(self._device[name])

    def host(self, name):
        """The host buffer of `name` viewed with its current shape and dtype."""
        shape, dtype, nbytes = self._layout[name]
        return self._host[name][0][:nbytes].view(dtype).reshape(shape)

    def nbytes(self, name):
        return self._layout[name][2]

    def allocated_bytes(self):
        """Device bytes held by all buffers (capacities, not current sizes)."""
        return sum(self._capacity.values())

    def stage(self, name, array):
        """Copy `array` into the host buffer of `name` (host work only, nothing enqueued)."""
        np.copyto(self.host(name), array, casting="same_kind")

    def h2d(self, name):
        """Enqueue the host -> device copy of `name` on the stream."""
        self.cuda.h2d(self.ptr(name), self.host(name), self.nbytes(name))

    def upload(self, name, array):
        self.stage(name, array)
        self.h2d(name)

    def download(self, name):
        host = self.host(name)
        self.cuda.d2h(host, self.ptr(name), self.nbytes(name))
        return host

    def _release(self, name):
        if name in self._device:
            self.cuda.device_free(self._device.pop(name))
            _, free = self._host.pop(name)
            if free is not None:
                free()
            self._capacity.pop(name, None)

    def close(self):
        for name in list(self._device):
            self._release(name)


class CudaGraph(object):
    """One captured `execute_async_v3`, replayed while the shapes and addresses it was captured with hold.

    TensorRT's rule: run the context once (and synchronize) before capturing, and capture again whenever
    an input shape or a tensor address changes.
    """

    def __init__(self, cudart):
        self._rt = cudart
        self._exec = None
        self.key = None

    def capture(self, context, stream_ptr, key):
        self.reset()
        rt = self._rt
        _check(rt.cudaStreamBeginCapture(stream_ptr, rt.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal),
               "cudaStreamBeginCapture")
        ok = False
        try:
            ok = context.execute_async_v3(stream_ptr)
        finally:
            graph = _check(rt.cudaStreamEndCapture(stream_ptr), "cudaStreamEndCapture")
        if not ok:
            rt.cudaGraphDestroy(graph)
            raise RuntimeError("execute_async_v3 failed during CUDA graph capture")
        try:  # CUDA 12 signature (graph, flags); CUDA 11's cuda-python took (graph, log buffer, size)
            result = rt.cudaGraphInstantiate(graph, 0)
        except TypeError:
            result = rt.cudaGraphInstantiate(graph, b"", 0)
        value = _check(result, "cudaGraphInstantiate")
        self._exec = value[0] if isinstance(value, tuple) else value
        rt.cudaGraphDestroy(graph)
        self.key = key

    def launch(self, stream_ptr):
        _check(self._rt.cudaGraphLaunch(self._exec, stream_ptr), "cudaGraphLaunch")

    def reset(self):
        if self._exec is not None:
            self._rt.cudaGraphExecDestroy(self._exec)
        self._exec = None
        self.key = None
