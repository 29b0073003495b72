"""Issue 16, fixes 1-8: each rule tested against fakes of the TensorRT / Polygraphy API (no TensorRT here).

The fakes spell only names that exist in ../shared/notes/trt-python-api/<version>.json for the version they
imitate (tests/test_trt_truth.py checks the names our code uses). UNVERIFIED ON HARDWARE.
"""
import os
import sys
import types

import pytest

from defectrt import trt_compat
from defectrt.errors import UserInputError
from defectrt.export import engine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------------ fakes

class _Name(str):
    """An enum member: compares as its name, int() as its index (like pybind11 enums)."""

    def __new__(cls, name, index):
        obj = str.__new__(cls, name)
        obj.index = index
        return obj

    def __int__(self):
        return self.index


class _Enum(object):
    def __init__(self, *names):
        for i, n in enumerate(names):
            setattr(self, n, _Name(n, i))
        self._values = {n: i for i, n in enumerate(names)}

    def __getitem__(self, name):
        return getattr(self, name)


class FakeTensor(object):
    def __init__(self, dtype):
        self.dtype = dtype


class FakeLayer(object):
    def __init__(self, name, type_, out_dtypes):
        self.name, self.type = name, type_
        self._outs = [FakeTensor(d) for d in out_dtypes]
        self.num_outputs = len(out_dtypes)
        self.precision = None
        self.output_types = {}

    def get_output(self, i):
        return self._outs[i]

    def set_output_type(self, i, dtype):
        self.output_types[i] = dtype


class FakeNetwork(object):
    def __init__(self, layers):
        self.layers = layers
        self.num_layers = len(layers)

    def get_layer(self, i):
        return self.layers[i]


def fake_trt(version, dla_cores=2, parse_ok=True, layers=None, errors=()):
    """A module-like fake of `tensorrt` at `version` (enum members as in that version's API JSON)."""
    flav = trt_compat.flavour(version)
    trt = types.SimpleNamespace(__version__=version, calls=[])
    lt = ["SHAPE", "CONSTANT", "IDENTITY", "ELEMENTWISE", "GATHER", "CONVOLUTION", "RESIZE"]
    trt.LayerType = _Enum(*(lt + (["CAST"] if flav.cast_layer else [])))
    trt.DataType = _Enum("FLOAT", "HALF", "INT32", "INT8", "BOOL", *(["INT64"] if flav.strongly_typed_network else []))
    flags = ["FP16", "INT8", "GPU_FALLBACK", "DEBUG"]
    if flav.obey_precision_constraints:
        flags += ["OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS"]
    if not flav.obey_precision_constraints and flav.precision_flags:
        flags += ["STRICT_TYPES"]
    if not flav.precision_flags:
        flags = ["GPU_FALLBACK", "DEBUG"]
    trt.BuilderFlag = _Enum(*flags)
    trt.DeviceType = _Enum("GPU", "DLA")
    trt.MemoryPoolType = _Enum("WORKSPACE")
    net_flags = (["EXPLICIT_BATCH"] if flav.explicit_batch_flag or flav.precision_flags else []) + \
        (["STRONGLY_TYPED"] if flav.strongly_typed_network else [])
    trt.NetworkDefinitionCreationFlag = _Enum(*net_flags)
    network = FakeNetwork(layers or [])
    trt.network = network

    class Err(object):
        def __init__(self, node, desc):
            self._node, self._desc = node, desc

        def node(self):
            return self._node

        def desc(self):
            return self._desc

        def node_name(self):
            return "/model/bad"

        def node_operator(self):
            return "Bad"

    class Config(object):
        def __init__(self):
            self.flags = []
            self.default_device_type = "GPU"
            self.DLA_core = -1
            self.max_workspace_size = None
            self.pool = {}
            self.profiles = []

        def set_flag(self, flag):
            self.flags.append(flag)

        def set_memory_pool_limit(self, pool, size):
            self.pool[pool] = size

        def add_optimization_profile(self, p):
            self.profiles.append(p)

        def create_timing_cache(self, data):
            trt.calls.append(("create_timing_cache", data))
            return types.SimpleNamespace(serialize=lambda: b"cache-after")

        def set_timing_cache(self, cache, ignore_mismatch):
            trt.calls.append(("set_timing_cache", ignore_mismatch))

    class Profile(object):
        def set_shape(self, name, lo, opt, hi):
            self.shape = (name, lo, opt, hi)

    class Builder(object):
        num_DLA_cores = dla_cores

        def __init__(self, logger):
            trt.builder = self

        def create_network(self, flags):
            trt.calls.append(("create_network", flags))
            return network

        def create_builder_config(self):
            trt.config = Config()
            return trt.config

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, net, config):
            trt.calls.append("build")
            return b"engine-bytes"

    class OnnxParser(object):
        def __init__(self, net, logger):
            self._errors = [Err(*e) for e in errors]
            self.num_errors = len(self._errors) if not parse_ok else 0

        def parse(self, data):
            return parse_ok

        def get_error(self, i):
            return self._errors[i]

    trt.Builder, trt.OnnxParser, trt.Config = Builder, OnnxParser, Config
    class Logger(object):
        WARNING = 2

        def __init__(self, level):
            self.level = level

    trt.Logger = Logger
    trt.init_libnvinfer_plugins = lambda logger, ns: True
    if flav.progress_monitor:  # 10.0+: the base class of engine-build progress monitors (issue 19)
        class IProgressMonitor(object):
            def __init__(self):
                pass

        trt.IProgressMonitor = IProgressMonitor
    return trt


def _island(trt, cast=False):
    """A lowered DySample island as TensorRT's parser sees it: float sampling plus integer index maths."""
    F, I32 = trt.DataType.FLOAT, trt.DataType.INT32
    layers = [
        FakeLayer("/m/up/sampler/Mul", trt.LayerType.ELEMENTWISE, [F]),             # float coordinates
        FakeLayer("/m/up/sampler/Floor", trt.LayerType.ELEMENTWISE, [F]),
        FakeLayer("/m/up/sampler/Shape", trt.LayerType.SHAPE, [I32]),               # index maths from here
        FakeLayer("/m/up/sampler/Cast", trt.LayerType.IDENTITY, [I32]),             # Cast on 8.0-8.5
        FakeLayer("/m/up/sampler/Add_idx", trt.LayerType.ELEMENTWISE, [I32]),       # integer Add
        FakeLayer("/m/up/sampler/Gather_idx", trt.LayerType.GATHER, [I32]),
        FakeLayer("/m/up/sampler/Const", trt.LayerType.CONSTANT, [F]),
        FakeLayer("/m/up/sampler/Gather", trt.LayerType.GATHER, [F]),               # gathers float pixels
        FakeLayer("/m/head/Conv", trt.LayerType.CONVOLUTION, [F]),                   # outside the island
    ]
    if cast:
        layers.append(FakeLayer("/m/up/sampler/CastF", trt.LayerType.CAST, [F]))   # 8.6+: a cast layer, never pinned
    return layers


# ------------------------------------------------------------------------------------ fix 1

@pytest.mark.parametrize("version", ["8.2.1", "8.6.1"])
def test_fix1_island_pin_touches_only_float_computing_layers(version):
    """NvInfer.h 8.0 ILayer::setOutputType: 'the output type of all layers that are shape operations must be
    DataType::kINT32'; IIdentityLayer (8.0): a Cast is an identity typed by setOutputType; ICastLayer from 8.6."""
    trt = fake_trt(version)
    flav = trt_compat.flavour(version)
    layers = _island(trt, cast=flav.cast_layer)
    pinned = engine._pin_island_fp32(trt, flav, FakeNetwork(layers))
    assert pinned == ["/m/up/sampler/Mul", "/m/up/sampler/Floor", "/m/up/sampler/Gather"]
    for layer in layers:
        if layer.name in pinned:
            assert layer.precision == trt.DataType.FLOAT and layer.output_types == {0: trt.DataType.FLOAT}
        else:
            assert layer.precision is None and layer.output_types == {}


def test_fix1_raw_8x_build_pins_island_and_obeys():
    trt = fake_trt("8.2.1.8")
    layers = _island(trt)
    trt.network.layers[:] = layers
    trt.network.num_layers = len(layers)
    data = engine._build_raw(trt, trt_compat.flavour("8.2.1"), None, __file__, _opts("int8"), _say())
    assert data == b"engine-bytes"
    assert set(trt.config.flags) == {"FP16", "INT8", "OBEY_PRECISION_CONSTRAINTS"}
    assert layers[3].output_types == {}  # the index Cast stays integer
    assert trt.config.max_workspace_size == 1 << 30 and trt.config.pool == {}  # 8.2: no memory pools yet


def test_fix1_8_0_uses_strict_types_and_8_4_memory_pools():
    trt = fake_trt("8.0.1.6")
    engine._build_raw(trt, trt_compat.flavour("8.0.1"), None, __file__, _opts("fp16"), _say())
    assert "STRICT_TYPES" in trt.config.flags and "OBEY_PRECISION_CONSTRAINTS" not in trt.config.flags
    trt = fake_trt("8.4.3")
    engine._build_raw(trt, trt_compat.flavour("8.4.3"), None, __file__, _opts("fp32"), _say())
    assert trt.config.pool == {"WORKSPACE": 1 << 30} and trt.config.flags == []


def _opts(precision, **kw):
    o = dict(precision=precision, batch=(1, 1, 1), imgsz=(64, 64), workspace=1 << 30, timing_cache=None,
             dla_core=None, input_name="images", strongly_typed=False)
    o.update(kw)
    return o


def _say():
    return engine.Progress(enabled=False)


# ------------------------------------------------------------------------------------ fix 2, 3, 4, 5: Polygraphy

class FakePolygraphy(object):
    """Stands in for polygraphy.backend.trt's loaders, recording how they were called."""

    def __init__(self, trt, raise_on_parse=False):
        from polygraphy.exception import PolygraphyException

        self.trt, self.calls = trt, {}
        outer = self

        def NetworkFromOnnxPath(path, **kwargs):
            outer.calls["network"] = kwargs

            def load():
                if raise_on_parse:
                    raise PolygraphyException("Could not parse ONNX correctly")
                return trt.Builder(None), trt.network, None
            return load

        def CreateConfig(**kwargs):
            outer.calls["config"] = kwargs

            def make(builder, network):
                return trt.Config()
            return make

        def EngineBytesFromNetwork(network, config=None, save_timing_cache=None):
            def run():
                builder, net, _ = network()
                outer.config = config(builder, net)
                outer.calls["save_timing_cache"] = save_timing_cache
                return b"engine-bytes"
            return run

        class Profile(object):
            def add(self, name, min, opt, max):
                outer.calls["profile"] = (name, min, opt, max)
                return self

        self.loaders = dict(NetworkFromOnnxPath=NetworkFromOnnxPath, CreateConfig=CreateConfig,
                            EngineBytesFromNetwork=EngineBytesFromNetwork, Profile=Profile)


@pytest.fixture
def polygraphy_fakes(monkeypatch):
    import polygraphy.backend.trt as pbt

    def install(trt, **kw):
        fake = FakePolygraphy(trt, **kw)
        for name, value in fake.loaders.items():
            monkeypatch.setattr(pbt, name, value)
        return fake
    return install


def _build(trt, tmp_path, precision="fp16", **kw):
    return engine.build_engine(__file__, str(tmp_path / "m.engine"), precision=precision, imgsz=(64, 64), trt=trt,
                               progress=engine.Progress(enabled=False), **kw)


def test_fix2_pyproject_requires_polygraphy_0_49_9():
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        text = f.read()
    assert '"polygraphy>=0.49.9"' in text


def test_fix2_strongly_typed_passed_only_when_true(polygraphy_fakes, tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "gpu_identity", lambda: {"gpu_name": "fake", "compute_capability": "8.7"})
    trt = fake_trt("10.3.0")
    fake = polygraphy_fakes(trt)
    record = _build(trt, tmp_path)
    assert fake.calls["network"] == {} and record["strongly_typed"] is False
    assert fake.calls["config"]["fp16"] is True and fake.calls["config"]["precision_constraints"] == "obey"
    trt = fake_trt("11.1.0")
    fake = polygraphy_fakes(trt)
    record = _build(trt, tmp_path, force=True)
    assert fake.calls["network"] == {"strongly_typed": True} and record["strongly_typed"] is True


def test_fix3_dla_is_configured_by_us_without_prefer(polygraphy_fakes, tmp_path, monkeypatch):
    """NvInfer.h 8.2 BuilderFlag: kOBEY_PRECISION_CONSTRAINTS 'Require...' and kPREFER_PRECISION_CONSTRAINTS
    'Prefer...' are alternatives; CreateConfig(use_dla=True) sets PREFER beside our OBEY."""
    monkeypatch.setattr(engine, "gpu_identity", lambda: {"gpu_name": "Orin", "compute_capability": "8.7"})
    trt = fake_trt("8.6.2")
    fake = polygraphy_fakes(trt)
    _build(trt, tmp_path, dla_core=1)
    assert "use_dla" not in fake.calls["config"] and "allow_gpu_fallback" not in fake.calls["config"]
    cfg = fake.config
    assert cfg.default_device_type == "DLA" and cfg.DLA_core == 1 and cfg.flags == ["GPU_FALLBACK"]
    assert "PREFER_PRECISION_CONSTRAINTS" not in cfg.flags
    with pytest.raises(UserInputError, match="no DLA"):
        trt = fake_trt("8.6.2", dla_cores=0)
        polygraphy_fakes(trt)
        _build(trt, tmp_path, dla_core=0, force=True)
    with pytest.raises(UserInputError, match="2 DLA core"):
        trt = fake_trt("8.6.2", dla_cores=2)
        polygraphy_fakes(trt)
        _build(trt, tmp_path, dla_core=2, force=True)


@pytest.mark.parametrize("version,strong", [("8.6.2", False), ("10.8.0", False), ("10.11.0", False),
                                            ("10.12.0", True), ("10.16.1", True), ("11.0.0", True)])
def test_fix4_strongly_typed_from_10_12_when_the_graph_carries_precision(version, strong):
    """NvInfer.h 10.16: setPrecision / setOutputType / kFP16... 'Deprecated in TensorRT 10.12. Superseded by
    strong typing'; trt-python-api/11.0.json has no BuilderFlag.FP16 / OBEY_PRECISION_CONSTRAINTS."""
    flav = trt_compat.flavour(version)
    assert trt_compat.use_strongly_typed(flav, precision_in_graph=True) is strong
    # a graph without its precision keeps the flags wherever they still exist
    assert trt_compat.use_strongly_typed(flav, precision_in_graph=False) is (not flav.precision_flags)


def test_fix4_strongly_typed_build_sets_no_precision_flags_or_pins(polygraphy_fakes, tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "gpu_identity", lambda: {"gpu_name": "RTX", "compute_capability": "8.9"})
    trt = fake_trt("10.13.0")
    layers = _island(trt, cast=True)
    trt.network.layers[:] = layers
    trt.network.num_layers = len(layers)
    fake = polygraphy_fakes(trt)
    record = _build(trt, tmp_path, precision="int8")
    assert record["strongly_typed"] and fake.calls["network"] == {"strongly_typed": True}
    assert not {"fp16", "int8", "precision_constraints"} & set(fake.calls["config"])
    assert all(layer.precision is None for layer in layers)


def test_fix5_polygraphy_exception_names_the_parser_node(polygraphy_fakes, tmp_path):
    trt = fake_trt("10.3.0", parse_ok=False, errors=[(7, "No importer registered for op: Bad")])
    polygraphy_fakes(trt, raise_on_parse=True)
    with pytest.raises(UserInputError) as exc:
        _build(trt, tmp_path)
    msg = str(exc.value)
    assert "node 7 (/m/bad" not in msg  # the fake names the node /model/bad
    assert "node 7 (/model/bad, Bad): No importer registered for op: Bad" in msg and "export check" in msg


def test_fix5_raw_parser_errors_name_the_node_on_8x():
    trt = fake_trt("8.2.1", parse_ok=False, errors=[(3, "Unsupported ONNX data type: UINT8 (2)")])
    with pytest.raises(UserInputError, match=r"node 3: Unsupported ONNX data type"):
        engine._build_raw(trt, trt_compat.flavour("8.2.1"), None, __file__, _opts("fp16"), _say())


def test_fix5_build_failure_after_parse_is_a_clear_error(polygraphy_fakes, tmp_path):
    from polygraphy.exception import PolygraphyException

    trt = fake_trt("10.3.0")
    fake = polygraphy_fakes(trt)

    def failing(network, config=None, save_timing_cache=None):
        def run():
            raise PolygraphyException("Invalid Engine. Please ensure the engine was built correctly")
        return run
    import polygraphy.backend.trt as pbt

    pbt.EngineBytesFromNetwork = failing  # restored by monkeypatch (installed by the fixture)
    with pytest.raises(UserInputError, match="could not build an engine from .*Invalid Engine"):
        _build(trt, tmp_path)
    del fake


# ------------------------------------------------------------------------------------ fix 6, 7

def test_fix6_windows_adds_tensorrt_and_cuda_dll_folders(tmp_path):
    from defectrt.runtime.tensorrt_backend import add_tensorrt_dll_directories

    trt_lib = tmp_path / "TensorRT-10.3" / "lib"
    trt_lib.mkdir(parents=True)
    (trt_lib / "nvinfer_10.dll").write_bytes(b"")
    other = tmp_path / "bin"
    other.mkdir()
    cuda = tmp_path / "cuda"
    (cuda / "bin").mkdir(parents=True)
    added = []
    env = {"PATH": os.pathsep.join([str(other), str(trt_lib), str(tmp_path / "missing")]), "CUDA_PATH": str(cuda)}
    got = add_tensorrt_dll_directories(environ=env, platform="win32", add_dll_directory=added.append)
    assert got == [str(trt_lib), str(cuda / "bin")] and added == got
    assert add_tensorrt_dll_directories(environ=env, platform="linux", add_dll_directory=added.append) == []


def test_fix7_cudart_from_cuda_bindings_with_fallback(monkeypatch):
    from defectrt.runtime.cuda_buffers import import_cudart

    new = types.ModuleType("cuda.bindings.runtime")
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = new
    cuda = types.ModuleType("cuda")
    cuda.bindings = bindings
    monkeypatch.setitem(sys.modules, "cuda", cuda)
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", new)
    assert import_cudart() is new  # cuda-python 13: `from cuda import cudart` is gone
    old = types.ModuleType("cuda.cudart")
    cuda12 = types.ModuleType("cuda")
    cuda12.cudart = old
    monkeypatch.setitem(sys.modules, "cuda", cuda12)
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", None)
    monkeypatch.setitem(sys.modules, "cuda.cudart", old)
    assert import_cudart() is old  # cuda-python 11.x / 12.x before 12.6


def test_fix7_gpu_identity_uses_cuda_bindings(monkeypatch):
    from defectrt.runtime import cuda_buffers, tensorrt_backend

    prop = types.SimpleNamespace(name=b"Orin\x00", major=8, minor=7)
    fake = types.SimpleNamespace(cudaGetDeviceProperties=lambda i: (0, prop))
    monkeypatch.setattr(cuda_buffers, "import_cudart", lambda: fake)
    assert tensorrt_backend.gpu_identity() == {"gpu_name": "Orin", "compute_capability": "8.7"}


def test_fix7_trt_extra_is_pinned():
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        text = f.read()
    block = text.split("\ntrt = [", 1)[1].split("]", 1)[0]
    assert '"tensorrt>=8.6,<12"' in block and '"cuda-python>=11.8,<14"' in block


# ------------------------------------------------------------------------------------ fix 8 (NMS domain)

def test_fix8_efficientnms_node_has_a_domain_the_version_converter_accepts():
    import onnx
    from onnx import TensorProto, helper

    from defectrt.export.nms import append_nms

    g = helper.make_graph([helper.make_node("Identity", ["images"], ["raw"], name="id")], "g",
                          [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 6, 10])],
                          [helper.make_tensor_value_info("raw", TensorProto.FLOAT, [1, 6, 10])])
    model = append_nms(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), "trt")
    node = [n for n in model.graph.node if n.op_type == "EfficientNMS_TRT"][0]
    assert node.domain == "trt.plugins"
    assert any(i.domain == "trt.plugins" for i in model.opset_import)
    onnx.version_converter.convert_version(model, 16)  # asserted before the node had a domain


# ------------------------------------------------------------------------------------ build-time control (item 6)

def test_progress_line_per_build_phase(polygraphy_fakes, tmp_path, monkeypatch):
    import io

    monkeypatch.setattr(engine, "gpu_identity", lambda: {"gpu_name": "Orin", "compute_capability": "8.7"})
    trt = fake_trt("10.3.0")
    polygraphy_fakes(trt)
    out = io.StringIO()
    progress = engine.Progress(out=out)
    engine.build_engine(__file__, str(tmp_path / "m.engine"), precision="fp16", imgsz=(64, 64), trt=trt,
                        progress=progress)
    phases = [line.split("] ", 1)[1].split(":")[0] for line in out.getvalue().splitlines()]
    assert phases == ["load plugins", "parse", "configure",
                      "build (minutes on a Jetson; the timing cache shortens rebuilds)", "write"]
    assert out.getvalue().startswith("[engine 1/5 +") and "workspace 1024 MiB" in out.getvalue()


def test_timing_cache_is_loaded_and_saved_on_8x(tmp_path):
    trt = fake_trt("8.2.1")
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"cache-before")
    engine._build_raw(trt, trt_compat.flavour("8.2.1"), None, __file__, _opts("fp16", timing_cache=str(cache)), _say())
    assert ("create_timing_cache", b"cache-before") in trt.calls and ("set_timing_cache", False) in trt.calls
    assert cache.read_bytes() == b"cache-after"


def test_workspace_default_fits_4gb_devices():
    assert engine.resolve_workspace(None) == engine.resolve_workspace("auto") == 1 << 30
    assert engine.resolve_workspace("auto", device_memory=2 << 30) == 512 << 20  # a quarter of a 2 GB device
    assert engine.resolve_workspace("auto", device_memory=64 << 30) == 1 << 30
    assert engine.resolve_workspace("3G") == 3 << 30
    with pytest.raises(UserInputError, match="--workspace"):
        engine.resolve_workspace("huge")


def test_bundle_engine_uses_the_timing_cache_in_the_bundle_by_default(monkeypatch, tmp_path):
    from defectrt.export import bundle

    seen = {}
    monkeypatch.setattr(engine, "build_engine", lambda *a, **kw: seen.update(kw) or {"file": "model.engine"})
    manifest = bundle.Manifest.from_json({"batch": {"dynamic": False, "size": 1, "max": 1}, "precision": "fp16",
                                          "imgsz": [64, 64]})
    bundle._engine_for(str(tmp_path), manifest, "auto", None, None, ())
    assert seen["timing_cache"] == os.path.join(str(tmp_path), "timing.cache") and seen["workspace"] == "auto"


def test_engine_for_another_tensorrt_or_gpu_says_how_to_rebuild(tmp_path):
    from defectrt.runtime import bundle as rb

    record = {"file": "model.engine", "tensorrt_version": "8.5.2.2", "gpu_name": "Orin", "compute_capability": "8.7"}
    ok, why = rb.engine_compatibility(record, "8.6.2", {"gpu_name": "Orin", "compute_capability": "8.7"})
    assert not ok and "built with TensorRT 8.5.2.2, this device has 8.6.2" in why
    ok, why = rb.engine_compatibility(record, "8.5.2", {"gpu_name": "Xavier", "compute_capability": "7.2"})
    assert not ok and "compute capability 8.7, this device has 7.2" in why
    with pytest.raises(UserInputError) as exc:
        rb.choose_backend(str(tmp_path), rb.Manifest.from_json({"engine": record}), "tensorrt", "8.6.2", {})
    assert "--engine --force" in str(exc.value) and "build_engine.sh" in str(exc.value)


def test_device_memory_for_the_workspace_cap():
    nano = types.SimpleNamespace(is_jetson=lambda: True, memory_info=lambda: {"total_bytes": 4 << 30})
    assert engine.device_memory_bytes(nano) == 4 << 30
    rtx = types.SimpleNamespace(is_jetson=lambda: False, gpu_info=lambda: [{"memory_total_mib": "8188"}])
    assert engine.device_memory_bytes(rtx) == 8188 << 20
    none = types.SimpleNamespace(is_jetson=lambda: False, gpu_info=lambda: "unknown")
    assert engine.device_memory_bytes(none) is None
    assert engine.resolve_workspace("auto", engine.device_memory_bytes(
        types.SimpleNamespace(is_jetson=lambda: True, memory_info=lambda: {"total_bytes": 2 << 30}))) == 512 << 20
