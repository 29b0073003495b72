"""Native libdefectrt vs the Python Detector, end to end on the same images, interleaved rounds.

    PYTHONPATH=src python benchmarks/bench_native.py BUNDLE [--rounds 5] [--iters 20] [--lib build/native/libdefectrt.so]

Per round: ITERS alternating calls of drt_detect (ctypes; one ONNX Runtime thread) and Detector(threads=1) on
the same BGR image, so both see the same machine load; medians per round and their ratio. Then one
`defectrt_bench --bare-run` run: each iteration times the native end to end call and right after it a bare ONNX
Runtime C API Run (wrap the buffer, Run, copy the outputs) on the very same input blob; the ratio of their medians is
the native pre/post-processing overhead at one thread (target <= 1.05).
"""
import argparse
import ctypes
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("bundle")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--lib", default=os.path.join(ROOT, "build", "native", "libdefectrt.so"))
    p.add_argument("--size", default="1280x720")
    args = p.parse_args()
    from defectrt.data.synth import generate
    from defectrt.runtime.detector import Detector
    import cv2

    w, h = (int(v) for v in args.size.split("x"))
    img = np.ascontiguousarray(cv2.resize(generate("screw", 3, seed=5)[0], (w, h)))
    lib = ctypes.CDLL(args.lib)
    handle = ctypes.c_void_p()

    class Opts(ctypes.Structure):
        _fields_ = [("struct_size", ctypes.c_uint32), ("backend", ctypes.c_char_p), ("conf", ctypes.c_float),
                    ("iou", ctypes.c_float), ("max_det", ctypes.c_int32), ("threads", ctypes.c_int32)]

    opts = Opts()
    lib.drt_options_init(ctypes.byref(opts))
    opts.threads = 1
    assert lib.drt_detector_create(args.bundle.encode(), ctypes.byref(opts), ctypes.byref(handle)) == 0
    out = (ctypes.c_byte * (24 * 1024))()
    count = ctypes.c_int()
    ptr = img.ctypes.data_as(ctypes.c_void_p)
    det = Detector(args.bundle, backend="onnxruntime", threads=1)
    for _ in range(3):
        lib.drt_detect(handle, ptr, w, h, 0, 0, out, 1024, ctypes.byref(count))
        det(img)
    ratios = []
    for r in range(args.rounds):
        nat, py = [], []
        for _ in range(args.iters):  # alternating calls: both see the same moment of a shared machine
            t = time.perf_counter()
            lib.drt_detect(handle, ptr, w, h, 0, 0, out, 1024, ctypes.byref(count))
            nat.append(time.perf_counter() - t)
            t = time.perf_counter()
            det(img)
            py.append(time.perf_counter() - t)
        n, q = np.median(nat) * 1e3, np.median(py) * 1e3
        ratios.append(n / q)
        print("round {}: native {:.2f} ms, Python Detector {:.2f} ms, native/Python {:.3f}".format(r, n, q, n / q))
    print("native / Python Detector (median of rounds): {:.3f}".format(float(np.median(ratios))))
    bench = os.path.join(os.path.dirname(args.lib), "defectrt_bench")
    rep = subprocess.run([bench, args.bundle, "--synthetic", args.size, "--threads", "1", "--bare-run", "--iters",
                          str(args.rounds * args.iters)], stdout=subprocess.PIPE, check=True)
    res = json.loads(rep.stdout.decode())["results"][0]
    s = res["stages"]
    e2e, run = s["end_to_end"]["median"], res["bare_run"]["median"]
    print("defectrt_bench --bare-run: native end to end {:.2f} ms, bare ONNX Runtime Run {:.2f} ms (pre {:.2f} ms, "
          "post {:.3f} ms); end to end / bare Run: {:.3f} (ratio of medians), {:.3f} (median of per-call "
          "ratios)".format(e2e, run, s["preprocess"]["median"], s["postprocess"]["median"], e2e / run,
                           res["end_to_end_over_bare_run"]))
    lib.drt_detector_destroy(handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
