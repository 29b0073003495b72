"""Throughput mode (Detector.stream(inflight=N)): results in input order, at most N requests held."""
import concurrent.futures
import random
import threading
import time

import numpy as np
import pytest

from defectrt.errors import UserInputError
from defectrt.runtime.backend import Backend
from defectrt.runtime.detector import Detector
from defectrt.runtime.throughput import ordered_inflight, split_threads


class _Tagged(Backend):
    """A backend whose output encodes the input frame's tag (its first pixel) as a box's score, and whose
    runner finishes requests in random order, recording how many were in flight at once."""

    name = "tagged"
    imgsz = (64, 64)
    names = {0: "a"}

    def __init__(self):
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0

    def infer(self, blob):
        out = np.zeros((blob.shape[0], 5, 1), np.float32)
        out[:, :4, 0] = [32, 32, 10, 10]
        out[:, 4, 0] = blob[:, 0, 32, 32] * 0.5 + 0.3  # the tag, kept above conf
        return out

    def _slow_infer(self, blob):
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        time.sleep(random.uniform(0, 0.01))
        try:
            return self.infer(blob)
        finally:
            with self.lock:
                self.in_flight -= 1

    def parallel(self, inflight):
        pool = concurrent.futures.ThreadPoolExecutor(inflight * 3)  # more workers than asked: the stream bounds it
        slow = self._slow_infer

        class Runner(object):
            def submit(self, blob):
                return pool.submit(slow, blob)

            def close(self):
                pool.shutdown(wait=True)

        return Runner()


def _frames(n, pulled):
    for i in range(n):
        pulled.append(i)
        img = np.zeros((64, 64, 3), np.uint8)
        img[32, 32] = (0, 0, i)  # BGR: R channel carries the tag; the blob is RGB / 255
        yield img


@pytest.mark.parametrize("inflight", [2, 5])
def test_results_come_in_input_order_and_in_flight_stays_bounded(inflight):
    random.seed(inflight)
    backend = _Tagged()
    det = Detector(backend, conf=0.1)
    pulled = []
    got = []
    for k, dets in enumerate(det.stream(_frames(40, pulled), inflight=inflight)):
        # frames pulled but not yet returned: the N in flight plus the one being submitted
        assert len(pulled) - k <= inflight + 1
        got.append(float(dets.scores[0]))
    want = [np.float32(i / 255.0) * np.float32(0.5) + np.float32(0.3) for i in range(40)]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert backend.max_in_flight <= inflight
    assert backend.max_in_flight >= 2  # requests really overlapped


def test_errors_reach_the_consumer_and_stop_the_stream():
    def submit(item):
        f = concurrent.futures.Future()
        if item == 3:
            f.set_exception(RuntimeError("frame 3 failed"))
        else:
            f.set_result(item)
        return f

    closed = []
    out = []
    with pytest.raises(RuntimeError, match="frame 3"):
        for r in ordered_inflight(range(10), submit, lambda f: f.result(), 2, close=lambda: closed.append(1)):
            out.append(r)
    assert out == [0, 1, 2] and closed == [1]


def test_backend_without_a_throughput_mode_is_a_clear_error():
    class Plain(Backend):
        name = "plain"
        imgsz = (64, 64)
        names = {0: "a"}

        def infer(self, blob):
            return np.zeros((1, 5, 1), np.float32)

    det = Detector(Plain())
    with pytest.raises(UserInputError, match="no throughput mode"):
        list(det.stream([np.zeros((64, 64, 3), np.uint8)], inflight=2))
    assert len(list(det.stream([np.zeros((64, 64, 3), np.uint8)], inflight=1))) == 1


def test_split_threads():
    assert split_threads(8, 2) == 4 and split_threads(1, 4) == 1 and split_threads(None, 1) >= 1


def test_onnxruntime_throughput_mode_matches_single_calls(demo_bundle, screw_image):
    from defectrt.data.synth import generate

    images = [generate("screw", i, seed=4242)[0] for i in range(5)]
    det = Detector(demo_bundle, backend="onnxruntime", threads=2)
    want = [det(img) for img in images]
    got = list(det.stream(images, inflight=2))
    assert [len(d) for d in got] == [len(d) for d in want] and sum(len(d) for d in want) > 0
    for a, b in zip(got, want):
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
    det.close()


def test_next_request_starts_before_the_oldest_is_post_processed():
    """No request slot idles while the caller pre- or post-processes: prepare(next) runs before the wait for
    the oldest, submit(next) right after it is done and before finish(oldest)."""
    events = []

    def prepare(item):
        events.append("prep{}".format(item))
        return item

    def submit(item):
        events.append("sub{}".format(item))
        f = concurrent.futures.Future()
        f.set_result(item)
        return f

    def finish(f):
        events.append("fin{}".format(f.result()))
        return f.result()

    assert list(ordered_inflight(range(4), submit, finish, 2, prepare=prepare)) == [0, 1, 2, 3]
    assert events == ["prep0", "sub0", "prep1", "sub1", "prep2", "sub2", "fin0", "prep3", "sub3", "fin1",
                      "fin2", "fin3"]
