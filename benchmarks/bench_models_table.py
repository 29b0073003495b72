"""`defectrt models` wall time (issue 19: under 10 s for the default table).

    .venv/bin/python benchmarks/bench_models_table.py [--rounds N]

Runs, interleaved for N rounds, each as a fresh process (imports included, as a user types it):
  cached    `defectrt models`                       (the default 30-row table from zoo_complexity.json)
  one-row   `defectrt models --variant yolo11n --recompute` (one model built and traced)
and prints the median seconds of each and their ratio. The full `--recompute` table took 4 min 11 s in the
issue; it is not re-run here (minutes of a shared machine).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")
CASES = {"cached": ["models"], "one-row": ["models", "--variant", "yolo11n", "--recompute"]}


def _time(args):
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "defectrt", "-q"] + args, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    times = {k: [] for k in CASES}
    for _ in range(args.rounds):
        for name, case in CASES.items():
            times[name].append(_time(case))
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print("{:<8} median {:.2f} s  (rounds: {})".format(k, v, ", ".join("{:.2f}".format(x) for x in times[k])))
    print("one-row / cached: {:.2f}x".format(med["one-row"] / med["cached"]))
    return 0 if med["cached"] < 10 else 1


if __name__ == "__main__":
    sys.exit(main())
