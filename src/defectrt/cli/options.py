"""Argument groups the commands share, declared once, and the option objects built from them.

Each `add_*` declares one group of flags (help texts may be specialised per command, the flag names, types
and choices may not); `detector_options`, `export_spec` and `build_spec` turn the parsed flags into the
frozen objects of defectrt.options that the commands pass whole to the library.
"""
from __future__ import annotations

from defectrt.cli.backend_args import openvino_options

GRID_SAMPLE_CHOICES = ("auto", "native", "lowered", "plugin")


def imgsz_arg(values):
    """--imgsz as given (`nargs="+"` ints: N or H W) -> (h, w), or None when it was not given."""
    from defectrt.modelref import parse_imgsz

    return parse_imgsz(values or None, "--imgsz")


def add_imgsz(p, help="N or H W (default: the model's own)", default=None):
    p.add_argument("--imgsz", type=int, nargs="+", metavar="N", default=default, help=help)


def add_images_per_call(p, default, help):
    """--batch as a number of images per step / inference call (train, val); export's --batch is add_batch."""
    p.add_argument("--batch", type=int, default=default, help=help)


def add_batches(p):
    """bench's --batch: the batch sizes to measure, a comma list (parsed by batches_arg)."""
    p.add_argument("--batch", default="1", help="batch sizes, comma-separated (default 1), e.g. 1,2,4")


def batches_arg(text, flag="--batch"):
    """'1,2,4' -> [1, 2, 4] (integers >= 1, first occurrence kept)."""
    from defectrt.errors import UserInputError

    try:
        values = [int(v) for v in str(text).replace(" ", "").split(",") if v]
    except ValueError:
        raise UserInputError("{} {!r}: expected comma-separated integers such as 1,2,4".format(flag, text))
    if not values or any(v < 1 for v in values):
        raise UserInputError("{} {!r}: batch sizes must be integers >= 1".format(flag, text))
    seen = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


def add_threads(p, help="ONNX Runtime intra-op threads (default: one per core)"):
    p.add_argument("--threads", type=int, help=help)


def add_plugins(p, help="TensorRT plugin libraries to load"):
    p.add_argument("--plugins", nargs="*", default=[], help=help)


def add_batch(p, help="fixed batch size (default 1)", dynamic_help="make the batch a dynamic axis"):
    g = p.add_mutually_exclusive_group()
    g.add_argument("--batch", type=int, default=1, help=help)
    g.add_argument("--dynamic-batch", action="store_true", help=dynamic_help)


def add_opset(p, help="ONNX opset (default 17, or the most the --target-trt parser documents, e.g. 13 for 8.0-8.2)"):
    p.add_argument("--opset", type=int, default=None, help=help)


def add_grid_sample(p, help="DySample sampling: native GridSample (TensorRT >= 8.5), lowered gathers (any TensorRT "
                    "8.0+), plugin; auto picks from --target-trt (default auto)"):
    p.add_argument("--grid-sample", choices=GRID_SAMPLE_CHOICES, default="auto", help=help)


def add_target_trt(p, required=False, help="TensorRT version of the device, e.g. 8.2 (JetPack 4.6), 8.5, 10.3"):
    p.add_argument("--target-trt", required=required, metavar="X.Y", help=help)


def add_thresholds(p, conf=None, iou=None, max_det=None, what="", max_det_flag=True):
    """--conf / --iou / --max-det with this command's defaults (None: the model's own) and help suffix `what`."""
    def default(value, fallback):
        return "default {}".format(value) if value is not None else "default: the bundle's, else {}".format(fallback)

    p.add_argument("--conf", type=float, default=conf, help="confidence threshold{} ({})".format(what, default(conf, 0.25)))
    p.add_argument("--iou", type=float, default=iou, help="NMS IoU threshold{} ({})".format(what, default(iou, 0.45)))
    if max_det_flag:
        p.add_argument("--max-det", type=int, default=max_det,
                       help="detections kept per image{} ({})".format(what, default(max_det, 300)))


def detector_options(args, **fixed):
    """DetectorOptions from parsed flags (those a command lacks keep their defaults); `fixed` overrides."""
    from defectrt.options import DetectorOptions, make

    values = dict(backend=getattr(args, "backend", "auto"), conf=getattr(args, "conf", None),
                  iou=getattr(args, "iou", None), max_det=getattr(args, "max_det", None),
                  classes=getattr(args, "classes", None), threads=getattr(args, "threads", None),
                  imgsz=imgsz_arg(getattr(args, "imgsz", None)), plugins=getattr(args, "plugins", None) or (),
                  device=getattr(args, "device", None), cuda_graph=bool(getattr(args, "cuda_graph", False)),
                  openvino=openvino_options(args))
    values.update(fixed)
    return make(DetectorOptions, **values)


def export_spec(args, **fixed):
    """ExportSpec from the flags of `export onnx`."""
    from defectrt.options import ExportSpec, make

    values = dict(imgsz=imgsz_arg(args.imgsz), batch=args.batch, dynamic_batch=args.dynamic_batch,
                  dynamic_hw=args.dynamic_hw, opset=args.opset, grid_sample=args.grid_sample,
                  target_trt=args.target_trt, simplify=not args.no_simplify, nms=args.nms, nms_conf=args.conf,
                  nms_iou=args.iou, nms_max_det=args.max_det)
    values.update(fixed)
    return make(ExportSpec, **values)


def build_spec(args, **fixed):
    """BuildSpec from the flags of `export build`."""
    from defectrt.options import BuildSpec, make

    values = dict(precision=args.precision, calib=args.calib, calib_count=args.calib_count,
                  int8_flavour=args.int8_flavour, calib_method=args.calib_method, target_trt=args.target_trt,
                  imgsz=imgsz_arg(args.imgsz), batch=args.batch, dynamic_batch=args.dynamic_batch,
                  max_batch=args.max_batch, workspace=args.workspace, timing_cache=args.timing_cache,
                  dla_core=args.dla_core, val=args.val, conf=args.conf, iou=args.iou, opset=args.opset,
                  grid_sample=args.grid_sample, plugins=args.plugins)
    values.update(fixed)
    return make(BuildSpec, **values)


def train_spec(args, **fixed):
    """TrainSpec from the flags of `train` (epochs None with --resume: the saved run's)."""
    from defectrt.options import TrainSpec, make

    values = dict(epochs=args.epochs if args.epochs is not None else (None if args.resume else 100),
                  imgsz=imgsz_arg(args.imgsz), batch=args.batch, lr=args.lr, optimizer=args.optimizer,
                  box_loss=args.box_loss, workers=args.workers, seed=args.seed, project=args.project, name=args.name,
                  resume=args.resume, device=args.device, threads=args.threads, weight_decay=args.weight_decay,
                  lrf=args.lrf, cos_lr=not args.linear_lr, warmup_epochs=args.warmup_epochs,
                  augment=not args.no_augment, crop=args.crop, mosaic=args.mosaic, close_mosaic=args.close_mosaic,
                  val_interval=args.val_interval)
    values.update(fixed)
    return make(TrainSpec, **values)


def val_spec(args, **fixed):
    """ValSpec from the flags of `val`."""
    from defectrt.options import ValSpec, make

    values = dict(data=args.data, split=args.split, batch=args.batch, pr_conf=args.pr_conf)
    values.update(fixed)
    return make(ValSpec, **values)


def verify_spec(args, **fixed):
    """VerifySpec from the flags of `verify`."""
    from defectrt.errors import UserInputError
    from defectrt.options import VerifySpec, make

    if args.runs < 1:
        raise UserInputError("--runs {}: give at least 1".format(args.runs))
    values = dict(backend=args.backend, plugins=args.plugins or (), runs=args.runs)
    values.update(fixed)
    return make(VerifySpec, **values)


def serve_spec(args, **fixed):
    """ServeSpec from the flags of `serve`."""
    from defectrt.options import ServeSpec, make

    values = dict(http_port=args.http_port, grpc_port=args.grpc_port, metrics_port=args.metrics_port,
                  address=args.address, max_batch=args.max_batch, instances=args.instances, name=args.name,
                  queue_delay_us=args.queue_delay_us, backend=args.backend, threads=args.threads,
                  exit_timeout_s=args.exit_timeout_s, verbose=args.verbose)
    values.update(fixed)
    return make(ServeSpec, **values)
