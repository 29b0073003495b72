"""`defectrt doctor`: what this machine has, and what of defectrt will work on it.

Has: Python, ONNX Runtime and its providers, TensorRT (version and API flavour from defectrt.trt_compat),
trtexec, CUDA runtime / driver, GPU and compute capability, Jetson model / L4T / JetPack, plugin
libraries (TensorRT's built-in libnvinfer_plugin, defectrt's own). Will work: one line per capability
with the reason and, where something is missing, what to do.

Device side: no torch, Python 3.8, never raises (what cannot be read is "unknown"). The TensorRT and GPU
findings are UNVERIFIED ON HARDWARE: this was written and tested (with fakes) on a machine without either.
"""
from __future__ import annotations

import ctypes.util
import glob
import os
import re
import shutil
import sys

from defectrt import trt_compat

UNKNOWN = "unknown"
# L4T (/etc/nv_tegra_release "# R35 (release), REVISION: 4.1") -> JetPack, from NVIDIA's JetPack archive.
JETPACK_BY_L4T = (("32.6", "4.6"), ("32.7", "4.6.x"), ("35.1", "5.0.2"), ("35.2", "5.1"), ("35.3", "5.1.1"),
                  ("35.4", "5.1.2"), ("35.5", "5.1.3"), ("35.6", "5.1.4"), ("36.2", "6.0 DP"), ("36.3", "6.0"),
                  ("36.4", "6.1 / 6.2"), ("38.", "7.x"))
PLUGIN_NAMES = ("libdefectrt_plugins.so", "defectrt_plugins.dll")


def jetpack_from_l4t(release_line):
    """'# R35 (release), REVISION: 4.1, ...' -> ('35.4.1', '5.1.2'), or (None, None)."""
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", release_line or "")
    if not m:
        return None, None
    l4t = "{}.{}".format(m.group(1), m.group(2))
    for prefix, jetpack in JETPACK_BY_L4T:
        if l4t.startswith(prefix):
            return l4t, jetpack
    return l4t, UNKNOWN


def find_plugins(search=None, environ=None):
    """defectrt plugin libraries in DEFECTRT_PLUGIN_PATH, the current folder and plugins/build*."""
    environ = os.environ if environ is None else environ
    folders = list(search or [])
    folders += [p for p in (environ.get("DEFECTRT_PLUGIN_PATH") or "").split(os.pathsep) if p]
    folders += [os.getcwd()] + glob.glob(os.path.join(os.getcwd(), "plugins", "build*"))
    found = []
    for folder in folders:
        for root, _dirs, files in os.walk(folder):
            found += [os.path.join(root, f) for f in files if f in PLUGIN_NAMES]
            if root.count(os.sep) - folder.count(os.sep) >= 2:
                _dirs[:] = []
    return sorted(set(found))


def _tensorrt(trt):
    if trt is None:
        return None
    version = getattr(trt, "__version__", UNKNOWN)
    try:
        flav = trt_compat.flavour(version)
    except Exception as exc:  # an unsupported (too old) TensorRT: say so, do not crash
        return {"version": version, "supported": False, "why": str(exc)}
    grid = None
    try:
        grid = trt_compat.parser_has_op(version, "GridSample")
    except Exception:
        pass
    return {"version": version, "supported": True, "io_api": flav.io_api,
            "strongly_typed": trt_compat.use_strongly_typed(flav), "precision_flags": flav.precision_flags,
            "parser_has_gridsample": grid, "plugin_interface": "IPluginV3" if flav.plugin_v3 else "IPluginV2DynamicExt"}


def collect(trt=None, environment=None, which=shutil.which, gpu=None, plugins=None, find_library=None):
    """The facts (a JSON-serialisable dict). Arguments exist for tests; by default everything is probed."""
    from defectrt.bench import environment as env_mod

    if trt is None:
        from defectrt.runtime.tensorrt_backend import import_tensorrt

        trt = import_tensorrt()
    env = environment if environment is not None else env_mod.collect()
    soft = env.get("software") or {}
    gpus = env.get("gpu")
    jetson = env.get("jetson") if isinstance(env.get("jetson"), dict) else {}
    if gpu is None:
        from defectrt.runtime.tensorrt_backend import gpu_identity

        gpu = gpu_identity()
    l4t, jetpack = jetpack_from_l4t(jetson.get("l4t_release")) if jetson.get("is_jetson") else (None, None)
    find_library = find_library or ctypes.util.find_library
    trtexec = which("trtexec") or next((p for p in ("/usr/src/tensorrt/bin/trtexec",) if os.path.isfile(p)), None)
    cuda = soft.get("cuda")
    return {
        "python": sys.version.split()[0],
        "onnxruntime": soft.get("onnxruntime"),
        "onnxruntime_providers": soft.get("onnxruntime_providers"),
        "tensorrt": _tensorrt(trt),
        "trtexec": trtexec,
        "cuda": cuda.get("version") if isinstance(cuda, dict) else cuda,
        "driver": gpus[0].get("driver_version") if isinstance(gpus, list) and gpus else UNKNOWN,
        "gpu": gpu.get("gpu_name", UNKNOWN),
        "compute_capability": gpu.get("compute_capability", UNKNOWN),
        "jetson": {"model": jetson.get("model"), "l4t": l4t, "jetpack": jetpack, "power_mode": jetson.get("power_mode")}
        if jetson.get("is_jetson") else None,
        "plugins": {"nvinfer_plugin": find_library("nvinfer_plugin"),
                    "defectrt": plugins if plugins is not None else find_plugins()},
    }


def will_work(facts):
    """-> [(what, ok, why / what to do)] for the main paths of defectrt on this machine."""
    out = []
    ort = facts.get("onnxruntime")
    ort_ok = ort not in (None, "absent", UNKNOWN)
    out.append(("ONNX Runtime (CPU) on any bundle", ort_ok,
                "onnxruntime {}".format(ort) if ort_ok else "pip install onnxruntime"))
    trt = facts.get("tensorrt")
    gpu_known = facts.get("gpu") not in (None, UNKNOWN)
    if not trt:
        how = ("JetPack's python3-libnvinfer" if facts.get("jetson") else "pip install 'defectrt[trt]' (desktops)")
        out.append(("TensorRT engines from Python", False, "TensorRT is not importable here: " + how +
                    (", or run a bundle's build_engine.sh with trtexec ({})".format(facts["trtexec"]) if facts.get("trtexec") else "")))
    elif not trt.get("supported"):
        out.append(("TensorRT engines from Python", False, trt.get("why")))
    else:
        out.append(("TensorRT {} engines ({} API{})".format(trt["version"], trt["io_api"],
                                                            ", strongly typed builds" if trt["strongly_typed"] else ""),
                    gpu_known, "GPU {} (compute capability {})".format(facts["gpu"], facts["compute_capability"])
                    if gpu_known else "TensorRT is installed but no GPU was found (nvidia-smi / cuda-python / Jetson model)"))
        if trt.get("parser_has_gridsample") is False:
            out.append(("native GridSample (DySample) bundles", False,
                        "TensorRT {}'s parser has no GridSample: build bundles with --target-trt {}".format(
                            trt["version"], ".".join(trt["version"].split(".")[:2]))))
        else:
            out.append(("native GridSample (DySample) bundles", True, "the parser imports GridSample"))
        out.append(("FP16 / INT8 bundles", True, "precision from the graph (strongly typed)" if trt["strongly_typed"]
                    else "builder flags + FP32 island pinned"))
    out.append(("trtexec (build_engine.sh of a bundle)", bool(facts.get("trtexec")),
                facts.get("trtexec") or "not on PATH (JetPack: /usr/src/tensorrt/bin/trtexec)"))
    mine = (facts.get("plugins") or {}).get("defectrt") or []
    out.append(("--grid-sample plugin bundles", bool(mine and trt),
                ", ".join(mine) if mine else "no defectrt plugin library found: build it with plugins/README.md, or "
                "set DEFECTRT_PLUGIN_PATH"))
    jet = facts.get("jetson")
    if jet:
        model = (jet.get("model") or "").lower()
        dla = any(k in model for k in ("xavier", "agx orin", "orin nx")) and "nano" not in model
        out.append(("DLA (--dla-core)", dla, "{} (JetPack {})".format(jet.get("model"), jet.get("jetpack"))))
    return out


def format_doctor(facts, checks):
    trt = facts.get("tensorrt") or {}
    jet = facts.get("jetson")
    lines = ["This machine:",
             "  Python {}  |  ONNX Runtime {} {}".format(facts["python"], facts.get("onnxruntime"),
                                                         facts.get("onnxruntime_providers")),
             "  TensorRT {}  |  trtexec {}".format(trt.get("version", "not installed"), facts.get("trtexec") or "not found"),
             "  CUDA {}  |  driver {}  |  GPU {} (compute capability {})".format(
                 facts.get("cuda"), facts.get("driver"), facts.get("gpu"), facts.get("compute_capability"))]
    if jet:
        lines.append("  Jetson {}  |  L4T {}  |  JetPack {}  |  power mode {}".format(
            jet.get("model"), jet.get("l4t"), jet.get("jetpack"), jet.get("power_mode")))
    plugins = facts.get("plugins") or {}
    lines.append("  plugins: libnvinfer_plugin {}  |  defectrt {}".format(
        plugins.get("nvinfer_plugin") or "not found", ", ".join(plugins.get("defectrt") or []) or "none found"))
    lines.append("What will work:")
    for what, ok, why in checks:
        lines.append("  [{}] {}: {}".format("yes" if ok else " no", what, why))
    lines.append("(TensorRT / GPU findings: unverified on hardware by defectrt's authors; send `defectrt doctor --json` "
                 "with a question)")
    return "\n".join(lines)
