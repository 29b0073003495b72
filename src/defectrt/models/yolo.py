"""YOLO11 networks: an architecture description (the Ultralytics `yaml` dict) -> nn.Module.

The same parser serves our registry and the `yaml` dict pickled inside Ultralytics checkpoints, so a
`best.pt` from a training team and `create("yolo11n-dysample")` produce identical module trees.
"""
from __future__ import annotations

import ast
import copy
import math
import re

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


# Bounds on an architecture description: a checkpoint's yaml is untrusted input, and a short config must not
# build a model of gigabytes. YOLO11x, the largest stock model, has 24 layers, 2 repeats, at most 768 channels.
MAX_LAYERS = 512
MAX_REPEATS = 64
MAX_CHANNELS = 8192
MAX_NC = 10000
_MAX_LITERAL = 100


def make_divisible(x, divisor=8):
    return int(math.ceil(x / divisor) * divisor)


class ArchitectureError(ValueError):
    """The architecture description names a module or argument we cannot build."""


def _channel_arg(c, width, max_channels, nc):
    if type(c) is not int or c < 1:
        raise ArchitectureError("channel count {!r} is not a positive integer".format(c))
    return make_divisible(min(c, max_channels) * width, 8) if c != nc else c


def yaml_value(value, nc):
    """One yaml argument as Ultralytics reads it: the string 'nc' is the class count, other strings that are
    Python literals ('None', 'True', '0.25', '[1, 2]') become those values, and names ('nearest', 'lp') stay
    strings. Ultralytics keeps the strings in the pickled yaml, so a checkpoint's Upsample arrives as
    ['None', 2, 'nearest']."""
    if not isinstance(value, str):
        return value
    if value == "nc":
        return nc
    if len(value) > _MAX_LITERAL:
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return value


_ACTIVATIONS = {
    "SiLU": nn.SiLU, "ReLU": nn.ReLU, "ReLU6": nn.ReLU6, "LeakyReLU": nn.LeakyReLU, "ELU": nn.ELU,
    "Hardswish": nn.Hardswish, "GELU": nn.GELU, "Mish": nn.Mish, "Tanh": nn.Tanh, "Sigmoid": nn.Sigmoid,
}
_ACTIVATION_RE = re.compile(r"\s*(?:torch\.)?nn\.(\w+)\(\s*([-+0-9.eE]*)\s*\)\s*")


def activation_factory(text):
    """The yaml's `activation` ("nn.ReLU()", "nn.LeakyReLU(0.1)") -> a module factory.

    Ultralytics evaluates this string as Python; here only a known activation with at most one number
    is accepted, and nothing is evaluated."""
    if text is None:
        return nn.SiLU
    match = _ACTIVATION_RE.fullmatch(text) if isinstance(text, str) and len(text) <= _MAX_LITERAL else None
    if match is None or match.group(1) not in _ACTIVATIONS or (
            match.group(2) and match.group(1) not in ("LeakyReLU", "ELU")):
        raise ArchitectureError("activation {!r:.60}: expected one of {} written as nn.Name() (LeakyReLU / ELU may "
                                "take one number)".format(text, ", ".join(sorted(_ACTIVATIONS))))
    cls, arg = _ACTIVATIONS[match.group(1)], match.group(2)
    if not arg:
        return cls
    try:
        value = float(arg)
    except ValueError:
        raise ArchitectureError("activation {!r:.60}: {!r} is not a number".format(text, arg)) from None
    return lambda: cls(value)


def _number(cfg, key, default, low, high):
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value <= high:
        raise ArchitectureError("{} = {!r} is outside ({}, {}]".format(key, value, low, high))
    return value


def _multipliers(cfg):
    """(scale, depth, width, max_channels): from `scales` + `scale` (YOLO11), else depth/width_multiple."""
    scales = cfg.get("scales")
    if scales:
        if not isinstance(scales, dict):
            raise ArchitectureError("scales must be a mapping, got {}".format(type(scales).__name__))
        scale = cfg.get("scale") or next(iter(scales))  # Ultralytics takes the first scale when none is named
        if scale not in scales:
            raise ArchitectureError("scale {!r} is not among the scales {}".format(scale, list(scales)[:8]))
        values = scales[scale]
        if not isinstance(values, (list, tuple)) or len(values) != 3:
            raise ArchitectureError("scale {!r} must be [depth, width, max_channels], got {!r:.80}".format(scale, values))
        depth, width, max_channels = values
        spec = {"depth": depth, "width": width, "max_channels": max_channels}
        return (scale, _number(spec, "depth", 1, 0, 4), _number(spec, "width", 1, 0, 4),
                _number(spec, "max_channels", 1024, 0, MAX_CHANNELS))
    return (cfg.get("scale"), _number(cfg, "depth_multiple", 1.0, 0, 4), _number(cfg, "width_multiple", 1.0, 0, 4),
            _number(cfg, "max_channels", MAX_CHANNELS, 0, MAX_CHANNELS))


def _layers(cfg):
    backbone, head = cfg.get("backbone"), cfg.get("head")
    if not isinstance(backbone, list) or not isinstance(head, list):
        raise ArchitectureError("backbone and head must be lists of [from, repeats, module, args]")
    layers = backbone + head
    if not layers or len(layers) > MAX_LAYERS:
        raise ArchitectureError("{} layers (expected 1 to {})".format(len(layers), MAX_LAYERS))
    for i, layer in enumerate(layers):
        if not isinstance(layer, (list, tuple)) or len(layer) != 4:
            raise ArchitectureError("layer {}: expected [from, repeats, module, args], got {!r:.80}".format(i, layer))
        f, n, name, args = layer
        sources = f if isinstance(f, (list, tuple)) else [f]
        bad = [x for x in sources if type(x) is not int or not (x == -1 or 0 <= x < i or -i <= x < 0)]
        if not sources or bad or (i == 0 and sources != [-1]):
            raise ArchitectureError("layer {}: 'from' {!r:.60} does not name earlier layers".format(i, f))
        if type(n) is not int or not 1 <= n <= MAX_REPEATS:
            raise ArchitectureError("layer {}: repeats {!r:.40} outside 1..{}".format(i, n, MAX_REPEATS))
        if not isinstance(name, str) or not isinstance(args, (list, tuple)) or len(args) > 16:
            raise ArchitectureError("layer {}: module {!r:.60} with args {!r:.60}".format(i, name, args))
    return layers


def parse_model(cfg, ch=3):
    """Build the layer list from an Ultralytics-style dict: backbone + head, each [from, repeats, module, args].

    The yaml is read as Ultralytics reads it (see `yaml_value`, `_multipliers`); fork modules may be named by
    any module path (`ultralytics.nn.extra_modules.EUCB`). Sizes are bounded (MAX_* above).
    """
    if not isinstance(cfg, dict):
        raise ArchitectureError("the architecture must be a mapping, got {}".format(type(cfg).__name__))
    nc = cfg.get("nc")
    if type(nc) is not int or not 1 <= nc <= MAX_NC:
        raise ArchitectureError("nc = {!r:.40} outside 1..{}".format(nc, MAX_NC))
    if cfg.get("channels", ch) != ch:
        raise ArchitectureError("a model for {!r:.20}-channel input; only {}-channel (RGB) models are supported".format(
            cfg.get("channels"), ch))
    act = activation_factory(cfg.get("activation"))
    with blocks.default_activation(act):
        return _parse_layers(cfg, nc, ch)


def _parse_layers(cfg, nc, ch):
    scale, depth, width, max_channels = _multipliers(cfg)
    channels = [ch]
    layers, save = [], []
    specs = _layers(cfg)
    # Ultralytics gives a model without any C3k2 the YOLOv8 detection head; our and the forks' C3k2 variants count.
    legacy_head = not any(isinstance(name, str) and name.split(".")[-1] in ("C3k2", "C3k2Ghost", "C3k2_Ghost")
                          for _, _, name, _ in specs)
    for i, (f, n, name, args) in enumerate(specs):
        module_name = name if name in MODULES else name.split(".")[-1]
        if module_name not in MODULES:
            raise ArchitectureError("layer {}: unknown module {!r:.80} (known: {})".format(i, name, ", ".join(sorted(MODULES))))
        m = MODULES[module_name]
        args = [yaml_value(a, nc) for a in args]
        n_ = max(round(n * depth), 1) if n > 1 else n
        c_in = channels[f] if isinstance(f, int) else None
        if m in _CHANNEL_MODULES:
            c2 = _channel_arg(args[0] if args else None, width, max_channels, nc)
            args = [c_in, c2, *args[1:]]
            if m in _REPEAT_MODULES:
                args.insert(2, n_)
                n_ = 1
            if m in (blocks.C3k2, blocks.C3k2Ghost) and scale in ("m", "l", "x"):
                while len(args) < 4:
                    args.append(False)
                args[3] = True  # at m/l/x every C3k2 uses C3k blocks
        elif m is blocks.Concat:
            c2 = sum(channels[x] for x in f)
        elif m is Detect:
            classes = args[0] if args else nc
            if type(classes) is not int or not 1 <= classes <= MAX_NC:
                raise ArchitectureError("layer {}: Detect for {!r:.40} classes (expected 1..{})".format(i, classes, MAX_NC))
            args = [classes, [channels[x] for x in f], legacy_head]
            c2 = None
        elif m is DySample:
            # Forks write [scale, style, groups, dyscope], some with the channel count first.
            if args and type(args[0]) is int and args[0] > 8:
                args = args[1:]
            args = [c_in, *args]
            c2 = c_in
        elif m is EUCB:
            if not args:
                c2 = c_in
            elif args[0] == c_in:  # the module's own arguments, unscaled, as a fork's yaml passes them
                c2 = args[1] if len(args) > 1 and type(args[1]) is int else c_in
                args = args[2:]
            else:  # forks whose parser scales the output channels like a Conv's
                c2 = _channel_arg(args[0], width, max_channels, nc)
                args = []
            args = [c_in, c2, *args]
        elif m is MSFA:
            c2 = c_in
            args = [c_in]
        else:  # Upsample and other shape-preserving modules
            c2 = c_in
        if c2 is not None and (type(c2) is not int or not 1 <= c2 <= MAX_CHANNELS):
            raise ArchitectureError("layer {}: {} output channels (limit {})".format(i, c2, MAX_CHANNELS))
        module = nn.Sequential(*(m(*args) for _ in range(n_))) if n_ > 1 else m(*args)
        module.f, module.i, module.type = f, i, module_name
        save.extend(x % i for x in ([f] if isinstance(f, int) else f) if x != -1)
        layers.append(module)
        if i == 0:
            channels = []
        channels.append(c2)
    if not isinstance(layers[-1], Detect):
        raise ArchitectureError("the last layer is {}, not Detect (only detection models are supported)".format(
            type(layers[-1]).__name__))
    return nn.Sequential(*layers), sorted(set(save))


# The largest feature map the stride dry run (a 256 x 256 input) may make: YOLO11x's largest is 1.6M elements.
MAX_DRY_RUN_ELEMENTS = 1 << 25


def forward_features(layers, save, x, limit=None):
    """Run every layer but the head; -> the head's inputs. `limit`: refuse any feature map larger than it."""
    y = []
    for m in layers[:-1]:
        if m.f != -1:
            x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
        x = m(x)
        if limit is not None and x.numel() > limit:
            raise ArchitectureError("layer {} makes a feature map of {} elements from a 256 x 256 input (limit {})".format(
                m.i, x.numel(), limit))
        y.append(x if m.i in save else None)
    return [x if j == -1 else y[j] for j in layers[-1].f]


def state_dict_shapes(cfg, ch=3):
    """{state-dict key: shape} of the model `cfg` describes, built and dry-run on the meta device (shapes only,
    no memory for weights or feature maps).

    Checkpoint loaders compare this with the file's tensors BEFORE building the real model, so a config that
    declares a huge network but carries small weights is refused without allocating it, and one whose layers
    blow a feature map up (an Upsample x1000) is refused before the real model's stride dry run.
    """
    with torch.device("meta"):
        layers, save = parse_model(cfg, ch)
        forward_features(layers.eval(), save, torch.zeros(1, ch, 256, 256), limit=MAX_DRY_RUN_ELEMENTS)
    return {"model." + k: tuple(v.shape) for k, v in layers.state_dict().items()}


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
        return forward_features(self.model, self.save, x)

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
