"""issue 19 item 2: each listed first-use case ends in one clear line (exit 1, no traceback; --debug shows it),
and inputs are refused before the first expensive step."""
import json
import logging
import os
import shutil
import subprocess
import sys

import pytest

from defectrt.cli import build_parser, main
from defectrt.errors import UserInputError

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def _fails(capsys, argv, *words):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for w in words:
        assert w in err, err
    return err


@pytest.mark.parametrize("argv", [
    ["export", "onnx", "yolo11n", "-o", "x.onnx", "--imgsz", "-640"],
    ["export", "build", "yolo11n", "-o", "x.bundle", "--imgsz", "-640"],
    ["detect", "-m", "x.onnx", "img.jpg", "--imgsz", "-640"],
    ["val", "--model", "x.onnx", "--data", "d", "--imgsz", "-640"],
    ["models", "--imgsz", "-640"],
])
def test_negative_imgsz_is_refused_everywhere(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "img.jpg").write_bytes(b"")  # detect opens its source first; the size is refused before the model
    _fails(capsys, argv, "--imgsz -640", "positive multiples of 32")


def test_imgsz_not_a_multiple_of_32_names_the_nearest(capsys, tmp_path):
    _fails(capsys, ["val", "--model", str(tmp_path / "X.pt"), "--data", str(tmp_path), "--imgsz", "650"],
           "--imgsz 650", "multiple of 32", "--imgsz 640")


def test_export_check_of_a_checkpoint_hints_to_export_first(capsys):
    _fails(capsys, ["export", "check", "best.pt", "--target-trt", "8.2"],
           "export the checkpoint first", "defectrt export onnx best.pt --target-trt 8.2")


def test_debug_shows_the_traceback(capsys):
    for argv in (["--debug", "export", "check", "best.pt", "--target-trt", "8.2"],
                 ["export", "check", "best.pt", "--target-trt", "8.2", "--debug"]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert "Traceback" in err and "UserInputError" in err and "export the checkpoint first" in err


def test_unexpected_error_is_one_line_and_points_at_debug(capsys, monkeypatch):
    import defectrt.cli.inspect_cmd as cmd

    def boom(args):
        raise RuntimeError("Sizes of tensors must match")

    monkeypatch.setattr(cmd, "run", boom)
    err = _fails(capsys, ["inspect", "x.onnx"], "RuntimeError: Sizes of tensors must match", "--debug")
    assert err.count("\n") == 1


def test_precision_has_help_text():
    parser = build_parser()
    export = parser._subparsers._group_actions[0].choices["export"]
    build = export._subparsers._group_actions[0].choices["build"]
    text = build.format_help()
    assert "int8 (needs --calib" in " ".join(text.split()) and "fp16 (default" in text


def test_device_only_install_says_install_export(tmp_path):
    """torch unimportable (a device-only install): `models` says what to install, no traceback."""
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'torch' or name.startswith('torch.'):\n"
            "            raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n"
            "sys.meta_path.insert(0, Block())\n"
            "from defectrt.cli import main\n"
            "sys.exit(main(['models', '--nc', '3', '--variant', 'yolo11n']))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHONPATH=SRC))
    assert p.returncode == 1, p.stderr
    assert "pip install 'defectrt[export]'" in p.stderr and "Traceback" not in p.stderr


def test_read_only_save_dir_message():
    from defectrt.friendly import explain

    msg = explain(PermissionError(13, "Permission denied", "/line/results.jsonl"))
    assert "/line/results.jsonl" in msg and "--save-dir" in msg


def test_export_build_refuses_an_empty_val_before_exporting(capsys, tmp_path, monkeypatch):
    from defectrt.export import bundle

    def no_export(*a, **k):
        raise AssertionError("exported before checking --val")

    monkeypatch.setattr(bundle, "_export_fp32", no_export)
    empty = tmp_path / "emptydir"
    empty.mkdir()
    _fails(capsys, ["export", "build", "yolo11n", "-o", str(tmp_path / "b.bundle"), "--precision", "fp32",
                    "--val", str(empty)], str(empty))
    assert not (tmp_path / "b.bundle").exists()


def test_export_build_warns_about_class_name_mismatch(caplog):
    from defectrt.export.bundle import _warn_name_mismatch

    with caplog.at_level(logging.WARNING, logger="defectrt"):
        _warn_name_mismatch('{"0": "scratch", "1": "dent"}', ["scratch", "dent"], "d")
        assert not caplog.records
        _warn_name_mismatch('{"0": "scratch", "1": "dent"}', ["dent", "scratch"], "d")
    assert "differ from --val d" in caplog.text


def test_trt_flavour_int8_bundle_on_a_cpu_warns(demo_bundle, tmp_path, caplog):
    from defectrt.runtime.detector import Detector

    folder = tmp_path / "int8.bundle"
    shutil.copytree(demo_bundle, str(folder))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.update(precision="int8", int8_flavour="trt")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    try:
        with caplog.at_level(logging.WARNING, logger="defectrt"):
            Detector(str(folder), backend="onnxruntime")
    except UserInputError as exc:  # a manifest check that wants the INT8 record complete
        pytest.skip("manifest needs a full INT8 record: {}".format(exc))
    assert "runs slower than its FP32" in caplog.text and "--int8-flavour cpu" in caplog.text


def test_export_build_of_a_foreign_onnx_says_what_it_takes(tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 64, 64])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    path = str(tmp_path / "foreign.onnx")
    onnx.save(m, path)
    _fails(capsys, ["export", "build", path, "-o", str(tmp_path / "f.bundle"), "--precision", "fp32"],
           "foreign.onnx: not a YOLO detector ONNX", "(N, 3, H, W)")
    assert not (tmp_path / "f.bundle").exists()


def test_messages_name_final_paths_and_explain_ir_versions():
    from defectrt.friendly import clean, explain

    assert clean("/work/.tmp-16274-9jget731line.bundle/golden/x.json: bad") == "/work/line.bundle/golden/x.json: bad"
    msg = explain(RuntimeError("Load model failed: Unsupported model IR version: 14, max supported IR version: 13"))
    assert "IR version 14" in msg and "at most 13" in msg and "pip install -U onnxruntime" in msg


def test_detect_takes_a_checkpoint_like_val(capsys, tmp_path):
    """`detect -m best.pt` (a real Ultralytics checkpoint) runs through PyTorch instead of being refused."""
    import cv2
    import numpy as np

    ckpt = os.path.join(os.path.dirname(__file__), "fixtures", "ultralytics", "multipliers_leaky_nc2.pt")
    img = tmp_path / "part.png"
    cv2.imwrite(str(img), np.random.RandomState(0).randint(0, 255, (96, 128, 3), dtype=np.uint8))
    assert main(["detect", "-m", ckpt, str(img), "--imgsz", "64", "--no-save", "--json"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")]
    assert len(lines) == 1 and json.loads(lines[0])["source"].endswith("part.png")
