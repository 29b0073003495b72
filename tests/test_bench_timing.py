"""Timing core against workloads of known duration (time.sleep) and a fake multi-stage backend.

Bounds are generous (a loaded 2-core machine oversleeps) but tight enough to catch a throughput that
ignores the batch size, a wrong unit, or percentiles off by a factor.
"""
import itertools

import pytest

from bench_fakes import FakeCpuBackend, FakeDetector, FakeGpuBackend, sleep_ms
from defectrt.bench import runner, timing
from defectrt.errors import UserInputError


def test_sleep_workload_latency_and_throughput_include_batch():
    loop = timing.run_loop(lambda: sleep_ms(2.0), batch=4, warmup_iters=2, iters=30)
    assert loop.queries == 30 and loop.warmup_queries == 2
    e2e = loop.stats()["end_to_end"]
    assert e2e["count"] == 30
    assert 1.9 <= e2e["min"] and 1.9 <= e2e["median"] <= 8.0  # milliseconds, not seconds or ns
    assert e2e["p99"] >= e2e["p95"] >= e2e["p90"] >= e2e["median"] >= e2e["min"]
    # throughput: batches/s from the measuring phase's wall time, images/s = batch x batches/s
    assert 1000 / 8.0 <= loop.batches_per_s <= 1000 / 1.9
    assert loop.images_per_s == pytest.approx(4 * loop.batches_per_s)
    assert loop.throughput()["images_per_s"] == pytest.approx(4 * 30 / loop.wall_s)
    # the wall time covers every query (and little else)
    total = sum(loop.samples["end_to_end"]) / 1000
    assert total <= loop.wall_s <= total * 1.5 + 0.05


def test_duration_mode_runs_at_least_duration_and_min_iters():
    loop = timing.run_loop(lambda: sleep_ms(2.0), warmup_s=0.02, duration_s=0.1, min_iters=10)
    assert loop.wall_s >= 0.1
    assert loop.queries >= 10
    assert loop.warmup_queries >= 1 and loop.warmup_s >= 0.02
    # a duration too short for min_iters still gives min_iters queries
    loop = timing.run_loop(lambda: sleep_ms(2.0), warmup_iters=0, duration_s=0.001, min_iters=15)
    assert loop.queries == 15


def test_inner_stage_samples_pass_through_and_percentiles_are_nearest_rank():
    values = itertools.cycle(range(1, 101))  # a stage that reports 1, 2, ..., 100 ms
    loop = timing.run_loop(lambda: {"compute": float(next(values)), "h2d": None}, warmup_iters=0, iters=100)
    s = loop.stats()
    assert "h2d" not in s  # None means "not measured", never a zero sample
    c = s["compute"]
    assert (c["min"], c["median"], c["p90"], c["p95"], c["p99"], c["max"]) == (1, 50.5, 90, 95, 99, 100)
    assert c["mean"] == 50.5


def test_settings_rejected():
    for kw in ({"iters": 0}, {"duration_s": 0}, {"warmup_s": -1}, {"warmup_iters": -1}):
        with pytest.raises(UserInputError):
            timing.run_loop(lambda: None, **kw)
    with pytest.raises(UserInputError):
        timing.run_loop(lambda: None, batch=0, iters=1)


def test_model_query_cpu_backend_has_no_copies():
    be = FakeCpuBackend(infer_ms=2.0)
    query, absent = timing.model_query(be.infer, __import__("numpy").zeros((2, 3, 8, 8), "float32"), be)
    assert set(absent) == {"h2d", "d2h"}
    loop = timing.run_loop(query, batch=2, warmup_iters=1, iters=10)
    s = loop.stats()
    assert 1.9 <= s["compute"]["median"] <= 8.0
    assert "h2d" not in s and "d2h" not in s


def test_model_query_uses_the_gpu_event_hook():
    import numpy as np

    be = FakeGpuBackend(h2d=0.5, compute=3.0, d2h=0.25, enqueue=0.1)
    assert not timing.runs_on_host(be)
    query, absent = timing.model_query(be.infer, np.zeros((1, 3, 8, 8), np.float32), be)
    assert absent == {}
    s = timing.run_loop(query, warmup_iters=1, iters=20).stats()
    assert s["h2d"]["median"] == 0.5 and s["compute"]["median"] == 3.0 and s["d2h"]["median"] == 0.25
    assert s["enqueue"]["median"] == 0.1
    assert s["latency"]["median"] == pytest.approx(3.75)  # trtexec's Latency = h2d + compute + d2h
    assert s["end_to_end"]["median"] < 3.0  # host wall of the fake hook, not the reported event times


def test_gpu_backend_without_hook_is_host_timed_only():
    import numpy as np

    class NoHook(FakeCpuBackend):
        name = "tensorrt"
        providers = []
        device = "cuda"  # a GPU backend that does not offer time_stages

    be = NoHook(infer_ms=2.0)
    assert not timing.runs_on_host(be)
    query, absent = timing.model_query(be.infer, np.zeros((1, 3, 8, 8), np.float32), be)
    assert set(absent) == {"h2d", "compute", "d2h"}
    s = timing.run_loop(query, warmup_iters=0, iters=5).stats()
    assert "compute" not in s and s["infer_host"]["median"] >= 1.9


def test_cuda_graph_hook():
    be = FakeGpuBackend()
    assert timing.enable_cuda_graph(be) and be.graph
    with pytest.raises(UserInputError):
        timing.enable_cuda_graph(FakeCpuBackend())


def _stats(**medians):
    return {k: {"median": v, "cov": 0.01, "count": 10} for k, v in medians.items()}


def test_warnings():
    assert timing.warnings_for(_stats(compute=5.0, preprocess=1.0, postprocess=1.0, end_to_end=5.1)) == []
    w = timing.warnings_for(_stats(compute=2.0, preprocess=1.5, postprocess=1.0))
    assert any("bound by the host" in x for x in w)
    w = timing.warnings_for(_stats(compute=2.0, h2d=2.5, d2h=0.1))
    assert any("host-to-device" in x for x in w) and not any("device-to-host" in x for x in w)
    w = timing.warnings_for(_stats(compute=2.0, enqueue=1.9))
    assert any("enqueue" in x for x in w)
    unstable = _stats(compute=2.0)
    unstable["compute"]["cov"] = 0.25
    assert any("unstable" in x and "25.0%" in x for x in timing.warnings_for(unstable))


def test_unstable_warning_from_real_samples():
    ms = itertools.cycle([1.0, 1.0, 1.0, 5.0])
    s = timing.run_loop(lambda: {"compute": next(ms)}, warmup_iters=0, iters=40).stats()
    assert any("compute time is unstable" in w for w in timing.warnings_for(s))


def test_memory_and_cold_start():
    mem = timing.host_memory()
    assert mem["peak_rss_bytes"] > 10 * (1 << 20)  # bytes (getrusage's KiB converted), a Python process
    assert mem["vmhwm_bytes"] is None or abs(mem["vmhwm_bytes"] - mem["peak_rss_bytes"]) < 0.5 * mem["peak_rss_bytes"]
    assert timing.gpu_memory(None, which=lambda name: None) == "unknown"

    class WithMem(object):
        def device_memory_bytes(self):
            return 123

    assert timing.gpu_memory(WithMem(), which=lambda name: None) == 123
    obj, arg, cold = timing.cold_start(lambda: sleep_ms(5) or "m", lambda o, a: sleep_ms(2), lambda o: sleep_ms(20))
    assert obj == "m" and 4.9 <= cold["load_ms"] < 19 and 1.9 <= cold["first_inference_ms"] < 19  # prepare untimed


def test_measure_model_mode_separates_stages():
    det = FakeDetector(pre_ms=1.0, infer_ms=4.0, post_ms=2.0)
    m = runner.measure(det, batch=2, settings=dict(warmup_iters=1, iters=10))
    st = m["stages"]
    assert m["mode"] == "model" and m["imgsz"] == [64, 96]
    assert 0.9 <= st["preprocess"]["median"] < 3.9  # clearly below compute: stages are not mixed up
    assert 3.9 <= st["compute"]["median"] <= 10
    assert 1.9 <= st["postprocess"]["median"] < 3.9
    assert st["h2d"] is None and st["d2h"] is None and "h2d" in m["absent"] and "d2h" in m["absent"]
    assert st["end_to_end"]["median"] < st["compute"]["median"] + 3.0  # model call only, without pre/post
    assert m["throughput"]["batch"] == 2
    assert m["throughput"]["images_per_s"] == pytest.approx(2 * m["throughput"]["batches_per_s"])


def test_measure_end_to_end_times_detector_call_with_stage_breakdown():
    det = FakeDetector(pre_ms=1.0, infer_ms=4.0, post_ms=2.0)
    m = runner.measure(det, batch=1, end_to_end=True, settings=dict(warmup_iters=1, iters=10))
    st = m["stages"]
    assert det.calls == 11  # warm-up + measured queries all went through __call__
    assert st["end_to_end"]["median"] >= 6.9
    assert st["end_to_end"]["median"] >= st["preprocess"]["median"] + st["compute"]["median"] + st["postprocess"]["median"] - 0.1
    assert 3.9 <= st["compute"]["median"] <= 10
    assert "preprocess" not in det.__dict__  # the stage wrappers are removed afterwards


def test_measure_gpu_backend_reports_event_stages():
    det = FakeDetector(backend=FakeGpuBackend(h2d=0.5, compute=3.0, d2h=0.25))
    m = runner.measure(det, batch=1, settings=dict(warmup_iters=0, iters=5))
    assert m["stages"]["h2d"]["median"] == 0.5 and m["stages"]["compute"]["median"] == 3.0
    assert m["absent"] == {}


def test_bench_model_with_fake_detector(tmp_path):
    from bench_fakes import tiny_detector_onnx

    path = tmp_path / "tiny.onnx"
    info = tiny_detector_onnx(path, imgsz=(64, 96))

    class Flaky(FakeDetector):
        def infer(self, blob):
            if blob.shape[0] > 2:
                raise RuntimeError("fixed batch")
            return super(Flaky, self).infer(blob)

    results = runner.bench_model(str(path), batches=[1, 4], detector_cls=Flaky, peak_gflops=100.0,
                                 settings=dict(warmup_iters=1, iters=5))
    ok, failed = results
    assert ok["status"] == "ok" and ok["model"] == "tiny" and ok["precision"] == "fp32"
    assert ok["cold_start"]["first_inference_ms"] >= 3.9 and ok["cold_start"]["load_ms"] >= 0
    assert ok["flops"]["gflops_per_image"] == pytest.approx(info["flops"] / 1e9)
    assert ok["flops"]["efficiency"] == pytest.approx(ok["flops"]["achieved_gflops"] / 100.0)
    assert ok["memory"]["peak_rss_bytes"] > 0
    assert ok["memory"]["gpu_bytes"] == "unknown" or isinstance(ok["memory"]["gpu_bytes"], int)
    assert failed["status"] == "failed" and "fixed batch" in failed["error"] and failed["batch"] == 4
