"""The benchmark scripts' shared aggregation and rendering (benchmarks/_common.py), and bench_precision end to end
on a tiny model."""
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import _common as C  # noqa: E402


def _cell(key, values, batch=1, model="yolo11n", precision="fp32"):
    it = iter(values)
    fields = {"model": model, "precision": precision, "imgsz": [640, 640], "backend": "onnxruntime"}
    return C.Cell(key, lambda: {"compute": next(it)}, batch, fields, {"h2d": "host", "d2h": "host"})


def test_rounds_median_of_medians_and_efficiency():
    settings = dict(repeats=3, warmup_s=0, warmup_iters=0, duration_s=None, iters=3, min_iters=1)
    a = _cell("a", [10.0, 11.0, 12.0, 20.0, 21.0, 22.0, 30.0, 31.0, 32.0], batch=2)
    C.run_rounds([a], settings)
    assert len(a.loops) == 3
    e = C.cell_result(a, gflops=6.5, peak=1e9)
    assert e["stages"]["compute"]["count"] == 9 and e["stages"]["compute"]["median"] == 21.0
    assert e["stages"]["h2d"] is None and e["absent"]["h2d"] == "host"
    assert e["throughput"]["batch"] == 2
    assert e["throughput"]["images_per_s"] == pytest.approx(2 * e["throughput"]["batches_per_s"])
    assert e["flops"]["efficiency"] == pytest.approx(6.5 * e["throughput"]["images_per_s"] / 1e9)
    assert e["spread_ms"][0] <= e["median_ms"] <= e["spread_ms"][1]
    json.dumps(e)


def test_variant_table_renders_unavailable_precisions(tmp_path):
    import bench_variants as V

    settings = dict(repeats=1, warmup_s=0, warmup_iters=0, duration_s=None, iters=3, min_iters=1, threads=None, quick=True)
    cell = _cell(("yolo11n", "fp32", "640x640"), [5.0, 5.0, 5.0])
    C.run_rounds([cell], settings)
    report = C.new_report("variants", settings, {"gflops": 100.0, "how": "test"})
    e = C.cell_result(cell, 6.0, 100.0)
    e.update(ratio_vs_baseline_fp32=1.0, speedup_vs_own_fp32=1.0)
    report["results"] = [e, C.unavailable("yolo11n", "not available", "convert_fp16 is missing", precision="fp16",
                                          imgsz=[640, 640], batch=1)]
    md = V.markdown(report)
    assert "| yolo11n | fp32 | 640x640 |" in md
    assert "not available: convert_fp16 is missing" in md and "efficiency" in md
    png = tmp_path / "v.png"
    V.plot(report, str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = C.write_outputs("variants", str(tmp_path / "res"), report, md, lambda p: open(p, "wb").write(b"x"))
    assert sorted(os.listdir(out)) == ["results.json", "results.md", "variants.png"]
    from defectrt.bench.report import load, merge

    assert merge([load(os.path.join(out, "results.json"))])["rows"]  # the scripts' JSON merges like a bench report


def test_bench_precision_measures_latency_and_val_accuracy_of_each_file(tmp_path, capsys):
    pytest.importorskip("torch")
    from defectrt.data.synth import write_dataset

    import bench_precision

    data = str(tmp_path / "screw")
    write_dataset(data, kind="screw", n=6, imgsz=(128, 128), seed=3, val_fraction=0.5, progress=False)
    out = str(tmp_path / "p.json")
    report = bench_precision.main(["--model", "yolo11n", "--imgsz", "128", "--precisions", "fp32,int8-cpu",
                                   "--calib", os.path.join(data, "images", "train"), "--calib-count", "2", "--calib-seed", "1",
                                   "--warmup", "1", "--rounds", "2", "--per-round", "2", "--threads", "1",
                                   "--val", data, "--json", out])
    assert json.load(open(out)) == json.loads(json.dumps(report))
    res = report["results"]
    assert set(res) == {"fp32", "int8-cpu"} and res["fp32"]["runs"] == 4
    assert report["settings"]["calib_seed"] == 1
    assert res["fp32"]["speedup_vs_fp32"] == 1.0 and res["fp32"]["val"]["delta_map50_95_points"] == 0.0
    v = res["int8-cpu"]["val"]
    assert v["delta_map50_95_points"] == pytest.approx(100 * (v["map50_95"] - res["fp32"]["val"]["map50_95"]))
    assert set(v["per_class_map50_95"]) == {"scratch", "dent", "coating", "unprocessed"}
    assert "d mAP50-95 (pt)" in capsys.readouterr().out


def test_bench_int8_gate_scores_with_intervals_and_rescores_on_another_fresh_set(tmp_path):
    # One tiny PTQ cell end to end: the fresh-set change carries the fresh set's own interval, and --rescore
    # scores the same bundle on a second, independent fresh set without building anything.
    pytest.importorskip("onnxruntime")
    import bench_int8_gate as B

    common = ["--model", "demo:screw", "--kind", "screw", "--imgsz", "160,256", "--calib-sets", "1", "--calib-n", "8",
              "--calib-count", "4", "--gate-n", "8", "--no-latency", "--work", str(tmp_path / "w"),
              "--json", str(tmp_path / "r.json")]
    assert B.main(common + ["--fresh-n", "10", "--cells", "cpu:1:ptq"]) == 0
    row = json.load(open(str(tmp_path / "r.json")))["rows"][0]
    low, high = row["fresh_change_interval"]
    assert low <= row["fresh_change_points"] + 0.05 and row["fresh_change_points"] - 0.05 <= high
    bundles = sorted(os.listdir(str(tmp_path / "w")))
    assert B.main(common + ["--fresh-n", "12", "--fresh-seed", "302", "--rescore"]) == 0
    assert sorted(os.listdir(str(tmp_path / "w"))) == sorted(bundles + ["fresh-302-12"])  # nothing built
    again = json.load(open(str(tmp_path / "r.json")))["rows"][0]
    (entry,) = again["rescores"]
    assert entry["fresh_seed"] == 302 and entry["fresh_images"] == 12
    assert entry["change_interval"][0] <= entry["change_points"] + 0.05
    assert again["fresh_change_points"] == row["fresh_change_points"]  # the first scoring is kept


def test_gate_coverage_summary_compares_the_spread_between_sets_with_the_bootstrap():
    import bench_gate_coverage as V

    # three sets whose measured changes spread by exactly 1 point, each with a +-1.6449 interval (SE 1)
    sets = [{"change_points": c, "interval": [c - V.Z90, c + V.Z90]} for c in (-1.0, 0.0, 1.0)]
    s = V.summarize(sets, pooled_change=-2.0)
    assert s["sd_between_sets"] == pytest.approx(1.0) and s["mean_bootstrap_se"] == pytest.approx(1.0, abs=1e-3)
    assert s["sd_over_bootstrap_se"] == pytest.approx(1.0, abs=0.01)
    assert s["pooled_below_interval"] == 2 and s["pooled_above_interval"] == 0  # only -1 +- 1.64 reaches -2
    narrow = [dict(x, interval=[x["change_points"] - 0.1, x["change_points"] + 0.1]) for x in sets]
    assert V.summarize(narrow, 0.0)["sd_over_bootstrap_se"] > 10  # an interval too narrow for the spread


def test_bench_gate_coverage_scores_one_pair_on_independent_sets(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    import bench_gate_coverage as V

    out = str(tmp_path / "c.json")
    assert V.main(["--model", "demo:screw", "--kind", "screw", "--imgsz", "160,256", "--flavour", "cpu",
                   "--calib-n", "6", "--calib-count", "4", "--sets", "2", "--set-n", "6",
                   "--work", str(tmp_path / "w"), "--json", out]) == 0
    r = json.load(open(out))
    a, b = r["sets"]
    assert (a["seed"], b["seed"]) == (501, 502) and a["images"] == b["images"] == 6
    assert a["fp32_map50_95"] != b["fp32_map50_95"]  # independent images, not one set twice
    for s in r["sets"]:
        assert s["change_points"] == pytest.approx(100 * (s["int8_map50_95"] - s["fp32_map50_95"]), abs=1e-3)
    assert r["summary"]["sets"] == 2
    assert r["summary"]["sd_between_sets"] == pytest.approx(abs(a["change_points"] - b["change_points"]) / 2 ** 0.5,
                                                            abs=2e-3)
