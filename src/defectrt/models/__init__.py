"""The YOLO11 model zoo (PyTorch): registry, checkpoints, and the papers' variants.

    from defectrt import models
    net = models.create("yolo11n-dysample", nc=4, names=["scratch", "dent", "coating", "unprocessed"])
    net = models.load("best.pt")          # Ultralytics checkpoint, no Ultralytics needed
    models.save(net, "screw.safetensors") # our format: safetensors + JSON config
"""
from defectrt.models.checkpoint import load, resolve_model_ref, save
from defectrt.models.registry import available, create, yolo11
from defectrt.models.yolo import DetectionModel


def set_sample_mode(model, mode):
    """Switch every DySample in `model` to "native" (GridSample) or "lowered" (gather-based) sampling."""
    from defectrt.models.dysample import DySample

    for m in model.modules():
        if isinstance(m, DySample):
            m.sample_mode = mode
    return model


__all__ = ["available", "create", "yolo11", "DetectionModel", "load", "save", "resolve_model_ref", "set_sample_mode"]
