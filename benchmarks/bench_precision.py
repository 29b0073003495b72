"""FP32 vs FP16 vs INT8 (both flavours) latency of one model on ONNX Runtime's CPU provider.

    python benchmarks/bench_precision.py [--model yolo11n] [--imgsz 640 | 384,672] [--val DATA] [--json out.json]

Exports the model (a registry name has random weights: latency does not depend on them; a checkpoint or
demo:screw has trained ones) with defectrt.export.onnx.export_onnx,
then makes every precision from that FP32 file with defectrt.export.precision:
  fp32       the export itself
  fp16       convert_fp16 (ModelOpt AutoCast)
  int8-cpu   quantize_int8(flavour="cpu")   ONNX Runtime QDQ, uint8 asymmetric activations, per-channel weights
  int8-trt   quantize_int8(flavour="trt", target_trt="10.3")  ModelOpt Q/DQ, FP16 outside the Q/DQ
  int8-trt8  quantize_int8(flavour="trt", target_trt="8.6")   ModelOpt Q/DQ, FP32 outside the Q/DQ
Calibration: --calib DIR, else synthetic images (latency does not depend on calibration quality).
A precision that needs ModelOpt when it is not installed is reported as skipped.

Timing (one process): one session per precision (CPU provider, all graph optimisations, --threads
intra-op threads or ORT's default), the same pre-processed blob (batch 1); --warmup runs each, then
--rounds rounds in which every precision runs --per-round times in turn (interleaved, so drift from
other load on the machine spreads over all of them). Latency = median (and p10 / p90) of all timed
runs of the model call; speed-up = FP32 median / median. Agreement with FP32 (box / score correlation)
on held-out synthetic images is reported as a sanity check only (random weights).

Accuracy (--val DATA, a trained model and --calib from its training images): every precision's file is
scored on DATA's val split by the runtime Detector (ONNX Runtime, conf 0.001, NMS IoU 0.6, the usual mAP
setting) and defectrt.data.val (pycocotools): mAP50, mAP50-95 and the change from FP32 in points.

The FP16 and int8-trt files are meant for TensorRT: on a CPU, ONNX Runtime runs FP16 by casting around
its FP32 kernels, and symmetric Q/DQ around FP16 without its fused integer kernels, so expect them slower
than FP32 here. int8-cpu is the CPU deployment form.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings

import numpy as np

PRECISIONS = ("fp32", "fp16", "int8-cpu", "int8-trt", "int8-trt8")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def parse_imgsz(text):
    parts = [int(p) for p in str(text).replace("x", ",").split(",") if p.strip()]
    if len(parts) == 1:
        return parts[0], parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise SystemExit("--imgsz {!r}: give 640 or 384,672".format(text))


def synthetic_images(folder, n, seed):
    import cv2

    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    for i in range(n):
        h, w = (int(v) for v in rng.integers(360, 1080, 2))
        img = np.empty((h, w, 3), np.uint8)
        img[:] = rng.integers(30, 220, 3)
        for _ in range(12):
            c = tuple(int(v) for v in rng.integers(0, 255, 3))
            cv2.circle(img, (int(rng.integers(0, w)), int(rng.integers(0, h))), int(rng.integers(8, 90)), c, -1)
        img = cv2.GaussianBlur(img, (5, 5), 0)
        cv2.imwrite(os.path.join(folder, "synth{:04d}.jpg".format(i)), img)
    return folder


def make_models(args, work, calib):
    from defectrt.export import precision as P
    from defectrt.export.onnx import export_onnx

    paths, notes = {}, {}
    fp32 = os.path.join(work, "fp32.onnx")
    t = time.perf_counter()
    if not (args.reuse and os.path.isfile(fp32)):
        export_onnx(args.model, fp32, imgsz=args.imgsz, grid_sample=args.grid_sample, force=True)
        log("exported {} at {}x{} in {:.1f} s".format(args.model, args.imgsz[0], args.imgsz[1], time.perf_counter() - t))
    paths["fp32"] = fp32
    int8 = {"calib_count": args.calib_count, "seed": args.calib_seed}
    makers = {
        "fp16": lambda out: P.convert_fp16(fp32, out),
        "int8-cpu": lambda out: P.quantize_int8(fp32, out, calib, flavour="cpu", **int8),
        "int8-trt": lambda out: P.quantize_int8(fp32, out, calib, flavour="trt", target_trt="10.3", **int8),
        "int8-trt8": lambda out: P.quantize_int8(fp32, out, calib, flavour="trt", target_trt="8.6", **int8),
    }
    for name in args.precisions:
        if name == "fp32":
            continue
        out = os.path.join(work, name + ".onnx")
        if args.reuse and os.path.isfile(out):
            paths[name] = out
            continue
        t = time.perf_counter()
        try:
            if os.path.exists(out):
                os.remove(out)  # a file from an earlier run in --keep (the precision functions never clobber)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                makers[name](out)
        except Exception as exc:  # a missing extra is a skip, anything else is reported
            notes[name] = "{}: {}".format(type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
            log("{}: skipped ({})".format(name, notes[name]))
            continue
        log("{} made in {:.1f} s".format(name, time.perf_counter() - t))
        paths[name] = out
    return paths, notes


def session(path, threads):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        so.intra_op_num_threads = threads
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def agreement(ref, out):
    def corr(a, b):
        a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
        return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")

    return {"box_corr": corr(ref[:, :4], out[:, :4]), "score_corr": corr(ref[:, 4:], out[:, 4:]),
            "score_max_abs_err": float(np.abs(ref[:, 4:] - out[:, 4:]).max())}


def measure(paths, blob, held_out, args):
    sessions = {k: session(p, args.threads) for k, p in paths.items()}
    feeds = {k: {s.get_inputs()[0].name: blob} for k, s in sessions.items()}
    for k, s in sessions.items():
        for _ in range(args.warmup):
            s.run(None, feeds[k])
    times = {k: [] for k in sessions}
    for r in range(args.rounds):
        for k, s in sessions.items():
            for _ in range(args.per_round):
                t = time.perf_counter()
                s.run(None, feeds[k])
                times[k].append((time.perf_counter() - t) * 1e3)
        log("round {}/{}: ".format(r + 1, args.rounds) + ", ".join(
            "{} {:.1f}".format(k, statistics.median(v[-args.per_round:])) for k, v in times.items()))
    ref = [sessions["fp32"].run(None, {sessions["fp32"].get_inputs()[0].name: x})[0] for x in held_out]
    results = {}
    for k, v in times.items():
        v = np.asarray(v)
        results[k] = {"median_ms": float(np.median(v)), "p10_ms": float(np.percentile(v, 10)),
                      "p90_ms": float(np.percentile(v, 90)), "runs": int(v.size),
                      "size_mb": os.path.getsize(paths[k]) / 1e6}
        if k != "fp32":
            out = [sessions[k].run(None, {sessions[k].get_inputs()[0].name: x})[0] for x in held_out]
            results[k]["vs_fp32"] = agreement(np.concatenate(ref), np.concatenate(out))
    base = results["fp32"]["median_ms"]
    for k in results:
        results[k]["speedup_vs_fp32"] = base / results[k]["median_ms"]
    return results


def accuracy(paths, results, args):
    from defectrt.data.dataset import load_dataset
    from defectrt.data.val import evaluate
    from defectrt.runtime.detector import Detector

    dataset = load_dataset(args.val, split="val")
    for k, path in paths.items():
        t = time.perf_counter()
        det = Detector(path, backend="onnxruntime", conf=0.001, iou=0.6, threads=args.threads)
        m = evaluate(det, dataset)
        results[k]["val"] = {key: m[key] for key in ("precision", "recall", "map50", "map50_95")}
        results[k]["val"]["per_class_map50_95"] = {n: c["map50_95"] for n, c in m["per_class"].items()}
        log("{} val ({} images): mAP50 {:.4f} mAP50-95 {:.4f} in {:.0f} s".format(
            k, len(dataset), m["map50"], m["map50_95"], time.perf_counter() - t))
    ref = results["fp32"]["val"]
    for k in paths:
        v = results[k]["val"]
        v["delta_map50_points"] = 100.0 * (v["map50"] - ref["map50"])
        v["delta_map50_95_points"] = 100.0 * (v["map50_95"] - ref["map50_95"])


def environment():
    import onnxruntime as ort

    env = {"python": platform.python_version(), "machine": platform.machine(), "onnxruntime": ort.__version__,
           "cpu_count": os.cpu_count()}
    try:
        from defectrt.bench.environment import cpu_info

        env["cpu"] = cpu_info()
    except Exception:
        env["cpu"] = platform.processor() or None
    try:
        import modelopt

        env["modelopt"] = modelopt.__version__
    except ImportError:
        env["modelopt"] = None
    try:
        env["loadavg_start"] = os.getloadavg()
    except OSError:
        pass
    return env


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="yolo11n", help="registry name or checkpoint (default yolo11n)")
    p.add_argument("--imgsz", default="640", help="640 or H,W such as 384,672 (default 640)")
    p.add_argument("--grid-sample", default="auto", choices=("auto", "native", "lowered"),
                   help="DySample sampling form for -dysample models (default auto)")
    p.add_argument("--precisions", default=",".join(PRECISIONS), help="comma list of " + ", ".join(PRECISIONS))
    p.add_argument("--calib", help="calibration image folder (default: synthetic images)")
    p.add_argument("--calib-count", type=int, default=32, help="calibration images (default 32: latency only)")
    p.add_argument("--calib-seed", type=int, default=0, help="seed of the calibration sample drawn from --calib "
                   "(default 0; other seeds show how much the sample alone moves INT8 accuracy)")
    p.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: its own choice)")
    p.add_argument("--warmup", type=int, default=10, help="warm-up runs per precision (default 10)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--per-round", type=int, default=10, help="timed runs per precision and round (default 10)")
    p.add_argument("--val", metavar="DATA", help="dataset whose val split scores every precision (mAP)")
    p.add_argument("--keep", help="folder to keep the ONNX files in (default: a temporary folder)")
    p.add_argument("--reuse", action="store_true", help="with --keep: time the ONNX files already there instead of "
                   "making them again")
    p.add_argument("--json", help="write the results here (JSON)")
    p.add_argument("--force", action="store_true", help="replace an existing --json file")
    args = p.parse_args(argv)
    args.imgsz = parse_imgsz(args.imgsz)
    args.precisions = [s.strip() for s in args.precisions.split(",") if s.strip()]
    unknown = [s for s in args.precisions if s not in PRECISIONS]
    if unknown:
        p.error("unknown precision(s) {}; choose from {}".format(", ".join(unknown), ", ".join(PRECISIONS)))
    if "fp32" not in args.precisions:
        args.precisions.insert(0, "fp32")
    if args.json:
        from defectrt.fileio import check_output

        check_output(args.json, args.force)  # fail now, not after the slow part

    from defectrt.runtime.preprocess import preprocess
    import cv2

    with tempfile.TemporaryDirectory(prefix="bench-precision-") as tmp:
        work = args.keep or tmp
        os.makedirs(work, exist_ok=True)
        calib = args.calib or synthetic_images(os.path.join(tmp, "calib"), args.calib_count, seed=0)
        held = synthetic_images(os.path.join(tmp, "held_out"), 4, seed=1)
        paths, notes = make_models(args, work, calib)
        images = [cv2.imread(os.path.join(held, f)) for f in sorted(os.listdir(held))]
        held_out = [preprocess(img, args.imgsz)[0] for img in images]
        results = measure(paths, held_out[0], held_out, args)
        if args.val:
            accuracy(paths, results, args)

    report = {
        "benchmark": "precision",
        "command": [os.path.basename(sys.executable)] + [os.path.relpath(sys.argv[0])] + list(sys.argv[1:] if argv is None else argv),
        "model": args.model, "imgsz": list(args.imgsz), "batch": 1, "grid_sample": args.grid_sample,
        "settings": {"warmup": args.warmup, "rounds": args.rounds, "per_round": args.per_round, "threads": args.threads,
                     "calib_count": args.calib_count, "calib_seed": args.calib_seed,
                     "calib": "synthetic" if not args.calib else args.calib,
                     "val": args.val},
        "environment": environment(),
        "results": results, "skipped": notes,
    }
    header = "{:<10} {:>10} {:>9} {:>9} {:>8} {:>8} {:>9} {:>9}".format(
        "precision", "median ms", "p10", "p90", "speedup", "MB", "box corr", "score r")
    print(header)
    for k in PRECISIONS:
        if k not in results:
            if k in notes:
                print("{:<10} skipped: {}".format(k, notes[k]))
            continue
        r = results[k]
        agree = r.get("vs_fp32", {})
        print("{:<10} {:>10.2f} {:>9.2f} {:>9.2f} {:>7.2f}x {:>8.2f} {:>9} {:>9}".format(
            k, r["median_ms"], r["p10_ms"], r["p90_ms"], r["speedup_vs_fp32"], r["size_mb"],
            "{:.4f}".format(agree["box_corr"]) if agree else "-", "{:.4f}".format(agree["score_corr"]) if agree else "-"))
    if args.val:
        print("\n{:<10} {:>8} {:>9} {:>16}".format("precision", "mAP50", "mAP50-95", "d mAP50-95 (pt)"))
        for k in PRECISIONS:
            if k in results:
                v = results[k]["val"]
                print("{:<10} {:>8.4f} {:>9.4f} {:>+16.2f}".format(k, v["map50"], v["map50_95"], v["delta_map50_95_points"]))
    if args.json:
        from defectrt.fileio import atomic_write_bytes

        atomic_write_bytes(args.json, (json.dumps(report, indent=2) + "\n").encode(), force=args.force)
        log("wrote " + args.json)
    return report


if __name__ == "__main__":
    main()
