"""Option objects: the settings of one export, one bundle build and one Detector, each a frozen value.

They are built once (by the CLI's shared argparse groups in defectrt.cli.options, or by a caller) and passed
whole through the layers, so a setting is declared in one place and cannot be changed half-way down.
The keyword APIs stay: `Detector(model, conf=0.5)` builds a DetectorOptions from its keywords, and
`Detector(model, options=DetectorOptions(conf=0.5))` is the same call; giving both a non-default keyword and
an options object is an error (which one should win would be a guess).

Python 3.8, no torch: the device side imports this module.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional, Tuple

from defectrt.errors import UserInputError


@dataclass(frozen=True)
class DetectorOptions:
    """How a Detector loads and runs a model (see runtime.detector.Detector for each field)."""

    backend: str = "auto"
    conf: Optional[float] = None  # None: the bundle's, else 0.25
    iou: Optional[float] = None  # None: the bundle's, else 0.45
    max_det: Optional[int] = None  # None: the bundle's, else 300
    classes: Optional[Tuple[int, ...]] = None
    threads: Optional[int] = None
    imgsz: Any = None  # N or (h, w), for models with a dynamic input size
    plugins: Tuple[str, ...] = ()
    device: Optional[str] = None
    cuda_graph: bool = False
    max_batch: Optional[int] = None
    openvino: Any = None  # {"precision": ..., "streams": ..., "cache_dir": ...} or None


@dataclass(frozen=True)
class ExportSpec:
    """One PyTorch -> ONNX export (see export.onnx.export_onnx for each field)."""

    imgsz: Any = None
    batch: int = 1
    dynamic_batch: bool = False
    dynamic_hw: bool = False
    opset: Optional[int] = None
    grid_sample: str = "auto"
    target_trt: Optional[str] = None
    simplify: bool = True
    nms: str = "none"
    nms_conf: float = 0.25
    nms_iou: float = 0.45
    nms_max_det: int = 300
    for_cpu: bool = False


@dataclass(frozen=True)
class BuildSpec:
    """One bundle build (see export.bundle.build_bundle for each field)."""

    precision: str = "fp32"
    calib: Optional[str] = None
    calib_count: int = 300
    int8_flavour: str = "trt"
    calib_method: str = "max"
    target_trt: Optional[str] = None
    imgsz: Any = None
    batch: int = 1
    dynamic_batch: bool = False
    max_batch: int = 8
    workspace: str = "auto"
    timing_cache: Optional[str] = None
    dla_core: Optional[int] = None
    val: Optional[str] = None
    conf: float = 0.25
    iou: float = 0.45
    max_det: int = 300
    opset: Optional[int] = None
    grid_sample: str = "auto"
    plugins: Tuple[str, ...] = field(default_factory=tuple)
    engine: str = "auto"


@dataclass(frozen=True)
class TrainSpec:
    """One training run (see train.trainer.train for each field)."""

    epochs: Optional[int] = 100  # None with resume: the saved run's
    imgsz: Any = (640, 640)
    batch: int = 16
    lr: Optional[float] = None
    optimizer: str = "adamw"
    box_loss: str = "ciou"
    workers: int = 0
    seed: int = 0
    project: str = "runs/train"
    name: str = "exp"
    resume: Any = False
    device: str = "cpu"
    threads: Optional[int] = None
    momentum: Optional[float] = None
    weight_decay: float = 5e-4
    lrf: float = 0.01
    cos_lr: bool = True
    warmup_epochs: float = 3.0
    augment: Any = True
    mosaic: float = 0.0
    close_mosaic: int = 0
    val_interval: Optional[int] = None
    cache: bool = True
    grad_clip: float = 10.0
    ema_tau: Optional[float] = None
    crop: Any = None
    bn_recal: int = 64
    stop_after: Optional[int] = None


@dataclass(frozen=True)
class ValSpec:
    """One accuracy measurement: the dataset split, the batch per inference call, and the confidence at
    which P and R are reported (None: the best mean F1). The model's thresholds are its DetectorOptions."""

    data: Optional[str] = None
    split: str = "val"
    batch: int = 8
    pr_conf: Optional[float] = None


@dataclass(frozen=True)
class VerifySpec:
    """One on-device golden check (see runtime.verify.verify_bundle)."""

    backend: str = "onnxruntime"
    plugins: Tuple[str, ...] = ()
    runs: int = 20
    warmup: int = 2


@dataclass(frozen=True)
class ServeSpec:
    """How a bundle is served through Triton (see serving.server.serve)."""

    http_port: Optional[int] = None
    grpc_port: Optional[int] = None
    metrics_port: Optional[int] = None
    address: str = "127.0.0.1"
    max_batch: int = 8
    instances: int = 1
    name: Optional[str] = None
    queue_delay_us: int = 2000
    backend: str = "auto"
    threads: Optional[int] = None
    exit_timeout_s: int = 10
    verbose: bool = False


def _normalised(name, value):
    """Lists become tuples, so that a frozen option object holds no list a caller could still change."""
    if isinstance(value, list):
        return tuple(value)
    if name == "openvino" and isinstance(value, dict):
        return dict(value)
    return value


def make(cls, **values):
    """cls(**values) with lists made tuples."""
    return cls(**{k: _normalised(k, v) for k, v in values.items()})


def resolve(cls, options, keywords, where="options"):
    """The option object of a call that took `options` (an instance of cls, or None) and the old `keywords`
    (a dict of the call's keyword values, named like cls's fields). -> an instance of cls."""
    if options is None:
        return make(cls, **keywords)
    if not isinstance(options, cls):
        raise UserInputError("{}: options must be a {} (got {})".format(where, cls.__name__, type(options).__name__))
    defaults = {f.name: _default(f) for f in dataclasses.fields(cls)}
    clash = sorted(k for k, v in keywords.items() if _normalised(k, v) != defaults[k])
    if clash:
        raise UserInputError("{}: give the settings either as one {} or as keywords, not both ({} given as "
                             "keyword{})".format(where, cls.__name__, ", ".join(clash), "s" if len(clash) > 1 else ""))
    return options


def _default(f):
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()


def as_kwargs(options):
    """The fields of an option object as a dict (shallow: no copies of the values)."""
    return {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
