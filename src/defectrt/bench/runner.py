"""Measure a Detector the way the CLI and the benchmark scripts do (no torch, Python 3.8).

Two modes:

- ``model`` (default, trtexec-like): the model call on a pre-made blob is the query - h2d / compute /
  d2h from the backend's CUDA-event hook where it has one, the host time of the synchronous CPU run on
  ONNX Runtime CPU - and ``end_to_end`` is the host wall time of that query.  Preprocessing (a
  synthetic image of the model's size) and postprocessing (of the model's real output) are timed in
  their own loops with the same warm-up and duration.
- ``end_to_end``: the query is ``Detector.__call__`` on the images; while it runs, the Detector's stage
  methods are wrapped (instance attributes, removed afterwards) so that the same query also yields
  preprocess / compute (or infer_host) / postprocess.
- ``throughput`` (``inflight=N``): the query is a burst of images through ``Detector.stream(inflight=N)``
  (N requests in flight); images/s is the figure, ``end_to_end`` the wall time of one burst.
"""
from __future__ import annotations

import contextlib

import numpy as np

from defectrt.bench import timing
from defectrt.errors import UserInputError
from defectrt.modelref import onnx_metadata
from defectrt.runtime.backend import Backend


def synthetic_images(batch, imgsz, seed=0):
    """`batch` deterministic BGR uint8 images of size (h, w): smooth shapes on noise, not a flat field."""
    h, w = imgsz
    rng = np.random.default_rng(seed)
    out = []
    for i in range(batch):
        img = rng.integers(90, 140, size=(h, w, 3), dtype=np.uint8)
        y0, x0 = (h // 4 + 7 * i) % max(h - 1, 1), (w // 4 + 11 * i) % max(w - 1, 1)
        img[y0 : y0 + h // 3, x0 : x0 + w // 3] = (30, 60, 200)
        out.append(img)
    return out


def _settings(settings):
    s = dict(warmup_s=0.2, warmup_iters=None, duration_s=3.0, iters=None, min_iters=10)
    s.update({k: v for k, v in (settings or {}).items() if k in s})
    return s


def _stage_table(stats, absent):
    table = {}
    for stage in timing.STAGES:
        table[stage] = stats.get(stage)
    for stage in timing.EXTRA_STAGES:
        if stage in stats:
            table[stage] = stats[stage]
    absent = {k: v for k, v in absent.items() if table.get(k) is None}
    for stage in timing.STAGES:
        if table[stage] is None and stage not in absent:
            absent[stage] = "not measured"
    return table, absent


@contextlib.contextmanager
def _instrumented(det, record, compute_stage):
    """Record the host time of each stage of det's calls through its stage-timing hook (Detector.stage_hook)."""
    def hook(stage, ms):
        stage = compute_stage if stage == "infer" else stage
        record[stage] = record.get(stage, 0.0) + ms

    det.stage_hook = hook
    try:
        yield
    finally:
        det.stage_hook = None


def measure_inflight(det, inflight, imgsz, settings=None):
    """Throughput mode: images/s of bursts of 4 * inflight images through Detector.stream(inflight=N)."""
    s = _settings(settings)
    burst = 4 * int(inflight)
    images = synthetic_images(burst, imgsz)
    loop = timing.run_loop(lambda: list(det.stream(images, inflight=inflight)), batch=burst, **s)
    stats = loop.stats()
    reason = "throughput mode: the stages of {} requests in flight overlap; see images/s".format(inflight)
    table, absent = _stage_table(stats, {k: reason for k in timing.STAGES if k != "end_to_end"})
    return {"mode": "throughput", "batch": 1, "inflight": int(inflight), "images_per_query": burst,
            "imgsz": list(imgsz), "stages": table, "absent": absent, "throughput": loop.throughput(),
            "warmup": {"queries": loop.warmup_queries, "seconds": loop.warmup_s}, "warnings": timing.warnings_for(stats)}


def measure(det, batch=1, imgsz=None, end_to_end=False, settings=None, images=None):
    """Benchmark one Detector at one batch size; -> dict with stages, absent, throughput, warnings."""
    s = _settings(settings)
    if imgsz is None:
        imgsz = tuple(det.imgsz or ())
    if len(imgsz) != 2:
        raise UserInputError("the model does not say its input size; pass --imgsz H W")
    imgsz = (int(imgsz[0]), int(imgsz[1]))
    images = images if images is not None else synthetic_images(batch, imgsz)
    backend = timing.backend_of(det)
    on_host = timing.runs_on_host(backend)
    compute_stage = "compute" if on_host else "infer_host"

    if end_to_end:
        record = {}

        def query():
            record.clear()
            det(images)
            return dict(record)

        with _instrumented(det, record, compute_stage):
            loop = timing.run_loop(query, batch=batch, **s)
        stats = loop.stats()
        reason = "computes on the host: no host-device copies" if on_host else (
            "end-to-end mode times Detector.__call__ on the host; run without --end-to-end for event-timed h2d/compute/d2h")
        absent = {"h2d": reason, "d2h": reason}
        if not on_host:
            absent["compute"] = reason
        for stage in ("preprocess", "postprocess", compute_stage):
            if stage not in stats:
                absent[stage] = "Detector.__call__ does not go through its stage methods; not separable"
    else:
        blob, infos = det.preprocess(images)
        pred = det.infer(blob)
        query, absent = timing.model_query(det.infer, blob, backend)
        loop = timing.run_loop(query, batch=batch, **s)
        pre = timing.run_loop(lambda: det.preprocess(images), batch=batch, wall_stage="preprocess", **s)
        post = timing.run_loop(lambda: det.postprocess(pred, infos), batch=batch, wall_stage="postprocess", **s)
        stats = loop.stats()
        stats["preprocess"] = pre.stats()["preprocess"]
        stats["postprocess"] = post.stats()["postprocess"]
        loop.samples.update({"preprocess": pre.samples.get("preprocess", []),
                             "postprocess": post.samples.get("postprocess", [])})
    table, absent = _stage_table(stats, absent)
    return {
        "mode": "end_to_end" if end_to_end else "model",
        "batch": batch,
        "imgsz": list(imgsz),
        "stages": table,
        "absent": absent,
        "throughput": loop.throughput(),
        "warmup": {"queries": loop.warmup_queries, "seconds": loop.warmup_s},
        "warnings": timing.warnings_for(stats),
        # issue 19: the per-query samples (ms) behind the statistics, for `bench --plot`'s histogram / CDF
        "samples_ms": {k: [round(float(v), 4) for v in vals] for k, vals in loop.samples.items() if vals},
    }


# --- one model, several batch sizes (the CLI's work) ---------------------------------------------------

def _onnx_meta(path):
    try:
        import onnx

        m = onnx.load(path, load_external_data=False)
    except Exception:
        return {}
    return onnx_metadata(m)


def model_identity(ref):
    """{name, source, onnx (path for FLOPs or None), precision, variant} from a model reference (never raises)."""
    import os

    if not isinstance(ref, (str, bytes, os.PathLike)):
        name = ref.name if isinstance(ref, Backend) else type(ref).__name__
        return {"name": name, "source": name, "onnx": None, "precision": "unknown", "variant": "unknown"}
    path = os.fspath(ref)
    base = os.path.basename(os.path.normpath(path))
    ident = {"name": os.path.splitext(base)[0] or base, "source": base, "onnx": None, "precision": "unknown",
             "variant": "unknown"}
    onnx_path = None
    if os.path.isdir(path):
        try:
            from defectrt.runtime.bundle import Manifest

            manifest = Manifest.read(path, verify=False)
            for key in ("precision", "variant"):
                if isinstance(getattr(manifest, key), str):
                    ident[key] = getattr(manifest, key)
        except (OSError, ValueError):
            pass
        cand = os.path.join(path, "model.onnx")
        onnx_path = cand if os.path.isfile(cand) else None
    elif path.lower().endswith(".onnx"):
        onnx_path = path
    else:  # an engine: FLOPs from the ONNX beside it, when there is one
        cand = os.path.splitext(path)[0] + ".onnx"
        onnx_path = cand if os.path.isfile(cand) else None
    if onnx_path:
        ident["onnx"] = onnx_path
        meta = _onnx_meta(onnx_path)
        for key in ("precision", "variant"):
            if ident[key] == "unknown" and meta.get(key):
                ident[key] = meta[key]
    return ident


def bench_model(model, batches=(1,), imgsz=None, backend="auto", threads=None, end_to_end=False, settings=None,
                cuda_graph=False, peak_gflops=None, detector_cls=None, log=None, inflight=None, openvino=None,
                options=None):
    """Load `model` with the runtime Detector (cold start timed), measure every batch size; -> [result entry].

    options: how the Detector loads and runs the model, one DetectorOptions (its backend, threads, imgsz,
    cuda_graph, openvino; the keyword form builds it). A batch size the model cannot run (e.g. a fixed batch
    of 1) gives a result with status "failed" and the error, so that one impossible cell does not lose the
    others.
    """
    from defectrt.bench import flops as flops_mod
    from defectrt.bench.report import result_entry
    from defectrt.options import DetectorOptions
    from defectrt.options import resolve as resolve_options

    options = resolve_options(DetectorOptions, options, dict(
        backend=backend, threads=threads, imgsz=None if imgsz is None else tuple(imgsz), cuda_graph=bool(cuda_graph),
        openvino=openvino or None), "bench_model")
    imgsz = options.imgsz  # the size measured at (None: the model's own)
    if detector_cls is None:
        try:
            from defectrt.runtime.detector import Detector as detector_cls
        except ImportError as exc:
            raise UserInputError("the runtime (defectrt.runtime.detector) is not available: {}".format(exc))
    ident = model_identity(model)
    kwargs = {"backend": options.backend}  # only what is set: test doubles take the keywords they know
    if options.threads is not None:
        kwargs["threads"] = options.threads
    if options.openvino:
        kwargs["openvino"] = options.openvino
    if imgsz is not None:
        kwargs["imgsz"] = tuple(imgsz)
    if options.cuda_graph:
        kwargs["cuda_graph"] = True  # the Detector asks its backend (Backend.enable_cuda_graph / TensorRT's option)
    cold_batch = [batches[0]]

    def prepare(det):  # untimed: the first inference runs on a ready blob
        size = tuple(imgsz) if imgsz is not None else tuple(det.imgsz)
        cold_batch[0] = det.batch or batches[0]
        return det.preprocess(synthetic_images(cold_batch[0], size))[0]

    det, _, cold = timing.cold_start(lambda: detector_cls(model, **kwargs), lambda d, blob: d.infer(blob), prepare)
    det_size = tuple(int(v) for v in (det.imgsz or ()))
    if imgsz is not None and det_size and tuple(imgsz) != det_size:
        raise UserInputError("{}: the model's input is {}x{}; --imgsz {} {} differs (export it at that size)".format(
            ident["source"], det_size[0], det_size[1], imgsz[0], imgsz[1]))
    size = tuple(imgsz) if imgsz is not None else det_size
    be = timing.backend_of(det)
    if options.cuda_graph and timing.runs_on_host(be):
        raise UserInputError("--cuda-graph needs the TensorRT backend; {} runs on {}".format(
            ident["source"], be.name))
    fixed_batch = det.batch
    on_host = timing.runs_on_host(be)
    gflops = None
    notes = []
    if ident["onnx"]:
        try:
            counted = flops_mod.count_flops(ident["onnx"], batch=1, imgsz=size)
            gflops = counted["gflops"]
            if counted["uncounted"]:
                notes.append("FLOPs: {} nodes with unknown shapes not counted".format(len(counted["uncounted"])))
        except Exception as exc:  # FLOPs are an annotation; never lose the timing for them
            notes.append("FLOPs not counted: {}".format(exc))
    if not on_host:
        notes.append("efficiency is against the host CPU's matmul peak only for host backends; GPU peak unknown")
    fields = dict(source=ident["source"], variant=ident["variant"], precision=ident["precision"],
                  backend=str(be.name), providers=timing.providers_of(be))
    results = []
    mode = "throughput" if inflight else "end_to_end" if end_to_end else "model"
    for b in batches:
        if fixed_batch is not None and b != fixed_batch:
            results.append(result_entry(
                ident["name"], status="not available", batch=b, imgsz=list(size), mode=mode,
                error="the model has a fixed batch of {}; export it with a dynamic batch to measure batch {}".format(
                    fixed_batch, b), **fields))
            continue
        try:
            if inflight:
                if b != 1:
                    raise UserInputError("--inflight runs one image per request; use --batch 1")
                m = measure_inflight(det, inflight, size, settings=settings)
            else:
                m = measure(det, batch=b, imgsz=size, end_to_end=end_to_end, settings=settings)
        except Exception as exc:  # UserInputError included: one impossible cell must not lose the others
            if log:
                log("{} batch {}: failed: {}".format(ident["source"], b, exc))
            results.append(result_entry(ident["name"], status="failed", error="{}: {}".format(type(exc).__name__, exc),
                                        batch=b, imgsz=list(size), mode=mode, **fields))
            continue
        images_per_s = m["throughput"]["images_per_s"]
        peak = peak_gflops if on_host else None
        achieved, eff = flops_mod.efficiency(gflops, images_per_s, peak)
        entry = result_entry(ident["name"], m, **fields)
        entry["cold_start"] = dict(cold, batch=cold_batch[0]) if b == cold_batch[0] else {
            "load_ms": cold["load_ms"], "first_inference_ms": None, "batch": cold_batch[0]}
        entry["memory"] = dict(timing.host_memory(), gpu_bytes=timing.gpu_memory(be))
        entry["flops"] = {"gflops_per_image": gflops, "achieved_gflops": achieved, "efficiency": eff}
        entry["notes"] = list(notes)
        results.append(entry)
        if log:
            e2e = m["stages"]["end_to_end"]
            log("{} batch {}: median {:.3f} ms, {:.1f} images/s".format(ident["source"], b, e2e["median"], images_per_s))
    return results
