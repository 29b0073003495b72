"""One-thread GEMM throughput of this CPU in f32, bf16 and int8, through OpenVINO's own kernels (issue #18).

    python benchmarks/bench_cpu_gemm.py [--size 1024] [--rounds 7] [--gflop 4.01]

Why: the issue's "best accurate CPU form <= 0.40x of ONNX Runtime FP32" was derived on a Xeon with AMX, from
its floors (4.01 GFLOP of demo:screw at 384x672; sgemm 154 GFLOP/s, AMX bf16 462 GFLOP/s). Whether that ratio
is reachable on another CPU depends on how fast its low-precision arithmetic is *relative to its f32*; this
script measures the three on the machine at hand, and the floors of the model they give.

Each cell is a (size x size) @ (size x size) MatMul compiled by OpenVINO for one thread: f32 (precision hint
f32), bf16 (hint bf16: AMX or AVX-512 BF16 kernels), int8 (FakeQuantize on both inputs, so OpenVINO's
low-precision pass runs the product in int8: VNNI / AMX-INT8). A round takes the best of 5 calls in CPU time
(process time, so other jobs on a shared machine do not count); the figure is the median over rounds. The
kernel OpenVINO picked is reported, so a silent fall-back to f32 shows. Writes JSON to --out when given.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time


def _model(ops, ov, np, size, int8):
    a = ops.parameter([size, size], np.float32, name="a")
    w = ops.constant((np.random.default_rng(0).random((size, size)) - 0.5).astype(np.float32))
    x, y = a, w
    if int8:
        zero, one, minus = (ops.constant(np.float32(v)) for v in (0, 1, -1))
        x = ops.fake_quantize(a, zero, one, zero, one, 256)  # activations in [0, 1): u8
        y = ops.fake_quantize(w, minus, one, minus, one, 255)  # weights in [-1, 1]: symmetric i8
    return ov.Model([ops.matmul(x, y, False, False)], [a])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--gflop", type=float, default=4.01, help="the model's GFLOP per image (demo:screw 384x672: 4.01)")
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args()
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops

    core = ov.Core()
    flop = 2.0 * args.size ** 3
    inp = np.random.default_rng(1).random((args.size, args.size)).astype(np.float32)
    requests = {}
    for name, int8, precision in (("f32", False, "f32"), ("bf16", False, "bf16"), ("int8", True, "f32")):
        compiled = core.compile_model(_model(ops, ov, np, args.size, int8), "CPU", {
            "INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": "1", "PERF_COUNT": True})
        requests[name] = compiled.create_infer_request()
    rates = {k: [] for k in requests}
    for _ in range(args.rounds):
        for name, req in requests.items():
            req.infer({0: inp})
            best = min(_cpu_seconds(req, inp) for _ in range(5))
            rates[name].append(flop / best / 1e9)
    result = {"benchmark": "cpu_gemm", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "command": [os.path.basename(sys.executable)] + sys.argv, "size": args.size, "threads": 1,
              "openvino": ov.__version__, "load_average": os.getloadavg(), "cells": {}}
    for name, req in requests.items():
        gflops = statistics.median(rates[name])
        kernels = sorted({"{}:{}".format(i.node_type, i.exec_type) for i in req.profiling_info
                          if i.node_type not in ("Parameter", "Result", "Constant")})
        result["cells"][name] = {"gflop_per_s": gflops, "rounds": rates[name], "kernels": kernels,
                                 "model_floor_ms": args.gflop / gflops * 1e3}
        print("{:5s} {:6.0f} GFLOP/s  model floor {:5.1f} ms  ({})".format(
            name, gflops, args.gflop / gflops * 1e3, ", ".join(kernels)))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


def _cpu_seconds(req, inp):
    t0 = time.process_time()
    req.infer({0: inp})
    return time.process_time() - t0


if __name__ == "__main__":
    main()
