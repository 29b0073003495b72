"""`TritonDetector`: a Triton-served defectrt model with the `Detector` call signature (Python 3.8, no torch).

    from defectrt.client import TritonDetector
    det = TritonDetector("http://127.0.0.1:8000")        # or grpc://127.0.0.1:8001; model: the only one served
    dets = det(cv2.imread("part.jpg"))                   # Detections, as Detector returns them
    many = det([img1, img2])                             # [Detections]

It talks to `defectrt serve` and to the ensemble of `defectrt export triton` alike (defectrt.serving.protocol).
Images are checked and brought to BGR uint8 here (as the Detector does), so a bad image is refused before it
is sent. `retries` re-sends a request whose connection failed or whose server was restarting (inference is
idempotent); errors about the request itself are never retried. Like a Detector, one TritonDetector is meant
for one thread (tritonclient's HTTP client is not thread-safe); make one per thread.
"""
from __future__ import annotations

import re
import time

import numpy as np

from defectrt.errors import BackendUnavailable, DefectrtError, UserInputError
from defectrt.serving import protocol

SCHEMES = ("http", "grpc")
# Server states a restarting or still-loading server answers with; a retry can succeed after them. gRPC says
# CANCELLED for the requests in flight when the server stops (this client never cancels its own: its time
# limit is DEADLINE_EXCEEDED); seen under load in test_a_server_restart_while_clients_retry_loses_no_good_request.
_TRANSIENT = re.compile(r"unavailable|not ready|unknown model|is not found|stopping|shutting down|connect|reset|"
                        r"refused|broken pipe|timed? ?out|eof|socket|closed|failed to (send|receive)|cancell?ed",
                        re.I)


class ServerError(DefectrtError):
    """The server failed a request for a reason that is not the request's fault (after any retries)."""


def parse_url(url):
    """'http://host:port' | 'grpc://host:port' | 'host:port' (HTTP) -> (scheme, 'host:port')."""
    text = str(url).strip()
    scheme = "http"
    if "://" in text:
        scheme, text = text.split("://", 1)
        scheme = scheme.lower()
    if scheme == "https":
        raise UserInputError("{}: https is not supported by this client; use http:// on a trusted network or a "
                             "TLS-terminating proxy".format(url))
    if scheme not in SCHEMES:
        raise UserInputError("{}: unknown scheme {!r}; use http://HOST:PORT or grpc://HOST:PORT".format(url, scheme))
    text = text.rstrip("/")
    if not re.match(r"^[A-Za-z0-9_.\-\[\]:]+:\d+$", text):
        raise UserInputError("{}: expected HOST:PORT after the scheme, e.g. http://127.0.0.1:8000".format(url))
    return scheme, text


def _server_message(exc):
    """The useful line of a Triton / PyTriton error (PyTriton sends the whole traceback)."""
    text = exc.message() if hasattr(exc, "message") and callable(exc.message) else str(exc)
    text = str(text or exc)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error:" in ln or "error:" in ln:
            return ln.split("Error: ", 1)[-1] if "PyTriton" in ln else ln
    return lines[-1] if lines else type(exc).__name__


class TritonDetector(object):
    """Run a defectrt model served by Triton; `det(img) -> Detections`, `det([img, ...]) -> [Detections]`.

    url: http://HOST:PORT (default port 8000) or grpc://HOST:PORT (8001). model: the model name; None picks the
    one model served whose inputs and outputs are defectrt's. timeout_s: per request. retries / retry_wait_s:
    re-send on connection failures and restarts, at most `retries` times, `retry_wait_s` apart.
    """

    def __init__(self, url, model=None, timeout_s=30.0, retries=0, retry_wait_s=0.5):
        self.url = url
        self.scheme, self.address = parse_url(url)
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.retry_wait_s = float(retry_wait_s)
        if self.timeout_s <= 0 or self.retries < 0 or self.retry_wait_s < 0:
            raise UserInputError("timeout_s must be > 0, retries and retry_wait_s >= 0")
        self._mod = self._import()
        self._client = None
        self.retried = 0  # requests re-sent after a connection failure or restart (for logs and tests)
        self.model = model if model is not None else self._with_retries(self._only_model)

    def _import(self):
        try:
            if self.scheme == "grpc":
                import tritonclient.grpc as mod
            else:
                import tritonclient.http as mod
        except ImportError as exc:
            raise BackendUnavailable("TritonDetector needs tritonclient: pip install 'defectrt[triton]' ({})".format(exc))
        return mod

    def _connect(self):
        if self._client is None:
            if self.scheme == "grpc":
                self._client = self._mod.InferenceServerClient(self.address)
            else:
                self._client = self._mod.InferenceServerClient(self.address, connection_timeout=self.timeout_s,
                                                               network_timeout=self.timeout_s)
        return self._client

    def _drop(self):
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # a broken connection may fail to close; it is dropped either way
                pass

    def _only_model(self):
        client = self._connect()
        # The statistics of all models name every loaded model (`defectrt serve` keeps the repository API closed).
        stats = client.get_inference_statistics("", as_json=True) if self.scheme == "grpc" else \
            client.get_inference_statistics("")
        names = sorted(set(m.get("name") for m in stats.get("model_stats", []) if m.get("name")))
        ready = [n for n in names if client.is_model_ready(n)]
        ours = [n for n in ready if self._is_defectrt_model(client, n)]
        if len(ours) == 1:
            return ours[0]
        if not ours:
            raise UserInputError("{}: no ready defectrt model is served (ready: {}); is the model loaded?".format(
                self.url, ", ".join(ready) or "none"))
        raise UserInputError("{}: several defectrt models are served ({}); pass model=NAME (CLI: --model)".format(
            self.url, ", ".join(sorted(ours))))

    def _is_defectrt_model(self, client, name):
        meta = client.get_model_metadata(name)
        if self.scheme == "grpc":
            inputs = [i.name for i in meta.inputs]
            outputs = [o.name for o in meta.outputs]
        else:
            inputs = [i["name"] for i in meta.get("inputs", [])]
            outputs = [o["name"] for o in meta.get("outputs", [])]
        return inputs == [protocol.IMAGE] and set(protocol.OUTPUTS) <= set(outputs)

    def _with_retries(self, fn, *args):
        from tritonclient.utils import InferenceServerException

        attempt = 0
        while True:
            try:
                return fn(*args)
            except (InferenceServerException, OSError, RuntimeError) as exc:
                message = _server_message(exc)
                status = str(getattr(exc, "status", lambda: "")() or "")
                transient = not isinstance(exc, InferenceServerException) or bool(_TRANSIENT.search(message)) \
                    or "UNAVAILABLE" in status or "CANCELLED" in status
                if not transient:
                    raise UserInputError("{} model {}: the server refused the request: {}".format(
                        self.url, getattr(self, "model", "?"), message))
                self._drop()
                if attempt >= self.retries:
                    raise ServerError("{}: {} (after {} attempt(s)); is `defectrt serve` running there?".format(
                        self.url, message, attempt + 1))
                attempt += 1
                self.retried += 1
                time.sleep(self.retry_wait_s)

    def _infer_one(self, img, shape):
        client = self._connect()
        inp = self._mod.InferInput(protocol.IMAGE, [1] + list(img.shape), "UINT8")
        inp.set_data_from_numpy(img[None])
        if self.scheme == "grpc":
            outs = [self._mod.InferRequestedOutput(k) for k in protocol.OUTPUTS]
            result = client.infer(self.model, [inp], outputs=outs, client_timeout=self.timeout_s)
        else:
            outs = [self._mod.InferRequestedOutput(k, binary_data=True) for k in protocol.OUTPUTS]
            result = client.infer(self.model, [inp], outputs=outs)
        return protocol.unpack({k: result.as_numpy(k) for k in protocol.OUTPUTS}, shape)

    def _one(self, img, what="image"):
        from defectrt.runtime.preprocess import as_bgr

        img = as_bgr(img, what)
        return self._with_retries(self._infer_one, img, img.shape[:2])

    def __call__(self, images):
        if isinstance(images, np.ndarray) or images is None:
            return self._one(images)
        images = list(images)
        return [self._one(img, "image {} of {}".format(i, len(images))) for i, img in enumerate(images)]

    predict = __call__

    def stream(self, frames, inflight=1):
        """Detections for an iterable of frames, in input order, one request per frame.

        inflight > 1 keeps that many requests in flight (one client per worker thread, since a tritonclient is
        not thread-safe), so the server's dynamic batcher can group them; at most `inflight` frames are held.
        """
        inflight = int(inflight or 1)
        if inflight < 1:
            raise UserInputError("inflight={}: must be at least 1".format(inflight))
        if inflight == 1:
            for frame in frames:
                yield self(frame)
            return
        import collections
        import threading
        from concurrent.futures import ThreadPoolExecutor

        local = threading.local()
        clients = []

        def run(frame):
            det = getattr(local, "det", None)
            if det is None:
                det = local.det = TritonDetector(self.url, self.model, self.timeout_s, self.retries, self.retry_wait_s)
                clients.append(det)
            return det(frame)

        pending = collections.deque()
        source = iter(frames)
        more = True
        try:
            with ThreadPoolExecutor(max_workers=inflight) as pool:
                while True:
                    while more and len(pending) < inflight:  # take a frame only when a slot is free
                        frame = next(source, None)
                        if frame is None:
                            more = False
                        else:
                            pending.append(pool.submit(run, frame))
                    if not pending:
                        return
                    yield pending.popleft().result()
        finally:
            for det in clients:
                det.close()

    def statistics(self):
        """Triton's inference statistics of the model: {"batch_sizes": {size: count}, "requests": n, ...}."""
        return batch_statistics(self._with_retries(self._statistics_raw), self.scheme)

    def _statistics_raw(self):
        return self._connect().get_inference_statistics(self.model, as_json=True) if self.scheme == "grpc" else \
            self._connect().get_inference_statistics(self.model)

    def close(self):
        self._drop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "TritonDetector({}, model={})".format(self.url, self.model)


def batch_statistics(stats, scheme="http"):
    """Triton's statistics JSON -> {"batch_sizes": {size: executions}, "executions", "inferences", "requests"}."""
    models = stats.get("model_stats", []) if isinstance(stats, dict) else []
    sizes = {}
    executions = inferences = requests = 0
    for m in models:
        executions += int(m.get("execution_count", 0))
        inferences += int(m.get("inference_count", 0))
        requests += int((m.get("inference_stats", {}).get("success", {}) or {}).get("count", 0))
        for b in m.get("batch_stats", []) or []:
            size = int(b.get("batch_size", 0))
            count = int((b.get("compute_infer", {}) or {}).get("count", 0))
            sizes[size] = sizes.get(size, 0) + count
    return {"batch_sizes": dict(sorted(sizes.items())), "executions": executions, "inferences": inferences,
            "requests": requests}
