"""defectrt: YOLO11 defect detectors from PyTorch to TensorRT / ONNX Runtime on the edge.

The flow is models -> export -> build -> runtime -> bench / capi. Importing this package must stay
cheap and must never import torch: the device side (runtime, bench, capi) runs on Jetsons and line
PCs where torch is absent, under Python 3.8 (JetPack 5).
"""
__version__ = "0.1.0"

__all__ = ["__version__", "Detector"]


def __getattr__(name):
    # Lazy so that `import defectrt` costs nothing and pulls neither onnxruntime nor cv2.
    if name == "Detector":
        from defectrt.runtime.detector import Detector

        return Detector
    raise AttributeError("module 'defectrt' has no attribute {!r}".format(name))
