"""Checkpoints written by the REAL Ultralytics package (tests/fixtures/ultralytics, made by make_fixtures.py)
load without Ultralytics and reproduce the outputs Ultralytics computed, in PyTorch and after ONNX export."""
import json
import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from defectrt import models  # noqa: E402
from defectrt.models.yolo import yaml_value  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "ultralytics")
with open(os.path.join(FIXTURES, "manifest.json")) as _f:
    MANIFEST = json.load(_f)
NAMES = sorted(MANIFEST["fixtures"])
# A module each fixture must have been rebuilt with (so a fork cannot silently load as the stock model).
BLOCKS = {"yolo11n_dysample_nc4": "DySample", "yolo11n_sme_nc6": "MSFA", "yolo11n_nc3": "Upsample", "yolo11s_nc2": "Upsample",
          "multipliers_leaky_nc2": "LeakyReLU"}


def reference(name):
    return np.load(os.path.join(FIXTURES, "input.npy")), np.load(os.path.join(FIXTURES, name + ".out.npy"))


def assert_agrees(got, want):
    """Boxes within 0.05 px, scores within 1e-4 and, since one epoch leaves scores small, logits within 1e-3."""
    assert got.shape == want.shape
    box_err = np.abs(got[:, :4] - want[:, :4]).max()
    score_err = np.abs(got[:, 4:] - want[:, 4:]).max()

    def logit(p):
        p = np.clip(p.astype(np.float64), 1e-12, 1 - 1e-12)
        return np.log(p / (1 - p))

    logit_err = np.abs(logit(got[:, 4:]) - logit(want[:, 4:])).max()
    assert box_err < 0.05 and score_err < 1e-4 and logit_err < 1e-3, (box_err, score_err, logit_err)


def test_fixtures_are_real_ultralytics_files():
    assert NAMES == ["multipliers_leaky_nc2", "yolo11n_dysample_nc4", "yolo11n_nc3", "yolo11n_sme_nc6", "yolo11s_nc2"]
    for name in NAMES:
        entry = MANIFEST["fixtures"][name]
        assert entry["nc"] != 80 and entry["train_args"]["epochs"] == 1
        assert {"model", "train_args", "date", "version"} <= set(entry["checkpoint_keys"])
        assert os.path.getsize(os.path.join(FIXTURES, name + ".pt")) == entry["bytes"]


@pytest.mark.parametrize("name", NAMES)
def test_fixture_loads_without_ultralytics_and_reproduces_its_outputs(name):
    x, want = reference(name)
    model = models.load(os.path.join(FIXTURES, name + ".pt"))
    assert not [m for m in sys.modules if m == "ultralytics" or m.startswith("ultralytics.")]
    nc = MANIFEST["fixtures"][name]["nc"]
    assert model.nc == nc and model.names == {i: "defect{}".format(i) for i in range(nc)}
    assert any(type(m).__name__ == BLOCKS[name] for m in model.modules())
    assert model.source_info["source_class"] == "ultralytics.nn.tasks.DetectionModel"
    with torch.no_grad():
        got = model(torch.from_numpy(x)).numpy()
    assert_agrees(got, want)


@pytest.mark.parametrize("name", NAMES)
def test_fixture_reproduces_ultralytics_features_and_raw_head(name):
    """One epoch leaves the decoded output near the head's priors, which a wrong backbone could still match; the
    neck features and the head's raw logits that Ultralytics computed are compared too (relative 1e-4)."""
    x, _ = reference(name)
    raw = np.load(os.path.join(FIXTURES, name + ".raw.npz"))
    model = models.load(os.path.join(FIXTURES, name + ".pt"))
    detect = model.model[-1]
    with torch.no_grad():
        feats = model._forward_features(torch.from_numpy(x))
        maps = torch.cat([torch.cat((detect.cv2[i](f), detect.cv3[i](f)), 1).flatten(2) for i, f in enumerate(feats)], 2)
    got = {"feats{}".format(i): f.numpy() for i, f in enumerate(feats)}
    got["boxes"], got["scores"] = maps[:, : 4 * detect.reg_max].numpy(), maps[:, 4 * detect.reg_max:].numpy()
    assert sorted(got) == sorted(raw.files)
    for key, want in raw.items():
        assert got[key].shape == want.shape, key
        assert np.abs(got[key] - want).max() <= 1e-4 * np.abs(want).max(), key


@pytest.mark.parametrize("name", NAMES)
def test_fixture_exports_to_onnx_with_the_same_outputs(tmp_path, name):
    import onnxruntime as ort

    from defectrt.export.onnx import export_onnx

    x, want = reference(name)
    result = export_onnx(os.path.join(FIXTURES, name + ".pt"), str(tmp_path / "m.onnx"), imgsz=x.shape[2:],
                         grid_sample="native", simplify=False)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(result.path, so, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"images": x})[0]
    assert_agrees(got, want)
    assert not [m for m in sys.modules if m == "ultralytics" or m.startswith("ultralytics.")]


def test_multiplier_yaml_gets_the_activation_and_head_ultralytics_built():
    """depth/width multiples, `activation: nn.LeakyReLU(0.1)`, and no C3k2: Ultralytics' YOLOv8 class branch."""
    model = models.load(os.path.join(FIXTURES, "multipliers_leaky_nc2.pt"))
    acts = {type(m).__name__ for m in model.modules() if type(m).__name__ in ("SiLU", "LeakyReLU")}
    assert acts == {"LeakyReLU"} and model.model[0].act.negative_slope == 0.1
    assert type(model.model[-1].cv3[0][0]).__name__ == "Conv"
    assert len(model.model[2].m) == 1 and len(model.model[4].m) == 2  # repeats 3 and 6 at depth 0.33


def test_yolo11s_weights_were_fp16_and_the_rest_of_the_file_is_ignored():
    """The file holds FP16 weights (converted once to float32) plus training state we never interpret."""
    from defectrt.models.torchzip import Placeholder, load

    ckpt = load(os.path.join(FIXTURES, "yolo11s_nc2.pt"))
    assert isinstance(ckpt["model"], Placeholder) and isinstance(ckpt["train_args"], dict)
    conv = ckpt["model"].state["_modules"]["model"].state["_modules"]["0"].state["_modules"]["conv"]
    assert conv.state["_parameters"]["weight"].dtype == torch.float16


@pytest.mark.parametrize("raw,value", [
    ("None", None), ("True", True), ("False", False), ("2", 2), ("0.25", 0.25), ("nc", 7), ("nearest", "nearest"),
    ("lp", "lp"), ("nn.ReLU", "nn.ReLU"), ("__import__('os')", "__import__('os')"), ("9" * 500, "9" * 500), (3, 3),
])
def test_yaml_arguments_are_read_as_ultralytics_reads_them(raw, value):
    assert yaml_value(raw, nc=7) == value


def test_stock_yaml_with_string_arguments_builds_and_module_paths_resolve():
    """The yaml of a stock best.pt keeps 'None' as a string; fork modules may be named by their module path."""
    cfg = models.create("yolo11n", nc=3).yaml
    cfg = json.loads(json.dumps(cfg).replace("null", '"None"'))
    assert cfg["head"][0][3] == ["None", 2, "nearest"]
    cfg["head"][0][2] = "torch.nn.Upsample"
    cfg["head"][3] = [-1, 1, "ultralytics.nn.extra_modules.EUCB", [128]]
    model = models.DetectionModel(cfg)
    assert type(model.model[14]).__name__ == "EUCB" and model.model[14].pwc[0].out_channels == 128
    assert model.model[11].mode == "nearest" and model.model[11].scale_factor == 2
