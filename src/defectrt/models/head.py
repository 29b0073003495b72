"""YOLO11 detection head: decoupled box (DFL) and class branches, anchor-free decoding."""
from __future__ import annotations

import math

import torch
from torch import nn

from defectrt.models.blocks import Conv, DWConv


class DFL(nn.Module):
    """Distribution focal loss integral: expected value of a softmax over `c1` bins.

    The 1x1 conv with fixed weights 0..c1-1 is kept as a module because checkpoints store it.
    """

    def __init__(self, c1=16):
        super().__init__()
        self.conv = nn.Conv2d(c1, 1, 1, bias=False).requires_grad_(False)
        self.conv.weight.data[:] = torch.arange(c1, dtype=torch.float).view(1, c1, 1, 1)
        self.c1 = c1

    def forward(self, x):
        b, _, a = x.shape
        # Softmax over the last axis and a matrix product with the conv's weights: the same numbers as the
        # 1x1 conv over softmax(dim=1), but the exported graph hits runtimes' fast paths (ONNX Runtime runs
        # a Softmax on an inner axis as transpose + softmax + transpose: 3.4 ms vs 0.66 ms at 384x672).
        p = x.view(b, 4, self.c1, a).transpose(2, 3).softmax(-1)
        return (p @ self.conv.weight.view(self.c1, 1)).view(b, 4, a)


def make_anchors(feats, strides, offset=0.5):
    """Cell-centre anchor points (x + 0.5, y + 0.5) per level and the stride of each."""
    points, stride_tensor = [], []
    dtype, device = feats[0].dtype, feats[0].device
    for feat, stride in zip(feats, strides):
        h, w = feat.shape[2:]
        # Integer ramps then a cast: TensorRT 8.0 / 8.2 parse only integer Range.
        sx = torch.arange(w, device=device).to(dtype) + offset
        sy = torch.arange(h, device=device).to(dtype) + offset
        sy, sx = torch.meshgrid(sy, sx, indexing="ij")
        points.append(torch.stack((sx, sy), -1).view(-1, 2))
        stride_tensor.append(torch.full((h * w, 1), float(stride), dtype=dtype, device=device))
    return torch.cat(points), torch.cat(stride_tensor)


def dist2bbox(distance, anchor_points, xywh=True, dim=-1):
    """(l, t, r, b) distances around anchor points -> boxes (cx, cy, w, h) or (x1, y1, x2, y2)."""
    lt, rb = distance.chunk(2, dim)
    x1y1 = anchor_points - lt
    x2y2 = anchor_points + rb
    if xywh:
        return torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), dim)
    return torch.cat((x1y1, x2y2), dim)


class Detect(nn.Module):
    """Per level: box branch Conv3x3 -> Conv3x3 -> 1x1 (4*reg_max); class branch [DWConv3x3 -> Conv1x1] x2 -> 1x1 (nc).

    `legacy`: the YOLOv8 class branch (Conv3x3 -> Conv3x3 -> 1x1), which Ultralytics builds for a model without
    any C3k2 block (observed with ultralytics 8.4: a C2f-only yaml gets it, one C3k2 anywhere switches it off).

    Training mode returns the raw per-level maps (B, 4*reg_max + nc, H, W) for the loss.
    Eval mode returns (B, 4 + nc, A): cx, cy, w, h in input pixels and sigmoid scores.
    """

    def __init__(self, nc=80, ch=(), legacy=False):
        super().__init__()
        self.nc = nc
        self.nl = len(ch)
        self.reg_max = 16
        self.no = nc + self.reg_max * 4
        self.register_buffer("stride", torch.zeros(self.nl), persistent=False)
        c2 = max(16, ch[0] // 4, self.reg_max * 4)
        c3 = max(ch[0], min(self.nc, 100))
        self.cv2 = nn.ModuleList(
            nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * self.reg_max, 1)) for x in ch
        )
        if legacy:  # the YOLOv8 class branch: two plain 3x3 convs
            self.cv3 = nn.ModuleList(nn.Sequential(Conv(x, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, self.nc, 1)) for x in ch)
        else:
            self.cv3 = nn.ModuleList(
                nn.Sequential(
                    nn.Sequential(DWConv(x, x, 3), Conv(x, c3, 1)),
                    nn.Sequential(DWConv(c3, c3, 3), Conv(c3, c3, 1)),
                    nn.Conv2d(c3, self.nc, 1),
                )
                for x in ch
            )
        self.dfl = DFL(self.reg_max)

    def forward(self, x):
        x = [torch.cat((self.cv2[i](x[i]), self.cv3[i](x[i])), 1) for i in range(self.nl)]
        if self.training:
            return x
        return self.decode(x)

    def decode(self, x):
        b = x[0].shape[0]
        # Python floats, so tracing for export records constants without a warning.
        stride_values = getattr(self, "stride_values", None) or self.stride.tolist()
        anchors, strides = (t.transpose(0, 1) for t in make_anchors(x, stride_values))
        x_cat = torch.cat([xi.view(b, self.no, -1) for xi in x], 2)
        box, cls = x_cat.split((self.reg_max * 4, self.nc), 1)
        dbox = dist2bbox(self.dfl(box), anchors.unsqueeze(0), xywh=True, dim=1) * strides
        return torch.cat((dbox, cls.sigmoid()), 1)

    def bias_init(self):
        """Prior biases: box logits at 1, class logits for ~5 objects per 640 image (from the YOLO recipes)."""
        for a, b, s in zip(self.cv2, self.cv3, self.stride.tolist()):
            a[-1].bias.data[:] = 1.0
            b[-1].bias.data[: self.nc] = math.log(5 / self.nc / (640 / s) ** 2)
