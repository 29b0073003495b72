"""INT8 PTQ vs PTQ + fallback vs QAT, both flavours, several calibration samples: mAP50-95 change on a fresh
set and ONNX Runtime CPU latency.

    python benchmarks/bench_int8_gate.py --model demo:screw --imgsz 384,672 --kind screw \\
        [--calib-sets 3] [--calib-count 64] [--gate-n 40] [--fresh-n 80] [--qat-epochs 1] \\
        [--flavours cpu,trt] [--methods ptq,default,qat] [--cells trt:1:default,...] [--work DIR] \\
        [--json out.json [--resume]] [--no-latency | --latency-only [--latency-set N]]
        [--fresh-seed S --fresh-n N --rescore] [--gate-seed S]

Every INT8 model is made by `defectrt.export.bundle.build_bundle` (what `export build` ships):
  ptq       --precision int8, gate measured on the gate set but never refusing (accept_loss, no fallback)
  default   what `export build --val` ships by default: gate 0.5 points / 2.0 recall points judged at the
            low end of the gate split's 90% interval, fallback on, refusing when even the fallback fails
            (recorded as refused). Where PTQ passes the default gate, that is the shipped model (not built
            twice). `strict` (runs 3-4, when the interval's end was the --strict-gate option) is the same.
  measured  as default with --no-strict-gate: the measured loss alone against the limit (the default up to
            run 3)
  qat       --qat-epochs N fine-tuning on the calibration set's images (defectrt.train.qat), then the
            same PTQ export (first --qat-sets calibration sets, or the --cells named)
Data (synthetic, `defectrt data synth --kind KIND`): --calib-sets labelled calibration sets (seeds 101,
102, ...; each set's train images are both the calibration sample and the QAT data), one gate set (seed
201 or --gate-seed, the `--val` of the build) and one fresh set (seed 301) that no step sees before the final scoring.
Accuracy: mAP50-95 of each bundle's model.onnx on the fresh set by the runtime Detector (ONNX Runtime,
conf 0.001, NMS IoU 0.6) minus FP32's, in points, with the fresh set's own 90% paired-bootstrap interval of
that change (what the fresh set can resolve; the gate's `resolution`). --rescore builds nothing: it scores
the bundles of the rows in --json that still exist on another fresh set (--fresh-seed, --fresh-n) and adds
the figures to each row's "rescores" (a larger independent set to settle a cell the first one cannot).
Speed: median latency of FP32 and each INT8 model of calibration set --latency-set (1), batch 1, measured
in interleaved rounds in one process (ONNX Runtime CPU provider); the `trt` models' CPU latency is not
TensorRT's (unverified on hardware). On a shared machine run the cells with --no-latency and time them
alone: flock /tmp/bench.lock ... --latency-only.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def parse_imgsz(text):
    parts = [int(p) for p in str(text).replace("x", ",").split(",") if p.strip()]
    return (parts[0], parts[-1])


def dataset_maker(work, kind):
    """data(name, seed, train, val) -> the folder under `work` of a synthetic set with that many train and val
    images (images 0 .. train-1 train, the rest val), made once."""
    from defectrt.data.synth import write_dataset

    def data(name, seed, train, val):
        out = os.path.join(work, name)
        if not os.path.isdir(out):
            write_dataset(out, kind=kind, n=train + val, seed=seed, val_fraction=val / float(train + val),
                          progress=False)
        return out

    return data


def write_result(result, path):
    """Print the result as JSON and write it to `path` (if given); the exit status 0."""
    text = json.dumps(result, indent=1)
    if path:
        with open(path, "w") as f:
            f.write(text)
    print(text)
    return 0


def fresh_score(onnx_path, fresh, ref):
    """mAP50-95 of `onnx_path` on the fresh set, its change from FP32 in points and the fresh set's 90%
    interval of that change. ref: (FP32 metrics, FP32 per-image pairs) on the same set."""
    from defectrt.export.accuracy_gate import measure, resolution

    pairs = []
    got = measure(onnx_path, fresh, 0.25, keep=pairs)
    res = resolution(ref[1], pairs, len(fresh.names), 0.5)
    return got, {"fresh_map50_95": got["map50_95"],
                 "fresh_change_points": round(100.0 * (got["map50_95"] - ref[0]["map50_95"]), 3),
                 "fresh_change_interval": res and res["change_interval"]}


def run_one(args, flavour, k, calib, method, gate_set, fresh, ref, rows, imgsz, work):
    from defectrt.errors import DefectrtError
    from defectrt.export.accuracy_gate import GateOptions
    from defectrt.export.bundle import build_bundle

    out = os.path.join(work, "{}-{}-{}.bundle".format(flavour, k + 1, method))
    row = {"flavour": flavour, "calib_set": k + 1, "method": method, "path": out}
    ptq = next((r for r in rows if r["flavour"] == flavour and r["calib_set"] == k + 1 and r["method"] == "ptq"), None)
    if method == "default" and ptq is not None and ptq.get("gate_passed_default"):
        # The default gate passes the PTQ model as it is: the shipped bundle is that model.
        row.update({key: ptq.get(key) for key in ("calibration_sample", "gate_set_loss", "fresh_map50_95",
                                                 "fresh_change_points", "fresh_change_interval")})
        row.update({"kept_layers": [], "note": "PTQ passed the default gate: same model", "path": ptq["path"]})
        return _log_row(row)
    shipped = method in ("default", "strict", "measured")  # gated as `export build --val` ships
    gate = GateOptions(accept_loss=not shipped, fallback=shipped, strict=method != "measured",
                       sensitivity_images=args.sensitivity_images)
    t0 = time.time()
    try:
        manifest = build_bundle(args.model, out, precision="int8", int8_flavour=flavour, calib=calib,
                                calib_count=args.calib_count, val=gate_set, imgsz=imgsz, gate=gate,
                                qat_epochs=args.qat_epochs if method == "qat" else 0, force=True)
    except DefectrtError as exc:  # the default gate refused even after the fallback: nothing shipped
        rec = getattr(exc, "record", None) or {}
        fb = rec.get("fallback") or {}
        row.update({"refused": str(exc), "build_s": round(time.time() - t0, 1), "path": None,
                    "gate_set_loss_first_try": (rec.get("first_try") or {}).get("map50_95_loss"),
                    "fallback_steps": fb.get("steps"), "fallback_ranking": fb.get("ranking"),
                    "fallback_layers": fb.get("layers"), "gate_resolution": rec.get("resolution")})
        return _log_row(row)
    got, scored = fresh_score(os.path.join(out, "model.onnx"), fresh, ref)
    row.update(scored)
    ref = ref[0]
    g = manifest.accuracy_gate
    fb = g.get("fallback") or {}
    row.update({"calibration_sample": manifest.int8_calibration_sample,
                "gate_set_loss": g["measured"]["map50_95_loss"],
                "gate_passed_default": not g["failures"] if not shipped else g["passed"],
                "gate_judged_loss": g["measured"].get("judged_loss"),
                "fresh_recall_change": {n: round(100.0 * ((got["per_class"][n]["recall_at_conf"] or 0)
                                                          - (ref["per_class"][n]["recall_at_conf"] or 0)), 2)
                                        for n in ref["per_class"] if ref["per_class"][n]["instances"]},
                "kept_layers": fb.get("kept") or [], "fallback_steps": fb.get("steps"),
                "fallback_layers": fb.get("layers"), "gate_set_loss_first_try": (g.get("first_try") or {}).get(
                    "map50_95_loss"),
                "kept_conv_macs_share": fb.get("kept_conv_macs_share"), "gate_resolution": g.get("resolution"),
                "fallback_latency": fb.get("latency_ms_onnxruntime_cpu"), "qat": manifest.int8_qat,
                "build_s": round(time.time() - t0, 1)})
    return _log_row(row)


def _load():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _log_row(row):
    if row.get("refused"):
        log("{} calib{} {}: REFUSED by the gate ({})".format(row["flavour"], row["calib_set"], row["method"],
                                                          row["refused"][:200]))
    else:
        log("{} calib{} {}: fresh mAP50-95 {:+.2f} points ({} layers kept), gate set -{:.2f}, {} s".format(
            row["flavour"], row["calib_set"], row["method"], row["fresh_change_points"], len(row["kept_layers"]),
            row["gate_set_loss"], row.get("build_s", 0)))
    return row


def rescore(args, rows, previous, fresh, ref):
    for row in rows:
        path = row.get("path") and os.path.join(row["path"], "model.onnx")
        if not path or not os.path.isfile(path) or row.get("note") or any(
                e["fresh_seed"] == args.fresh_seed and e["fresh_images"] == len(fresh)
                for e in row.get("rescores", ())):
            continue  # gone, the same model as another row, or already scored on this set
        _, scored = fresh_score(path, fresh, ref)
        entry = {"fresh_seed": args.fresh_seed, "fresh_images": len(fresh), "fp32_map50_95": ref[0]["map50_95"],
                 "map50_95": scored["fresh_map50_95"], "change_points": scored["fresh_change_points"],
                 "change_interval": scored["fresh_change_interval"]}
        row.setdefault("rescores", []).append(entry)
        for other in rows:  # a default row that shipped this very model
            if other is not row and other.get("note") and other.get("path") == row["path"]:
                other.setdefault("rescores", []).append(entry)
        log("{} calib{} {}: {} fresh images (seed {}): {:+.2f} points, 90% interval {}".format(
            row["flavour"], row["calib_set"], row["method"], len(fresh), args.fresh_seed, entry["change_points"],
            entry["change_interval"]))
    result = dict(previous, rows=rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="demo:screw")
    ap.add_argument("--kind", default="screw", help="synthetic data kind for the model (screw or pcb)")
    ap.add_argument("--imgsz", default="384,672")
    ap.add_argument("--calib-sets", type=int, default=3)
    ap.add_argument("--calib-n", type=int, default=80, help="images per calibration set (train split)")
    ap.add_argument("--calib-count", type=int, default=64)
    ap.add_argument("--gate-n", type=int, default=40)
    ap.add_argument("--fresh-n", type=int, default=80)
    ap.add_argument("--fresh-seed", type=int, default=301, help="seed of the fresh set (301: the benchmark's own)")
    ap.add_argument("--gate-seed", type=int, default=201, help="seed of the gate set, the builds' --val (201: the "
                    "benchmark's own)")
    ap.add_argument("--rescore", action="store_true",
                    help="build nothing: score the bundles of the rows in --json that still exist on this "
                         "fresh set and add the figures to each row's rescores")
    ap.add_argument("--qat-epochs", type=int, default=1)
    ap.add_argument("--flavours", default="cpu,trt")
    ap.add_argument("--methods", default="ptq,default,qat")
    ap.add_argument("--qat-sets", type=int, default=1, help="QAT on the first N calibration sets only")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--sensitivity-images", type=int, default=4)
    ap.add_argument("--cells", help="run only these cells, in this order: FLAVOUR:SET:METHOD,... "
                    "(e.g. trt:1:default,cpu:3:ptq); default: every set x flavour x method")
    ap.add_argument("--resume", action="store_true",
                    help="keep the rows already in --json / --json.partial and run only the cells not in them")
    ap.add_argument("--no-latency", action="store_true",
                    help="skip the latency rounds (time them later, alone, with --latency-only)")
    ap.add_argument("--latency-only", action="store_true",
                    help="only time FP32 and the --latency-set bundles of the rows in --json (under "
                         "flock /tmp/bench.lock on a shared machine)")
    ap.add_argument("--latency-set", type=int, default=1, help="time the bundles of this calibration set")
    ap.add_argument("--json")
    ap.add_argument("--work", help="keep data and bundles here (default: a temporary folder)")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from defectrt.data.dataset import load_dataset
    from defectrt.export.accuracy_gate import measure
    from defectrt.export.onnx import export_onnx
    from defectrt.export.sensitivity import compare_latency
    from defectrt.export.calibration import CalibrationReader

    imgsz = parse_imgsz(args.imgsz)
    work = args.work or tempfile.mkdtemp(prefix="bench-int8-")
    t_start = time.time()

    data = dataset_maker(work, args.kind)
    calib_sets = [data("calib{}".format(i + 1), 101 + i, args.calib_n, 1) for i in range(args.calib_sets)]
    gate_set = data("gate" if args.gate_seed == 201 else "gate-{}".format(args.gate_seed), args.gate_seed, 1,
                    args.gate_n)
    fresh_dir = "fresh" if args.fresh_seed == 301 else "fresh-{}-{}".format(args.fresh_seed, args.fresh_n)
    fresh = load_dataset(data(fresh_dir, args.fresh_seed, 1, args.fresh_n), "val")
    fp32 = os.path.join(work, "fp32.onnx")
    if not os.path.isfile(fp32):
        export_onnx(args.model, fp32, imgsz=imgsz)
    previous = {}
    if args.resume or args.latency_only or args.rescore:
        found = [p for p in (args.json, (args.json or "") + ".partial") if p and os.path.isfile(p)]
        if found:  # the newer of the final JSON and the partial one
            with open(max(found, key=os.path.getmtime)) as f:
                previous = json.load(f)
    ref_pairs = []  # FP32's per-image results: the paired interval of every change needs them
    ref = measure(fp32, fresh, 0.25, keep=ref_pairs)
    log("FP32 on the fresh set ({} images): mAP50-95 {:.4f}".format(len(fresh), ref["map50_95"]))
    rows = list(previous.get("rows", []))
    if args.rescore:
        return rescore(args, rows, previous, fresh, (ref, ref_pairs))
    if previous.get("fp32_fresh") and previous["fp32_fresh"]["map50_95"] != ref["map50_95"]:
        log("note: FP32 scores {} on this fresh set, {} in the resumed rows".format(
            ref["map50_95"], previous["fp32_fresh"]["map50_95"]))
    done = {(r["flavour"], r["calib_set"], r["method"]) for r in rows}
    if args.cells:
        cells = []
        for cell in args.cells.split(","):
            flavour, k, method = cell.strip().split(":")
            cells.append((flavour, int(k) - 1, method))
    else:
        cells = [(flavour, k, method) for k in range(len(calib_sets)) for flavour in args.flavours.split(",")
                 for method in args.methods.split(",") if not (method == "qat" and k >= args.qat_sets)]
    for flavour, k, method in ([] if args.latency_only else cells):
        if (flavour, k + 1, method) in done:
            continue
        row = run_one(args, flavour, k, calib_sets[k], method, gate_set, fresh, (ref, ref_pairs), rows, imgsz, work)
        row.update(finished=time.strftime("%H:%M UTC", time.gmtime()), load_average=_load())
        rows.append(row)
        if args.json:  # partial results survive an interrupted run
            with open(args.json + ".partial", "w") as f:
                json.dump({"fp32_fresh_map50_95": ref["map50_95"], "fp32_fresh": ref, "rows": rows}, f, indent=1)
    speed = dict(previous.get("latency_ms") or {})
    if not args.no_latency:
        speed, load_before = {}, _load()
        blob = CalibrationReader(os.path.join(calib_sets[0], "images", "train"), imgsz, calib_count=1).all()
        timed = [r for r in rows if r["calib_set"] == args.latency_set and r.get("path") and not r.get("note")
                 and os.path.isfile(os.path.join(r["path"], "model.onnx"))]
        paths = [fp32] + [os.path.join(r["path"], "model.onnx") for r in timed]
        labels = ["fp32"] + ["{}-{}".format(r["flavour"], r["method"]) for r in timed]
        for label, ms in zip(labels, compare_latency(paths, blob, rounds=args.rounds)):
            speed[label] = round(ms, 2)
        speed["load_average_before_after"] = [load_before, _load()]
        log("latency (ms, ONNX Runtime CPU, median of {} interleaved rounds): {}".format(args.rounds, speed))
    result = {"model": args.model, "imgsz": list(imgsz), "fresh_images": len(fresh), "fp32_fresh_map50_95": ref["map50_95"],
              "fp32_fresh": ref,
              "rows": rows, "latency_ms": speed, "args": vars(args), "seconds": round(time.time() - t_start),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    return write_result(result, args.json)


if __name__ == "__main__":
    sys.exit(main())
