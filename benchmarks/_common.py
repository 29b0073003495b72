"""Shared by the benchmark scripts: results folder, measured peak, interleaved repeats, tables, plots.

Method (every script): all cells (model x precision x size x batch) are loaded first; then `repeats`
rounds run every cell in turn (warm-up, then a measuring phase, with defectrt.bench.timing), so slow
drift (thermal, other load) spreads over all cells instead of biasing the last ones.  A cell's latency is
the median of its per-round medians, its spread the min..max of those; ratios between cells come from
the same process and run.  Efficiency = counted FLOPs x images/s over the numpy matmul peak measured in
the same run (defectrt.bench.flops).

Outputs: benchmarks/results/<name>/{results.json, results.md, <name>.png}.  Each script replaces its own
results folder on every run (atomically: a failed run leaves the previous results in place), and
nothing else.  results.json follows the `defectrt bench` report schema, so `defectrt bench merge` can put
runs from several machines side by side.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")


def base_parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="fewer, shorter rounds (a few minutes on 2 cores)")
    p.add_argument("--repeats", type=int, help="measuring rounds per cell (default 5, --quick 3)")
    p.add_argument("--duration-s", type=float, help="seconds per cell and round (default 1.5, --quick 0.3)")
    p.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: its own choice)")
    p.add_argument("--out", help="results folder (default benchmarks/results/<name>; replaced on every run)")
    return p


def settings_from(args):
    quick = args.quick
    return {
        "repeats": args.repeats or (3 if quick else 5),
        "warmup_s": 0.1 if quick else 0.5,
        "warmup_iters": None,
        "duration_s": args.duration_s or (0.3 if quick else 1.5),
        "iters": None,
        "min_iters": 3 if quick else 10,
        "threads": args.threads,
        "quick": quick,
    }


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Cell(object):
    """One measured configuration: a query and its identity."""

    def __init__(self, key, query, batch, fields, absent=None):
        self.key = key
        self.query = query
        self.batch = batch
        self.fields = fields
        self.absent = absent or {}
        self.loops = []


def run_rounds(cells, settings):
    """Interleaved rounds over `cells` (see the module docstring)."""
    from defectrt.bench import timing

    loop_settings = {k: settings[k] for k in ("warmup_s", "warmup_iters", "duration_s", "iters", "min_iters")}
    for r in range(settings["repeats"]):
        t0 = time.perf_counter()
        for cell in cells:
            cell.loops.append(timing.run_loop(cell.query, batch=cell.batch, **loop_settings))
        log("round {}/{} done in {:.1f} s".format(r + 1, settings["repeats"], time.perf_counter() - t0))


def cell_result(cell, gflops=None, peak=None, extra=None):
    """A `defectrt bench` report entry for a measured cell, with median-of-rounds fields."""
    from defectrt.bench import flops as flops_mod
    from defectrt.bench import report as rep
    from defectrt.bench.stats import summarize

    pooled = {}
    for loop in cell.loops:
        for stage, values in loop.samples.items():
            pooled.setdefault(stage, []).extend(values)
    stages = {s: summarize(v) for s, v in pooled.items() if v}
    for s in cell.absent:
        stages.setdefault(s, None)
    round_medians = [statistics.median(loop.samples["end_to_end"]) for loop in cell.loops]
    round_ips = [loop.images_per_s for loop in cell.loops]
    queries = sum(loop.queries for loop in cell.loops)
    wall = sum(loop.wall_s for loop in cell.loops)
    ips = statistics.median(round_ips)
    achieved, eff = flops_mod.efficiency(gflops, ips, peak)
    entry = rep.result_entry(
        cell.fields["model"], None,
        **{k: v for k, v in cell.fields.items() if k != "model"}
    )
    entry.update({
        "mode": "model",
        "batch": cell.batch,
        "stages": stages,
        "absent": dict(cell.absent),
        "throughput": {"queries": queries, "batch": cell.batch, "wall_s": wall, "batches_per_s": ips / cell.batch,
                       "images_per_s": ips},
        "rounds": {"median_ms": round_medians, "images_per_s": round_ips},
        "median_ms": statistics.median(round_medians),
        "spread_ms": [min(round_medians), max(round_medians)],
        "flops": {"gflops_per_image": gflops, "achieved_gflops": achieved, "efficiency": eff},
    })
    from defectrt.bench.timing import warnings_for

    entry["warnings"] = warnings_for(stages)
    if extra:
        entry.update(extra)
    return entry


def unavailable(model, status, error, **fields):
    from defectrt.bench import report as rep

    return rep.result_entry(model, status=status, error=error, mode="model", **fields)


def infer_cell(key, det, batch, fields):
    """A cell timing the model call of Detector `det` on a pre-made blob of `batch` synthetic images."""
    from defectrt.bench import runner, timing

    blob, _ = det.preprocess(runner.synthetic_images(batch, tuple(det.imgsz)))
    det.infer(blob)  # first inference outside the rounds
    query, absent = timing.model_query(det.infer, blob, timing.backend_of(det))
    return Cell(key, query, batch, fields, absent)


def new_report(name, settings, peak):
    from defectrt.bench import environment
    from defectrt.bench import report as rep

    env = environment.collect()
    r = rep.new_report([os.path.basename(sys.executable), os.path.relpath(sys.argv[0])] + sys.argv[1:], env,
                       dict(settings, mode="model", benchmark=name), peak=peak)
    return r


def measure_peak():
    from defectrt.bench.flops import peak_gflops

    peak = peak_gflops(n=2048, repeats=5)
    log("measured peak: {:.1f} GFLOP/s ({})".format(peak["gflops"], peak["how"]))
    return peak


def fmt(v, digits=4):
    from defectrt.bench.report import fmt as _fmt

    return _fmt(v, digits)


def md_table(header, rows):
    from defectrt.bench.report import _md_table

    return _md_table(header, rows)


def header_md(report, title, method):
    env = report["environment"]
    cpu = env.get("cpu") or {}
    sw = env.get("software") or {}
    peak = report["machine"]["peak_gflops"] or {}
    s = report["settings"]
    lines = [
        "# {}".format(title), "",
        "Command: `{}`".format(" ".join(report["command"])), "",
        "- Machine: {} ({} logical cores; SIMD: {})".format(
            cpu.get("model", "unknown") if isinstance(cpu, dict) else "unknown",
            cpu.get("logical_cores", "?") if isinstance(cpu, dict) else "?",
            ", ".join(cpu.get("simd") or []) if isinstance(cpu, dict) and isinstance(cpu.get("simd"), list) else "unknown"),
        "- Software: onnxruntime {}, numpy {}, onnx {}, Python {}".format(
            sw.get("onnxruntime"), sw.get("numpy"), sw.get("onnx"), (env.get("python") or {}).get("version")),
        "- Peak: {} GFLOP/s measured ({}); efficiency = FLOPs x images/s / peak".format(fmt(peak.get("gflops")), peak.get("how")),
        "- Method: {} rounds x ({} s warm-up + >= {} s and >= {} queries) per cell, rounds interleaved across "
        "cells; latency = median of the per-round medians of the model call (ONNX Runtime CPU, threads {}), "
        "spread = min..max of the round medians.".format(
            s["repeats"], s["warmup_s"], s["duration_s"], s["min_iters"], s.get("threads") or "default"),
    ]
    if method:
        lines.append("- " + method)
    lines += ["- No TensorRT / GPU numbers: this machine has no GPU; TensorRT paths are unverified on hardware.", ""]
    return "\n".join(lines)


def write_outputs(name, out_dir, report, markdown, plot_fn):
    """Write results.json, results.md and <name>.png into `out_dir` (replaced atomically)."""
    from defectrt.bench import report as rep
    from defectrt.fileio import atomic_dir

    out_dir = out_dir or os.path.join(RESULTS, name)
    os.makedirs(os.path.dirname(os.path.abspath(out_dir)), exist_ok=True)
    with atomic_dir(out_dir, force=True) as tmp:  # the script owns this folder: replaced on every run
        with open(os.path.join(tmp, "results.json"), "w") as f:
            f.write(rep.dumps(report) + "\n")
        with open(os.path.join(tmp, "results.md"), "w") as f:
            f.write(markdown)
        plot_fn(os.path.join(tmp, name + ".png"))
    log("wrote {}/results.json, results.md, {}.png".format(out_dir, name))
    return out_dir


def publish(name, out_dir, report, markdown, plot):
    """The scripts' last step: write the report (write_outputs) with markdown(report) and plot(report, path),
    print the Markdown, and return the exit status."""
    md = markdown(report)
    write_outputs(name, out_dir, report, md, lambda path: plot(report, path))
    print(md)
    return 0


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def workdir():
    return tempfile.TemporaryDirectory(prefix="defectrt-bench-")


def synthetic_calibration(n, imgsz, seed=0):
    """`n` BGR uint8 images with structure (gradients, rectangles, noise) for INT8 calibration."""
    rng = np.random.default_rng(seed)
    h, w = imgsz
    out = []
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        base = (yy * (i + 1) * 0.3 + xx * 0.2) % 255
        img = np.stack([base, np.roll(base, 17 * i, axis=1), 255 - base], -1)
        img += rng.normal(0, 12, size=img.shape)
        for _ in range(3):
            y0, x0 = rng.integers(0, h - h // 4), rng.integers(0, w - w // 4)
            img[y0:y0 + h // 6, x0:x0 + w // 5] = rng.integers(0, 255, size=3)
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out
