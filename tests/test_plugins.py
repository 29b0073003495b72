"""The DrtGridSample plugin: its math on the CPU against PyTorch and ONNX Runtime, the CUDA kernel through
nvcc, the ONNX rewrite to the plugin node, and (TensorRT only) loading the library and running it.

The plugin classes themselves are UNVERIFIED ON HARDWARE here: no TensorRT, no GPU.
"""
import ctypes
import os
import shutil
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from defectrt.errors import UserInputError
from defectrt.export import plugins
from defectrt.export.plugins import (
    PLUGIN_DOMAIN, PLUGIN_NAME, PLUGIN_NAMESPACE, build_host_library, find_nvcc, host_gridsample,
    nvcc_compile_check, plugin_node_attrs, replace_gridsample_with_plugin,
)

needs_gxx = pytest.mark.skipif(plugins.find_cxx() is None, reason="g++ (or $CXX) not found: cannot build the host library")
NVCC = find_nvcc()
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not found (PATH, $CUDA_HOME, /usr/local/cuda*/bin)")


def _has_tensorrt():
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


needs_tensorrt = pytest.mark.skipif(not _has_tensorrt(), reason="TensorRT not installed: unverified on hardware")

ATOL = 1e-5


@pytest.fixture(scope="module")
def host_lib(tmp_path_factory):
    if plugins.find_cxx() is None:
        pytest.skip("g++ (or $CXX) not found: cannot build the host library")
    return build_host_library(str(tmp_path_factory.mktemp("hostlib")))


def _torch_reference(x, g):
    torch = pytest.importorskip("torch")
    return torch.nn.functional.grid_sample(
        torch.from_numpy(x), torch.from_numpy(g), mode="bilinear", padding_mode="border", align_corners=False,
    ).numpy()


def _grid(rng, n, ho, wo, low=-1.5, high=1.5):
    """Uniform grid with exact edges (+-1, 0) and points far outside [-1, 1] mixed in."""
    g = rng.uniform(low, high, size=(n, ho, wo, 2)).astype(np.float32)
    flat = g.reshape(-1)
    specials = np.array([-1.0, 1.0, 0.0, -1.0, 1.0, -3.0, 7.5, -1e3, 1e3], dtype=np.float32)
    idx = rng.choice(flat.size, size=min(flat.size, 3 * len(specials)), replace=False)
    flat[idx] = np.resize(specials, idx.size)
    return g


SHAPES = [  # N, C, H, W, Ho, Wo
    (1, 1, 1, 1, 3, 5),       # a single pixel: everything samples it
    (1, 3, 1, 7, 2, 9),       # one row
    (2, 3, 7, 9, 5, 4),
    (2, 4, 16, 16, 32, 32),   # DySample-like: 2x upsampling grid
    (3, 2, 13, 1, 6, 3),      # one column
    (1, 8, 20, 30, 40, 60),
]
_MAX_DIFF = []


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("grid_range", [(-1.5, 1.5), (-1.0, 1.0), (-4.0, 4.0)], ids=["1.5", "1.0", "4.0"])
def test_host_math_matches_torch(host_lib, shape, grid_range):
    n, c, h, w, ho, wo = shape
    rng = np.random.default_rng(sum(shape) + int(10 * grid_range[1]))
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    g = _grid(rng, n, ho, wo, *grid_range)
    out = host_gridsample(x, g, library=host_lib)
    ref = _torch_reference(x, g)
    assert out.shape == ref.shape == (n, c, ho, wo)
    diff = float(np.abs(out - ref).max())
    _MAX_DIFF.append(diff)
    assert diff <= ATOL, "max abs diff {} > {}".format(diff, ATOL)


def test_host_math_report_max_diff(host_lib):
    """Runs after the parametrised comparisons (file order): prints the worst difference seen."""
    if not _MAX_DIFF:
        pytest.skip("no comparison ran")
    print("\nDrtGridSample host vs torch.grid_sample: max abs diff {:.3e} over {} cases".format(
        max(_MAX_DIFF), len(_MAX_DIFF)))
    assert max(_MAX_DIFF) <= ATOL


def _exact(x, g):
    """The op in float64 straight from its definition (numpy, vectorised)."""
    x, g = x.astype(np.float64), g.astype(np.float64)
    n, c, h, w = x.shape
    px = np.clip(((g[..., 0] + 1) * w - 1) / 2, 0, w - 1)
    py = np.clip(((g[..., 1] + 1) * h - 1) / 2, 0, h - 1)
    x0, y0 = np.floor(px).astype(int), np.floor(py).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    wx, wy = px - x0, py - y0
    out = np.empty((n, c) + g.shape[1:3])
    for b in range(n):
        v = x[b]
        out[b] = ((1 - wy[b]) * ((1 - wx[b]) * v[:, y0[b], x0[b]] + wx[b] * v[:, y0[b], x1[b]])
                  + wy[b] * ((1 - wx[b]) * v[:, y1[b], x0[b]] + wx[b] * v[:, y1[b], x1[b]]))
    return out


@pytest.mark.parametrize("shape", SHAPES[2:], ids=lambda s: "x".join(map(str, s)))
def test_host_math_as_accurate_as_torch(host_lib, shape):
    """Against a float64 reference, on larger values (x3): the FP32 host math errs no more than PyTorch does.

    (Both are FP32; their difference from each other grows with the values' scale, which is why the
    1e-5 comparison above uses unit-scale inputs.)
    """
    n, c, h, w, ho, wo = shape
    rng = np.random.default_rng(7 + sum(shape))
    x = rng.standard_normal((n, c, h, w)).astype(np.float32) * 3
    g = _grid(rng, n, ho, wo, -1.5, 1.5)
    exact = _exact(x, g)
    host_err = np.abs(host_gridsample(x, g, library=host_lib) - exact).max()
    torch_err = np.abs(_torch_reference(x, g) - exact).max()
    assert host_err <= 1.25 * torch_err + 1e-6, (host_err, torch_err)
    assert host_err <= 1e-5 * np.abs(x).max()


def test_host_math_by_hand(host_lib):
    """Values computed from the definition, without PyTorch: edges, centre, clamping, interpolation."""
    x = np.arange(12, dtype=np.float32).reshape(1, 1, 3, 4)  # rows 0..3, 4..7, 8..11
    pts = [
        ((-1.0, -1.0), 0.0),    # pixel (-0.5, -0.5) -> clamped to (0, 0)
        ((1.0, 1.0), 11.0),     # pixel (3.5, 2.5) -> clamped to (3, 2)
        ((-5.0, 0.0), 4.0),     # far left, middle row (y pixel 1.0) -> border value x[1, 0]
        ((0.0, 0.0), 5.5),      # centre: x pixel 1.5, y pixel 1.0 -> (5 + 6) / 2
        ((0.25, -1.0), 2.0),    # x pixel ((1.25)*4-1)/2 = 2.0, y clamped to 0 -> x[0, 2]
        ((-0.5, 1.0 / 3.0), 6.5),  # x pixel 0.5, y pixel 1.5 -> mean of 4, 5, 8, 9
    ]
    g = np.array([[p for p, _ in pts]], dtype=np.float32).reshape(1, 1, len(pts), 2)
    out = host_gridsample(x, g, library=host_lib).reshape(-1)
    np.testing.assert_allclose(out, [v for _, v in pts], atol=1e-5)


def test_host_edges_never_read_past_the_border(host_lib):
    """At the right / bottom edge the second neighbour has weight 0 and must not be read at all: NaNs just
    past the edge (the next row's first pixel, the next channel) must not leak in (0 * NaN = NaN)."""
    x = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    x[0, 0, 1:, 0] = np.nan     # first pixel of rows 1, 2: "one past" the end of rows 0, 1
    x[0, 1] = np.nan            # the plane after channel 0: "one past" its last row
    g = np.array([[[[1.0, -1.0], [1.0, 1.0], [5.0, 5.0], [1.0, -0.5]]]], dtype=np.float32)
    out = host_gridsample(x, g, library=host_lib)[0, 0, 0]
    # (3, 0) -> x[0, 3] = 3; (3, 2) -> 11; clamped (3, 2) -> 11; (3, 0.25) -> 3 + 0.25 * (7 - 3) = 4
    np.testing.assert_allclose(out, [3.0, 11.0, 11.0, 4.0], atol=1e-6)
    np.testing.assert_allclose(out, _torch_reference(x, g)[0, 0, 0], atol=1e-6)


def test_host_matches_onnxruntime_gridsample(host_lib):
    """A second, independent reference: ONNX Runtime's own GridSample (border, bilinear, align_corners=0)."""
    import onnxruntime as ort

    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 9, 11)).astype(np.float32)
    g = _grid(rng, 2, 18, 22)
    model = _gridsample_model(x.shape, g.shape)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {"X": x, "grid": g})[0]
    out = np.maximum(host_gridsample(x, g, library=host_lib), 0)  # the test model ends in Relu
    np.testing.assert_allclose(out, ref, atol=ATOL, rtol=0)
    assert (ref > 0).mean() > 0.3  # the comparison is not vacuous


def test_host_rejects_bad_shapes(host_lib):
    x = np.zeros((1, 2, 4, 4), np.float32)
    with pytest.raises(UserInputError, match="grid"):
        host_gridsample(x, np.zeros((1, 3, 3, 3), np.float32), library=host_lib)  # last dim 3
    with pytest.raises(UserInputError):
        host_gridsample(x, np.zeros((2, 3, 3, 2), np.float32), library=host_lib)  # batch differs
    with pytest.raises(UserInputError):
        host_gridsample(x[0], np.zeros((1, 3, 3, 2), np.float32), library=host_lib)  # 3-D input


def test_host_library_c_abi_checks_arguments(host_lib):
    lib = ctypes.CDLL(host_lib)
    fn = lib.drt_gridsample_host_f32
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int] * 6
    buf = (ctypes.c_float * 8)()
    assert fn(None, buf, buf, 1, 1, 1, 1, 1, 1) == 1
    assert fn(buf, buf, buf, 1, 1, 0, 1, 1, 1) == 2
    assert fn(buf, buf, buf, 1, 1, 1, 1, 1, 1) == 0


@needs_gxx
def test_build_host_library_is_cached_and_atomic(tmp_path):
    path = build_host_library(str(tmp_path))
    mtime = os.path.getmtime(path)
    assert build_host_library(str(tmp_path)) == path
    assert os.path.getmtime(path) == mtime  # reused, not rebuilt
    assert [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")] == []
    rebuilt = build_host_library(str(tmp_path), force=True)
    assert rebuilt == path and os.path.isfile(path)
    assert [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")] == []


def test_build_host_library_reports_compiler_errors(tmp_path, monkeypatch):
    """A failing compiler leaves no library and no temporary file, and says what failed."""
    fake = tmp_path / "fake-cxx"
    fake.write_text("#!/bin/sh\necho 'boom: broken compiler' >&2\nexit 3\n")
    fake.chmod(0o755)
    out = tmp_path / "out"
    with pytest.raises(UserInputError, match="boom: broken compiler"):
        build_host_library(str(out), cxx=str(fake))
    assert os.listdir(out) == []


# ------------------------------------------------------------------------------------------- nvcc

@needs_nvcc
def test_nvcc_compiles_kernel_for_sm87(tmp_path):
    obj = nvcc_compile_check(str(tmp_path), archs=("87",))
    assert os.path.isfile(obj) and os.path.getsize(obj) > 0
    nm = shutil.which("nm")
    if nm:
        syms = subprocess.run([nm, "-C", obj], capture_output=True, text=True, check=True).stdout
        assert "drtGridSampleKernel<float>" in syms
        assert "drtGridSampleKernel<__half>" in syms
        assert any(" T drtGridSampleLaunch(" in line for line in syms.splitlines())  # exported launcher


def test_find_nvcc_looks_under_usr_local_cuda(monkeypatch):
    """JetPack does not put /usr/local/cuda/bin on PATH: find_nvcc must still find it there."""
    import glob

    found = [p for p in glob.glob("/usr/local/cuda*/bin/nvcc") if os.access(p, os.X_OK)]
    if not found:
        pytest.skip("no /usr/local/cuda*/bin/nvcc on this machine")
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    assert find_nvcc() in found


@needs_nvcc
def test_nvcc_check_refuses_unknown_arch(tmp_path):
    supported = plugins.nvcc_supported_archs(NVCC)
    if not supported:
        pytest.skip("this nvcc does not list its architectures")
    with pytest.raises(UserInputError, match="sm_9999"):
        nvcc_compile_check(str(tmp_path), archs=("9999",))


# ------------------------------------------------------------------------------- ONNX rewrite

def _gridsample_model(x_shape, g_shape, opset=17, nodes=None, **attrs):
    """X, grid -> GridSample (DySample-style name) -> Relu -> Y (the Relu checks the wiring is kept)."""
    if not attrs and nodes is None:
        attrs = dict(align_corners=0, mode="bilinear", padding_mode="border")
    out_shape = [x_shape[0], x_shape[1], g_shape[1], g_shape[2]]
    if nodes is None:
        nodes = [
            helper.make_node("GridSample", ["X", "grid"], ["S"], name="/model.11/sampler/GridSample", **attrs),
            helper.make_node("Relu", ["S"], ["Y"], name="/model.11/Relu"),
        ]
    graph = helper.make_graph(
        nodes, "gs",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(x_shape)),
         helper.make_tensor_value_info("grid", TensorProto.FLOAT, list(g_shape))],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, out_shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def _attrs(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


@pytest.mark.parametrize("target, version", [
    ("8.0", "1"), ("8.2", "1"), ("8.5.2", "1"), ("8.6.2", "1"),
    ("10.0", "2"), ("10.3", "2"), ("10.13.0.35", "2"), ("11.0", "2"), ((10, 16), "2"),
    (None, "1"), ("", "1"),
])
def test_plugin_node_attrs_selects_interface(target, version):
    op, attrs = plugin_node_attrs(target)
    assert op == PLUGIN_NAME == "DrtGridSample"
    assert attrs == {"plugin_version": version, "plugin_namespace": PLUGIN_NAMESPACE}
    assert PLUGIN_NAMESPACE == "defectrt"


def test_plugin_interfaces_table_agrees_with_attrs():
    """What the ONNX checker reads: each version's interface, and the version chosen per target needs it."""
    table = plugins.PLUGIN_INTERFACES
    assert table[(PLUGIN_NAME, "1")]["interface"] == "IPluginV2DynamicExt"
    assert table[(PLUGIN_NAME, "2")]["interface"] == "IPluginV3"
    for target in ("8.0", "8.6", "10.0", "10.3", "11.0"):
        _, attrs = plugin_node_attrs(target)
        need = table[(PLUGIN_NAME, attrs["plugin_version"])]["min_trt"]
        assert tuple(map(int, need.split("."))) <= tuple(map(int, target.split(".")))


@pytest.mark.parametrize("target", ["7.1", "6"])
def test_plugin_node_attrs_rejects_old_tensorrt(target):
    with pytest.raises(UserInputError, match="8.0"):
        plugin_node_attrs(target)


def test_plugin_node_attrs_rejects_garbage():
    with pytest.raises(UserInputError, match="TensorRT version"):
        plugin_node_attrs("latest")


@pytest.mark.parametrize("target, version", [("8.2", "1"), ("10.3", "2")])
def test_replace_gridsample_with_plugin(target, version):
    x_shape, g_shape = (1, 4, 8, 8), (1, 16, 16, 2)
    nodes = [
        helper.make_node("GridSample", ["X", "grid"], ["S1"], name="/model.11/sampler/GridSample",
                         align_corners=0, mode="bilinear", padding_mode="border"),
        helper.make_node("GridSample", ["X", "grid"], ["S2"], name="/model.14/sampler/GridSample",
                         padding_mode="border"),  # defaults: bilinear, align_corners=0
        helper.make_node("Add", ["S1", "S2"], ["Y"], name="/model.15/Add"),
    ]
    model = _gridsample_model(x_shape, g_shape, nodes=nodes)
    before = [(n.name, list(n.input), list(n.output)) for n in model.graph.node]

    result = replace_gridsample_with_plugin(model, target)

    assert result is model
    after = [(n.name, list(n.input), list(n.output)) for n in model.graph.node]
    assert after == before  # names and wiring untouched
    plugin_nodes = [n for n in model.graph.node if n.op_type == PLUGIN_NAME]
    assert [n.name for n in plugin_nodes] == ["/model.11/sampler/GridSample", "/model.14/sampler/GridSample"]
    assert not any(n.op_type == "GridSample" for n in model.graph.node)
    for n in plugin_nodes:
        assert n.domain == PLUGIN_DOMAIN == "defectrt"
        assert _attrs(n) == {
            "plugin_version": version.encode(), "plugin_namespace": b"defectrt",
            "align_corners": 0, "mode": b"bilinear", "padding_mode": b"border",
        }
    add = model.graph.node[2]
    assert (add.op_type, add.domain, _attrs(add)) == ("Add", "", {})
    domains = {imp.domain: imp.version for imp in model.opset_import}
    assert domains == {"": 17, "defectrt": 1}
    onnx.checker.check_model(model)  # a custom-domain node declared in opset_import is a valid model
    # a round trip through bytes keeps it
    again = onnx.load_from_string(model.SerializeToString())
    assert [n.op_type for n in again.graph.node] == [PLUGIN_NAME, PLUGIN_NAME, "Add"]
    # rewriting twice is harmless: nothing left to rewrite, opset not duplicated
    replace_gridsample_with_plugin(model, target)
    assert [imp.domain for imp in model.opset_import].count("defectrt") == 1


def test_replace_accepts_opset20_linear_mode():
    model = _gridsample_model((1, 2, 4, 4), (1, 8, 8, 2), opset=20, align_corners=0, mode="linear",
                              padding_mode="border")
    replace_gridsample_with_plugin(model, "10.3")
    node = model.graph.node[0]
    assert node.op_type == PLUGIN_NAME and _attrs(node)["mode"] == b"bilinear"


@pytest.mark.parametrize("attrs, message", [
    ({}, "padding_mode='zeros'"),  # ONNX's default padding is zeros
    ({"padding_mode": "zeros"}, "padding_mode='zeros'"),
    ({"padding_mode": "reflection"}, "padding_mode='reflection'"),
    ({"padding_mode": "border", "mode": "nearest"}, "mode='nearest'"),
    ({"padding_mode": "border", "align_corners": 1}, "align_corners=1"),
])
def test_replace_refuses_what_the_plugin_does_not_implement(attrs, message):
    good = helper.make_node("GridSample", ["X", "grid"], ["S1"], name="/good", padding_mode="border")
    bad = helper.make_node("GridSample", ["X", "grid"], ["S2"], name="/bad/GridSample", **attrs)
    add = helper.make_node("Add", ["S1", "S2"], ["Y"])
    model = _gridsample_model((1, 2, 4, 4), (1, 8, 8, 2), nodes=[good, bad, add])
    snapshot = model.SerializeToString()
    with pytest.raises(UserInputError) as info:
        replace_gridsample_with_plugin(model, "8.2")
    assert message in str(info.value) and "/bad/GridSample" in str(info.value)
    assert model.SerializeToString() == snapshot  # all or nothing: the good node was not rewritten either


def test_replace_without_gridsample_is_a_no_op():
    nodes = [helper.make_node("Relu", ["X"], ["Y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    snapshot = model.SerializeToString()
    replace_gridsample_with_plugin(model, "10.3")
    assert model.SerializeToString() == snapshot


def test_sources_marked_unverified():
    src = plugins.plugin_source_dir()
    for name in ("gridsample_plugin_v2.h", "gridsample_plugin_v3.h", "gridsample_plugin_common.h",
                 "gridsample_plugin_register.cpp", "gridsample_kernel.cu"):
        with open(os.path.join(src, name)) as f:
            assert "UNVERIFIED ON HARDWARE" in f.read(), name
    with open(os.path.join(os.path.dirname(src), "README.md")) as f:
        assert "unverified on hardware" in f.read().lower()


# ------------------------------------------------------------------------ TensorRT (on the device)

@pytest.fixture(scope="module")
def plugin_library(tmp_path_factory):
    if not _has_tensorrt():
        pytest.skip("TensorRT not installed: unverified on hardware")
    from defectrt.runtime.tensorrt_backend import gpu_identity

    cc = gpu_identity().get("compute_capability", "unknown")
    archs = [cc.replace(".", "")] if cc != "unknown" else None
    return plugins.build_plugin_library(str(tmp_path_factory.mktemp("trtplugins")), cuda_architectures=archs)


def _trt_version(trt):
    return tuple(int(v) for v in trt.__version__.split(".")[:2])


@pytest.mark.tensorrt
@needs_tensorrt
def test_plugin_library_registers_creators(plugin_library):
    import tensorrt as trt

    ctypes.CDLL(plugin_library)
    registry = trt.get_plugin_registry()
    version = _trt_version(trt)
    if version >= (10, 0):
        assert registry.get_creator(PLUGIN_NAME, "2", PLUGIN_NAMESPACE) is not None
        assert registry.get_creator(PLUGIN_NAME, "1", PLUGIN_NAMESPACE) is not None
    else:
        assert registry.get_plugin_creator(PLUGIN_NAME, "1", PLUGIN_NAMESPACE) is not None


@pytest.mark.tensorrt
@needs_tensorrt
@pytest.mark.parametrize("interface", ["target", "v2"])
def test_plugin_network_matches_host(plugin_library, host_lib, interface):
    """Parse a one-node ONNX with the plugin node, build, run, and compare with the CPU implementation."""
    import tensorrt as trt

    if _trt_version(trt) < (8, 5):
        pytest.skip("this check uses Polygraphy's loaders, which need TensorRT 8.5+")
    from polygraphy.backend.trt import CreateConfig, EngineFromNetwork, NetworkFromOnnxBytes, TrtRunner

    ctypes.CDLL(plugin_library)
    trt.init_libnvinfer_plugins(trt.Logger(trt.Logger.WARNING), "")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 10, 12)).astype(np.float32)
    g = _grid(rng, 2, 20, 24)
    model = _gridsample_model(x.shape, g.shape)
    replace_gridsample_with_plugin(model, trt.__version__ if interface == "target" else "8.6")
    engine = EngineFromNetwork(NetworkFromOnnxBytes(model.SerializeToString()), config=CreateConfig())
    with TrtRunner(engine) as runner:
        out = runner.infer({"X": x, "grid": g})["Y"]
    ref = np.maximum(host_gridsample(x, g, library=host_lib), 0)  # the model ends in Relu
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=0)
