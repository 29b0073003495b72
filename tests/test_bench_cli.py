"""`defectrt bench` end to end on a tiny ONNX detector built here (ONNX Runtime, CPU)."""
import json

import pytest

from bench_fakes import tiny_detector_onnx
from defectrt.cli import main

pytest.importorskip("defectrt.runtime.detector", reason="the runtime Detector is not in this tree")

FAST = ["--iters", "5", "--warmup-iters", "1", "--no-peak"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    dyn, fixed = str(d / "tiny.onnx"), str(d / "fixed.onnx")
    tiny_detector_onnx(dyn, nc=2, imgsz=(64, 96), dynamic_batch=True)
    tiny_detector_onnx(fixed, nc=2, imgsz=(64, 64))
    return {"dynamic": dyn, "fixed": fixed}


def _run(argv):
    return main(["bench"] + [str(a) for a in argv])


def test_model_mode_json_and_markdown(models, tmp_path):
    j, m = tmp_path / "r.json", tmp_path / "r.md"
    assert _run([models["dynamic"], "--batch", "1,2", "--json", j, "--md", m] + FAST) == 0
    rep = json.loads(j.read_text())
    assert rep["schema"] == "defectrt-bench-report" and rep["schema_version"] == 1
    assert rep["command"][:3] == ["defectrt", "bench", models["dynamic"]] and "--iters" in rep["command"]
    assert set(rep["environment"]) >= {"cpu", "memory", "os", "python", "software", "gpu", "jetson", "host_id"}
    r1, r2 = rep["results"]
    assert r1["status"] == r2["status"] == "ok"
    assert (r1["batch"], r2["batch"]) == (1, 2) and r1["imgsz"] == [64, 96]
    assert r1["backend"] == "onnxruntime" and r1["precision"] == "fp32" and r1["model"] == "tiny"
    for stage in ("preprocess", "compute", "postprocess", "end_to_end"):
        assert r1["stages"][stage]["count"] == 5 and r1["stages"][stage]["median"] > 0
    assert r1["stages"]["h2d"] is None and r1["stages"]["d2h"] is None  # ONNX Runtime CPU: absent, not zero
    tp = r2["throughput"]
    assert tp["queries"] == 5 and tp["batch"] == 2
    assert tp["images_per_s"] == pytest.approx(2 * tp["batches_per_s"]) == pytest.approx(10 / tp["wall_s"])
    assert r1["cold_start"]["load_ms"] > 0 and r1["cold_start"]["first_inference_ms"] > 0
    assert r1["memory"]["peak_rss_bytes"] > 0 and r1["flops"]["gflops_per_image"] > 0
    md = m.read_text()
    assert "| compute |" in md and "| h2d | absent |" in md and "## Summary" in md


def test_end_to_end_mode(models, tmp_path):
    j = tmp_path / "e.json"
    assert _run([models["dynamic"], "--end-to-end", "--json", j] + FAST) == 0
    r = json.loads(j.read_text())["results"][0]
    assert r["mode"] == "end_to_end"
    st = r["stages"]
    assert st["preprocess"]["count"] == st["compute"]["count"] == st["postprocess"]["count"] == 5
    assert st["end_to_end"]["median"] >= st["compute"]["median"]


def test_markdown_to_stdout_and_peak(models, capsys):
    assert _run([models["fixed"], "--iters", "3", "--warmup-iters", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# defectrt bench") and "Measured peak:" in out and "| end_to_end |" in out


def test_fixed_batch_cell_not_available(models, tmp_path):
    j = tmp_path / "f.json"
    assert _run([models["fixed"], "--batch", "1,2", "--json", j] + FAST) == 0
    r1, r2 = json.loads(j.read_text())["results"]
    assert r1["status"] == "ok" and r2["status"] == "not available" and "fixed batch of 1" in r2["error"]


def test_user_errors(models, tmp_path, capsys):
    out = tmp_path / "exists.json"
    out.write_text("{}")
    assert _run([models["dynamic"], "--json", out] + FAST) == 1  # never overwrite without --force
    assert "already exists" in capsys.readouterr().err
    assert out.read_text() == "{}"
    assert _run([models["dynamic"], "--json", out, "--force"] + FAST) == 0
    assert json.loads(out.read_text())["results"]
    capsys.readouterr()
    for argv in ([models["dynamic"], "--batch", "1,x"], [models["dynamic"], "--batch", "0"],
                 [str(tmp_path / "missing.onnx")], [models["dynamic"], "--iters", "0"],
                 [models["fixed"], "--imgsz", "128", "128"], [models["dynamic"], "--cuda-graph"]):
        assert _run(argv + ["--no-peak"]) == 1, argv
        err = capsys.readouterr().err
        assert err.startswith("defectrt bench: error:") and "Traceback" not in err, err
    for argv in (["merge"], ["merge", str(tmp_path / "nope.json")]):  # issue 15: merge is its own subcommand
        assert _run(argv) == 1, argv
        err = capsys.readouterr().err
        assert err.startswith("defectrt bench merge: error:") and "Traceback" not in err, err
    with pytest.raises(SystemExit):  # a measuring option is a usage error of `bench merge`
        _run(["merge", str(tmp_path / "nope.json"), "--no-peak"])
    assert "error: unrecognized arguments: --no-peak" in capsys.readouterr().err


def test_merge_two_machines(models, tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert _run([models["dynamic"], "--label", "line-pc", "--json", a] + FAST) == 0
    assert _run([models["dynamic"], "--label", "orin-nano", "--json", b] + FAST) == 0
    md, js = tmp_path / "cmp.md", tmp_path / "cmp.json"
    assert _run(["merge", a, b, "--md", md, "--json", js]) == 0
    table = json.loads(js.read_text())
    assert table["machines"] == ["line-pc", "orin-nano"]
    assert len(table["rows"]) == 1 and set(table["rows"][0]["cells"]) == {"line-pc", "orin-nano"}
    text = md.read_text()
    assert "line-pc median (ms)" in text and "orin-nano images/s" in text and "| tiny | fp32 | 64x96 | 1 | model |" in text
    capsys.readouterr()
    assert _run(["merge", a, b]) == 0
    assert "line-pc" in capsys.readouterr().out
    merged = tmp_path / "old.md"  # the old spelling, options before `merge`, still works (with a warning)
    assert _run(["--md", merged, "merge", a, b]) == 0
    assert merged.read_text() == text and "deprecated" in capsys.readouterr().err


def test_bench_merge_has_its_own_help(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "merge", "--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: defectrt bench merge") and "REPORT" in out and "--batch" not in out


def test_recorded_command_line_is_rebuilt_from_the_options():
    import argparse

    from defectrt.bench.command import bench_command

    ns = argparse.Namespace(models=["m.onnx"], backend="auto", batch="1,2", warmup_s=0.2, warmup_iters=3,
                            duration_s=3.0, iters=None, threads=None, inflight=None, ov_precision=None,
                            ov_streams=None, ov_cache_dir=None, label=None, json="r.json", md=None,
                            imgsz=[64, 96], end_to_end=True, cuda_graph=False, no_peak=True, force=False)
    assert bench_command(ns) == ["defectrt", "bench", "m.onnx", "--backend", "auto", "--batch", "1,2",
                                 "--warmup-iters", "3", "--duration-s", "3.0", "--json", "r.json",
                                 "--imgsz", "64", "96", "--end-to-end", "--no-peak"]
