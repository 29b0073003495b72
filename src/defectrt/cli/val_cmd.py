"""`defectrt val`: mAP50, mAP50-95, precision and recall of a model on a YOLO dataset split."""
from __future__ import annotations

import json
import os
import sys

from defectrt.cli.backend_args import add_backend_args
from defectrt.cli.options import add_images_per_call, add_imgsz, add_thresholds, detector_options, val_spec

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
    add_images_per_call(p, 8, "images per inference call (default 8)")
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


# mAP needs the whole ranking: val's own defaults for the keyword form of make_detector
VAL_THRESHOLDS = {"conf": 0.001, "iou": 0.6, "max_det": 300}


def make_detector(model, options=None, **keywords):
    """A Detector for `model` with `options` (a DetectorOptions, passed whole): runtime files directly,
    anything else through the PyTorch backend. The keyword form (imgsz=, conf=, iou=, max_det=, backend=,
    openvino=; val's low thresholds by default) builds the options object."""
    from defectrt.errors import UserInputError
    from defectrt.options import DetectorOptions, make
    from defectrt.runtime.detector import Detector

    if options is None:
        options = make(DetectorOptions, **dict(VAL_THRESHOLDS, **keywords))
    elif keywords:
        raise UserInputError("make_detector: give DetectorOptions or keywords ({}), not both".format(
            ", ".join(sorted(keywords))))
    return Detector(model_or_torch_backend(model, options.imgsz), options=options)


def run(args):
    from defectrt.data.dataset import load_dataset
    from defectrt.data.val import evaluate, format_table
    from defectrt.fileio import atomic_write_bytes, check_output

    spec, options = val_spec(args), detector_options(args)
    if args.json:
        check_output(args.json, args.force)  # fail before a long run, not after it
    dataset = load_dataset(spec.data, spec.split)
    det = make_detector(args.model, options)
    names = _report_names(det, dataset, args.model)
    res = evaluate(det, dataset, batch=spec.batch, conf=spec.pr_conf, names=names, progress=sys.stderr.isatty())
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
