"""`defectrt export triton` / `export deepstream`: every config.pbtxt parses into tritonclient's ModelConfig, the
repository is refused over a folder we did not write, and its models load in PyTriton's real tritonserver
(the Python-backend steps; that binary has no ONNX Runtime backend, which the test checks and says)."""
import contextlib
import json
import os
import shutil
import signal
import time
import urllib.request

import numpy as np
import pytest

from triton_helpers import build_small_bundle, free_ports, require_pytriton

SIZE = (192, 320)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    pytest.importorskip("tritonclient.grpc")
    return build_small_bundle(tmp_path_factory, "screw", imgsz=SIZE)


def _export(bundle, out, **kw):
    from defectrt.serving.repository import export_repository

    return export_repository(bundle, str(out), **kw)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_every_config_parses_into_model_config_and_matches_the_bundle(bundle, tmp_path, backend):
    import onnx
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    info = _export(bundle, tmp_path / "repo", name="screw", max_batch=4, instances=2, backend=backend)
    models = sorted(d for d in os.listdir(str(tmp_path / "repo")) if os.path.isdir(str(tmp_path / "repo" / d)))
    assert models == sorted(info["models"]) == ["screw", "screw_model", "screw_postprocess", "screw_preprocess"]
    cfgs = {}
    for m in models:
        with open(str(tmp_path / "repo" / m / "config.pbtxt")) as f:
            cfgs[m] = text_format.Parse(f.read(), model_config_pb2.ModelConfig())
        assert cfgs[m].name == m and cfgs[m].max_batch_size == 4
    net = onnx.load(os.path.join(bundle, "model.onnx"), load_external_data=False)
    inp, out = net.graph.input[0], net.graph.output[0]
    model = cfgs["screw_model"]
    assert model.backend == backend and model.default_model_filename == "model.onnx"
    assert [i.name for i in model.input] == [inp.name] and [o.name for o in model.output] == [out.name]
    assert list(model.input[0].dims) == [3, SIZE[0], SIZE[1]]
    assert model.input[0].data_type == model_config_pb2.TYPE_FP32
    assert list(model.output[0].dims) == [d.dim_value for d in out.type.tensor_type.shape.dim][1:]
    assert model.instance_group[0].count == 2 and model.dynamic_batching is not None
    assert os.path.isfile(str(tmp_path / "repo" / "screw_model" / "1" / "model.onnx"))
    ens = cfgs["screw"]
    assert ens.platform == "ensemble" and [s.model_name for s in ens.ensemble_scheduling.step] == [
        "screw_preprocess", "screw_model", "screw_postprocess"]
    post = cfgs["screw_postprocess"]
    with open(os.path.join(bundle, "manifest.json")) as f:
        manifest = json.load(f)
    assert json.loads(post.parameters["names"].string_value) == manifest["names"]
    assert float(post.parameters["conf"].string_value) == manifest["thresholds"]["conf"]


def test_a_broken_config_is_refused_by_the_exporters_check():
    pytest.importorskip("tritonclient.grpc")  # the check parses with tritonclient's protobuf (a user's clone may lack it)
    from defectrt.errors import UserInputError
    from defectrt.serving.repository import check_configs, parse_config

    with pytest.raises(UserInputError, match="does not parse"):
        parse_config('name: "x" max_batch_size: "eight"')
    good = 'name: "a" backend: "python" max_batch_size: 2 input [ { name: "i" data_type: TYPE_FP32 dims: [ 1 ] } ]'
    bad_wiring = ('name: "e" platform: "ensemble" max_batch_size: 2 input [ { name: "i" data_type: TYPE_FP32 '
                  'dims: [ 1 ] } ] ensemble_scheduling { step [ { model_name: "a" model_version: -1 '
                  'input_map { key: "nope" value: "i" } } ] }')
    with pytest.raises(UserInputError, match="no input nope"):
        check_configs({"a": good, "e": bad_wiring})


def test_the_repository_never_replaces_a_folder_we_did_not_write(bundle, tmp_path):
    from defectrt.errors import OutputExistsError, UserInputError

    mine = tmp_path / "users"
    mine.mkdir()
    (mine / "precious.txt").write_text("keep")
    with pytest.raises(OutputExistsError):
        _export(bundle, mine)
    with pytest.raises(UserInputError, match="not a repository written by"):
        _export(bundle, mine, force=True)
    assert (mine / "precious.txt").read_text() == "keep"
    _export(bundle, tmp_path / "repo")
    _export(bundle, tmp_path / "repo", force=True, max_batch=2)  # ours: replaced
    with open(str(tmp_path / "repo" / "defectrt_repository.json")) as f:
        assert json.load(f)["max_batch"] == 2
    # A file the user added inside our repository is theirs: --force refuses and it survives.
    (tmp_path / "repo" / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="notes.txt"):
        _export(bundle, tmp_path / "repo", force=True)
    assert (tmp_path / "repo" / "notes.txt").read_text() == "mine"


def test_tensorrt_needs_an_engine_and_a_fitting_batch(bundle, tmp_path):
    from defectrt.errors import UserInputError

    with pytest.raises(UserInputError, match="no TensorRT engine"):
        _export(bundle, tmp_path / "r", backend="tensorrt")


def test_deepstream_config_has_the_bundles_preprocessing(bundle, tmp_path):
    from defectrt.export.deepstream import write_for_bundle

    config, labels = write_for_bundle(bundle, str(tmp_path))
    text = open(config).read()
    keys = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    assert abs(float(keys["net-scale-factor"]) - 1 / 255.0) < 1e-9
    assert keys["offsets"] == "0;0;0" and keys["model-color-format"] == "0"
    assert keys["maintain-aspect-ratio"] == "1" and keys["symmetric-padding"] == "1"
    assert keys["infer-dims"] == "3;{};{}".format(*SIZE) and keys["num-detected-classes"] == "4"
    assert keys["onnx-file"] == os.path.join(os.path.abspath(bundle), "model.onnx")
    assert "UNVERIFIED ON HARDWARE" in text
    assert open(labels).read().split() == ["scratch", "dent", "coating", "unprocessed"]


def _wait_ready(port, models, proc, timeout_s=120):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "tritonserver exited with {}".format(proc.returncode)
        try:
            if all(urllib.request.urlopen("http://127.0.0.1:{}/v2/models/{}/ready".format(port, m), timeout=2).status
                   == 200 for m in models):
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise AssertionError("models {} not ready after {} s".format(models, timeout_s))


@contextlib.contextmanager
def _tritonserver(repo, load, log):
    """PyTriton's tritonserver on `repo` (this checkout's defectrt in its Python backend); always stopped."""
    from defectrt.serving import tritonserver

    ports = free_ports(3)
    env_backup = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    try:
        proc, scratch = tritonserver.launch(str(repo), ports, load=load, log_file=log)
    finally:
        if env_backup is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = env_backup
    try:
        yield ports, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except Exception:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.mark.slow
def test_the_repository_loads_in_the_real_tritonserver_and_its_steps_equal_the_detector(bundle, tmp_path):
    require_pytriton()
    import tritonclient.http as th

    from defectrt.client import TritonDetector
    from defectrt.data.synth import generate
    from defectrt.runtime.detector import Detector
    from defectrt.serving import protocol, tritonserver

    _export(bundle, tmp_path / "repo", name="screw", max_batch=4)
    with _tritonserver(tmp_path / "repo", ["screw_preprocess", "screw_postprocess"], str(tmp_path / "ts.log")) as (
            ports, proc):
        _check_python_steps(bundle, ports, proc)


def _check_python_steps(bundle, ports, proc):
    import tritonclient.http as th

    from defectrt.client import TritonDetector
    from defectrt.data.synth import generate
    from defectrt.runtime.detector import Detector
    from defectrt.serving import protocol

    client = None
    try:
        _wait_ready(ports[0], ["screw_preprocess", "screw_postprocess"], proc)
        client = th.InferenceServerClient("127.0.0.1:{}".format(ports[0]))
        # The network step: loaded where the server has an ONNX Runtime backend; PyTriton's has none.
        try:
            client.load_model("screw_model")
            ort_backend = True
        except Exception as exc:
            assert "onnxruntime" in str(exc), str(exc)
            ort_backend = False
            print("PyTriton's tritonserver has no onnxruntime backend ({}): the network step runs in ONNX Runtime "
                  "here, the ensemble's Python-backend steps on the server".format(str(exc)[:200]))
        local = Detector(bundle)
        import onnxruntime as ort

        sess = ort.InferenceSession(os.path.join(bundle, "model.onnx"), providers=["CPUExecutionProvider"])
        for i in range(3):
            img = generate("screw", i, seed=7, imgsz=SIZE)[0]
            if i == 2:
                img = np.ascontiguousarray(img[5:150, 3:300])
            inp = th.InferInput("image", [1] + list(img.shape), "UINT8")
            inp.set_data_from_numpy(img[None])
            pre = client.infer("screw_preprocess", [inp])
            blob, shape = pre.as_numpy("images"), pre.as_numpy("orig_shape")
            expected_blob, _ = local.preprocess([img])
            assert np.array_equal(blob, expected_blob) and shape.tolist() == [list(img.shape[:2])]
            raw = sess.run(None, {sess.get_inputs()[0].name: blob})[0]
            a = th.InferInput("output0", list(raw.shape), "FP32")
            a.set_data_from_numpy(raw)
            b = th.InferInput("orig_shape", list(shape.shape), "INT32")
            b.set_data_from_numpy(shape)
            post = client.infer("screw_postprocess", [a, b])
            got = protocol.unpack({k: post.as_numpy(k)[0] for k in protocol.OUTPUTS}, img.shape[:2])
            exp = local(img)
            assert got.names == exp.names and np.array_equal(got.boxes, exp.boxes)
            assert np.array_equal(got.scores, exp.scores)
            if ort_backend:
                client.load_model("screw")
                with TritonDetector("http://127.0.0.1:{}".format(ports[0]), model="screw") as det:
                    remote = det(img)
                assert remote.names == exp.names and np.allclose(remote.boxes, exp.boxes, atol=1e-3)
        bad = th.InferInput("image", [1, 0, 0, 3], "UINT8")
        bad.set_data_from_numpy(np.zeros((1, 0, 0, 3), np.uint8))
        with pytest.raises(Exception, match="expected|shape|empty"):
            client.infer("screw_preprocess", [bad])
        assert client.is_model_ready("screw_preprocess")
    finally:
        if client is not None:
            client.close()


def test_a_bundle_that_gets_an_engine_gets_the_deepstream_files_beside_it(bundle, tmp_path, monkeypatch):
    """TensorRT is absent here: build_engine is replaced by one that writes a file, to reach the one call."""
    from defectrt.export import bundle as export_bundle
    from defectrt.export import engine as engine_mod
    from defectrt.runtime.bundle import read_manifest

    copy = str(tmp_path / "b.bundle")
    shutil.copytree(bundle, copy)

    def fake_build(onnx_path, engine_path, **kw):
        open(engine_path, "wb").write(b"not a real engine")
        return {"file": "model.engine", "tensorrt_version": "10.3.0"}

    monkeypatch.setattr(engine_mod, "build_engine", fake_build)
    monkeypatch.setattr(engine_mod, "import_tensorrt", lambda: object())
    export_bundle.add_engine(copy)
    manifest = read_manifest(copy)  # the new files are hashed with the rest
    assert {"deepstream_nvinfer.txt", "labels.txt", "model.engine"} <= set(manifest["files"])
    text = open(os.path.join(copy, "deepstream_nvinfer.txt")).read()
    assert "model-engine-file=model.engine" in text and "onnx-file=model.onnx" in text


def test_the_client_side_imports_without_torch():
    import subprocess
    import sys

    code = ("import sys\n"
            "class B(object):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'torch' or name.startswith('torch.'):\n"
            "            raise ImportError('torch blocked')\n"
            "sys.meta_path.insert(0, B())\n"
            "import defectrt.client, defectrt.serving.protocol, defectrt.bench.concurrency, defectrt.export.deepstream\n"
            "import defectrt.serving.repository, defectrt.cli\n"
            "assert 'torch' not in sys.modules\n"
            "assert defectrt.client.parse_url('grpc://127.0.0.1:8001') == ('grpc', '127.0.0.1:8001')\n"
            "print('ok')\n")
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=src), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@pytest.mark.parametrize("url, words", [("https://h:1", "https"), ("ftp://h:1", "scheme"), ("http://h", "HOST:PORT")])
def test_bad_urls_are_named(url, words):
    from defectrt.client import parse_url
    from defectrt.errors import UserInputError

    with pytest.raises(UserInputError, match=words):
        parse_url(url)


@pytest.mark.slow
def test_the_whole_ensemble_with_the_python_network_step_serves_detections_equal_to_the_detector(bundle, tmp_path):
    """--backend python runs on the Python backend alone: the full ensemble, image in, detections out."""
    require_pytriton()
    import threading

    from defectrt.client import TritonDetector
    from defectrt.data.synth import generate
    from defectrt.runtime.detector import Detector
    from defectrt.serving import tritonserver

    _export(bundle, tmp_path / "repo", name="screw", max_batch=4, backend="python")
    models = ["screw_preprocess", "screw_model", "screw_postprocess", "screw"]
    with _tritonserver(tmp_path / "repo", models, str(tmp_path / "ts.log")) as (ports, proc):
        _check_whole_ensemble(bundle, ports, proc)


def _check_whole_ensemble(bundle, ports, proc):
    import threading

    from defectrt.client import TritonDetector
    from defectrt.data.synth import generate
    from defectrt.runtime.detector import Detector

    _wait_ready(ports[0], ["screw"], proc)
    local = Detector(bundle)
    images = [generate("screw", i, seed=7, imgsz=SIZE)[0] for i in range(3)]
    images.append(np.ascontiguousarray(images[0][9:170, 1:250]))
    expected = [local(img) for img in images]
    url = "http://127.0.0.1:{}".format(ports[0])
    with TritonDetector(url) as det:
        assert det.model == "screw"
        for img, exp in zip(images, expected):
            got = det(img)
            assert got.names == exp.names and np.array_equal(got.boxes, exp.boxes)
            assert np.array_equal(got.scores, exp.scores)
    results, errors = {}, []

    def client(k):
        try:
            with TritonDetector("grpc://127.0.0.1:{}".format(ports[1]), model="screw") as det:
                for i in range(12):
                    results[(k, i)] = det(images[(k + i) % 3])
        except Exception as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == [] and len(results) == 48
    for (k, i), got in results.items():
        exp = expected[(k + i) % 3]
        assert got.names == exp.names and np.allclose(got.boxes, exp.boxes, atol=1e-2)
    with TritonDetector(url, model="screw_model") as raw:
        sizes = raw.statistics()["batch_sizes"]
    assert sum(b * n for b, n in sizes.items()) == 4 + 48  # every image went through the network once


def test_protocol_round_trip_padding_and_image_checks():
    from defectrt.errors import UserInputError
    from defectrt.runtime.postprocess import Detections
    from defectrt.serving import protocol

    a = Detections([[1, 2, 3, 4], [5, 6, 7, 8]], [0.9, 0.5], [1, 0], ["dent", "scratch"], (10, 20))
    b = Detections.empty((10, 20))
    packed = protocol.pack([a, b])
    assert packed["boxes"].shape == (2, 2, 4) and packed["count"].ravel().tolist() == [2, 0]
    assert protocol.pack([b])["boxes"].shape == (1, 1, 4)  # never an empty tensor: PyTriton cannot send one
    for i, d in enumerate((a, b)):
        got = protocol.unpack({k: v[i] for k, v in packed.items()}, (10, 20))
        assert got.to_dict() == d.to_dict()
    bad = dict((k, v[0]) for k, v in packed.items())
    bad["count"] = np.array([5], np.int32)
    with pytest.raises(UserInputError, match="says 5 detections"):
        protocol.unpack(bad)
    with pytest.raises(UserInputError, match="lacks the outputs"):
        protocol.unpack({"boxes": packed["boxes"][0]})
    for img, words in ((np.zeros((0, 4, 3), np.uint8), "empty"), (np.zeros((4, 4, 3), np.float32), "dtype"),
                       (np.zeros((4, 4), np.uint8), "shape"), (np.zeros((1, protocol.MAX_SIDE + 1, 3), np.uint8),
                                                             "at most")):
        with pytest.raises(UserInputError, match=words):
            protocol.check_image(img)


def test_the_client_retries_what_a_stopping_server_answers_and_not_a_bad_request():
    # gRPC answers CANCELLED for the requests in flight when the server stops: under load a restart lost
    # requests that way until it counted as transient. A request the server refuses on its merits is not
    # retried.
    pytest.importorskip("tritonclient.grpc")
    from tritonclient.utils import InferenceServerException

    from defectrt.client import TritonDetector
    from defectrt.errors import UserInputError

    det = TritonDetector("grpc://127.0.0.1:1", model="screw", retries=3, retry_wait_s=0)  # connects lazily
    answers = [InferenceServerException("CANCELLED", status="StatusCode.CANCELLED"),
               InferenceServerException("[StatusCode.UNAVAILABLE] Socket closed"), "ok"]

    def send():
        a = answers.pop(0)
        if isinstance(a, Exception):
            raise a
        return a

    assert det._with_retries(send) == "ok" and det.retried == 2
    bad = InferenceServerException("unexpected shape for input 'image' for model 'screw'",
                                   status="StatusCode.INVALID_ARGUMENT")

    def refused():
        raise bad

    with pytest.raises(UserInputError, match="refused the request: unexpected shape"):
        det._with_retries(refused)
    assert det.retried == 2
