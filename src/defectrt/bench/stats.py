"""Summary statistics of timing samples, defined exactly as trtexec defines them.

trtexec (TensorRT's samples/common/sampleReporting.cpp) sorts the samples and reports:

- min, max, mean;
- median: the middle sample, or the mean of the two middle samples when the count is even;
- percentile p: the nearest-rank percentile, the sample at 0-based index
  ``max(N - 1 - int((1 - p/100) * N), 0)`` of the sorted samples, i.e. the smallest sample such that at
  least p% of the samples are <= it (``ceil(p/100 * N) - 1``).  No interpolation: every reported
  percentile is a latency that was actually observed.  It equals numpy's
  ``np.percentile(x, p, method="inverted_cdf")``.  trtexec evaluates the index in float32; here it is
  evaluated exactly (with fractions).  The two differ only where p * N / 100 is a whole number, where
  trtexec may round up to the next sample (its p99 of exactly 100 samples is the maximum; here it is the
  99th smallest sample, the textbook nearest rank).
- coefficient of variation: population standard deviation (divided by N, not N - 1) over the mean.
  trtexec prints it in percent; here ``cov`` is a fraction (0.05 = 5 %) and ``std`` is the same
  population standard deviation.

All values keep the unit of the input (the bench module uses milliseconds throughout).
"""
from __future__ import annotations

import math
from fractions import Fraction

PERCENTILES = (90, 95, 99)
KEYS = ("count", "min", "mean", "median", "p90", "p95", "p99", "max", "std", "cov")


def nearest_rank_index(p, n):
    """0-based index of the nearest-rank p-th percentile in `n` sorted samples (trtexec's definition)."""
    if n < 1:
        raise ValueError("no samples")
    p = Fraction(str(p)) if not isinstance(p, Fraction) else p
    if p < 0 or p > 100:
        raise ValueError("percentile must be in [0, 100], got {}".format(float(p)))
    rank = math.ceil(p * n / 100)  # exact: Fraction arithmetic, no float rounding at rank boundaries
    return max(int(rank) - 1, 0)


def percentile(samples, p, presorted=False):
    """Nearest-rank percentile of `samples` (see the module docstring)."""
    values = list(samples) if presorted else sorted(samples)
    return float(values[nearest_rank_index(p, len(values))])


def median(samples, presorted=False):
    values = list(samples) if presorted else sorted(samples)
    n = len(values)
    if n == 0:
        raise ValueError("no samples")
    m = n // 2
    return float(values[m]) if n % 2 else (float(values[m - 1]) + float(values[m])) / 2.0


def summarize(samples):
    """{count, min, mean, median, p90, p95, p99, max, std, cov} of a non-empty sequence of numbers."""
    values = sorted(float(v) for v in samples)
    n = len(values)
    if n == 0:
        raise ValueError("summarize() needs at least one sample")
    if any(math.isnan(v) for v in values):
        raise ValueError("timing samples contain NaN")
    mean = math.fsum(values) / n
    var = math.fsum((v - mean) ** 2 for v in values) / n  # population variance, as trtexec
    std = math.sqrt(var)
    out = {
        "count": n,
        "min": values[0],
        "mean": mean,
        "median": median(values, presorted=True),
    }
    for p in PERCENTILES:
        out["p{}".format(p)] = percentile(values, p, presorted=True)
    out["max"] = values[-1]
    out["std"] = std
    out["cov"] = std / mean if mean > 0 else (0.0 if std == 0 else float("inf"))
    return out
