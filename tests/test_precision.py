"""FP16 / INT8 ONNX (defectrt.export.precision) and INT8 calibration data (defectrt.export.calibration).

The ModelOpt paths (FP16, INT8 flavour "trt") need the `modelopt` extra and are skipped without it;
CI installs the extra, so there they run. The ONNX Runtime INT8 flavour, the calibration reader and
the island check run everywhere.

Models:
- "tiny": stem convs -> the zoo's real DySample block (offset conv outside, `sampler` child = FP32
  island) -> conv -> a YOLO-style output (B, 4 + nc, A) = box coordinates in pixels + sigmoid scores.
  Shallow, so INT8 / FP16 agreement with FP32 can be held to tight bounds (a broken conversion -
  scores sharing the box scale, a quantized island, wrong calibration pixels - fails them).
- "zoo": yolo11n-dysample (nc=4) at 96x96 through the real exporter (slow; checks the real graph).
  Its weights are random, with BatchNorm statistics re-estimated on the calibration images so that
  the output depends on the input, and BatchNorm scales x0.95: at x1.0 a random network of this depth
  is chaotic (rounding noise doubled every ~2 layers in a measurement), which no trained model does.
"""
import os
import warnings

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from defectrt.errors import BackendUnavailable, OutputExistsError, UserInputError  # noqa: E402
from defectrt.export import precision as P  # noqa: E402
from defectrt.export.calibration import CalibrationReader, list_images, select_images  # noqa: E402

MODELOPT_REASON = "needs NVIDIA ModelOpt: pip install 'defectrt[modelopt]' (CI installs it)"
TINY = 64  # tiny model input size
NC = 3


def _modelopt():
    return pytest.importorskip("modelopt.onnx", reason=MODELOPT_REASON)


# ------------------------------------------------------------------------------------------ fixtures

def _write_images(folder, n, seed=0):
    """Smooth synthetic scenes: blobs and stripes on a background, varied sizes (letterboxing matters)."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    exts = [".png", ".jpg", ".bmp"]
    for i in range(n):
        h, w = (int(v) for v in rng.integers(48, 160, 2))
        img = np.empty((h, w, 3), np.uint8)
        img[:] = rng.integers(30, 220, 3)
        for _ in range(4):
            c = tuple(int(v) for v in rng.integers(0, 255, 3))
            cv2.circle(img, (int(rng.integers(0, w)), int(rng.integers(0, h))), int(rng.integers(4, 24)), c, -1)
        cv2.line(img, (0, int(rng.integers(0, h))), (w - 1, int(rng.integers(0, h))), (255, 255, 255), 2)
        img = cv2.GaussianBlur(img, (3, 3), 0)
        cv2.imwrite(os.path.join(folder, "img{:03d}{}".format(i, exts[i % 3])), img)
    return folder


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    d = _write_images(str(tmp_path_factory.mktemp("calib")), 24)
    with open(os.path.join(d, "notes.txt"), "w") as f:
        f.write("not an image")
    os.makedirs(os.path.join(d, "sub.png"))  # a folder with an image-like name is not an image
    return d


@pytest.fixture(scope="module")
def test_images(tmp_path_factory):
    """Held-out images (not used for calibration) on which outputs are compared."""
    d = _write_images(str(tmp_path_factory.mktemp("held_out")), 4, seed=99)
    return [cv2.imread(p) for p in list_images(d)]


class TinyDetector(torch.nn.Module):
    def __init__(self, nc=NC, imgsz=TINY):
        super().__init__()
        from defectrt.models.dysample import DySample

        nn = torch.nn
        self.imgsz = float(imgsz)
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.SiLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.SiLU())
        self.up = DySample(32, scale=2, groups=4)
        torch.nn.init.normal_(self.up.offset.weight, std=0.05)  # offsets that move the samples
        self.neck = nn.Sequential(nn.Conv2d(32, 32, 3, 1, 1), nn.SiLU())
        self.box = nn.Conv2d(32, 4, 1)
        self.cls = nn.Conv2d(32, nc, 1)
        for conv in (self.stem[0], self.stem[2], self.neck[0]):  # keep the signal's scale through the layers
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        for conv in (self.box, self.cls):  # logits of a few units: scores and boxes spread over their range
            nn.init.normal_(conv.weight, std=1.0)

    def forward(self, x):
        f = self.neck(self.up(self.stem(x)))
        b = f.shape[0]
        box = self.box(f).sigmoid().reshape(b, 4, -1) * self.imgsz  # pixels, like YOLO's decoded boxes
        cls = self.cls(f).reshape(b, self.cls.out_channels, -1).sigmoid()
        return torch.cat((box, cls), 1)


def _export_tiny(path, opset=17):
    torch.manual_seed(0)
    model = TinyDetector().eval()
    x = torch.rand(1, 3, TINY, TINY)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), path, dynamo=False, opset_version=opset, input_names=["images"],
                          output_names=["output0"], do_constant_folding=True)
    m = onnx.load(path)
    meta = m.metadata_props.add()
    meta.key, meta.value = "names", '{"0": "a", "1": "b", "2": "c"}'
    onnx.save(m, path)
    return path


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    path = _export_tiny(str(tmp_path_factory.mktemp("tiny") / "tiny.onnx"))
    assert P.island_names(path), "the tiny model must contain a DySample island"
    return path


def _blob(images, imgsz):
    from defectrt.runtime.preprocess import preprocess

    return preprocess(images, imgsz)[0]


def _run(path, blob):
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return np.concatenate([s.run(None, {"images": blob[i:i + 1]})[0] for i in range(len(blob))])


def _agreement(ref, out):
    """(box corr, box error / box range, score corr, max score error) over all images and anchors."""
    rb, ob = ref[:, :4].ravel().astype(np.float64), out[:, :4].ravel().astype(np.float64)
    rs, os_ = ref[:, 4:].ravel().astype(np.float64), out[:, 4:].ravel().astype(np.float64)
    box_rel = float(np.abs(rb - ob).mean() / (np.abs(rb).mean() + 1e-9))
    return float(np.corrcoef(rb, ob)[0, 1]), box_rel, float(np.corrcoef(rs, os_)[0, 1]), float(np.abs(rs - os_).max())


def _io_types(path):
    m = onnx.load(path)
    return ([i.type.tensor_type.elem_type for i in m.graph.input], [o.type.tensor_type.elem_type for o in m.graph.output])


def _count(path, op):
    return sum(1 for n in onnx.load(path).graph.node if n.op_type == op)


def _qdq_inside(model, names):
    """Q nodes whose input comes from one of `names` and whose DQ feeds one of `names`."""
    producers = {o: n for n in model.graph.node for o in n.output}
    consumers = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    out = []
    for q in model.graph.node:
        if q.op_type != "QuantizeLinear" or producers.get(q.input[0]) is None:
            continue
        if producers[q.input[0]].name not in names:
            continue
        dqs = [d for d in consumers.get(q.output[0], []) if d.op_type == "DequantizeLinear"]
        if any(u.name in names for d in dqs for u in consumers.get(d.output[0], [])):
            out.append(q.name)
    return out


def _ort_fp16_quantize_rounds():
    """Does this ONNX Runtime round FP16 QuantizeLinear to nearest (0.06 / 0.1 = 0.6 -> 1, not 0)?"""
    F16, I8 = onnx.TensorProto.FLOAT16, onnx.TensorProto.INT8
    g = onnx.helper.make_graph(
        [onnx.helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])], "q",
        [onnx.helper.make_tensor_value_info("x", F16, [2])], [onnx.helper.make_tensor_value_info("y", I8, [2])],
        [onnx.numpy_helper.from_array(np.array(0.1, np.float16), "s"), onnx.numpy_helper.from_array(np.array(0, np.int8), "z")])
    m = onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 19)])
    m.ir_version = 9
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {"x": np.array([0.06, -0.06], np.float16)})[0].tolist() == [1, -1]


def _reads_dequantized(model, node_name):
    """Does node `node_name` read any DequantizeLinear output (is it quantized)?"""
    producers = {o: n for n in model.graph.node for o in n.output}
    node = next(n for n in model.graph.node if n.name == node_name)
    return any(producers.get(i) is not None and producers[i].op_type == "DequantizeLinear" for i in node.input)


def _convs(path):
    """Names of the Conv nodes of a model, in graph order."""
    return [n.name for n in onnx.load(path).graph.node if n.op_type == "Conv"]


def _meta(path):
    return {p.key: p.value for p in onnx.load(path).metadata_props}


def _fp16_tensors(path):
    """Names of FP16 initializers and Cast-to-FP16 outputs: evidence that a conversion happened."""
    m = onnx.load(path)
    f16 = onnx.TensorProto.FLOAT16
    names = [t.name for t in m.graph.initializer if t.data_type == f16]
    names += [n.output[0] for n in m.graph.node if n.op_type == "Cast"
              and any(a.name == "to" and a.i == f16 for a in n.attribute)]
    return names


# ------------------------------------------------------------------------------------------ calibration

def test_reader_pre_processes_exactly_like_the_runtime(calib_dir):
    files = list_images(calib_dir)
    assert len(files) == 24 and all(f.lower().endswith((".png", ".jpg", ".bmp")) for f in files)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reader = CalibrationReader(calib_dir, (TINY, TINY + 32), calib_count=5, seed=3)
    first = reader.get_first()["images"]
    assert first.shape == (1, 3, TINY, TINY + 32) and first.dtype == np.float32
    expected = _blob([cv2.imread(reader.files[0])], (TINY, TINY + 32))
    np.testing.assert_array_equal(first, expected)
    batches = []
    while True:
        item = reader.get_next()
        if item is None:
            break
        batches.append(item["images"])
    assert len(batches) == len(reader) == 5
    np.testing.assert_array_equal(batches[0], first)  # get_first did not consume
    for path, blob in zip(reader.files, batches):
        np.testing.assert_array_equal(blob, _blob([cv2.imread(path)], (TINY, TINY + 32)))
    reader.rewind()
    np.testing.assert_array_equal(reader.get_next()["images"], first)


def test_reader_selection_is_deterministic_and_seeded(calib_dir):
    files = list_images(calib_dir)
    a, b, c = select_images(files, 6, seed=0), select_images(files, 6, seed=0), select_images(files, 6, seed=1)
    assert a == b and a != c and len(a) == 6 and len(set(a)) == 6
    assert a == sorted(a)  # read in name order
    assert select_images(files, 100, seed=0) == files  # fewer images than asked: all of them


def test_reader_static_batch_groups_images(calib_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reader = CalibrationReader(calib_dir, TINY, calib_count=5, batch=2)
    blobs = [reader.get_next()["images"] for _ in range(len(reader))]
    assert [b.shape[0] for b in blobs] == [2, 2, 2] and reader.get_next() is None
    np.testing.assert_array_equal(blobs[2][1], blobs[2][0])  # the short last batch repeats an image


def test_reader_warns_below_100_images(calib_dir):
    with pytest.warns(UserWarning, match="fewer than 100"):
        CalibrationReader(calib_dir, TINY, calib_count=10)
    with pytest.warns(UserWarning, match="has only 24 images"):
        CalibrationReader(calib_dir, TINY, calib_count=300)


def test_reader_errors_name_the_folder_or_file(tmp_path, calib_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(UserInputError, match="empty.*no images"):
        CalibrationReader(str(empty), TINY, calib_count=300)
    with pytest.raises(UserInputError, match="does not exist"):
        CalibrationReader(str(tmp_path / "missing"), TINY)
    with pytest.raises(UserInputError, match="calib_count"):
        CalibrationReader(calib_dir, TINY, calib_count=0)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.jpg").write_bytes(b"not a jpeg")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reader = CalibrationReader(str(bad), TINY)
    with pytest.raises(UserInputError, match="broken.jpg"):
        reader.get_next()


# ------------------------------------------------------------------------------------------ island check

def _graph(nodes, inputs, outputs, inits=()):
    g = onnx.helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 17)])


def _vi(name, elem=onnx.TensorProto.FLOAT, shape=(1, 4)):
    return onnx.helper.make_tensor_value_info(name, elem, list(shape))


def test_island_violations_clean_graph_with_exit_cast():
    F16 = onnx.TensorProto.FLOAT16
    nodes = [
        onnx.helper.make_node("Relu", ["x"], ["a"], name="/m/sampler/Relu"),
        onnx.helper.make_node("Neg", ["a"], ["b"], name="/m/sampler/Neg"),
        onnx.helper.make_node("Cast", ["b"], ["b16"], name="/m/sampler/Neg_output_0_cast_to_fp16", to=F16),
        onnx.helper.make_node("Abs", ["b16"], ["y"], name="/head/Abs"),
    ]
    assert P.island_violations(_graph(nodes, [_vi("x")], [_vi("y", F16)])) == []


@pytest.mark.parametrize("case", ["fp16_input", "cast_inside", "qdq_named", "dq_feeds_island"])
def test_island_violations_finds_each_kind(case):
    F16, F32, I8 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT, onnx.TensorProto.INT8
    scale = onnx.helper.make_tensor("s", F32, [], [0.1])
    zp = onnx.helper.make_tensor("z", I8, [], [0])
    inits, x_type = [scale, zp], F32
    if case == "fp16_input":
        x_type = F16
        nodes = [onnx.helper.make_node("Relu", ["x"], ["y"], name="/m/sampler/Relu")]
    elif case == "cast_inside":
        nodes = [onnx.helper.make_node("Cast", ["x"], ["h"], name="/m/sampler/Cast", to=F16),
                 onnx.helper.make_node("Relu", ["h"], ["r"], name="/m/sampler/Relu"),
                 onnx.helper.make_node("Cast", ["r"], ["y"], name="/m/sampler/Cast_1", to=F32)]
    elif case == "qdq_named":
        nodes = [onnx.helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="/m/sampler/Q"),
                 onnx.helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="/m/sampler/DQ")]
    else:
        nodes = [onnx.helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="/m/x_Q"),
                 onnx.helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"], name="/m/x_DQ"),
                 onnx.helper.make_node("Relu", ["d"], ["y"], name="/m/sampler/Relu")]
    out_type = F16 if case == "fp16_input" else F32
    bad = P.island_violations(_graph(nodes, [_vi("x", x_type)], [_vi("y", out_type)], inits))
    assert bad and all("/sampler/" in b for b in bad), bad


# ------------------------------------------------------------------------------------------ tiny model

def test_decode_tail_and_feeders_of_the_tiny_model(tiny_onnx):
    m = onnx.load(tiny_onnx)
    ops = {n.name: n.op_type for n in m.graph.node}
    tail = P.decode_tail(m)
    assert tail, "the decoding after the head convs must be found"
    tail_ops = {ops[n] for n in tail}
    assert {"Concat", "Sigmoid", "Mul"} <= tail_ops and "Conv" not in tail_ops
    out_producer = next(n.name for n in m.graph.node if "output0" in n.output)
    assert out_producer in tail
    assert not any("/sampler/" in n for n in tail)
    feeders = P.island_feeders(m)
    assert any(n.startswith("/up/") and "/sampler/" not in n for n in feeders)  # the offset arithmetic


def test_stem_nodes(tiny_onnx):
    m = onnx.load(tiny_onnx)
    ops = {n.name: n.op_type for n in m.graph.node}
    first, second = _convs(tiny_onnx)[:2]
    stem = P.stem_nodes(m)
    assert stem[0] == first and sorted(ops[n] for n in stem) == ["Conv", "Mul", "Sigmoid"]  # conv + SiLU
    assert second not in stem

    # An in-graph normalisation before the first conv belongs to the stem; a graph without a weighted
    # layer has no stem.
    F32 = onnx.TensorProto.FLOAT
    inits = [onnx.numpy_helper.from_array(np.float32(255.0), "k"),
             onnx.numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w1"),
             onnx.numpy_helper.from_array(np.ones((4, 4, 1, 1), np.float32), "w2")]
    nodes = [onnx.helper.make_node("Div", ["images", "k"], ["x"], name="norm"),
             onnx.helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1"),
             onnx.helper.make_node("Relu", ["c1"], ["r1"], name="act1"),
             onnx.helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2"),
             onnx.helper.make_node("Add", ["c2", "r1"], ["y"], name="residual")]
    g = _graph(nodes, [_vi("images", shape=(1, 3, 8, 8))], [_vi("y", shape=(1, 4, 8, 8))], inits)
    assert P.stem_nodes(g) == ["norm", "conv1", "act1"]
    del g.graph.node[1:]
    assert P.stem_nodes(g) == []


def test_int8_cpu_flavour(tiny_onnx, calib_dir, test_images, tmp_path):
    out = str(tmp_path / "int8_cpu.onnx")
    with pytest.warns(UserWarning, match="fewer than 100"):
        assert P.quantize_int8(tiny_onnx, out, calib_dir, calib_count=24, flavour="cpu") == out
    assert _io_types(out) == ([onnx.TensorProto.FLOAT], [onnx.TensorProto.FLOAT])
    assert _count(out, "QuantizeLinear") >= 4 and _count(out, "DequantizeLinear") >= 8
    assert P.island_violations(out) == []
    m = onnx.load(out)
    assert not any("/sampler/" in n.name for n in m.graph.node if n.op_type in P.QDQ_OPS)
    # uint8 activations (asymmetric), int8 per-channel weights
    inits = {t.name: t for t in m.graph.initializer}
    zps = [inits[n.input[2]] for n in m.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert zps and all(z.data_type == onnx.TensorProto.UINT8 for z in zps)
    weight_dq = [n for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
                 and inits[n.input[0]].data_type == onnx.TensorProto.INT8]
    assert any(len(inits[n.input[1]].dims) == 1 and inits[n.input[1]].dims[0] > 1 for n in weight_dq)
    # scores stay out of the box coordinates' scale: no Q/DQ between decode-tail nodes (the head
    # convs' outputs entering the tail may be quantized, as in TensorRT's INT8 conv)
    tail = set(P.decode_tail(onnx.load(tiny_onnx)))
    assert _qdq_inside(m, tail) == []
    # the stem stays FP32 (its output is quantized for the next conv), unless asked otherwise
    first, second = _convs(tiny_onnx)[:2]
    assert not _reads_dequantized(m, first) and _reads_dequantized(m, second)
    meta = _meta(out)
    assert meta["precision"] == "int8" and meta["int8_flavour"] == "cpu" and meta["names"].startswith("{")
    assert "stem (3 nodes)" in meta["int8_unquantized"] and "DySample islands" in meta["int8_unquantized"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        all_in = P.quantize_int8(tiny_onnx, str(tmp_path / "stem.onnx"), calib_dir, calib_count=24, flavour="cpu",
                                 quantize_stem=True)
    assert _reads_dequantized(onnx.load(all_in), first) and "stem" not in _meta(all_in)["int8_unquantized"]

    blob = _blob(test_images, TINY)
    box_corr, box_rel, score_corr, score_err = _agreement(_run(tiny_onnx, blob), _run(out, blob))
    assert box_corr > 0.99 and box_rel < 0.03 and score_corr > 0.99 and score_err < 0.1, \
        (box_corr, box_rel, score_corr, score_err)

    with pytest.raises(OutputExistsError):
        P.quantize_int8(tiny_onnx, out, calib_dir, calib_count=24, flavour="cpu")


def test_int8_argument_errors(tiny_onnx, calib_dir, tmp_path):
    with pytest.raises(UserInputError, match="flavour"):
        P.quantize_int8(tiny_onnx, str(tmp_path / "a.onnx"), calib_dir, flavour="gpu")
    with pytest.raises(UserInputError, match="calibration method"):
        P.quantize_int8(tiny_onnx, str(tmp_path / "a.onnx"), calib_dir, calibration_method="percentile")
    with pytest.raises(UserInputError, match="no such ONNX file"):
        P.quantize_int8(str(tmp_path / "missing.onnx"), str(tmp_path / "a.onnx"), calib_dir, flavour="cpu")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserInputError, match="no images"):
        P.quantize_int8(tiny_onnx, str(tmp_path / "a.onnx"), str(empty), flavour="cpu")
    assert not os.path.exists(tmp_path / "a.onnx")


def test_missing_modelopt_names_the_extra(tiny_onnx, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "modelopt", None)  # makes `import modelopt...` raise ImportError
    monkeypatch.setitem(sys.modules, "modelopt.onnx", None)
    with pytest.raises(BackendUnavailable, match=r"pip install 'defectrt\[modelopt\]'"):
        P.convert_fp16(tiny_onnx, str(tmp_path / "fp16.onnx"))
    with pytest.raises(BackendUnavailable, match=r"defectrt\[modelopt\]"):
        P.quantize_int8(tiny_onnx, str(tmp_path / "int8.onnx"), str(tmp_path), flavour="trt")
    assert not os.path.exists(tmp_path / "fp16.onnx")


def test_fp16(tiny_onnx, test_images, tmp_path):
    _modelopt()
    out = P.convert_fp16(tiny_onnx, str(tmp_path / "fp16.onnx"))
    assert _io_types(out) == ([onnx.TensorProto.FLOAT], [onnx.TensorProto.FLOAT])
    assert _fp16_tensors(out), "nothing was converted to FP16"
    assert P.island_violations(out) == []
    m = onnx.load(out)
    islands = set(P.island_names(tiny_onnx))
    assert islands <= {n.name for n in m.graph.node}  # every island node kept its name (and FP32)
    assert _meta(out)["precision"] == "fp16"
    blob = _blob(test_images, TINY)
    box_corr, box_rel, score_corr, score_err = _agreement(_run(tiny_onnx, blob), _run(out, blob))
    assert box_corr > 0.9999 and box_rel < 2e-3 and score_corr > 0.9999 and score_err < 5e-3, \
        (box_corr, box_rel, score_corr, score_err)


def test_fp16_without_island_exclusion_is_caught(tiny_onnx, tmp_path, monkeypatch):
    """The check must be able to fail: the same conversion without excluding the island."""
    _modelopt()
    from modelopt.onnx.autocast import convert_to_mixed_precision

    broken = convert_to_mixed_precision(tiny_onnx, low_precision_type="fp16", keep_io_types=True, providers=["cpu"])
    bad = P.island_violations(broken)
    assert bad and any("GridSample" in b for b in bad), bad
    monkeypatch.setattr(P, "island_patterns", lambda names: [])  # convert_fp16 with the exclusion lost
    with pytest.raises(P.PrecisionError, match="island"):
        P.convert_fp16(tiny_onnx, str(tmp_path / "broken.onnx"))
    assert not os.path.exists(tmp_path / "broken.onnx")


@pytest.mark.parametrize("target", ["8.6", "10.3"])
def test_int8_trt_flavour(tiny_onnx, calib_dir, test_images, tmp_path, target):
    _modelopt()
    out = str(tmp_path / "int8_trt.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        P.quantize_int8(tiny_onnx, out, calib_dir, calib_count=24, flavour="trt", target_trt=target)
    assert _io_types(out) == ([onnx.TensorProto.FLOAT], [onnx.TensorProto.FLOAT])
    assert P.island_violations(out) == []
    m = onnx.load(out)
    inits = {t.name: t for t in m.graph.initializer}
    qs = [n for n in m.graph.node if n.op_type == "QuantizeLinear"]
    assert len(qs) >= 4
    for q in qs:  # TensorRT: symmetric, int8, zero point 0
        zp = onnx.numpy_helper.to_array(inits[q.input[2]])
        assert zp.dtype == np.int8 and not zp.any(), q.name
    opset = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
    meta = _meta(out)
    if target == "8.6":  # FP32 around the Q/DQ, and the parser's opset
        assert opset == 17 and not _fp16_tensors(out) and meta["int8_high_precision"] == "fp32"
    else:  # FP16 outside the island
        assert opset >= 19 and _fp16_tensors(out) and meta["int8_high_precision"] == "fp16"
    assert meta["precision"] == "int8" and meta["int8_flavour"] == "trt"
    first, second = _convs(tiny_onnx)[:2]
    assert not _reads_dequantized(m, first) and _reads_dequantized(m, second)  # the stem is left out
    blob = _blob(test_images, TINY)
    box_corr, box_rel, score_corr, score_err = _agreement(_run(tiny_onnx, blob), _run(out, blob))
    # measured: box_rel 0.018 (8.6 and 10.3); 0.040 for 10.3 on ONNX Runtime < 1.31, whose FP16
    # QuantizeLinear truncates instead of rounding (microsoft/onnxruntime#18576, fixed by #32452)
    box_limit, score_limit = (0.03, 0.1) if target == "8.6" or _ort_fp16_quantize_rounds() else (0.06, 0.2)
    assert box_corr > 0.99 and box_rel < box_limit and score_corr > 0.99 and score_err < score_limit, \
        (box_corr, box_rel, score_corr, score_err)


def test_modelopt_leaves_onnxruntime_quantization_unpatched(tiny_onnx, calib_dir, tmp_path):
    """ModelOpt monkeypatches ORT's calibrators; the cpu flavour must still work afterwards."""
    _modelopt()
    from onnxruntime.quantization import calibrate

    before = (calibrate.MinMaxCalibrater.collect_data, calibrate.create_calibrator,
              calibrate.CalibraterBase.select_tensors_to_calibrate)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        P.quantize_int8(tiny_onnx, str(tmp_path / "trt.onnx"), calib_dir, calib_count=8, flavour="trt")
        after = (calibrate.MinMaxCalibrater.collect_data, calibrate.create_calibrator,
                 calibrate.CalibraterBase.select_tensors_to_calibrate)
        assert after == before
        P.quantize_int8(tiny_onnx, str(tmp_path / "cpu.onnx"), calib_dir, calib_count=8, flavour="cpu")
    assert P.island_violations(str(tmp_path / "cpu.onnx")) == []


def _qdq_params(path):
    """{initializer name: (ONNX type, dims, bytes)} of every Q/DQ scale and zero point of a model."""
    m = onnx.load(path)
    inits = {t.name: t for t in m.graph.initializer}
    return {name: (inits[name].data_type, tuple(inits[name].dims), onnx.numpy_helper.to_array(inits[name]).tobytes())
            for n in m.graph.node if n.op_type in P.QDQ_OPS for name in n.input[1:] if name in inits}


def test_cpu_flavour_after_trt_equals_a_fresh_process(tiny_onnx, calib_dir, tmp_path):
    """Issue 21: ModelOpt also edits ORT's op registries in place; a cpu quantization after a trt one in
    the same process must write what one in a fresh process writes (byte for byte). The reference runs
    in a subprocess because earlier tests in this process may already have run ModelOpt."""
    _modelopt()
    import subprocess
    import sys

    import defectrt

    fresh = str(tmp_path / "fresh.onnx")
    code = ("import warnings; warnings.simplefilter('ignore')\n"
            "from defectrt.export import precision as P\n"
            "P.quantize_int8({!r}, {!r}, {!r}, calib_count=8, flavour='cpu')\n".format(tiny_onnx, fresh, calib_dir))
    src = os.path.dirname(os.path.dirname(os.path.abspath(defectrt.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = str(tmp_path / "after_trt.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        P.quantize_int8(tiny_onnx, str(tmp_path / "trt.onnx"), calib_dir, calib_count=8, flavour="trt")
        P.quantize_int8(tiny_onnx, after, calib_dir, calib_count=8, flavour="cpu")
    want, got = _qdq_params(fresh), _qdq_params(after)
    assert want and sorted(got) == sorted(want)
    assert [k for k in want if got[k] != want[k]] == []


def test_ort_quantization_restored_puts_registries_and_classes_back():
    """The restore itself, without ModelOpt: what ModelOpt's configure_ort does, undone on exit."""
    from onnxruntime.quantization import calibrate, registry

    qdq, qlinear = dict(registry.QDQRegistry), dict(registry.QLinearOpsRegistry)
    collect, init = calibrate.MinMaxCalibrater.collect_data, calibrate.CalibraterBase.__init__
    assert "Relu" in registry.QDQRegistry and "Sigmoid" in registry.QLinearOpsRegistry
    assert "collect_data" not in vars(calibrate.EntropyCalibrater)  # inherited
    with P._ort_quantization_restored():
        registry.QDQRegistry["LRN"] = object
        del registry.QDQRegistry["Relu"]
        del registry.QLinearOpsRegistry["Sigmoid"]
        calibrate.MinMaxCalibrater.collect_data = lambda self, reader: None
        calibrate.CalibraterBase.__init__ = lambda self, *a, **k: None
        calibrate.EntropyCalibrater.collect_data = lambda self, reader: None  # new here: hides the base's
        calibrate.create_calibrator = None
    assert list(registry.QDQRegistry.items()) == list(qdq.items())  # same items, same order, same dict
    assert list(registry.QLinearOpsRegistry.items()) == list(qlinear.items())
    import onnxruntime.quantization.quantize  # noqa: F401
    import sys

    assert sys.modules["onnxruntime.quantization.quantize"].QDQRegistry is registry.QDQRegistry
    assert calibrate.MinMaxCalibrater.collect_data is collect and calibrate.CalibraterBase.__init__ is init
    assert "collect_data" not in vars(calibrate.EntropyCalibrater) and callable(calibrate.create_calibrator)


# ------------------------------------------------------------------------------------------ zoo model

ZOO = 96


@pytest.fixture(scope="module")
def zoo_onnx(tmp_path_factory, calib_dir):
    from defectrt import models

    torch.manual_seed(0)
    model = models.create("yolo11n-dysample", nc=4)
    # Random weights give an input-independent output; re-estimating BatchNorm on images gives a
    # model whose output varies with the image like a trained one's (see the module docstring).
    bns = [b for b in model.modules() if isinstance(b, torch.nn.BatchNorm2d)]
    for b in bns:
        b.reset_running_stats()
        b.momentum = None
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(_blob([cv2.imread(p) for p in list_images(calib_dir)[:8]], ZOO)))
        for b in bns:
            b.weight.mul_(0.95)  # just on the ordered side of chaos
    model.eval()
    path = str(tmp_path_factory.mktemp("zoo") / "yolo11n-dysample.onnx")
    try:
        from defectrt.export.onnx import export_onnx
    except ImportError:
        export_onnx = None
    if export_onnx is not None:
        export_onnx(model, path, imgsz=(ZOO, ZOO), grid_sample="native")
    else:  # pragma: no cover - the exporter is part of the package
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.rand(1, 3, ZOO, ZOO),), path, dynamo=False, opset_version=17,
                              input_names=["images"], output_names=["output0"])
    assert len(P.island_names(path)) > 10
    return path


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fp16", "int8-trt", "int8-cpu"])
def test_zoo_model(zoo_onnx, calib_dir, test_images, tmp_path, kind):
    if kind != "int8-cpu":
        _modelopt()
    out = str(tmp_path / "out.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if kind == "fp16":
            P.convert_fp16(zoo_onnx, out)
        else:
            P.quantize_int8(zoo_onnx, out, calib_dir, calib_count=16, flavour=kind.split("-")[1], target_trt="10.3")
    assert _io_types(out) == ([onnx.TensorProto.FLOAT], [onnx.TensorProto.FLOAT])
    assert P.island_violations(out) == []
    src_meta, meta = _meta(zoo_onnx), _meta(out)
    assert meta["precision"] == kind.split("-")[0]
    assert all(meta[k] == v for k, v in src_meta.items() if k != "precision")  # metadata carried over
    blob = _blob(test_images, ZOO)
    ref, got = _run(zoo_onnx, blob), _run(out, blob)
    assert got.shape == ref.shape and np.isfinite(got).all()
    box_corr, box_rel, score_corr, score_err = _agreement(ref, got)
    # measured here: fp16 box_rel 2e-4; int8 box_rel 1.3e-3 (cpu) / 1.6e-3 (trt), score corr 0.9998
    if kind == "fp16":
        assert box_corr > 0.9999 and box_rel < 2e-3 and score_corr > 0.9999, (box_corr, box_rel, score_corr)
    else:
        assert box_corr > 0.995 and box_rel < 0.02 and score_corr > 0.99, (box_corr, box_rel, score_corr, score_err)
