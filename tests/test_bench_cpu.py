"""benchmarks/bench_cpu_backends.py's report (per-round ratios, the two cores' ceiling) and bench_cpu_gemm.py on a
small product (issue #18)."""
import json
import os
import subprocess
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, BENCH)

import bench_cpu_backends as B  # noqa: E402


def _report():
    return {"rounds": {"ort_fp32_native": [40.0, 80.0, 50.0], "ort_fp32_lowered": [30.0, 60.0, 40.0],
                       "ov_fp32": [30.0, 50.0, 40.0]},
            "cpu_rounds": {"ort_fp32_native": [40.0, 40.0, 40.0], "ort_fp32_lowered": [30.0, 30.0, 30.0],
                           "ov_fp32": [20.0, 30.0, 24.0]},
            "median_ms": {"ort_fp32_native": 50.0, "ort_fp32_lowered": 40.0, "ov_fp32": 40.0},
            "accuracy": {"ort_fp32_native": {"map50_95": 0.75}, "ov_fp32": {"map50_95": 0.745}},
            "throughput_images_per_s": {"openvino/fp32/1": [70.0, 30.0, 40.0], "openvino/fp32/2": [77.0, 36.0, 48.0]},
            "throughput_median": {"openvino/fp32/1": 40.0, "openvino/fp32/2": 48.0},
            "load_average_start": [0.5, 0.4, 0.3], "load_average": [1.0, 0.9, 0.8]}


def test_ceiling_share_is_images_per_s_over_twice_the_same_rounds_one_thread_rate():
    report = _report()
    # per round: 70 / (2 x 1000/30) = 1.05, 30 / (2 x 1000/50) = 0.75, 40 / (2 x 1000/40) = 0.8 -> median 0.80
    assert B._ceiling_share(report, "openvino/fp32/1") == "0.80"
    assert B._ceiling_share(report, "onnxruntime/int8cpu/2") == ""  # no one-thread cell for it
    md = B.markdown(report)
    # median of per-round ratios: wall 30/40, 50/80, 40/50; CPU 20/40, 30/40, 24/40
    assert "| ov_fp32 | 40.0 | 30 50 40 | 0.75x | 0.60x |" in md
    assert "+0.50" in md  # 0.75 - 0.745 in points
    assert "| openvino/fp32/2 | 48.0 | 77.0 36.0 48.0 | 1.20x | 0.96 |" in md  # 1.1, 1.2, 1.2; 1.155, 0.9, 0.96
    assert "at the start: 0.5 0.4 0.3; at the end: 1.0 0.9 0.8" in md


def test_gemm_probe_reports_int8_and_bf16_kernels(tmp_path):
    pytest.importorskip("openvino", reason="OpenVINO not installed: pip install 'defectrt[openvino]'")
    out = tmp_path / "gemm.json"
    subprocess.run([sys.executable, os.path.join(BENCH, "bench_cpu_gemm.py"), "--size", "128", "--rounds", "1",
                    "--out", str(out)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cells = json.loads(out.read_text())["cells"]
    assert set(cells) == {"f32", "bf16", "int8"}
    assert all(c["gflop_per_s"] > 0 and c["model_floor_ms"] > 0 for c in cells.values())
    assert any("I8" in k for k in cells["int8"]["kernels"])  # the product really ran in int8
