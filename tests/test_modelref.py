"""One parser for model references and one for imgsz (defectrt.modelref)."""
import pytest

from defectrt.errors import InvalidArgument, UserInputError
from defectrt.modelref import ModelRef, onnx_metadata, parse_imgsz


@pytest.mark.parametrize("value,hw", [
    (640, (640, 640)), ((640,), (640, 640)), ((384, 672), (384, 672)), ([384, 672], (384, 672)),
    ("384,672", (384, 672)), ("384x672", (384, 672)), ("[384, 672]", (384, 672)), ("640", (640, 640)),
    (640.0, (640, 640)),
])
def test_every_accepted_spelling(value, hw):
    assert parse_imgsz(value) == hw


@pytest.mark.parametrize("value", [[1, 2, 3], [0, 5], "[1e400, 5]", "abc", True, 640.5, "[" * 5000, [-32, 32]])
def test_unreadable_is_refused_naming_the_argument_or_none_when_lenient(value):
    with pytest.raises(InvalidArgument, match="--imgsz"):
        parse_imgsz(value, "--imgsz")
    assert parse_imgsz(value, strict=False) is None


def test_multiples_where_asked():
    assert parse_imgsz((384, 672), multiple_of=32) == (384, 672)
    with pytest.raises(UserInputError, match="multiples of 32"):
        parse_imgsz((100, 128), "--imgsz", multiple_of=32)
    assert parse_imgsz((100, 128)) == (100, 128)
    assert parse_imgsz(None) is None and parse_imgsz("") is None


def test_model_ref(tmp_path):
    assert ModelRef.parse("demo:screw") == ModelRef("demo", "screw")
    assert ModelRef.parse("demo:screw").is_demo and str(ModelRef.parse("demo:pcb")) == "demo:pcb"
    assert ModelRef.parse("yolo11n-dysample").kind == "name"
    assert ModelRef.parse("missing.pt").kind == "path"
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")
    assert ModelRef.parse(onnx) == ModelRef("path", str(onnx))
    assert ModelRef.parse(str(tmp_path / "nothing")).kind == "name"


def test_onnx_metadata():
    onnx = pytest.importorskip("onnx")
    model = onnx.ModelProto()
    for k, v in (("imgsz", "[64, 96]"), ("names", "{}")):
        p = model.metadata_props.add()
        p.key, p.value = k, v
    assert onnx_metadata(model) == {"imgsz": "[64, 96]", "names": "{}"}
