"""YOLO11 networks: an architecture description (the Ultralytics `yaml` dict) -> nn.Module.

The same parser serves our registry and the `yaml` dict pickled inside Ultralytics checkpoints, so a
`best.pt` from a training team and `create("yolo11n-dysample")` produce identical module trees.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from defectrt.models import blocks
from defectrt.models.blocks import BN_EPS, BN_MOMENTUM, Conv
from defectrt.models.dysample import DySample
from defectrt.models.head import Detect
from defectrt.models.sme import EUCB, MSFA

SCALES = {  # depth, width, max_channels
    "n": (0.50, 0.25, 1024),
    "s": (0.50, 0.50, 1024),
    "m": (0.50, 1.00, 512),
    "l": (1.00, 1.00, 512),
    "x": (1.00, 1.50, 512),
}

# Module names as they appear in Ultralytics yaml dicts (and forks), mapped to our classes.
MODULES = {
    "Conv": Conv,
    "DWConv": blocks.DWConv,
    "GhostConv": blocks.GhostConv,
    "Bottleneck": blocks.Bottleneck,
    "C2f": blocks.C2f,
    "C3": blocks.C3,
    "C3k": blocks.C3k,
    "C3k2": blocks.C3k2,
    "C3k2Ghost": blocks.C3k2Ghost,
    "C3k2_Ghost": blocks.C3k2Ghost,
    "GhostBottleneck": blocks.GhostBottleneck,
    "SPPF": blocks.SPPF,
    "C2PSA": blocks.C2PSA,
    "Concat": blocks.Concat,
    "Upsample": nn.Upsample,
    "nn.Upsample": nn.Upsample,
    "DySample": DySample,
    "EUCB": EUCB,
    "MSFA": MSFA,
    "Detect": Detect,
}
# Blocks whose first two arguments are (c_in, c_out) after width scaling.
_CHANNEL_MODULES = {
    Conv, blocks.DWConv, blocks.GhostConv, blocks.Bottleneck, blocks.C2f, blocks.C3, blocks.C3k, blocks.C3k2,
    blocks.C3k2Ghost, blocks.GhostBottleneck, blocks.SPPF, blocks.C2PSA,
}
# Blocks that take the repeat count as their third argument instead of being stacked.
_REPEAT_MODULES = {blocks.C2f, blocks.C3, blocks.C3k, blocks.C3k2, blocks.C3k2Ghost, blocks.C2PSA}


def make_divisible(x, divisor=8):
    return int(math.ceil(x / divisor) * divisor)


class ArchitectureError(ValueError):
    """The architecture description names a module or argument we cannot build."""


def _channel_arg(c, width, max_channels, nc):
    return make_divisible(min(c, max_channels) * width, 8) if c != nc else c


def parse_model(cfg, ch=3):
    """Build the layer list from an Ultralytics-style dict: backbone + head, each [from, repeats, module, args]."""
    nc = cfg["nc"]
    scale = cfg.get("scale")
    scales = cfg.get("scales")
    if scales:
        scale = scale or next(iter(scales))
        depth, width, max_channels = scales[scale]
    else:
        depth, width, max_channels = cfg.get("depth_multiple", 1.0), cfg.get("width_multiple", 1.0), float("inf")
    channels = [ch]
    layers, save = [], []
    for i, (f, n, name, args) in enumerate(cfg["backbone"] + cfg["head"]):
        module_name = name.split(".")[-1] if name not in MODULES else name
        if module_name not in MODULES:
            raise ArchitectureError("layer {}: unknown module {!r} (known: {})".format(i, name, ", ".join(sorted(MODULES))))
        m = MODULES[module_name]
        args = [nc if a == "nc" else a for a in args]
        n_ = max(round(n * depth), 1) if n > 1 else n
        c_in = channels[f] if isinstance(f, int) else None
        if m in _CHANNEL_MODULES:
            c2 = _channel_arg(args[0], width, max_channels, nc)
            args = [c_in, c2, *args[1:]]
            if m in _REPEAT_MODULES:
                args.insert(2, n_)
                n_ = 1
            if m in (blocks.C3k2, blocks.C3k2Ghost) and scale in ("m", "l", "x"):
                args[3] = True  # at m/l/x every C3k2 uses C3k blocks
        elif m is blocks.Concat:
            c2 = sum(channels[x] for x in f)
        elif m is Detect:
            args = [args[0] if args else nc, [channels[x] for x in f]]
            c2 = None
        elif m is DySample:
            # Forks write [scale, style, groups, dyscope], some with the channel count first.
            if args and isinstance(args[0], int) and args[0] > 8:
                args = args[1:]
            args = [c_in, *args]
            c2 = c_in
        elif m is EUCB:
            c2 = _channel_arg(args[0], width, max_channels, nc) if args and isinstance(args[0], int) else c_in
            args = [c_in, c2]
        elif m is MSFA:
            c2 = c_in
            args = [c_in]
        else:  # Upsample and other shape-preserving modules
            c2 = c_in
        module = nn.Sequential(*(m(*args) for _ in range(n_))) if n_ > 1 else m(*args)
        module.f, module.i, module.type = f, i, module_name
        save.extend(x % i for x in ([f] if isinstance(f, int) else f) if x != -1)
        layers.append(module)
        if i == 0:
            channels = []
        channels.append(c2)
    return nn.Sequential(*layers), sorted(set(save))



class DetectionModel(nn.Module):
    """A YOLO11 detector. `model.<i>` indexing and parameter names follow the Ultralytics layout.

    Eval-mode output: (B, 4 + nc, A) with boxes (cx, cy, w, h) in input pixels and sigmoid scores.
    """

    def __init__(self, cfg, nc=None, names=None, ch=3):
        super().__init__()
        self.yaml = copy.deepcopy(cfg)
        if nc is not None and nc != self.yaml["nc"]:
            self.yaml["nc"] = nc
        self.model, self.save = parse_model(self.yaml, ch)
        self.nc = self.yaml["nc"]
        self.names = _normalise_names(names, self.nc)
        self.variant = self.yaml.get("variant")
        detect = self.model[-1]
        # Strides from a dry run, as every YOLO does: robust to any backbone a fork defines.
        s = 256
        self.eval()
        with torch.no_grad():
            feats = self._forward_features(torch.zeros(1, ch, s, s))
        detect.stride = torch.tensor([s / x.shape[-2] for x in feats])
        detect.stride_values = tuple(float(v) for v in detect.stride)
        self.stride = detect.stride
        detect.bias_init()
        _set_bn_defaults(self)

    def _forward_features(self, x):
        y = []
        for m in self.model[:-1]:
            if m.f != -1:
                x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
            x = m(x)
            y.append(x if m.i in self.save else None)
        f = self.model[-1].f
        return [x if j == -1 else y[j] for j in f]

    def forward(self, x):
        return self.model[-1](self._forward_features(x))

    def fuse(self):
        """Fold every BatchNorm that follows a conv into it (export and inference speed)."""
        for m in self.modules():
            if isinstance(m, Conv) and hasattr(m, "bn"):
                m.conv = fuse_conv_bn(m.conv, m.bn)
                delattr(m, "bn")
                m.forward = m.forward_fuse
            elif isinstance(m, EUCB) and isinstance(m.up_dwc[2], nn.BatchNorm2d):
                m.up_dwc[1] = fuse_conv_bn(m.up_dwc[1], m.up_dwc[2])
                m.up_dwc[2] = nn.Identity()
        return self


def fuse_conv_bn(conv, bn):
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        dilation=conv.dilation, groups=conv.groups, bias=True,
    ).requires_grad_(False).to(conv.weight.device)
    w_bn = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused.weight.copy_(conv.weight * w_bn.view(-1, 1, 1, 1))
    b_conv = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.copy_(bn.bias + (b_conv - bn.running_mean) * w_bn)
    return fused


def _set_bn_defaults(model):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps, m.momentum = BN_EPS, BN_MOMENTUM


def _normalise_names(names, nc):
    if names is None:
        return {i: "class{}".format(i) for i in range(nc)}
    if isinstance(names, dict):
        names = {int(k): str(v) for k, v in names.items()}
    else:
        names = {i: str(v) for i, v in enumerate(names)}
    if sorted(names) != list(range(nc)):
        raise ValueError("class names must cover ids 0..{} exactly, got {} names".format(nc - 1, len(names)))
    return names
