"""Throughput mode: N requests in flight, results in input order, memory bounded by N.

`ordered_inflight` is the loop Detector.stream(inflight=N) runs: it pulls a frame, submits it (the backend's
runner returns at once with a future), and once N are pending it waits for the oldest, so results leave in
input order and never more than N frames (blobs, outputs) are held. Pre-processing of the next frame and
post-processing of the oldest run in the caller's thread while the N inferences run in the backend's
threads (OpenVINO's own, or the worker threads of `ThreadedRunner`).
"""
from __future__ import annotations

import collections
import concurrent.futures
import os
import queue


def ordered_inflight(items, submit, finish, inflight, close=None, prepare=None):
    """Yield finish(submit(prepare(item))) for each item in order, with at most `inflight` requests running.

    Once `inflight` are pending, the next item is prepared (pre-processed) *before* waiting for the oldest
    request, and submitted as soon as that one is done, *before* it is finished (post-processed): so no
    request slot stands idle while the caller's thread pre- or post-processes (with the plain order, finish
    then prepare and submit, a slot waited ~1.5 ms per frame for it: 10% of an INT8 request on OpenVINO)."""
    if inflight < 1:
        raise ValueError("inflight must be at least 1")
    pending = collections.deque()
    try:
        for item in items:
            ready = prepare(item) if prepare is not None else item
            if len(pending) >= inflight:
                oldest = pending.popleft()
                concurrent.futures.wait([_future(oldest)])  # done (or failed: finish raises it)
                pending.append(submit(ready))
                yield finish(oldest)
            else:
                pending.append(submit(ready))
        while pending:
            yield finish(pending.popleft())
    finally:
        concurrent.futures.wait([_future(p) for p in pending])  # abandoned early (or failed): let them end
        if close is not None:
            close()


def _future(pending):
    """submit() returns a Future, or a tuple whose first item is one (Detector: (future, letterbox infos))."""
    return pending[0] if isinstance(pending, tuple) else pending


def split_threads(threads, inflight):
    """Intra-op threads per worker when `threads` (None: all cores) are shared by `inflight` workers."""
    total = int(threads) if threads else (os.cpu_count() or 1)
    return max(1, total // int(inflight))


class ThreadedRunner(object):
    """submit(blob) -> Future of backend.infer(blob), over `inflight` backends on as many worker threads.

    `make_backend()` builds one backend per worker (e.g. an ONNX Runtime session with its share of the
    threads): a session each, so no two runs contend for one session's thread pool.
    """

    def __init__(self, make_backend, inflight):
        self.backends = [make_backend() for _ in range(int(inflight))]
        self.idle = queue.Queue()
        for b in self.backends:
            self.idle.put(b)
        self.pool = concurrent.futures.ThreadPoolExecutor(int(inflight), thread_name_prefix="defectrt-infer")

    def _run(self, blob):
        backend = self.idle.get()
        try:
            return backend.infer(blob)
        finally:
            self.idle.put(backend)

    def submit(self, blob):
        return self.pool.submit(self._run, blob)

    def close(self):
        self.pool.shutdown(wait=True)
        for b in self.backends:
            close = getattr(b, "close", None)
            if close is not None:
                close()
        self.backends = []
