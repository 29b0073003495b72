"""`export onnx --nms onnx` gives the host path's detections; `--nms trt` has the EfficientNMS_TRT layout."""
import os

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from defectrt import models  # noqa: E402
from defectrt.export.onnx import export_onnx  # noqa: E402
from defectrt.runtime.detector import Detector  # noqa: E402


def _model_with_spread_scores():
    """The shipped demo model when present; else a zoo model whose head outputs vary per anchor (no ties)."""
    demo = os.path.join(os.path.dirname(models.__file__), "..", "demo", "screw.safetensors")
    if os.path.isfile(demo):
        return models.load(demo), "demo:screw"
    torch.manual_seed(0)
    m = models.create("yolo11n-dysample", nc=3).eval()
    for seq in list(m.model[-1].cv3) + list(m.model[-1].cv2):  # scores and box distances vary per anchor
        torch.nn.init.normal_(seq[-1].bias, 0.0, 2.0)
        torch.nn.init.normal_(seq[-1].weight, 0.0, 0.2)
    return m, "yolo11n-dysample (scores spread)"


def _canonical(d):
    """Order by score, then position: untrained models have many tied scores."""
    return np.lexsort((d.class_ids, np.round(d.boxes[:, 1], 1), np.round(d.boxes[:, 0], 1), -np.round(d.scores, 4)))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("nms")
    model, _ = _model_with_spread_scores()
    paths = {}
    for mode in ("none", "onnx", "trt"):
        paths[mode] = str(d / "{}.onnx".format(mode))
        export_onnx(model, paths[mode], imgsz=(192, 320), grid_sample="lowered", nms=mode,
                    nms_conf=0.3, nms_iou=0.5, nms_max_det=100)
    return paths


def test_onnx_nms_variant_equals_host_nms(exported):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in ((240, 400), (401, 299), (192, 320))]
    host = Detector(exported["none"], conf=0.3, iou=0.5, max_det=100)
    graph = Detector(exported["onnx"], conf=0.3, iou=0.5, max_det=100)
    total = 0
    for img in images:
        a, b = host(img), graph(img)
        assert len(a) == len(b)
        total += len(a)
        ia, ib = _canonical(a), _canonical(b)
        np.testing.assert_allclose(a.boxes[ia], b.boxes[ib], atol=1e-3)
        np.testing.assert_allclose(a.scores[ia], b.scores[ib], atol=1e-5)
        np.testing.assert_array_equal(a.class_ids[ia], b.class_ids[ib])
    assert total > 5  # the comparison covered real detections


def test_trt_nms_variant_structure_and_metadata(exported):
    m = onnx.load(exported["trt"])
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta["nms"] == "trt"
    assert [o.name for o in m.graph.output] == ["num_dets", "det_boxes", "det_scores", "det_classes"]
    node = [n for n in m.graph.node if n.op_type == "EfficientNMS_TRT"][0]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["max_output_boxes"] == 100 and abs(attrs["iou_threshold"] - 0.5) < 1e-6
    assert {p.key: p.value for p in onnx.load(exported["onnx"]).metadata_props}["nms"] == "onnx"
