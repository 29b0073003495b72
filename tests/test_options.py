"""Option objects (issue 15): one frozen value per export / build / Detector, the keyword APIs kept."""
import dataclasses
import inspect

import pytest

from defectrt.errors import UserInputError
from defectrt.options import (BuildSpec, DetectorOptions, ExportSpec, ServeSpec, TrainSpec, ValSpec, VerifySpec, make,
                              resolve)


def _signature_defaults(fn):
    return {n: p.default for n, p in inspect.signature(fn).parameters.items() if p.default is not inspect.Parameter.empty}


def _field_defaults(cls):
    return {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
            for f in dataclasses.fields(cls)}


def test_keyword_defaults_of_the_old_apis_equal_the_option_objects():
    """A keyword and its field must never drift apart: the option object is built from the keywords."""
    from defectrt.runtime.detector import Detector

    from defectrt.runtime.verify import verify_bundle
    from defectrt.serving.server import serve

    checks = [(Detector.__init__, DetectorOptions), (verify_bundle, VerifySpec), (serve, ServeSpec)]
    try:
        from defectrt.export.bundle import build_bundle
        from defectrt.export.onnx import export_onnx
        from defectrt.train.trainer import train
    except ImportError:  # a device install without the export side
        pass
    else:
        checks += [(export_onnx, ExportSpec), (build_bundle, BuildSpec), (train, TrainSpec)]
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


def test_cli_groups_build_the_run_specs_whole():
    from defectrt.cli import build_parser
    from defectrt.cli.options import detector_options, serve_spec, train_spec, val_spec, verify_spec

    parser = build_parser()
    args = parser.parse_args(["train", "--model", "yolo11n", "--data", "d", "--epochs", "3", "--imgsz", "320",
                              "--batch", "4", "--linear-lr", "--no-augment", "--threads", "2"])
    assert train_spec(args) == TrainSpec(epochs=3, imgsz=(320, 320), batch=4, cos_lr=False, augment=False, threads=2)
    assert train_spec(parser.parse_args(["train", "--resume"])).epochs is None  # the saved run's
    args = parser.parse_args(["val", "--model", "m.onnx", "--data", "d", "--split", "test", "--batch", "2",
                              "--pr-conf", "0.3", "--iou", "0.5"])
    assert val_spec(args) == ValSpec(data="d", split="test", batch=2, pr_conf=0.3)
    assert detector_options(args) == DetectorOptions(conf=0.001, iou=0.5, max_det=300)
    args = parser.parse_args(["verify", "b", "--backend", "tensorrt", "--plugins", "p.so", "--runs", "5"])
    assert verify_spec(args) == VerifySpec(backend="tensorrt", plugins=("p.so",), runs=5)
    with pytest.raises(UserInputError, match="--runs 0"):
        verify_spec(parser.parse_args(["verify", "b", "--runs", "0"]))
    args = parser.parse_args(["serve", "b", "--max-batch", "4", "--instances", "2", "--threads", "3"])
    assert serve_spec(args) == ServeSpec(http_port=8000, grpc_port=8001, metrics_port=8002, max_batch=4, instances=2,
                                         threads=3)


def test_commands_pass_their_spec_whole_to_the_library(monkeypatch):
    from defectrt.cli import main
    from defectrt.runtime import verify
    from defectrt.serving import server

    seen = {}
    monkeypatch.setattr(verify, "verify_bundle", lambda bundle, **kw: seen.update(verify=kw) or {"verdict": "pass"})
    monkeypatch.setattr(verify, "format_report", lambda report: "ok")
    assert main(["verify", "b", "--runs", "3"]) == 0
    assert seen["verify"] == {"spec": VerifySpec(runs=3)}
    monkeypatch.setattr(server, "serve", lambda bundle, **kw: seen.update(serve=kw))
    assert main(["serve", "b", "--instances", "2"]) == 0
    assert seen["serve"]["spec"] == ServeSpec(http_port=8000, grpc_port=8001, metrics_port=8002, instances=2) and set(seen["serve"]) == {"spec", "on_ready"}
    try:
        import defectrt.train as train_pkg
    except ImportError:  # no torch: the export side is absent
        return
    monkeypatch.setattr(train_pkg, "train", lambda model, data, **kw: seen.update(train=kw) or _Done())
    assert main(["train", "--model", "yolo11n", "--data", "d", "--epochs", "2", "--quiet"]) == 0
    assert seen["train"]["spec"] == TrainSpec(epochs=2, imgsz=(640, 640))


class _Done(object):
    best, best_epoch, last, metrics = "b", 1, "l", {}


def test_library_functions_read_their_spec(tmp_path):
    from defectrt.runtime.verify import verify_bundle
    from defectrt.serving.server import serve

    report = verify_bundle(str(tmp_path / "missing"), spec=VerifySpec(backend="tensorrt"))
    assert report["backend"] == "tensorrt" and report["verdict"] == "fail"
    with pytest.raises(UserInputError, match="not both"):
        verify_bundle(str(tmp_path), runs=3, spec=VerifySpec())
    with pytest.raises(UserInputError, match="--max-batch 0"):
        serve(str(tmp_path), spec=ServeSpec(max_batch=0))
    try:
        from defectrt.train.trainer import train
    except ImportError:
        return
    with pytest.raises(UserInputError, match="optimizer 'bogus'"):
        train("yolo11n", str(tmp_path), spec=TrainSpec(optimizer="bogus"))
    with pytest.raises(UserInputError, match="not both"):
        train("yolo11n", str(tmp_path), epochs=5, spec=TrainSpec())
