"""Fakes for the bench tests: workloads of known duration and a tiny ONNX detector."""
import time

import numpy as np

from defectrt.runtime.backend import Backend


def sleep_ms(ms):
    time.sleep(ms / 1000.0)


class FakeCpuBackend(Backend):
    name = "fake-cpu"
    providers = ["CPUExecutionProvider"]
    device = "cpu"

    def __init__(self, infer_ms=2.0, nc=2, anchors=10):
        self.infer_ms = infer_ms
        self.nc = nc
        self.anchors = anchors

    def infer(self, blob):
        sleep_ms(self.infer_ms)
        return np.zeros((blob.shape[0], 4 + self.nc, self.anchors), np.float32)


class FakeGpuBackend(FakeCpuBackend):
    """Offers the CUDA-event hook with fixed, known stage times (ms)."""

    name = "fake-tensorrt"
    providers = []
    device = "cuda"
    offers_stage_timing = True

    def __init__(self, h2d=0.5, compute=3.0, d2h=0.25, enqueue=None, **kw):
        super(FakeGpuBackend, self).__init__(**kw)
        self.times = {"h2d": h2d, "compute": compute, "d2h": d2h}
        if enqueue is not None:
            self.times["enqueue"] = enqueue
        self.graph = False

    def time_stages(self, blob):
        return np.zeros((blob.shape[0], 4 + self.nc, self.anchors), np.float32), dict(self.times)

    def enable_cuda_graph(self):
        self.graph = True


class FakeDetector(object):
    """Stage methods that sleep known times: preprocess pre_ms, infer (backend), postprocess post_ms."""

    def __init__(self, model=None, backend=None, threads=None, pre_ms=1.0, infer_ms=4.0, post_ms=2.0, imgsz=(64, 96),
                 cuda_graph=False):
        self.backend = backend if backend is not None and not isinstance(backend, str) else FakeCpuBackend(infer_ms)
        if cuda_graph:
            self.backend.enable_cuda_graph()
        self.stage_hook = None  # as Detector.stage_hook
        self.imgsz = imgsz
        self.batch = None  # dynamic, as Detector.batch
        self.pre_ms, self.post_ms = pre_ms, post_ms
        self.calls = 0

    def preprocess(self, images):
        sleep_ms(self.pre_ms)
        h, w = self.imgsz
        return np.zeros((len(images), 3, h, w), np.float32), [None] * len(images)

    def infer(self, blob):
        return self.backend.infer(blob)

    def postprocess(self, pred, infos):
        sleep_ms(self.post_ms)
        return [[] for _ in infos]

    def __call__(self, images):
        self.calls += 1
        t0 = time.perf_counter()
        blob, infos = self.preprocess(images)
        t1 = time.perf_counter()
        pred = self.infer(blob)
        t2 = time.perf_counter()
        out = self.postprocess(pred, infos)
        if self.stage_hook is not None:
            for stage, s in (("preprocess", t1 - t0), ("infer", t2 - t1), ("postprocess", time.perf_counter() - t2)):
                self.stage_hook(stage, s * 1000.0)
        return out


def tiny_detector_onnx(path, nc=2, imgsz=(64, 64), batch=1, dynamic_batch=False):
    """A valid detector graph per CONTRACTS.md: images (B,3,H,W) -> output0 (B, 4+nc, A), A = sum HW/s^2."""
    import json

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    h, w = imgsz
    no = 4 + nc
    rng = np.random.default_rng(0)
    nodes, inits, branches = [], [], []
    for s in (8, 16, 32):
        wt = numpy_helper.from_array((rng.standard_normal((no, 3, 1, 1)) * 0.1).astype(np.float32), "w{}".format(s))
        inits.append(wt)
        nodes.append(helper.make_node("AveragePool", ["images"], ["p{}".format(s)], kernel_shape=[s, s], strides=[s, s]))
        nodes.append(helper.make_node("Conv", ["p{}".format(s), "w{}".format(s)], ["c{}".format(s)]))
        inits.append(numpy_helper.from_array(np.array([0, no, -1], np.int64), "shape{}".format(s)))
        nodes.append(helper.make_node("Reshape", ["c{}".format(s), "shape{}".format(s)], ["r{}".format(s)]))
        branches.append("r{}".format(s))
    nodes.append(helper.make_node("Concat", branches, ["cat"], axis=2))
    nodes.append(helper.make_node("Sigmoid", ["cat"], ["output0"]))
    a = sum((h // s) * (w // s) for s in (8, 16, 32))
    b = "batch" if dynamic_batch else batch
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [b, 3, h, w])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [b, no, a])], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {"names": json.dumps({str(i): "c{}".format(i) for i in range(nc)}), "imgsz": json.dumps([h, w]),
            "stride": "32", "variant": "tiny", "grid_sample": "none", "nms": "none", "precision": "fp32", "task": "detect"}
    for k, v in meta.items():
        p = model.metadata_props.add()
        p.key, p.value = k, v
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    # FLOPs of the 1x1 convs: 2 * sum(HW/s^2) * no * 3 per image
    return {"anchors": a, "flops": 2 * a * no * 3}
