"""The YOLO11 family as architecture descriptions, one function the papers' variants configure.

Layer list from the YOLO11 definition; each paper changes only what it says it changes:
- YOLO11-DySample (screw paper): layers 11 and 14, nearest Upsample -> DySample(lp, groups 4).
- SME-YOLO (PCB paper): layers 11 and 14 -> EUCB; backbone layer 8, C3k2 -> MSFA.
- YOLO11-C3K2Ghost-all (screw paper's comparison): every C3k2 built from Ghost bottlenecks.
- YOLO11-DWConv (screw paper's comparison): the stride-2 Convs (layers 1, 3, 5, 7, 17, 20) become
  depth-wise convs (groups = gcd(c_in, c_out)); layer 0 stays a Conv (3 input channels).
"""
from __future__ import annotations

from defectrt.models.yolo import SCALES


def yolo11_cfg(scale="n", nc=80, upsample="nearest", c3k2="C3k2", downsample="Conv", msfa=False,
               dysample_style="lp", dysample_groups=4, dysample_dyscope=False):
    if scale not in SCALES:
        raise ValueError("scale must be one of {}, got {!r}".format("/".join(SCALES), scale))
    up = {
        "nearest": ["nn.Upsample", [None, 2, "nearest"]],
        "dysample": ["DySample", [2, dysample_style, dysample_groups, dysample_dyscope]],
        "eucb": ["EUCB", []],
    }[upsample]
    down = downsample
    backbone = [
        [-1, 1, "Conv", [64, 3, 2]],  # 0 P1/2
        [-1, 1, down, [128, 3, 2]],  # 1 P2/4
        [-1, 2, c3k2, [256, False, 0.25]],
        [-1, 1, down, [256, 3, 2]],  # 3 P3/8
        [-1, 2, c3k2, [512, False, 0.25]],
        [-1, 1, down, [512, 3, 2]],  # 5 P4/16
        [-1, 2, c3k2, [512, True]],
        [-1, 1, down, [1024, 3, 2]],  # 7 P5/32
        [-1, 1, "MSFA", [1024]] if msfa else [-1, 2, c3k2, [1024, True]],
        [-1, 1, "SPPF", [1024, 5]],  # 9
        [-1, 2, "C2PSA", [1024]],  # 10
    ]
    head = [
        [-1, 1, *up],  # 11
        [[-1, 6], 1, "Concat", [1]],
        [-1, 2, c3k2, [512, False]],  # 13
        [-1, 1, *up],  # 14
        [[-1, 4], 1, "Concat", [1]],
        [-1, 2, c3k2, [256, False]],  # 16 (P3/8)
        [-1, 1, down, [256, 3, 2]],
        [[-1, 13], 1, "Concat", [1]],
        [-1, 2, c3k2, [512, False]],  # 19 (P4/16)
        [-1, 1, down, [512, 3, 2]],
        [[-1, 10], 1, "Concat", [1]],
        [-1, 2, c3k2, [1024, True]],  # 22 (P5/32)
        [[16, 19, 22], 1, "Detect", ["nc"]],  # 23
    ]
    return {"nc": nc, "scale": scale, "scales": {k: list(v) for k, v in SCALES.items()}, "backbone": backbone, "head": head}
