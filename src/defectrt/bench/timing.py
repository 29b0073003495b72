"""The timing core: warm-up, a measuring phase, per-stage samples, throughput, cold start, memory.

Conventions (those of trtexec, see ../shared/notes/tensorrt.md):

- A *query* is one call of the timed work on one batch.  Warm-up runs queries for `warmup_s` seconds
  (or exactly `warmup_iters` queries); they are discarded.  The measuring phase then runs exactly
  `iters` queries, or else queries until at least `duration_s` seconds *and* `min_iters` queries have
  passed.
- Every host interval is read with ``time.perf_counter_ns``.  ``end_to_end`` is the host wall time of
  one whole query, always measured here, around the query.
- Throughput = completed queries / wall time of the measuring phase (first query start to last query
  end): ``batches_per_s``; ``images_per_s`` multiplies by the batch size.
- Stages: ``preprocess, h2d, compute, d2h, postprocess, end_to_end``, plus where they apply
  ``latency`` (= h2d + compute + d2h of each query, trtexec's "Latency"), ``enqueue`` and ``infer_host``.  A stage that does not exist for a backend (h2d / d2h on ONNX Runtime
  on the CPU) is *absent* - reported as None with a reason - never as zero.

GPU timing hook (for the TensorRT backend, defectrt/runtime/tensorrt_backend.py)
-------------------------------------------------------------------------------
An asynchronous enqueue returns before the GPU has done the work, so timing the enqueue call alone
measures nothing.  A backend (defectrt.runtime.backend.Backend) that runs on a GPU sets
``offers_stage_timing`` and implements::

    backend.time_stages(blob) -> (output, {"h2d": ms, "compute": ms, "d2h": ms, "enqueue": ms})

which records CUDA events on its stream before/after the input copies, the enqueue and the output
copies, synchronises the stream, and returns ``cudaEventElapsedTime`` for each interval ("enqueue" is the
optional host time spent inside the enqueue call, as trtexec's "Enqueue Time").  Streams, contexts,
events and buffers are created once, outside the timed loop.  When the backend offers
``enable_cuda_graph()``, ``--cuda-graph`` captures the enqueue once
and replays it.  A GPU backend without ``time_stages`` is timed on the host only: ``infer_host`` (the
synchronous ``infer`` call, copies and synchronisation included); h2d / compute / d2h are then absent.

GPU memory: ``backend.device_memory_bytes()`` when offered, else the process' use from nvidia-smi,
else "unknown" (Jetson has no nvidia-smi: its GPU shares host memory, see peak RSS).
"""
from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import time

from defectrt.bench.stats import summarize
from defectrt.errors import UserInputError
from defectrt.runtime.backend import Backend

STAGES = ("preprocess", "h2d", "compute", "d2h", "postprocess", "end_to_end")
EXTRA_STAGES = ("latency", "enqueue", "infer_host")
ALL_STAGES = STAGES + EXTRA_STAGES

UNSTABLE_COV = 0.10  # trtexec warns at 1 % for GPU compute; host timings on a shared CPU need more room
ENQUEUE_BOUND = 0.8  # trtexec: enqueue median > 0.8 x compute median -> enqueue-bound

_NS_PER_MS = 1e6


def _ms(ns):
    return ns / _NS_PER_MS


class LoopResult(object):
    """Raw outcome of one measuring phase: per-stage samples (ms), query count, wall time."""

    def __init__(self, samples, queries, wall_s, batch, warmup_queries, warmup_s):
        self.samples = samples
        self.queries = queries
        self.wall_s = wall_s
        self.batch = batch
        self.warmup_queries = warmup_queries
        self.warmup_s = warmup_s

    @property
    def batches_per_s(self):
        return self.queries / self.wall_s if self.wall_s > 0 else float("inf")

    @property
    def images_per_s(self):
        return self.batch * self.batches_per_s

    def throughput(self):
        return {
            "queries": self.queries,
            "batch": self.batch,
            "wall_s": self.wall_s,
            "batches_per_s": self.batches_per_s,
            "images_per_s": self.images_per_s,
        }

    def stats(self):
        """{stage: summary} for every stage that has samples."""
        return {k: summarize(v) for k, v in self.samples.items() if v}


def check_settings(warmup_s=0.2, warmup_iters=None, duration_s=3.0, iters=None, min_iters=10):
    """Raise UserInputError for settings that cannot give a measurement."""
    if warmup_iters is not None and warmup_iters < 0:
        raise UserInputError("warm-up iterations must be >= 0, got {}".format(warmup_iters))
    if warmup_s is not None and warmup_s < 0:
        raise UserInputError("--warmup-s must be >= 0, got {}".format(warmup_s))
    if iters is not None and iters < 1:
        raise UserInputError("--iters must be >= 1, got {}".format(iters))
    if iters is None and (duration_s is None or duration_s <= 0):
        raise UserInputError("--duration-s must be > 0, got {}".format(duration_s))
    if min_iters is not None and min_iters < 1:
        raise UserInputError("the minimum number of iterations must be >= 1, got {}".format(min_iters))


def run_loop(query, batch=1, warmup_s=0.2, warmup_iters=None, duration_s=3.0, iters=None, min_iters=10,
             wall_stage="end_to_end", clock=time.perf_counter_ns):
    """Warm up, then measure `query()`; -> LoopResult.

    `query()` runs one query; it may return a dict {stage: ms or None} of intervals it measured inside
    (event-timed GPU stages, host-timed sub-stages); None values are ignored, and so is anything that is not
    a dict.  The host wall time of each
    whole query is recorded as `wall_stage`.
    """
    check_settings(warmup_s, warmup_iters, duration_s, iters, min_iters)
    if batch < 1:
        raise UserInputError("batch must be >= 1, got {}".format(batch))

    # Warm-up: discarded.
    w0 = clock()
    warm = 0
    if warmup_iters is not None:
        for _ in range(warmup_iters):
            query()
            warm += 1
    elif warmup_s > 0:
        limit = w0 + int(warmup_s * 1e9)
        while True:
            query()
            warm += 1
            if clock() >= limit:
                break
    warmup_elapsed = (clock() - w0) / 1e9

    samples = {}
    wall = []
    n = 0
    limit = None if iters is not None else int(duration_s * 1e9)
    start = clock()
    end = start
    while True:
        t0 = clock()
        inner = query()
        t1 = clock()
        wall.append(_ms(t1 - t0))
        if isinstance(inner, dict):
            for k, v in inner.items():
                if v is not None and k != wall_stage:
                    samples.setdefault(k, []).append(float(v))
        n += 1
        end = t1
        if iters is not None:
            if n >= iters:
                break
        elif end - start >= limit and n >= (min_iters or 1):
            break
    samples[wall_stage] = wall
    return LoopResult(samples, n, (end - start) / 1e9, batch, warm, warmup_elapsed)


def timed(fn, stage):
    """Wrap `fn` so that a query returns {stage: host ms of fn()}."""

    def query():
        t0 = time.perf_counter_ns()
        fn()
        return {stage: _ms(time.perf_counter_ns() - t0)}

    return query


# --- backends -----------------------------------------------------------------------------------------

def backend_of(det):
    """The Backend behind a Detector (or the object itself when it is already a Backend)."""
    return det if isinstance(det, Backend) else det.backend


def providers_of(backend):
    return list(backend.providers or ())


def runs_on_host(backend):
    """True when the backend computes on the CPU, synchronously (ONNX Runtime with only the CPU EP)."""
    return backend.runs_on_host


def model_query(infer, blob, backend=None):
    """-> (query, absent) for timing the model call on a pre-made blob.

    `absent` maps each stage that cannot be measured for this backend to the reason.
    """
    if backend is not None and backend.offers_stage_timing:
        def query():
            _, times = backend.time_stages(blob)
            out = {k: times.get(k) for k in ("h2d", "compute", "d2h", "enqueue")}
            parts = [out[k] for k in ("h2d", "compute", "d2h")]
            out["latency"] = sum(parts) if all(v is not None for v in parts) else None  # trtexec's "Latency"
            return out

        return query, {}
    if backend is None or runs_on_host(backend):
        def query():
            t0 = time.perf_counter_ns()
            infer(blob)
            return {"compute": _ms(time.perf_counter_ns() - t0)}

        reason = "computes on the host: no host-device copies"
        return query, {"h2d": reason, "d2h": reason}

    def query():
        t0 = time.perf_counter_ns()
        infer(blob)
        return {"infer_host": _ms(time.perf_counter_ns() - t0)}

    reason = "the backend offers no CUDA-event timing (time_stages); see infer_host"
    return query, {"h2d": reason, "compute": reason, "d2h": reason}


def enable_cuda_graph(backend):
    """Ask a GPU backend to capture/replay a CUDA graph; InvalidArgument (a UserInputError) when it cannot."""
    backend.enable_cuda_graph()
    return True


# --- memory ---------------------------------------------------------------------------------------------

def _proc_status_kb(key, path="/proc/self/status"):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    parts = line.split()
                    return int(parts[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def host_memory():
    """{peak_rss_bytes (getrusage), vmhwm_bytes (/proc peak), rss_bytes (now)}; None where unreadable."""
    peak = None
    try:
        ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = int(ru) if sys.platform == "darwin" else int(ru) * 1024  # Linux reports KiB
    except (OSError, ValueError, AttributeError):
        pass
    return {"peak_rss_bytes": peak, "vmhwm_bytes": _proc_status_kb("VmHWM"), "rss_bytes": _proc_status_kb("VmRSS")}


def gpu_memory(backend=None, which=shutil.which):
    """Bytes of GPU memory this process uses, or "unknown"."""
    if backend is not None:
        try:
            value = backend.device_memory_bytes()
            if value is not None:
                return int(value)
        except Exception:
            pass
    exe = which("nvidia-smi")
    if not exe:
        return "unknown"
    try:
        out = subprocess.run(
            [exe, "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True, timeout=5,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    pid = str(os.getpid())
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0] == pid:
            try:
                return int(float(parts[1])) * (1 << 20)  # MiB
            except ValueError:
                return "unknown"
    return "unknown"


# --- cold start -----------------------------------------------------------------------------------------

def cold_start(load, first, prepare=None):
    """Time `obj = load()` (model load / engine deserialisation) and the first inference `first(obj, arg)`,
    where `arg = prepare(obj)` (untimed: e.g. the preprocessed blob).

    -> (obj, arg, {"load_ms", "first_inference_ms"}).
    """
    t0 = time.perf_counter_ns()
    obj = load()
    t1 = time.perf_counter_ns()
    arg = prepare(obj) if prepare is not None else None
    t2 = time.perf_counter_ns()
    first(obj, arg)
    t3 = time.perf_counter_ns()
    return obj, arg, {"load_ms": _ms(t1 - t0), "first_inference_ms": _ms(t3 - t2)}


# --- warnings -------------------------------------------------------------------------------------------

def _median(stats, stage):
    s = stats.get(stage)
    return s["median"] if s else None


def warnings_for(stats, unstable_cov=UNSTABLE_COV):
    """trtexec-style warnings from {stage: summary}."""
    out = []
    for stage in ("compute", "end_to_end", "infer_host"):
        s = stats.get(stage)
        if s and s["count"] > 1 and s["cov"] > unstable_cov:
            out.append(
                "{} time is unstable: coefficient of variation {:.1f}% > {:.0f}%; lock clocks (jetson_clocks, "
                "nvidia-smi -lgc), stop other load, or measure longer".format(stage, 100 * s["cov"], 100 * unstable_cov)
            )
    compute = _median(stats, "compute")
    if compute is None:
        compute = _median(stats, "infer_host")
    enq = _median(stats, "enqueue")
    if enq is not None and compute is not None and enq > ENQUEUE_BOUND * compute:
        out.append("throughput may be bound by enqueue time rather than compute; try --cuda-graph")
    host = sum(v for v in (_median(stats, "preprocess"), _median(stats, "postprocess")) if v is not None)
    if compute is not None and host > compute:
        out.append(
            "end-to-end throughput is bound by the host: preprocess + postprocess ({:.3f} ms) > compute "
            "({:.3f} ms); overlap them with inference (a pipeline) or move preprocessing onto the device".format(host, compute)
        )
    for stage, what in (("h2d", "host-to-device"), ("d2h", "device-to-host")):
        v = _median(stats, stage)
        if v is not None and compute is not None and v >= compute:
            out.append(
                "throughput may be bound by {} transfers ({:.3f} ms >= compute {:.3f} ms); use pinned or "
                "zero-copy memory (Jetson) or smaller inputs/outputs".format(what, v, compute)
            )
    return out
