import json

import pytest

from bench_fakes import FakeDetector, FakeGpuBackend
from defectrt.bench import report as rep
from defectrt.bench import runner
from defectrt.errors import OutputExistsError, UserInputError

ENV = {"host_id": "abcdef123456", "cpu": {"model": "Fake CPU", "logical_cores": 2, "affinity_cores": 2},
       "memory": {"total_bytes": 1}, "os": {"distribution": "Test OS", "kernel": "6.0"}, "python": {"version": "3.8.0"},
       "software": {"numpy": "1.24.0", "tensorrt": "absent", "cuda": {"version": "absent"}}, "gpu": "unknown",
       "jetson": {"is_jetson": False}}
SETTINGS = dict(warmup_iters=1, iters=5)


def _report(label, det, batches=(1, 2), precision="fp32"):
    r = rep.new_report(["defectrt", "bench", "m.onnx"], ENV, dict(SETTINGS, mode="model"), label=label,
                       peak={"gflops": 100.0, "how": "numpy"})
    for b in batches:
        m = runner.measure(det, batch=b, settings=SETTINGS)
        entry = rep.result_entry("yolo11n", m, precision=precision, backend="fake", source="m.onnx")
        entry["cold_start"] = {"load_ms": 12.5, "first_inference_ms": 30.0}
        entry["memory"] = {"peak_rss_bytes": 200 << 20, "gpu_bytes": "unknown"}
        entry["flops"] = {"gflops_per_image": 6.5, "achieved_gflops": 50.0, "efficiency": 0.5}
        r["results"].append(entry)
    return r


@pytest.fixture(scope="module")
def cpu_report():
    return _report("cpu box", FakeDetector(pre_ms=0.5, infer_ms=2.0, post_ms=0.5))


@pytest.fixture(scope="module")
def gpu_report():
    return _report("gpu box", FakeDetector(backend=FakeGpuBackend(h2d=0.5, compute=3.0, d2h=0.25), pre_ms=0.5, post_ms=0.5))


def test_schema_and_json_round_trip(cpu_report, tmp_path):
    assert cpu_report["schema"] == rep.SCHEMA and cpu_report["schema_version"] == 1
    assert cpu_report["command"][:2] == ["defectrt", "bench"]
    path = tmp_path / "r.json"
    rep.write_json(cpu_report, str(path))
    back = rep.load(str(path))
    r0 = back["results"][0]
    assert r0["stages"]["h2d"] is None and "h2d" in r0["absent"]  # absent, not zero
    assert set(r0["stages"]["end_to_end"]) >= {"min", "mean", "median", "p90", "p95", "p99", "max", "std", "cov", "count"}
    assert r0["throughput"]["batch"] == 1 and back["results"][1]["throughput"]["batch"] == 2
    with pytest.raises(OutputExistsError):
        rep.write_json(cpu_report, str(path))  # never overwrite without force
    rep.write_json(cpu_report, str(path), force=True)


def test_markdown_has_stage_rows_and_summary(cpu_report, gpu_report):
    md = rep.to_markdown(cpu_report)
    for stage in ("preprocess", "compute", "postprocess", "end_to_end"):
        assert "| {} |".format(stage) in md
    assert "| h2d | absent |" in md and "| d2h | absent |" in md
    assert "## Summary" in md and "| yolo11n | fp32 | 64x96 | 2 | model |" in md
    assert "Cold start: load 12.5 ms, first inference 30 ms" in md
    assert "efficiency 50.0%" in md and "Fake CPU" in md
    header = next(line for line in md.splitlines() if line.startswith("| stage (ms)"))
    row = next(line for line in md.splitlines() if line.startswith("| h2d |"))
    assert header.count("|") == row.count("|")  # the absent row has as many cells as the header
    gmd = rep.to_markdown(gpu_report)
    assert "| h2d | 0.5 |" in gmd and "| d2h | 0.25 |" in gmd and "| compute | 3 |" in gmd


def test_merge_two_machines_one_table(cpu_report, gpu_report, tmp_path):
    table = rep.merge([cpu_report, gpu_report])
    assert table["machines"] == ["cpu box", "gpu box"]
    assert len(table["rows"]) == 2  # batch 1 and 2, each with both machines
    for row in table["rows"]:
        assert set(row["cells"]) == {"cpu box", "gpu box"}
        assert row["cells"]["cpu box"]["median_ms"] > 0 and row["cells"]["gpu box"]["images_per_s"] > 0
    e2e = cpu_report["results"][1]["stages"]["end_to_end"]["median"]
    assert table["rows"][1]["cells"]["cpu box"]["median_ms"] == e2e
    md = rep.merge_markdown(table)
    assert "cpu box median (ms)" in md and "gpu box images/s" in md
    assert md.count("| yolo11n | fp32 |") == 2
    json.dumps(table)


def test_merge_rows_of_one_machine_only_and_duplicate_labels(cpu_report):
    other = json.loads(rep.dumps(cpu_report))
    other["results"][0]["precision"] = "int8"
    other["results"][1]["status"] = "failed"
    other["results"][1]["error"] = "boom"
    table = rep.merge([cpu_report, other])
    assert table["machines"] == ["cpu box", "cpu box #2"]
    keys = [(r["precision"], r["batch"]) for r in table["rows"]]
    assert keys == [("fp32", 1), ("fp32", 2), ("int8", 1)]
    assert "cpu box #2" not in table["rows"][0]["cells"]
    assert table["rows"][1]["cells"]["cpu box #2"]["median_ms"] is None
    md = rep.merge_markdown(table)
    assert "| failed | - |" in md


def test_validate_rejects_other_json(tmp_path):
    with pytest.raises(UserInputError):
        rep.validate({"results": []})
    with pytest.raises(UserInputError):
        rep.validate({"schema": rep.SCHEMA, "schema_version": 99, "results": []})
    p = tmp_path / "x.json"
    p.write_text("{not json")
    with pytest.raises(UserInputError):
        rep.load(str(p))
    with pytest.raises(UserInputError):
        rep.load(str(tmp_path / "missing.json"))
    with pytest.raises(UserInputError):
        rep.merge([])


def test_failed_result_rendered():
    r = rep.new_report(["x"], ENV, {}, label="m")
    r["results"].append(rep.result_entry("yolo11n", status="not available", error="quantize_int8 missing",
                                         precision="int8", batch=1, imgsz=[640, 640]))
    md = rep.to_markdown(r)
    assert "not available: quantize_int8 missing" in md
    assert rep.fmt(None) == "-" and rep.fmt(12345.6) == "12346" and rep.fmt(0.012345) == "0.01235"
