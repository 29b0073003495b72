"""The environment record that goes into every benchmark report.

A latency means nothing without the machine, its software and its clock state, so every report carries:
CPU (model, cores, affinity, governor and frequency limits), RAM, OS / kernel, Python, the versions of
numpy / onnxruntime / opencv / onnx / tensorrt / CUDA, the GPU (name, driver, clocks, via nvidia-smi
when it is on PATH) and, on a Jetson, the power mode (nvpmodel) and whether clocks are locked
(jetson_clocks, or scaling_min == scaling_max for the CPU and min == max for the GPU devfreq).

Rules: every field is filled; what cannot be read is "unknown", a package that is not installed is
"absent"; collecting never raises and never takes long (subprocesses have a 5 s timeout).

Privacy: the host name is never stored.  ``host_id`` is the first 12 hex digits of the SHA-256 of the
host name, so that reports from the same machine can be told apart and grouped without naming it.  (A
hash of a guessable name can be confirmed by whoever guesses it; it hides the name from casual readers
of a shared report, it is not a secret.)  No user names, paths or IP addresses are recorded.

`collect(root="/", which=shutil.which, run=None)`: `root` and `which`/`run` exist for tests (a fake
file system, no commands).
"""
from __future__ import annotations

import glob
import hashlib
import importlib
import os
import platform
import re
import shutil
import socket
import subprocess
import sys

UNKNOWN = "unknown"
ABSENT = "absent"
TIMEOUT_S = 5


def _path(root, path):
    return os.path.join(root, path.lstrip("/"))


def _read(root, path, limit=1 << 20):
    try:
        with open(_path(root, path), "rb") as f:
            return f.read(limit).decode("utf-8", "replace")
    except (OSError, ValueError):
        return None


def _read_int(root, path):
    text = _read(root, path)
    try:
        return int(text.strip().split()[0]) if text else None
    except (ValueError, IndexError):
        return None


def _default_run(argv):
    """-> stdout of argv, or None when it cannot run, fails or times out."""
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True,
                              timeout=TIMEOUT_S)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def _safe(fn, default=UNKNOWN):
    try:
        return fn()
    except Exception:  # the record must never break a benchmark
        return default


# --- CPU, memory, OS --------------------------------------------------------------------------------

_SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile",
               "asimd", "asimdhp", "asimddp", "sve")


def cpu_info(root="/"):
    text = _read(root, "/proc/cpuinfo") or ""
    model = UNKNOWN
    for key in ("model name", "Hardware", "Processor", "cpu model"):
        m = re.search(r"^{}\s*:\s*(.+)$".format(re.escape(key)), text, re.M)
        if m and m.group(1).strip():
            model = m.group(1).strip()
            break
    if model == UNKNOWN:
        proc = platform.processor() if root == "/" else ""
        model = proc or UNKNOWN
    physical = set()
    phys_id = core_id = None
    for line in text.splitlines() + [""]:
        if line.startswith("physical id"):
            phys_id = line.split(":", 1)[1].strip()
        elif line.startswith("core id"):
            core_id = line.split(":", 1)[1].strip()
        elif not line.strip():
            if core_id is not None:
                physical.add((phys_id, core_id))
            phys_id = core_id = None
    affinity = UNKNOWN
    if root == "/" and hasattr(os, "sched_getaffinity"):
        affinity = _safe(lambda: len(os.sched_getaffinity(0)))
    cpufreq = {}
    for key in ("scaling_governor", "scaling_min_freq", "scaling_max_freq", "scaling_cur_freq", "cpuinfo_max_freq"):
        raw = _read(root, "/sys/devices/system/cpu/cpu0/cpufreq/" + key)
        value = raw.strip() if raw else UNKNOWN
        if key.endswith("_freq") and value != UNKNOWN:
            try:
                value = int(value) * 1000  # kHz -> Hz
            except ValueError:
                value = UNKNOWN
        cpufreq[key.replace("scaling_", "").replace("cpuinfo_", "hw_")] = value
    m = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", text, re.M)
    flags = set(m.group(1).split()) if m else set()
    simd = [f for f in _SIMD_FLAGS if f in flags] if m else UNKNOWN
    return {
        "model": model,
        "arch": platform.machine() or UNKNOWN,
        "simd": simd,
        "logical_cores": os.cpu_count() or UNKNOWN,
        "physical_cores": len(physical) if physical else UNKNOWN,
        "affinity_cores": affinity,
        "cpu0_freq": cpufreq,
    }


def memory_info(root="/"):
    text = _read(root, "/proc/meminfo") or ""
    m = re.search(r"^MemTotal:\s*(\d+)\s*kB", text, re.M)
    return {"total_bytes": int(m.group(1)) * 1024 if m else UNKNOWN}


def os_info(root="/"):
    release = _read(root, "/etc/os-release") or ""
    m = re.search(r'^PRETTY_NAME="?([^"\n]*)"?', release, re.M)
    return {
        "system": platform.system() or UNKNOWN,
        "kernel": platform.release() or UNKNOWN,
        "distribution": m.group(1) if m else UNKNOWN,
    }


def python_info():
    return {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "bits": 64 if sys.maxsize > 2 ** 32 else 32,
    }


def host_id():
    name = _safe(socket.gethostname, "")
    return hashlib.sha256(name.encode("utf-8")).hexdigest()[:12] if name else UNKNOWN


# --- software versions ------------------------------------------------------------------------------

def module_version(name, attr="__version__"):
    """Version of an importable module, imported only now; "absent" when not installed."""
    try:
        mod = importlib.import_module(name)
    except ImportError:
        return ABSENT
    except Exception:  # installed but broken (e.g. a tensorrt without its libraries)
        return UNKNOWN
    return str(getattr(mod, attr, UNKNOWN))


def cuda_version(root="/", run=_default_run, which=shutil.which):
    """CUDA runtime version: cuda-python, then the toolkit's version file, then nvidia-smi's header."""
    def from_cudart():
        from defectrt.runtime.cuda_buffers import import_cudart  # cuda.bindings.runtime, else `from cuda import cudart`

        cudart = import_cudart()
        err, ver = cudart.cudaRuntimeGetVersion()
        if int(err) == 0:
            return "{}.{}".format(ver // 1000, (ver % 1000) // 10)
        return None

    if root == "/":
        v = _safe(from_cudart, None)
        if v:
            return {"version": v, "source": "cuda-python"}
    text = _read(root, "/usr/local/cuda/version.json")
    if text:
        m = re.search(r'"cuda"\s*:\s*\{[^}]*"version"\s*:\s*"([^"]+)"', text)
        if m:
            return {"version": m.group(1), "source": "/usr/local/cuda/version.json"}
    text = _read(root, "/usr/local/cuda/version.txt")
    if text:
        m = re.search(r"(\d+\.\d+(?:\.\d+)?)", text)
        if m:
            return {"version": m.group(1), "source": "/usr/local/cuda/version.txt"}
    exe = which("nvidia-smi")
    if exe:
        out = run([exe])
        m = re.search(r"CUDA Version:\s*([\d.]+)", out or "")
        if m:
            return {"version": m.group(1), "source": "nvidia-smi (driver's CUDA)"}
        return {"version": UNKNOWN, "source": "nvidia-smi"}
    return {"version": ABSENT, "source": "no CUDA runtime, toolkit or driver found"}


def software_versions(root="/", run=_default_run, which=shutil.which):
    ort_providers = UNKNOWN
    try:
        import onnxruntime as ort

        ort_providers = list(ort.get_available_providers())
    except ImportError:
        ort_providers = ABSENT
    except Exception:
        pass
    from defectrt import __version__

    return {
        "defectrt": __version__,
        "numpy": module_version("numpy"),
        "onnx": module_version("onnx"),
        "onnxruntime": module_version("onnxruntime"),
        "onnxruntime_providers": ort_providers,
        "opencv": module_version("cv2"),
        "tensorrt": module_version("tensorrt"),
        "cuda": cuda_version(root, run, which),
    }


# --- GPU -------------------------------------------------------------------------------------------

_SMI_FIELDS = ("name", "driver_version", "memory.total", "clocks.sm", "clocks.mem", "clocks.max.sm",
               "clocks.max.mem", "clocks.applications.graphics", "power.limit", "persistence_mode", "pstate")


def gpu_info(run=_default_run, which=shutil.which):
    """[{name, driver_version, clocks...}] from nvidia-smi, or "unknown" when it is not on PATH / fails."""
    exe = which("nvidia-smi")
    if not exe:
        return UNKNOWN
    out = run([exe, "--query-gpu=" + ",".join(_SMI_FIELDS), "--format=csv,noheader,nounits"])
    if not out:
        return UNKNOWN
    gpus = []
    for line in out.strip().splitlines():
        values = [v.strip() for v in line.split(",")]
        if len(values) != len(_SMI_FIELDS):
            continue
        rec = {}
        for key, value in zip(_SMI_FIELDS, values):
            if value in ("[N/A]", "N/A", "[Not Supported]", ""):
                value = UNKNOWN
            key = key.replace(".", "_")
            if key.startswith("clocks_"):
                key += "_mhz"
            elif key == "memory_total":
                key += "_mib"
            elif key == "power_limit":
                key += "_w"
            rec[key] = value
        gpus.append(rec)
    return gpus or UNKNOWN


# --- Jetson ----------------------------------------------------------------------------------------

def is_jetson(root="/"):
    if os.path.exists(_path(root, "/etc/nv_tegra_release")):
        return True
    model = (_read(root, "/proc/device-tree/model") or "").replace("\x00", "")
    return "jetson" in model.lower() or "nvidia" in model.lower()


def _power_mode(root, run, which):
    exe = which("nvpmodel")
    if exe:
        out = run([exe, "-q"])
        if out:
            m = re.search(r"NV Power Mode:\s*(.+)", out)
            ids = re.findall(r"^\s*(\d+)\s*$", out, re.M)
            if m:
                return {"name": m.group(1).strip(), "id": int(ids[0]) if ids else UNKNOWN, "source": "nvpmodel -q"}
    conf = _read(root, "/etc/nvpmodel.conf")
    status = _read(root, "/var/lib/nvpmodel/status")
    names = {}
    default = None
    if conf:
        names = {int(i): n for i, n in re.findall(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=(\S+?)\s*>", conf)}
        m = re.search(r"<\s*PM_CONFIG\s+DEFAULT=(\d+)\s*>", conf)
        default = int(m.group(1)) if m else None
    if status:
        m = re.search(r"pmode:(\d+)", status)
        if m:
            i = int(m.group(1))
            return {"name": names.get(i, UNKNOWN), "id": i, "source": "/var/lib/nvpmodel/status"}
    if default is not None:
        return {"name": names.get(default, UNKNOWN), "id": default,
                "source": "/etc/nvpmodel.conf default (the current mode could not be read)"}
    return {"name": UNKNOWN, "id": UNKNOWN, "source": "nvpmodel not found and /etc/nvpmodel.conf unreadable"}


_GPU_DEVFREQ_HINTS = ("gpu", "ga10b", "gv11b", "gp10b", "gm20b", "gb10b")


def _devfreq_gpu(root):
    for d in sorted(glob.glob(_path(root, "/sys/class/devfreq/*"))):
        if any(h in os.path.basename(d).lower() for h in _GPU_DEVFREQ_HINTS):
            # d is already under root: read it as an absolute path
            return {"device": os.path.basename(d), "min_hz": _read_int("/", d + "/min_freq"),
                    "max_hz": _read_int("/", d + "/max_freq")}
    return None


def _clocks_locked(root, run, which):
    """True / False / "unknown", with the evidence."""
    exe = which("jetson_clocks")
    if exe:
        out = run([exe, "--show"])
        if out:
            pairs = re.findall(r"MinFreq=(\d+)\s+MaxFreq=(\d+)", out)
            if pairs:
                locked = all(a == b for a, b in pairs)
                return locked, "jetson_clocks --show ({} clock domains)".format(len(pairs))
    cpu_min = _read_int(root, "/sys/devices/system/cpu/cpu0/cpufreq/scaling_min_freq")
    cpu_max = _read_int(root, "/sys/devices/system/cpu/cpu0/cpufreq/scaling_max_freq")
    gpu = _devfreq_gpu(root)
    checks = []
    if cpu_min is not None and cpu_max is not None:
        checks.append(("cpu0 scaling_min/max_freq", cpu_min == cpu_max))
    if gpu and gpu["min_hz"] is not None and gpu["max_hz"] is not None:
        checks.append(("gpu devfreq {} min/max_freq".format(gpu["device"]), gpu["min_hz"] == gpu["max_hz"]))
    if not checks:
        return UNKNOWN, "jetson_clocks --show unavailable and cpufreq/devfreq unreadable"
    evidence = "; ".join("{}: {}".format(n, "min == max" if ok else "min < max") for n, ok in checks)
    if any(not ok for _, ok in checks):
        return False, evidence
    if len(checks) < 2:
        return UNKNOWN, evidence + " (the other clock domain is unreadable)"
    return True, evidence


def jetson_info(root="/", run=_default_run, which=shutil.which):
    if not is_jetson(root):
        return {"is_jetson": False}
    model = (_read(root, "/proc/device-tree/model") or "").replace("\x00", "").strip() or UNKNOWN
    release = (_read(root, "/etc/nv_tegra_release") or "").strip().splitlines()
    locked, evidence = _clocks_locked(root, run, which)
    return {
        "is_jetson": True,
        "model": model,
        "l4t_release": release[0] if release else UNKNOWN,
        "power_mode": _power_mode(root, run, which),
        "clocks_locked": locked,
        "clocks_evidence": evidence,
        "gpu_devfreq": _devfreq_gpu(root) or UNKNOWN,
    }


# --- the record ------------------------------------------------------------------------------------

KEYS = ("host_id", "cpu", "memory", "os", "python", "software", "gpu", "jetson")


def collect(root="/", which=shutil.which, run=None):
    """The environment record (a JSON-serialisable dict with every key in KEYS). Never raises."""
    run = run or _default_run
    parts = {
        "host_id": host_id,
        "cpu": lambda: cpu_info(root),
        "memory": lambda: memory_info(root),
        "os": lambda: os_info(root),
        "python": python_info,
        "software": lambda: software_versions(root, run, which),
        "gpu": lambda: gpu_info(run, which),
        "jetson": lambda: jetson_info(root, run, which),
    }
    return {key: _safe(fn) for key, fn in parts.items()}


def short_label(env):
    """A short machine label for tables: the GPU or Jetson model, else the CPU model, plus the host id."""
    def name():
        j = env.get("jetson") or {}
        if isinstance(j, dict) and j.get("is_jetson") and j.get("model") not in (None, UNKNOWN):
            return j["model"]
        gpus = env.get("gpu")
        if isinstance(gpus, list) and gpus and gpus[0].get("name") not in (None, UNKNOWN):
            return gpus[0]["name"]
        cpu = env.get("cpu") or {}
        return cpu.get("model", UNKNOWN) if isinstance(cpu, dict) else UNKNOWN

    base = re.sub(r"\s+", " ", re.sub(r"\((R|TM)\)|CPU|Processor|NVIDIA|Developer Kit", "", str(_safe(name))))
    return "{} [{}]".format(base.strip() or UNKNOWN, str(env.get("host_id", UNKNOWN))[:6])
