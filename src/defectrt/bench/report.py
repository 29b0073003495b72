"""Benchmark reports: the JSON schema, Markdown rendering, and merging reports from several machines.

JSON schema (``schema`` = "defectrt-bench-report", ``schema_version`` = 1)::

    {
      "schema": "defectrt-bench-report", "schema_version": 1,
      "created_utc": "2026-01-01T12:00:00Z", "defectrt_version": "0.1.0",
      "command": ["defectrt", "bench", ...],          # the command line that made it
      "machine": {"label": "Xeon [5bce98]",           # column name when reports are merged
                  "peak_gflops": {...} | null},       # flops.peak_gflops(), measured in the same run
      "environment": {...},                           # environment.collect()
      "settings": {"warmup_s", "warmup_iters", "duration_s", "iters", "min_iters", "threads",
                   "mode": "model" | "end_to_end", "cuda_graph"},
      "results": [ {
          "model": "yolo11n", "source": "yolo11n.onnx", "variant", "precision": "fp32" | "fp16" | "int8" | "unknown",
          "backend": "onnxruntime", "providers": [...], "imgsz": [h, w], "batch": 1,
          "mode": "model" | "end_to_end",
          "status": "ok" | "not available" | "failed", "error": "why, when not ok",
          "stages": {"preprocess": S, "h2d": S | null, "compute": S, "d2h": S | null, "postprocess": S,
                     "end_to_end": S, ["enqueue": S, "infer_host": S]},
          "absent": {"h2d": "reason", ...},           # every null stage, with the reason (absent, never zero)
          "throughput": {"queries", "batch", "wall_s", "batches_per_s", "images_per_s"},
          "warmup": {"queries", "seconds"},
          "cold_start": {"load_ms", "first_inference_ms"},
          "memory": {"peak_rss_bytes", "vmhwm_bytes", "rss_bytes", "gpu_bytes": int | "unknown"},
          "flops": {"gflops_per_image", "achieved_gflops", "efficiency"},
          "warnings": ["..."], "notes": ["..."] } ]
    }

where S = stats.summarize(): {count, min, mean, median, p90, p95, p99, max, std, cov}, in milliseconds.
"""
from __future__ import annotations

import datetime
import json

from defectrt import __version__
from defectrt.bench.timing import ALL_STAGES
from defectrt.errors import UnsupportedFormat, UserInputError
from defectrt.fileio import atomic_path

SCHEMA = "defectrt-bench-report"
SCHEMA_VERSION = 1
STAT_COLUMNS = ("min", "mean", "median", "p90", "p95", "p99", "max", "std")


def new_report(command, environment, settings, label=None, peak=None):
    from defectrt.bench.environment import short_label

    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "defectrt_version": __version__,
        "command": list(command),
        "machine": {"label": label or short_label(environment), "peak_gflops": peak},
        "environment": environment,
        "settings": dict(settings),
        "results": [],
    }


def result_entry(model, measurement=None, status="ok", error=None, **fields):
    """One row of `results`: the runner's measurement plus identity, cold start, memory, flops."""
    entry = {"model": model, "status": status}
    entry.update(fields)
    if measurement:
        entry.update(measurement)
    if error:
        entry["error"] = str(error)
    entry.setdefault("warnings", [])
    return entry


def validate(report, where="report"):
    if not isinstance(report, dict) or report.get("schema") != SCHEMA:
        raise UnsupportedFormat("{}: not a defectrt bench report (no \"schema\": \"{}\"); give the --json file of "
                                "`defectrt bench`".format(where, SCHEMA))
    version = report.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise UserInputError(
            "{}: report schema_version {!r} is newer than this defectrt understands ({}); upgrade defectrt".format(
                where, version, SCHEMA_VERSION)
        )
    if not isinstance(report.get("results"), list):
        raise UserInputError("{}: the report has no results list".format(where))
    return report


def load(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as exc:
        raise UserInputError("{}: cannot read ({})".format(path, exc.strerror or exc))
    except ValueError as exc:
        raise UserInputError("{}: not valid JSON ({})".format(path, exc))
    return validate(data, path)


def _json_default(obj):
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:
        pass
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)


def dumps(report):
    return json.dumps(report, indent=2, default=_json_default, allow_nan=False)


def write_text(text, path, force=False):
    with atomic_path(path, force) as tmp:
        with open(tmp, "w") as f:
            f.write(text)


def write_json(report, path, force=False):
    write_text(dumps(report) + "\n", path, force)


# --- Markdown -------------------------------------------------------------------------------------

def fmt(v, digits=4):
    """Compact number: 4 significant digits, no exponent for ordinary timings."""
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    v = float(v)
    if v != v:
        return "nan"
    if abs(v) >= 10 ** digits:
        return "{:.0f}".format(v)
    return "{:.{}g}".format(v, digits)


def fmt_pct(v):
    return "-" if v is None else "{:.1f}%".format(100.0 * v)


def fmt_bytes(v):
    if not isinstance(v, (int, float)):
        return str(v) if v is not None else "unknown"
    return "{:.1f} MiB".format(v / (1 << 20))


def _size(imgsz):
    return "x".join(str(v) for v in imgsz) if imgsz else "-"


def _md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(lines)


def stage_table(result):
    """trtexec-like table: one row per stage, min ... max, std, CoV, count (ms)."""
    stages = result.get("stages") or {}
    absent = result.get("absent") or {}
    rows = []
    for stage in ALL_STAGES:
        if stage not in stages:
            continue
        s = stages[stage]
        if s is None:
            rows.append([stage, "absent"] + [""] * len(STAT_COLUMNS) + ["0"])
            continue
        rows.append([stage] + [fmt(s[c]) for c in STAT_COLUMNS] + [fmt_pct(s["cov"]), str(s["count"])])
    text = _md_table(["stage (ms)"] + list(STAT_COLUMNS) + ["CoV", "n"], rows)
    notes = ["- `{}` absent: {}".format(k, v) for k, v in sorted(absent.items()) if stages.get(k, 0) is None]
    return text + ("\n\n" + "\n".join(notes) if notes else "")


def _title(r):
    bits = [str(r.get("model")), str(r.get("precision", "?")), "batch {}".format(r.get("batch", "?")),
            _size(r.get("imgsz")), str(r.get("backend", "?"))]
    return " / ".join(bits)


def _e2e(r):
    s = (r.get("stages") or {}).get("end_to_end")
    return s if s else None


def summary_rows(report):
    rows = []
    for r in report.get("results", []):
        e2e = _e2e(r)
        tp = r.get("throughput") or {}
        fl = r.get("flops") or {}
        rows.append([
            r.get("model"), r.get("precision", "?"), _size(r.get("imgsz")), r.get("batch", "?"), r.get("mode", "?"),
            fmt(e2e["median"]) if e2e else "-", fmt(e2e["p99"]) if e2e else "-",
            fmt(tp.get("images_per_s")), fmt(fl.get("gflops_per_image")), fmt_pct(fl.get("efficiency")),
            r.get("status", "?") if r.get("status") == "ok" else "{}: {}".format(r.get("status"), r.get("error", "")),
        ])
    return rows


SUMMARY_HEADER = ["model", "precision", "imgsz", "batch", "mode", "median (ms)", "p99 (ms)", "images/s",
                  "GFLOPs/img", "efficiency", "status"]


def summary_markdown(report):
    """The short table printed on stdout when the full report goes to files (header and rows, no rule)."""
    return "\n".join(["| " + " | ".join(SUMMARY_HEADER) + " |"] +
                     ["| " + " | ".join(str(c) for c in r) + " |" for r in summary_rows(report)]) + "\n"


def to_markdown(report):
    env = report.get("environment") or {}
    machine = report.get("machine") or {}
    peak = machine.get("peak_gflops") or {}
    settings = report.get("settings") or {}
    out = ["# defectrt bench: {}".format(machine.get("label", "?")), ""]
    out.append("Command: `{}`".format(" ".join(report.get("command") or [])))
    out.append("")
    cpu = env.get("cpu") or {}
    sw = env.get("software") or {}
    jet = env.get("jetson") or {}
    gpus = env.get("gpu")
    lines = [
        "- CPU: {} ({} logical cores, {} in affinity)".format(cpu.get("model", "unknown"), cpu.get("logical_cores", "?"),
                                                             cpu.get("affinity_cores", "?")) if isinstance(cpu, dict) else "- CPU: unknown",
        "- GPU: {}".format(", ".join(g.get("name", "unknown") for g in gpus) if isinstance(gpus, list) else "unknown"),
        "- OS: {} / kernel {}".format((env.get("os") or {}).get("distribution", "unknown"), (env.get("os") or {}).get("kernel", "unknown"))
        if isinstance(env.get("os"), dict) else "- OS: unknown",
        "- Software: " + ", ".join("{} {}".format(k, v if not isinstance(v, dict) else v.get("version"))
                                  for k, v in sorted(sw.items()) if k != "onnxruntime_providers") if isinstance(sw, dict) else "- Software: unknown",
    ]
    if isinstance(jet, dict) and jet.get("is_jetson"):
        pm = jet.get("power_mode") or {}
        lines.append("- Jetson: {}, power mode {} (id {}), clocks locked: {}".format(
            jet.get("model"), pm.get("name", "unknown"), pm.get("id", "unknown"), jet.get("clocks_locked")))
    if peak:
        lines.append("- Measured peak: {} GFLOP/s ({})".format(fmt(peak.get("gflops")), peak.get("how", "")))
    lines.append("- Settings: mode {}, warm-up {}, measure {}, threads {}".format(
        settings.get("mode", "?"),
        "{} iters".format(settings["warmup_iters"]) if settings.get("warmup_iters") is not None else "{} s".format(settings.get("warmup_s")),
        "{} iters".format(settings["iters"]) if settings.get("iters") else "{} s (>= {} iters)".format(settings.get("duration_s"), settings.get("min_iters")),
        settings.get("threads") or "default"))
    out += lines + ["", "## Summary", "", _md_table(SUMMARY_HEADER, summary_rows(report)), ""]
    for r in report.get("results", []):
        out += ["## " + _title(r), ""]
        if r.get("status") != "ok":
            out += ["{}: {}".format(r.get("status"), r.get("error", "")), ""]
            continue
        out += [stage_table(r), ""]
        tp = r.get("throughput") or {}
        out.append("- Throughput: {} images/s ({} batches/s; {} queries in {} s)".format(
            fmt(tp.get("images_per_s")), fmt(tp.get("batches_per_s")), tp.get("queries"), fmt(tp.get("wall_s"))))
        cs = r.get("cold_start")
        if cs:
            out.append("- Cold start: load {} ms, first inference {} ms".format(fmt(cs.get("load_ms")), fmt(cs.get("first_inference_ms"))))
        mem = r.get("memory")
        if mem:
            out.append("- Memory: peak RSS {}, GPU {}".format(fmt_bytes(mem.get("peak_rss_bytes")), fmt_bytes(mem.get("gpu_bytes"))))
        fl = r.get("flops")
        if fl:
            out.append("- Compute: {} GFLOPs/image, {} GFLOP/s achieved, efficiency {} of the measured peak".format(
                fmt(fl.get("gflops_per_image")), fmt(fl.get("achieved_gflops")), fmt_pct(fl.get("efficiency"))))
        for w in r.get("warnings") or []:
            out.append("- WARNING: " + w)
        for n in r.get("notes") or []:
            out.append("- Note: " + n)
        out.append("")
    return "\n".join(out).rstrip() + "\n"


# --- merging ---------------------------------------------------------------------------------------

def _row_key(r):
    return (str(r.get("model")), str(r.get("precision", "?")), _size(r.get("imgsz")), int(r.get("batch") or 0),
            str(r.get("mode", "?")))


def merge(reports):
    """Reports from several machines -> {"machines": [label...], "rows": [{model, precision, imgsz, batch,
    mode, cells: {label: {median_ms, p99_ms, images_per_s}}}]} (one row per model/precision/size/batch/mode)."""
    if not reports:
        raise UserInputError("merge needs at least one report")
    labels = []
    rows = {}
    order = []
    for i, rep in enumerate(reports):
        validate(rep, "report {}".format(i + 1))
        base = str((rep.get("machine") or {}).get("label") or "machine {}".format(i + 1))
        label, n = base, 2
        while label in labels:  # two reports of the same machine stay two columns
            label = "{} #{}".format(base, n)
            n += 1
        labels.append(label)
        for r in rep["results"]:
            key = _row_key(r)
            if key not in rows:
                rows[key] = {}
                order.append(key)
            e2e = _e2e(r) if r.get("status") == "ok" else None
            rows[key][label] = {
                "median_ms": e2e["median"] if e2e else None,
                "p99_ms": e2e["p99"] if e2e else None,
                "images_per_s": (r.get("throughput") or {}).get("images_per_s") if e2e else None,
                "status": r.get("status", "?"),
            }
    out_rows = []
    for key in order:
        model, precision, imgsz, batch, mode = key
        out_rows.append({"model": model, "precision": precision, "imgsz": imgsz, "batch": batch, "mode": mode,
                         "cells": rows[key]})
    return {"schema": SCHEMA + "-comparison", "schema_version": SCHEMA_VERSION, "machines": labels, "rows": out_rows}


def merge_markdown(table):
    header = ["model", "precision", "imgsz", "batch", "mode"]
    for label in table["machines"]:
        header += ["{} median (ms)".format(label), "{} images/s".format(label)]
    rows = []
    for r in table["rows"]:
        row = [r["model"], r["precision"], r["imgsz"], r["batch"], r["mode"]]
        for label in table["machines"]:
            c = r["cells"].get(label)
            if not c:
                row += ["-", "-"]
            elif c["median_ms"] is None:
                row += [c.get("status", "-"), "-"]
            else:
                row += [fmt(c["median_ms"]), fmt(c["images_per_s"])]
        rows.append(row)
    return "# defectrt bench: comparison across machines\n\nmedian = median end-to-end latency of the timed query " \
           "(mode `model`: the model call; `end_to_end`: Detector.__call__).\n\n" + _md_table(header, rows) + "\n"
