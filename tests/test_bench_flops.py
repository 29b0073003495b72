import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from bench_fakes import tiny_detector_onnx
from defectrt.bench import flops
from defectrt.errors import UserInputError


def _graph(batch="N", h="H", w="W"):
    rng = np.random.default_rng(0)

    def init(name, shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    inits = [init("w1", (8, 3, 3, 3)), init("w2", (8, 2, 3, 3)), init("wt", (8, 4, 2, 2)),
             init("m", (16, 5)), init("g", (7, 5)), init("shape", (2,))]
    inits[-1] = numpy_helper.from_array(np.array([-1, 16], np.int64), "shape")
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),           # 8x16x16, Cin 3, k3
        helper.make_node("Conv", ["c1", "w2"], ["c2"], pads=[1, 1, 1, 1], group=4),  # grouped: Cin/g = 2
        helper.make_node("ConvTranspose", ["c2", "wt"], ["ct"], strides=[2, 2]),     # 8x16x16 -> 4x32x32
        helper.make_node("Relu", ["ct"], ["r"]),
        helper.make_node("Reshape", ["r", "shape"], ["flat"]),                       # (N*4*32*32/16, 16)
        helper.make_node("MatMul", ["flat", "m"], ["mm"]),                           # (R, 16) x (16, 5)
        helper.make_node("Gemm", ["mm", "g"], ["y"], transB=1),                      # (R, 5) x (5, 7)
    ]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, h, w])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _expected(n=1, h=16, w=16):
    conv1 = n * 8 * h * w * 3 * 9
    conv2 = n * 8 * h * w * 2 * 9
    convt = n * 8 * h * w * 4 * 4  # every input element x Cout/g x k x k
    rows = n * 4 * (2 * h) * (2 * w) // 16
    return 2 * (conv1 + conv2 + convt + rows * 16 * 5 + rows * 5 * 7)


def test_counts_conv_grouped_transpose_matmul_gemm():
    r = flops.count_flops(_graph(1, 16, 16))
    assert r["uncounted"] == []
    assert r["flops"] == _expected()
    assert set(r["by_op"]) == {"Conv", "ConvTranspose", "MatMul", "Gemm"}
    assert r["by_op"]["Conv"] == 2 * (8 * 256 * 27 + 8 * 256 * 18)


def test_dynamic_inputs_fixed_by_batch_and_imgsz():
    model = _graph()
    assert flops.count_flops(model, batch=1, imgsz=(16, 16))["flops"] == _expected()
    assert flops.count_flops(model, batch=2, imgsz=(16, 32))["flops"] == _expected(2, 16, 32)
    assert flops.count_flops(model, input_shapes={"x": (1, 3, 32, 32)})["flops"] == _expected(1, 32, 32)
    with pytest.raises(UserInputError):
        flops.count_flops(model)  # dynamic H, W and no size given


def test_tiny_detector_file(tmp_path):
    info = tiny_detector_onnx(tmp_path / "t.onnx", nc=3, imgsz=(64, 96))
    assert flops.count_flops(str(tmp_path / "t.onnx"))["flops"] == info["flops"]


def test_unreadable_file(tmp_path):
    p = tmp_path / "bad.onnx"
    p.write_bytes(b"not onnx")
    with pytest.raises(UserInputError):
        flops.count_flops(str(p))


def test_peak_and_efficiency():
    peak = flops.peak_gflops(n=128, repeats=2)
    assert peak["gflops"] > 0.05 and peak["n"] == 128
    assert peak["gflops"] == pytest.approx(2 * 128 ** 3 / peak["best_s"] / 1e9)
    achieved, eff = flops.efficiency(6.5, 20.0, 260.0)
    assert achieved == pytest.approx(130.0) and eff == pytest.approx(0.5)
    assert flops.efficiency(None, 20.0, 100.0) == (None, None)
    assert flops.efficiency(1.0, 20.0, None) == (20.0, None)


def test_efficiency_never_exceeds_the_measured_peak():
    # issue 19: the scaling benchmark printed 173%; above the peak there is no efficiency to print
    assert flops.efficiency(10.0, 17.3, 100.0) == (pytest.approx(173.0), None)
    assert flops.efficiency(10.0, 10.0, 100.0)[1] == pytest.approx(1.0)
    for ips in (1.0, 5.0, 9.99, 10.0, 10.01, 50.0):
        eff = flops.efficiency(10.0, ips, 100.0)[1]
        assert eff is None or 0 <= eff <= 1.0
