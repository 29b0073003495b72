"""Quantization-aware fine-tuning (QAT) for INT8 bundles: `defectrt export build --precision int8 --qat-epochs N`.

From the FP32 weights (BatchNorm folded into the convolutions first, as in the exported graph), every
convolution that post-training quantization quantizes gets fake quantization of its input and weights;
the stem, the DySample island feeders and the decode tail stay float, exactly as in the Q/DQ graph
(ONNX Convs are matched to modules by their weights, `weight_digest`: torch's ONNX scope names do not
map back to module paths reliably, e.g. "/model.23/cv3.0/cv3.0.0/cv3.0.0.0/conv/Conv"). The flavour decides the arithmetic:
- trt: symmetric int8 activations (zero point 0, scale amax / 127), as ModelOpt's TensorRT Q/DQ;
- cpu: asymmetric uint8 activations (scale (max - min) / 255, a zero point), as ONNX Runtime's QDQ;
weights per output channel, symmetric int8 (amax / 127, from the current weights at every step).
Activation ranges are calibrated with "max" on the first batches (as the PTQ default), then frozen;
the weights are fine-tuned through the straight-through estimator (torch.fake_quantize_*).

The tuned module is returned as a plain FP32 model; the bundle exports it with its own settings and
quantizes it with the same PTQ code (same calibration images), so each flavour's Q/DQ graph is exactly
its production form. What fine-tuning did not see: the Q/DQ that PTQ also puts on residual Adds
(trt) and on concatenations / pooling / resizes (cpu); those carry little of the error in our models.

Why torch's own fake quantization and not ModelOpt's torch quantization (mtq): `import
modelopt.torch.quantization` fails here without `requests`, then `huggingface_hub` (ModelOpt 0.47's torch
side pulls its Hugging Face plugins in at import time); torch's fake-quant ops need nothing more.
"""
from __future__ import annotations

import copy
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from defectrt.errors import UserInputError

FLAVOURS = ("trt", "cpu")


class FakeQuantConv2d(nn.Module):
    """An nn.Conv2d with fake-quantized input (per tensor) and weights (per output channel)."""

    def __init__(self, conv, flavour):
        super().__init__()
        self.conv, self.flavour, self.calibrating = conv, flavour, True
        self.register_buffer("lo", torch.tensor(float("inf")))
        self.register_buffer("hi", torch.tensor(float("-inf")))

    def _act(self, x):
        lo, hi = float(self.lo), float(self.hi)
        if self.flavour == "trt":
            scale = max(abs(lo), abs(hi), 1e-8) / 127.0
            return torch.fake_quantize_per_tensor_affine(x, scale, 0, -128, 127)
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        scale = max(hi - lo, 1e-8) / 255.0
        zero = int(min(255, max(0, round(-lo / scale))))
        return torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 255)

    def _weight(self):
        w = self.conv.weight
        scale = (w.detach().abs().amax(dim=(1, 2, 3)).clamp(min=1e-8) / 127.0).float()
        zero = torch.zeros(w.shape[0], dtype=torch.int32, device=w.device)
        return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -127, 127)

    def forward(self, x):
        c = self.conv
        if self.calibrating:
            with torch.no_grad():
                self.lo = torch.minimum(self.lo, x.min().detach())
                self.hi = torch.maximum(self.hi, x.max().detach())
            return c(x)
        return F.conv2d(self._act(x), self._weight(), c.bias, c.stride, c.padding, c.dilation, c.groups)


def weight_digest(weight):
    """Identity of a convolution across torch and ONNX: the sha1 of its float32 weights (the export
    writes the fused weights unchanged; names differ between the two)."""
    import hashlib

    import numpy as np

    if isinstance(weight, torch.Tensor):
        weight = weight.detach().cpu().numpy()
    return hashlib.sha1(np.ascontiguousarray(weight, dtype=np.float32).tobytes()).hexdigest()


def quantized_conv_digests(fp32_onnx, excluded_nodes):
    """weight_digest of every Conv of the FP32 ONNX file that PTQ quantizes (not in `excluded_nodes`)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(fp32_onnx)
    inits = {t.name: t for t in m.graph.initializer}
    return {weight_digest(numpy_helper.to_array(inits[n.input[1]])) for n in m.graph.node
            if n.op_type == "Conv" and n.name not in excluded_nodes and len(n.input) > 1 and n.input[1] in inits}


def insert_fake_quant(net, flavour, quantize_digests):
    """Wrap every nn.Conv2d whose weights (weight_digest) are among `quantize_digests` - the Convs that
    PTQ quantizes in the exported graph; returns the wrapped module names."""
    wrapped = []
    for name, module in list(net.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Conv2d) and weight_digest(child.weight) in quantize_digests:
                setattr(module, child_name, FakeQuantConv2d(child, flavour))
                wrapped.append("{}.{}".format(name, child_name) if name else child_name)
    return wrapped


def remove_fake_quant(net):
    for module in list(net.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, FakeQuantConv2d):
                setattr(module, child_name, child.conv)
    return net


def _resolve(model_ref):
    if isinstance(model_ref, nn.Module):
        return copy.deepcopy(model_ref)
    from defectrt.models import resolve_model_ref

    return resolve_model_ref(model_ref)


def qat_finetune(model_ref, data, epochs, imgsz, quantize_digests, flavour="trt", lr=1e-4, batch=8, calib_batches=4,
                 seed=0, log=None):
    """Fine-tune `model_ref` (checkpoint, demo:NAME or nn.Module) on `data`'s train split with fake
    quantization of the convolutions in `quantize_digests` (quantized_conv_digests of its FP32 export)
    for `epochs` epochs at `imgsz` (h, w). Returns (FP32 nn.Module in eval mode, record)."""
    from defectrt.data.dataset import load_dataset
    from defectrt.train.data import TrainDataset, batches, n_batches
    from defectrt.train.losses import DetectionLoss

    if flavour not in FLAVOURS:
        raise UserInputError("QAT flavour {!r}: choose trt or cpu".format(flavour))
    if int(epochs) < 1:
        raise UserInputError("--qat-epochs {}: give at least 1".format(epochs))
    try:
        train_set = load_dataset(data, "train")
    except UserInputError as exc:
        raise UserInputError("--qat-epochs needs --calib to be a labelled YOLO dataset (images/train + labels/train): "
                             "{}".format(exc))
    if not len(train_set) or not train_set.instances().sum():
        raise UserInputError("--qat-epochs: {} has no labelled training images".format(data))
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    net = _resolve(model_ref).float()
    if train_set.nc != getattr(net, "nc", train_set.nc):
        raise UserInputError("--qat-epochs: the model has {} classes, {} has {}".format(net.nc, data, train_set.nc))
    if hasattr(net, "fuse"):
        with torch.no_grad():  # else the folded weights carry the BN arithmetic as a graph (non-leaf tensors)
            net.fuse()
    wrapped = insert_fake_quant(net, flavour, quantize_digests)
    if not wrapped:
        raise UserInputError("QAT: no convolution of the model is quantized (nothing to fine-tune)")
    ds = TrainDataset(train_set, tuple(imgsz), augment=None, seed=seed)
    net.eval()
    with torch.no_grad():  # "max" calibration of the activation ranges, then frozen
        for i, (imgs, _) in enumerate(batches(ds, batch, 0, seed, shuffle=True)):
            if i >= calib_batches:
                break
            net(imgs)
    for m in net.modules():
        if isinstance(m, FakeQuantConv2d):
            m.calibrating = False
    head = net.model[-1]
    params = [p for p in net.parameters()]
    for p in params:
        p.requires_grad_(True)
    head.dfl.conv.weight.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in params if p.requires_grad], lr=lr, weight_decay=0.0)
    criterion = DetectionLoss(net)
    nb = n_batches(len(ds), batch)
    total = int(epochs) * nb
    losses = []
    net.train()
    for epoch in range(int(epochs)):
        run = 0.0
        for i, (imgs, targets) in enumerate(batches(ds, batch, epoch + 1, seed, shuffle=True)):
            for g in opt.param_groups:  # cosine from lr to lr / 100
                g["lr"] = lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * (epoch * nb + i) / max(1, total))))
            loss, _ = criterion(net(imgs), targets)
            if not torch.isfinite(loss):
                raise UserInputError("QAT: the loss became {} (epoch {}); try fewer epochs".format(float(loss), epoch + 1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            run += float(loss)
        losses.append(run / max(1, nb))
        if log:
            log("QAT epoch {}/{}: loss {:.4f}".format(epoch + 1, epochs, losses[-1]))
    remove_fake_quant(net).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    record = {"epochs": int(epochs), "lr": lr, "batch": batch, "images": len(train_set), "flavour": flavour,
              "fake_quantized_convs": len(wrapped), "loss_per_epoch": [round(v, 5) for v in losses],
              "data": str(data), "seconds": round(time.perf_counter() - t0, 1)}
    return net, record
