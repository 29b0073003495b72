"""Measuring models where they run (no torch, Python 3.8): trtexec-grade latency reports.

- `stats`        min / mean / median / p90 / p95 / p99 / max / std / CoV, percentiles as trtexec defines them
- `timing`       warm-up + measuring loop, per-stage samples, throughput, cold start, memory, warnings,
                 and the GPU timing hook a backend offers (`time_stages`)
- `runner`       a Detector measured in model mode or end-to-end mode; one model over several batch sizes
- `environment`  the machine / software / clock-state record every report carries
- `flops`        FLOPs counted from an ONNX graph, and the machine's measured matmul peak
- `report`       the JSON report schema, Markdown rendering, merging reports across machines
- `command`      the command line a report records, rebuilt from the parsed options

The command is `defectrt bench` (defectrt/cli/bench_cmd.py); the scripts in benchmarks/ use the same parts.
"""
