"""NMS inside the graph (`defectrt export onnx --nms onnx|trt`): no host post-processing on a weak CPU.

Both variants first make NMS class-aware the way the host path is: each anchor competes only in its
best class (scores of the other classes are zeroed), so a box is never kept twice under two labels.

- "onnx": standard ONNX NonMaxSuppression (ONNX Runtime; TensorRT parses it from 8.5). Output
  `detections` (N, 7) float32 rows [batch, x1, y1, x2, y2, score, class] in input pixels, at most
  `max_det` per class and image; the runtime sorts, caps at max_det and undoes the letterbox.
- "trt": NVIDIA's built-in EfficientNMS_TRT plugin (box_coding 1 = centre-size, so the model's cx, cy,
  w, h feed it directly). Outputs num_dets (B, 1) int32, det_boxes (B, K, 4) float32 x1,y1,x2,y2,
  det_scores (B, K) float32, det_classes (B, K) int32. Needs `trt.init_libnvinfer_plugins` before
  parsing (our builder and runtime do it). UNVERIFIED ON HARDWARE: checked structurally only.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from defectrt.errors import UserInputError
from defectrt.modelref import onnx_metadata

NMS_MODES = ("none", "onnx", "trt")
TRT_OUTPUTS = ("num_dets", "det_boxes", "det_scores", "det_classes")


def _const(graph, name, value, dtype):
    graph.initializer.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
    return name


def _class_aware_scores(graph, raw, prefix):
    """(B, 4+nc, A) -> boxes (B, A, 4) cx,cy,w,h and scores (B, A, nc) zeroed outside each anchor's best class."""
    n = graph.node
    n.append(helper.make_node("Transpose", [raw], [prefix + "t"], perm=[0, 2, 1], name=prefix + "Transpose"))
    starts0, ends4, starts4, endsmax, axis2 = (
        _const(graph, prefix + "s0", [0], np.int64), _const(graph, prefix + "e4", [4], np.int64),
        _const(graph, prefix + "s4", [4], np.int64), _const(graph, prefix + "emax", [np.iinfo(np.int64).max], np.int64),
        _const(graph, prefix + "ax2", [2], np.int64),
    )
    n.append(helper.make_node("Slice", [prefix + "t", starts0, ends4, axis2], [prefix + "boxes"], name=prefix + "SliceBoxes"))
    n.append(helper.make_node("Slice", [prefix + "t", starts4, endsmax, axis2], [prefix + "scores"], name=prefix + "SliceScores"))
    n.append(helper.make_node("ReduceMax", [prefix + "scores"], [prefix + "best"], axes=[2], keepdims=1, name=prefix + "Best"))
    n.append(helper.make_node("Equal", [prefix + "scores", prefix + "best"], [prefix + "isbest"], name=prefix + "IsBest"))
    n.append(helper.make_node("Cast", [prefix + "isbest"], [prefix + "mask"], to=TensorProto.FLOAT, name=prefix + "Mask"))
    n.append(helper.make_node("Mul", [prefix + "scores", prefix + "mask"], [prefix + "cscores"], name=prefix + "ClassAware"))
    return prefix + "boxes", prefix + "cscores"


TRT_PLUGIN_DOMAIN = "trt.plugins"  # the domain ModelOpt and NVIDIA's tools give TensorRT plugin nodes


def append_nms(model, mode, conf=0.25, iou=0.45, max_det=300):
    """Return `model` with NMS appended after its single output (B, 4+nc, A)."""
    if mode not in NMS_MODES:
        raise UserInputError("--nms {!r}: choose one of {}".format(mode, ", ".join(NMS_MODES)))
    if mode == "none":
        return model
    graph = model.graph
    if len(graph.output) != 1:
        raise UserInputError("--nms needs a model with one output (B, 4+nc, A); this one has {}".format(len(graph.output)))
    raw = graph.output[0].name
    batch = graph.input[0].type.tensor_type.shape.dim[0]
    batch_dim = batch.dim_param or batch.dim_value or "batch"
    prefix = "/nms/"
    boxes, scores = _class_aware_scores(graph, raw, prefix)
    del graph.output[:]
    if mode == "trt":
        graph.node.append(helper.make_node(
            "EfficientNMS_TRT", [boxes, scores], list(TRT_OUTPUTS), name=prefix + "EfficientNMS_TRT",
            plugin_version="1", plugin_namespace="", background_class=-1, box_coding=1, score_activation=0,
            class_agnostic=0, iou_threshold=float(iou), score_threshold=float(conf), max_output_boxes=int(max_det),
            domain=TRT_PLUGIN_DOMAIN,
        ))
        # A custom op needs a declared domain: onnx.version_converter asserts on a node outside the default
        # domain-less set, and the checker wants the domain's opset. TensorRT's parser finds the plugin by op
        # type / plugin_version / plugin_namespace, whatever the domain (as for our own plugins, domain "defectrt").
        if not any(imp.domain == TRT_PLUGIN_DOMAIN for imp in model.opset_import):
            model.opset_import.append(helper.make_opsetid(TRT_PLUGIN_DOMAIN, 1))
        graph.output.extend([
            helper.make_tensor_value_info("num_dets", TensorProto.INT32, [batch_dim, 1]),
            helper.make_tensor_value_info("det_boxes", TensorProto.FLOAT, [batch_dim, max_det, 4]),
            helper.make_tensor_value_info("det_scores", TensorProto.FLOAT, [batch_dim, max_det]),
            helper.make_tensor_value_info("det_classes", TensorProto.INT32, [batch_dim, max_det]),
        ])
        return model
    _append_onnx_nms(graph, boxes, scores, prefix, conf, iou, max_det)
    graph.output.append(helper.make_tensor_value_info("detections", TensorProto.FLOAT, ["num_detections", 7]))
    return model


def _append_onnx_nms(graph, boxes, scores, p, conf, iou, max_det):
    n = graph.node
    half = _const(graph, p + "half", 0.5, np.float32)
    n.append(helper.make_node("Split", [boxes, _const(graph, p + "ones4", [1, 1, 1, 1], np.int64)],
                              [p + "cx", p + "cy", p + "w", p + "h"], axis=2, name=p + "Split"))
    n.append(helper.make_node("Mul", [p + "w", half], [p + "hw"], name=p + "HalfW"))
    n.append(helper.make_node("Mul", [p + "h", half], [p + "hh"], name=p + "HalfH"))
    n.append(helper.make_node("Sub", [p + "cx", p + "hw"], [p + "x1"], name=p + "X1"))
    n.append(helper.make_node("Sub", [p + "cy", p + "hh"], [p + "y1"], name=p + "Y1"))
    n.append(helper.make_node("Add", [p + "cx", p + "hw"], [p + "x2"], name=p + "X2"))
    n.append(helper.make_node("Add", [p + "cy", p + "hh"], [p + "y2"], name=p + "Y2"))
    n.append(helper.make_node("Concat", [p + "x1", p + "y1", p + "x2", p + "y2"], [p + "xyxy"], axis=2, name=p + "XYXY"))
    n.append(helper.make_node("Transpose", [scores], [p + "scores_bca"], perm=[0, 2, 1], name=p + "ScoresBCA"))
    n.append(helper.make_node(
        "NonMaxSuppression",
        [p + "xyxy", p + "scores_bca", _const(graph, p + "maxout", [max_det], np.int64),
         _const(graph, p + "iou", [iou], np.float32), _const(graph, p + "conf", [conf], np.float32)],
        [p + "selected"], center_point_box=0, name=p + "NonMaxSuppression",
    ))
    # selected: (N, 3) rows [batch, class, anchor] -> gather boxes and scores by flat index.
    for i, col in enumerate(("b", "c", "a")):
        n.append(helper.make_node("Gather", [p + "selected", _const(graph, p + "col" + col, i, np.int64)], [p + col],
                                  axis=1, name=p + "Col" + col))
    n.append(helper.make_node("Shape", [p + "scores_bca"], [p + "sshape"], name=p + "ScoreShape"))
    for i, dim in ((1, "nc"), (2, "na")):
        n.append(helper.make_node("Gather", [p + "sshape", _const(graph, p + "i" + dim, i, np.int64)], [p + dim], axis=0,
                                  name=p + "Dim" + dim))
    n.append(helper.make_node("Mul", [p + "b", p + "na"], [p + "bna"], name=p + "BxA"))
    n.append(helper.make_node("Add", [p + "bna", p + "a"], [p + "box_index"], name=p + "BoxIndex"))
    n.append(helper.make_node("Mul", [p + "b", p + "nc"], [p + "bnc"], name=p + "BxC"))
    n.append(helper.make_node("Add", [p + "bnc", p + "c"], [p + "bc"], name=p + "BplusC"))
    n.append(helper.make_node("Mul", [p + "bc", p + "na"], [p + "bcna"], name=p + "BCxA"))
    n.append(helper.make_node("Add", [p + "bcna", p + "a"], [p + "score_index"], name=p + "ScoreIndex"))
    n.append(helper.make_node("Reshape", [p + "xyxy", _const(graph, p + "flat4", [-1, 4], np.int64)], [p + "boxes_flat"], name=p + "BoxesFlat"))
    n.append(helper.make_node("Reshape", [p + "scores_bca", _const(graph, p + "flat1", [-1], np.int64)], [p + "scores_flat"], name=p + "ScoresFlat"))
    n.append(helper.make_node("Gather", [p + "boxes_flat", p + "box_index"], [p + "sel_boxes"], axis=0, name=p + "SelBoxes"))
    n.append(helper.make_node("Gather", [p + "scores_flat", p + "score_index"], [p + "sel_scores"], axis=0, name=p + "SelScores"))
    one = _const(graph, p + "axis1", [1], np.int64)
    n.append(helper.make_node("Unsqueeze", [p + "sel_scores", one], [p + "sel_scores2"], name=p + "Scores2D"))
    for col in ("b", "c"):
        n.append(helper.make_node("Cast", [p + col], [p + col + "f"], to=TensorProto.FLOAT, name=p + "Cast" + col))
        n.append(helper.make_node("Unsqueeze", [p + col + "f", one], [p + col + "f2"], name=p + "Col2D" + col))
    n.append(helper.make_node("Concat", [p + "bf2", p + "sel_boxes", p + "sel_scores2", p + "cf2"], ["detections"], axis=1,
                              name=p + "Detections"))


def nms_from_metadata(model):
    meta = onnx_metadata(model)
    return meta.get("nms", "none")


def set_metadata(model, **values):
    existing = {p.key: p for p in model.metadata_props}
    for key, value in values.items():
        if key in existing:
            existing[key].value = str(value)
        else:
            model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=str(value)))
    return model
