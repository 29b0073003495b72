"""`defectrt serve` + `TritonDetector` against a real Triton server (PyTriton's tritonserver) on 127.0.0.1.

Every server here is started by ServeProcess and stopped by it; loops are bounded in count and time."""
import http.client
import json
import os
import socket
import threading
import time

import numpy as np
import pytest

from triton_helpers import ServeProcess, build_small_bundle, require_pytriton

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    require_pytriton()
    return {k: build_small_bundle(tmp_path_factory, k, imgsz=SIZES[k]) for k in SIZES}


@pytest.fixture(scope="module")
def server(bundles, tmp_path_factory):
    log = str(tmp_path_factory.mktemp("serve") / "serve.log")
    with ServeProcess(bundles["screw"], extra=["--max-batch", "8", "--queue-delay-us", "3000"], log_path=log) as s:
        yield s


SIZES = {"screw": (192, 320), "pcb": (320, 320)}  # small bundles; the images are rendered at the same size


def _images(kind, n, seed=7):
    from defectrt.data.synth import generate

    return [generate(kind, i, seed=seed, imgsz=SIZES[kind])[0] for i in range(n)]


def _same(a, b, exact=True):
    assert list(a.names) == list(b.names)
    assert np.array_equal(a.class_ids, b.class_ids)
    assert tuple(a.image_shape) == tuple(b.image_shape)
    if exact:
        assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores)
    else:  # a batch of 8 may take other ONNX Runtime kernels than a batch of 1
        assert np.allclose(a.boxes, b.boxes, atol=1e-2) and np.allclose(a.scores, b.scores, atol=1e-4)


def test_detections_equal_the_in_process_detector_on_both_demo_bundles(bundles, server, tmp_path):
    from defectrt.client import TritonDetector
    from defectrt.runtime.detector import Detector

    for kind in ("screw", "pcb"):
        images = _images(kind, 4)
        images.append(np.ascontiguousarray(images[0][10:150, 7:290]))  # and an odd size
        local = Detector(bundles[kind])
        expected = [local(img) for img in images]
        assert sum(len(e) for e in expected) > 0, "the demo images must give detections to compare"
        if kind == "screw":
            srv = server
        else:
            srv = ServeProcess(bundles[kind], log_path=str(tmp_path / "pcb.log")).start()
        try:
            for url in (srv.http, srv.grpc):
                with TritonDetector(url) as remote:
                    assert remote.model == kind
                    for img, exp in zip(images, expected):
                        _same(remote(img), exp)
                    for got, exp in zip(remote(images), expected):
                        _same(got, exp)
        finally:
            if srv is not server:
                srv.stop()


def test_stream_with_requests_in_flight_keeps_input_order(bundles, server):
    """`TritonDetector.stream(frames, inflight=3)` (what `detect --triton --inflight 3` uses): results in input
    order, equal to the in-process Detector's, never more than `inflight` frames taken ahead of the consumer."""
    from defectrt.client import TritonDetector
    from defectrt.runtime.detector import Detector

    images = _images("screw", 9, seed=11)
    expected = [Detector(bundles["screw"])(img) for img in images]
    taken = []

    def frames():
        for i, img in enumerate(images):
            taken.append(i)
            yield img

    with TritonDetector(server.http) as remote:
        for i, got in enumerate(remote.stream(frames(), inflight=3)):
            assert len(taken) <= i + 3  # bounded: at most inflight frames ahead
            _same(got, expected[i])
        assert i == len(images) - 1


def test_eight_clients_two_hundred_requests_each_nothing_lost_and_batches_formed(bundles, server):
    from defectrt.client import TritonDetector
    from defectrt.runtime.detector import Detector

    images = _images("screw", 4)
    local = Detector(bundles["screw"])
    expected = [local(img) for img in images]
    clients, per_client = 8, 200
    results = {}
    errors = []
    with TritonDetector(server.http) as probe:
        before = probe.statistics()

    def client(k):
        url = server.grpc if k % 2 else server.http
        try:
            with TritonDetector(url, timeout_s=60) as det:
                for i in range(per_client):
                    which = (k * 7 + i) % len(images)
                    results[(k, i)] = (which, det(images[which]))
        except Exception as exc:  # recorded, asserted below: a thread's exception would be lost otherwise
            errors.append(repr(exc))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not any(t.is_alive() for t in threads), "clients still running after 300 s"
    assert errors == []
    assert len(results) == clients * per_client
    for (k, i), (which, dets) in results.items():  # each answer is the one for the image that was sent
        _same(dets, expected[which], exact=False)
    with TritonDetector(server.http) as probe:
        stats = probe.statistics()
    done = stats["inferences"] - before["inferences"]
    assert done == clients * per_client
    formed = {b: n - before["batch_sizes"].get(b, 0) for b, n in stats["batch_sizes"].items()}
    assert max(b for b, n in formed.items() if n > 0) > 1, "Triton formed no batch larger than 1: {}".format(formed)
    print("8x200 in {:.1f} s, batches formed {}".format(time.monotonic() - t0, formed))


def _good_request_works(server):
    from defectrt.client import TritonDetector

    with TritonDetector(server.http, timeout_s=30) as det:
        assert isinstance(len(det(_images("screw", 1)[0])), int)


def _post(server, body, headers=None):
    host, port = server.http.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("POST", "/v2/models/screw/infer", body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


def _json_request(shape, datatype, data):
    return json.dumps({"inputs": [{"name": "image", "shape": shape, "datatype": datatype, "data": data}]})


@pytest.mark.parametrize("case", ["wrong dtype", "wrong rank", "wrong channels", "empty image", "garbage bytes",
                                  "garbage binary header", "missing input"])
def test_malformed_requests_get_a_clear_error_and_the_server_keeps_serving(server, case):
    body, headers, words = {
        "wrong dtype": (_json_request([1, 2, 2, 3], "FP32", [0.5] * 12), None, "data-type"),
        "wrong rank": (_json_request([1, 4, 3], "UINT8", [0] * 12), None, "shape"),
        "wrong channels": (_json_request([1, 2, 2, 4], "UINT8", [0] * 16), None, "shape"),
        "empty image": (_json_request([1, 0, 0, 3], "UINT8", []), None, "shape"),
        # not random: 4% of random buffers start with a digit, which the server's JSON parser reads as a
        # complete document ("Unable to parse 'inputs'"); a leading 0xFE never starts JSON
        "garbage bytes": (b"\xfe" + np.random.default_rng(7).bytes(511), None, "parse"),
        "garbage binary header": (b"\x00" * 8 + os.urandom(256), {"Inference-Header-Content-Length": "8"}, ""),
        "missing input": (json.dumps({"inputs": []}), None, "input"),
    }[case]
    status, text = _post(server, body, headers)
    assert status >= 400, "a {} request was answered {}: {}".format(case, status, text)
    assert "error" in text and words.lower() in text.lower(), text
    _good_request_works(server)


def test_a_client_that_disconnects_mid_request_does_not_hurt_the_server(server):
    img = _images("screw", 1)[0]
    header = json.dumps({"inputs": [{"name": "image", "shape": [1] + list(img.shape), "datatype": "UINT8",
                                     "parameters": {"binary_data_size": img.nbytes}}]}).encode()
    host, port = server.http.split("//")[1].split(":")
    for cut in (len(header) // 2, len(header) + img.nbytes // 2, None):
        s = socket.create_connection((host, int(port)), timeout=10)
        payload = header + img.tobytes()
        s.sendall("POST /v2/models/screw/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                  "Inference-Header-Content-Length: {}\r\nContent-Length: {}\r\n\r\n".format(
                      len(header), len(payload)).encode())
        s.sendall(payload[:cut] if cut is not None else payload)  # None: the whole request, then hang up
        s.close()
        _good_request_works(server)


def test_a_server_restart_while_clients_retry_loses_no_good_request(bundles, tmp_path):
    from defectrt.client import TritonDetector
    from defectrt.runtime.detector import Detector

    images = _images("screw", 2, seed=21)
    local = Detector(bundles["screw"])
    expected = [local(img) for img in images]
    srv = ServeProcess(bundles["screw"], log_path=str(tmp_path / "restart.log")).start()
    clients, after_restart, cap = 4, 10, 2000
    results, errors, retried = {}, [], []
    restarted = threading.Event()

    def client(k):
        # Sends without pause through the stop and the start, then `after_restart` more; bounded by `cap`.
        try:
            with TritonDetector(srv.grpc if k % 2 else srv.http, timeout_s=30, retries=400, retry_wait_s=0.1) as det:
                i = after = 0
                while after < after_restart and i < cap:
                    results[(k, i)] = det(images[(k + i) % 2])
                    i += 1
                    after += restarted.is_set()
                retried.append(det.retried)
        except Exception as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while min([len([1 for (c, _) in list(results) if c == k]) for k in range(clients)]) < 3 \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        srv.stop()
        srv.start()  # the same ports
        restarted.set()
        for t in threads:
            t.join(240)
    finally:
        restarted.set()
        srv.stop()
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert sum(retried) > 0, "no client saw the restart: the test did not test it"
    sent = {k: len([1 for (c, _) in results if c == k]) for k in range(clients)}
    assert all(after_restart < n < cap for n in sent.values()), sent
    assert sorted(results) == sorted((k, i) for k in range(clients) for i in range(sent[k]))  # none missing
    for (k, i), dets in results.items():
        _same(dets, expected[(k + i) % 2], exact=False)


def test_detect_and_bench_commands_with_triton(bundles, server, tmp_path, capsys):
    import cv2

    from defectrt.cli import main
    from defectrt.runtime.detector import Detector

    img = _images("screw", 1)[0]
    path = str(tmp_path / "part.png")
    cv2.imwrite(path, img)
    assert main(["detect", path, "--triton", server.grpc, "--json"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    expected = Detector(bundles["screw"])(cv2.imread(path)).to_dict()
    assert line["detections"] == expected["detections"] and line["image_shape"] == expected["image_shape"]

    out = str(tmp_path / "bench.json")
    assert main(["bench", "--triton", server.http, "--clients", "1,3", "--requests", "6", "--imgsz", "192", "320",
                 "--json", out]) == 0
    with open(out) as f:
        report = json.load(f)
    assert [r["clients"] for r in report["rounds"]] == [1, 3] and report["model"] == "screw"
    for r in report["rounds"]:
        assert r["ok"] == r["requests"] == 6 * r["clients"] and r["errors"] == 0
        assert r["latency_ms"]["count"] == r["ok"] and r["latency_ms"]["p99"] >= r["latency_ms"]["median"] > 0
        assert sum(b * n for b, n in ((int(k), v) for k, v in r["batches"]["sizes"].items())) >= r["ok"]
