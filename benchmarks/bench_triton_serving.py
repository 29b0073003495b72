"""Triton serving (`defectrt serve` + TritonDetector) against the in-process Detector, under 1 / 4 / 8 clients.

    python benchmarks/bench_triton_serving.py [--bundle B] [--clients 1,4,8] [--requests 200] [--repeats 2]
                                              [--instances 1] [--max-batch 8] [--imgsz 384 672] [--out DIR]

Without --bundle it builds demo:screw (FP32, dynamic batch up to 8) at --imgsz (needs torch). The server runs
in its own process on 127.0.0.1 (`defectrt serve`, stopped at the end whatever happens). Rounds are
interleaved: each repeat runs the in-process Detector (one thread, the same requests one after another) and
then every client count, so drift from other load spreads over all cells. Per cell: images/s over the round's
wall time, p50 / p99 of per-request latency (nearest rank, defectrt.bench.stats), and the batch sizes Triton
formed (its statistics API: executions per batch size during the round).

Outputs: benchmarks/results/triton_serving/{results.json, results.md} (replaced on every run).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def start_server(bundle, ports, instances, max_batch, log_path):
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "defectrt", "serve", bundle, "--http-port", str(ports[0]), "--grpc-port",
           str(ports[1]), "--metrics-port", str(ports[2]), "--instances", str(instances), "--max-batch",
           str(max_batch), "--exit-timeout-s", "5"]
    out = open(log_path, "ab")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    out.close()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("defectrt serve exited ({}); see {}".format(proc.returncode, log_path))
        try:
            with urllib.request.urlopen("http://127.0.0.1:{}/v2/models/stats".format(ports[0]), timeout=2) as r:
                if json.load(r).get("model_stats"):
                    return proc
        except OSError:
            pass
        time.sleep(0.5)
    stop_server(proc)
    raise SystemExit("defectrt serve was not ready after 180 s; see {}".format(log_path))


def stop_server(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait(10)


def in_process_round(det, images, requests):
    from defectrt.bench.stats import summarize

    samples = []
    t0 = time.perf_counter()
    for i in range(requests):
        t = time.perf_counter()
        det(images[i % len(images)])
        samples.append((time.perf_counter() - t) * 1000.0)
    wall = time.perf_counter() - t0
    return {"clients": 0, "requests": requests, "ok": requests, "errors": 0, "wall_s": wall,
            "images_per_s": requests / wall, "latency_ms": summarize(samples), "batches": None}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle")
    p.add_argument("--clients", default="1,4,8")
    p.add_argument("--requests", type=int, default=200, help="requests per client and round")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--instances", type=int, default=1)
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--imgsz", type=int, nargs=2, default=[384, 672])
    p.add_argument("--out", default=os.path.join(HERE, "results", "triton_serving"))
    args = p.parse_args(argv)
    sys.path.insert(0, os.path.join(ROOT, "src"))
    from defectrt.bench import concurrency
    from defectrt.bench.environment import collect
    from defectrt.bench.stats import median
    from defectrt.data.synth import generate
    from defectrt.fileio import atomic_dir
    from defectrt.runtime.detector import Detector

    clients = [int(c) for c in args.clients.split(",")]
    work = tempfile.mkdtemp(prefix="bench-triton-")
    bundle = args.bundle
    if not bundle:
        from defectrt.export.bundle import build_bundle

        bundle = os.path.join(work, "screw.bundle")
        log("building demo:screw at {}x{} (dynamic batch up to {})".format(args.imgsz[0], args.imgsz[1], args.max_batch))
        build_bundle("demo:screw", bundle, precision="fp32", imgsz=tuple(args.imgsz), dynamic_batch=True,
                     max_batch=args.max_batch)
    images = [generate("screw", i, seed=11, imgsz=tuple(args.imgsz))[0] for i in range(4)]
    ports = free_ports(3)
    proc = start_server(bundle, ports, args.instances, args.max_batch, os.path.join(work, "serve.log"))
    url = "grpc://127.0.0.1:{}".format(ports[1])
    rounds = {"in-process": []}
    rounds.update({c: [] for c in clients})
    try:
        det = Detector(bundle)
        for i in range(5):
            det(images[i % 4])
        for r in range(args.repeats):
            log("repeat {}/{}: in-process".format(r + 1, args.repeats))
            rounds["in-process"].append(in_process_round(det, images, args.requests))
            for c in clients:
                log("repeat {}/{}: {} client(s)".format(r + 1, args.repeats, c))
                rounds[c].append(concurrency.bench_triton(url, clients=(c,), requests=args.requests,
                                                          images=images)["rounds"][0])
    finally:
        stop_server(proc)
    table = []
    for key, rs in rounds.items():
        batches = {}
        for x in rs:
            for b, n in ((x.get("batches") or {}).get("sizes") or {}).items():
                batches[int(b)] = batches.get(int(b), 0) + n
        table.append({
            "cell": "in-process Detector (1 thread)" if key == "in-process" else "serve, {} client(s)".format(key),
            "clients": key, "requests_total": sum(x["requests"] for x in rs), "errors": sum(x["errors"] for x in rs),
            "images_per_s": median([x["images_per_s"] for x in rs]),
            "p50_ms": median([x["latency_ms"]["median"] for x in rs]),
            "p99_ms": median([x["latency_ms"]["p99"] for x in rs]),
            "batch_sizes": dict(sorted(batches.items())) if key != "in-process" else None,
            "per_round": rs})
    base = table[0]["images_per_s"]
    lines = ["| cell | requests | errors | images/s | vs in-process | p50 ms | p99 ms | batches formed (size: executions) |",
             "|---|---|---|---|---|---|---|---|"]
    for row in table:
        sizes = ", ".join("{}: {}".format(b, n) for b, n in (row["batch_sizes"] or {}).items()) or "-"
        lines.append("| {} | {} | {} | {:.1f} | {:.2f}x | {:.2f} | {:.2f} | {} |".format(
            row["cell"], row["requests_total"], row["errors"], row["images_per_s"], row["images_per_s"] / base,
            row["p50_ms"], row["p99_ms"], sizes))
    md = "Bundle {} ({}x{}), {} instance(s), max batch {}, {} repeats x {} requests per client, gRPC.\n\n".format(
        os.path.basename(bundle), args.imgsz[0], args.imgsz[1], args.instances, args.max_batch, args.repeats,
        args.requests) + "\n".join(lines) + "\n"
    result = {"command": ["python", "benchmarks/bench_triton_serving.py"] + list(argv or sys.argv[1:]),
              "environment": collect(), "table": table}
    with atomic_dir(args.out, force=True) as tmp:
        with open(os.path.join(tmp, "results.json"), "w") as f:
            json.dump(result, f, indent=2, default=str)
        with open(os.path.join(tmp, "results.md"), "w") as f:
            f.write(md)
    print(md)


if __name__ == "__main__":
    main()
