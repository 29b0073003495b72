"""Scaling with model size (yolo11n / s / m) and batch size (1, 2, 4): ONNX Runtime CPU, FP32.

    .venv/bin/python benchmarks/bench_scaling.py [--quick] [--imgsz N] [--repeats N] [--duration-s S] [--threads N] [--out DIR]

Each scale is exported once with a dynamic batch (defectrt.export.onnx.export_onnx, nc=4, random weights)
and timed per batch size (model call on a pre-made blob).  Per-image latency = batch latency / batch; the
efficiency column places each cell against the numpy matmul peak measured in the same run - it shows
whether a bigger model or batch uses the machine better (it usually does, up to the memory bound).

Writes benchmarks/results/scaling/{results.json, results.md, scaling.png}, replacing that folder.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # noqa: E402

NAME = "scaling"
SCALES = ("n", "s", "m")
BATCHES = (1, 2, 4)
NC = 4


def main(argv=None):
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--imgsz", type=int, default=640, help="square input size (default 640)")
    args = p.parse_args(argv)
    settings = C.settings_from(args)
    settings["imgsz"] = args.imgsz
    from defectrt.bench.flops import count_flops
    from defectrt.export.onnx import export_onnx
    from defectrt.models import create
    from defectrt.runtime.detector import Detector

    peak = C.measure_peak()
    report = C.new_report(NAME, settings, peak)
    cells, entries, flops = [], [], {}
    imgsz = (args.imgsz, args.imgsz)
    with C.workdir() as tmp:
        for s in SCALES:
            name = "yolo11" + s
            path = os.path.join(tmp, name + ".onnx")
            C.log("export " + name)
            try:
                export_onnx(create(name, nc=NC).eval(), path, imgsz=imgsz, dynamic_batch=True, force=True)
                det = Detector(path, backend="onnxruntime", threads=settings["threads"])
            except Exception as exc:
                for b in BATCHES:
                    entries.append(C.unavailable(name, "failed", "{}: {}".format(type(exc).__name__, exc), precision="fp32",
                                                 imgsz=list(imgsz), batch=b))
                continue
            flops[name] = count_flops(path, batch=1)["gflops"]
            for b in BATCHES:
                fields = {"model": name, "precision": "fp32", "imgsz": list(imgsz), "variant": name,
                          "backend": "onnxruntime", "providers": ["CPUExecutionProvider"]}
                cells.append(C.infer_cell((name, b), det, b, fields))
        C.run_rounds(cells, settings)
    # measured again after the rounds and the best kept: a peak taken once while the machine was busy made
    # the efficiency column print 173% (issue 19); flops.efficiency() also leaves out anything above the peak
    peak = max(peak, C.measure_peak(), key=lambda p: p["gflops"])
    report["machine"]["peak_gflops"] = peak
    results = {cell.key: C.cell_result(cell, flops[cell.key[0]], peak["gflops"]) for cell in cells}
    for (name, b), e in results.items():
        e["per_image_ms"] = e["median_ms"] / b
        n1 = results.get(("yolo11n", b))
        b1 = results.get((name, 1))
        e["x_yolo11n_same_batch"] = e["median_ms"] / n1["median_ms"] if n1 else None
        e["throughput_gain_vs_batch1"] = e["throughput"]["images_per_s"] / b1["throughput"]["images_per_s"] if b1 else None
    report["results"] = list(results.values()) + entries
    return C.publish(NAME, args.out, report, markdown, plot)


def markdown(report):
    rows = []
    for e in sorted(report["results"], key=lambda e: (e["model"], e["batch"])):
        head = [e["model"], "{}x{}".format(*e["imgsz"]), e["batch"]]
        if e["status"] != "ok":
            rows.append(head + ["-"] * 8 + ["{}: {}".format(e["status"], e.get("error", ""))])
            continue
        comp = e["stages"].get("compute") or e["stages"]["end_to_end"]
        fl = e["flops"]
        rows.append(head + [
            C.fmt(e["median_ms"]), "{}..{}".format(C.fmt(e["spread_ms"][0]), C.fmt(e["spread_ms"][1])), C.fmt(comp["p99"]),
            C.fmt(e["per_image_ms"]), C.fmt(e["throughput"]["images_per_s"]), C.fmt(e["throughput_gain_vs_batch1"], 3),
            C.fmt(fl["gflops_per_image"]), "{:.1f}%".format(100 * fl["efficiency"]) if fl.get("efficiency") is not None else "-",
            "ok",
        ])
    header = ["model", "imgsz", "batch", "median (ms)", "spread (ms)", "p99 (ms)", "per image (ms)", "images/s",
              "images/s vs batch 1", "GFLOPs/img", "efficiency", "status"]
    head = C.header_md(report, "Scaling with model size and batch (ONNX Runtime, CPU, FP32)",
                       "median = latency of one batch; per image = median / batch.")
    return head + "\n" + C.md_table(header, rows) + "\n"


def plot(report, path):
    plt = C.pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for s in SCALES:
        name = "yolo11" + s
        pts = sorted((e["batch"], e["median_ms"], e["throughput"]["images_per_s"]) for e in report["results"]
                     if e["model"] == name and e["status"] == "ok")
        if not pts:
            continue
        a1.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
        a2.plot([p[0] for p in pts], [p[2] for p in pts], marker="o", label=name)
    for ax, ylabel in ((a1, "median batch latency (ms)"), (a2, "throughput (images/s)")):
        ax.set_xticks(list(BATCHES))
        ax.set_xlabel("batch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    a1.set_yscale("log")
    fig.suptitle("YOLO11 n/s/m x batch, ONNX Runtime CPU: {}".format(report["machine"]["label"]))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
