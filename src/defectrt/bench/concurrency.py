"""Latency and throughput of a Triton-served model under concurrent clients (`defectrt bench --triton URL`).

Each client is a thread with its own TritonDetector (one connection each, as separate cameras would be); all
start together behind a barrier and send `requests` images one after another. Latency is each request's host
wall time (send to decoded Detections); throughput is all requests over the wall time of the round. The batch
sizes Triton formed come from its statistics API (executions per batch size), as the difference between before
and after each round. Percentiles are defectrt.bench.stats' (trtexec's nearest rank). Python 3.8, no torch.
"""
from __future__ import annotations

import threading
import time

from defectrt.bench.stats import summarize
from defectrt.errors import UserInputError

SCHEMA = "defectrt-triton-bench"


def _round(url, model, n_clients, requests, images, timeout_s, warmup):
    from defectrt.client import TritonDetector

    dets = [TritonDetector(url, model=model, timeout_s=timeout_s) for _ in range(n_clients)]
    stats = TritonDetector(url, model=model, timeout_s=timeout_s)  # this thread's own: clients are not shared
    latencies = [[] for _ in range(n_clients)]
    errors = []
    warmed = threading.Barrier(n_clients + 1, timeout=timeout_s * max(1, warmup) + 60)
    barrier = threading.Barrier(n_clients + 1, timeout=60)  # statistics are read between the two

    def client(k):
        det = dets[k]
        try:
            for i in range(warmup):
                det(images[(k + i) % len(images)])
        except Exception as exc:  # counted in the report; the round goes on
            errors.append(repr(exc))
        warmed.wait()
        barrier.wait()
        for i in range(requests):
            t0 = time.perf_counter()
            try:
                det(images[(k + i) % len(images)])
            except Exception as exc:
                errors.append(repr(exc))
                continue
            latencies[k].append((time.perf_counter() - t0) * 1000.0)

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(n_clients)]
    for t in threads:
        t.start()
    warmed.wait()
    before = stats.statistics()
    barrier.wait()
    t0 = time.perf_counter()
    deadline = time.monotonic() + timeout_s * requests + 60  # every request is bounded by timeout_s
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    wall = time.perf_counter() - t0
    if any(t.is_alive() for t in threads):
        errors.append("clients still running at the round's deadline")
    after = stats.statistics()
    for d in dets + [stats]:
        d.close()
    samples = [v for lat in latencies for v in lat]
    formed = {b: after["batch_sizes"].get(b, 0) - before["batch_sizes"].get(b, 0) for b in after["batch_sizes"]}
    formed = {b: n for b, n in sorted(formed.items()) if n > 0}
    executions = sum(formed.values())
    return {
        "clients": n_clients, "requests": n_clients * requests, "ok": len(samples), "errors": len(errors),
        "error_examples": errors[:3], "wall_s": wall, "images_per_s": len(samples) / wall if wall > 0 else None,
        "latency_ms": summarize(samples) if samples else None,
        "batches": {"sizes": formed, "executions": executions,
                    "mean_batch": (sum(b * n for b, n in formed.items()) / float(executions)) if executions else None},
    }


def bench_triton(url, clients=(1, 4, 8), requests=200, model=None, images=None, timeout_s=60.0, warmup=5, log=None):
    """-> {"schema", "url", "model", "rounds": [one per client count]}."""
    from defectrt.client import TritonDetector

    if not images:
        raise UserInputError("bench --triton needs at least one image")
    if requests < 1 or any(int(c) < 1 for c in clients):
        raise UserInputError("--requests and --clients must be at least 1")
    with TritonDetector(url, model=model, timeout_s=timeout_s) as probe:
        model = probe.model
    rounds = []
    for n in clients:
        if log:
            log("bench --triton: {} client(s) x {} requests".format(n, requests))
        rounds.append(_round(url, model, int(n), int(requests), images, timeout_s, warmup))
    return {"schema": SCHEMA, "url": url, "model": model, "image_shape": list(images[0].shape),
            "requests_per_client": int(requests), "rounds": rounds}


def to_markdown(report):
    lines = ["| clients | requests | errors | images/s | p50 ms | p99 ms | mean ms | batch sizes formed (executions) "
             "| mean batch |", "|---|---|---|---|---|---|---|---|---|"]
    for r in report["rounds"]:
        lat = r["latency_ms"] or {}
        sizes = ", ".join("{}: {}".format(b, n) for b, n in r["batches"]["sizes"].items()) or "-"

        def fmt(v, spec="{:.1f}"):
            return spec.format(v) if v is not None else "-"

        lines.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
            r["clients"], r["requests"], r["errors"], fmt(r["images_per_s"]), fmt(lat.get("median"), "{:.2f}"),
            fmt(lat.get("p99"), "{:.2f}"), fmt(lat.get("mean"), "{:.2f}"), sizes,
            fmt(r["batches"]["mean_batch"], "{:.2f}")))
    return "Triton {} model {}, image {}:\n\n".format(report["url"], report["model"], "x".join(
        str(v) for v in report["image_shape"])) + "\n".join(lines) + "\n"
