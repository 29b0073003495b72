import os

import pytest

torch = pytest.importorskip("torch")

from defectrt import models  # noqa: E402
from defectrt.errors import UserInputError  # noqa: E402
from defectrt.models.complexity import count_parameters, gflops  # noqa: E402
from defectrt.models.dysample import DySample  # noqa: E402

from ultralytics_fixture import write_ultralytics_checkpoint  # noqa: E402

ULTRALYTICS_PARAMS = {"n": 2_624_080, "s": 9_458_752, "m": 20_114_688, "l": 25_372_160, "x": 56_966_176}


@pytest.mark.parametrize("scale", list(ULTRALYTICS_PARAMS))
def test_parameter_counts_match_ultralytics(scale):
    assert count_parameters(models.create("yolo11" + scale)) == ULTRALYTICS_PARAMS[scale]


def test_dysample_adds_12352_parameters_to_yolo11n():
    diff = count_parameters(models.create("yolo11n-dysample")) - ULTRALYTICS_PARAMS["n"]
    assert diff == 12_352


def test_registry_lists_every_variant_and_builds_it():
    names = models.available()
    for suffix in ("", "-dysample", "-eucb", "-sme", "-ghost", "-dwconv"):
        for scale in "nsmlx":
            assert "yolo11{}{}".format(scale, suffix) in names
    for suffix in ("-eucb", "-sme", "-ghost", "-dwconv"):
        m = models.create("yolo11n" + suffix, nc=3).eval()
        assert m(torch.zeros(1, 3, 64, 96)).shape == (1, 7, 8 * 12 + 4 * 6 + 2 * 3)


def test_eval_output_layout_is_cxcywh_pixels_and_sigmoid_scores():
    m = models.create("yolo11n", nc=5).eval()
    with torch.no_grad():
        y = m(torch.rand(2, 3, 128, 160))
    assert y.shape == (2, 9, 16 * 20 + 8 * 10 + 4 * 5)
    scores = y[:, 4:]
    assert scores.min() >= 0 and scores.max() <= 1
    w, h = y[:, 2], y[:, 3]
    assert (w > 0).all() and (h > 0).all()
    # Anchor centres: first anchor of stride 8 sits at (4, 4) px; boxes are centred near it.
    assert abs(float(y[0, 0, 0]) - 4.0) < 8 * 16 and abs(float(y[0, 1, 0]) - 4.0) < 8 * 16


def test_dysample_with_zero_offsets_equals_bilinear_upsampling():
    torch.manual_seed(0)
    for style in ("lp", "pl"):
        ds = DySample(16, scale=2, style=style, groups=4).eval()
        torch.nn.init.zeros_(ds.offset.weight)
        torch.nn.init.zeros_(ds.offset.bias)
        x = torch.randn(2, 16, 7, 9)
        ref = torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        assert (ds(x) - ref).abs().max().item() < 1e-6


def test_dysample_offsets_move_samples():
    torch.manual_seed(0)
    ds = DySample(16, dyscope=True).eval()
    x = torch.randn(1, 16, 6, 6)
    ref = torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    torch.nn.init.normal_(ds.offset.weight, std=1.0)
    assert (ds(x) - ref).abs().max().item() > 1e-2
    assert "model.11.scope.weight" in models.create("yolo11n-dysample", dysample_dyscope=True).state_dict()


def test_fuse_preserves_outputs():
    torch.manual_seed(0)
    for name in ("yolo11n-sme", "yolo11n-dysample"):
        m = models.create(name, nc=3).eval()
        for mod in m.modules():  # non-trivial BN statistics so folding is exercised
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
        x = torch.rand(1, 3, 96, 96)
        with torch.no_grad():
            before = m(x)
            after = m.fuse()(x)
        assert not any(isinstance(mod, torch.nn.BatchNorm2d) for mod in m.modules())
        assert (before - after).abs().max().item() < 1e-3


def test_gflops_match_sme_paper_baseline():
    g = gflops(models.create("yolo11n", nc=6), 640)
    assert abs(g - 6.3) / 6.3 < 0.03
    assert gflops(models.create("yolo11n-eucb", nc=6), 640) > g  # EUCB costs more than nearest upsampling


def test_safetensors_roundtrip(tmp_path):
    m = models.create("yolo11n-dysample", nc=2, names=["scratch", "dent"]).eval()
    p = models.save(m, str(tmp_path / "a.safetensors"), imgsz=(96, 160))
    m2 = models.load(p)
    x = torch.rand(1, 3, 96, 160)
    with torch.no_grad():
        assert torch.equal(m(x), m2(x))
    assert m2.names == {0: "scratch", 1: "dent"} and m2.imgsz == [96, 160] and m2.variant == "yolo11n-dysample"
    with pytest.raises(FileExistsError, match="--force"):
        models.save(m, p)


@pytest.mark.parametrize("variant,key", [("yolo11n-dysample", "model"), ("yolo11n-sme", "ema"), ("yolo11n-ghost", "model")])
def test_ultralytics_checkpoint_loads_and_reproduces_outputs(tmp_path, variant, key):
    torch.manual_seed(1)
    src = models.create(variant, nc=3, names=["a", "b", "c"]).eval()
    path = write_ultralytics_checkpoint(src, str(tmp_path / "best.pt"), key=key)
    assert not any(n == "ultralytics" or n.startswith("ultralytics.") for n in list(__import__("sys").modules))
    loaded = models.load(path)
    assert loaded.names == {0: "a", 1: "b", 2: "c"}
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        ref = src.half().float()(x)  # the checkpoint holds FP16 weights
        out = loaded(x)
    assert (ref - out).abs().max().item() < 1e-3


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch {}".format(_Payload.marker),))


def test_code_execution_payload_is_refused(tmp_path):
    _Payload.marker = str(tmp_path / "pwned")
    path = tmp_path / "evil.pt"
    torch.save({"model": _Payload()}, str(path))
    with pytest.raises(UserInputError, match="refused.*system.*nothing from it was executed"):
        models.load(str(path))
    assert not os.path.exists(_Payload.marker)


def test_payload_via_builtins_eval_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (eval, ("__import__('os').getpid()",))

    path = tmp_path / "evil2.pt"
    torch.save({"model": Evil()}, str(path))
    with pytest.raises(UserInputError, match="refused"):
        models.load(str(path))


def test_clear_errors_for_bad_inputs(tmp_path):
    with pytest.raises(UserInputError, match="unknown model 'yolo12n'.*available"):
        models.create("yolo12n")
    with pytest.raises(UserInputError, match="nc must be a positive integer"):
        models.create("yolo11n", nc=0)
    with pytest.raises(UserInputError, match="2 class names given for nc=3"):
        models.create("yolo11n", nc=3, names=["a", "b"])
    m = models.create("yolo11n", nc=2)
    p = models.save(m, str(tmp_path / "m.safetensors"))
    with pytest.raises(UserInputError, match="nc=2.*nc=5"):
        models.load(p, nc=5)
    data = open(p, "rb").read()
    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserInputError, match="trunc.safetensors"):
        models.load(str(trunc))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(UserInputError, match="junk.pt.*not a readable"):
        models.load(str(junk))
    notdict = tmp_path / "list.pt"
    torch.save([1, 2, 3], str(notdict))
    with pytest.raises(UserInputError, match="list.pt.*checkpoint dict"):
        models.load(str(notdict))
    with pytest.raises(UserInputError, match="no such checkpoint"):
        models.load(str(tmp_path / "missing.pt"))


def test_wrong_shapes_in_checkpoint_are_named(tmp_path):
    src = models.create("yolo11n", nc=3).eval()
    path = write_ultralytics_checkpoint(src, str(tmp_path / "best.pt"))
    # Corrupt the architecture: claim nc=4 while the weights have 3 classes.
    ckpt_model = models.create("yolo11n", nc=3)
    ckpt_model.yaml = dict(ckpt_model.yaml, nc=4)
    ckpt_model.names = {i: str(i) for i in range(4)}
    bad = write_ultralytics_checkpoint(ckpt_model, str(tmp_path / "bad.pt"))
    with pytest.raises(UserInputError, match="bad.pt: weights do not fit.*model.23.cv3"):
        models.load(bad)
    assert models.load(path).nc == 3


def test_resolve_model_ref(tmp_path):
    m = models.resolve_model_ref("yolo11n-eucb", nc=2)
    assert m.nc == 2 and not m.training
    with pytest.raises(UserInputError, match="neither a checkpoint file nor a known model"):
        models.resolve_model_ref("nope")
    with pytest.raises(UserInputError, match="unknown demo model"):
        models.resolve_model_ref("demo:nothing")


def test_models_cli_table(capsys):
    from defectrt.cli import main

    assert main(["models", "--scales", "n", "--nc", "6", "--variant", "yolo11n", "--variant", "yolo11n-sme"]) == 0
    out = capsys.readouterr().out
    assert "2,591,010" in out and "yolo11n-sme" in out and "6.38" in out


@pytest.mark.parametrize("name,variant,kind,imgsz,block", [
    ("screw", "yolo11n-dysample", "screw", (384, 672), "DySample"),
    ("pcb", "yolo11n-sme", "pcb", (640, 640), "MSFA"),
])
def test_shipped_demo_models_load_and_find_the_defects_of_their_task(name, variant, kind, imgsz, block):
    """demo:screw and demo:pcb: the right architecture, names and input size, and trained: on synthetic images
    of their kind from a seed no training set used, most labelled defects are found at IoU 0.5 and the
    right class."""
    from box_helpers import labels_found
    from defectrt.data.synth import KINDS, generate
    from defectrt.models.checkpoint import DEMO_DIR, DEMOS
    from defectrt.runtime.postprocess import postprocess
    from defectrt.runtime.preprocess import preprocess

    if not os.path.isfile(os.path.join(DEMO_DIR, DEMOS[name])):
        pytest.skip("demo:{} is not shipped in this checkout".format(name))
    model = models.resolve_model_ref("demo:" + name)
    assert any(type(m).__name__ == block for m in model.modules())
    assert tuple(model.imgsz) == imgsz and model.variant == variant
    assert [model.names[i] for i in range(len(model.names))] == list(KINDS[kind])
    found = total = 0
    for index in range(3):
        img, labels = generate(kind, index, seed=4242)
        blob, infos = preprocess([img], imgsz)
        with torch.no_grad():
            pred = model(torch.from_numpy(blob))
        pred = pred[0] if isinstance(pred, (list, tuple)) else pred
        det = postprocess(pred.numpy(), infos, conf=0.25, iou=0.45)[0]
        hits = labels_found(labels, img.shape[0], img.shape[1], det.boxes, det.class_ids)
        found, total = found + int(hits.sum()), total + len(hits)
    assert total >= 3 and found / total >= 0.7, (found, total)


def test_models_table_cache_matches_the_models_and_misses_are_computed(tmp_path):
    """issue 19: `defectrt models` reads the shipped GFLOPs cache; a cached row equals a fresh computation, and a
    row not in the cache (another nc) is computed, not invented."""
    from defectrt import zoo_table as zoo

    cache = zoo.load_cache()
    key = zoo._key("yolo11n", 80, (640, 640))
    assert key in cache, "zoo_complexity.json lacks yolo11n: run python -m defectrt.zoo_table --write-cache"
    fresh = zoo.compute_row("yolo11n", 80, (640, 640))
    assert cache[key]["params"] == fresh["params"] and cache[key]["gflops"] == pytest.approx(fresh["gflops"], abs=0.01)
    fake = {key: {"params": 1, "gflops": 2.0}}
    assert zoo.table(640, 80, variants=["yolo11n"], cache=fake) == [{"model": "yolo11n", "params": 1, "gflops": 2.0}]
    assert zoo.table(640, 80, variants=["yolo11n"], cache=fake, recompute=True)[0]["params"] == fresh["params"]
    assert len(cache) == len(models.available()) and zoo.zoo_names() == models.available()
