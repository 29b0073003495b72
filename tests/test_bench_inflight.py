"""`defectrt bench --inflight N` (throughput mode) on a tiny ONNX detector, ONNX Runtime and OpenVINO."""
import json

import pytest

from bench_fakes import tiny_detector_onnx
from defectrt.cli import main
from defectrt.runtime import openvino_backend as ovb

FAST = ["--iters", "3", "--warmup-iters", "1", "--no-peak"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("models") / "tiny.onnx")
    tiny_detector_onnx(path, nc=2, imgsz=(64, 96), dynamic_batch=True)
    return path


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_inflight_reports_images_per_second_of_bursts(tiny, tmp_path, backend):
    if backend == "openvino" and ovb.import_openvino() is None:
        pytest.skip("OpenVINO not installed: pip install 'defectrt[openvino]'")
    j = tmp_path / "t.json"
    assert main(["bench", tiny, "--backend", backend, "--inflight", "2", "--json", str(j)] + FAST) == 0
    rep = json.loads(j.read_text())
    r = rep["results"][0]
    assert r["status"] == "ok" and r["mode"] == "throughput" and r["inflight"] == 2 and r["backend"] == backend
    tp = r["throughput"]
    assert tp["queries"] == 3 and r["images_per_query"] == 8
    assert tp["images_per_s"] == pytest.approx(8 * 3 / tp["wall_s"])
    assert "throughput mode" in r["absent"]["compute"]
    assert "--inflight" in rep["command"] and rep["settings"]["mode"] == "throughput"


def test_inflight_needs_batch_one_and_a_positive_count(tiny, tmp_path, capsys):
    assert main(["bench", tiny, "--inflight", "0"] + FAST) == 1
    assert "--inflight must be >= 1" in capsys.readouterr().err
