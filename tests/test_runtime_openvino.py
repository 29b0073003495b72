"""OpenVINO backend: same detections as ONNX Runtime on the demo bundles, options, throughput mode.

Tests that run OpenVINO skip with the reason where it is not installed (`make test` installs it).
"""
import os

import numpy as np
import pytest

from defectrt.errors import BackendUnavailable, UserInputError
from defectrt.runtime import openvino_backend as ovb
from defectrt.runtime.detector import Detector

needs_openvino = pytest.mark.skipif(ovb.import_openvino() is None,
                                    reason="OpenVINO not installed: pip install 'defectrt[openvino]'")


def _images(kind, n, seed=4242):
    from defectrt.data.synth import generate

    return [generate(kind, i, seed=seed)[0] for i in range(n)]


def _compare(bundle, images, box_atol):
    ort = Detector(bundle, backend="onnxruntime", conf=0.25)
    ov = Detector(bundle, backend="openvino", conf=0.25)
    assert ov.backend_name == "openvino" and "OpenVINO" in ov.backend_reason
    total = 0
    for img in images:
        a, b = ort(img), ov(img)
        assert len(a) == len(b)
        np.testing.assert_array_equal(a.class_ids, b.class_ids)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=box_atol)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-3)
        total += len(a)
    assert total > 0  # the comparison saw detections
    return ov


@needs_openvino
def test_openvino_matches_onnxruntime_on_the_demo_screw_bundle(demo_bundle):
    ov = _compare(demo_bundle, _images("screw", 4), box_atol=0.5)
    ov.close()


@needs_openvino
def test_openvino_matches_onnxruntime_on_the_demo_pcb_bundle(tmp_path):
    pytest.importorskip("torch")
    from defectrt.export.bundle import build_bundle

    build_bundle("demo:pcb", str(tmp_path / "pcb.bundle"), precision="fp32")
    _compare(str(tmp_path / "pcb.bundle"), _images("pcb", 3), box_atol=0.5).close()


@needs_openvino
def test_openvino_reads_fp16_and_int8_onnx(demo_bundle, tmp_path):
    """FP16 (initialisers and compute in half) and INT8 Q/DQ files load and agree with ONNX Runtime's run."""
    import onnx
    from onnx import helper, numpy_helper

    from defectrt.runtime.onnxruntime_backend import OnnxRuntimeBackend

    src = os.path.join(demo_bundle, "model.onnx")
    blob = np.random.default_rng(0).random((1, 3, 384, 672), dtype=np.float32)
    # INT8 Q/DQ: a QuantizeLinear / DequantizeLinear pair in front of the network, as a Q/DQ export has.
    model = onnx.load(src)
    g = model.graph
    g.initializer.extend([numpy_helper.from_array(np.array(1 / 255.0, np.float32), "qdq_scale"),
                          numpy_helper.from_array(np.array(0, np.uint8), "qdq_zero")])
    for node in g.node:
        node.input[:] = ["images_dq" if i == "images" else i for i in node.input]
    g.node.insert(0, helper.make_node("DequantizeLinear", ["images_q", "qdq_scale", "qdq_zero"], ["images_dq"]))
    g.node.insert(0, helper.make_node("QuantizeLinear", ["images", "qdq_scale", "qdq_zero"], ["images_q"]))
    qdq = str(tmp_path / "qdq.onnx")
    onnx.save(model, qdq)
    a = ovb.OpenVinoBackend(qdq).infer(blob)
    b = OnnxRuntimeBackend(qdq).infer(blob)
    assert np.abs(a[:, :4] - b[:, :4]).max() < 1.0
    # FP16: weights and compute in half (inputs / outputs float32), against ONNX Runtime's FP32 run.
    float16 = pytest.importorskip("onnxconverter_common.float16", reason="onnxconverter-common (modelopt extra) "
                                  "is needed to write an FP16 model")
    half = str(tmp_path / "fp16.onnx")
    onnx.save(float16.convert_float_to_float16(onnx.load(src), keep_io_types=True), half)
    a = ovb.OpenVinoBackend(half).infer(blob)
    b = OnnxRuntimeBackend(src).infer(blob)
    assert np.abs(a[:, :4] - b[:, :4]).max() < 1.0 and np.abs(a[:, 4:] - b[:, 4:]).max() < 0.02


@needs_openvino
def test_cache_dir_threads_and_precision_are_applied(demo_bundle, tmp_path):
    cache = tmp_path / "ovcache"
    be = ovb.OpenVinoBackend(os.path.join(demo_bundle, "model.onnx"), threads=1, cache_dir=str(cache))
    assert "float32" in repr(be.compiled.get_property("INFERENCE_PRECISION_HINT"))
    assert int(be.compiled.get_property("INFERENCE_NUM_THREADS")) == 1
    assert any(cache.iterdir())  # the compiled model was stored for the next load
    with pytest.raises(UserInputError, match="precision"):
        ovb.OpenVinoBackend(os.path.join(demo_bundle, "model.onnx"), precision="int4")


@needs_openvino
def test_bf16_is_opt_in_and_close_to_f32(demo_bundle):
    if "BF16" not in ovb.OpenVinoBackend(os.path.join(demo_bundle, "model.onnx"))._capabilities():
        pytest.skip("this CPU has no bf16 (AMX / AVX-512 BF16)")
    img = _images("screw", 1)[0]
    f32 = Detector(demo_bundle, backend="openvino", conf=0.25)
    bf16 = Detector(demo_bundle, backend="openvino", conf=0.25, openvino={"precision": "bf16"})
    assert "bfloat16" in repr(bf16.backend.compiled.get_property("INFERENCE_PRECISION_HINT"))
    a, b = f32(img), bf16(img)
    assert abs(len(a) - len(b)) <= 1 and len(a) > 0
    raw = bf16.infer(bf16.preprocess([img])[0])
    assert not np.array_equal(raw, f32.infer(f32.preprocess([img])[0]))  # bf16 really ran


@needs_openvino
def test_openvino_throughput_mode_keeps_order(demo_bundle):
    det = Detector(demo_bundle, backend="openvino", conf=0.25)
    images = _images("screw", 6)
    want = [det(img) for img in images]
    got = list(det.stream(images, inflight=3))
    assert [len(d) for d in got] == [len(d) for d in want]
    for a, b in zip(got, want):
        np.testing.assert_allclose(a.boxes, b.boxes, atol=0.5)
    det.close()


def test_missing_openvino_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(ovb, "import_openvino", lambda: None)
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    with pytest.raises(BackendUnavailable, match=r"defectrt\[openvino\]"):
        Detector(str(model), backend="openvino")


@needs_openvino
def test_auto_keeps_onnxruntime_and_says_when_openvino_is_worth_trying(demo_bundle, monkeypatch):
    monkeypatch.setattr(ovb, "cpu_is_intel", lambda: True)
    det = Detector(demo_bundle)
    assert det.backend_name == "onnxruntime" and "backend='openvino'" in det.backend_reason
    monkeypatch.setattr(ovb, "cpu_is_intel", lambda: False)
    assert "openvino" not in Detector(demo_bundle).backend_reason.lower()


def _qdq_silu_model(with_pair_before_silu=True, hw=(8, 8)):
    """conv -> [Q/DQ] -> SiLU (Sigmoid, Mul) -> Q/DQ -> {conv, Concat}: the placement of our `cpu` INT8 bundle."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    w1 = rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32)
    w2 = rng.normal(0, 0.3, (4, 4, 1, 1)).astype(np.float32)
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"),
             numpy_helper.from_array(np.array(0.05, np.float32), "s"), numpy_helper.from_array(np.array(128, np.uint8), "z")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1])]
    silu_in = "c1"
    if with_pair_before_silu:
        nodes += [helper.make_node("QuantizeLinear", ["c1", "s", "z"], ["c1_q"]),
                  helper.make_node("DequantizeLinear", ["c1_q", "s", "z"], ["c1_dq"])]
        silu_in = "c1_dq"
    nodes += [helper.make_node("Sigmoid", [silu_in], ["sig"]), helper.make_node("Mul", [silu_in, "sig"], ["act"]),
              helper.make_node("QuantizeLinear", ["act", "s", "z"], ["act_q"]),
              helper.make_node("DequantizeLinear", ["act_q", "s", "z"], ["act_dq"]),
              helper.make_node("Conv", ["act_dq", "w2"], ["c2"]),
              helper.make_node("Concat", ["c2", "act_dq"], ["y"], axis=1)]
    graph = helper.make_graph(nodes, "qdq_silu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3] + list(hw))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8] + list(hw))], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _run_ort(model, x):
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_weighted_qdq_only_drops_the_pairs_that_feed_no_convolution():
    model = _qdq_silu_model()
    assert ovb.weighted_qdq_only(model) == 1
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") == 1 and ops.count("DequantizeLinear") == 1  # the conv input's pair stays
    sig = next(n for n in model.graph.node if n.op_type == "Sigmoid")
    assert list(sig.input) == ["c1"]  # SiLU reads the float convolution output
    x = np.random.default_rng(2).normal(0, 1, (1, 3, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(_run_ort(model, x), _run_ort(_qdq_silu_model(with_pair_before_silu=False), x))
    assert ovb.weighted_qdq_only(model) == 0  # nothing left to drop


@needs_openvino
def test_openvino_runs_int8_files_with_weighted_qdq_by_default(tmp_path):
    import onnx

    path = str(tmp_path / "qdq.onnx")
    onnx.save(_qdq_silu_model(), path)
    x = np.random.default_rng(3).normal(0, 1, (1, 3, 8, 8)).astype(np.float32)
    weighted = ovb.OpenVinoBackend(path, imgsz=(8, 8))
    exact = ovb.OpenVinoBackend(path, imgsz=(8, 8), qdq="all")
    assert (weighted.qdq_dropped, exact.qdq_dropped) == (1, 0)
    want = _qdq_silu_model(with_pair_before_silu=False)
    np.testing.assert_allclose(weighted.infer(x), _run_ort(want, x), atol=0.06)  # one quantization step
    np.testing.assert_allclose(exact.infer(x), _run_ort(_qdq_silu_model(), x), atol=0.06)
    with pytest.raises(UserInputError, match="qdq"):
        ovb.OpenVinoBackend(path, imgsz=(8, 8), qdq="none")


@needs_openvino
def test_dynamic_height_and_width_are_fixed_to_imgsz_before_compiling(tmp_path):
    import onnx

    path = str(tmp_path / "dynamic.onnx")
    onnx.save(_qdq_silu_model(with_pair_before_silu=False, hw=("h", "w")), path)
    be = ovb.OpenVinoBackend(path, imgsz=(16, 24))
    assert be.compiled.inputs[0].get_partial_shape().is_static and be.imgsz == (16, 24)
    assert list(be.compiled.inputs[0].get_partial_shape().to_shape()) == [1, 3, 16, 24]
    x = np.random.default_rng(4).normal(0, 1, (1, 3, 16, 24)).astype(np.float32)
    np.testing.assert_allclose(be.infer(x), _run_ort(_qdq_silu_model(False, hw=("h", "w")), x), atol=1e-4)
    with pytest.raises(UserInputError, match="dynamic input size"):
        ovb.OpenVinoBackend(path)  # no imgsz anywhere: nothing to fix the shape to
