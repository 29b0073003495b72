"""FLOPs counted from an ONNX graph (no torch), and the machine's measured matmul peak.

``count_flops(model_or_path, input_shapes=None)`` runs ONNX shape inference with the inputs fixed to
static shapes and adds up the multiply-accumulates of every Conv, ConvTranspose, MatMul and Gemm (x 2 =
FLOPs).  Bias adds, activations, pooling, resizes and GridSample are not counted - the same convention as
thop / PyTorch's FlopCounterMode, so figures compare with the YOLO papers' GFLOPs.  Q/DQ (INT8) and
FP16 graphs count the same work as FP32: FLOPs do not depend on the precision.

``peak_gflops(n=2048)`` times an n x n x n float32 matmul with numpy (its BLAS, all the cores it uses)
several times and keeps the best: a practical, measured upper bound for dense float32 work on this CPU in
this run.  It is not the datasheet peak; "efficiency" = achieved GFLOP/s / this peak.
"""
from __future__ import annotations

import time

import numpy as np

from defectrt.errors import UnsupportedFormat, UserInputError

COUNTED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


def _load(model):
    import onnx

    if isinstance(model, onnx.ModelProto):
        m = onnx.ModelProto()
        m.CopyFrom(model)
        return m
    try:
        return onnx.load(str(model))
    except Exception as exc:
        raise UnsupportedFormat("{}: not a readable ONNX file ({}); export it again with `defectrt export onnx`".format(
            model, exc))


def _fix_inputs(model, input_shapes, batch, imgsz=None):
    init_names = {i.name for i in model.graph.initializer}
    for inp in model.graph.input:
        if inp.name in init_names:
            continue
        dims = inp.type.tensor_type.shape.dim
        given = (input_shapes or {}).get(inp.name)
        if given is not None:
            if len(given) != len(dims):
                raise UserInputError("input {} has rank {}, got shape {}".format(inp.name, len(dims), list(given)))
            for d, v in zip(dims, given):
                d.ClearField("dim_param")
                d.dim_value = int(v)
            continue
        for i, d in enumerate(dims):
            if d.dim_value <= 0:
                if i == 0:
                    d.ClearField("dim_param")
                    d.dim_value = int(batch)
                elif imgsz is not None and len(dims) == 4 and i in (2, 3):
                    d.ClearField("dim_param")
                    d.dim_value = int(imgsz[i - 2])
                else:
                    raise UserInputError(
                        "input {} has a dynamic dimension {} ({!r}); give input_shapes".format(inp.name, i, d.dim_param)
                    )


def _shapes(model):
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    shapes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
            shapes[vi.name] = dims
    for init in inferred.graph.initializer:
        shapes[init.name] = list(init.dims)
    for node in inferred.graph.node:  # Constant nodes carry their shapes in an attribute
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    shapes[node.output[0]] = list(a.t.dims)
    return inferred, shapes


def _prod(values):
    out = 1
    for v in values:
        out *= int(v)
    return out


def _known(shape):
    return shape is not None and all(v is not None and v >= 0 for v in shape)


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            import onnx

            return onnx.helper.get_attribute_value(a)
    return default


def _node_macs(node, shapes):
    op = node.op_type
    if op in ("Conv", "ConvTranspose"):
        x, w = shapes.get(node.input[0]), shapes.get(node.input[1])
        y = shapes.get(node.output[0])
        if not (_known(w) and _known(y) and _known(x)):
            return None
        if op == "Conv":  # weight (Cout, Cin/g, k...): each output element costs Cin/g x kernel MACs
            return _prod(y) * _prod(w[1:])
        # ConvTranspose, weight (Cin, Cout/g, k...): each input element is scattered through Cout/g x kernel
        return _prod(x) * _prod(w[1:])
    if op == "MatMul":
        a, b = shapes.get(node.input[0]), shapes.get(node.input[1])
        y = shapes.get(node.output[0])
        if not (_known(a) and _known(b) and _known(y)):
            return None
        k = a[-1] if len(a) >= 1 else 1
        return _prod(y) * k
    if op == "Gemm":
        a, y = shapes.get(node.input[0]), shapes.get(node.output[0])
        if not (_known(a) and _known(y)):
            return None
        k = a[0] if int(_attr(node, "transA", 0) or 0) else a[-1]
        return _prod(y) * k
    return 0


def count_flops(model, input_shapes=None, batch=1, imgsz=None):
    """-> {"flops", "gflops", "by_op": {op: flops}, "uncounted": [node names whose shapes were unknown]}.

    `input_shapes` {input name: shape} fixes dynamic inputs; otherwise a dynamic batch becomes `batch`
    and the dynamic H, W of a rank-4 (image) input become `imgsz` (h, w).
    """
    m = _load(model)
    _fix_inputs(m, input_shapes, batch, imgsz)
    inferred, shapes = _shapes(m)
    by_op = {}
    uncounted = []
    for node in inferred.graph.node:
        if node.op_type not in COUNTED_OPS:
            continue
        macs = _node_macs(node, shapes)
        if macs is None:
            uncounted.append(node.name or node.op_type)
            continue
        by_op[node.op_type] = by_op.get(node.op_type, 0) + 2 * macs
    total = sum(by_op.values())
    return {"flops": total, "gflops": total / 1e9, "by_op": by_op, "uncounted": uncounted}


def peak_gflops(n=2048, repeats=5, dtype=np.float32, seed=0):
    """Best-of-`repeats` GFLOP/s of an n^3 matmul with numpy. -> {"gflops", "n", "repeats", "best_s"}."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    out = np.empty((n, n), dtype=dtype)
    np.matmul(a, b, out=out)  # warm-up: threads spun up, pages touched
    best = float("inf")
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
    return {"gflops": 2.0 * n ** 3 / best / 1e9, "n": n, "repeats": repeats, "best_s": best,
            "dtype": np.dtype(dtype).name, "how": "numpy matmul {0}x{0}x{0}, best of {1}".format(n, repeats)}


def efficiency(gflops_per_image, images_per_s, peak):
    """(achieved GFLOP/s, fraction of `peak` GFLOP/s); None where unknown.

    The fraction never exceeds 1: achieving more than the measured peak means the peak was measured low
    (a busy machine) or the backend does fewer FLOPs than the graph counts (Winograd convolutions, INT8), so
    the figure is no efficiency and is left out (None) rather than printed as e.g. 173%.
    """
    if gflops_per_image is None or images_per_s is None:
        return None, None
    achieved = gflops_per_image * images_per_s
    if not peak or achieved > peak:
        return achieved, None
    return achieved, achieved / peak
