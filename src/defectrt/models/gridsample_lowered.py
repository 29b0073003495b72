"""Bilinear, border-padded grid sampling written with ops every TensorRT 8.0+ ONNX parser accepts.

`grid_sample_border_bilinear(x, grid)` computes exactly what
`F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)` computes, but
exports to ONNX without a GridSample node (TensorRT's parser has GridSample only from 8.5 on, so
JetPack 4.6 / 5.0 need this form). DySample's sampler calls it when `sample_mode == "lowered"`.

What it exports to (opset 13+): Shape/Gather (sizes), Slice/Squeeze (grid x, y), Add/Sub/Mul/Div,
Max/Min (border clamp: elementwise, so no Clip whose bounds would have to be initializers on 8.0/8.2),
Floor, Cast, Range (integer, for the batch offsets), Reshape, Transpose, Unsqueeze and four `Gather`
(axis 0) on a row-major (N*H*W, C) view of the input.

Why `Gather` on flat rows and not `GatherElements`: both are in TensorRT 8.0's parser (onnx-tensorrt
release/8.0 docs/operators.md; GatherElements arrived in 8.0 with "only positive indices"), but
GatherElements needs its index tensor at the full output size (N, C, Ho*Wo) - C times more int64
index traffic - whereas a row Gather takes one index per output pixel and copies C contiguous values.
It is the cheaper one in ONNX Runtime and maps to TensorRT's plain IGatherLayer on every version.

Sizes are read from the traced shapes (`x.shape` becomes Shape ops under the TorchScript exporter),
never baked in as Python ints, so an export with dynamic batch or H/W stays correct at other sizes.
"""
from __future__ import annotations

import torch

__all__ = ["grid_sample_border_bilinear"]


def _size(t, dim, like):
    """A size of `t` as a 0-d tensor of `like`'s dtype; traced as Shape -> Gather -> Cast in ONNX."""
    s = t.shape[dim]
    if isinstance(s, torch.Tensor):  # tracing: already a graph value
        return s.to(like.dtype)
    return torch.tensor(s, dtype=like.dtype, device=like.device)


def grid_sample_border_bilinear(x, grid):
    """Bilinear sampling with border padding, align_corners=False, as plain gathers.

    x: (N, C, H, W) float; grid: (N, Ho, Wo, 2) with (x, y) normalised to [-1, 1] (values outside
    are clamped to the border, like F.grid_sample's padding_mode="border"). Returns (N, C, Ho, Wo).
    """
    if not torch.jit.is_tracing() and (x.dim() != 4 or grid.dim() != 4 or grid.shape[-1] != 2):
        raise ValueError("grid_sample_border_bilinear takes x (N, C, H, W) and grid (N, Ho, Wo, 2), got {} and {}".format(
            tuple(x.shape), tuple(grid.shape)))
    n, c = x.shape[0], x.shape[1]
    ho, wo = grid.shape[1], grid.shape[2]
    h_f, w_f = _size(x, 2, grid), _size(x, 3, grid)
    h_i, w_i = _size(x, 2, h_f.new_zeros((), dtype=torch.long)), _size(x, 3, h_f.new_zeros((), dtype=torch.long))

    gx, gy = grid[..., 0], grid[..., 1]  # (N, Ho, Wo)
    # Unnormalise (align_corners=False): pixel centre i sits at (2i + 1)/size - 1.
    ix = ((gx + 1) * w_f - 1) * 0.5
    iy = ((gy + 1) * h_f - 1) * 0.5
    # Border padding = clamp the coordinate into [0, size - 1] before interpolating.
    zero = torch.zeros((), dtype=grid.dtype, device=grid.device)
    ix = torch.minimum(torch.maximum(ix, zero), w_f - 1)
    iy = torch.minimum(torch.maximum(iy, zero), h_f - 1)

    x0f, y0f = torch.floor(ix), torch.floor(iy)
    wx1, wy1 = ix - x0f, iy - y0f
    wx0, wy0 = 1 - wx1, 1 - wy1
    x0, y0 = x0f.long(), y0f.long()
    # x0 <= W-1 always; the right/bottom neighbour is clamped too (its weight is 0 on the last column).
    x1 = torch.minimum(x0 + 1, w_i - 1)
    y1 = torch.minimum(y0 + 1, h_i - 1)

    # Row index into the (N*H*W, C) view: b*H*W + y*W + x.
    base = (torch.arange(n, device=x.device) * (h_i * w_i)).view(-1, 1, 1)
    row0, row1 = base + y0 * w_i, base + y1 * w_i
    rows = x.permute(0, 2, 3, 1).reshape(-1, c)  # (N*H*W, C), channels contiguous

    def take(idx):
        return rows.index_select(0, idx.reshape(-1))  # exports as Gather(axis=0)

    def weight(a, b):
        return (a * b).reshape(-1, 1)

    out = (take(row0 + x0) * weight(wy0, wx0) + take(row0 + x1) * weight(wy0, wx1)
           + take(row1 + x0) * weight(wy1, wx0) + take(row1 + x1) * weight(wy1, wx1))
    return out.reshape(n, ho, wo, c).permute(0, 3, 1, 2)
