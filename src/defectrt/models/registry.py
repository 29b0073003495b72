"""Registry of named variants: `create("yolo11n-dysample", nc=4, names=[...])`."""
from __future__ import annotations

from defectrt.errors import UserInputError
from defectrt.models.arch import yolo11_cfg
from defectrt.models.yolo import SCALES, DetectionModel

# Variant suffix -> the architecture options that define it (see arch.py for what each paper changes).
VARIANTS = {
    "": {},  # the screw paper's "YOLO11-UpSample-Conv" baseline
    "-dysample": {"upsample": "dysample"},
    "-eucb": {"upsample": "eucb"},
    "-sme": {"upsample": "eucb", "msfa": True},
    "-ghost": {"c3k2": "C3k2Ghost"},
    "-dwconv": {"downsample": "DWConv"},
}


def yolo11(scale="n", nc=80, names=None, **arch):
    """Build YOLO11 at a scale with explicit architecture options (upsample, c3k2, downsample, msfa, dysample_*)."""
    cfg = yolo11_cfg(scale=scale, nc=nc, **arch)
    return DetectionModel(cfg, names=names)


def available():
    return ["yolo11{}{}".format(s, v) for v in VARIANTS for s in SCALES]


def _split(name):
    key = name.strip().lower()
    for suffix in sorted(VARIANTS, key=len, reverse=True):
        base = key[: len(key) - len(suffix)] if suffix else key
        if key.endswith(suffix) and len(base) == 7 and base.startswith("yolo11") and base[-1] in SCALES:
            return base[-1], suffix
    return None


def create(name, nc=80, names=None, **overrides):
    """Build a registry variant. `names` (list or {id: name}) must have `nc` entries when given."""
    parsed = _split(name) if isinstance(name, str) else None
    if parsed is None:
        raise UserInputError(
            "unknown model {!r}; available: {} (or a checkpoint path)".format(name, ", ".join(available()))
        )
    if names is not None and nc == 80 and len(names) != 80:
        nc = len(names)
    if not isinstance(nc, int) or nc < 1:
        raise UserInputError("nc must be a positive integer, got {!r}".format(nc))
    if names is not None and len(names) != nc:
        raise UserInputError("{} class names given for nc={}; give one name per class".format(len(names), nc))
    scale, suffix = parsed
    arch = dict(VARIANTS[suffix], **overrides)
    model = yolo11(scale, nc=nc, names=names, **arch)
    model.variant = "yolo11{}{}".format(scale, suffix)
    model.yaml["variant"] = model.variant
    return model
