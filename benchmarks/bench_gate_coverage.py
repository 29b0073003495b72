"""Does the accuracy gate's interval cover? One FP32 / INT8 pair scored on many independent val sets.

    python benchmarks/bench_gate_coverage.py --model demo:pcb --kind pcb --imgsz 640,640 --flavour trt \\
        [--calib-seed 102] [--calib-n 48] [--calib-count 32] [--sets 12] [--set-n 200] [--first-seed 501] \\
        [--bundle DIR] [--work DIR] [--json out.json]

The gate (defectrt.export.accuracy_gate) puts a 90% paired-bootstrap interval over images on the mAP50-95
change it measures on the user's val split. Whether that interval is honest is a property of the data and
of mAP, not of our code alone, so this measures it: one INT8 PTQ bundle (built as `export build --precision
int8` builds it, or --bundle) and FP32 are scored on --sets independent synthetic sets (seeds --first-seed,
+1, ...; --set-n images each), and on all of them pooled. Reported per set: the measured change and its
interval; over the sets: the spread of the measured change (its standard deviation between sets, the
honest error of one set) against the bootstrap's standard error (half-width / 1.645), and how often the
pooled change lies outside a set's interval (90% target: 5% beyond each end). A ratio well above 1 means
the interval is too narrow for this data and a gate judged on it ships on luck more often than it says.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings

Z90 = 1.6449  # two-sided 90%: the half-width of a normal interval in standard errors


def summarize(sets, pooled_change):
    """Spread and coverage of the per-set figures around the pooled change (module docstring)."""
    import numpy as np

    changes = np.array([s["change_points"] for s in sets], float)
    ses = np.array([(s["interval"][1] - s["interval"][0]) / (2 * Z90) for s in sets], float)
    sd = float(np.std(changes, ddof=1)) if len(changes) > 1 else None
    return {"sets": len(sets), "pooled_change_points": round(pooled_change, 3),
            "mean_change_points": round(float(changes.mean()), 3),
            "sd_between_sets": None if sd is None else round(sd, 3),
            "mean_bootstrap_se": round(float(ses.mean()), 3),
            "sd_over_bootstrap_se": None if sd is None else round(sd / float(ses.mean()), 2),
            "pooled_below_interval": int(sum(pooled_change < s["interval"][0] for s in sets)),
            "pooled_above_interval": int(sum(pooled_change > s["interval"][1] for s in sets))}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="demo:pcb")
    ap.add_argument("--kind", default="pcb")
    ap.add_argument("--imgsz", default="640,640")
    ap.add_argument("--flavour", default="trt", choices=("cpu", "trt"))
    ap.add_argument("--calib-seed", type=int, default=102)
    ap.add_argument("--calib-n", type=int, default=48)
    ap.add_argument("--calib-count", type=int, default=32)
    ap.add_argument("--sets", type=int, default=12)
    ap.add_argument("--set-n", type=int, default=200)
    ap.add_argument("--first-seed", type=int, default=501)
    ap.add_argument("--bundle", help="an INT8 bundle to score instead of building one")
    ap.add_argument("--work", help="keep data and bundles here (default: a temporary folder)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from defectrt.data.dataset import load_dataset
    from defectrt.data.metrics import detection_metrics
    from defectrt.export.accuracy_gate import measure, resolution
    from defectrt.export.bundle import build_bundle
    from defectrt.export.onnx import export_onnx

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_int8_gate import dataset_maker, log, parse_imgsz, write_result

    imgsz = parse_imgsz(args.imgsz)
    work = args.work or tempfile.mkdtemp(prefix="bench-coverage-")
    t0 = time.time()

    data = dataset_maker(work, args.kind)
    fp32 = os.path.join(work, "fp32.onnx")
    if not os.path.isfile(fp32):
        export_onnx(args.model, fp32, imgsz=imgsz)
    bundle = args.bundle
    if not bundle:
        bundle = os.path.join(work, "{}-calib{}-ptq.bundle".format(args.flavour, args.calib_seed))
        if not os.path.isdir(bundle):
            calib = data("calib-{}".format(args.calib_seed), args.calib_seed, args.calib_n, 1)
            build_bundle(args.model, bundle, precision="int8", int8_flavour=args.flavour, calib=calib,
                         calib_count=args.calib_count, imgsz=imgsz, force=True)
    int8 = os.path.join(bundle, "model.onnx")
    sets, all_ref, all_got, names = [], [], [], None
    for i in range(args.sets):
        seed = args.first_seed + i
        ds = load_dataset(data("set-{}-{}".format(seed, args.set_n), seed, 1, args.set_n), "val")
        names = ds.names
        ref_pairs, got_pairs = [], []
        ref = measure(fp32, ds, 0.25, keep=ref_pairs)
        got = measure(int8, ds, 0.25, keep=got_pairs)
        res = resolution(ref_pairs, got_pairs, len(names), 0.5)
        entry = {"seed": seed, "images": len(ds), "fp32_map50_95": ref["map50_95"], "int8_map50_95": got["map50_95"],
                 "change_points": round(100.0 * (got["map50_95"] - ref["map50_95"]), 3),
                 "interval": res["change_interval"]}
        sets.append(entry)
        all_ref += ref_pairs
        all_got += got_pairs
        log("set seed {}: {:+.2f} points, 90% interval {}".format(seed, entry["change_points"], entry["interval"]))
    truths = [t for t, _ in all_ref]
    pooled = 100.0 * (detection_metrics(truths, [d for _, d in all_got], names)["map50_95"]
                      - detection_metrics(truths, [d for _, d in all_ref], names)["map50_95"])
    summary = summarize(sets, pooled)
    log("pooled over {} images: {:+.2f} points; {}".format(len(truths), pooled, summary))
    result = {"model": args.model, "flavour": args.flavour, "bundle": bundle, "summary": summary, "sets": sets,
              "args": vars(args), "seconds": round(time.time() - t0),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    return write_result(result, args.json)


if __name__ == "__main__":
    sys.exit(main())
