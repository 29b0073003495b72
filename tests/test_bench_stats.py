import math

import numpy as np
import pytest

from defectrt.bench.stats import KEYS, median, nearest_rank_index, percentile, summarize


def trtexec_index(p, n):
    # TensorRT samples/common/sampleReporting.cpp: all - 1 - int((1 - p/100) * all), clamped at 0, in float32
    f = np.float32
    return max(n - 1 - int(f(f(1) - f(p) / f(100)) * f(n)), 0)


def test_known_array_one_to_ten():
    s = summarize([7, 1, 3, 10, 2, 9, 4, 8, 6, 5])
    assert set(KEYS) == set(s)
    assert (s["min"], s["max"], s["count"]) == (1, 10, 10)
    assert s["mean"] == 5.5
    assert s["median"] == 5.5  # even count: mean of the two middle samples, as trtexec
    assert s["p90"] == 9 and s["p95"] == 10 and s["p99"] == 10  # nearest rank, no interpolation
    assert s["std"] == pytest.approx(math.sqrt(8.25))  # population std (ddof=0)
    assert s["cov"] == pytest.approx(math.sqrt(8.25) / 5.5)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 10, 20, 99, 100, 101, 1000, 1237])
def test_against_numpy(n):
    x = np.random.default_rng(n).gamma(2.0, 3.0, size=n)
    s = summarize(x.tolist())
    for p in (90, 95, 99):
        assert s["p{}".format(p)] == np.percentile(x, p, method="inverted_cdf")
    assert s["median"] == pytest.approx(np.median(x))
    assert s["mean"] == pytest.approx(np.mean(x))
    assert s["std"] == pytest.approx(np.std(x))
    assert s["cov"] == pytest.approx(np.std(x) / np.mean(x))
    assert s["min"] == x.min() and s["max"] == x.max()


@pytest.mark.parametrize("p", [50, 90, 95, 99, 99.9])
def test_index_matches_trtexec_formula(p):
    # Identical except where p*n/100 is exactly a whole rank: there trtexec's float32 arithmetic may round
    # to the next sample (e.g. p99 of 100 samples is the max in trtexec, the 99th sample here).
    for n in range(1, 3001):
        ours, theirs = nearest_rank_index(p, n), trtexec_index(p, n)
        if (p * n / 100.0) % 1 == 0:
            assert theirs - ours in (0, 1), (p, n)
        else:
            assert ours == theirs, (p, n)


def test_percentile_is_an_observed_sample_and_not_interpolated():
    x = [1.0, 2.0, 3.0, 100.0]
    assert percentile(x, 90) == 100.0  # linear interpolation would give ~70.9
    assert percentile(x, 50) == 2.0
    assert percentile(x, 0) == 1.0 and percentile(x, 100) == 100.0
    assert median([3.0]) == 3.0


def test_errors():
    with pytest.raises(ValueError):
        summarize([])
    with pytest.raises(ValueError):
        percentile([1.0], 101)
    with pytest.raises(ValueError):
        summarize([1.0, float("nan")])
