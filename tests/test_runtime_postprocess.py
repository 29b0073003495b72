"""Decode + class-aware NMS against an independent greedy reference; the NMS-in-graph layouts; JSON."""
import json

import numpy as np
import pytest

from defectrt.errors import UserInputError
from defectrt.runtime import nms as nms_mod
from defectrt.runtime.nms import nms
from defectrt.runtime.postprocess import Detections, postprocess
from defectrt.runtime.preprocess import letterbox_info


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _reference(raw_b, conf, iou, max_det):
    """Plain-python torchvision-style greedy NMS, per class, on each anchor's best class."""
    nc, n = raw_b.shape[0] - 4, raw_b.shape[1]
    cand = []
    for a in range(n):
        scores = [float(raw_b[4 + c, a]) for c in range(nc)]
        c = max(range(nc), key=lambda k: scores[k])
        if scores[c] > conf:
            cx, cy, w, h = (float(raw_b[k, a]) for k in range(4))
            cand.append((scores[c], c, (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)))
    cand.sort(key=lambda t: -t[0])
    kept = []
    for s, c, box in cand:
        if all(kc != c or _iou(box, kb) <= iou for _, kc, kb in kept):
            kept.append((s, c, box))
    return kept[:max_det]


def _clustered_raw(seed, batch=2, nc=3, anchors=400, size=(384, 672)):
    rng = np.random.default_rng(seed)
    h, w = size
    raw = np.zeros((batch, 4 + nc, anchors), np.float32)
    for b in range(batch):
        centres = rng.uniform([40, 40], [w - 40, h - 40], size=(12, 2))
        pick = rng.integers(0, 12, anchors)
        raw[b, 0] = centres[pick, 0] + rng.normal(0, 4, anchors)
        raw[b, 1] = centres[pick, 1] + rng.normal(0, 4, anchors)
        raw[b, 2:4] = rng.uniform(10, 60, (2, anchors))
        raw[b, 4:] = rng.uniform(0, 1, (nc, anchors)) ** 3
    return raw


@pytest.fixture(params=["cv2", "numpy"])
def nms_impl(request, monkeypatch):
    """Run a test with each NMS implementation (OpenCV's, and the numpy fallback)."""
    if request.param == "cv2" and not nms_mod.cv2_usable():
        pytest.skip("this OpenCV rounds NMSBoxes boxes to integers; the numpy fallback is used")
    monkeypatch.setattr(nms_mod, "_CV2_OK", request.param == "cv2")
    return request.param


@pytest.mark.parametrize("seed,conf,iou,max_det", [(0, 0.25, 0.45, 300), (1, 0.05, 0.7, 300), (2, 0.1, 0.3, 7)])
def test_decode_and_nms_match_a_plain_greedy_reference(nms_impl, seed, conf, iou, max_det):
    raw = _clustered_raw(seed)
    info = letterbox_info((384, 672), (384, 672))  # identity letterbox: compare in the same pixels
    got = postprocess(raw, [info, info], conf=conf, iou=iou, max_det=max_det, names={0: "a", 1: "b", 2: "c"})
    for b in range(raw.shape[0]):
        ref = _reference(raw[b], conf, iou, max_det)
        assert len(got[b]) == len(ref) > 0
        ref_boxes = np.clip(np.array([r[2] for r in ref]), 0, [672, 384, 672, 384])
        np.testing.assert_allclose(got[b].scores, [r[0] for r in ref], rtol=1e-6)
        np.testing.assert_array_equal(got[b].class_ids, [r[1] for r in ref])
        np.testing.assert_allclose(got[b].boxes, ref_boxes, atol=1e-3)
        assert got[b].names == ["abc"[r[1]] for r in ref]


def test_nms_suppresses_only_above_the_threshold_and_keeps_score_order(nms_impl):
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 12], [20, 20, 30, 30], [0, 0, 10, 20]], np.float32)
    scores = np.array([0.5, 0.9, 0.3, 0.8], np.float32)
    # IoU(1, 0) = 100/120 = 0.833, IoU(1, 3) = 120/200 = 0.6, IoU(0, 3) = 0.5
    assert nms(boxes, scores, 0.6).tolist() == [1, 3, 2]  # 0.6 is not > 0.6: box 3 stays
    assert nms(boxes, scores, 0.59).tolist() == [1, 2]
    assert nms(boxes, scores, 0.9).tolist() == [1, 3, 0, 2]
    assert nms(boxes, scores, 0.9, max_det=2).tolist() == [1, 3]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []
    # fractional coordinates count: rounding to integer rectangles would make these two identical (IoU 1)
    frac = np.array([[0, 0, 10, 10], [0, 0, 10, 10.9]], np.float32)
    assert nms(frac, np.array([0.9, 0.8], np.float32), 0.95).tolist() == [0, 1]


def test_both_nms_implementations_agree_on_many_candidates():
    if not nms_mod.cv2_usable():
        pytest.skip("OpenCV NMS not usable here")
    rng = np.random.default_rng(7)
    xy = rng.uniform(0, 600, (3000, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 80, (3000, 2))], 1)
    scores = rng.uniform(0, 1, 3000).astype(np.float32)
    a = nms(boxes, scores, 0.45, use_cv2=True)
    b = nms(boxes, scores, 0.45, use_cv2=False)
    assert len(a) > 100 and a.tolist() == b.tolist()


def test_classes_restricts_candidates_and_max_det_caps():
    raw = np.zeros((1, 6, 3), np.float32)
    raw[0, :4] = [[50, 150, 250], [50, 50, 50], [20, 20, 20], [20, 20, 20]]
    raw[0, 4] = [0.9, 0.2, 0.8]
    raw[0, 5] = [0.6, 0.7, 0.1]
    info = letterbox_info((100, 300), (100, 300))
    only_dent = postprocess(raw, [info], classes=[1], names={0: "scratch", 1: "dent"})[0]
    assert only_dent.class_ids.tolist() == [1, 1]
    np.testing.assert_allclose(only_dent.scores, [0.7, 0.6])
    top1 = postprocess(raw, [info], max_det=1)[0]
    assert top1.class_ids.tolist() == [0] and top1.names == ["class0"]
    np.testing.assert_allclose(top1.scores, [0.9])
    with pytest.raises(UserInputError, match="2 classes"):
        postprocess(raw, [info], classes=[5])


def test_boxes_are_mapped_back_through_the_letterbox():
    info = letterbox_info((200, 100), (384, 672))  # portrait into landscape: r = 1.92, pad left
    raw = np.zeros((1, 5, 1), np.float32)
    x1, y1, x2, y2 = info.to_input([[10, 20, 60, 150]])[0]
    raw[0, :, 0] = [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1, 0.9]
    det = postprocess(raw, [info])[0]
    np.testing.assert_allclose(det.boxes, [[10, 20, 60, 150]], atol=1e-3)
    assert det.image_shape == (200, 100)


def test_efficient_nms_outputs_are_read_and_mapped_back():
    infos = [letterbox_info((192, 336), (384, 672)), letterbox_info((384, 672), (384, 672))]  # r = 2, identity
    k = 5
    num = np.array([[2], [1]], np.int32)
    boxes = np.full((2, k, 4), 999, np.float32)  # past num_dets: garbage that must be ignored
    scores = np.full((2, k), 0.99, np.float32)
    classes = np.full((2, k), 7, np.int32)
    boxes[0, :2] = [[20, 40, 100, 80], [0, 0, 10, 10]]
    scores[0, :2] = [0.8, 0.2]
    classes[0, :2] = [1, 0]
    boxes[1, 0], scores[1, 0], classes[1, 0] = [1, 2, 3, 4], 0.5, 2
    out = {"num_dets": num, "det_boxes": boxes, "det_scores": scores, "det_classes": classes}
    got = postprocess(out, infos, conf=0.25, names={1: "dent"})
    assert len(got[0]) == 1 and got[0].names == ["dent"]  # 0.2 < conf
    np.testing.assert_allclose(got[0].boxes, [[10, 20, 50, 40]])
    np.testing.assert_allclose(got[1].boxes, [[1, 2, 3, 4]])
    assert got[1].class_ids.tolist() == [2]
    as_list = postprocess([num, boxes, scores, classes], infos, conf=0.25)
    np.testing.assert_array_equal(as_list[0].boxes, got[0].boxes)


def test_onnx_nms_rows_are_grouped_per_image_sorted_and_capped():
    infos = [letterbox_info((384, 672), (384, 672))] * 2
    rows = np.array([[1, 5, 5, 9, 9, 0.4, 0], [0, 1, 1, 2, 2, 0.3, 1], [1, 0, 0, 4, 4, 0.9, 2],
                     [0, 2, 2, 3, 3, 0.8, 0], [1, 1, 1, 3, 3, 0.6, 1]], np.float32)
    got = postprocess({"detections": rows}, infos, conf=0.25, max_det=2)
    np.testing.assert_allclose(got[0].scores, [0.8, 0.3])
    np.testing.assert_allclose(got[1].scores, [0.9, 0.6])
    assert got[1].class_ids.tolist() == [2, 1]


def test_unknown_output_layout_is_a_clear_error():
    with pytest.raises(UserInputError, match="layouts"):
        postprocess({"a": np.zeros(3), "b": np.zeros(3)}, [letterbox_info((8, 8), (8, 8))])


def test_detections_round_trip_through_json_exactly():
    rng = np.random.default_rng(3)
    d = Detections(rng.uniform(0, 500, (4, 4)), rng.uniform(0, 1, 4), [0, 3, 1, 0], ["a", "d", "b", "a"], (480, 640))
    back = Detections.from_dict(json.loads(json.dumps(d.to_dict())))
    np.testing.assert_array_equal(back.boxes, d.boxes)
    np.testing.assert_array_equal(back.scores, d.scores)
    np.testing.assert_array_equal(back.class_ids, d.class_ids)
    assert back.names == d.names and back.image_shape == (480, 640)
    empty = Detections.from_dict(json.loads(Detections.empty((5, 6)).to_json()))
    assert len(empty) == 0 and empty.boxes.shape == (0, 4)
