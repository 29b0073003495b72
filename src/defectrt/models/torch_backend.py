"""Run a PyTorch model through the runtime's Detector, so torch and ONNX share pre/post-processing.

    from defectrt.runtime.detector import Detector
    det = Detector(TorchBackend("demo:screw"))

This is the reference every exported model is compared with: same letterbox, same NMS, only the
network differs.
"""
from __future__ import annotations

import numpy as np
import torch

from defectrt.runtime.backend import Backend


class TorchBackend(Backend):
    """The PyTorch reference on the CPU (the runtime's Backend protocol, so Detector runs it like any engine)."""

    name = "torch"
    device = "cpu"

    def __init__(self, model_ref, imgsz=None, nc=80, names=None, fuse=True):
        from defectrt.models.checkpoint import resolve_model_ref

        model = resolve_model_ref(model_ref, nc=nc, names=names)
        if fuse and model is model_ref:  # fusing rewrites modules in place: leave the caller's model alone
            import copy

            model = copy.deepcopy(model)
        self.model = model.eval()
        if fuse:
            self.model.fuse()
        if imgsz is None:
            imgsz = getattr(self.model, "imgsz", None) or 640
        self.imgsz = (imgsz, imgsz) if isinstance(imgsz, int) else tuple(int(v) for v in imgsz)
        self.names = dict(self.model.names)
        self.metadata = {"variant": getattr(self.model, "variant", None) or "", "precision": "fp32"}

    @torch.no_grad()
    def infer(self, blob):
        return self.model(torch.from_numpy(np.ascontiguousarray(blob, dtype=np.float32))).numpy()
