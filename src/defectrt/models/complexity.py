"""Parameters and GFLOPs computed from the model itself (never typed in)."""
from __future__ import annotations

import copy

import torch
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())


def gflops(model, imgsz=640, fused=True):
    """Forward GFLOPs (2 x multiply-accumulates of conv / matmul) at `imgsz` on a fused copy.

    PyTorch's FlopCounterMode counts convolutions and matrix products, the same operations the
    YOLO papers' counters (thop) count, so figures compare with published tables.
    """
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    m = copy.deepcopy(model).eval()
    if fused and hasattr(m, "fuse"):
        m.fuse()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        m(torch.zeros(1, 3, h, w))
    return counter.get_total_flops() / 1e9
