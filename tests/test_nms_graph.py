"""In-graph NMS: the ONNX variant against an independent greedy NMS; the TensorRT variant structurally."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from defectrt.errors import UserInputError
from defectrt.export.nms import TRT_OUTPUTS, append_nms


def _passthrough(nc, anchors, batch="batch"):
    """A model whose output0 is its input: lets the test feed exact raw predictions (B, 4+nc, A)."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["images"], ["output0"])], "raw",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 4 + nc, anchors])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [batch, 4 + nc, anchors])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _iou(a, b):
    x1, y1 = np.maximum(a[0], b[0]), np.maximum(a[1], b[1])
    x2, y2 = np.minimum(a[2], b[2]), np.minimum(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _reference(raw, conf, iou):
    """Plain greedy class-aware NMS on each anchor's best class (what the host path does)."""
    out = []
    for b in range(raw.shape[0]):
        cx, cy, w, h = raw[b, :4]
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
        cls = raw[b, 4:].argmax(0)
        score = raw[b, 4:].max(0)
        order = [i for i in np.argsort(-score, kind="stable") if score[i] > conf]
        kept = []
        for i in order:
            if all(cls[j] != cls[i] or _iou(boxes[i], boxes[j]) <= iou for j in kept):
                kept.append(i)
        out += [(b, *boxes[i], score[i], cls[i]) for i in kept]
    return sorted(out, key=lambda r: (r[0], -r[5]))


def test_onnx_nms_matches_greedy_reference():
    rng = np.random.default_rng(0)
    nc, anchors, batch = 3, 60, 2
    raw = np.zeros((batch, 4 + nc, anchors), np.float32)
    centres = rng.uniform(20, 80, size=(batch, 2, 6))  # clusters of overlapping boxes
    pick = rng.integers(0, 6, size=(batch, anchors))
    for b in range(batch):
        raw[b, 0] = centres[b, 0, pick[b]] + rng.normal(0, 3, anchors)
        raw[b, 1] = centres[b, 1, pick[b]] + rng.normal(0, 3, anchors)
        raw[b, 2:4] = rng.uniform(10, 30, (2, anchors))
        raw[b, 4:] = rng.uniform(0, 1, (nc, anchors)) ** 3
    model = append_nms(_passthrough(nc, anchors), "onnx", conf=0.2, iou=0.45, max_det=100)
    onnx.checker.check_model(model)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"images": raw})[0]
    got = sorted(map(tuple, got), key=lambda r: (r[0], -r[5]))
    ref = _reference(raw, 0.2, 0.45)
    assert len(ref) > 5 and len(got) == len(ref)
    np.testing.assert_allclose(np.array(got, np.float64), np.array(ref, np.float64), rtol=1e-5, atol=1e-4)


def test_onnx_nms_never_keeps_a_box_under_two_classes():
    raw = np.zeros((1, 6, 1), np.float32)
    raw[0, :4, 0] = [50, 50, 20, 20]
    raw[0, 4:, 0] = [0.9, 0.8]  # above threshold in both classes: only the best class may be kept
    model = append_nms(_passthrough(2, 1), "onnx", conf=0.25)
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"images": raw})[0]
    assert got.shape == (1, 7) and got[0, 6] == 0 and abs(got[0, 5] - 0.9) < 1e-6


def test_trt_nms_node_structure():
    model = append_nms(_passthrough(4, 8400), "trt", conf=0.3, iou=0.5, max_det=50)
    node = [n for n in model.graph.node if n.op_type == "EfficientNMS_TRT"]
    assert len(node) == 1
    attrs = {a.name: helper.get_attribute_value(a) for a in node[0].attribute}
    assert attrs["plugin_version"] == b"1" and attrs["box_coding"] == 1 and attrs["class_agnostic"] == 0
    assert attrs["max_output_boxes"] == 50 and abs(attrs["score_threshold"] - 0.3) < 1e-6 and abs(attrs["iou_threshold"] - 0.5) < 1e-6
    outs = {o.name: o for o in model.graph.output}
    assert tuple(outs) == TRT_OUTPUTS
    assert outs["num_dets"].type.tensor_type.elem_type == TensorProto.INT32
    assert outs["det_classes"].type.tensor_type.elem_type == TensorProto.INT32
    assert [d.dim_value for d in outs["det_boxes"].type.tensor_type.shape.dim][1:] == [50, 4]
    # Its inputs: centre-size boxes (B, A, 4) and class-aware scores (B, A, nc), fed by our subgraph.
    assert node[0].input[0] == "/nms/boxes" and node[0].input[1] == "/nms/cscores"


def test_bad_nms_mode():
    with pytest.raises(UserInputError, match="--nms 'fast'"):
        append_nms(_passthrough(2, 4), "fast")
