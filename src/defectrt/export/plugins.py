"""Our TensorRT plugin library (plugins/): the DySample grid-sample plugin `DrtGridSample`.

No torch and no TensorRT at import. What lives here:

- `plugin_node_attrs(target_trt)` and `replace_gridsample_with_plugin(model, target_trt)`: the ONNX side of
  `--grid-sample plugin`. Every native GridSample node (inputs X, grid) becomes a `DrtGridSample` node in
  the `defectrt` domain with the same name, inputs and outputs, and the string attributes TensorRT's ONNX
  parser uses to find a plugin creator: `plugin_namespace` "defectrt" and `plugin_version`, which picks the
  plugin interface for the target TensorRT:

      plugin_version "1" -> IPluginV2DynamicExt (TensorRT 8.x; deprecated in 10.x, still present in 11.x)
      plugin_version "2" -> IPluginV3 (IPluginV3OneCore/Build/Runtime, TensorRT 10.0 and later)

  Target 8.x gets "1", 10.x and later get "2", an unknown target gets "1" (the one interface every
  TensorRT from 8.0 to 11.x accepts). The library registers "1" on every TensorRT it is built for and
  "2" where it is built against TensorRT 10 or later, so an engine build picks exactly one interface.
- `build_host_library` / `host_gridsample`: the plugin's sampling math (plugins/gridsample/gridsample_math.h)
  compiled for the CPU with g++ and called through ctypes; the tests compare it with PyTorch.
- `nvcc_compile_check`: compiles the CUDA kernel with nvcc (no GPU needed) for a list of architectures.
- `build_plugin_library`: configures and builds libdefectrt_plugins with CMake (needs CUDA and TensorRT).

UNVERIFIED ON HARDWARE: the plugin classes (gridsample_plugin_v2/v3.cpp) have never been compiled against
TensorRT or run on a GPU on the machines this project is developed on; see plugins/README.md.
"""
from __future__ import annotations

import ctypes
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading

from defectrt import trt_compat
from defectrt.errors import UserInputError

PLUGIN_NAME = "DrtGridSample"
PLUGIN_NAMESPACE = "defectrt"
PLUGIN_DOMAIN = "defectrt"          # ONNX domain of the rewritten node (declared in opset_import)
PLUGIN_DOMAIN_VERSION = 1
PLUGIN_VERSION_V2 = "1"             # IPluginV2DynamicExt
PLUGIN_VERSION_V3 = "2"             # IPluginV3
# The only configuration the plugin implements; written onto every rewritten node so that the plugin can
# reject a node that asks for anything else.
PLUGIN_FIELDS = {"align_corners": 0, "mode": "bilinear", "padding_mode": "border"}
# What each version needs, in the form defectrt.export.check reads (trt_support.json "plugins" rows).
PLUGIN_INTERFACES = {
    (PLUGIN_NAME, PLUGIN_VERSION_V2): {"interface": "IPluginV2DynamicExt", "min_trt": "8.0", "builtin": False},
    (PLUGIN_NAME, PLUGIN_VERSION_V3): {"interface": "IPluginV3", "min_trt": "10.0", "builtin": False},
}

HOST_SOURCES = ("gridsample_host.cpp", "gridsample_math.h")
KERNEL_SOURCES = ("gridsample_kernel.cu", "gridsample_kernel.h", "gridsample_math.h")
DEFAULT_CHECK_ARCHS = ("87",)

_LOCK = threading.Lock()
_LIBS = {}


# ----------------------------------------------------------------------------------------- sources

def plugin_source_dir():
    """plugins/gridsample of this checkout (or $DEFECTRT_PLUGIN_SRC). The sources are not in the wheel."""
    env = os.environ.get("DEFECTRT_PLUGIN_SRC")
    candidates = [env] if env else []
    here = os.path.dirname(os.path.abspath(__file__))
    candidates.append(os.path.join(here, "..", "..", "..", "plugins", "gridsample"))
    for cand in candidates:
        if cand and os.path.isfile(os.path.join(cand, "gridsample_math.h")):
            return os.path.normpath(cand)
    raise UserInputError(
        "the plugin sources (plugins/gridsample) were not found; run from a defectrt source checkout "
        "or set DEFECTRT_PLUGIN_SRC to the plugins/gridsample folder"
    )


def _sources_digest(src_dir, names, extra=""):
    h = hashlib.sha256(extra.encode())
    for name in names:
        with open(os.path.join(src_dir, name), "rb") as f:
            h.update(name.encode() + b"\0" + f.read())
    return h.hexdigest()[:16]


def default_cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "defectrt", "plugins")


def _shared_suffix():
    if sys.platform.startswith("win"):
        return ".dll"
    return ".dylib" if sys.platform == "darwin" else ".so"


def _run(cmd, what, timeout=600, cwd=None):
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except FileNotFoundError:
        raise UserInputError("{}: {} not found".format(what, cmd[0]))
    except subprocess.TimeoutExpired:
        raise UserInputError("{}: {} took longer than {} s".format(what, os.path.basename(cmd[0]), timeout))
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-25:]
        raise UserInputError("{} failed (exit {}):\n{}".format(what, proc.returncode, "\n".join(tail)))
    return proc


# ------------------------------------------------------------------------------- host (CPU) build

def find_cxx():
    """A C++ compiler: $CXX, else g++ on PATH, else None."""
    for cand in (os.environ.get("CXX"), "g++"):
        if cand:
            path = shutil.which(cand)
            if path:
                return path
    return None


def build_host_library(out_dir=None, cxx=None, force=False):
    """Compile plugins/gridsample/gridsample_host.cpp into a shared library; return its path.

    The file name carries a digest of the sources and the compiler, so a cached build is reused only
    while it matches them. The library is written under a temporary name and renamed into place, so
    concurrent builds and interrupted builds never leave a half-written library behind.
    """
    cxx = cxx or find_cxx()
    if cxx is None:
        raise UserInputError("no C++ compiler found (g++); install one or set CXX")
    src_dir = plugin_source_dir()
    out_dir = os.path.abspath(out_dir or default_cache_dir())
    os.makedirs(out_dir, exist_ok=True)
    digest = _sources_digest(src_dir, HOST_SOURCES, extra=os.path.realpath(cxx))
    path = os.path.join(out_dir, "libdrt_gridsample_host-{}{}".format(digest, _shared_suffix()))
    if os.path.isfile(path) and not force:
        return path
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=_shared_suffix(), dir=out_dir)
    os.close(fd)
    try:
        cmd = [cxx, "-O2", "-shared", "-fPIC", "-std=c++11", "-I", src_dir,
               os.path.join(src_dir, "gridsample_host.cpp"), "-o", tmp]
        _run(cmd, "compiling gridsample_host.cpp", timeout=300)
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _load_host(path):
    with _LOCK:
        lib = _LIBS.get(path)
        if lib is None:
            lib = ctypes.CDLL(path)
            fn = lib.drt_gridsample_host_f32
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p] + [ctypes.c_int] * 6
            lib.drt_gridsample_host_abi_version.restype = ctypes.c_int
            if lib.drt_gridsample_host_abi_version() != 1:
                raise UserInputError("{}: unexpected host library ABI version".format(path))
            _LIBS[path] = lib
        return lib


def host_gridsample(input, grid, library=None):
    """The plugin's op on the CPU: bilinear, border padding, align_corners=False.

    input (N, C, H, W), grid (N, Ho, Wo, 2) normalised to [-1, 1] -> (N, C, Ho, Wo) float32.
    Computed in FP32 (inputs of other dtypes are converted).
    """
    import numpy as np

    x = np.ascontiguousarray(input, dtype=np.float32)
    g = np.ascontiguousarray(grid, dtype=np.float32)
    if x.ndim != 4 or g.ndim != 4 or g.shape[3] != 2 or g.shape[0] != x.shape[0]:
        raise UserInputError(
            "grid sample: expected input (N, C, H, W) and grid (N, Ho, Wo, 2), got {} and {}".format(x.shape, g.shape))
    n, c, h, w = (int(v) for v in x.shape)
    ho, wo = int(g.shape[1]), int(g.shape[2])
    out = np.empty((n, c, ho, wo), dtype=np.float32)
    if out.size == 0:
        return out
    if h == 0 or w == 0:
        raise UserInputError("grid sample: the input has an empty spatial size {}x{}".format(h, w))
    lib = _load_host(library or build_host_library())
    rc = lib.drt_gridsample_host_f32(x.ctypes.data, g.ctypes.data, out.ctypes.data, n, c, h, w, ho, wo)
    if rc != 0:
        raise UserInputError("grid sample host library returned error {}".format(rc))
    return out


# ------------------------------------------------------------------------------------------ CUDA

def _cuda_version_key(path):
    m = re.search(r"cuda-(\d+)\.(\d+)", path)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def find_nvcc():
    """nvcc on PATH, else under $CUDA_HOME / $CUDA_PATH, else the newest /usr/local/cuda*/bin/nvcc; or None."""
    path = shutil.which("nvcc")
    if path:
        return path
    for env in ("CUDA_HOME", "CUDA_PATH"):
        root = os.environ.get(env)
        if root:
            cand = os.path.join(root, "bin", "nvcc")
            if os.path.isfile(cand) and os.access(cand, os.X_OK):
                return cand
    found = [p for p in glob.glob("/usr/local/cuda*/bin/nvcc") if os.access(p, os.X_OK)]
    if not found:
        return None
    found.sort(key=lambda p: (os.path.basename(os.path.dirname(os.path.dirname(p))) == "cuda",
                              _cuda_version_key(p)), reverse=True)
    return found[0]


def nvcc_supported_archs(nvcc):
    """The compute capabilities this nvcc can compile for, e.g. ['75', '86', '87'] (empty if it cannot say)."""
    try:
        out = subprocess.run([nvcc, "--list-gpu-code"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return sorted(set(re.findall(r"sm_(\d+[a-z]?)", out)), key=lambda s: int(re.match(r"\d+", s).group()))


def nvcc_compile_check(out_dir, archs=DEFAULT_CHECK_ARCHS, nvcc=None, timeout=600):
    """Compile gridsample_kernel.cu with `nvcc -c` for `archs` (e.g. ("87",) or ("75", "86")); return the .o path.

    Needs nvcc but no GPU. Proves the kernel and its templates (float, __half) compile for those
    architectures; it does not run them.
    """
    nvcc = nvcc or find_nvcc()
    if nvcc is None:
        raise UserInputError("nvcc not found (PATH, $CUDA_HOME, /usr/local/cuda*/bin)")
    archs = [str(a).replace("sm_", "").replace(".", "") for a in archs]
    if not archs:
        raise UserInputError("nvcc_compile_check: no architecture given")
    supported = nvcc_supported_archs(nvcc)
    missing = [a for a in archs if supported and a not in supported]
    if missing:
        raise UserInputError("{} cannot compile for sm_{}; it supports sm_{}".format(
            nvcc, ", sm_".join(missing), ", sm_".join(supported)))
    src_dir = plugin_source_dir()
    os.makedirs(out_dir, exist_ok=True)
    obj = os.path.join(os.path.abspath(out_dir), "gridsample_kernel_sm{}.o".format("_".join(archs)))
    cmd = [nvcc, "-c", "-O2", "-std=c++14", "-Xcompiler", "-fPIC", "-I", src_dir]
    for a in archs:
        cmd += ["-gencode", "arch=compute_{0},code=sm_{0}".format(a)]
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".o", dir=os.path.dirname(obj))
    os.close(fd)
    try:
        _run(cmd + [os.path.join(src_dir, "gridsample_kernel.cu"), "-o", tmp], "nvcc gridsample_kernel.cu",
             timeout=timeout)
        os.replace(tmp, obj)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return obj


def build_plugin_library(build_dir, tensorrt_root=None, cuda_architectures=None, jobs=2, timeout=1800):
    """Configure and build libdefectrt_plugins with CMake (needs CUDA and TensorRT); return the library path.

    UNVERIFIED ON HARDWARE: no machine this is developed on has TensorRT.
    """
    cmake = shutil.which("cmake")
    if cmake is None:
        raise UserInputError("cmake not found; install CMake 3.18 or newer (pip install cmake)")
    src = os.path.dirname(plugin_source_dir())  # plugins/
    os.makedirs(build_dir, exist_ok=True)
    cfg = [cmake, "-S", src, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release"]
    if tensorrt_root:
        cfg.append("-DTENSORRT_ROOT={}".format(tensorrt_root))
    if cuda_architectures:
        cfg.append("-DCMAKE_CUDA_ARCHITECTURES={}".format(";".join(str(a) for a in cuda_architectures)))
    _run(cfg, "cmake configure of plugins/", timeout=timeout)
    _run([cmake, "--build", build_dir, "--config", "Release", "--target", "defectrt_plugins", "-j", str(jobs)],
         "cmake build of defectrt_plugins", timeout=timeout)
    names = ("libdefectrt_plugins.so", "defectrt_plugins.dll", "libdefectrt_plugins.dylib")
    for root, _dirs, files in os.walk(build_dir):
        for name in names:
            if name in files:
                return os.path.join(root, name)
    raise UserInputError("the build finished but no defectrt_plugins library was found under {}".format(build_dir))


# ------------------------------------------------------------------------------------- ONNX side

def _trt_version(target_trt):
    if target_trt is None or target_trt == "":
        return None
    return trt_compat.parse_version(target_trt, "--target-trt")


def plugin_node_attrs(target_trt=None):
    """-> (op_type, {"plugin_version", "plugin_namespace"}) of the grid-sample plugin node for `target_trt`.

    8.x -> "1" (IPluginV2DynamicExt); 10.x and later -> "2" (IPluginV3); None (unknown) -> "1", which every
    TensorRT from 8.0 to 11.x loads. TensorRT 7 and older cannot take the plugin (UserInputError).
    """
    version = _trt_version(target_trt)
    if version is None:
        plugin_version = PLUGIN_VERSION_V2
    elif not trt_compat.has_at_least(version, trt_compat.OLDEST):
        raise UserInputError(
            "--grid-sample plugin needs TensorRT 8.0 or newer; --target-trt {} is older".format(target_trt))
    elif trt_compat.has(version, "plugin_v3"):
        plugin_version = PLUGIN_VERSION_V3
    else:
        plugin_version = PLUGIN_VERSION_V2
    return PLUGIN_NAME, {"plugin_version": plugin_version, "plugin_namespace": PLUGIN_NAMESPACE}


def _check_gridsample(node, opset):
    """Raise unless the native GridSample node asks for exactly what the plugin implements."""
    from onnx import helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    where = "GridSample node {!r}".format(node.name or node.output[0])

    def text(value):
        return value.decode() if isinstance(value, bytes) else str(value)

    mode = text(attrs.get("mode", "linear" if opset >= 20 else "bilinear"))
    padding = text(attrs.get("padding_mode", "zeros"))
    align = int(attrs.get("align_corners", 0))
    problems = []
    if mode not in ("bilinear", "linear"):
        problems.append("mode={!r} (the plugin is bilinear only)".format(mode))
    if padding != "border":
        problems.append("padding_mode={!r} (the plugin implements border only)".format(padding))
    if align != 0:
        problems.append("align_corners={} (the plugin implements align_corners=0 only)".format(align))
    extra = sorted(set(attrs) - {"mode", "padding_mode", "align_corners"})
    if extra:
        problems.append("unknown attributes {}".format(extra))
    if len(node.input) != 2 or len(node.output) != 1:
        problems.append("{} inputs / {} outputs (expected X, grid -> Y)".format(len(node.input), len(node.output)))
    if problems:
        raise UserInputError("{} cannot become the {} plugin: {}; use --grid-sample native or lowered".format(
            where, PLUGIN_NAME, "; ".join(problems)))


def _graphs(graph):
    """`graph` and every subgraph (If / Loop / Scan bodies) in it."""
    from onnx import AttributeProto

    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == AttributeProto.GRAPH:
                yield from _graphs(attr.g)
            elif attr.type == AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _graphs(sub)


def gridsample_nodes(model):
    """The native ONNX GridSample nodes of `model` (subgraphs included)."""
    return [n for g in _graphs(model.graph) for n in g.node
            if n.op_type == "GridSample" and n.domain in ("", "ai.onnx")]


def replace_gridsample_with_plugin(onnx_model, target_trt=None):
    """Turn every native GridSample node into the DrtGridSample plugin node for `target_trt`, in place.

    Node names, inputs and outputs stay (so the DySample FP32 island, "/sampler/" in the name, is still
    found by the engine builder); op type becomes "DrtGridSample", domain "defectrt" (declared in
    opset_import), and the attributes become plugin_version / plugin_namespace (plugin_node_attrs) plus the
    explicit configuration align_corners=0, mode="bilinear", padding_mode="border" that the plugin checks.
    A GridSample asking for anything else (zeros padding, nearest, align_corners=1) raises UserInputError
    before anything is changed. Returns the model. The result runs in TensorRT only (with the plugin library
    loaded), not in ONNX Runtime.
    """
    from onnx import helper

    from defectrt.export.check import model_opset

    op_type, plugin_attrs = plugin_node_attrs(target_trt)
    opset = model_opset(onnx_model, default=0)
    nodes = gridsample_nodes(onnx_model)
    for node in nodes:  # validate all first: all or nothing
        _check_gridsample(node, opset)
    for node in nodes:
        node.op_type = op_type
        node.domain = PLUGIN_DOMAIN
        del node.attribute[:]
        fields = dict(PLUGIN_FIELDS)
        fields.update(plugin_attrs)
        for key in sorted(fields):
            node.attribute.append(helper.make_attribute(key, fields[key]))
    if nodes and not any(imp.domain == PLUGIN_DOMAIN for imp in onnx_model.opset_import):
        onnx_model.opset_import.append(helper.make_opsetid(PLUGIN_DOMAIN, PLUGIN_DOMAIN_VERSION))
    return onnx_model
