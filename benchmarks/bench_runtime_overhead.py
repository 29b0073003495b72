"""How much the runtime adds around the model, on one CPU core.

    python benchmarks/bench_runtime_overhead.py [--model model.onnx] [--runs 50] [--json out.json] [--force]

Measured in one process, medians over `--runs` repetitions after `--warmup`, with ONNX Runtime
intra-op threads = 1 and cv2.setNumThreads(1):
- pre-processing of one 672x384 BGR image (letterbox + blob) and post-processing of the model's output
  for it; post-processing also on a synthetic output with 120 candidates in 12 clusters above conf,
  since a model with untrained weights finds nothing and would flatter the NMS. Target: pre + post <= 2 ms.
- end-to-end `Detector(img)` against bare `InferenceSession.run` on a ready blob of the same model and
  session options (the two interleaved, so drift hits both). Target: ratio <= 1.08.
- `session.run` against IOBinding with preallocated outputs (what onnxruntime_backend.py chose and why).
Without --model it exports yolo11n-dysample (nc=4) at 384x672 through defectrt.export (needs torch).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

IMGSZ = (384, 672)


def _median_ms(fn, runs, warmup):
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)


def _interleaved_ms(fns, runs, warmup, with_min=False):
    """Medians (and minima) of fns run in turn: load from other processes hits all of them alike."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    samples = [[] for _ in fns]
    for _ in range(runs):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            samples[i].append((time.perf_counter() - t0) * 1e3)
    medians = [statistics.median(s) for s in samples]
    return (medians, [min(s) for s in samples]) if with_min else medians


def export_default(folder):
    try:
        from defectrt import models
        from defectrt.export.onnx import export_onnx
    except ImportError as exc:
        sys.exit("no --model given and the export side is unavailable ({}); pass --model PATH.onnx".format(exc))
    path = os.path.join(folder, "yolo11n-dysample.onnx")
    model = models.create("yolo11n-dysample", nc=4)
    export_onnx(model, path, imgsz=IMGSZ)
    return path


def synthetic_output(nc, anchors, seed=0):
    """(1, 4 + nc, A) with 12 clusters of 10 overlapping candidates above conf 0.25, the rest low."""
    rng = np.random.default_rng(seed)
    out = np.zeros((1, 4 + nc, anchors), np.float32)
    out[0, 0] = rng.uniform(0, IMGSZ[1], anchors)
    out[0, 1] = rng.uniform(0, IMGSZ[0], anchors)
    out[0, 2:4] = rng.uniform(8, 64, (2, anchors))
    out[0, 4:] = rng.uniform(0, 0.05, (nc, anchors))
    idx = rng.choice(anchors, 120, replace=False)
    centres = rng.uniform([40, 40], [IMGSZ[1] - 40, IMGSZ[0] - 40], (12, 2))
    out[0, 0, idx] = np.repeat(centres[:, 0], 10) + rng.normal(0, 3, 120)
    out[0, 1, idx] = np.repeat(centres[:, 1], 10) + rng.normal(0, 3, 120)
    out[0, 2:4, idx] = rng.uniform(30, 60, (120, 2))
    out[0, 4 + rng.integers(0, nc, 120), idx] = rng.uniform(0.3, 0.95, 120)
    return out


def iobinding_runner(sess, blob):
    import onnxruntime as ort

    binding = sess.io_binding()
    inp = sess.get_inputs()[0].name
    outputs = {}
    for o in sess.get_outputs():
        sess_out = sess.run([o.name], {inp: blob})[0]
        outputs[o.name] = ort.OrtValue.ortvalue_from_numpy(np.empty_like(sess_out))
        binding.bind_ortvalue_output(o.name, outputs[o.name])

    def run():
        binding.bind_cpu_input(inp, blob)
        sess.run_with_iobinding(binding)
        return [v.numpy() for v in outputs.values()]

    return run


def measure(model_path, runs, warmup):
    import cv2
    import onnxruntime as ort

    from defectrt import Detector

    cv2.setNumThreads(1)
    img = np.random.default_rng(0).integers(0, 256, (IMGSZ[0], IMGSZ[1], 3), dtype=np.uint8)
    det = Detector(model_path, backend="onnxruntime", threads=1)
    blob, infos = det.preprocess([img])
    pred = det.infer(blob)
    nc = pred.shape[1] - 4
    synth = synthetic_output(nc, pred.shape[2])
    out_buf = np.empty_like(blob)
    pre = _median_ms(lambda: det.preprocess([img], out=out_buf), runs * 4, warmup)
    post_model = _median_ms(lambda: det.postprocess(pred, infos), runs * 4, warmup)
    post_synth = _median_ms(lambda: det.postprocess(synth, infos), runs * 4, warmup)
    n_model, n_synth = len(det.postprocess(pred, infos)[0]), len(det.postprocess(synth, infos)[0])

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(model_path, sess_options=opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    bare_blob = blob.copy()
    (e2e, bare), (e2e_min, bare_min) = _interleaved_ms(
        [lambda: det(img), lambda: sess.run(None, {name: bare_blob})], runs, warmup, with_min=True)
    plain, bound = _interleaved_ms([lambda: sess.run(None, {name: bare_blob}), iobinding_runner(sess, bare_blob)],
                                   runs, warmup)
    return {
        "model": os.path.abspath(model_path), "imgsz": list(IMGSZ), "image": [IMGSZ[0], IMGSZ[1], 3], "runs": runs,
        "warmup": warmup, "threads": 1, "onnxruntime": ort.__version__, "opencv": cv2.__version__,
        "preprocess_ms": pre, "postprocess_model_ms": post_model, "postprocess_model_detections": n_model,
        "postprocess_synthetic_ms": post_synth, "postprocess_synthetic_detections": n_synth,
        "pre_post_ms": pre + max(post_model, post_synth), "detector_ms": e2e, "bare_session_ms": bare,
        "detector_over_bare": e2e / bare, "detector_min_ms": e2e_min, "bare_session_min_ms": bare_min,
        "detector_over_bare_min": e2e_min / bare_min, "session_run_ms": plain, "iobinding_ms": bound,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def markdown(r):
    rows = [
        ("pre-processing (letterbox + blob)", "{:.3f} ms".format(r["preprocess_ms"]), ""),
        ("post-processing, model output ({} dets)".format(r["postprocess_model_detections"]),
         "{:.3f} ms".format(r["postprocess_model_ms"]), ""),
        ("post-processing, 120 candidates ({} dets)".format(r["postprocess_synthetic_detections"]),
         "{:.3f} ms".format(r["postprocess_synthetic_ms"]), ""),
        ("pre + post (worse post)", "{:.3f} ms".format(r["pre_post_ms"]),
         "target <= 2 ms: {}".format("met" if r["pre_post_ms"] <= 2.0 else "NOT met")),
        ("Detector(img)", "{:.2f} ms".format(r["detector_ms"]), ""),
        ("bare InferenceSession.run", "{:.2f} ms".format(r["bare_session_ms"]), ""),
        ("Detector / bare", "{:.3f}x".format(r["detector_over_bare"]),
         "target <= 1.08x: {}".format("met" if r["detector_over_bare"] <= 1.08 else "NOT met")),
        ("Detector / bare, minima", "{:.3f}x".format(r["detector_over_bare_min"]),
         "{:.2f} / {:.2f} ms; less sensitive to other load".format(r["detector_min_ms"], r["bare_session_min_ms"])),
        ("session.run vs IOBinding", "{:.2f} / {:.2f} ms".format(r["session_run_ms"], r["iobinding_ms"]), ""),
    ]
    lines = ["| measure (1 core, median of {} runs) | value | note |".format(r["runs"]), "|---|---|---|"]
    lines += ["| {} | {} | {} |".format(*row) for row in rows]
    if r.get("load_average"):
        lines.append("\nload average at the end: {:.2f} {:.2f} {:.2f} (other processes skew the ratios)".format(
            *r["load_average"]))
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="ONNX model (default: export yolo11n-dysample nc=4 at 384x672)")
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    p.add_argument("--force", action="store_true", help="replace an existing --json file")
    args = p.parse_args(argv)
    if args.json:
        from defectrt.fileio import check_output

        check_output(args.json, args.force)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or export_default(tmp)
        result = measure(model, args.runs, args.warmup)
    print(markdown(result))
    if args.json:
        from defectrt.fileio import atomic_write_bytes

        atomic_write_bytes(args.json, (json.dumps(result, indent=2) + "\n").encode(), force=args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
