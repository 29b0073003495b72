"""Option objects (issue 15): one frozen value per export / build / Detector, the keyword APIs kept."""
import dataclasses
import inspect

import pytest

from defectrt.errors import UserInputError
from defectrt.options import BuildSpec, DetectorOptions, ExportSpec, make, resolve


def _signature_defaults(fn):
    return {n: p.default for n, p in inspect.signature(fn).parameters.items() if p.default is not inspect.Parameter.empty}


def _field_defaults(cls):
    return {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
            for f in dataclasses.fields(cls)}


def test_keyword_defaults_of_the_old_apis_equal_the_option_objects():
    """A keyword and its field must never drift apart: the option object is built from the keywords."""
    from defectrt.runtime.detector import Detector

    checks = [(Detector.__init__, DetectorOptions)]
    try:
        from defectrt.export.bundle import build_bundle
        from defectrt.export.onnx import export_onnx
    except ImportError:  # a device install without the export side
        pass
    else:
        checks += [(export_onnx, ExportSpec), (build_bundle, BuildSpec)]
    for fn, cls in checks:
        given = _signature_defaults(fn)
        for name, default in _field_defaults(cls).items():
            assert name in given, (fn.__name__, name)
            assert make(cls, **{name: given[name]}) == cls(), (fn.__name__, name, given[name], default)


def test_option_objects_are_frozen_and_hold_no_lists():
    opts = make(DetectorOptions, classes=[0, 2], plugins=["a.so"], imgsz=[320, 480])
    assert opts.classes == (0, 2) and opts.plugins == ("a.so",) and opts.imgsz == (320, 480)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.conf = 0.9


def test_resolve_takes_the_object_or_the_keywords_never_both():
    spec = ExportSpec(opset=13, grid_sample="lowered")
    defaults = {f.name: getattr(ExportSpec(), f.name) for f in dataclasses.fields(ExportSpec)}
    assert resolve(ExportSpec, None, dict(defaults, opset=13, grid_sample="lowered")) == spec
    assert resolve(ExportSpec, spec, defaults) is spec
    with pytest.raises(UserInputError, match="export_onnx: give the settings either as one ExportSpec or as keywords.*opset"):
        resolve(ExportSpec, spec, dict(defaults, opset=17), "export_onnx")
    with pytest.raises(UserInputError, match="must be a BuildSpec"):
        resolve(BuildSpec, spec, {}, "build_bundle")


def test_detector_from_options_equals_detector_from_keywords(tmp_path):
    pytest.importorskip("onnxruntime")
    from test_runtime_models import draw_rect, rect_finder, save

    from defectrt.runtime.detector import Detector

    model = save(rect_finder(), tmp_path / "rf.onnx")
    img = draw_rect(333, 517, 101, 57, 300, 211)
    a = Detector(model, conf=0.8, threads=1)
    b = Detector(model, options=DetectorOptions(conf=0.8, threads=1))
    assert b.options == a.options == DetectorOptions(conf=0.8, threads=1)
    assert a(img).to_dict() == b(img).to_dict() and len(a(img)) == 1
    with pytest.raises(UserInputError, match="not both"):
        Detector(model, conf=0.5, options=DetectorOptions(conf=0.8))


def test_cli_groups_build_the_objects_whole():
    from defectrt.cli import build_parser
    from defectrt.cli.options import build_spec, detector_options, export_spec

    parser = build_parser()
    args = parser.parse_args(["detect", "x.png", "-m", "m.onnx", "--conf", "0.4", "--imgsz", "320", "--classes", "1",
                              "--ov-streams", "2", "--backend", "onnxruntime"])
    assert detector_options(args) == DetectorOptions(backend="onnxruntime", conf=0.4, imgsz=(320, 320), classes=(1,),
                                                     openvino={"streams": 2})
    args = parser.parse_args(["export", "onnx", "demo:screw", "-o", "x.onnx", "--dynamic-batch", "--target-trt", "8.2",
                              "--nms", "onnx", "--iou", "0.5", "--no-simplify"])
    assert export_spec(args) == ExportSpec(dynamic_batch=True, target_trt="8.2", nms="onnx", nms_iou=0.5, simplify=False)
    args = parser.parse_args(["export", "build", "demo:screw", "-o", "b", "--precision", "int8", "--calib", "imgs",
                              "--imgsz", "192", "320", "--grid-sample", "lowered", "--plugins", "p.so"])
    assert build_spec(args) == BuildSpec(precision="int8", calib="imgs", imgsz=(192, 320), grid_sample="lowered",
                                         plugins=("p.so",))
