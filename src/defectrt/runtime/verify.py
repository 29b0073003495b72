"""`defectrt verify BUNDLE`: does this device compute what the bundle was built to compute?

The bundle's golden inputs (golden/inputs.json, a real letterboxed image when one was at hand) go through
the chosen backend (ONNX Runtime, or the TensorRT engine on the device); every output is compared with the
golden outputs (ONNX Runtime's, recorded at build time) at the bundle's tolerance for its precision
(manifest golden.atol / golden.rtol, elementwise |got - want| <= atol + rtol * |want|, as Polygraphy's
comparator). The report is a JSON-serialisable dict a user can send back: verdict and reasons, the device
(TensorRT / CUDA / driver versions where present, GPU, Jetson), max errors per output, the detections on
the golden images (golden vs this device), and the latency of the backend call.

Device side: no torch, Python 3.8. The TensorRT path is UNVERIFIED ON HARDWARE (no GPU here); ONNX Runtime
is tested on every demo bundle precision.
"""
from __future__ import annotations

import datetime
import os
import time

import numpy as np

from defectrt.errors import DefectrtError, UserInputError

DETECTION_IOU = 0.5


def load_golden(folder, manifest):
    """Manifest -> (feeds [{name: array}], outputs [{name: array}]) from the bundle's Polygraphy-format golden files."""
    from polygraphy.comparator import RunResults
    from polygraphy.json import load_json

    golden = manifest.golden
    if golden is None or not golden.inputs or not golden.outputs:
        raise UserInputError("bundle {}: the manifest names no golden data; rebuild it with defectrt export build".format(
            folder))
    from polygraphy.logger import G_LOGGER

    with G_LOGGER.verbosity(G_LOGGER.WARNING):  # its "[I] Loading ..." lines would break the printed report
        feeds = load_json(os.path.join(folder, *golden.inputs.split("/")))
        results = RunResults.load(os.path.join(folder, *golden.outputs.split("/")))
    (_runner, iterations), = results.items()
    outputs = [{name: np.asarray(arr) for name, arr in it.items()} for it in iterations]
    if len(outputs) != len(feeds):
        raise UserInputError("bundle {}: {} golden inputs but {} golden outputs".format(folder, len(feeds), len(outputs)))
    return feeds, outputs


def compare(name, got, want, atol, rtol):
    """One output: shapes, max absolute / relative error, elements outside the tolerance."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    rec = {"shape": list(want.shape), "got_shape": list(got.shape)}
    if got.shape != want.shape:
        rec.update(ok=False, problem="shape {} != golden {}".format(list(got.shape), list(want.shape)))
        return rec
    if not np.all(np.isfinite(got)):
        rec.update(ok=False, problem="{} non-finite values (NaN / inf)".format(int(np.sum(~np.isfinite(got)))))
        return rec
    err = np.abs(got - want)
    rel = err / np.maximum(np.abs(want), 1e-12)
    bad = err > atol + rtol * np.abs(want)
    worst = int(np.argmax(err)) if err.size else 0
    rec.update(max_abs_error=float(err.max()) if err.size else 0.0,
               max_rel_error=float(rel[err > 0].max()) if np.any(err > 0) else 0.0,
               mean_abs_error=float(err.mean()) if err.size else 0.0,
               outside_tolerance=int(bad.sum()), elements=int(err.size),
               worst_index=[int(i) for i in np.unravel_index(worst, err.shape)] if err.size else [],
               ok=not bool(bad.any()))
    return rec


def _detections(pred, batch, thresholds, names):
    from defectrt.runtime.postprocess import postprocess

    dets = postprocess(pred, [None] * batch, conf=thresholds.get("conf", 0.25), iou=thresholds.get("iou", 0.45),
                       max_det=thresholds.get("max_det", 300), names=names)
    return [[{"class": int(c), "score": round(float(s), 4), "box": [round(float(v), 1) for v in b]}
             for b, s, c in zip(d.boxes, d.scores, d.class_ids)] for d in dets]


def _iou(a, b):
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_detections(golden, got, iou=DETECTION_IOU):
    """Golden detections found again (same class, IoU >= iou) per image -> (matched, golden total, got total)."""
    matched = 0
    for want_img, got_img in zip(golden, got):
        used = set()
        for w in want_img:
            for j, g in enumerate(got_img):
                if j not in used and g["class"] == w["class"] and _iou(w["box"], g["box"]) >= iou:
                    used.add(j)
                    matched += 1
                    break
    return matched, sum(len(x) for x in golden), sum(len(x) for x in got)


def _as_dict(pred, golden_names):
    if isinstance(pred, dict):
        return pred
    if isinstance(pred, (list, tuple)):
        return dict(zip(golden_names, pred))
    if len(golden_names) != 1:
        raise UserInputError("the backend returned one output, the golden data has {}".format(len(golden_names)))
    return {golden_names[0]: pred}


def device_info(backend_kind):
    """What the report says about the machine (never raises)."""
    from defectrt.bench import environment

    env = environment.collect()
    soft = env.get("software") or {}
    gpus = env.get("gpu")
    info = {
        "host_id": env.get("host_id"),
        "os": env.get("os"),
        "python": (env.get("python") or {}).get("version") if isinstance(env.get("python"), dict) else env.get("python"),
        "cpu": (env.get("cpu") or {}).get("model") if isinstance(env.get("cpu"), dict) else env.get("cpu"),
        "tensorrt": soft.get("tensorrt"),
        "cuda": (soft.get("cuda") or {}).get("version") if isinstance(soft.get("cuda"), dict) else soft.get("cuda"),
        "onnxruntime": soft.get("onnxruntime"),
        "driver": gpus[0].get("driver_version") if isinstance(gpus, list) and gpus else environment.UNKNOWN,
        "gpu": gpus[0].get("name") if isinstance(gpus, list) and gpus else environment.UNKNOWN,
        "jetson": env.get("jetson"),
    }
    if backend_kind == "tensorrt":
        from defectrt.runtime.tensorrt_backend import gpu_identity

        info.update(gpu_identity())
    return info


def verify_bundle(bundle, backend="onnxruntime", plugins=(), runs=20, warmup=2, detector_factory=None, spec=None):
    """Run the golden inputs of `bundle` through `backend` and compare; -> the report dict (never raises for a
    failed comparison or a broken bundle: those are a "fail" verdict with the reason).
    spec: the settings as one defectrt.options.VerifySpec (then give none of them as keywords)."""
    from defectrt import __version__
    from defectrt.options import VerifySpec
    from defectrt.options import resolve as resolve_options
    from defectrt.runtime.bundle import Manifest

    spec = resolve_options(VerifySpec, spec, dict(backend=backend, plugins=plugins, runs=runs, warmup=warmup),
                           "verify_bundle")

    if spec.backend not in ("onnxruntime", "tensorrt"):
        raise UserInputError("--backend {!r}: choose onnxruntime or tensorrt".format(spec.backend))
    folder = os.path.abspath(os.fspath(bundle))
    report = {"defectrt": __version__, "date": datetime.datetime.utcnow().replace(microsecond=0).isoformat() + "Z",
              "bundle": folder, "backend": spec.backend, "verdict": "fail", "reasons": []}
    try:
        manifest = Manifest.read(folder)
        feeds, goldens = load_golden(folder, manifest)
    except DefectrtError as exc:
        report["reasons"].append(str(exc))
        return report
    atol, rtol = float(manifest.golden.atol), float(manifest.golden.rtol)
    report.update(precision=manifest.precision, int8_flavour=manifest.int8_flavour,
                  tolerance={"atol": atol, "rtol": rtol}, engine=manifest.engine.to_json() if manifest.engine else None)
    if detector_factory is None:
        from defectrt.runtime.detector import Detector

        detector_factory = Detector
    try:
        det = detector_factory(folder, backend=spec.backend, plugins=list(spec.plugins or ()))
    except DefectrtError as exc:
        report["reasons"].append("cannot open the bundle with {}: {}".format(spec.backend, exc))
        report["device"] = device_info(spec.backend)
        return report
    report["backend_reason"] = getattr(det, "backend_reason", None)
    report["device"] = device_info(spec.backend)
    outputs, golden_dets, got_dets, times = {}, [], [], []
    names = manifest.class_names
    thresholds = manifest.thresholds.to_json() if manifest.thresholds else {}
    for feed, golden in zip(feeds, goldens):
        blob = np.ascontiguousarray(feed["images"], dtype=np.float32)
        n = blob.shape[0]
        pred = _as_dict(det.infer(blob), list(golden))
        for name, want in golden.items():
            if name not in pred:
                outputs[name] = {"ok": False, "problem": "the backend has no output {}".format(name)}
                continue
            got = np.asarray(pred[name])[:want.shape[0]]
            outputs[name] = compare(name, got, want, atol, rtol)
        golden_dets += _detections(golden if len(golden) > 1 else next(iter(golden.values())), n, thresholds, names)
        got_dets += _detections({k: np.asarray(v)[:n] for k, v in pred.items()} if len(pred) > 1
                                else np.asarray(next(iter(pred.values())))[:n], n, thresholds, names)
        for i in range(spec.warmup + spec.runs):
            t0 = time.perf_counter()
            det.infer(blob)
            if i >= spec.warmup:
                times.append((time.perf_counter() - t0) * 1e3)
    close = getattr(det, "close", None)
    if callable(close):
        close()
    matched, n_golden, n_got = match_detections(golden_dets, got_dets)
    report["outputs"] = outputs
    report["detections"] = {"golden": golden_dets, "this_device": got_dets, "golden_found_again": matched,
                            "golden_count": n_golden, "count": n_got, "iou": DETECTION_IOU,
                            "thresholds": thresholds}
    if times:
        t = np.asarray(times)
        report["latency_ms"] = {"runs": len(times), "warmup": spec.warmup, "mean": round(float(t.mean()), 3),
                                "median": round(float(np.median(t)), 3), "min": round(float(t.min()), 3),
                                "max": round(float(t.max()), 3), "note": "backend call (H2D + compute + D2H), host clock"}
    for name, rec in outputs.items():
        if not rec.get("ok"):
            report["reasons"].append("output {}: {}".format(name, rec.get("problem") or (
                "{} of {} values outside atol {} + rtol {} (max abs error {:.4g}, max rel error {:.4g})".format(
                    rec["outside_tolerance"], rec["elements"], atol, rtol, rec["max_abs_error"], rec["max_rel_error"]))))
    if n_golden and matched < n_golden:
        report["notes"] = ["{} of {} golden detections found again (class and IoU >= {}); borderline scores may flip "
                           "at {}".format(matched, n_golden, DETECTION_IOU, manifest.precision)]
    report["verdict"] = "pass" if not report["reasons"] else "fail"
    return report


def format_report(report):
    """The human summary the CLI prints (the JSON report has everything)."""
    lines = ["{}: {} on {} ({}, tolerance atol {} rtol {})".format(
        report["verdict"].upper(), report["bundle"], report["backend"], report.get("precision", "?"),
        (report.get("tolerance") or {}).get("atol", "?"), (report.get("tolerance") or {}).get("rtol", "?"))]
    dev = report.get("device") or {}
    if dev:
        lines.append("  device: {} | GPU {} | TensorRT {} | CUDA {} | driver {}".format(
            dev.get("cpu", "?"), dev.get("gpu_name", dev.get("gpu", "?")), dev.get("tensorrt"), dev.get("cuda"),
            dev.get("driver")))
    for name, rec in (report.get("outputs") or {}).items():
        if "max_abs_error" in rec:
            lines.append("  {:<12} max abs {:.3g}  max rel {:.3g}  outside tolerance {}/{}  {}".format(
                name, rec["max_abs_error"], rec["max_rel_error"], rec["outside_tolerance"], rec["elements"],
                "ok" if rec["ok"] else "FAIL"))
        else:
            lines.append("  {:<12} FAIL: {}".format(name, rec.get("problem")))
    d = report.get("detections")
    if d:
        lines.append("  detections on the golden images: {} here, {} golden, {} found again".format(
            d["count"], d["golden_count"], d["golden_found_again"]))
    lat = report.get("latency_ms")
    if lat:
        lines.append("  latency: median {} ms (mean {}, min {}, max {}; {} runs)".format(
            lat["median"], lat["mean"], lat["min"], lat["max"], lat["runs"]))
    for r in report.get("reasons", ()):
        lines.append("  reason: " + r)
    for n in report.get("notes", ()):
        lines.append("  note: " + n)
    if report["backend"] == "tensorrt":
        lines.append("  (the TensorRT path of defectrt verify is unverified on hardware by its authors)")
    return "\n".join(lines)
