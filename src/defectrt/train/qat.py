"""Quantization-aware fine-tuning (QAT) for INT8 bundles: `defectrt export build --precision int8 --qat-epochs N`.

The recipe, and why:
- **Fake quantization exactly where the exported Q/DQ nodes are, with PTQ's scales.** The plan is read from
  the flavour's own PTQ graph (the same quantize_int8 the bundle ships): every node input that reads
  DequantizeLinear(QuantizeLinear(x)) - convolutions, and for the flavours that quantize them the residual
  Adds, Concats, MaxPools, Slices, SiLU halves, attention MatMuls - and every quantized convolution weight.
  Each such ONNX input is found in the torch forward pass by value (one image through the FP32 ONNX file
  and through the module, every torch function call's tensor arguments compared with the ONNX tensors;
  `torch.overrides.TorchFunctionMode` sees F.conv2d, torch.cat, +, F.silu, ... as they run) and the
  function call that reads it gets fake quantization with that Q node's scale and zero point (frozen: the
  observers are PTQ's calibration). Weights are fake-quantized per output channel from the current
  weights, with PTQ's ratio of range to scale. `QuantPlan.record()` says how many of the graph's
  quantized inputs were found (the rest, e.g. inside a lowered operator, stay float in training).
- **BatchNorm folded** into the convolutions first (as exported), any BatchNorm left is kept in eval mode:
  no batch statistics move.
- **Distillation from the FP32 model, not the labels**: the loss is the distance of the fake-quantized
  model's raw head outputs to the FP32 model's (class probabilities by binary cross-entropy, box
  distributions by cross-entropy on the anchors the FP32 model scores), which is exactly what PTQ loses
  and what the accuracy gate measures. It needs no labels (the calibration images suffice, through the
  runtime's letterbox) and cannot overfit a small calibration set's labels (the first recipe, label loss
  at lr 1e-4, lost on the gate set what it won on another).
- **Small cosine learning rate** (AdamW 3e-5 to 0, no weight decay, batch 8), the DFL projection frozen.
  Chosen on demo:screw `trt` at 192x320 (48 tuning images, 4 epochs; fake-quantized model's output distance
  to FP32 on 30 other images, untuned 0.0717): lr 1e-5 0.0682 (8 epochs), 3e-5 0.0649, 1e-4 0.0772 (worse
  than untuned: Adam's first steps move every weight by ~lr), 3e-4 0.154.

Export (defectrt.export.int8_build): the tuned module is exported with the bundle's settings, quantized by
the same PTQ code, and then the activation scales are set back to the ones the fine-tuning used
(`transplant_activation_scales`: matched by tensor name, the re-export names tensors the same way), so the
weights meet the quantization grid they were tuned for.

Why torch's own fake quantization and not ModelOpt's torch quantization (mtq): `import
modelopt.torch.quantization` fails here without `requests`, then `huggingface_hub` (ModelOpt 0.47's torch
side pulls its Hugging Face plugins in at import time); torch's fake-quant ops need nothing more.
"""
from __future__ import annotations

import collections
import copy
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from defectrt.errors import UserInputError

FLAVOURS = ("trt", "cpu")

# ONNX operator reading a quantized input -> substrings of the torch function names that can be it.
_TORCH_NAMES = {
    "Conv": ("conv2d",), "Add": ("add",), "Sub": ("sub",), "Mul": ("mul", "silu"), "Sigmoid": ("sigmoid", "silu"),
    "Concat": ("cat", "concat"), "MaxPool": ("max_pool",), "AveragePool": ("avg_pool",),
    "Resize": ("interpolate", "upsample"), "Slice": ("getitem", "split", "chunk", "narrow"),
    "Split": ("split", "chunk"), "Reshape": ("view", "reshape", "flatten"), "Transpose": ("transpose", "permute"),
    "Softmax": ("softmax",), "MatMul": ("matmul",),
}
_RANGES = {2: (0, 255), 3: (-128, 127)}  # ONNX zero-point data type (uint8, int8) -> integer range


def _fname(func):
    return getattr(func, "__name__", None) or str(func)


def _compatible(op_type, fname):
    return any(s in fname.lower() for s in _TORCH_NAMES.get(op_type, ()))


def _tensor_args(args):
    for p, a in enumerate(args):
        if isinstance(a, torch.Tensor):
            yield p, a
        elif isinstance(a, (list, tuple)):
            for i, b in enumerate(a):
                if isinstance(b, torch.Tensor):
                    yield (p, i), b


class _Counting(TorchFunctionMode):
    """Numbers every torch function call per function name: (name, n) identifies a call site across
    forward passes (the forward's sequence of calls does not depend on the values)."""

    def __init__(self):
        super().__init__()
        self.count = collections.Counter()

    def key(self, func):
        name = _fname(func)
        n = self.count[name]
        self.count[name] += 1
        return name, n


class _Recorder(_Counting):
    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        key = self.key(func)
        self.calls.append((key, list(_tensor_args(args))))
        return func(*args, **(kwargs or {}))


class _FakeQuant(_Counting):
    def __init__(self, plan):
        super().__init__()
        self.plan = plan

    def __torch_function__(self, func, types, args=(), kwargs=None):
        key = self.key(func)
        acts, weight = self.plan.acts.get(key), self.plan.weights.get(key)
        if acts or weight:
            args = [list(a) if isinstance(a, (list, tuple)) else a for a in args]
            for pos, spec in (acts or {}).items():
                if pos == "sigmoid":
                    continue
                if isinstance(pos, tuple):
                    args[pos[0]][pos[1]] = _fq(args[pos[0]][pos[1]], spec)
                else:
                    args[pos] = _fq(args[pos], spec)
            if weight:
                args[1] = _fq_weight(args[1], weight)
        if acts and "sigmoid" in acts:  # SiLU: the graph also quantizes the sigmoid before its Mul
            x = args[0]
            return x * _fq(torch.sigmoid(x), acts["sigmoid"])
        return func(*args, **(kwargs or {}))


def _fq(x, spec):
    scale, zero, lo, hi = spec
    return torch.fake_quantize_per_tensor_affine(x, scale, zero, lo, hi)


def _fq_weight(w, spec):
    ratio, lo, hi = spec
    scale = (w.detach().abs().amax(dim=tuple(range(1, w.dim()))).clamp(min=1e-8) / ratio).float()
    return torch.fake_quantize_per_channel_affine(w, scale, torch.zeros(w.shape[0], dtype=torch.int32), 0, lo, hi)


class QuantPlan(object):
    """Where the PTQ graph quantizes, as torch call sites: acts {(function, n): {arg position: (scale,
    zero point, qmin, qmax)}}, weights {(conv2d, n): (range / scale ratio, qmin, qmax)}."""

    def __init__(self):
        self.acts, self.weights = {}, {}
        self.total, self.found, self.missing = 0, 0, []

    def fake_quant(self):
        """Context manager: run the module's forward with fake quantization (one forward per `with`)."""
        return _FakeQuant(self)

    def record(self):
        return {"quantized_inputs_in_graph": self.total, "fake_quantized_in_training": self.found,
                "call_sites": len(self.acts), "weights": len(self.weights),
                "not_found": sorted(set(self.missing))[:20]}

    @classmethod
    def build(cls, net, fp32_onnx, ptq_onnx, image):
        """Plan for `net` (torch, BatchNorm folded) from its FP32 ONNX export and that file's PTQ graph,
        matched on `image` ((1, 3, h, w) float32 array at the export's size)."""
        import onnx
        from onnx import numpy_helper

        from defectrt.export.precision import qdq_pair

        plan = cls()
        qm, fm = onnx.load(ptq_onnx), onnx.load(fp32_onnx)
        producers = {o: n for n in qm.graph.node for o in n.output}
        inits = {t.name: t for t in qm.graph.initializer}
        arr = lambda name: numpy_helper.to_array(inits[name])  # noqa: E731
        f_inits = {t.name: t for t in fm.graph.initializer}
        f_nodes = {n.name: n for n in fm.graph.node}
        f_names = {o for n in fm.graph.node for o in n.output} | {i.name for i in fm.graph.input}
        def resolve(x):  # the FP32 graph's name of a tensor: back through casts and Q/DQ chains
            while x not in f_names and x in producers and producers[x].op_type in (
                    "Cast", "DequantizeLinear", "QuantizeLinear"):
                x = producers[x].input[0]
            return x

        consumers = collections.defaultdict(list)  # float tensor -> [(op_type, spec, (node, slot))]
        weights = []  # (fp32 weight array, ratio, qmin, qmax)
        sig_after = {}  # SiLU input tensor -> spec of its quantized sigmoid (read by the Mul)
        for node in qm.graph.node:
            if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
                continue
            for slot, name in enumerate(node.input):
                dq, q = qdq_pair(producers, name)
                if dq is None:
                    continue
                if node.op_type == "Conv" and slot == 1:
                    spec = _weight_spec(dq, q, arr, inits, f_nodes.get(node.name), f_inits)
                    if spec is not None:
                        weights.append(spec)
                        plan.total += 1
                    continue
                if q is None or q.input[0] in inits or q.input[1] not in inits:
                    continue  # stored constants (biases, fixed factors) are not activations
                x = resolve(q.input[0])
                if x not in f_names:
                    continue
                zt = inits[q.input[2]].data_type if len(q.input) > 2 and q.input[2] in inits else 2
                lo, hi = _RANGES.get(zt, (0, 255))
                zero = int(arr(q.input[2]).reshape(-1)[0]) if len(q.input) > 2 and q.input[2] in inits else 0
                spec = (float(arr(q.input[1]).reshape(-1)[0]), zero, lo, hi)
                plan.total += 1
                src = producers.get(x)
                if node.op_type == "Mul" and src is not None and src.op_type == "Sigmoid":
                    sig_after[resolve(src.input[0])] = (spec, (node.name, slot))
                    continue
                consumers[x].append((node.op_type, spec, (node.name, slot)))
        values = _onnx_values(fp32_onnx, sorted(set(consumers) | set(sig_after)), image)
        by_shape = collections.defaultdict(list)
        for name, v in values.items():
            by_shape[v.shape].append((name, v))
        rec = _Recorder()
        with torch.no_grad(), rec:
            net(torch.from_numpy(image))
        found = set()
        for key, targs in rec.calls:
            fname = key[0]
            for pos, t in targs:
                shape = tuple(t.shape)
                if not by_shape.get(shape) and not (fname.startswith("conv2d") and pos == 1):
                    continue
                if fname.startswith("conv2d") and pos == 1:
                    spec = _match_weight(t, weights)
                    if spec is not None:
                        plan.weights[key] = spec[0]
                        found.add(("weight", spec[1]))
                    continue
                for name, v in by_shape.get(shape, ()):
                    if not _close(t, v):
                        continue
                    hit = [c for c in consumers.get(name, ()) if _compatible(c[0], fname)]
                    if hit:
                        plan.acts.setdefault(key, {})[pos] = hit[0][1]
                        found.update(c[2] for c in hit)
                    if "silu" in fname.lower() and name in sig_after and pos == 0:
                        plan.acts.setdefault(key, {})["sigmoid"] = sig_after[name][0]
                        found.add(sig_after[name][1])
                    if hit:
                        break
        plan.found = len(found)
        plan.missing = [c[2][0] for cs in consumers.values() for c in cs if c[2] not in found]
        plan.missing += [s[1][0] for s in sig_after.values() if s[1] not in found]
        return plan


def _weight_spec(dq, q, arr, inits, f_node, f_inits):
    """(fp32 weight, (ratio, qmin, qmax), id) of a Conv's quantized weight input, or None."""
    if f_node is None or len(f_node.input) < 2 or f_node.input[1] not in f_inits:
        return None
    from onnx import numpy_helper

    w = numpy_helper.to_array(f_inits[f_node.input[1]]).astype(np.float32)
    scale = arr(dq.input[1]).astype(np.float32).reshape(-1)
    amax = np.abs(w).reshape(w.shape[0], -1).max(1)
    ok = scale > 0
    if not ok.any():
        return None
    ratio = float(np.median(amax[ok] / scale[ok]))
    zname = dq.input[2] if len(dq.input) > 2 else ""
    zt = inits[zname].data_type if zname in inits else 3
    lo, hi = _RANGES.get(zt, (-128, 127))
    return w, (ratio, max(lo, -hi), hi), f_node.name  # symmetric: -127..127


def _match_weight(t, weights):
    a = t.detach().float().numpy()
    for w, spec, name in weights:
        if w.shape == a.shape and np.allclose(w, a, rtol=0, atol=1e-6 * (1.0 + float(np.abs(w).max()))):
            return spec, name
    return None


def _close(t, v):
    a = t.detach().float().numpy()
    tol = 1e-3 * (1.0 + float(np.abs(v).max(initial=0.0)))  # torch and ONNX Runtime FP32 differ in rounding only
    return a.dtype == v.dtype and float(np.abs(a - v).max(initial=0.0)) <= tol


def _onnx_values(fp32_onnx, names, image):
    """The named tensors of the FP32 ONNX model on `image` (float32 ones only)."""
    import onnx
    import onnxruntime as ort

    m = onnx.load(fp32_onnx)
    have = {o.name for o in m.graph.output}
    inputs = {i.name for i in m.graph.input}
    extra = [n for n in names if n not in have and n not in inputs]
    for n in extra:
        m.graph.output.append(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor
    sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: image}
    outs = sess.run(None, feed)
    values = {o.name: v for o, v in zip(sess.get_outputs(), outs) if o.name in names}
    for n in names:
        if n in inputs:
            values[n] = image
    return {k: v for k, v in values.items() if isinstance(v, np.ndarray) and v.dtype == np.float32}


def transplant_activation_scales(ptq_onnx, qat_onnx):
    """Set the activation scales / zero points of `qat_onnx` (PTQ of the tuned model, re-calibrated) to
    those of `ptq_onnx` (the plain model's PTQ, which the fine-tuning used), matched by the quantized
    tensor's name. Rewrites qat_onnx; returns how many Q nodes were set."""
    import onnx
    from onnx import numpy_helper

    src, dst = onnx.load(ptq_onnx), onnx.load(qat_onnx)
    s_inits = {t.name: t for t in src.graph.initializer}
    d_inits = {t.name: t for t in dst.graph.initializer}
    s_q = {n.input[0]: n for n in src.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in s_inits}
    readers = collections.defaultdict(list)
    for n in dst.graph.node:
        if n.op_type == "DequantizeLinear":
            readers[n.input[0]].append(n)
    done = 0
    for q in dst.graph.node:
        if q.op_type != "QuantizeLinear" or q.input[0] in d_inits or q.input[0] not in s_q:
            continue
        sq = s_q[q.input[0]]
        pairs = list(zip(q.input[1:3], sq.input[1:3]))
        if not all(d in d_inits and s in s_inits and d_inits[d].dims == s_inits[s].dims
                   and d_inits[d].data_type == s_inits[s].data_type for d, s in pairs):
            continue
        for dq in readers[q.output[0]]:  # the DequantizeLinear reads its own copies in some graphs
            pairs += [(d, s) for d, s in zip(dq.input[1:3], sq.input[1:3]) if d in d_inits]
        for d, s in pairs:
            d_inits[d].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(s_inits[s]), d))
        done += 1
    onnx.save(dst, qat_onnx)
    return done


def _resolve(model_ref):
    if isinstance(model_ref, nn.Module):
        return copy.deepcopy(model_ref)
    from defectrt.models import resolve_model_ref

    return resolve_model_ref(model_ref)


def _train_mode(net):
    net.train()
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()  # folded models have none; any other keeps its statistics
    return net


def distill_loss(student, teacher, reg_max=16, relevant=0.1):
    """Distance of the raw head maps [(B, 4*reg_max + nc, H, W)] to the FP32 model's: class BCE against
    its probabilities (normalised by their sum) + box-distribution cross-entropy on the anchors it scores
    >= `relevant` (weighted by that score)."""
    s = torch.cat([x.flatten(2) for x in student], 2)
    t = torch.cat([x.flatten(2) for x in teacher], 2)
    nb = 4 * reg_max
    tp = t[:, nb:].sigmoid()
    # Kullback-Leibler divergences (cross-entropy minus the FP32 model's own entropy): 0 when equal
    cls = (F.binary_cross_entropy_with_logits(s[:, nb:], tp, reduction="sum")
           - F.binary_cross_entropy_with_logits(t[:, nb:], tp, reduction="sum")) / tp.sum().clamp(min=1.0)
    w = tp.max(1).values  # (B, A)
    w = torch.where(w >= relevant, w, torch.zeros_like(w))
    b, _, a = s.shape
    sd = s[:, :nb].view(b, 4, reg_max, a)
    td = t[:, :nb].view(b, 4, reg_max, a)
    tl = td.log_softmax(2)
    ce = (tl.exp() * (tl - sd.log_softmax(2))).sum(2).mean(1)  # (B, A)
    box = (ce * w).sum() / w.sum().clamp(min=1e-6)
    return cls + box


def qat_finetune(model_ref, images, epochs, fp32_onnx, ptq_onnx, lr=3e-5, batch=8, seed=0, flavour=None,
                 log=None):
    """Fine-tune `model_ref` (checkpoint, demo:NAME or nn.Module) with fake quantization where `ptq_onnx`
    (PTQ of its FP32 export `fp32_onnx`) quantizes, distilling from the FP32 model, on `images`
    ((n, 3, h, w) float32 at the export's size, pre-processed as the runtime does) for `epochs` epochs.
    Returns (FP32 nn.Module in eval mode, record)."""
    if int(epochs) < 1:
        raise UserInputError("--qat-epochs {}: give at least 1".format(epochs))
    if images is None or not len(images):
        raise UserInputError("--qat-epochs: no calibration images to fine-tune on")
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    net = _resolve(model_ref).float()
    if hasattr(net, "fuse"):
        with torch.no_grad():  # else the folded weights carry the BN arithmetic as a graph (non-leaf tensors)
            net.fuse()
    net.eval()
    plan = QuantPlan.build(net, fp32_onnx, ptq_onnx, np.ascontiguousarray(images[:1], dtype=np.float32))
    if not plan.acts:
        raise UserInputError("QAT: none of the quantized inputs of {} was found in the model".format(ptq_onnx))
    teacher = _train_mode(copy.deepcopy(net))
    for p in teacher.parameters():
        p.requires_grad_(False)
    head = net.model[-1]
    for p in net.parameters():
        p.requires_grad_(True)
    head.dfl.conv.weight.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    data = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    nb = max(1, int(math.ceil(len(data) / float(batch))))
    total = int(epochs) * nb
    gen = torch.Generator().manual_seed(seed)
    losses = []
    _train_mode(net)
    for epoch in range(int(epochs)):
        run = 0.0
        order = torch.randperm(len(data), generator=gen)
        for i in range(nb):
            imgs = data[order[i * batch:(i + 1) * batch]]
            for g in opt.param_groups:  # cosine from lr to 0
                g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * (epoch * nb + i) / total))
            with torch.no_grad():
                target = teacher(imgs)
            with plan.fake_quant():
                out = net(imgs)
            loss = distill_loss(out, target, head.reg_max)
            if not torch.isfinite(loss):
                raise UserInputError("QAT: the loss became {} (epoch {}); try fewer epochs".format(float(loss), epoch + 1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            run += float(loss)
        losses.append(run / nb)
        if log:
            log("QAT epoch {}/{}: distillation loss {:.5f}".format(epoch + 1, epochs, losses[-1]))
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    record = {"recipe": "distillation from FP32, fake quant at every PTQ Q/DQ input with PTQ's scales, "
                        "BN folded, AdamW cosine", "epochs": int(epochs), "lr": lr, "batch": batch,
              "images": int(len(data)), "flavour": flavour, "plan": plan.record(),
              "loss_per_epoch": [round(v, 6) for v in losses], "seconds": round(time.perf_counter() - t0, 1)}
    return net, record
