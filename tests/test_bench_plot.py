"""issue 19 item 5: `defectrt bench --plot` writes a latency histogram / CDF per stage and a throughput-vs-batch
chart as PNG next to the JSON; without matplotlib it says what to install before measuring."""
import json
import sys

import pytest

from bench_fakes import tiny_detector_onnx
from defectrt.cli import main

pytest.importorskip("matplotlib")
PNG = b"\x89PNG\r\n\x1a\n"


def test_bench_plot_writes_pngs_next_to_the_json(tmp_path, capsys):
    model = str(tmp_path / "tiny.onnx")
    tiny_detector_onnx(model, nc=2, imgsz=(64, 96), dynamic_batch=True)
    j = tmp_path / "r.json"
    assert main(["bench", model, "--batch", "1,2", "--iters", "8", "--warmup-iters", "1", "--no-peak",
                 "--json", str(j), "--plot"]) == 0
    rep = json.loads(j.read_text())
    r1 = rep["results"][0]
    assert len(r1["samples_ms"]["compute"]) == 8 and len(r1["samples_ms"]["preprocess"]) == 8
    assert min(r1["samples_ms"]["compute"]) == pytest.approx(r1["stages"]["compute"]["min"], abs=1e-3)
    for name in ("r_latency.png", "r_throughput.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == PNG and len(data) > 5000
    out = capsys.readouterr().out
    assert "r_latency.png" in out and "r_throughput.png" in out


def test_plot_without_matplotlib_fails_before_measuring(tmp_path, capsys, monkeypatch):
    model = str(tmp_path / "tiny.onnx")
    tiny_detector_onnx(model, nc=2, imgsz=(64, 64))
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    import defectrt.bench.runner as runner

    def no_bench(*a, **k):
        raise AssertionError("measured before checking matplotlib")

    monkeypatch.setattr(runner, "bench_model", no_bench)
    assert main(["bench", model, "--iters", "3", "--no-peak", "--plot"]) == 1
    err = capsys.readouterr().err
    assert "pip install 'defectrt[plot]'" in err and "Traceback" not in err


def test_plot_report_refuses_a_report_without_samples(tmp_path):
    from defectrt.bench.plot import plot_report
    from defectrt.errors import UserInputError

    with pytest.raises(UserInputError, match="no measured cell"):
        plot_report({"results": [{"status": "failed"}]}, str(tmp_path / "x.json"))
