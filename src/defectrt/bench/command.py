"""The `defectrt bench` command line a report records, rebuilt from the parsed options.

Rebuilt rather than copied from sys.argv so that it is the same whether bench ran as a program or through
`defectrt.cli.main(argv)`, and so that defaults the run used (warm-up, duration) are written out.
"""
from __future__ import annotations

# (flag, attribute) of the options that take a value, in the order they are written
_VALUED = (("--backend", "backend"), ("--batch", "batch"), ("--warmup-s", "warmup_s"),
           ("--warmup-iters", "warmup_iters"), ("--duration-s", "duration_s"), ("--iters", "iters"),
           ("--threads", "threads"), ("--inflight", "inflight"), ("--ov-precision", "ov_precision"),
           ("--ov-streams", "ov_streams"), ("--ov-cache-dir", "ov_cache_dir"), ("--label", "label"),
           ("--json", "json"), ("--md", "md"))
_SWITCHES = (("--end-to-end", "end_to_end"), ("--cuda-graph", "cuda_graph"), ("--no-peak", "no_peak"),
             ("--force", "force"))


def bench_command(options):
    """`options`: the parsed `defectrt bench` namespace -> the command line as a list of strings."""
    values = {attr: getattr(options, attr, None) for _, attr in _VALUED}
    if values["warmup_iters"] is not None:  # one warm-up rule is in force: write only that one
        values["warmup_s"] = None
    if values["iters"]:
        values["duration_s"] = None
    cmd = ["defectrt", "bench"] + list(options.models)
    for flag, attr in _VALUED:
        if values[attr] is not None:
            cmd += [flag, str(values[attr])]
    if getattr(options, "imgsz", None):
        cmd += ["--imgsz"] + [str(v) for v in options.imgsz]
    cmd += [flag for flag, attr in _SWITCHES if getattr(options, attr, False)]
    return cmd
