"""A small ordered pipeline: each stage in its own thread, joined by bounded queues.

Used by Detector.stream so that reading / letterboxing frame n+1, inference on frame n and NMS on frame
n-1 overlap (cv2, ONNX Runtime and TensorRT release the GIL). One thread per stage keeps the order
without sequence numbers; bounded queues keep memory flat when the consumer is slow. An exception in
any stage (or in the source iterator) is re-raised in the consumer, and closing the iterator early
stops the threads.
"""
from __future__ import annotations

import queue
import threading

_END = object()


class _Failure(object):
    __slots__ = ("exc",)

    def __init__(self, exc):
        self.exc = exc


def _put(q, item, stop):
    while not stop.is_set():
        try:
            q.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def _get(q, stop):
    while not stop.is_set():
        try:
            return q.get(timeout=0.05)
        except queue.Empty:
            continue
    return _END


def _source(items, out_q, stop):
    try:
        for item in items:
            if not _put(out_q, item, stop):
                return
    except BaseException as exc:  # a failing reader (e.g. a broken video) must reach the consumer
        _put(out_q, _Failure(exc), stop)
        return
    _put(out_q, _END, stop)


def _worker(fn, in_q, out_q, stop):
    while True:
        item = _get(in_q, stop)
        if item is _END or isinstance(item, _Failure):
            _put(out_q, item, stop)
            return
        try:
            result = fn(item)
        except BaseException as exc:
            _put(out_q, _Failure(exc), stop)
            return
        if not _put(out_q, result, stop):
            return


def pipelined(items, stages, maxsize=4):
    """Yield stages[-1](...stages[0](item)) for each item, in order; all but the last stage run in threads."""
    if not stages:
        raise ValueError("pipelined needs at least one stage")
    stop = threading.Event()
    q = queue.Queue(maxsize)
    threads = [threading.Thread(target=_source, args=(iter(items), q, stop), name="defectrt-source", daemon=True)]
    for i, fn in enumerate(stages[:-1]):
        nq = queue.Queue(maxsize)
        threads.append(threading.Thread(target=_worker, args=(fn, q, nq, stop), name="defectrt-stage%d" % i, daemon=True))
        q = nq
    last = stages[-1]
    for t in threads:
        t.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield last(item)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=1.0)
