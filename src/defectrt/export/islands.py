"""The DySample FP32 island: which ONNX nodes must stay FP32 in FP16 / INT8 builds.

Mechanism (docs/EXPORT.md, "The FP32 island"):
1. In PyTorch, all of DySample's coordinate arithmetic and sampling lives in one child module,
   `DySample.sampler` (defectrt.models.dysample.DySampleSampler); the offset conv stays outside.
2. The TorchScript exporter (`torch.onnx.export(..., dynamo=False)`) names every node after the module
   scope it came from, so the sampler's nodes are called `/model.11/sampler/Mul_3`, `/model.14/sampler/GridSample`,
   ... - whether the sampling is native (GridSample) or lowered (Gather-based). The dynamo exporter does
   not produce these scope names, which is one reason defectrt exports with the TorchScript exporter.
3. `island_nodes(model)` = every node whose name contains "/sampler/". The FP16 / INT8 steps exclude
   them (`nodes_to_exclude`), and the TensorRT builder pins the layers of the same names to FP32.
4. Simplification (onnxslim) keeps node names today, but a rewriting pass could rename or create a node
   inside the island. `repair_island(before, after)` re-derives membership after simplification: a node
   that lacks the mark but sits strictly inside the island (all its non-constant inputs come from island
   nodes and all its consumers are island nodes) is renamed into it; then `island_intact` checks that
   every sampling op (GridSample, the Gathers, Floor) and as many islands as before are still marked.
"""
from __future__ import annotations

ISLAND_MARK = "/sampler/"
# Ops that do the sampling itself: if one of these loses the mark the island is broken.
SAMPLING_OPS = ("GridSample", "Floor")


def _model(model):
    import onnx

    if isinstance(model, onnx.ModelProto):
        return model
    return onnx.load(str(model), load_external_data=False)


def island_nodes(model):
    """Names of every node of a DySample FP32 island (name contains "/sampler/"), in graph order."""
    return [n.name for n in _model(model).graph.node if ISLAND_MARK in n.name]


def island_prefixes(model):
    """The distinct islands, e.g. ["/model.11/sampler/", "/model.14/sampler/"]."""
    out = []
    for name in island_nodes(model):
        prefix = name[: name.index(ISLAND_MARK) + len(ISLAND_MARK)]
        if prefix not in out:
            out.append(prefix)
    return out


def repair_island(model):
    """Re-mark unmarked nodes enclosed by an island (in place). Returns the names it changed."""
    graph = _model(model).graph
    producers, consumers = {}, {}
    for node in graph.node:
        for o in node.output:
            producers[o] = node
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    constants = {i.name for i in graph.initializer}
    graph_outputs = {o.name for o in graph.output}
    renamed, changed = [], True
    while changed:
        changed = False
        for node in graph.node:
            if ISLAND_MARK in node.name:
                continue
            feeds = [producers[i] for i in node.input if i and i not in constants and i in producers
                     and producers[i].op_type != "Constant"]
            users = [u for o in node.output for u in consumers.get(o, [])]
            if not feeds or not users or any(o in graph_outputs for o in node.output):
                continue
            if all(ISLAND_MARK in p.name for p in feeds) and all(ISLAND_MARK in u.name for u in users):
                src = feeds[0].name
                prefix = src[: src.index(ISLAND_MARK) + len(ISLAND_MARK)]
                new = "{}{}_island{}".format(prefix, node.op_type, len(renamed))
                renamed.append((node.name, new))
                node.name = new
                changed = True
    return renamed


def island_intact(before, after):
    """Problems (list of str, empty when fine) with the island of `after` compared with `before`."""
    before, after = _model(before), _model(after)
    problems = []
    lost = [p for p in island_prefixes(before) if p not in island_prefixes(after)]
    if lost:
        problems.append("islands lost their node names: {}".format(", ".join(lost)))
    n_before = sum(1 for n in before.graph.node if ISLAND_MARK in n.name and n.op_type in SAMPLING_OPS)
    n_after = sum(1 for n in after.graph.node if ISLAND_MARK in n.name and n.op_type in SAMPLING_OPS)
    if n_after < n_before:
        problems.append("{} of {} sampling nodes (GridSample / Floor) are no longer marked".format(n_before - n_after, n_before))
    stray = [n.name or n.op_type for n in after.graph.node if n.op_type == "GridSample" and ISLAND_MARK not in n.name]
    if stray:
        problems.append("GridSample nodes outside the island: {}".format(", ".join(stray)))
    return problems
