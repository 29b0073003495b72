"""INT8 that cannot silently lose accuracy: the accuracy gate of `export build --val`, per-layer sensitivity
and fallback (defectrt.export.accuracy_gate / sensitivity / int8_build), calibration sampling, QAT.

The gate runs on the real demo:screw model at a reduced input size (192x320: fast, still detects) with a
small synthetic screw set. "A build whose INT8 loses more than the limit" is made by a faulty quantizer:
the real quantize_int8, then one convolution's input scale multiplied by 40 (a broken calibration range
for that tensor) - the kind of single-layer failure the fallback exists for.
"""
import json
import os
import warnings

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
onnx = pytest.importorskip("onnx")
pytest.importorskip("torch")

from defectrt.cli import main  # noqa: E402
from defectrt.export import accuracy_gate as G  # noqa: E402
from defectrt.export import precision as P  # noqa: E402
from defectrt.export.calibration import CalibrationReader, stratified_select, image_classes, list_images  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

IMGSZ = (192, 320)
BROKEN = "/model.2/cv1/conv/Conv"  # the convolution whose input scale the faulty quantizer breaks


@pytest.fixture(scope="module")
def screw_data(tmp_path_factory):
    from defectrt.data.synth import write_dataset

    out = str(tmp_path_factory.mktemp("int8") / "screw")
    write_dataset(out, kind="screw", n=40, seed=901, val_fraction=0.5, progress=False)
    return out


def _faulty(monkeypatch, factor=40.0):
    """quantize_int8 that breaks BROKEN's input scale whenever BROKEN is quantized."""
    from onnx import numpy_helper

    real = P.quantize_int8

    def quantize(src, out, *a, **k):
        real(src, out, *a, **k)
        m = onnx.load(out)
        producers = {o: n for n in m.graph.node for o in n.output}
        inits = {t.name: t for t in m.graph.initializer}
        for node in m.graph.node:
            dq = producers.get(node.input[0]) if node.name == BROKEN else None
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producers[dq.input[0]]
            for name in {q.input[1], dq.input[1]}:
                a_ = numpy_helper.to_array(inits[name])
                inits[name].CopyFrom(numpy_helper.from_array((a_ * factor).astype(a_.dtype), name))
        onnx.save(m, out)
        return out

    monkeypatch.setattr(P, "quantize_int8", quantize)


def _build(out, data, **kw):
    from defectrt.export.bundle import build_bundle

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_bundle("demo:screw", out, precision="int8", calib=data, calib_count=8, val=data, imgsz=IMGSZ,
                            **kw)


@pytest.fixture(scope="module")
def good_bundle(tmp_path_factory, screw_data):
    # The limit is 2 points here, not the default 0.5: on these 20 val images PTQ measured -0.75 (Intel Xeon
    # with VNNI, 2026-12-01) - within the split's own +-1.07 point resolution (see
    # test_gate_says_when_the_val_split_is_too_small_to_judge) - and it passed 0.5 earlier only when ModelOpt
    # had leaked into ONNX Runtime's quantizer before it (fixed). A 0.5 limit would test the CPU and the
    # test order, not the gate. The lossy builds below lose more than 3 points.
    # Judged at the measured change (strict=False): on 20 images the interval's end lies ~1 point further
    # out, so the default strict gate would test the split's size; test_the_default_gate_judges_the_low_end_
    # of_the_interval covers that rule on this model.
    out = str(tmp_path_factory.mktemp("good") / "screw.bundle")
    return out, _build(out, screw_data, int8_flavour="cpu", gate=G.GateOptions(max_loss=GOOD_LIMIT, strict=False))


GOOD_LIMIT = 2.0


# ------------------------------------------------------------------------------------------ the gate

def test_gate_passes_an_int8_build_within_the_limit(good_bundle, screw_data):
    out, manifest = good_bundle
    gate = manifest.accuracy_gate
    assert gate["passed"] and not gate["failures"] and gate["fallback"] is None
    assert gate["max_loss"] == GOOD_LIMIT and gate["max_recall_drop"] == 2.0
    assert G.GateOptions().max_loss == 0.5 and G.GateOptions().max_recall_drop == 2.0  # the defaults
    assert G.GateOptions().strict and gate["strict"] is False and "judged_loss" not in gate["measured"]
    ref, got = manifest.val.fp32, manifest.val.int8
    assert ref["map50_95"] > 0.1  # the model detects at this size: the comparison means something
    assert gate["measured"]["map50_95_loss"] == pytest.approx(100 * (ref["map50_95"] - got["map50_95"]), abs=1e-3)
    assert gate["measured"]["map50_95_loss"] <= GOOD_LIMIT
    assert set(gate["measured"]["recall_drop"]) == {"scratch", "dent", "coating", "unprocessed"} - {
        n for n, c in ref["per_class"].items() if not c["instances"]}
    assert manifest.val.recall_conf == manifest.thresholds.conf
    on_disk = json.load(open(os.path.join(out, "manifest.json")))
    assert on_disk["accuracy_gate"] == json.loads(json.dumps(gate))
    sample = on_disk["int8_calibration_sample"]
    assert sample["count"] == 8 and sample["stratified"] and len(sample["sha256"]) == 64
    assert sum(sample["images_per_class"].values()) >= 8 - 1  # nearly every chosen image holds a defect


def test_gate_records_how_precisely_the_val_split_measures_the_change(good_bundle, screw_data):
    _, manifest = good_bundle
    res = manifest.accuracy_gate["resolution"]
    change = -manifest.accuracy_gate["measured"]["map50_95_loss"]
    low, high = res["change_interval"]
    from defectrt.data.dataset import load_dataset

    assert res["images"] == len(load_dataset(screw_data, split="val")) and res["resamples"] == G.RESAMPLES
    assert low <= change + 0.05 and change - 0.05 <= high and high > low  # around what was measured
    assert res["half_width"] == pytest.approx((high - low) / 2, abs=2e-3)
    assert res["resolves_limit"] == (res["half_width"] <= GOOD_LIMIT)
    # the suggested split size shrinks the half-width to the limit at 1 / sqrt(n)
    need = res["images_for_limit"]
    assert need == pytest.approx(res["images"] * (res["half_width"] / GOOD_LIMIT) ** 2, abs=1)


def test_gate_says_when_the_val_split_is_too_small_to_judge(screw_data, tmp_path):
    # Two models that differ on a few images: on the 20-image split the interval is wide; the same split
    # four times over (as if 80 images that behave alike) is resolved twice as finely.
    from defectrt.data.dataset import load_dataset

    ds = load_dataset(screw_data, split="val")
    from defectrt.export.onnx import export_onnx

    ref, fp32 = [], str(tmp_path / "fp32.onnx")
    export_onnx("demo:screw", fp32, imgsz=IMGSZ)
    G.measure(fp32, ds, 0.25, keep=ref)
    got = [(t, _dropped(d, i)) for i, (t, d) in enumerate(ref)]
    small = G.resolution(ref, got, len(ds.names), 0.5, resamples=100)
    large = G.resolution(ref * 4, got * 4, len(ds.names), 0.5, resamples=100)
    assert small["images"] == len(ds) and large["images"] == 4 * len(ds)
    assert large["half_width"] < 0.7 * small["half_width"]
    assert not small["resolves_limit"] and small["images_for_limit"] > len(ds)
    text = G._too_coarse(small, 1.0, 0.5)
    assert "{} images".format(len(ds)) in text and str(small["images_for_limit"]) in text
    assert "--no-strict-gate" in text  # the warning is for a gate told to judge the measured change


def test_the_default_gate_judges_the_low_end_of_the_interval(good_bundle, screw_data, tmp_path):
    # The good build's INT8 model against FP32 on the 20-image split: a limit between the measured loss and
    # the interval's pessimistic end passes with strict=False and fails by default; a fallback's candidate is
    # judged the same way (a stand-in fallback that offers the FP32 model itself: interval (0, 0)).
    from defectrt.export.onnx import export_onnx

    fp32, int8 = str(tmp_path / "fp32.onnx"), os.path.join(good_bundle[0], "model.onnx")
    export_onnx("demo:screw", fp32, imgsz=IMGSZ)
    _, g = G.gate(fp32, int8, "int8", screw_data, 0.25, G.GateOptions(max_loss=50, max_recall_drop=100))
    loss, low = g["measured"]["map50_95_loss"], g["resolution"]["change_interval"][0]
    assert -low > loss + 0.2 and g["strict"] is True and g["measured"]["judged_loss"] == pytest.approx(-low, abs=2e-3)
    limit = (loss - low) / 2
    lenient = G.GateOptions(max_loss=limit, max_recall_drop=100, fallback=False, strict=False)
    strict = G.GateOptions(max_loss=limit, max_recall_drop=100, fallback=False)
    assert G.gate(fp32, int8, "int8", screw_data, 0.25, lenient)[1]["passed"]
    with pytest.raises(G.AccuracyGateError, match="where the gate judges it") as err:
        G.gate(fp32, int8, "int8", screw_data, 0.25, strict)
    assert err.value.record["measured"]["judged_loss"] == pytest.approx(-low, abs=2e-3)
    need = G._strict_images(g["resolution"], {"map50_95_loss": loss, "judged_loss": -low}, strict)
    assert need > g["resolution"]["images"] and err.value.record["strict"]
    assert "about {} val images would bring the interval's end within --max-loss".format(need) in str(err.value)
    assert "--no-strict-gate" in str(err.value)  # the way back to the measured-change rule is named

    offered = []

    def fallback(got, verdict, measure, judge):
        m = measure(fp32)
        offered.append((verdict, judge(m)))
        return m, offered[-1][1], {"kept": ["stand-in"], "steps": []}

    strict.fallback = True
    _, g = G.gate(fp32, int8, "int8", screw_data, 0.25, strict, fallback=fallback)
    first, candidate = offered[0]
    assert first["judged_loss"] == pytest.approx(-low, abs=2e-3) and not first["passed"]
    assert candidate["passed"] and candidate["judged_loss"] == 0
    assert g["passed"] and g["first_try"]["judged_loss"] == first["judged_loss"] and g["resolution"]["half_width"] == 0


def _dropped(det, i):
    """Detections of image i without their best box on every third image (a model that misses a few)."""
    keep = np.ones(len(det.scores), bool)
    if i % 3 == 0 and len(det.scores):
        keep[int(np.argmax(det.scores))] = False
    return det.boxes[keep], det.scores[keep], det.class_ids[keep]


def test_gate_fails_a_lossy_build_and_writes_nothing(tmp_path, screw_data, monkeypatch, capsys):
    _faulty(monkeypatch)
    out = str(tmp_path / "bad.bundle")
    args = ["export", "build", "demo:screw", "-o", out, "--precision", "int8", "--int8-flavour", "cpu",
            "--calib", screw_data, "--calib-count", "8", "--val", screw_data, "--imgsz", str(IMGSZ[0]), str(IMGSZ[1]),
            "--no-fallback"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "accuracy gate" in err and "--max-loss 0.5" in err and "--accept-loss" in err
    assert not os.path.exists(out) and not [f for f in os.listdir(str(tmp_path)) if f != "bad.bundle"]
    assert "where the gate judges it" in err  # the default gate judges the loss at the interval's end
    assert main(args + ["--no-strict-gate"]) == 1
    assert "where the gate judges it" not in capsys.readouterr().err  # judged at the measured loss
    assert main(args + ["--accept-loss"]) == 0  # overridden: written, and the manifest says so
    gate = json.load(open(os.path.join(out, "manifest.json")))["accuracy_gate"]
    assert gate["strict"] and gate["measured"]["judged_loss"] >= gate["measured"]["map50_95_loss"]
    printed = capsys.readouterr().out
    assert "FAILED, accepted" in printed and "judged at -{:.2f}".format(gate["measured"]["judged_loss"]) in printed
    assert "val split: {} images resolve the change to +-{:.2f} points".format(
        gate["resolution"]["images"], gate["resolution"]["half_width"]) in printed
    assert not gate["passed"] and gate["accept_loss"] and gate["measured"]["map50_95_loss"] > 0.5


def test_fallback_finds_the_broken_layer_and_reduces_the_loss(tmp_path, screw_data, monkeypatch):
    _faulty(monkeypatch)
    # One fallback step (the top layer kept out of INT8) keeps the test short; accept_loss so that the
    # bundle is written whether or not that one step already meets the 0.5-point limit on 20 val images.
    manifest = _build(str(tmp_path / "fb.bundle"), screw_data, int8_flavour="cpu",
                      gate=G.GateOptions(sensitivity_images=2, fallback_steps=1, accept_loss=True))
    gate = manifest.accuracy_gate
    fb = gate["fallback"]
    assert gate["first_try"]["map50_95_loss"] > 3 and gate["first_try"]["failures"]
    assert fb["ranking"][0]["layer"] == BROKEN  # the sensitivity ranking points at the broken layer
    assert fb["kept"] == [BROKEN] and len(fb["steps"]) == 1
    assert gate["measured"]["map50_95_loss"] < gate["first_try"]["map50_95_loss"] / 4  # most of the loss is gone
    assert fb["latency_ms_onnxruntime_cpu"]["int8"] > 0 and 0 < fb["kept_conv_macs_share"] < 1
    shipped = onnx.load(os.path.join(str(tmp_path / "fb.bundle"), "model.onnx"))
    producers = {o: n.op_type for n in shipped.graph.node for o in n.output}
    broken = next(n for n in shipped.graph.node if n.name == BROKEN)
    assert producers.get(broken.input[0]) != "DequantizeLinear"  # the kept layer reads a float tensor
    assert "fallback (" in manifest.int8_unquantized


def _metrics(map_, recalls, n=100):
    return {"map50_95": map_, "per_class": {k: {"recall_at_conf": r, "instances": n} for k, r in recalls.items()}}


def test_compare_limits_and_single_object_rule():
    opts = G.GateOptions(strict=False)
    ref = _metrics(0.700, {"a": 0.90, "b": 0.80})
    assert G.compare(ref, _metrics(0.696, {"a": 0.90, "b": 0.79}), opts)["passed"]
    v = G.compare(ref, _metrics(0.690, {"a": 0.90, "b": 0.80}), opts)
    assert not v["passed"] and v["map50_95_loss"] == pytest.approx(1.0) and "mAP50-95" in v["failures"][0]
    strict = G.GateOptions()
    assert G.compare(ref, _metrics(0.699, {"a": 0.9, "b": 0.8}), opts, interval=(-0.8, 0.6))["passed"]
    v = G.compare(ref, _metrics(0.699, {"a": 0.9, "b": 0.8}), strict, interval=(-0.8, 0.6))
    assert not v["passed"] and v["judged_loss"] == pytest.approx(0.8) and "-0.80 at the low end" in v["failures"][0]
    assert G.compare(ref, _metrics(0.699, {"a": 0.9, "b": 0.8}), strict)["judged_loss"] == pytest.approx(0.1)
    assert G.compare(ref, _metrics(0.699, {"a": 0.9, "b": 0.8}), strict, interval=(-0.4, 0.2))["judged_loss"] == (
        pytest.approx(0.4))
    assert G.compare(ref, _metrics(0.690, {"a": 0.9, "b": 0.8}), strict, interval=(-0.4, 0.2))["judged_loss"] == (
        pytest.approx(1.0))  # never judged better than measured
    v = G.compare(ref, _metrics(0.700, {"a": 0.87, "b": 0.80}), opts)  # 3 of 100 'a' objects lost
    assert not v["passed"] and "'a'" in v["failures"][0] and v["recall_drop"]["a"] == pytest.approx(3.0)
    small = _metrics(0.7, {"a": 0.9}, n=20)  # one object of 20 is 5 points: not enough on its own
    assert G.compare(small, _metrics(0.7, {"a": 0.85}, n=20), opts)["passed"]
    assert not G.compare(small, _metrics(0.7, {"a": 0.80}, n=20), opts)["passed"]
    assert G.compare(ref, _metrics(0.690, {"a": 0.9, "b": 0.8}), G.GateOptions(max_loss=1.5))["passed"]
    with pytest.raises(Exception, match="--max-loss"):
        G.GateOptions(max_loss=-1)


# ------------------------------------------------------------------------------------------ calibration

def _odd_images(folder):
    rng = np.random.default_rng(5)
    os.makedirs(folder, exist_ok=True)
    for i, (h, w) in enumerate([(37, 101), (101, 37), (333, 517), (1, 255), (255, 1), (161, 289), (59, 59)]):
        img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        cv2.imwrite(os.path.join(folder, "odd{}.png".format(i)), img)
    return folder


def test_calibration_pixels_equal_the_runtime_detectors_on_odd_sizes(tmp_path, good_bundle):
    from defectrt.runtime.detector import Detector
    from defectrt.runtime.preprocess import preprocess

    folder = _odd_images(str(tmp_path / "odd"))
    det = Detector(good_bundle[0])
    assert tuple(det.imgsz) == IMGSZ
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reader = CalibrationReader(folder, IMGSZ, calib_count=100)
    assert len(reader) == 7
    for path in reader.files:
        blob = reader.get_next()["images"]
        img = cv2.imread(path)
        np.testing.assert_array_equal(blob, det.preprocess([img])[0])
        np.testing.assert_array_equal(blob, preprocess([img], IMGSZ)[0])


def _labelled(folder, n, rare):
    """n images in folder/images/train; class 0 in all of them, class 1 only in the `rare` ones."""
    img_dir, lab_dir = os.path.join(folder, "images", "train"), os.path.join(folder, "labels", "train")
    os.makedirs(img_dir)
    os.makedirs(lab_dir)
    for i in range(n):
        cv2.imwrite(os.path.join(img_dir, "im{:02d}.png".format(i)), np.full((8, 8, 3), i, np.uint8))
        lines = "0 0.5 0.5 0.2 0.2\n" + ("1 0.3 0.3 0.1 0.1\n" if i in rare else "")
        with open(os.path.join(lab_dir, "im{:02d}.txt".format(i)), "w") as f:
            f.write(lines)
    return img_dir


def test_stratified_sample_keeps_rare_classes_and_is_recorded(tmp_path):
    img_dir = _labelled(str(tmp_path / "d"), 40, rare={7, 31})
    files = list_images(img_dir)
    classes = image_classes(files)
    for seed in range(5):
        chosen = stratified_select(files, classes, 6, seed=seed)
        assert len(chosen) == 6 and chosen == sorted(chosen)
        assert {os.path.basename(files[7]), os.path.basename(files[31])} <= {os.path.basename(c) for c in chosen}
    assert stratified_select(files, classes, 6, seed=1) == stratified_select(files, classes, 6, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        record = CalibrationReader(img_dir, 32, calib_count=6).sample_record()
        assert record["stratified"] and record["images_per_class"] == {"0": 6, "1": 2} and record["count"] == 6
        cv2.imwrite(files[7], np.zeros((8, 8, 3), np.uint8))  # same names, other pixels: another hash
        assert CalibrationReader(img_dir, 32, calib_count=6).sample_record()["sha256"] != record["sha256"]
    assert image_classes(list_images(_odd_images(str(tmp_path / "plain")))) is None  # no labels: plain sample


def test_calibration_warns_below_a_sensible_count(tmp_path):
    folder = _odd_images(str(tmp_path / "few"))
    with pytest.warns(UserWarning, match="fewer than 100"):
        CalibrationReader(folder, IMGSZ, calib_count=300)


# ------------------------------------------------------------------------------------------ sensitivity (both flavours)

@pytest.mark.parametrize("flavour", ["cpu", "trt"])
def test_leave_one_out_on_both_flavours(tmp_path, screw_data, flavour):
    if flavour == "trt":
        pytest.importorskip("modelopt.onnx", reason="needs NVIDIA ModelOpt: pip install 'defectrt[modelopt]'")
    from defectrt.export.onnx import export_onnx
    from defectrt.export.sensitivity import (float_layers, output_distance, quantized_layers, switchable_model, _run,
                                             _session)

    fp32 = str(tmp_path / "fp32.onnx")
    export_onnx("demo:screw", fp32, imgsz=(64, 96), grid_sample="lowered")
    int8 = str(tmp_path / "int8.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        P.quantize_int8(fp32, int8, os.path.join(screw_data, "images", "train"), calib_count=4, flavour=flavour,
                        target_trt="10.3")
        blob = CalibrationReader(os.path.join(screw_data, "images", "train"), (64, 96), calib_count=2).all()
    model, source = onnx.load(int8), onnx.load(fp32)
    layers = quantized_layers(model)
    ops = {n.name: n.op_type for n in model.graph.node}
    assert sum(ops[n] == "Conv" for n in layers) > 50 and "Add" in {ops[n] for n in layers}
    assert not {ops[n] for n in layers} & {"QuantizeLinear", "DequantizeLinear"}
    assert not set(layers) & set(P.stem_nodes(fp32)) and "/model.1/conv/Conv" in layers
    ref = _run(_session(fp32), blob)
    all_float = _run(_session(float_layers(model, layers, source)), blob)
    # every quantized layer back in float: close to FP32 (what remains is FP16 in the trt form)
    assert output_distance(ref, all_float) < 0.5 * output_distance(ref, _run(_session(model), blob))
    # the one-graph form used for ranking computes exactly the edited graphs (compared unfused: ONNX Runtime
    # runs the switchable graph's Q/DQ as simulated quantization, an edited graph with integer kernels)
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL

    def unfused(m):  # no graph optimisation: ONNX Runtime's Cast elimination changes FP16 numerics too
        return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])

    switched = unfused(switchable_model(model, layers, source))
    image = next(i.name for i in switched.get_inputs() if i.name != "layer_float")
    for flags, edited in ((np.ones(len(layers), bool), layers), (np.eye(len(layers), dtype=bool)[1], layers[1:2])):
        expected = unfused(float_layers(model, edited, source)).run(None, {image: blob[:1]})[0]
        got = switched.run(None, {image: blob[:1], "layer_float": flags})[0]
        # boxes in pixels (up to 96) and scores; FP16 parts of the trt form round a little differently
        np.testing.assert_allclose(got, expected, rtol=5e-3, atol=0.1)


# ------------------------------------------------------------------------------------------ QAT

def _q_scale(model, consumer, slot=0):
    """Scale of the QuantizeLinear whose DequantizeLinear feeds `consumer`'s input `slot`."""
    from onnx import numpy_helper

    producers = {o: n for n in model.graph.node for o in n.output}
    inits = {t.name: t for t in model.graph.initializer}
    node = next(n for n in model.graph.node if n.name == consumer)
    dq, q = P.qdq_pair(producers, node.input[slot])
    return float(numpy_helper.to_array(inits[q.input[1]]).reshape(-1)[0])


@pytest.mark.parametrize("flavour", ["cpu", "trt"])
def test_qat_fake_quant_sits_where_the_ptq_graph_quantizes(tmp_path, screw_data, flavour):
    if flavour == "trt":
        pytest.importorskip("modelopt.onnx", reason="needs NVIDIA ModelOpt: pip install 'defectrt[modelopt]'")
    import torch

    from defectrt.export.onnx import export_onnx
    from defectrt.models import resolve_model_ref
    from defectrt.train.qat import QuantPlan, transplant_activation_scales

    fp32, ptq, ptq2 = (str(tmp_path / n) for n in ("fp32.onnx", "ptq.onnx", "ptq2.onnx"))
    export_onnx("demo:screw", fp32, imgsz=(64, 96), for_cpu=flavour == "cpu", target_trt="10.3")
    images = os.path.join(screw_data, "images", "train")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        P.quantize_int8(fp32, ptq, images, calib_count=4, flavour=flavour, target_trt="10.3")
        image = CalibrationReader(images, (64, 96), calib_count=1).all()
    net = resolve_model_ref("demo:screw").fuse().eval()
    plan = QuantPlan.build(net, fp32, ptq, image)
    rec = plan.record()
    # every quantized input of the graph (convolution inputs and weights, and for the flavour's Adds /
    # Concats / pools / SiLUs) found in the torch forward pass
    assert rec["quantized_inputs_in_graph"] > (400 if flavour == "cpu" else 200)
    assert rec["fake_quantized_in_training"] >= 0.97 * rec["quantized_inputs_in_graph"]
    model = onnx.load(ptq)
    assert len(plan.weights) == sum(n.op_type == "Conv" and n.input[1] not in {t.name for t in model.graph.initializer}
                                    for n in model.graph.node)
    # the stem (PTQ leaves it float) has no fake quant; the next conv reads PTQ's scale for its input
    assert ("conv2d", 0) not in plan.acts and ("conv2d", 0) not in plan.weights
    assert plan.acts[("conv2d", 1)][0][0] == pytest.approx(_q_scale(model, "/model.1/conv/Conv"), rel=1e-6)
    adds = [k for k in plan.acts if "add" in k[0]]
    assert adds, "the residual Adds that both flavours quantize"
    if flavour == "cpu":  # ONNX Runtime also quantizes the sigmoid inside every SiLU
        assert sum("sigmoid" in v for v in plan.acts.values()) > 50
    x = torch.from_numpy(image)
    with torch.no_grad():
        ref = net(x)
        with plan.fake_quant():
            fq = net(x)
        again = net(x)
    assert torch.isfinite(fq).all() and not torch.equal(fq, ref)
    assert torch.equal(again, ref)  # nothing left behind after the block
    # QAT export: the re-calibrated graph gets the scales the fine-tuning used
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        P.quantize_int8(fp32, ptq2, images, calib_count=1, flavour=flavour, target_trt="10.3")
    before = _q_scale(onnx.load(ptq2), "/model.1/conv/Conv")
    assert before != pytest.approx(_q_scale(model, "/model.1/conv/Conv"), rel=1e-3)
    assert transplant_activation_scales(ptq, ptq2) > 30
    assert _q_scale(onnx.load(ptq2), "/model.1/conv/Conv") == pytest.approx(_q_scale(model, "/model.1/conv/Conv"))


@pytest.mark.parametrize("flavour", ["cpu", "trt"])
def test_qat_build_exports_qdq_that_onnxruntime_runs(tmp_path, screw_data, screw_image, flavour):
    if flavour == "trt":
        pytest.importorskip("modelopt.onnx", reason="needs NVIDIA ModelOpt: pip install 'defectrt[modelopt]'")
    import torch

    from defectrt.export.bundle import build_bundle
    from defectrt.runtime.detector import Detector

    out = str(tmp_path / "qat.bundle")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        manifest = build_bundle("demo:screw", out, precision="int8", int8_flavour=flavour, calib=screw_data,
                                calib_count=4, qat_epochs=1, imgsz=(64, 96), target_trt="10.3", val=screw_data,
                                gate=G.GateOptions(accept_loss=True, fallback=False))
    qat = manifest.int8_qat
    assert qat["epochs"] == 1 and qat["flavour"] == flavour and len(qat["plan"]["not_found"]) <= 5
    assert qat["plan"]["fake_quantized_in_training"] > 200 and qat["activation_scales_from_ptq"] > 30
    assert all(np.isfinite(qat["loss_per_epoch"]))
    assert manifest.accuracy_gate and manifest.val.int8  # the same gate applied
    model = onnx.load(os.path.join(out, "model.onnx"))
    assert sum(n.op_type == "QuantizeLinear" for n in model.graph.node) > 20
    assert not P.island_violations(model)
    dets = Detector(out, conf=0.01)(screw_image[0])
    assert dets.boxes.shape[1] == 4
    assert torch.isfinite(torch.tensor(dets.scores)).all()
