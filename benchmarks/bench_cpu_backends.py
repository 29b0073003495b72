"""CPU backends side by side on demo:screw (issue #18): ONNX Runtime vs OpenVINO, FP32 / bf16 / INT8, against
the Ultralytics predictor on the same ONNX, and the throughput mode against one stream.

    python benchmarks/bench_cpu_backends.py --data DATA --bundles DIR [--ultralytics-python /tmp/ulvenv-bench/bin/python]

DATA: the fresh set (`defectrt data synth --kind screw --n 400 --imgsz 384 672 --seed 777 --val-fraction 0.5`).
DIR holds the bundles the script builds when missing (fp32_native, fp32 (lowered: the CPU default now), int8cpu,
bf16). Every latency is end to end (Detector.__call__ on a BGR image of the val set: letterbox, model, NMS), one
intra-op thread, rounds interleaved over all cells and, inside a round, call by call (the Ultralytics cell is its
script, run once per round in its own environment, benchmarks/ultralytics_predictor.py); a cell's figure is the
median of its round medians, ratios the median of per-round ratios (wall time; CPU time as a second reading).
Throughput: images/s of Detector.stream at two threads, one stream (inflight None) vs inflight=2 (one thread
per request), with each form's "two cores' ceiling" (twice its one-thread rate). OpenVINO runs the INT8 `cpu`
bundle three ways: qdq "weighted" (its default: INT8 convolutions, f32 in between), the same with bf16 in
between, and qdq "all" (every Q/DQ pair of the file, as ONNX Runtime runs it). Accuracy: mAP50-95 of each form
on the val split, measured here.
Writes benchmarks/results/cpu_backends/{results.json, results.md}.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def build_bundles(folder, data):
    from defectrt.export.bundle import build_bundle

    specs = {
        "fp32_native": dict(precision="fp32", grid_sample="native"),
        "fp32": dict(precision="fp32"),
        "int8cpu": dict(precision="int8", int8_flavour="cpu", calib=data, calib_count=200),
        "bf16": dict(precision="bf16", val=data),
    }
    out = {}
    for name, kw in specs.items():
        path = os.path.join(folder, "screw_{}.bundle".format(name))
        if not os.path.isfile(os.path.join(path, "manifest.json")):
            log("building {}".format(path))
            build_bundle("demo:screw", path, engine="never", force=True, **kw)
        out[name] = path
    return out


def val_images(data, n):
    import cv2

    folder = os.path.join(data, "images", "val")
    files = sorted(f for f in os.listdir(folder) if f.endswith(".png"))[:n]
    return folder, [cv2.imread(os.path.join(folder, f)) for f in files]


def time_cells(cells, images, iters):
    """One round: {cell: (median wall ms, median CPU ms)}. The cells take turns call by call (A B C A B C ...),
    so a burst of other jobs on a shared machine hits every cell of the round alike. CPU ms (process time,
    every thread of this process) is the second, load-robust reading of a one-thread cell."""
    for det in cells.values():
        det(images[0])
    wall = {k: [] for k in cells}
    cpu = {k: [] for k in cells}
    for i in range(iters):
        for key, det in cells.items():
            c0, t0 = time.process_time(), time.perf_counter()
            det(images[i % len(images)])
            wall[key].append((time.perf_counter() - t0) * 1e3)
            cpu[key].append((time.process_time() - c0) * 1e3)
    return {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in cells}


def time_stream(det, images, inflight, burst):
    frames = [images[i % len(images)] for i in range(burst)]
    list(det.stream(frames[: 2 * (inflight or 1)], inflight=inflight))
    t0 = time.perf_counter()
    list(det.stream(frames, inflight=inflight))
    return burst / (time.perf_counter() - t0)


def ultralytics_round(python, onnx_path, images_dir, iters):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "u.json")
        subprocess.run([python, os.path.join(HERE, "ultralytics_predictor.py"), onnx_path, images_dir, "--out", out,
                        "--iters", str(iters), "--threads", "1"], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        with open(out) as f:
            return json.load(f)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--bundles", required=True)
    p.add_argument("--ultralytics-python", help="python of the throwaway Ultralytics environment")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iters", type=int, default=8)
    p.add_argument("--burst", type=int, default=24)
    p.add_argument("--no-accuracy", action="store_true")
    p.add_argument("--out", default=os.path.join(HERE, "results", "cpu_backends"))
    args = p.parse_args()

    import cv2

    from defectrt.runtime.detector import Detector

    cv2.setNumThreads(1)
    bundles = build_bundles(args.bundles, args.data)
    images_dir, images = val_images(args.data, 8)
    ov_available = True
    try:
        import openvino  # noqa: F401
    except ImportError:
        ov_available = False
    cells = {
        "ort_fp32_native": Detector(bundles["fp32_native"], backend="onnxruntime", threads=1),
        "ort_fp32_lowered": Detector(bundles["fp32"], backend="onnxruntime", threads=1),
        "ort_int8cpu": Detector(bundles["int8cpu"], backend="onnxruntime", threads=1),
    }
    ov_options = {  # cell -> (bundle, OpenVINO options)
        "ov_fp32": ("fp32", {}),
        "ov_bf16": ("bf16", {}),
        "ov_int8cpu": ("int8cpu", {}),  # qdq "weighted": INT8 convolutions, float (f32) in between
        "ov_int8cpu_bf16": ("int8cpu", {"precision": "bf16"}),  # ... and bf16 in between
        "ov_int8cpu_allqdq": ("int8cpu", {"qdq": "all"}),  # the file's every Q/DQ pair, as before
    }
    if ov_available:
        for key, (form, opts) in ov_options.items():
            cells[key] = Detector(bundles[form], backend="openvino", threads=1, openvino=opts)
    streams = {}
    for be in (["onnxruntime"] + (["openvino"] if ov_available else [])):
        for form in ("fp32", "int8cpu") + (("bf16",) if be == "openvino" else ()):
            streams[(be, form)] = Detector(bundles[form], backend=be, threads=2)
    rounds = {k: [] for k in cells}
    cpu_rounds = {k: [] for k in cells}
    if args.ultralytics_python:
        rounds["ultralytics_fp32_native"] = []
    tput = {"{}/{}/{}".format(be, form, inf or 1): [] for (be, form) in streams for inf in (None, 2)}
    u_meta = None
    load_start = os.getloadavg()
    for r in range(args.rounds):
        t0 = time.perf_counter()
        for key, (wall, cpu) in time_cells(cells, images, args.iters).items():
            rounds[key].append(wall)
            cpu_rounds[key].append(cpu)
        if args.ultralytics_python:
            u = ultralytics_round(args.ultralytics_python, os.path.join(bundles["fp32_native"], "model.onnx"),
                                  images_dir, args.iters)
            rounds["ultralytics_fp32_native"].append(u["median_ms"])
            u_meta = {k: v for k, v in u.items() if k not in ("times_ms", "median_ms")}
        for (be, form), det in streams.items():
            for inf in (None, 2):
                tput["{}/{}/{}".format(be, form, inf or 1)].append(time_stream(det, images, inf, args.burst))
        log("round {}/{} in {:.0f} s: {}".format(r + 1, args.rounds, time.perf_counter() - t0,
                                                 {k: round(v[-1], 1) for k, v in rounds.items()}))
    med = {k: statistics.median(v) for k, v in rounds.items()}
    tmed = {k: statistics.median(v) for k, v in tput.items()}
    accuracy = {}
    if not args.no_accuracy:
        from defectrt.data.dataset import load_dataset
        from defectrt.data.val import evaluate

        ds = load_dataset(args.data, split="val")
        for key, det in cells.items():
            d2 = Detector(det.backend.path, backend=det.backend_name, conf=0.001, iou=0.6, threads=2,
                          openvino=dict(ov_options[key][1], precision=det.backend.precision)
                          if det.backend_name == "openvino" else None)
            m = evaluate(d2, ds)
            accuracy[key] = {k: m[k] for k in ("map50", "map50_95")}
            log("{}: mAP50-95 {:.4f}".format(key, m["map50_95"]))
    base = med["ort_fp32_native"]
    report = {"benchmark": "cpu_backends", "command": [os.path.basename(sys.executable)] + sys.argv,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rounds": rounds, "median_ms": med,
              "cpu_rounds": cpu_rounds,
              "ratio_vs_ort_fp32_native": {k: v / base for k, v in med.items()}, "throughput_images_per_s": tput,
              "throughput_median": tmed, "accuracy": accuracy, "ultralytics": u_meta,
              "settings": vars(args), "load_average_start": load_start,
              "load_average": os.getloadavg()}
    from defectrt.bench import environment

    report["environment"] = environment.collect()
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(report, f, indent=1, default=str)
    md = markdown(report)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(md)
    print(md)


def _per_round(report, key, base, which="rounds"):
    a, b = report[which][key], report[which][base]
    return statistics.median([x / y for x, y in zip(a, b)])


def markdown(report):
    med, acc = report["median_ms"], report["accuracy"]
    fp32_acc = (acc.get("ort_fp32_native") or {}).get("map50_95")
    cpu = report.get("cpu_rounds") or {}
    lines = ["| cell | median ms (end to end, 1 thread) | round medians | vs ORT FP32 native (median of per-round "
             "ratios) | same in CPU time | Ultralytics / this (per-round) | mAP50-95 | loss vs FP32 (points) |",
             "|---|---|---|---|---|---|---|---|"]
    ultra = "ultralytics_fp32_native" in report["rounds"]
    for k, v in med.items():
        a = (acc.get(k) or {}).get("map50_95")
        loss = "" if a is None or fp32_acc is None else "{:+.2f}".format((fp32_acc - a) * 100)
        lines.append("| {} | {:.1f} | {} | {:.2f}x | {} | {} | {} | {} |".format(
            k, v, " ".join("{:.0f}".format(x) for x in report["rounds"][k]),
            _per_round(report, k, "ort_fp32_native"),
            "{:.2f}x".format(_per_round(report, k, "ort_fp32_native", "cpu_rounds")) if k in cpu else "",
            "{:.2f}x".format(1 / _per_round(report, k, "ultralytics_fp32_native")) if ultra else "",
            "" if a is None else "{:.4f}".format(a), loss))
    t = report["throughput_images_per_s"]
    lines += ["", "| throughput (2 threads) | images/s, median | round values | inflight 2 / one stream (per round) "
              "| vs two cores' ceiling (per round) |", "|---|---|---|---|---|"]
    for k, v in report["throughput_median"].items():
        one = k.rsplit("/", 1)[0] + "/1"
        ratio = statistics.median([x / y for x, y in zip(t[k], t[one])])
        lines.append("| {} | {:.1f} | {} | {:.2f}x | {} |".format(
            k, v, " ".join("{:.1f}".format(x) for x in t[k]), ratio, _ceiling_share(report, k)))
    lines.append("")
    lines.append("Two cores' ceiling: 2 x (1000 / the same form's one-thread end-to-end ms) of the same round, i.e. both "
                 "cores busy with no loss; a one-stream layout close to it leaves the throughput mode little to gain.")
    lines.append("")
    lines.append("Load average (shared machine) at the start: {}; at the end: {}".format(
        " ".join("{:.1f}".format(x) for x in report.get("load_average_start") or ()),
        " ".join("{:.1f}".format(x) for x in report["load_average"])))
    return "\n".join(lines) + "\n"


_ONE_THREAD_CELL = {"onnxruntime/fp32": "ort_fp32_lowered", "onnxruntime/int8cpu": "ort_int8cpu",
                    "openvino/fp32": "ov_fp32", "openvino/int8cpu": "ov_int8cpu", "openvino/bf16": "ov_bf16"}


def _ceiling_share(report, key):
    """images/s of a throughput cell / (2 x images/s of the same form at one thread), median over rounds."""
    cell = _ONE_THREAD_CELL.get(key.rsplit("/", 1)[0])
    if cell not in report["rounds"]:
        return ""
    shares = [x / (2 * 1000.0 / ms) for x, ms in zip(report["throughput_images_per_s"][key], report["rounds"][cell])]
    return "{:.2f}".format(statistics.median(shares))


def render(path):
    with open(path) as f:
        print(markdown(json.load(f)))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--render":  # re-render a results.json
        render(sys.argv[2])
    else:
        main()
