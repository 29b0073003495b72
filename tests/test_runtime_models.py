"""Small ONNX models with known outputs for the runtime tests, and checks that they behave as designed.

`rect_finder`: finds the bounding box of the bright pixels (> 0.5 in any channel) of each letterboxed
input and emits it as (B, 4 + 2, 4) raw YOLO output:
    anchor 0: the box,               scratch 0.9
    anchor 1: the box shifted (2, 2), scratch 0.8, dent 0.1   -> suppressed by NMS (same class, IoU > 0.45)
    anchor 2: the box,               dent 0.7                 -> kept (other class)
    anchor 3: a box elsewhere,       scratch 0.1              -> below conf
So a Detector on it must return the drawn rectangle twice (scratch 0.9, dent 0.7) in original pixels.
"""
import hashlib
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

NAMES = {"0": "scratch", "1": "dent"}
SCORES = np.array([[0.9, 0.8, 0.0, 0.1], [0.0, 0.1, 0.7, 0.0]], np.float32)  # (nc, anchors)
OFFSETS = np.array([[0, 2, 0, 300], [0, 2, 0, 300], [0, 0, 0, 0], [0, 0, 0, 0]], np.float32)  # (4, anchors)


def _c(name, value, dtype=np.float32):
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def rect_finder(h=384, w=672, batch="batch", dynamic_hw=False, metadata=True, imgsz_meta=None):
    hd, wd = ("height", "width") if dynamic_hw else (h, w)
    N = helper.make_node
    nodes = [
        N("ReduceMax", ["images"], ["gray"], axes=[1], keepdims=0),
        N("Greater", ["gray", "half"], ["mask"]),
        N("Cast", ["mask"], ["maskf"], to=TensorProto.FLOAT),
        N("ReduceMax", ["maskf"], ["cols"], axes=[1], keepdims=0),  # (B, W)
        N("ReduceMax", ["maskf"], ["rows"], axes=[2], keepdims=0),  # (B, H)
    ]
    for axis_name, src, idx in (("x", "cols", 1), ("y", "rows", 1)):
        nodes += [
            N("Shape", [src], [axis_name + "shape"]),
            N("Gather", [axis_name + "shape", "one_i"], [axis_name + "n"], axis=0),
            N("Range", ["zero_i", axis_name + "n", "one_i"], [axis_name + "ri"]),
            N("Cast", [axis_name + "ri"], [axis_name + "r"], to=TensorProto.FLOAT),
            N("Add", [axis_name + "r", "onef"], [axis_name + "r1"]),
            N("Greater", [src, "half"], [axis_name + "on"]),
            N("Where", [axis_name + "on", axis_name + "r", "big"], [axis_name + "lo_all"]),
            N("Where", [axis_name + "on", axis_name + "r1", "negbig"], [axis_name + "hi_all"]),
            N("ReduceMin", [axis_name + "lo_all"], [axis_name + "1"], axes=[1], keepdims=1),
            N("ReduceMax", [axis_name + "hi_all"], [axis_name + "2"], axes=[1], keepdims=1),
            N("Add", [axis_name + "1", axis_name + "2"], [axis_name + "sum"]),
            N("Mul", [axis_name + "sum", "half"], ["c" + axis_name]),
            N("Sub", [axis_name + "2", axis_name + "1"], ["s" + axis_name]),
        ]
    nodes += [
        N("Concat", ["cx", "cy", "sx", "sy"], ["box2d"], axis=1),  # (B, 4): cx, cy, w, h
        N("Unsqueeze", ["box2d", "ax2"], ["box"]),  # (B, 4, 1)
        N("Add", ["box", "offsets"], ["boxes"]),  # (B, 4, A)
        N("Mul", ["box", "zerof"], ["zero3"]),  # (B, 4, 1) zeros
        N("ReduceMax", ["zero3"], ["zero_b"], axes=[1], keepdims=1),  # (B, 1, 1)
        N("Add", ["zero_b", "scores"], ["cls"]),  # (B, nc, A)
        N("Concat", ["boxes", "cls"], ["output0"], axis=1),
    ]
    inits = [_c("half", 0.5), _c("onef", 1.0), _c("zerof", 0.0), _c("big", 1e9), _c("negbig", -1e9),
             _c("one_i", 1, np.int64), _c("zero_i", 0, np.int64), _c("ax2", [2], np.int64),
             _c("offsets", OFFSETS), _c("scores", SCORES)]
    graph = helper.make_graph(
        nodes, "rect_finder",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, hd, wd])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [batch, 4 + SCORES.shape[0], SCORES.shape[1]])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    if metadata:
        meta = {"names": json.dumps(NAMES), "stride": "32", "nms": "none", "task": "detect"}
        meta["imgsz"] = json.dumps(list(imgsz_meta or (h, w)))
        for k, v in meta.items():
            model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    onnx.checker.check_model(model)
    return model


def save(model, path):
    onnx.save(model, str(path))
    return str(path)


def draw_rect(h, w, x1, y1, x2, y2, color=(255, 255, 255)):
    """Black BGR image with a filled rectangle covering pixels x1..x2-1, y1..y2-1 (edges at x1, x2)."""
    import cv2

    img = np.zeros((h, w, 3), np.uint8)
    cv2.rectangle(img, (x1, y1), (x2 - 1, y2 - 1), color, -1)
    return img


def make_bundle(folder, onnx_model, engine_record=None, extra_files=None, thresholds=None):
    os.makedirs(folder, exist_ok=True)
    save(onnx_model, os.path.join(folder, "model.onnx"))
    for rel, data in (extra_files or {}).items():
        with open(os.path.join(folder, rel), "wb") as f:
            f.write(data)
    files = {}
    for name in sorted(os.listdir(folder)):
        if name != "manifest.json":
            with open(os.path.join(folder, name), "rb") as f:
                files[name] = hashlib.sha256(f.read()).hexdigest()
    manifest = {"format": "defectrt-bundle", "version": 1, "model": "model.onnx", "names": NAMES, "imgsz": [384, 672],
                "files": files, "thresholds": thresholds or {"conf": 0.25, "iou": 0.45, "max_det": 300},
                "engine": engine_record}
    with open(os.path.join(folder, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    return str(folder)


def test_rect_finder_emits_the_bright_box_in_input_pixels():
    blob = np.zeros((2, 3, 64, 96), np.float32)
    blob[0, 1, 10:20, 30:50] = 1.0  # rows 10..19, cols 30..49 -> x 30..50, y 10..20
    blob[1, 0, 5:7, 0:96] = 0.8
    sess = ort.InferenceSession(rect_finder(64, 96).SerializeToString(), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"images": blob})[0]
    assert out.shape == (2, 6, 4)
    np.testing.assert_allclose(out[0, :4, 0], [40, 15, 20, 10])
    np.testing.assert_allclose(out[1, :4, 0], [48, 6, 96, 2])
    np.testing.assert_allclose(out[0, :4, 1], [42, 17, 20, 10])
    np.testing.assert_allclose(out[0, 4:], SCORES)


def test_rect_finder_with_dynamic_size_runs_any_shape():
    sess = ort.InferenceSession(rect_finder(dynamic_hw=True).SerializeToString(), providers=["CPUExecutionProvider"])
    blob = np.zeros((1, 3, 33, 47), np.float32)
    blob[0, 2, 0:33, 46] = 1.0
    out = sess.run(None, {"images": blob})[0]
    np.testing.assert_allclose(out[0, :4, 0], [46.5, 16.5, 1, 33])
