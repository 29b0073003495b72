"""The runtime gives the PyTorch model's detections: same letterbox, same NMS, only the network differs.

On the shipped demo model (`demo:screw`) and synthetic screw images, through ONNX Runtime with the
grid-sample kept native and lowered: matched boxes IoU > 0.99, same classes, scores within 1e-3.
"""
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from box_helpers import pairwise_iou  # noqa: E402
from defectrt import models  # noqa: E402
from defectrt.data.synth import generate  # noqa: E402
from defectrt.export.onnx import export_onnx  # noqa: E402
from defectrt.models.torch_backend import TorchBackend  # noqa: E402
from defectrt.runtime.detector import Detector  # noqa: E402

DEMO = os.path.join(os.path.dirname(models.__file__), "..", "demo", "screw.safetensors")
IMGSZ = (384, 672)


def _model():
    if os.path.isfile(DEMO):
        return models.load(DEMO)
    pytest.skip("demo:screw is not shipped in this checkout")


@pytest.mark.parametrize("mode", ["native", "lowered"])
def test_onnxruntime_gives_the_pytorch_detections(tmp_path, mode):
    model = _model()
    path = str(tmp_path / "m.onnx")
    export_onnx(model, path, imgsz=IMGSZ, grid_sample=mode)
    ref = Detector(TorchBackend(model, imgsz=IMGSZ), conf=0.25, iou=0.45)
    ort = Detector(path, conf=0.25, iou=0.45)
    matched = 0
    for index in range(4):
        image, _ = generate("screw", index, seed=4242)
        a, b = ref(image), ort(image)
        assert len(a) == len(b)
        if not len(a):
            continue
        iou = pairwise_iou(a.boxes, b.boxes)
        j = iou.argmax(1)
        assert (iou[np.arange(len(a)), j] > 0.99).all()
        np.testing.assert_array_equal(a.class_ids, b.class_ids[j])
        np.testing.assert_allclose(a.scores, b.scores[j], atol=1e-3)
        matched += len(a)
    assert matched > 0  # the demo model finds defects on these images
