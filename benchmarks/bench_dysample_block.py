"""DySample block micro-benchmark: native GridSample vs lowered (gather) sampling vs nearest upsampling.

    .venv/bin/python benchmarks/bench_dysample_block.py [--quick] [--repeats N] [--duration-s S] [--threads N] [--out DIR]

Each block alone - defectrt.models.dysample.DySample(C, sample_mode="native" | "lowered") and
torch.nn.Upsample(scale_factor=2, mode="nearest") - is exported to ONNX (TorchScript exporter, opset 17,
input (1, C, H, W), output (1, C, 2H, 2W)) and timed on ONNX Runtime (CPU) for C = 64, 128 at 20x20,
40x40, 80x80 (the P5 / P4 / P3 feature sizes of a 640 input).  FLOPs count DySample's 1x1 offset conv
only (GridSample / gathers / resize are data movement, not counted), so the efficiency column is near
zero by construction: these blocks are memory-bound, and the table also gives the output bytes per second.

Writes benchmarks/results/dysample_block/{results.json, results.md, dysample_block.png}, replacing it.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # noqa: E402

from defectrt.runtime.backend import Backend  # noqa: E402

NAME = "dysample_block"
CHANNELS = (64, 128)
SIZES = (20, 40, 80)
METHODS = ("native", "lowered", "nearest")


def build(method, c):
    import torch

    if method == "nearest":
        return torch.nn.Upsample(scale_factor=2, mode="nearest").eval()
    from defectrt.models.dysample import DySample

    torch.manual_seed(0)
    return DySample(c, sample_mode=method).eval()


def export(module, c, hw, path):
    import warnings

    import torch

    x = torch.randn(1, c, hw, hw)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), path, dynamo=False, opset_version=17, input_names=["x"], output_names=["y"],
                          do_constant_folding=True)
    return x.numpy()


class BlockBackend(Backend):
    """A bare ONNX Runtime session over one block (timed like the CPU backend: compute on the host)."""

    name = "onnxruntime"
    providers = ["CPUExecutionProvider"]
    device = "cpu"

    def __init__(self, path, threads):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.inter_op_num_threads = 1
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(path, sess_options=opts, providers=self.providers)

    def infer(self, x):
        return self.session.run(["y"], {"x": x})[0]


def main(argv=None):
    args = C.base_parser(__doc__.splitlines()[0]).parse_args(argv)
    settings = C.settings_from(args)
    import numpy as np

    from defectrt.bench import timing
    from defectrt.bench.flops import count_flops

    peak = C.measure_peak()
    report = C.new_report(NAME, settings, peak)
    cells, entries, flops = [], [], {}
    with C.workdir() as tmp:
        for c in CHANNELS:
            for hw in SIZES:
                for method in METHODS:
                    label = "DySample {}".format(method) if method != "nearest" else "Upsample nearest"
                    path = os.path.join(tmp, "{}_{}_{}.onnx".format(method, c, hw))
                    fields = {"model": label, "precision": "fp32", "imgsz": [hw, hw], "channels": c, "method": method,
                              "backend": "onnxruntime", "providers": ["CPUExecutionProvider"]}
                    try:
                        x = export(build(method, c), c, hw, path)
                        be = BlockBackend(path, settings["threads"])
                        y = be.infer(x)
                    except Exception as exc:
                        entries.append(C.unavailable(label, "failed", "{}: {}".format(type(exc).__name__, exc), batch=1,
                                                     **{k: v for k, v in fields.items() if k != "model"}))
                        continue
                    assert y.shape == (1, c, 2 * hw, 2 * hw), y.shape
                    flops[(label, c, hw)] = count_flops(path)["gflops"]
                    query, absent = timing.model_query(be.infer, np.ascontiguousarray(x), be)
                    fields["output_bytes"] = int(y.nbytes)
                    cells.append(C.Cell((label, c, hw), query, 1, fields, absent))
        C.run_rounds(cells, settings)
    results = {cell.key: C.cell_result(cell, flops[cell.key], peak["gflops"]) for cell in cells}
    for (label, c, hw), e in results.items():
        ref = results.get(("Upsample nearest", c, hw))
        nat = results.get(("DySample native", c, hw))
        e["x_nearest"] = e["median_ms"] / ref["median_ms"] if ref else None
        e["x_native"] = e["median_ms"] / nat["median_ms"] if nat else None
        e["output_gb_per_s"] = e["output_bytes"] / (e["median_ms"] / 1e3) / 1e9
    report["results"] = list(results.values()) + entries
    return C.publish(NAME, args.out, report, markdown, plot)


def markdown(report):
    rows = []
    order = {m: i for i, m in enumerate(("DySample native", "DySample lowered", "Upsample nearest"))}
    for e in sorted(report["results"], key=lambda e: (e.get("channels", 0), e["imgsz"][0], order.get(e["model"], 9))):
        head = [e["model"], e.get("channels"), "{}x{}".format(*e["imgsz"])]
        if e["status"] != "ok":
            rows.append(head + ["-"] * 7 + ["{}: {}".format(e["status"], e.get("error", ""))])
            continue
        comp = e["stages"].get("compute") or e["stages"]["end_to_end"]
        fl = e["flops"]
        rows.append(head + [
            C.fmt(e["median_ms"]), "{}..{}".format(C.fmt(e["spread_ms"][0]), C.fmt(e["spread_ms"][1])),
            C.fmt(comp["p99"]), C.fmt(e["x_native"], 3), C.fmt(e["x_nearest"], 3), C.fmt(e["output_gb_per_s"], 3),
            "{} / {:.2f}%".format(C.fmt(fl["gflops_per_image"], 3), 100 * fl["efficiency"]) if fl.get("efficiency") is not None else "-",
            "ok",
        ])
    header = ["block", "C", "input HxW", "median (ms)", "spread (ms)", "p99 (ms)", "x native", "x nearest",
              "output GB/s", "GFLOPs / efficiency", "status"]
    head = C.header_md(report, "DySample block: native GridSample vs lowered gathers vs nearest upsample (ONNX Runtime, CPU)",
                       "x native / x nearest = latency / that block's latency at the same C and size (same run). "
                       "FLOPs: the 1x1 offset conv only; the blocks are memory-bound (see output GB/s).")
    return head + "\n" + C.md_table(header, rows) + "\n"


def plot(report, path):
    plt = C.pyplot()
    fig, axes = plt.subplots(1, len(CHANNELS), figsize=(6 * len(CHANNELS), 4.2))
    for ax, c in zip(axes, CHANNELS):
        for label in ("DySample native", "DySample lowered", "Upsample nearest"):
            pts = sorted((e["imgsz"][0], e["median_ms"]) for e in report["results"]
                         if e["model"] == label and e.get("channels") == c and e["status"] == "ok")
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(list(SIZES))
        ax.set_xticklabels(["{0}x{0}".format(s) for s in SIZES])
        ax.set_xlabel("input feature map (output is 2x)")
        ax.set_ylabel("median latency (ms)")
        ax.set_title("C = {}".format(c))
        ax.grid(alpha=0.3, which="both")
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.suptitle("DySample block, ONNX Runtime CPU: {}".format(report["machine"]["label"]))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
