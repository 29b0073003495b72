"""FP16 and INT8 ONNX files, with the DySample FP32 island left in FP32.

TensorRT 11 takes precision only from the ONNX graph (no builder flags), so every precision is
produced here as an ONNX-to-ONNX step, which also runs and can be measured on ONNX Runtime on a CPU.

- `convert_fp16`: NVIDIA ModelOpt AutoCast (`modelopt.onnx.autocast.convert_to_mixed_precision`,
  low_precision_type fp16). Inputs / outputs stay FP32 (`keep_io_types`), the island nodes are
  excluded, and AutoCast's own range check (data_max) keeps nodes whose values overflow FP16 in FP32.
- `quantize_int8(..., flavour="trt")`: ModelOpt ONNX PTQ (`modelopt.onnx.quantization.quantize`,
  int8): symmetric, zero point 0, activations per tensor, weights per output channel, Q/DQ where
  TensorRT fuses them (Conv inputs, residual Adds); calibrated on the CPU (`calibration_eps=["cpu"]`).
  Calibration method "max" by default: "entropy" (TensorRT's classic calibrator) builds histograms of
  every tensor and is far slower (BENCHMARKS.md, "Lab notes") for no better agreement with FP32 on our
  models; it stays available (`calibration_method="entropy"`).
  The not-quantized part of the graph is FP32 when `target_trt` is 8.x (8.x wants FP32 into
  QuantizeLinear; the engine builder then sets the FP16 flag) and FP16 otherwise (10.x / 11.x, where
  a strongly typed network runs what the graph says). ModelOpt's own FP16 pass cannot exclude nodes
  by name, so the graph is quantized with FP32 high precision and then converted by AutoCast with the
  island excluded. ModelOpt raises the opset to 19; for 8.x targets (parsers up to opset 13-17) the
  result is converted back to the input's opset.
- `quantize_int8(..., flavour="cpu")`: ONNX Runtime `quantize_static`, QDQ, uint8 asymmetric
  activations, int8 per-channel symmetric weights - the fast form for ONNX Runtime's CPU kernels.
  Not meant for TensorRT (asymmetric activations).

In both flavours the island nodes, the direct producers of island inputs and the box / score decoding
after the head's last convolutions (the "decode tail": box coordinates in pixels and sigmoid scores in
[0, 1] end up in one tensor; one INT8 scale cannot hold both) are excluded from quantization. So is the
stem (`stem_nodes`: the convolution that reads the image and its activation), unless
`quantize_stem=True`: with 3 input channels it is a small share of the arithmetic, and on ONNX Runtime
it is slower in INT8 than in FP32 (its int8 kernels are poor at 3 channels, and quantizing the input
image costs a pass of its own). Measured on the demo model (BENCHMARKS.md): the
`trt` flavour's mAP50-95 loss and the `cpu` flavour's latency both improve with the stem left out. A
DequantizeLinear that would still feed an island node is bypassed (the island reads the FP32 tensor),
and tool-made Cast / Q / DQ nodes at an island boundary lose the "/sampler/" mark from their names, so
that the engine builder's "pin every /sampler/ layer to FP32" never touches a cast or quantize layer.
`island_violations` checks the result; every function here refuses to write a file that fails it.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile

from defectrt.errors import BackendUnavailable, DefectrtError, UserInputError
from defectrt.export.check import load_onnx, model_opset
from defectrt.export.islands import ISLAND_MARK
from defectrt.fileio import atomic_path, check_output
from defectrt.modelref import onnx_metadata, parse_imgsz

log = logging.getLogger("defectrt")

MODELOPT_HINT = "pip install 'defectrt[modelopt]'"
BOUNDARY_MARK = "/sampler_io/"  # replaces ISLAND_MARK in the names of tool-made boundary nodes
FLAVOURS = ("trt", "cpu")
CALIBRATION_METHODS = ("max", "entropy")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


class PrecisionError(DefectrtError):
    """A conversion produced a graph that breaks the FP32-island contract (a defect, not a user error)."""


# --------------------------------------------------------------------------------------------- helpers

def _onnx():
    import onnx

    return onnx


def _load(model):
    return load_onnx(model, external_data=True)


def _require_modelopt(what):
    try:
        import modelopt.onnx  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailable("{} needs NVIDIA ModelOpt, which is not installed ({}); install it with: {}".format(
            what, exc, MODELOPT_HINT))
    _quiet_modelopt()


class _NoNvmlNoise(logging.Filter):
    """ModelOpt logs an ERROR when it cannot count GPUs (no NVML on a CPU machine); harmless here."""

    def filter(self, record):
        return "NVML" not in record.getMessage()


def _quiet_modelopt():
    """ModelOpt logs every node it skips at INFO; keep its warnings only."""
    try:
        from modelopt.onnx import logging_config
        from modelopt.onnx.autocast import logging_config as autocast_logging

        logging_config.configure_logging(logging.WARNING)
        autocast_logging.configure_logging(logging.WARNING)
    except Exception:  # logging only; never fail a conversion over it
        pass
    onnx_logger = logging.getLogger("modelopt.onnx")
    if not any(isinstance(f, _NoNvmlNoise) for f in onnx_logger.filters):
        onnx_logger.addFilter(_NoNvmlNoise())


def _elem_type_name(elem_type):
    onnx = _onnx()
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(elem_type).name
    except Exception:
        return onnx.TensorProto.DataType.Name(elem_type).lower()


def _low_precision_types():
    T = _onnx().TensorProto
    names = ("FLOAT16", "BFLOAT16", "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ",
             "INT8", "UINT8", "INT4", "UINT4", "FLOAT4E2M1")
    return {getattr(T, n) for n in names if hasattr(T, n)}


def _graph_maps(graph):
    producers, consumers = {}, {}
    for node in graph.node:
        for o in node.output:
            if o:
                producers[o] = node
        for i in node.input:
            if i:
                consumers.setdefault(i, []).append(node)
    return producers, consumers


def _in_island(node):
    return ISLAND_MARK in node.name


def _name_unnamed_nodes(model):
    used = {n.name for n in model.graph.node if n.name}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = "{}_{}".format(node.op_type, i)
            while name in used:
                name += "_"
            node.name = name
            used.add(name)


def _static_input(model):
    """(input name, batch or None when dynamic, (h, w) or None) of the single image input."""
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if len(inputs) != 1:
        raise UserInputError("expected one image input, found {}: {}".format(len(inputs), [i.name for i in inputs]))
    inp = inputs[0]
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in inp.type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise UserInputError("input {} has rank {}, expected (B, 3, H, W)".format(inp.name, len(dims)))
    hw = (dims[2], dims[3]) if dims[2] and dims[3] else None
    return inp.name, dims[0], hw


def _model_imgsz(model):
    name, batch, hw = _static_input(model)
    if hw is None:
        hw = parse_imgsz(onnx_metadata(model).get("imgsz"), strict=False)
        if hw is None:
            raise UserInputError("input {} has a dynamic height / width and no imgsz metadata: cannot tell which "
                                 "size to calibrate at".format(name))
    return name, batch, hw


def _set_metadata(model, source, **values):
    """Keep the source model's metadata_props and set `values` (strings)."""
    meta = onnx_metadata(source)
    meta.update(onnx_metadata(model))
    meta.update({k: str(v) for k, v in values.items() if v is not None})
    del model.metadata_props[:]
    for key in sorted(meta):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, meta[key]


def _json_dumps(value):
    import json

    return json.dumps(value, sort_keys=True)


def _save(model, onnx_out, force):
    onnx = _onnx()
    with atomic_path(onnx_out, force) as tmp:
        onnx.save(model, tmp)


def island_patterns(names):
    """Exact-match regexes for node names (ModelOpt's nodes_to_exclude are regexes, matched with re.match)."""
    return ["^{}$".format(re.escape(n)) for n in names]


def island_names(model):
    return [n.name for n in _load(model).graph.node if _in_island(n)]


def island_feeders(model):
    """Nodes outside an island whose outputs an island node reads (the offset Add, the feature producer)."""
    graph = _load(model).graph
    producers, _ = _graph_maps(graph)
    out = []
    for node in graph.node:
        if not _in_island(node):
            continue
        for i in node.input:
            p = producers.get(i)
            if p is not None and not _in_island(p) and p.op_type != "Constant" and p.name not in out:
                out.append(p.name)
    return out


def stem_nodes(model):
    """Names of the stem: the first weighted layer fed by the image input, the nodes on the way to it
    (e.g. an in-graph normalisation) and the nodes computed from those alone (its activation).

    Walks the graph in its (topological) order; a node joins when every input it reads, other than
    initializers, comes from the image input or from the stem; a second weighted layer ends it.
    """
    m = _load(model)
    graph = m.graph
    input_name = _static_input(m)[0]
    consts = {t.name for t in graph.initializer}
    consts.update(o for n in graph.node if n.op_type == "Constant" for o in n.output)
    reached, stem, weighted = {input_name}, [], False
    for node in graph.node:
        inputs = [i for i in node.input if i and i not in consts]
        if not inputs or not all(i in reached for i in inputs):
            continue
        if node.op_type in WEIGHTED_OPS:
            if weighted:
                continue
            weighted = True
        stem.append(node.name)
        reached.update(o for o in node.output if o)
    return stem if weighted else []


def decode_tail(model):
    """Names of the nodes between the head's last weighted layers and the graph outputs.

    Walks back from every graph output and stops at a Conv / Gemm / MatMul that has a bias or more than
    one output channel (the head's box / class convolutions); DFL's fixed 16->1 product (no bias, one
    output column) is part of the tail. Those nodes compute box coordinates in pixels and sigmoid scores, which must
    not share an INT8 scale.
    """
    graph = _load(model).graph
    producers, _ = _graph_maps(graph)
    inits = {t.name: t for t in graph.initializer}

    def is_head_layer(node):
        if node.op_type not in WEIGHTED_OPS:
            return False
        has_bias = len(node.input) > 2 and bool(node.input[2])
        w = inits.get(node.input[1]) if len(node.input) > 1 else None
        out_ch = None
        if w is not None and len(w.dims):
            out_ch = w.dims[0] if node.op_type == "Conv" else (w.dims[-1] if node.op_type == "MatMul" else None)
        return has_bias or out_ch is None or out_ch > 1

    tail, seen = [], set()
    stack = [producers[o.name] for o in graph.output if o.name in producers]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if is_head_layer(node) or _in_island(node):
            continue
        tail.append(node.name)
        stack.extend(producers[i] for i in node.input if i in producers)
    order = {n.name: k for k, n in enumerate(graph.node)}
    return sorted(tail, key=lambda n: order.get(n, 0))


def qdq_pair(producers, tensor):
    """(DequantizeLinear, QuantizeLinear or None) when `tensor` is a DequantizeLinear output (the Q is
    None for a DQ of stored data, e.g. weights), else (None, None)."""
    dq = producers.get(tensor)
    if dq is None or dq.op_type != "DequantizeLinear":
        return None, None
    q = producers.get(dq.input[0])
    return dq, q if q is not None and q.op_type == "QuantizeLinear" else None


def _detach_islands_from_dq(model):
    """Island nodes that read a DequantizeLinear(QuantizeLinear(T)) output read T instead."""
    graph = model.graph
    producers, _ = _graph_maps(graph)
    changed = 0
    for node in graph.node:
        if not _in_island(node):
            continue
        for k, name in enumerate(node.input):
            q = qdq_pair(producers, name)[1]
            if q is not None:
                node.input[k] = q.input[0]
                changed += 1
    if changed:
        _drop_dead_qdq(graph)
    return changed


def _drop_dead_qdq(graph):
    outputs = {o.name for o in graph.output}
    while True:
        _, consumers = _graph_maps(graph)
        dead = [n for n in graph.node if n.op_type in QDQ_OPS
                and not any(o in outputs or consumers.get(o) for o in n.output)]
        if not dead:
            return
        for n in dead:
            graph.node.remove(n)


def _unmark_boundary_nodes(model, original_island):
    """Tool-made nodes (Casts, Q/DQ) are named after the tensor they convert, so one at an island's
    exit, e.g. "/model.11/sampler/Reshape_6_output_0_QuantizeLinear", carries the island mark without
    belonging to the island. Rename those, unless they sit strictly inside an island (all inputs from
    and all consumers among the source model's island nodes): those stay marked and are checked."""
    graph = model.graph
    producers, consumers = _graph_maps(graph)
    original_island = set(original_island)
    renamed = []
    for node in graph.node:
        if not _in_island(node) or node.name in original_island:
            continue
        feeds = [producers[i] for i in node.input if i in producers]
        users = [u for o in node.output for u in consumers.get(o, [])]
        inside = bool(feeds and users and all(p.name in original_island for p in feeds)
                      and all(u.name in original_island for u in users))
        if not inside:
            new = node.name.replace(ISLAND_MARK, BOUNDARY_MARK)
            renamed.append((node.name, new))
            node.name = new
    return renamed


def _guard(model, what):
    bad = island_violations(model)
    if bad:
        raise PrecisionError("{}: the result has low-precision or quantized tensors inside a DySample FP32 island "
                             "({} problems, first: {}); this is a defectrt bug, please report it".format(
                                 what, len(bad), "; ".join(bad[:3])))


# --------------------------------------------------------------------------------------------- the check

def island_violations(onnx_model):
    """Everything that breaks the DySample FP32 island of `onnx_model` (a ModelProto or a path).

    Returns a list of one-line descriptions, empty when the island is clean:
    - a QuantizeLinear / DequantizeLinear / QLinear* node named inside an island;
    - a Cast to FP16 / BF16 / FP8 / INT8 named inside an island whose result stays in the island
      (a cast at the island exit, converting the island's FP32 result for the consumer, is fine);
    - an island node with an FP16 / BF16 / FP8 / 8-bit / 4-bit input or output;
    - an island node that reads a DequantizeLinear output (quantized data entering the island).
    Tensor types come from the graph and ONNX shape inference.
    """
    onnx = _onnx()
    model = _load(onnx_model)
    low = _low_precision_types()
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # inference can fail on exotic graphs; fall back to what the graph states
        inferred = model
    graph = inferred.graph
    types = {}
    for vi in list(graph.value_info) + list(graph.input) + list(graph.output):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            types[vi.name] = vi.type.tensor_type.elem_type
    for t in graph.initializer:
        types[t.name] = t.data_type
    for node in graph.node:  # Constant nodes and Casts state their types even where inference did not
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    types.setdefault(node.output[0], a.t.data_type)
        elif node.op_type == "Cast":
            for a in node.attribute:
                if a.name == "to":
                    types[node.output[0]] = a.i
    producers, consumers = _graph_maps(graph)
    problems = []
    for node in graph.node:
        if not _in_island(node):
            continue
        label = "{} ({})".format(node.name, node.op_type)
        if node.op_type in QDQ_OPS or node.op_type.startswith("QLinear") or node.op_type in ("ConvInteger", "MatMulInteger"):
            problems.append("{}: quantization node inside the island".format(label))
            continue
        exit_cast = node.op_type == "Cast" and not any(_in_island(u) for o in node.output for u in consumers.get(o, []))
        if node.op_type == "Cast" and not exit_cast:
            to = next((a.i for a in node.attribute if a.name == "to"), None)
            if to in low:
                problems.append("{}: casts to {} inside the island".format(label, _elem_type_name(to)))
                continue
        for k, name in enumerate(node.input):
            if not name:
                continue
            if types.get(name) in low:
                problems.append("{}: input {} '{}' is {}".format(label, k, name, _elem_type_name(types[name])))
            p = producers.get(name)
            if p is not None and p.op_type == "DequantizeLinear":
                problems.append("{}: input {} '{}' comes from DequantizeLinear {}".format(label, k, name, p.name))
        if exit_cast:
            continue
        for k, name in enumerate(node.output):
            if name and types.get(name) in low:
                problems.append("{}: output {} '{}' is {}".format(label, k, name, _elem_type_name(types[name])))
    return problems


# --------------------------------------------------------------------------------------------- FP16

def _autocast(onnx_path, exclude, keep_io_types):
    from modelopt.onnx.autocast import convert_to_mixed_precision

    return convert_to_mixed_precision(
        onnx_path=os.fspath(onnx_path),
        low_precision_type="fp16",
        nodes_to_exclude=island_patterns(exclude),
        keep_io_types=keep_io_types,
        providers=["cpu"],
    )


def convert_fp16(onnx_in, onnx_out, keep_io_types=True, exclude_nodes=None, force=False):
    """FP32 ONNX -> FP16 ONNX (ModelOpt AutoCast) with every DySample island node kept in FP32.

    exclude_nodes: more node names to keep in FP32 (exact names). Returns the output path.
    """
    onnx_out = check_output(onnx_out, force)
    source = _load(onnx_in)
    _require_modelopt("FP16 conversion")
    islands = island_names(source)
    exclude = islands + [n for n in (exclude_nodes or []) if n not in islands]
    with tempfile.TemporaryDirectory(prefix="defectrt-fp16-") as work:
        src = os.path.join(work, "model.onnx")
        named = _named_copy(source)
        _onnx().save(named, src)
        model = _autocast(src, exclude, keep_io_types)
    _unmark_boundary_nodes(model, islands)
    _set_metadata(model, source, precision="fp16")
    _guard(model, "FP16 conversion of {}".format(onnx_in if not hasattr(onnx_in, "graph") else "the model"))
    _save(model, onnx_out, force)
    return onnx_out


def _named_copy(model):
    onnx = _onnx()
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    _name_unnamed_nodes(copy)
    return copy


# --------------------------------------------------------------------------------------------- INT8

def _fp32_qdq_inputs(target_trt):
    """True when the target's explicit Q/DQ wants FP32 inputs to QuantizeLinear (TensorRT 8.x), so the
    INT8 graph keeps its un-quantized part FP32 at the source opset (defectrt.trt_compat: fp16_qdq_inputs)."""
    if target_trt is None:
        return False
    from defectrt import trt_compat

    return not trt_compat.flavour(target_trt).fp16_qdq_inputs


def _lower_opset(model, opset):
    """ModelOpt's INT8 output is opset 19; TensorRT 8.x parsers stop at 13-17.

    ModelOpt only raises the opset number (onnx's converter leaves the nodes of a 17 -> 19 upgrade as
    they are), and Q/DQ with FP32 scales and int8 zero points mean the same from opset 13 on. So the
    number goes back to the source's opset, the opset-19-only `saturate` attribute (float8 only) is
    dropped, and the full checker proves every node is valid at that opset; anything that is not
    (an attribute or input that only exists at 18/19) is an error rather than a silently wrong graph.
    """
    onnx = _onnx()
    current = model_opset(model)
    if current is None or opset is None or current <= opset:
        return model
    lowered = onnx.ModelProto()
    lowered.CopyFrom(model)
    for node in lowered.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear", "Cast") and node.domain in ("", "ai.onnx"):
            keep = [a for a in node.attribute if not (a.name == "saturate" and a.i == 1)]
            del node.attribute[:]
            node.attribute.extend(keep)
    for entry in lowered.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = opset
    try:
        onnx.checker.check_model(lowered, full_check=True)
    except Exception as exc:
        raise PrecisionError("the INT8 model cannot go back to opset {} for TensorRT 8.x: {}".format(
            opset, str(exc).splitlines()[0] if str(exc) else exc))
    return lowered


def quantize_int8(onnx_in, onnx_out, calib_dir, calib_count=300, flavour="trt", target_trt=None, force=False,
                  calibration_method="max", seed=0, exclude_nodes=None, quantize_stem=False):
    """FP32 ONNX -> INT8 Q/DQ ONNX calibrated on images from `calib_dir` (see the module docstring).

    flavour: "trt" (ModelOpt, TensorRT Q/DQ placement, symmetric) or "cpu" (ONNX Runtime, uint8
    asymmetric activations, per-channel int8 weights). target_trt: e.g. "8.6" or "10.3"; 8.x keeps the
    non-quantized part FP32 and the source opset. exclude_nodes: more node names to leave unquantized.
    quantize_stem: quantize the stem too (left out by default). Returns the output path.
    """
    if flavour not in FLAVOURS:
        raise UserInputError("INT8 flavour {!r}: choose one of {}".format(flavour, ", ".join(FLAVOURS)))
    if calibration_method not in CALIBRATION_METHODS:
        raise UserInputError("calibration method {!r}: choose one of {}".format(
            calibration_method, ", ".join(CALIBRATION_METHODS)))
    fp32_qdq = _fp32_qdq_inputs(target_trt)
    onnx_out = check_output(onnx_out, force)
    source = _named_copy(_load(onnx_in))
    if flavour == "trt":
        _require_modelopt("INT8 quantization for TensorRT (flavour trt)")
    input_name, batch, imgsz = _model_imgsz(source)
    from defectrt.export.calibration import CalibrationReader

    reader = CalibrationReader(calib_dir, imgsz, calib_count=calib_count, seed=seed, input_name=input_name,
                               batch=batch or 1)
    islands = island_names(source)
    tail = decode_tail(source)
    kept = [("stem", [] if quantize_stem else stem_nodes(source)), ("DySample islands", islands),
            ("island feeders", island_feeders(source)), ("decode tail", tail),
            ("requested", list(exclude_nodes or []))]
    exclude = []
    for _, names in kept:
        exclude.extend(n for n in names if n not in exclude)
    with tempfile.TemporaryDirectory(prefix="defectrt-int8-") as work:
        src = os.path.join(work, "model.onnx")
        _onnx().save(source, src)
        if flavour == "trt":
            model = _quantize_modelopt(src, work, reader, exclude, calibration_method)
        else:
            model = _quantize_ort(src, work, reader, exclude, calibration_method)
        _detach_islands_from_dq(model)
        _unmark_boundary_nodes(model, islands)
        if flavour == "trt":
            if fp32_qdq:
                model = _lower_opset(model, model_opset(source))
            else:
                mid = os.path.join(work, "int8_fp32.onnx")
                _onnx().save(model, mid)
                model = _autocast(mid, [n for n in exclude if n in islands or n in tail], True)
                _unmark_boundary_nodes(model, islands)
    high = "fp32" if flavour == "cpu" or fp32_qdq else "fp16"
    _set_metadata(model, source, precision="int8", int8_flavour=flavour, int8_high_precision=high,
                  int8_calibration="{} images, {} ({})".format(len(reader.files), calibration_method,
                                                                os.path.basename(os.path.abspath(calib_dir))),
                  int8_unquantized=", ".join("{} ({} nodes)".format(what, len(names)) for what, names in kept if names),
                  int8_calibration_sample=_json_dumps(reader.sample_record()))
    _guard(model, "INT8 quantization")
    _save(model, onnx_out, force)
    return onnx_out


_ORT_QUANTIZATION = "onnxruntime.quantization"


def _ort_quantization_namespaces():
    """Every imported onnxruntime.quantization module, and the classes defined in that package."""
    import onnxruntime.quantization.registry  # noqa: F401  (its op registries are what ModelOpt edits)

    # From sys.modules: `import onnxruntime.quantization.quantize` names the *function* quantize,
    # which the package re-exports under the module's name.
    modules = [mod for name, mod in list(sys.modules.items()) if mod is not None
               and (name == _ORT_QUANTIZATION or name.startswith(_ORT_QUANTIZATION + "."))]
    classes = {}
    for mod in modules:
        for obj in list(vars(mod).values()):
            if isinstance(obj, type) and obj.__module__.startswith(_ORT_QUANTIZATION):
                classes[id(obj)] = obj
    return modules + list(classes.values())


def _contents(value):
    """A copy of a dict / list / set's items (to refill the same object later), else None."""
    for kind in (dict, list, set):
        if isinstance(value, kind):
            return kind(value)
    return None


def _refill(value, contents):
    if isinstance(value, list):
        value[:] = contents
    else:
        value.clear()
        value.update(contents)


def _namespace_snapshot(target):
    """name -> (value, copy of its items when it is a container; dunder names keep identity only)."""
    return {key: (value, None if key.startswith("__") else _contents(value))
            for key, value in list(vars(target).items())}


def _namespace_restore(target, before):
    now = vars(target)
    for key, (value, contents) in before.items():
        if now.get(key) is not value:
            setattr(target, key, value)
        if contents is not None:
            _refill(value, contents)
    if isinstance(target, type):
        # An attribute added to a class can override an inherited method; one added to a module
        # is only a name nothing reads (and may be a submodule imported meanwhile), so it stays.
        for key in [k for k in now if k not in before]:
            delattr(target, key)


@contextlib.contextmanager
def _ort_quantization_restored():
    """ModelOpt's quantize() patches ONNX Runtime's quantization package for its own use and never
    undoes it (modelopt/onnx/quantization/ort_utils.py configure_ort and ort_patching.py):
    - replaces methods of the calibrator / collector / quantizer classes (MinMaxCalibrater,
      HistogramCalibrater, HistogramCollector, CalibraterBase, QDQQuantizer, BaseQuantizer) and the
      module function calibrate.create_calibrator;
    - edits the op registries in place (onnxruntime.quantization.registry QDQRegistry and
      QLinearOpsRegistry, the same dict objects the other modules import): adds BatchNormalization,
      ConvTranspose, LayerNormalization, LRN, HardSwish and deletes Relu, Sigmoid, Concat, Reshape, ...
    A later `quantize_static` in the same process (the cpu flavour) would then calibrate differently
    or, with the registries (whose keys are its default op types), quantize other nodes: issue 21,
    the tiny test model lost the Q/DQ after its stem's Sigmoid. Measured on the ModelOpt
    int8 path: nothing else global changes (environment, numpy's RNG and settings, warning filters,
    onnx / onnxruntime top-level attributes); its logger is its own (see _quiet_modelopt).

    So every attribute of every imported onnxruntime.quantization module and class is put back, and
    every module- or class-level dict / list / set is refilled in place with its old items (in place:
    other modules hold the same object). Items are restored by identity, one level deep (a numpy
    array edited in place inside a dict would not be; nothing does that). ModelOpt re-applies all of
    it at the start of every quantize(), so its own output does not depend on this. Chosen over running
    ModelOpt in a child process, which would re-import torch and ModelOpt per call, need a picklable
    reader, and with "spawn" re-run the caller's unguarded script top level.
    """
    saved = [(target, _namespace_snapshot(target)) for target in _ort_quantization_namespaces()]
    try:
        yield
    finally:
        for target, before in saved:
            _namespace_restore(target, before)


def _quantize_modelopt(src, work, reader, exclude, calibration_method):
    from modelopt.onnx.quantization import quantize

    out = os.path.join(work, "model.int8.onnx")
    with _ort_quantization_restored():
        _quantize_modelopt_call(quantize, src, out, reader, exclude, calibration_method)
    if not os.path.isfile(out):
        raise PrecisionError("ModelOpt quantization wrote no model (see its log above)")
    return _onnx().load(out)


def _quantize_modelopt_call(quantize, src, out, reader, exclude, calibration_method):
    quantize(
        onnx_path=src,
        quantize_mode="int8",
        calibration_data_reader=reader,
        calibration_method=calibration_method,
        calibration_eps=["cpu"],
        nodes_to_exclude=island_patterns(exclude),
        high_precision_dtype="fp32",
        output_path=out,
        log_level="WARNING",
    )


def _quantize_ort(src, work, reader, exclude, calibration_method):
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = os.path.join(work, "model.pre.onnx")
    # Shape inference only: ORT's graph optimisation here could rename or fuse island nodes.
    quant_pre_process(src, pre, skip_optimization=True, skip_onnx_shape=False, skip_symbolic_shape=False)
    out = os.path.join(work, "model.int8.onnx")
    quantize_static(
        pre, out, reader,
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        nodes_to_exclude=list(exclude),
        calibrate_method=CalibrationMethod.Entropy if calibration_method == "entropy" else CalibrationMethod.MinMax,
        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
    )
    return _onnx().load(out)


__all__ = ["convert_fp16", "quantize_int8", "island_violations", "decode_tail", "island_feeders", "stem_nodes",
           "PrecisionError", "MODELOPT_HINT"]
