"""DySample (Liu, Lu, Fu, Cao, ICCV 2023, "Learning to Upsample by Learning to Sample").

A point-sampling upsampler: a 1x1 conv predicts, for every output pixel, an offset from the
position a plain bilinear upsample would read; the input is then sampled there (bilinear, border
padding). With zero offsets it is exactly bilinear x2 upsampling (align_corners=False).

Deployment detail that shapes this file: everything after the offset conv (the coordinate
arithmetic and the sampling) lives in the child module `sampler`. Its ONNX nodes are therefore named
`/model.<i>/sampler/...`, which is how the FP16 / INT8 steps find this FP32 island and leave it alone
(a half-precision sampling grid loses too much precision once scaled back to pixels).

`sample_mode` chooses how the sampling is expressed:
- "native": torch grid_sample -> ONNX GridSample (opset >= 16, TensorRT >= 8.5).
- "lowered": gather-based bilinear interpolation made of ops every TensorRT 8.0+ parser accepts.
Both compute the same function.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SAMPLE_MODES = ("native", "lowered")


def dysample_init_pos(scale, groups):
    """Initial sub-pixel positions: channel ((xy*G + g)*s + i)*s + j holds h[j] for x and h[i] for y."""
    h = (torch.arange(scale, dtype=torch.float) - (scale - 1) / 2) / scale  # [-0.25, 0.25] for s=2
    hy, hx = torch.meshgrid(h, h, indexing="ij")  # hy[i, j] = h[i], hx[i, j] = h[j]
    pos = torch.stack((hx, hy)).unsqueeze(1).repeat(1, groups, 1, 1)  # (2, G, s, s)
    return pos.reshape(1, -1, 1, 1)


class DySampleSampler(nn.Module):
    """Offsets -> normalised sampling grid -> sample. Parameter-free; the FP32 island."""

    def __init__(self, scale, groups, sample_mode="native"):
        super().__init__()
        self.scale = scale
        self.groups = groups
        self.sample_mode = sample_mode

    def forward(self, x, offset):
        b, _, h, w = offset.shape
        s, g = self.scale, self.groups
        offset = offset.view(b, 2, -1, h, w)
        # Sizes come from the traced shapes, so an export with dynamic H/W stays correct at other sizes
        # (the original code baked tensor([W, H]) in as a constant).
        # Integer ramps then a cast: TensorRT 8.0 / 8.2 parse only integer Range.
        ys = torch.arange(h, device=x.device).to(x.dtype) + 0.5
        xs = torch.arange(w, device=x.device).to(x.dtype) + 0.5
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        base = torch.stack((gx, gy)).view(1, 2, 1, h, w)
        # (W, H) read back from the coordinate ramps: a graph value, never a traced constant.
        size = torch.stack((xs[-1:] + 0.5, ys[-1:] + 0.5)).view(1, 2, 1, 1, 1)
        grid = 2 * (base + offset) / size - 1
        grid = F.pixel_shuffle(grid.reshape(b, -1, h, w), s)  # (B, 2*G, sH, sW)
        grid = grid.view(b, 2, g, s * h, s * w).permute(0, 2, 3, 4, 1).reshape(b * g, s * h, s * w, 2)
        feats = x.reshape(b * g, -1, x.shape[-2], x.shape[-1])
        if self.sample_mode == "lowered":
            from defectrt.models.gridsample_lowered import grid_sample_border_bilinear

            out = grid_sample_border_bilinear(feats, grid)
        else:
            out = F.grid_sample(feats, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return out.reshape(b, -1, s * h, s * w)


class DySample(nn.Module):
    """DySample(in_channels, scale=2, style="lp", groups=4, dyscope=False).

    "lp" (linear then pixel-shuffle): offsets predicted at low resolution, 2*G*s^2 channels.
    "pl" (pixel-shuffle then linear): offsets predicted on pixel_shuffle(x), then pixel-unshuffled.
    dyscope: offsets scaled per pixel by 0.5 * sigmoid(scope(x)) instead of the static 0.25.
    """

    def __init__(self, in_channels, scale=2, style="lp", groups=4, dyscope=False, sample_mode="native"):
        super().__init__()
        if style not in ("lp", "pl"):
            raise ValueError("DySample style must be 'lp' or 'pl', got {!r}".format(style))
        if sample_mode not in SAMPLE_MODES:
            raise ValueError("sample_mode must be one of {}, got {!r}".format(SAMPLE_MODES, sample_mode))
        if style == "pl":
            if in_channels % scale**2:
                raise ValueError("DySample 'pl' needs in_channels divisible by scale^2")
            conv_in, conv_out = in_channels // scale**2, 2 * groups
        else:
            conv_in, conv_out = in_channels, 2 * groups * scale**2
        if in_channels % groups:
            raise ValueError("DySample needs in_channels divisible by groups ({} % {})".format(in_channels, groups))
        self.scale, self.style, self.groups, self.dyscope = scale, style, groups, dyscope
        self.offset = nn.Conv2d(conv_in, conv_out, 1)
        nn.init.normal_(self.offset.weight, std=0.001)
        nn.init.zeros_(self.offset.bias)
        if dyscope:
            self.scope = nn.Conv2d(conv_in, conv_out, 1, bias=False)
            nn.init.zeros_(self.scope.weight)
        self.register_buffer("init_pos", dysample_init_pos(scale, groups))
        self.sampler = DySampleSampler(scale, groups, sample_mode)

    @property
    def sample_mode(self):
        return self.sampler.sample_mode

    @sample_mode.setter
    def sample_mode(self, mode):
        if mode not in SAMPLE_MODES:
            raise ValueError("sample_mode must be one of {}, got {!r}".format(SAMPLE_MODES, mode))
        self.sampler.sample_mode = mode

    def _offsets(self, y):
        if self.dyscope:
            return self.offset(y) * self.scope(y).sigmoid() * 0.5
        return self.offset(y) * 0.25

    def forward(self, x):
        if self.style == "pl":
            y = F.pixel_shuffle(x, self.scale)
            offset = F.pixel_unshuffle(self._offsets(y), self.scale) + self.init_pos
        else:
            offset = self._offsets(x) + self.init_pos
        return self.sampler(x, offset)
