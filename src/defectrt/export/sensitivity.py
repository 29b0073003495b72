"""Per-layer INT8 sensitivity and the automatic fallback that keeps the worst layers in higher precision.

Method: leave one out. Starting from the full INT8 model as calibrated, each quantized layer in turn is
given back its float input(s) and float weights (its activation DequantizeLinear(QuantizeLinear(x)) is
bypassed, its weight DequantizeLinear replaced by the FP32 weights); the layer's sensitivity is how much
that alone brings the model's output closer to FP32's. Why leave one out rather than quantize one at a
time: it measures what the fallback will actually do (remove one layer's error from the deployed
model, with every other layer's error still present, where errors compound), and it needs no
re-calibration, which on a 2-core CPU is what makes it affordable: all variants live in one graph (`switchable_model`, a bool input per layer),
so one ONNX Runtime session measures them all at the cost of one FP32 inference per variant and image.

Output distance (on `sensitivity_images` calibration images, never the val split the gate judges on):
over the anchors that either model scores >= 0.1, the mean of max-over-classes |score difference| plus
(1 - IoU) of the two boxes. It tracks what mAP sees (scores crossing thresholds, boxes moving) without
labels and at a fraction of a val run's cost.

Fallback: with the ranking, re-quantize (same calibration) leaving out the top 1, 2, 4, 8, ... layers
(the source FP32 nodes, so the ONNX Runtime `cpu` flavour keeps them FP32 and the TensorRT `trt`
flavour keeps them in its high precision: FP16 for TensorRT 10+, FP32 for 8.x) and re-run the gate,
until it passes. The record says which layers were kept, the loss at each step, the share of the
convolution arithmetic kept out of INT8, and the measured ONNX Runtime CPU latency of the fallback
model against the plain INT8 one (interleaved runs). For the `trt` flavour that CPU latency is not
TensorRT's: there the arithmetic share is the estimate, unverified on hardware.
"""
from __future__ import annotations

import logging
import os
import shutil
import statistics
import tempfile
import time

import numpy as np

log = logging.getLogger("defectrt")

SCORE_RELEVANT = 0.1
MAX_STEPS = 7  # 1, 2, 4, ... 64 layers


def _onnx():
    import onnx

    return onnx


def _maps(graph):
    producers, inits = {}, {t.name: t for t in graph.initializer}
    for node in graph.node:
        for o in node.output:
            producers[o] = node
    return producers, inits


def quantized_layers(model):
    """Names of the nodes (other than Q/DQ) that read a DequantizeLinear(QuantizeLinear(x)) output: the
    weighted layers, and the Adds / Concats / pools / activations the flavour quantizes too. Measured on
    demo:screw's `trt` model (384x672): with every weighted layer back in float, 40% of the output
    distance to FP32 remained; with these as well, 1%. So they are ranked (and kept) like the convolutions."""
    from defectrt.export.precision import qdq_pair

    producers, _ = _maps(model.graph)
    return [node.name for node in model.graph.node
            if node.op_type not in ("QuantizeLinear", "DequantizeLinear")
            and any(qdq_pair(producers, name)[1] is not None for name in node.input)]


def float_layer(model, layer, source):
    """A copy of the INT8 `model` in which node `layer` reads float inputs and (when `source`, the FP32
    model, has a node of that name) its FP32 weights."""
    return float_layers(model, [layer], source)


def float_layers(model, layers, source):
    """float_layer for every name in `layers` (names the model does not have are skipped)."""
    onnx = _onnx()

    m = onnx.ModelProto()
    m.CopyFrom(model)
    src_nodes = {n.name: n for n in source.graph.node}
    _, src_inits = _maps(source.graph)
    wanted = set(layers)
    for node in m.graph.node:
        if node.name in wanted:
            _float_inputs(m, node, src_nodes.get(node.name), src_inits)
    return m


def _float_inputs(m, node, src, src_inits, switch=None):
    """Point `node`'s quantized inputs at float tensors: an activation DQ(Q(x)) at x, a weight DQ(w_int8)
    at the FP32 weights. With `switch` (a bool scalar tensor name), both stay and a Where picks the float
    one when the switch is on (the one-graph form rank_layers measures every layer with)."""
    from onnx import helper, numpy_helper

    from defectrt.export.precision import qdq_pair

    producers, inits = _maps(m.graph)
    layer = node.name
    for k, name in enumerate(node.input):
        dq, q = qdq_pair(producers, name)
        if dq is None:
            continue
        if q is not None:
            float_name = q.input[0]
        elif dq.input[0] in inits and src is not None and k < len(src.input) and src.input[k] in src_inits:
            w = numpy_helper.to_array(src_inits[src.input[k]])
            scale = inits.get(dq.input[1])
            if scale is not None:  # the DQ's output type is its scale's (FP16 in TensorRT 10+ forms)
                w = w.astype(numpy_helper.to_array(scale).dtype)
            float_name = "{}_float_w{}".format(layer, k)
            m.graph.initializer.append(numpy_helper.from_array(w, float_name))
        else:
            continue
        if switch is None:
            node.input[k] = float_name
        else:
            picked = "{}_switched_in{}".format(layer, k)
            m.graph.node.append(helper.make_node("Where", [switch, float_name, name], [picked],
                                                 name="{}_switch_in{}".format(layer, k)))
            node.input[k] = picked


def switchable_model(model, layers, source):
    """The INT8 `model` with one extra input "layer_float" (bool, one per layer of `layers`): where an
    entry is true, that layer reads float inputs and FP32 weights. One ONNX Runtime session then
    measures every leave-one-out variant (a session per variant costs ~0.7 s to create; a run of this
    graph, which ONNX Runtime executes as simulated quantization in float, costs one FP32 inference)."""
    onnx = _onnx()
    from onnx import TensorProto, helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    src_nodes = {n.name: n for n in source.graph.node}
    _, src_inits = _maps(source.graph)
    m.graph.input.append(helper.make_tensor_value_info("layer_float", TensorProto.BOOL, [len(layers)]))
    nodes = {n.name: n for n in m.graph.node}
    for i, layer in enumerate(layers):
        idx, flag = "layer_float_idx{}".format(i), "layer_float_{}".format(i)
        m.graph.initializer.append(helper.make_tensor(idx, TensorProto.INT64, [], [i]))
        m.graph.node.append(helper.make_node("Gather", ["layer_float", idx], [flag], axis=0,
                                             name="layer_float_gather{}".format(i)))
        _float_inputs(m, nodes[layer], src_nodes.get(layer), src_inits, switch=flag)
    _topological_sort(m.graph)
    return m


def _topological_sort(graph):
    """Order graph.node so that every node comes after the producers of its inputs (the appended
    Gather / Where nodes feed nodes that come earlier)."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        rest = []
        for node in pending:
            if all(i in available for i in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ValueError("switchable graph has a cycle or a missing input: {}".format(rest[0].name))
        pending = rest
    copies = [type(n)() for n in ordered]
    for c, n in zip(copies, ordered):
        c.CopyFrom(n)
    del graph.node[:]
    graph.node.extend(copies)


def _session(model_or_path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    data = model_or_path.SerializeToString() if hasattr(model_or_path, "SerializeToString") else model_or_path
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def _run(session, blob):
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: blob[i:i + 1]})[0] for i in range(len(blob))])


def _iou_xywh(a, b):
    ax1, ay1, ax2, ay2 = a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2
    bx1, by1, bx2, by2 = b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2
    iw = np.clip(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0, None)
    ih = np.clip(np.minimum(ay2, by2) - np.maximum(ay1, by1), 0, None)
    inter = iw * ih
    union = np.abs(a[2] * a[3]) + np.abs(b[2] * b[3]) - inter
    return inter / np.maximum(union, 1e-9)


def output_distance(ref, out):
    """Distance of detector outputs (B, 4 + nc, A) from FP32's `ref` (see the module docstring)."""
    ref, out = ref.astype(np.float64), out.astype(np.float64)
    total, count = 0.0, 0
    for r, o in zip(ref, out):
        relevant = (r[4:].max(0) >= SCORE_RELEVANT) | (o[4:].max(0) >= SCORE_RELEVANT)
        if not relevant.any():
            continue
        ds = np.abs(r[4:, relevant] - o[4:, relevant]).max(0)
        db = 1.0 - _iou_xywh(r[:4, relevant], o[:4, relevant])
        total += float((ds + db).sum())
        count += int(relevant.sum())
    return total / count if count else 0.0


def rank_layers(fp32_path, int8_path, blob):
    """[(layer, sensitivity)] most sensitive first, sensitivity = distance(INT8) - distance(INT8 with
    that layer in float); also returns the full INT8 model's distance (both as simulated quantization)."""
    onnx = _onnx()
    source, model = onnx.load(fp32_path), onnx.load(int8_path)
    ref = _run(_session(fp32_path), blob)
    layers = quantized_layers(model)
    t0 = time.perf_counter()
    session = _session(switchable_model(model, layers, source))
    image_input = next(i.name for i in session.get_inputs() if i.name != "layer_float")

    def distance(flags):
        outs = [session.run(None, {image_input: blob[i:i + 1], "layer_float": flags})[0] for i in range(len(blob))]
        return output_distance(ref, np.concatenate(outs))

    base = distance(np.zeros(len(layers), bool))
    ranking = []
    for i, layer in enumerate(layers):
        flags = np.zeros(len(layers), bool)
        flags[i] = True
        ranking.append((layer, base - distance(flags)))
    log.info("sensitivity: %d quantized layers measured on %d images in %.1f s", len(layers), len(blob),
             time.perf_counter() - t0)
    ranking.sort(key=lambda t: -t[1])
    return ranking, base


def conv_macs(fp32_path):
    """{Conv node name: multiply-accumulates} of the FP32 model (shape inference)."""
    onnx = _onnx()
    m = onnx.shape_inference.infer_shapes(onnx.load(fp32_path))
    shapes = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
              for vi in list(m.graph.value_info) + list(m.graph.output)}
    inits = {t.name: list(t.dims) for t in m.graph.initializer}
    out = {}
    for n in m.graph.node:
        if n.op_type == "Conv" and len(n.input) > 1 and n.input[1] in inits and n.output[0] in shapes:
            w, y = inits[n.input[1]], shapes[n.output[0]]
            if len(y) == 4 and all(y[1:]):
                out[n.name] = int(np.prod(w)) * y[2] * y[3]
    return out


def compare_latency(paths, blob, rounds=15, warmup=2):
    """Median ONNX Runtime CPU latency (ms) of each model, measured in interleaved rounds."""
    sessions = [_session(p) for p in paths]
    feeds = [{s.get_inputs()[0].name: blob[:1]} for s in sessions]
    times = [[] for _ in paths]
    for _ in range(warmup):
        for s, f in zip(sessions, feeds):
            s.run(None, f)
    for _ in range(rounds):
        for k, (s, f) in enumerate(zip(sessions, feeds)):
            t = time.perf_counter()
            s.run(None, f)
            times[k].append(1000.0 * (time.perf_counter() - t))
    return [statistics.median(t) for t in times]


def _loss(verdict):
    """The loss a verdict was judged on (by default the interval's pessimistic end)."""
    return verdict.get("judged_loss", verdict["map50_95_loss"])


class Fallback(object):
    """The gate's fallback for INT8 PTQ (see the module docstring).

    fp32_path: reference FP32 ONNX; final_path: the INT8 file the bundle ships (replaced in place);
    requantize(exclude_nodes, out_path): makes an INT8 model leaving those FP32 node names out;
    blob: (n, 3, h, w) pre-processed calibration images for sensitivity and timing.
    """

    def __init__(self, fp32_path, final_path, requantize, blob, max_steps=MAX_STEPS, timing_rounds=15):
        self.fp32_path, self.final_path, self.requantize = fp32_path, final_path, requantize
        self.blob, self.max_steps, self.timing_rounds = blob, max_steps, timing_rounds

    def __call__(self, got, verdict, measure, judge):
        from defectrt.export.accuracy_gate import loss_fields

        t0 = time.perf_counter()
        ranking, base = rank_layers(self.fp32_path, self.final_path, self.blob)
        record = {"method": "leave-one-out, output distance to FP32 on {} calibration images".format(len(self.blob)),
                  "layers": len(ranking), "distance_int8": round(base, 5),
                  "ranking": [{"layer": n, "sensitivity": round(s, 5)} for n, s in ranking[:20]],
                  "steps": [], "kept": None}
        log.info("sensitivity (most sensitive first): %s", ", ".join("{} {:.4f}".format(n, s) for n, s in ranking[:8]))
        best = (got, verdict, None)
        with tempfile.TemporaryDirectory(prefix="defectrt-fallback-") as work:
            k = 1
            for step in range(self.max_steps):
                kept = [n for n, _ in ranking[:k]]
                path = os.path.join(work, "fallback{}.onnx".format(step))
                self._requantize(kept, path)
                m = measure(path)
                v = judge(m)
                record["steps"].append(dict(loss_fields(v), kept=len(kept), passed=v["passed"]))
                log.info("fallback: %d layers kept out of INT8: mAP50-95 -%.2f points, %s", len(kept),
                         v["map50_95_loss"], "passes" if v["passed"] else "still fails")
                if best[2] is None or v["passed"] or _loss(v) < _loss(best[1]):
                    best = (m, v, (kept, path))
                if v["passed"] or k >= len(ranking):
                    break
                k = min(2 * k, len(ranking))
            if best[2] is not None and (best[1]["passed"] or _loss(best[1]) < _loss(verdict)):
                kept, path = best[2]
                record["kept"] = kept
                record.update(self._cost(kept, path))
                shutil.copyfile(path, self.final_path)
            else:
                best = (got, verdict, None)
        record["seconds"] = round(time.perf_counter() - t0, 1)
        return best[0], best[1], record

    def _requantize(self, kept, path):
        """Quantize without the kept layers, then make sure they read float inputs: ONNX Runtime's QDQ
        quantizes a tensor once for all its readers (e.g. a SiLU output), so leaving a Conv out of
        quantization alone can leave a DequantizeLinear in front of it."""
        onnx = _onnx()
        from defectrt.export.precision import _drop_dead_qdq, _guard

        self.requantize(kept, path)
        model = float_layers(onnx.load(path), kept, onnx.load(self.fp32_path))
        _drop_dead_qdq(model.graph)
        _guard(model, "INT8 fallback")
        onnx.save(model, path)

    def _cost(self, kept, path):
        macs = conv_macs(self.fp32_path)
        total = float(sum(macs.values())) or 1.0
        plain, fb = compare_latency([self.final_path, path], self.blob, rounds=self.timing_rounds)
        return {"kept_conv_macs_share": round(sum(macs.get(n, 0) for n in kept) / total, 4),
                "latency_ms_onnxruntime_cpu": {"int8": round(plain, 3), "fallback": round(fb, 3),
                                               "ratio": round(fb / plain, 3) if plain else None}}
