"""`defectrt bench --plot`: PNG charts next to the JSON report (issue 19 item 5).

- ``<stem>_latency.png``: per stage, a histogram and the empirical CDF of the per-query latencies (ms) of
  every measured cell (model x batch), from the report's ``samples_ms``.
- ``<stem>_throughput.png``: images/s against the batch size, one line per model.

matplotlib is optional (`pip install 'defectrt[plot]'`); without it the error says so. Python 3.8 compatible.
"""
from __future__ import annotations

import os

from defectrt.errors import UserInputError

STAGES = ("end_to_end", "preprocess", "h2d", "compute", "infer_host", "d2h", "postprocess")


def import_pyplot():
    try:
        import matplotlib
    except ImportError:
        raise UserInputError("--plot needs matplotlib: pip install 'defectrt[plot]' (or pip install matplotlib)") from None
    matplotlib.use("Agg")  # files only, no display (a Jetson over ssh has none)
    import matplotlib.pyplot as plt

    return plt


def _cells(report):
    for e in report.get("results", []):
        if e.get("status") == "ok" and e.get("samples_ms"):
            yield "{} b{}".format(e.get("model"), e.get("batch")), e


def plot_paths(base):
    stem = os.path.splitext(base)[0]
    return stem + "_latency.png", stem + "_throughput.png"


def plot_report(report, base):
    """Write the two PNGs for `report` beside `base` (the JSON path or a stem); -> [paths written]."""
    from defectrt.fileio import atomic_path

    plt = import_pyplot()
    cells = list(_cells(report))
    if not cells:
        raise UserInputError("--plot: the report has no measured cell with samples to draw")
    latency_path, throughput_path = plot_paths(base)
    stages = [s for s in STAGES if any(s in e["samples_ms"] for _, e in cells)]
    fig, axes = plt.subplots(len(stages), 2, figsize=(11, 2.8 * len(stages)), squeeze=False)
    for row, stage in enumerate(stages):
        hist_ax, cdf_ax = axes[row]
        for label, e in cells:
            values = sorted(e["samples_ms"].get(stage) or [])
            if not values:
                continue
            hist_ax.hist(values, bins=min(50, max(5, len(values) // 5)), alpha=0.5, label=label)
            n = len(values)
            cdf_ax.step(values, [(i + 1) / float(n) for i in range(n)], where="post", label=label)
        hist_ax.set_title("{}: latency histogram".format(stage))
        hist_ax.set_xlabel("ms")
        hist_ax.set_ylabel("queries")
        cdf_ax.set_title("{}: CDF".format(stage))
        cdf_ax.set_xlabel("ms")
        cdf_ax.set_ylim(0, 1.0)
        cdf_ax.legend(fontsize="small")
    fig.tight_layout()
    written = []
    with atomic_path(latency_path, force=True) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    written.append(latency_path)

    by_model = {}
    for _, e in cells:
        tp = (e.get("throughput") or {}).get("images_per_s")
        if tp is not None:
            by_model.setdefault(e.get("model"), []).append((int(e.get("batch") or 1), float(tp)))
    fig, ax = plt.subplots(figsize=(6, 4))
    for model, points in sorted(by_model.items()):
        points.sort()
        ax.plot([b for b, _ in points], [t for _, t in points], marker="o", label=model)
    ax.set_xlabel("batch")
    ax.set_ylabel("images/s")
    ax.set_title("throughput vs batch")
    ax.legend(fontsize="small")
    fig.tight_layout()
    with atomic_path(throughput_path, force=True) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    written.append(throughput_path)
    return written
