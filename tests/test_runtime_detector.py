"""Detector over ONNX Runtime and backend objects: exact boxes, batching, stream order and errors."""
import threading
import time

import numpy as np
import pytest

from defectrt import Detector
from defectrt.errors import RuntimeFailure, UserInputError
from defectrt.runtime.backend import Backend
from test_runtime_models import draw_rect, rect_finder, save


@pytest.fixture(scope="module")
def rf_path(tmp_path_factory):
    return save(rect_finder(), tmp_path_factory.mktemp("m") / "rf.onnx")


@pytest.fixture(scope="module")
def det(rf_path):
    return Detector(rf_path, threads=1)


# (h0, w0, x1, y1, x2, y2): landscape, portrait, odd, down- and up-scaled, identity
RECTS = [(333, 517, 101, 57, 300, 211), (517, 333, 20, 301, 313, 480), (1001, 1999, 1500, 3, 1990, 997),
         (97, 61, 3, 40, 58, 47), (384, 672, 0, 0, 671, 383), (200, 900, 450, 10, 461, 190)]


@pytest.mark.parametrize("h0,w0,x1,y1,x2,y2", RECTS)
def test_a_rendered_rectangle_is_found_again_in_original_pixels(det, h0, w0, x1, y1, x2, y2):
    dets = det(draw_rect(h0, w0, x1, y1, x2, y2))
    assert dets.names == ["scratch", "dent"]  # the shifted same-class box was suppressed, the other class kept
    np.testing.assert_allclose(dets.scores, [0.9, 0.7], rtol=1e-6)
    r = min(384 / h0, 672 / w0)
    # The bright region is thresholded at 0.5 on the resized image: its edges are known to one resized pixel.
    tol = 1.0 / r + 1e-3
    for box in dets.boxes:
        assert np.all(np.abs(box - [x1, y1, x2, y2]) <= tol), (box, (x1, y1, x2, y2), tol)
    assert dets.image_shape == (h0, w0)


def test_a_list_gives_a_list_and_matches_single_calls(det):
    imgs = [draw_rect(*r) for r in RECTS]
    batched = det(imgs)
    assert isinstance(batched, list) and len(batched) == len(imgs)
    for img, got in zip(imgs, batched):
        single = det(img)
        np.testing.assert_allclose(got.boxes, single.boxes, atol=1e-4)
    assert det([]) == []


def test_fixed_batch_models_get_chunks_padded_to_their_batch(tmp_path):
    path = save(rect_finder(batch=2), tmp_path / "b2.onnx")
    det = Detector(path, threads=1)
    assert det.batch == 2 and det.max_batch == 2
    imgs = [draw_rect(*r) for r in RECTS[:3]]  # 3 images -> chunks of 2 and 1 (padded)
    got = det(imgs)
    assert len(got) == 3
    for img, d in zip(imgs, got):
        np.testing.assert_allclose(d.boxes, det(img).boxes, atol=1e-4)
        assert len(d) == 2


def test_dynamic_input_size_needs_imgsz_metadata_or_argument(tmp_path):
    bare = save(rect_finder(dynamic_hw=True, metadata=False), tmp_path / "dyn.onnx")
    with pytest.raises(UserInputError) as exc:
        Detector(bare)
    assert "dyn.onnx" in str(exc.value) and "imgsz" in str(exc.value)
    det = Detector(bare, imgsz=(320, 320))
    assert det.imgsz == (320, 320) and det.names == {0: "class0", 1: "class1"}
    d = det(draw_rect(100, 100, 10, 20, 50, 60))
    np.testing.assert_allclose(d.boxes[0], [10, 20, 50, 60], atol=1.0)
    with_meta = save(rect_finder(dynamic_hw=True, imgsz_meta=(256, 320)), tmp_path / "dynm.onnx")
    assert Detector(with_meta).imgsz == (256, 320)


def test_explicit_imgsz_that_contradicts_a_fixed_input_is_refused(rf_path):
    with pytest.raises(UserInputError, match="fixed input of 384x672"):
        Detector(rf_path, imgsz=640)


@pytest.mark.parametrize("content,words", [(b"not an onnx model at all", ["bad.onnx", "cannot load"]),
                                           (b"", ["bad.onnx"])])
def test_corrupt_onnx_file_is_named_in_the_error(tmp_path, content, words):
    p = tmp_path / "bad.onnx"
    p.write_bytes(content)
    with pytest.raises(UserInputError) as exc:
        Detector(str(p))
    for w in words:
        assert w in str(exc.value)


def test_model_path_errors(tmp_path, rf_path):
    with pytest.raises(UserInputError, match="no such model"):
        Detector(str(tmp_path / "missing.onnx"))
    (tmp_path / "w.txt").write_text("x")
    with pytest.raises(UserInputError, match="unknown model type"):
        Detector(str(tmp_path / "w.txt"))
    with pytest.raises(UserInputError, match="build an engine"):
        Detector(rf_path, backend="tensorrt")
    with pytest.raises(UserInputError, match="backend 'gpu'"):
        Detector(rf_path, backend="gpu")
    with pytest.raises(UserInputError, match="conf=1.5"):
        Detector(rf_path, conf=1.5)
    with pytest.raises(UserInputError, match="demo:nothing"):
        Detector("demo:nothing")


class IndexBackend(Backend):
    """A backend object: frame i (all pixels = i) -> one box at x = i, after a random delay."""

    name = "fake"
    imgsz = (64, 64)
    names = {0: "mark"}

    def __init__(self, delay=0.0, fail_on=None):
        self.delay, self.fail_on, self.calls = delay, fail_on, 0
        self.rng = np.random.default_rng(0)

    def infer(self, blob):
        self.calls += 1
        if self.delay:
            time.sleep(self.rng.uniform(0, self.delay))
        out = np.zeros((blob.shape[0], 5, 1), np.float32)
        for b in range(blob.shape[0]):
            i = int(round(float(blob[b, 0, 32, 32]) * 255))
            if i == self.fail_on:
                raise RuntimeError("backend failed on frame {}".format(i))
            out[b, :, 0] = [i + 2, 10, 4, 4, 0.9]
        return out


def _frames(n):
    return [np.full((64, 64, 3), i % 50, np.uint8) for i in range(n)]


def test_backend_objects_run_through_the_same_pre_and_post():
    det = Detector(IndexBackend())
    d = det(_frames(5)[3])
    assert det.backend_name == "fake" and "fake" in det.backend_reason
    np.testing.assert_allclose(d.boxes, [[3, 8, 7, 12]])
    assert d.names == ["mark"]


def test_stream_keeps_order_under_random_delays():
    det = Detector(IndexBackend(delay=0.005))
    xs = [float(d.boxes[0, 0]) for d in det.stream(_frames(40), maxsize=2)]
    assert xs == [float(i) for i in range(40)]


def test_stream_propagates_backend_and_input_errors_and_stops_its_threads():
    before = threading.active_count()
    det = Detector(IndexBackend(fail_on=4))
    seen = []
    with pytest.raises(RuntimeFailure, match="frame 4"):  # the backend's RuntimeError, named as a RuntimeFailure
        for d in det.stream(_frames(10)):
            seen.append(d)
    assert len(seen) == 4
    frames = _frames(6)
    frames[2] = None
    with pytest.raises(UserInputError, match="None"):
        list(Detector(IndexBackend()).stream(frames))

    def broken_reader():
        yield _frames(1)[0]
        raise IOError("camera unplugged")

    with pytest.raises(IOError, match="unplugged"):
        list(det.stream(broken_reader()))
    it = det.stream(_frames(1000))
    next(it)
    it.close()  # an early stop must not leave threads behind
    deadline = time.time() + 3
    while threading.active_count() > before and time.time() < deadline:
        time.sleep(0.02)
    assert threading.active_count() <= before


def test_blobs_are_padded_up_to_the_smallest_batch_the_backend_accepts():
    class MinTwo(IndexBackend):
        min_batch = 2

        def infer(self, blob):
            assert blob.shape[0] >= 2, blob.shape
            return IndexBackend.infer(self, blob)

    det = Detector(MinTwo())
    np.testing.assert_allclose(det(_frames(4)[3]).boxes, [[3, 8, 7, 12]])
    assert [float(d.boxes[0, 0]) for d in det(_frames(3))] == [0.0, 1.0, 2.0]


def test_a_backend_object_must_implement_the_protocol():
    class Duck(object):  # has infer, but is no Backend: refused with what to do, not probed
        name, imgsz, names = "duck", (64, 64), {}

        def infer(self, blob):
            return np.zeros((1, 5, 1), np.float32)

    with pytest.raises(UserInputError, match="subclasses defectrt.runtime.backend.Backend"):
        Detector(Duck())
    be = IndexBackend()
    assert be.batch_range() == (1, None) and be.runs_on_host and not be.offers_stage_timing
    assert be.input_info()[0].shape == (None, 3, 64, 64) and be.parallel(2) is None
    with pytest.raises(UserInputError, match="cuda-graph"):
        be.enable_cuda_graph()


def test_the_stage_timing_hook_sees_every_stage_of_a_call():
    det = Detector(IndexBackend(delay=0.004))
    seen = []
    det.stage_hook = lambda stage, ms: seen.append((stage, ms))
    det([np.zeros((64, 64, 3), np.uint8)] * 2)
    assert [s for s, _ in seen] == ["preprocess", "infer", "postprocess"] and all(ms >= 0 for _, ms in seen)
    det.stage_hook = None
    det(np.zeros((64, 64, 3), np.uint8))
    assert len(seen) == 3


def test_onnxruntime_describes_its_tensors(rf_path):
    be = Detector(rf_path, threads=1).backend
    (inp,) = be.input_info()
    assert inp.name == "images" and inp.shape[1] == 3 and inp.dtype == "float32"
    outs = be.output_info()
    assert len(outs) == 1 and len(outs[0].shape) == 3 and outs[0].dtype == "float32"
    assert be.batch_range()[0] >= 1 and be.runs_on_host
