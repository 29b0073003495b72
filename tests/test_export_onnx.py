"""`defectrt export onnx` / `export check`: parity with PyTorch for every variant, the grid-sample choice,
the TensorRT support check, dynamic batch and H/W, checkpoints, metadata, and the errors users can cause."""
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")

from defectrt import models  # noqa: E402
from defectrt.cli import main  # noqa: E402
from defectrt.errors import OutputExistsError, UserInputError  # noqa: E402
from defectrt.export import check as check_mod  # noqa: E402
from defectrt.export.check import check_onnx, parse_trt_version, support_for  # noqa: E402
from defectrt.export.islands import island_intact, island_nodes, repair_island  # noqa: E402
from defectrt.export.onnx import choose_grid_sample, export_onnx  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_torch_thread")

IMGSZ = 160
CONTRACT_KEYS = {"names", "imgsz", "stride", "variant", "grid_sample", "nms", "defectrt_version", "weights_sha256",
                 "precision", "task"}


def make(name, nc=3, seed=0):
    torch.manual_seed(seed)
    return models.create(name, nc=nc, names=["scratch", "dent", "rust"][:nc]).eval()


def run_ort(path, x):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {"images": x})[0]


def torch_out(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def rel_diff(a, b):
    return float(np.max(np.abs(a - b))) / float(np.max(b) - np.min(b))


def meta(path):
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One native and one lowered yolo11n-dysample export shared by several tests."""
    d = tmp_path_factory.mktemp("exp")
    model = make("yolo11n-dysample")
    out = {"model": model}
    for mode in ("native", "lowered"):
        out[mode] = export_onnx(model, str(d / "{}.onnx".format(mode)), imgsz=IMGSZ, grid_sample=mode)
    return out


@pytest.mark.parametrize("name,mode", [
    ("yolo11n", "auto"), ("yolo11n-dysample", "native"), ("yolo11n-dysample", "lowered"), ("yolo11n-eucb", "auto"),
    ("yolo11n-sme", "auto"), ("yolo11n-ghost", "auto"), ("yolo11n-dwconv", "auto"),
])
def test_every_variant_matches_pytorch_in_onnxruntime(tmp_path, name, mode, exported):
    if name == "yolo11n-dysample":  # already exported by the fixture
        model, result = exported["model"], exported[mode]
    else:
        model = make(name)
        result = export_onnx(model, str(tmp_path / "m.onnx"), imgsz=IMGSZ, grid_sample=mode)
    x = np.random.default_rng(5).random((1, 3, IMGSZ, IMGSZ), dtype=np.float32)  # not the export's own input
    got, want = run_ort(result.path, x), torch_out(model, x)
    assert got.shape == want.shape == (1, 4 + 3, (20 * 20 + 10 * 10 + 5 * 5))
    assert rel_diff(got, want) < 1e-4
    assert result.max_abs_diff is not None and result.max_abs_diff / result.output_range < 1e-4
    expected = {"yolo11n-dysample": mode}.get(name, "none")
    assert result.grid_sample == meta(result.path)["grid_sample"] == expected


def test_torchscript_exporter_keeps_module_scopes_for_the_island(exported):
    for mode, op in (("native", "GridSample"), ("lowered", "Floor")):
        names = island_nodes(exported[mode].path)
        assert any(n.startswith("/model.11/sampler/") for n in names) and any(n.startswith("/model.14/sampler/") for n in names)
        sampling = [n.name for n in onnx.load(exported[mode].path).graph.node if n.op_type == op]
        assert sampling and all("/sampler/" in n for n in sampling)
    assert exported["native"].simplified and exported["lowered"].simplified


def test_metadata_follows_the_contract(exported):
    m = meta(exported["lowered"].path)
    assert CONTRACT_KEYS <= set(m)
    assert json.loads(m["names"]) == {"0": "scratch", "1": "dent", "2": "rust"}
    assert json.loads(m["imgsz"]) == [IMGSZ, IMGSZ] and m["stride"] == "32"
    assert m["variant"] == "yolo11n-dysample" and m["grid_sample"] == "lowered" and m["nms"] == "none"
    assert m["precision"] == "fp32" and m["task"] == "detect" and len(m["weights_sha256"]) == 64
    assert m["weights_sha256"] == meta(exported["native"].path)["weights_sha256"]  # same weights, same digest
    g = onnx.load(exported["lowered"].path).graph
    assert [i.name for i in g.input] == ["images"] and [o.name for o in g.output] == ["output0"]


def test_lowered_has_no_gridsample_and_passes_trt82_check(exported, capsys):
    path = exported["lowered"].path
    assert "GridSample" not in {n.op_type for n in onnx.load(path).graph.node}
    report = check_onnx(path, "8.2")
    assert report.ok, report.format()
    assert main(["export", "check", path, "--target-trt", "8.2"]) == 0


def test_native_fails_trt82_check_naming_the_node(exported, capsys):
    path = exported["native"].path
    report = check_onnx(path, "8.2")
    assert not report.ok
    assert {i.node for i in report.errors} == {"/model.11/sampler/GridSample", "/model.14/sampler/GridSample"}
    assert main(["export", "check", path, "--target-trt", "8.2"]) == 1
    out = capsys.readouterr().out
    assert "/model.11/sampler/GridSample" in out and "8.5" in out
    assert main(["export", "check", path, "--target-trt", "8.5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True


def test_target_trt_82_chooses_lowered_at_opset_13_and_dynamic_batch_runs_2_and_3(tmp_path):
    model = make("yolo11n-dysample", seed=2)
    r = export_onnx(model, str(tmp_path / "j.onnx"), imgsz=IMGSZ, target_trt="8.2", dynamic_batch=True)
    assert r.grid_sample == "lowered" and "8.2" in r.grid_sample_reason and r.opset == 13 and r.batch == "dynamic"
    assert r.check is not None and r.check.ok
    assert onnx.load(r.path).opset_import[0].version == 13
    for b in (2, 3):
        x = np.random.default_rng(b).random((b, 3, IMGSZ, IMGSZ), dtype=np.float32)
        got, want = run_ort(r.path, x), torch_out(model, x)
        assert got.shape[0] == b and rel_diff(got, want) < 1e-4


def test_dynamic_hw_is_correct_at_other_sizes(tmp_path):
    model = make("yolo11n-dysample", seed=3)
    r = export_onnx(model, str(tmp_path / "hw.onnx"), imgsz=IMGSZ, dynamic_hw=True, grid_sample="lowered")
    x = np.random.default_rng(0).random((1, 3, 96, 224), dtype=np.float32)
    got, want = run_ort(r.path, x), torch_out(model, x)
    assert got.shape == want.shape == (1, 7, 12 * 28 + 6 * 14 + 3 * 7) and rel_diff(got, want) < 1e-4


def test_export_from_an_ultralytics_checkpoint(tmp_path):
    from ultralytics_fixture import write_ultralytics_checkpoint

    src = make("yolo11n-dysample", nc=2, seed=4)
    ckpt = write_ultralytics_checkpoint(src, str(tmp_path / "best.pt"))
    r = export_onnx(ckpt, str(tmp_path / "best.onnx"), imgsz=IMGSZ)
    loaded = models.load(ckpt)
    m = meta(r.path)
    assert json.loads(m["names"]) == {"0": "scratch", "1": "dent"}
    assert m["weights_sha256"] == loaded.weights_sha256 and m["grid_sample"] == "native"
    x = np.random.default_rng(9).random((1, 3, IMGSZ, IMGSZ), dtype=np.float32)
    assert rel_diff(run_ort(r.path, x), torch_out(loaded, x)) < 1e-4


def test_existing_output_is_not_overwritten_without_force(tmp_path):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"precious")
    with pytest.raises(OutputExistsError):
        export_onnx("yolo11n", str(out), imgsz=IMGSZ)
    assert out.read_bytes() == b"precious"
    export_onnx("yolo11n", str(out), imgsz=IMGSZ, force=True, simplify=False)
    assert meta(out)["variant"] == "yolo11n"
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]


@pytest.mark.parametrize("kwargs,match", [
    (dict(model_or_ref="yolo11q-nothing"), "neither a checkpoint file nor a known model"),
    (dict(grid_sample="native", opset=15), "opset >= 16"),
    (dict(imgsz=100), "multiple of 32"),
    (dict(imgsz=(96, 200)), "multiple of 32"),
    (dict(grid_sample="native", target_trt="8.2"), "TensorRT 8.2"),
    (dict(grid_sample="native", opset=20), "NVIDIA/TensorRT#4646"),
    (dict(target_trt="7.1"), "not covered"),
    (dict(opset=9), "--opset 9"),
    (dict(batch=0), "--batch"),
])
def test_bad_input_is_a_clear_user_error(tmp_path, kwargs, match):
    kwargs = dict(dict(model_or_ref="yolo11n-dysample", output=str(tmp_path / "m.onnx"), imgsz=IMGSZ), **kwargs)
    with pytest.raises(UserInputError, match=match):
        export_onnx(**kwargs)
    assert not os.path.exists(tmp_path / "m.onnx")


def test_unwritable_output_is_a_clear_user_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(UserInputError, match="cannot create the output folder"):
        export_onnx("yolo11n", str(blocker / "sub" / "m.onnx"), imgsz=IMGSZ)


def test_cli_export_onnx_says_what_it_chose(tmp_path, capsys):
    out = str(tmp_path / "c.onnx")
    assert main(["export", "onnx", "yolo11n-dysample", "-o", out, "--imgsz", "160", "--target-trt", "8.4",
                 "--no-simplify"]) == 0
    printed = capsys.readouterr().out
    assert "grid-sample: lowered" in printed and "TensorRT 8.4 has no GridSample" in printed and "max abs diff" in printed
    assert main(["export", "onnx", "yolo11n-dysample", "-o", out, "--imgsz", "160"]) == 1  # exists, no --force
    assert "--force" in capsys.readouterr().err


def test_auto_grid_sample_rule():
    assert choose_grid_sample("auto", True, 13, "8.2")[0] == "lowered"
    assert choose_grid_sample("auto", True, 17, "8.4.1")[0] == "lowered"
    assert choose_grid_sample("auto", True, 17, "8.5")[0] == "native"
    assert choose_grid_sample("auto", True, 17, "10.3")[0] == "native"
    mode, reason = choose_grid_sample("auto", True, 17, None)
    assert mode == "native" and "--target-trt" in reason
    assert choose_grid_sample("auto", True, 13, None)[0] == "lowered"
    assert choose_grid_sample("auto", True, 20, "10.3")[0] == "lowered"
    assert choose_grid_sample("lowered", False, 17, None)[0] == "none"
    # a file for ONNX Runtime on a CPU: auto lowers (faster there) unless a TensorRT target or the user says native
    mode, reason = choose_grid_sample("auto", True, 17, None, for_cpu=True)
    assert mode == "lowered" and "ONNX Runtime" in reason
    assert choose_grid_sample("auto", True, 17, "10.3", for_cpu=True)[0] == "native"
    assert choose_grid_sample("native", True, 17, None, for_cpu=True)[0] == "native"
    with pytest.raises(UserInputError):
        choose_grid_sample("bicubic", True, 17, None)


# --- the support table and the checker on small hand-made graphs ---------------------------------------

def _graph(nodes, inputs, outputs, opset, inits=()):
    from onnx import helper

    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _vi(name, shape, elem=onnx.TensorProto.FLOAT):
    return onnx.helper.make_tensor_value_info(name, elem, shape)


def test_support_table_facts():
    assert {"Gather", "GatherElements", "Floor", "Min", "Max", "Cast"} <= support_for("8.0")[1]["ops"]
    for v in ("8.0", "8.2", "8.4"):
        assert "GridSample" not in support_for(v)[1]["ops"]
    # onnx-tensorrt release/8.x-GA docs/operators.md headers: 8.0 and 8.2 "up to Opset 13", 8.4 "up to Opset 17"
    assert [support_for(v)[1]["max_opset"] for v in ("8.0", "8.2", "8.4")] == [13, 13, 17]
    for v in ("8.5", "8.6", "10.0", "10.3", "10.15", "11.0"):
        assert "GridSample" in support_for(v)[1]["ops"]
    assert support_for("10.9")[0] == "10.8" and support_for("8.3")[0] == "8.2" and support_for("11.1")[0] == "11.0"
    assert parse_trt_version("10.3.0.26") == (10, 3)
    with pytest.raises(UserInputError):
        parse_trt_version("latest")


def test_check_gridsample_rules():
    from onnx import helper

    def gs(opset, mode, rank):
        shape = [1, 2, 4, 4] if rank == 4 else [1, 2, 4, 4, 4]
        node = helper.make_node("GridSample", ["x", "g"], ["y"], name="gs", mode=mode)
        return _graph([node], [_vi("x", shape), _vi("g", [1, 4, 4, 2] if rank == 4 else [1, 4, 4, 4, 3])], [_vi("y", None)], opset)

    assert check_onnx(gs(17, "bilinear", 4), "8.6").ok
    renamed = check_onnx(gs(20, "linear", 4), "10.3")
    assert not renamed.ok and "NEAREST" in renamed.errors[0].message and renamed.errors[0].node == "gs"
    assert check_onnx(gs(20, "nearest", 4), "10.3").ok
    five_d = check_onnx(gs(20, "nearest", 5), "10.3")
    assert [i.message for i in five_d.errors if "4-D" in i.message]


def test_check_constant_inputs_opset_and_plugins(monkeypatch):
    from onnx import helper, numpy_helper

    lo = numpy_helper.from_array(np.array(0.0, np.float32), "lo")
    clip = helper.make_node("Clip", ["x", "lo", "hi"], ["y"], name="clip")
    m = _graph([clip], [_vi("x", [4]), _vi("hi", [])], [_vi("y", [4])], 13, [lo])
    r82 = check_onnx(m, "8.2")
    assert not r82.ok and "hi" in r82.errors[0].message  # run-time Clip bound: not on 8.0/8.2
    assert check_onnx(m, "8.5").ok

    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    rm = helper.make_node("ReduceMean", ["x", "axes"], ["y"], name="rm", keepdims=1)
    m18 = _graph([rm], [_vi("x", [2, 3])], [_vi("y", [2, 1])], 18, [axes])
    r = check_onnx(m18, "8.6")
    assert not r.ok and r.errors[0].node == "rm" and r.warnings  # axes-as-input ReduceMean vs an opset-17 parser
    assert check_onnx(m18, "10.3").ok

    plug = helper.make_node("MyGridSample_TRT", ["x"], ["y"], name="plug", domain="trt.plugins", plugin_version="2")
    mp = _graph([plug], [_vi("x", [4])], [_vi("y", [4])], 17)
    mp.opset_import.append(helper.make_opsetid("trt.plugins", 1))
    r = check_onnx(mp, "10.3")
    assert r.ok and any("library" in i.message for i in r.warnings)
    monkeypatch.setattr(check_mod, "_plugin_requirements", lambda name, version: {"interface": "IPluginV3"})
    assert check_onnx(mp, "10.3").ok
    r86 = check_onnx(mp, "8.6")
    assert not r86.ok and "IPluginV3" in r86.errors[0].message


def test_island_repair_re_marks_a_renamed_node(exported):
    before = onnx.load(exported["lowered"].path)
    after = onnx.load(exported["lowered"].path)
    victim = next(n for n in after.graph.node if n.name == "/model.11/sampler/Floor")
    victim.name = "renamed_by_a_pass"
    assert island_intact(before, after)  # a sampling node lost its mark
    renamed = repair_island(after)
    assert renamed and renamed[0][0] == "renamed_by_a_pass" and renamed[0][1].startswith("/model.11/sampler/")
    assert island_intact(before, after) == []


def test_plugin_mode_calls_the_plugin_helper_and_skips_ort(tmp_path, monkeypatch):
    import sys
    import types

    calls = []

    def replace_gridsample_with_plugin(model, target_trt):
        calls.append(target_trt)
        for node in model.graph.node:
            if node.op_type == "GridSample":
                node.op_type, node.domain = "GridSamplePlugin_TRT", "trt.plugins"
                del node.attribute[:]
        return model

    fake = types.ModuleType("defectrt.export.plugins")
    fake.replace_gridsample_with_plugin = replace_gridsample_with_plugin
    fake.PLUGIN_INTERFACES = {"GridSamplePlugin_TRT": "IPluginV2DynamicExt"}
    monkeypatch.setitem(sys.modules, "defectrt.export.plugins", fake)
    r = export_onnx(make("yolo11n-dysample"), str(tmp_path / "p.onnx"), imgsz=IMGSZ, grid_sample="plugin", target_trt="8.2")
    assert calls == ["8.2"] and r.grid_sample == "plugin" and r.opset == 16 and r.max_abs_diff is None
    ops = [n for n in onnx.load(r.path).graph.node if n.op_type == "GridSamplePlugin_TRT"]
    assert len(ops) == 2 and all("/sampler/" in n.name for n in ops)
    assert r.check.ok and any("library" in i.message for i in r.check.warnings)
