"""TensorRT backend: version / API selection, buffer bookkeeping and the call sequence, against fakes.

No machine here has TensorRT: the fakes below imitate the documented API of 8.0-8.4 (bindings,
execute_async_v2) and 8.5+ (tensor names, execute_async_v3) and a CUDA memory / graph layer, so the
backend's own logic runs. The real-engine test at the end is skipped without TensorRT (unverified on
hardware).
"""
import numpy as np
import pytest

from defectrt import Detector
from defectrt.errors import RuntimeFailure, UserInputError
from defectrt.runtime import cuda_buffers
from defectrt.runtime.cuda_buffers import BufferSet, CudaGraph
from defectrt.runtime.tensorrt_backend import (IOTensor, TensorRTBackend, check_input_shape, parse_version,
                                               select_api)

H, W, A = 32, 48, 2


class FakeCuda(object):
    """Device memory as numpy byte arrays keyed by fake pointers."""

    stream_ptr = 777

    def __init__(self):
        self.mem, self.next_ptr, self.freed, self.host_freed = {}, 4096, [], 0
        self.trace = []  # stream work and synchronisations, in order

    def device_alloc(self, nbytes):
        ptr = self.next_ptr
        self.next_ptr += nbytes + 256
        self.mem[ptr] = np.zeros(nbytes, np.uint8)
        return ptr

    def device_ptr(self, buf):
        return buf

    def device_free(self, buf):
        self.freed.append(buf)
        del self.mem[buf]

    def host_alloc(self, nbytes):
        def release():
            self.host_freed += 1
        return np.empty(nbytes, np.uint8), release

    def h2d(self, dst, host, nbytes):
        self.trace.append("h2d")
        self.mem[dst][:nbytes] = host.reshape(-1).view(np.uint8)[:nbytes]

    def d2h(self, host, src, nbytes):
        self.trace.append("d2h")
        host.reshape(-1).view(np.uint8)[:nbytes] = self.mem[src][:nbytes]

    def synchronize(self):
        self.trace.append("sync")

    def read(self, ptr, shape, dtype):
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return self.mem[ptr][:n].view(dtype).reshape(shape)

    def write(self, ptr, array):
        raw = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
        self.mem[ptr][:raw.size] = raw


def kernel(blob):
    """What the fake engine computes: one box per image whose x encodes the image's first pixel."""
    out = np.zeros((blob.shape[0], 6, A), np.float32)
    for b in range(blob.shape[0]):
        out[b, :, 0] = [float(blob[b, 0, 0, 0]) * 100 + 10, 20, 10, 10, 0.9, 0.1]
    return out


class FakeContext(object):
    def __init__(self, engine):
        self.engine, self.cuda = engine, engine.cuda
        self.shape, self.addresses, self.calls = None, {}, []
        self.capturing = None

    # 8.5+
    def set_input_shape(self, name, shape):
        self.calls.append(("set_input_shape", name, tuple(shape)))
        self.shape = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        return self.shape if name == "images" else (self.shape[0], 6, A)

    def set_tensor_address(self, name, ptr):
        self.calls.append(("set_tensor_address", name, ptr))
        self.addresses[name] = ptr
        return True

    def _run(self, inp, out):
        self.cuda.write(out, kernel(self.cuda.read(inp, self.shape, np.float32)))

    def execute_async_v3(self, stream):
        assert stream == FakeCuda.stream_ptr
        self.calls.append(("execute_async_v3",))
        self.cuda.trace.append("execute")
        args = (self.addresses["images"], self.addresses["output0"])
        if self.capturing is not None:  # under stream capture nothing runs; the work is recorded
            self.capturing.append(lambda: self._run(*args))
        else:
            self._run(*args)
        return True

    # 8.0-8.4
    def set_binding_shape(self, index, shape):
        self.calls.append(("set_binding_shape", index, tuple(shape)))
        self.shape = tuple(shape)
        return True

    def get_binding_shape(self, index):
        return self.shape if index == 0 else (self.shape[0], 6, A)

    def execute_async_v2(self, bindings, stream_handle):
        assert stream_handle == FakeCuda.stream_ptr
        self.calls.append(("execute_async_v2", tuple(bindings)))
        self.cuda.trace.append("execute")
        self._run(bindings[0], bindings[1])
        return True


class FakeEngineV3(object):
    def __init__(self, cuda, batch=-1):
        self.cuda, self.batch = cuda, batch
        self.num_io_tensors = 2
        self.context = None

    def get_tensor_name(self, i):
        return ("images", "output0")[i]

    def get_tensor_mode(self, name):
        return FakeTRT.TensorIOMode.INPUT if name == "images" else FakeTRT.TensorIOMode.OUTPUT

    def get_tensor_shape(self, name):
        return (self.batch, 3, H, W) if name == "images" else (self.batch, 6, A)

    def get_tensor_dtype(self, name):
        return "f32"

    def get_tensor_profile_shape(self, name, profile):
        return (1, 3, H, W), (2, 3, H, W), (4, 3, H, W)

    def create_execution_context(self):
        self.context = FakeContext(self)
        return self.context


class FakeEngineV2(object):
    def __init__(self, cuda):
        self.cuda, self.num_bindings, self.context = cuda, 2, None

    def get_binding_name(self, i):
        return ("images", "output0")[i]

    def binding_is_input(self, i):
        return i == 0

    def get_binding_shape(self, i):
        return (-1, 3, H, W) if i == 0 else (-1, 6, A)

    def get_binding_dtype(self, i):
        return "f32"

    def get_profile_shape(self, profile, index):
        return (1, 3, H, W), (2, 3, H, W), (4, 3, H, W)

    def create_execution_context(self):
        self.context = FakeContext(self)
        return self.context


class FakeTRT(object):
    """The parts of the tensorrt module the backend touches."""

    class TensorIOMode(object):
        INPUT, OUTPUT = "INPUT", "OUTPUT"

    class Logger(object):
        WARNING = 2

        def __init__(self, level):
            self.level = level

    def __init__(self, version, cuda, engine_ok=True, batch=-1):
        self.__version__ = version
        self.cuda, self.engine_ok, self.batch = cuda, engine_ok, batch
        self.events = []
        self.engine = None
        outer = self

        class Runtime(object):
            def __init__(self, logger):
                pass

            def deserialize_cuda_engine(self, data):
                outer.events.append("deserialize")
                if not outer.engine_ok:
                    return None
                v2 = parse_version(outer.__version__) < (8, 5)
                outer.engine = FakeEngineV2(outer.cuda) if v2 else FakeEngineV3(outer.cuda, outer.batch)
                return outer.engine

        self.Runtime = Runtime

    @staticmethod
    def nptype(dt):
        return {"f32": np.float32, "i32": np.int32}[dt]

    def init_libnvinfer_plugins(self, logger, namespace):
        self.events.append("init_plugins")
        return True


@pytest.fixture
def engine_file(tmp_path):
    p = tmp_path / "model.engine"
    p.write_bytes(b"serialized")
    return str(p)


def _blob(values):
    blob = np.zeros((len(values), 3, H, W), np.float32)
    for b, v in enumerate(values):
        blob[b, 0, 0, 0] = v
    return blob


@pytest.mark.parametrize("version,api", [("8.0.1.6", "bindings"), ("8.2.1.8", "bindings"), ("8.4.1", "bindings"),
                                         ("8.5.2.2", "tensor"), ("8.6.2", "tensor"), ("10.3.0", "tensor"),
                                         ("11.0.0", "tensor")])
def test_api_follows_the_tensorrt_version(version, api):
    assert select_api(version) == api


def test_tensorrt_7_is_refused_clearly():
    with pytest.raises(UserInputError, match="too old"):
        select_api("7.1.3")


def test_input_shape_checks_fixed_dims_and_the_profile():
    t = IOTensor("images", 0, True, (-1, 3, H, W), np.float32)
    check_input_shape(t, (4, 3, H, W), ((1, 3, H, W), (2, 3, H, W), (4, 3, H, W)))
    with pytest.raises(UserInputError, match="outside the engine's profile"):
        check_input_shape(t, (5, 3, H, W), ((1, 3, H, W), (2, 3, H, W), (4, 3, H, W)))
    with pytest.raises(UserInputError, match="fixed shape"):
        check_input_shape(t, (1, 3, H + 1, W), None)


def test_buffers_grow_only_when_needed_and_report_address_changes():
    cuda = FakeCuda()
    bufs = BufferSet(cuda)
    assert bufs.ensure("x", (4, 3, 8, 8), np.float32) is True
    first = bufs.ptr("x")
    assert bufs.ensure("x", (2, 3, 8, 8), np.float32) is False  # smaller: same memory
    assert bufs.ptr("x") == first and bufs.host("x").shape == (2, 3, 8, 8)
    assert bufs.ensure("x", (8, 3, 8, 8), np.float32) is True  # larger: reallocated, old one freed
    assert bufs.ptr("x") != first and cuda.freed == [first] and cuda.host_freed == 1
    bufs.ensure("n", (2, 1), np.int32)
    bufs.upload("n", np.array([[3], [4]], np.int32))
    np.testing.assert_array_equal(bufs.download("n"), [[3], [4]])
    with pytest.raises(ValueError, match="unresolved"):
        bufs.ensure("y", (-1, 4), np.float32)
    bufs.close()
    assert cuda.mem == {}


@pytest.mark.parametrize("version", ["10.3.0", "8.2.1"])
def test_backend_runs_batches_through_either_api(engine_file, version):
    cuda = FakeCuda()
    trt = FakeTRT(version, cuda)
    be = TensorRTBackend(engine_file, trt=trt, cuda=cuda, names={0: "scratch"})
    assert trt.events == ["init_plugins", "deserialize"]
    assert be.imgsz == (H, W) and be.max_batch == 4 and be.batch is None and be.names == {0: "scratch", 1: "class1"}
    np.testing.assert_allclose(be.infer(_blob([0.1, 0.2])), kernel(_blob([0.1, 0.2])))
    np.testing.assert_allclose(be.infer(_blob([0.3, 0.4])), kernel(_blob([0.3, 0.4])))
    np.testing.assert_allclose(be.infer(_blob([0.5])), kernel(_blob([0.5])))
    calls = [c[0] for c in trt.engine.context.calls]
    shape_call = "set_input_shape" if version.startswith("10") else "set_binding_shape"
    assert calls.count(shape_call) == 2  # set again only when the shape changed
    with pytest.raises(UserInputError, match="outside the engine's profile"):
        be.infer(_blob([0.1] * 5))
    det = Detector(be)
    d = det(np.zeros((H, W, 3), np.uint8))
    np.testing.assert_allclose(d.boxes, [[5, 15, 15, 25]], atol=1e-5)


def test_deserialize_failure_names_the_file_and_says_how_to_rebuild(engine_file):
    trt = FakeTRT("10.3.0", FakeCuda(), engine_ok=False)
    with pytest.raises(RuntimeFailure) as exc:
        TensorRTBackend(engine_file, trt=trt, cuda=FakeCuda(), expected={"tensorrt_version": "10.3.0", "gpu_name": "Orin"})
    text = str(exc.value)
    assert engine_file in text and "defectrt export build" in text and "10.3.0" in text and "Orin" in text


def test_no_execution_context_is_out_of_memory(engine_file, monkeypatch):
    from defectrt.errors import OutOfMemory

    trt = FakeTRT("10.3.0", FakeCuda())
    monkeypatch.setattr(FakeEngineV3, "create_execution_context", lambda self: None)
    with pytest.raises(OutOfMemory) as exc:
        TensorRTBackend(engine_file, trt=trt, cuda=FakeCuda())
    assert engine_file in str(exc.value) and "out of GPU memory" in str(exc.value) and "--batch" in str(exc.value)


def test_recorded_version_mismatch_is_refused_before_deserialising(engine_file):
    trt = FakeTRT("10.3.0", FakeCuda())
    with pytest.raises(UserInputError, match="built with TensorRT 8.6.2 but this device has TensorRT 10.3.0"):
        TensorRTBackend(engine_file, trt=trt, cuda=FakeCuda(), expected={"tensorrt_version": "8.6.2"})
    assert "deserialize" not in trt.events


def test_missing_engine_and_plugin_files_are_named(tmp_path, engine_file):
    with pytest.raises(UserInputError, match="no such TensorRT engine"):
        TensorRTBackend(str(tmp_path / "nope.engine"), trt=FakeTRT("10.3.0", FakeCuda()), cuda=FakeCuda())
    with pytest.raises(UserInputError, match="libmissing.so"):
        TensorRTBackend(engine_file, plugins=[str(tmp_path / "libmissing.so")], trt=FakeTRT("10.3.0", FakeCuda()),
                        cuda=FakeCuda())


def test_fixed_batch_engine_reports_its_batch(engine_file):
    cuda = FakeCuda()
    be = TensorRTBackend(engine_file, trt=FakeTRT("10.3.0", cuda, batch=2), cuda=cuda)
    assert be.batch == 2 and be.max_batch == 2
    with pytest.raises(UserInputError, match="fixed shape"):
        be.infer(_blob([0.1]))


class FakeCudart(object):
    class cudaStreamCaptureMode(object):
        cudaStreamCaptureModeGlobal = 0

    def __init__(self, context_getter):
        self.ctx = context_getter
        self.launches, self.captures, self.destroyed = 0, 0, 0
        self._recorded = {}

    def cudaStreamBeginCapture(self, stream, mode):
        self.ctx().capturing = []
        return (0,)

    def cudaStreamEndCapture(self, stream):
        work, self.ctx().capturing = self.ctx().capturing, None
        self.captures += 1
        self._recorded["graph"] = work
        return 0, "graph"

    def cudaGraphInstantiate(self, graph, flags):
        self._recorded["exec"] = self._recorded[graph]
        return 0, "exec"

    def cudaGraphDestroy(self, graph):
        return (0,)

    def cudaGraphExecDestroy(self, exe):
        self.destroyed += 1
        return (0,)

    def cudaGraphLaunch(self, exe, stream):
        self.launches += 1
        for fn in self._recorded[exe]:
            fn()
        return (0,)


def test_cuda_graph_is_captured_after_a_warm_run_replayed_and_recaptured_on_shape_change(engine_file, monkeypatch):
    cuda = FakeCuda()
    trt = FakeTRT("10.3.0", cuda)
    holder = {}
    rt = FakeCudart(lambda: holder["be"].context)
    monkeypatch.setattr(cuda_buffers, "import_cudart", lambda: rt)
    be = holder["be"] = TensorRTBackend(engine_file, trt=trt, cuda=cuda, cuda_graph=True)
    np.testing.assert_allclose(be.infer(_blob([0.1])), kernel(_blob([0.1])))  # warm run, then capture
    assert rt.captures == 1 and rt.launches == 0
    np.testing.assert_allclose(be.infer(_blob([0.7])), kernel(_blob([0.7])))  # replay reads the new input
    assert rt.launches == 1
    executes = sum(1 for c in be.context.calls if c[0] == "execute_async_v3")
    np.testing.assert_allclose(be.infer(_blob([0.2, 0.3])), kernel(_blob([0.2, 0.3])))  # new shape: capture again
    assert rt.captures == 2 and rt.destroyed == 1
    assert sum(1 for c in be.context.calls if c[0] == "execute_async_v3") == executes + 2  # warm run + capture


def test_graph_without_cuda_python_runs_plainly(engine_file, monkeypatch, caplog):
    monkeypatch.setattr(cuda_buffers, "import_cudart", lambda: None)
    cuda = FakeCuda()
    be = TensorRTBackend(engine_file, trt=FakeTRT("10.3.0", cuda), cuda=cuda, cuda_graph=True)
    assert "cuda-python" in caplog.text
    np.testing.assert_allclose(be.infer(_blob([0.4])), kernel(_blob([0.4])))


def test_cuda_graph_instantiate_falls_back_to_the_cuda_11_signature():
    calls = []

    class Rt11(FakeCudart):
        def cudaGraphInstantiate(self, graph, *args):
            calls.append(args)
            if len(args) == 1:
                raise TypeError("takes 3 arguments")
            return 0, "exec", None

    class Ctx(object):
        capturing = None

        def execute_async_v3(self, stream):
            return True

    ctx = Ctx()
    rt = Rt11(lambda: ctx)
    rt._recorded["exec"] = []
    g = CudaGraph(rt)
    g.capture(ctx, 1, key="k")
    assert calls == [(0,), (b"", 0)] and g.key == "k"


class EventCuda(FakeCuda):
    """FakeCuda plus the timing-event API of the CUDA layers; elapsed times are fixed per event pair."""

    ELAPSED = {(1, 2): 0.5, (2, 3): 3.0, (3, 4): 0.25}

    def __init__(self, fail_create_at=None):
        super(EventCuda, self).__init__()
        self.created, self.destroyed, self.fail_create_at = [], [], fail_create_at

    def event_create(self):
        if len(self.created) == self.fail_create_at:
            raise RuntimeError("cudaEventCreate failed")
        self.created.append(len(self.created) + 1)
        self.trace.append(("create", self.created[-1]))
        return self.created[-1]

    def event_record(self, event):  # the real layers record on their own stream (stream_ptr)
        self.trace.append(("record", event, self.stream_ptr))

    def event_synchronize(self, event):
        self.trace.append(("event_sync", event))

    def event_elapsed_ms(self, start, end):
        self.trace.append(("elapsed", start, end))
        return self.ELAPSED[(start, end)]

    def event_destroy(self, event):
        self.destroyed.append(event)


@pytest.mark.parametrize("version", ["10.3.0", "8.2.1"])
def test_time_stages_records_events_around_each_stage_on_the_backends_stream(engine_file, version):
    cuda = EventCuda()
    be = TensorRTBackend(engine_file, trt=FakeTRT(version, cuda), cuda=cuda)
    assert cuda.created == [1, 2, 3, 4]  # created once, at load
    be.infer(_blob([0.9]))  # sizes buffers and binds outside the timed call
    for values in ([0.1, 0.2], [0.3, 0.4]):
        del cuda.trace[:]
        out, times = be.time_stages(_blob(values))
        np.testing.assert_allclose(out, kernel(_blob(values)))
        s = FakeCuda.stream_ptr
        assert s != 0  # never the legacy default stream
        assert cuda.trace == [("record", 1, s), "h2d", ("record", 2, s), "execute", ("record", 3, s), "d2h",
                              ("record", 4, s), ("event_sync", 4), ("elapsed", 1, 2), ("elapsed", 2, 3),
                              ("elapsed", 3, 4)]
        assert (times["h2d"], times["compute"], times["d2h"]) == (0.5, 3.0, 0.25)
        assert times["method"] == "cuda-events" and times["enqueue"] >= 0
    assert cuda.created == [1, 2, 3, 4]  # reused, never created in the timed path
    be.close()
    assert sorted(cuda.destroyed) == [1, 2, 3, 4]


@pytest.mark.parametrize("version", ["10.3.0", "8.2.1"])
def test_time_stages_falls_back_to_host_timing_with_a_sync_per_stage(engine_file, version):
    cuda = FakeCuda()  # no event API: e.g. a CUDA layer that cannot create events
    be = TensorRTBackend(engine_file, trt=FakeTRT(version, cuda), cuda=cuda)
    del cuda.trace[:]
    out, times = be.time_stages(_blob([0.1]))
    np.testing.assert_allclose(out, kernel(_blob([0.1])))
    assert cuda.trace == ["sync", "h2d", "sync", "execute", "sync", "d2h", "sync"]
    assert times["method"] == "host-sync"
    assert all(times[k] >= 0 for k in ("h2d", "compute", "d2h", "enqueue"))
    assert times["enqueue"] <= times["compute"]


def test_failed_event_creation_falls_back_and_releases_the_events_made(engine_file, caplog):
    cuda = EventCuda(fail_create_at=2)
    be = TensorRTBackend(engine_file, trt=FakeTRT("10.3.0", cuda), cuda=cuda)
    assert cuda.destroyed == [1, 2] and "host timing" in caplog.text
    assert be.time_stages(_blob([0.1]))[1]["method"] == "host-sync"


def test_time_stages_feeds_the_benchmark_hook(engine_file):
    from defectrt.bench import timing

    cuda = EventCuda()
    be = TensorRTBackend(engine_file, trt=FakeTRT("10.3.0", cuda), cuda=cuda)
    assert not timing.runs_on_host(be)
    query, absent = timing.model_query(be.infer, _blob([0.1]), be)
    out = query()
    assert absent == {} and set(out) == {"h2d", "compute", "d2h", "enqueue", "latency"}
    assert out["latency"] == pytest.approx(3.75)


def test_device_memory_counts_engine_memory_and_io_buffers(engine_file):
    cuda = FakeCuda()
    trt = FakeTRT("10.3.0", cuda)
    be = TensorRTBackend(engine_file, trt=trt, cuda=cuda)
    be.infer(_blob([0.1, 0.2]))
    io = (2 * 3 * H * W + 2 * 6 * A) * 4
    trt.engine.device_memory_size = 1000  # 8.x / 10.x
    assert be.device_memory_bytes() == 1000 + io
    trt.engine.device_memory_size_v2 = 3000  # preferred where present (10.x; the only one in 11.x)
    assert be.device_memory_bytes() == 3000 + io
    del trt.engine.device_memory_size
    assert be.device_memory_bytes() == 3000 + io
    be.close()
    assert be.device_memory_bytes() is None


class RecordingCudart(object):
    """cuda-python's cudart shape: every call returns (error, *values)."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        def call(*args):
            self.calls.append((name,) + args)
            return {"cudaStreamCreate": (0, 0x77), "cudaEventCreate": (0, "ev"),
                    "cudaEventElapsedTime": (0, 1.25)}.get(name, (0,))
        return call


def test_cuda_python_layer_records_events_on_its_own_stream():
    rt = RecordingCudart()
    layer = cuda_buffers.CudaPythonCuda(rt)
    assert layer.event_create() == "ev"
    layer.event_record("ev")
    layer.event_synchronize("ev")
    assert layer.event_elapsed_ms("a", "b") == 1.25
    assert rt.calls[1:] == [("cudaEventCreate",), ("cudaEventRecord", "ev", 0x77),
                            ("cudaEventSynchronize", "ev"), ("cudaEventElapsedTime", "a", "b")]


def test_polygraphy_layer_calls_libcudart_events_through_ctypes():
    calls = []

    class Lib(object):
        def cudaEventCreate(self, ref):
            ref._obj.value = 0xE1
            return 0

        def cudaEventRecord(self, ev, stream):
            calls.append(("record", ev.value, stream.value))
            return 0

        def cudaEventElapsedTime(self, ref, start, end):
            ref._obj.value = 2.5
            calls.append(("elapsed", start.value, end.value))
            return 0

        def cudaEventSynchronize(self, ev):
            return 700  # a CUDA error code

    layer = cuda_buffers.PolygraphyCuda.__new__(cuda_buffers.PolygraphyCuda)
    layer._lib, layer.stream_ptr = Lib(), 0x5A
    ev = layer.event_create()
    layer.event_record(ev)
    assert layer.event_elapsed_ms(ev, ev) == 2.5
    assert calls == [("record", 0xE1, 0x5A), ("elapsed", 0xE1, 0xE1)]
    with pytest.raises(RuntimeError, match="cudaEventSynchronize failed"):
        layer.event_synchronize(ev)


@pytest.mark.tensorrt
def test_real_engine_matches_onnxruntime(tmp_path):
    """Unverified on hardware: builds the rect-finder engine and compares it with ONNX Runtime."""
    pytest.importorskip("tensorrt", reason="TensorRT not installed: unverified on hardware")
    from defectrt.export.engine import build_engine
    from test_runtime_models import draw_rect, rect_finder, save

    onnx_path = save(rect_finder(), tmp_path / "rf.onnx")
    build_engine(onnx_path, str(tmp_path / "rf.engine"), batch=(1, 2, 4), imgsz=(384, 672))
    img = draw_rect(333, 517, 101, 57, 300, 211)
    ref = Detector(onnx_path, backend="onnxruntime")(img)
    for graph in (False, True):
        got = Detector(str(tmp_path / "rf.engine"), imgsz=(384, 672), cuda_graph=graph)([img, img])
        for d in got:
            np.testing.assert_allclose(d.boxes, ref.boxes, atol=1e-3)
