"""issue 19 item 3: `defectrt inspect` on each file kind (checkpoint .pt / .safetensors, ONNX, bundle, engine)."""
import json
import os
import shutil

import pytest

from defectrt.cli import main
from defectrt.inspection import inspect_path

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "ultralytics")


def _cli_json(capsys, path, *extra):
    assert main(["inspect", str(path), "--json"] + list(extra)) == 0
    return json.loads(capsys.readouterr().out)


def test_ultralytics_pt(capsys):
    pytest.importorskip("torch")
    pt = os.path.join(FIXTURES, "yolo11n_dysample_nc4.pt")
    info = _cli_json(capsys, pt)
    assert info["kind"] == "checkpoint" and info["format"] == "Ultralytics .pt"
    assert info["nc"] == 4 and len(info["names"]) == 4 and info["params"] > 1_000_000
    assert len(info["sha256"]) == 64 and info["weights_sha256"]
    assert "export build" in info["next"]
    assert main(["inspect", pt]) == 0
    assert "variant" in capsys.readouterr().out


def test_safetensors(tmp_path, capsys):
    pytest.importorskip("torch")
    from defectrt import models

    path = str(tmp_path / "m.safetensors")
    models.save(models.create("yolo11n", nc=2, names=["crack", "dent"]), path, imgsz=[320, 416])
    info = _cli_json(capsys, path)
    assert info["variant"] == "yolo11n" and info["names"] == {"0": "crack", "1": "dent"}
    assert info["imgsz"] == [320, 416] and info["format"] == "defectrt safetensors"


def test_onnx_and_bundle_and_engine(demo_bundle, tmp_path, capsys):
    onnx_path = os.path.join(demo_bundle, "model.onnx")
    info = _cli_json(capsys, onnx_path, "--target-trt", "8.2", "--target-trt", "10.3")
    assert info["kind"] == "onnx" and info["variant"] == "yolo11n-dysample"
    assert info["imgsz"] == [384, 672] and info["grid_sample"] in ("native", "lowered") and info["nms"] == "none"
    assert info["opset"] == 17 and info["inputs"][0]["shape"] == [1, 3, 384, 672]
    # native GridSample: TensorRT 8.2's parser lacks it, 10.3's has it; the lowered form parses on both
    assert info["tensorrt"]["8.2"]["ok"] is (info["grid_sample"] == "lowered")
    if info["grid_sample"] == "native":
        assert "GridSample" in info["tensorrt"]["8.2"]["first"]
    assert info["tensorrt"]["10.3"]["ok"] is True

    b = _cli_json(capsys, demo_bundle, "--target-trt", "10.3")
    assert b["kind"] == "bundle" and b["hashes_verified"] is True and b["precision"] == "fp32"
    assert b["golden"]["inputs"] == "golden/inputs.json" and b["manifest"]["format"] == "defectrt-bundle"
    assert b["onnx"]["sha256"] == b["manifest"]["files"]["model.onnx"]

    # an engine beside a manifest that lists it: size, hash, the manifest's record; the rest needs TensorRT
    folder = tmp_path / "b"
    shutil.copytree(demo_bundle, str(folder))
    engine = folder / "model.engine"
    engine.write_bytes(b"not a real plan")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["engine"] = {"file": "model.engine", "trt_version": "10.3.0"}
    manifest["files"]["model.engine"] = "0" * 64
    (folder / "manifest.json").write_text(json.dumps(manifest))
    e = _cli_json(capsys, engine)
    assert e["kind"] == "engine" and e["size_bytes"] == len(b"not a real plan")
    assert e["manifest_record"]["trt_version"] == "10.3.0" and e["hash_matches_manifest"] is False
    assert "need TensorRT" in e["needs_tensorrt"]
    assert main(["inspect", str(engine)]) == 0
    assert "trtexec --loadEngine" in capsys.readouterr().out


def test_tampered_bundle_and_unknown_kind(demo_bundle, tmp_path, capsys):
    folder = tmp_path / "t"
    shutil.copytree(demo_bundle, str(folder))
    with open(str(folder / "golden" / "outputs.json"), "a") as f:
        f.write(" ")
    assert main(["inspect", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "golden/outputs.json" in err and "Traceback" not in err
    odd = tmp_path / "x.bin"
    odd.write_bytes(b"1")
    assert main(["inspect", str(odd)]) == 1
    assert "cannot tell what this is" in capsys.readouterr().err
    with pytest.raises(Exception):
        inspect_path(str(tmp_path / "missing.onnx"))
