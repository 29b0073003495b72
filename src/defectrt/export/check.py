"""Will this ONNX file parse on TensorRT X.Y?  (`defectrt export check model.onnx --target-trt 8.2`)

Checks a graph against `trt_support.json`: for each TensorRT version, the ops its ONNX parser
imports (from onnx-tensorrt's docs/operators.md of that release and the parser changelog; sources
and dates are in the JSON), the parser's documented opset, the inputs that must be initializers on
that version, and the plugin interfaces it has. On top of the table, rules learnt the hard way:

- GridSample exists in the parser only from 8.5 on (JetPack 5.1); export with --grid-sample lowered
  for 8.0-8.4 (JetPack 4.6 / 5.0).
- GridSample at opset >= 20 spells its modes "linear"/"cubic"; TensorRT's importer does not
  recognise them and silently samples NEAREST (NVIDIA/TensorRT#4646, still open on 11.1). Error.
- GridSample is 4-D only (a 5-D input, found by shape inference, is an error).
- A model opset above the parser's documented maximum is a warning (the parser imports node by node
  and does not refuse an opset number), but an error for ops whose newer definition an older parser
  misreads (Reduce* moved `axes` to an input at opset 18: "breaking_since" in the JSON).
- Ops outside the standard domains are plugins: a warning that the plugin library has to be loaded,
  and an error when the plugin needs an interface (IPluginV3) or a TensorRT release the target lacks.

This is a static check without TensorRT. It catches what the parser documents; it cannot promise a
build succeeds (tactics, memory), so the engine build on the device is the final word.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from defectrt import trt_compat
from defectrt.errors import NotFound, UnsupportedFormat

SUPPORT_FILE = trt_compat.SUPPORT_FILE
STANDARD_DOMAINS = ("", "ai.onnx")
FLOAT_TYPES = (1, 10, 11, 16)  # FLOAT, FLOAT16, DOUBLE, BFLOAT16 (onnx.TensorProto enums)


@dataclass
class Issue:
    severity: str  # "error" (will not parse / parses wrongly) or "warning"
    message: str
    node: str = None
    op: str = None

    def to_dict(self):
        return {"severity": self.severity, "node": self.node, "op": self.op, "message": self.message}


@dataclass
class Report:
    target: str  # as asked, e.g. "8.2"
    table_version: str  # the support-table row used, e.g. "8.2" (10.9 -> "10.8")
    max_opset: int
    opset: int
    issues: list = field(default_factory=list)

    @property
    def errors(self):
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self):
        return [i for i in self.issues if i.severity == "warning"]

    @property
    def ok(self):
        """True when nothing the target's parser rejects or misreads was found."""
        return not self.errors

    def to_dict(self):
        return {"target_trt": self.target, "table_version": self.table_version, "parser_max_opset": self.max_opset,
                "model_opset": self.opset, "ok": self.ok, "errors": len(self.errors), "warnings": len(self.warnings),
                "issues": [i.to_dict() for i in self.issues]}

    def format(self):
        head = "TensorRT {} (support table row {}, parser documented up to opset {}), model opset {}: {}".format(
            self.target, self.table_version, self.max_opset, self.opset,
            "OK" if self.ok and not self.warnings else "{} error(s), {} warning(s)".format(len(self.errors), len(self.warnings)))
        lines = [head]
        for i in sorted(self.issues, key=lambda i: i.severity != "error"):
            where = "{} ({})".format(i.node or "<unnamed>", i.op) if i.op else "model"
            lines.append("  {:<7} {}: {}".format(i.severity, where, i.message))
        return "\n".join(lines)

    __str__ = format


# The support table and TensorRT version parsing live in defectrt.trt_compat (one home for TensorRT versions).
load_support = trt_compat.load_support
support_for = trt_compat.support_row


def parse_trt_version(text):
    """'8.2', '8.2.1.8', '10.3', 10.3 -> (major, minor). Anything else is a UserInputError."""
    return trt_compat.major_minor(text)


def load_onnx(model_or_path, external_data=False):
    """A ModelProto as is, or the ONNX file at a path; a missing or unreadable file is a UserInputError naming it."""
    import onnx

    if isinstance(model_or_path, onnx.ModelProto):
        return model_or_path
    path = os.fspath(model_or_path)
    if not os.path.isfile(path):
        raise NotFound("{}: no such ONNX file".format(path))
    try:
        return onnx.load(path, load_external_data=external_data)
    except Exception as exc:  # protobuf decode errors have no common base class
        raise UnsupportedFormat("{}: not a readable ONNX model ({}); export it again with `defectrt export onnx`".format(
            path, exc)) from None


def model_opset(model, default=None):
    """The version of the standard ONNX domain a ModelProto imports, or `default` when it imports none."""
    return next((imp.version for imp in model.opset_import if imp.domain in STANDARD_DOMAINS), default)


def _walk(graph, prefix=""):
    """Yield (graph, node) for every node, subgraphs (If/Loop/Scan bodies) included."""
    import onnx

    for node in graph.node:
        yield graph, node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _walk(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _walk(g)


def _constant_names(graph):
    """Tensors that are initializers, Constant outputs, or computed from those alone (folded by TensorRT)."""
    const = {i.name for i in graph.initializer} | {""}
    changed = True
    nodes = list(graph.node)
    while changed:
        changed = False
        for node in nodes:
            if node.op_type.startswith("Random"):
                continue
            if all(i in const for i in node.input) and not all(o in const for o in node.output):
                const.update(node.output)
                changed = True
    return const


def _types_and_ranks(model):
    """name -> (elem_type, rank or None) from ONNX shape inference (best effort)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:
        inferred = model
    info = {}
    g = inferred.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        t = vi.type.tensor_type
        rank = len(t.shape.dim) if t.HasField("shape") else None
        info[vi.name] = (t.elem_type, rank)
    for init in g.initializer:
        info[init.name] = (init.data_type, len(init.dims))
    return info


def _attr(node, name, default=None):
    import onnx

    for a in node.attribute:
        if a.name == name:
            value = onnx.helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _plugin_requirements(name, version):
    """What a plugin node needs: {"interface", "min_trt", "builtin"} or None when unknown."""
    table = load_support().get("plugins", {})
    req = (table.get(name) or {}).get(version)
    try:  # plugins defectrt itself ships describe themselves (defectrt.export.plugins.PLUGIN_INTERFACES)
        from defectrt.export import plugins as ours

        extra = getattr(ours, "PLUGIN_INTERFACES", {}) or {}
        req = extra.get((name, version)) or extra.get(name) or req
    except ImportError:
        pass
    if isinstance(req, str):
        req = {"interface": req}
    return req


def _is_standard(node):
    import onnx

    return node.domain in STANDARD_DOMAINS and onnx.defs.has(node.op_type)


def check_onnx(model_path, target_trt):
    """Report every node or attribute TensorRT `target_trt` cannot take (see the module docstring)."""
    model = load_onnx(model_path)
    key, row = support_for(target_trt)
    support = load_support()
    opset = model_opset(model, default=1)
    max_opset = row["max_opset"]
    report = Report(target=str(target_trt).strip(), table_version=key, max_opset=max_opset, opset=opset)
    add = report.issues.append
    target = parse_trt_version(target_trt)

    if opset > max_opset:
        add(Issue("warning", "opset {} is above the {} parser's documented maximum ({}); ops whose definition changed "
                  "after opset {} may be rejected (re-export with --opset {} to be safe)".format(
                      opset, "TensorRT " + key, max_opset, max_opset, max_opset)))
    if opset < 9:
        add(Issue("warning", "opset {} is below 9, the oldest the TensorRT parser is backward compatible with".format(opset)))

    info = _types_and_ranks(model)
    constants = {}
    breaking = support.get("breaking_since", {})
    for graph, node in _walk(model.graph):
        gid = id(graph)
        if gid not in constants:
            constants[gid] = _constant_names(graph)
        const = constants[gid]
        name, op = node.name or None, node.op_type

        if not _is_standard(node):
            _check_plugin(node, key, row, target, add)
            continue
        if op not in row["ops"]:
            if op == "GridSample":
                msg = ("GridSample is not in TensorRT {}'s ONNX parser (it arrives in 8.5 / JetPack 5.1); re-export with "
                       "--grid-sample lowered (gather-based, every TensorRT 8.0+) or --grid-sample plugin").format(key)
            else:
                msg = "{} is not supported by TensorRT {}'s ONNX parser".format(op, key)
            add(Issue("error", msg, name, op))
            continue
        if op == "GridSample":
            mode = _attr(node, "mode", "bilinear" if opset < 20 else "linear")
            if opset >= 20 and mode in ("linear", "cubic"):
                add(Issue("error", "GridSample-{} mode {!r}: TensorRT's importer only knows the opset-16 names "
                          "('bilinear'/'bicubic') and silently samples NEAREST instead (NVIDIA/TensorRT#4646); "
                          "export at opset 16-19 (default 17)".format(opset, mode), name, op))
            rank = info.get(node.input[0], (None, None))[1]
            if rank is not None and rank != 4:
                add(Issue("error", "GridSample input is {}-D; TensorRT's GridSample layer takes 4-D (N, C, H, W) only".format(rank),
                          name, op))
        since = breaking.get(op)
        if since and opset >= since and max_opset < since:
            add(Issue("error", "{}-{} takes `axes` as an input; TensorRT {}'s parser (opset <= {}) reads the old attribute "
                      "form; re-export with --opset {}".format(op, opset, key, max_opset, max_opset), name, op))
        for idx in row.get("constant_inputs", {}).get(op, ()):
            if idx < len(node.input) and node.input[idx] and node.input[idx] not in const:
                add(Issue("error", "input {} ({}) of {} must be an initializer (a constant) on TensorRT {}; here it is "
                          "computed at run time (fixed input sizes usually fold it: export without dynamic H/W)".format(
                              idx, node.input[idx], op, key), name, op))
        if op == "Range" and row.get("float_range_needs_constants"):
            dtypes = {info.get(i, (None, None))[0] for i in node.input}
            if dtypes & set(FLOAT_TYPES) and not all(i in const for i in node.input):
                add(Issue("error", "floating-point Range with run-time inputs is not supported before TensorRT 8.4 "
                          "(export with fixed H/W, or make the ramp integer)", name, op))
    return report


def _check_plugin(node, key, row, target, add):
    version = str(_attr(node, "plugin_version", "1"))
    name, op = node.name or None, node.op_type
    req = _plugin_requirements(op, version) or {}
    interface = req.get("interface")
    if req.get("builtin"):
        add(Issue("warning", "TensorRT plugin {} v{} (built in): call trt.init_libnvinfer_plugins(logger, '') before "
                  "parsing and deserializing (defectrt's builder and runtime do)".format(op, version), name, op))
    else:
        add(Issue("warning", "custom op {} (domain {!r}, plugin_version {}) is looked up as a TensorRT plugin: its library "
                  "must be loaded (ctypes.CDLL / --plugins) before parsing and before deserializing; ONNX Runtime cannot run "
                  "it".format(op, node.domain, version), name, op))
    if interface and interface not in row.get("plugin_interfaces", ()):
        add(Issue("error", "plugin {} v{} implements {}, which TensorRT {} does not have (it has {}); use a plugin version "
                  "built on IPluginV2DynamicExt for 8.x, or --grid-sample lowered".format(
                      op, version, interface, key, ", ".join(row.get("plugin_interfaces", ()))), name, op))
    min_trt = req.get("min_trt")
    if min_trt and not trt_compat.has_at_least(target, min_trt):
        add(Issue("error", "plugin {} v{} needs TensorRT >= {}".format(op, version, min_trt), name, op))
