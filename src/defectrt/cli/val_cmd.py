"""`defectrt val`: mAP50, mAP50-95, precision and recall of a model on a YOLO dataset split."""
from __future__ import annotations

import json
import os
import sys

from defectrt.cli.options import imgsz_arg
from defectrt.cli.backend_args import add_backend_args, openvino_options
from defectrt.cli.options import add_imgsz, add_thresholds

RUNTIME_SUFFIXES = (".onnx", ".engine", ".plan", ".trt")


def register(sub):
    p = sub.add_parser(
        "val",
        help="measure mAP50 / mAP50-95 / P / R of a model on a dataset split",
        description="Run a model over a dataset split and print overall and per-class metrics (COCO-style "
        "mAP via pycocotools). ONNX, engines and bundles run through the runtime; checkpoints, registry "
        "names and demo:NAME run in PyTorch through the same pre- and post-processing.",
    )
    p.add_argument("--model", required=True, help=".onnx, .engine, bundle folder, checkpoint (.safetensors/.pt), "
                   "registry name or demo:NAME")
    p.add_argument("--data", required=True, help="data.yaml, or a folder with data.yaml or images/ + labels/")
    p.add_argument("--split", default="val", help="split to evaluate (default val)")
    add_imgsz(p, help="N or H W: PyTorch models and dynamic-size ONNX (default: the model's)")
    add_thresholds(p, conf=0.001, iou=0.6, max_det=300, what=" (low defaults: mAP needs the whole ranking)")
    p.add_argument("--batch", type=int, default=8, help="images per inference call (default 8)")
    add_backend_args(p)
    p.add_argument("--pr-conf", type=float,
                   help="report P and R at this confidence (default: the threshold with the best mean F1)")
    p.add_argument("--json", metavar="FILE", help="also write the metrics as JSON")
    p.add_argument("--force", action="store_true", help="replace the --json file if it exists")
    p.set_defaults(func=run)


def _is_runtime_model(ref):
    return ref.lower().endswith(RUNTIME_SUFFIXES) or os.path.isdir(ref)


def model_or_torch_backend(model, imgsz=None):
    """`model` itself for runtime files (ONNX, engine, bundle) and, without torch, demo references; a checkpoint
    or registry name -> a PyTorch backend object that a Detector runs through the same pre/post-processing."""
    from defectrt.errors import UserInputError

    if _is_runtime_model(model):
        return model
    try:
        from defectrt.models.torch_backend import TorchBackend
    except ImportError as exc:
        from defectrt.modelref import ModelRef

        if ModelRef.parse(model).is_demo:  # device installs have no torch but may ship the demo bundles
            return model
        raise UserInputError("{}: running a checkpoint or registry model needs PyTorch ({}); install "
                             "defectrt[export] or pass an exported .onnx / bundle".format(model, exc))
    return TorchBackend(model, imgsz=imgsz)


def make_detector(model, imgsz=None, conf=0.001, iou=0.6, max_det=300, backend="auto", openvino=None):
    """A Detector for `model`: runtime files directly, anything else through the PyTorch backend."""
    from defectrt.runtime.detector import Detector

    kw = dict(conf=conf, iou=iou, max_det=max_det)
    source = model_or_torch_backend(model, imgsz)
    if isinstance(source, str):
        return Detector(source, backend=backend, imgsz=imgsz, openvino=openvino, **kw)
    return Detector(source, **kw)


def run(args):
    from defectrt.data.dataset import load_dataset
    from defectrt.data.val import evaluate, format_table
    from defectrt.fileio import atomic_write_bytes, check_output

    imgsz = imgsz_arg(args.imgsz)
    if args.json:
        check_output(args.json, args.force)  # fail before a long run, not after it
    dataset = load_dataset(args.data, args.split)
    det = make_detector(args.model, imgsz=imgsz, conf=args.conf, iou=args.iou, max_det=args.max_det,
                        backend=args.backend, openvino=openvino_options(args))
    names = _report_names(det, dataset, args.model)
    res = evaluate(det, dataset, batch=args.batch, conf=args.pr_conf, names=names, progress=sys.stderr.isatty())
    res["model"] = args.model
    res["data"] = dataset.source
    print(format_table(res))
    print("{} images in {:.1f} s".format(res["images"], res["seconds"]))
    if args.json:
        atomic_write_bytes(args.json, (json.dumps(res, indent=2) + "\n").encode("utf-8"), force=args.force)
    return 0


def _report_names(det, dataset, model):
    """Names to report under; warns when the model's classes do not look like the dataset's."""
    raw = getattr(det, "names", None) or {}
    model_names = [raw[k] for k in sorted(raw)] if isinstance(raw, dict) else list(raw)
    if dataset.names_inferred and len(model_names) >= dataset.nc:
        return model_names  # the folder had no names; the model's are the best we have
    if model_names and model_names != dataset.names:
        def few(ns):
            return "{} ({}{})".format(len(ns), ", ".join(ns[:4]), ", ..." if len(ns) > 4 else "")

        print("warning: {} has {} classes but the dataset has {}; class ids are compared as they are".format(
            model, few(model_names), few(dataset.names)), file=sys.stderr)
    return dataset.names
