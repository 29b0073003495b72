"""ONNX Runtime CPU latency of yolo11n-dysample: native GridSample vs the lowered (gather-based) sampling.

    .venv/bin/python benchmarks/bench_export_gridsample.py [--runs 30] [--warmup 5] [--threads 1] [--json out.json]

For each input size (640x640 and 384x672) it exports the whole model twice (grid_sample native / lowered,
both simplified, as `defectrt export onnx` does) and each DySample block alone (layers 11 and 14, at the
feature size the model feeds them), then times them in one process: warm-up runs first, then native and
lowered alternate run by run so that load changes on a shared machine hit both alike. Reported: medians,
and the ratio lowered / native (target for the whole model: <= 1.10).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings

import numpy as np


def _session(data, threads):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    # No busy-waiting worker threads: on a shared machine spinning threads fight other processes and
    # make the timings depend on the neighbours more than on the graph.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def _time_pair(sessions, feeds, runs, warmup):
    """Alternate the sessions run by run; -> list of medians in ms, one per session."""
    for s in sessions:
        for _ in range(warmup):
            s.run(None, feeds)
    times = [[] for _ in sessions]
    for _ in range(runs):
        for i, s in enumerate(sessions):
            t0 = time.perf_counter()
            s.run(None, feeds)
            times[i].append((time.perf_counter() - t0) * 1e3)
    return [statistics.median(t) for t in times]


def _export_block(block, shape, mode):
    import onnx
    import onnxslim
    import torch

    block.sample_mode = mode
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(block, (torch.rand(*shape),), f, dynamo=False, opset_version=17, input_names=["x"],
                          output_names=["y"])
    return onnxslim.slim(onnx.load_from_string(f.getvalue())).SerializeToString()


def _block_inputs(model, imgsz):
    """Shapes of the tensors reaching the DySample layers (11, 14) at this input size."""
    import torch

    from defectrt.models.dysample import DySample

    shapes, hooks = {}, []
    for i, m in enumerate(model.model):
        if isinstance(m, DySample):
            hooks.append(m.register_forward_hook(lambda mod, inp, out, i=i: shapes.__setitem__(i, tuple(inp[0].shape))))
    with torch.no_grad():
        model(torch.zeros(1, 3, *imgsz))
    for h in hooks:
        h.remove()
    return shapes


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (default 1)")
    p.add_argument("--sizes", default="640x640,384x672", help="comma-separated HxW list")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)

    import onnxruntime
    import torch

    from defectrt import models
    from defectrt.export.onnx import export_onnx

    torch.manual_seed(0)
    model = models.create("yolo11n-dysample", nc=4).eval()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for h, w in sizes:
            x = {"images": np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)}
            data = {}
            for mode in ("native", "lowered"):
                path = os.path.join(tmp, "{}_{}x{}.onnx".format(mode, h, w))
                export_onnx(model, path, imgsz=(h, w), grid_sample=mode)
                with open(path, "rb") as f:
                    data[mode] = f.read()
            nat, low = _time_pair([_session(data["native"], args.threads), _session(data["lowered"], args.threads)], x,
                                  args.runs, args.warmup)
            rows.append({"what": "whole model", "imgsz": [h, w], "native_ms": nat, "lowered_ms": low, "ratio": low / nat})
            fused = models.create("yolo11n-dysample", nc=4).eval()
            fused.load_state_dict(model.state_dict())
            for layer, shape in sorted(_block_inputs(fused, (h, w)).items()):
                block = fused.model[layer]
                feeds = {"x": np.random.default_rng(layer).standard_normal(shape).astype(np.float32)}
                sess = [_session(_export_block(block, shape, m), args.threads) for m in ("native", "lowered")]
                nat, low = _time_pair(sess, feeds, args.runs, args.warmup)
                rows.append({"what": "DySample model.{} {}".format(layer, "x".join(map(str, shape[1:]))), "imgsz": [h, w],
                             "native_ms": nat, "lowered_ms": low, "ratio": low / nat})

    env = {"onnxruntime": onnxruntime.__version__, "torch": torch.__version__, "threads": args.threads,
           "runs": args.runs, "warmup": args.warmup, "cpu": platform.processor() or platform.machine(),
           "cpu_count": os.cpu_count(), "python": sys.version.split()[0]}
    print("yolo11n-dysample, ONNX Runtime CPU, median of {} runs after {} warm-up, {} thread(s)".format(
        args.runs, args.warmup, args.threads))
    print("{:<34} {:>9} {:>11} {:>12} {:>16}".format("what", "imgsz", "native ms", "lowered ms", "lowered/native"))
    for r in rows:
        print("{:<34} {:>9} {:>11.2f} {:>12.2f} {:>16.3f}".format(
            r["what"], "{}x{}".format(*r["imgsz"]), r["native_ms"], r["lowered_ms"], r["ratio"]))
    whole = [r["ratio"] for r in rows if r["what"] == "whole model"]
    verdict = "OK" if max(whole) <= 1.10 else "ABOVE TARGET"
    print("whole-model ratio max {:.3f} (target <= 1.10): {}".format(max(whole), verdict))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"env": env, "rows": rows}, f, indent=2)
    return 0 if verdict == "OK" else 1


if __name__ == "__main__":
    raise SystemExit(main())
