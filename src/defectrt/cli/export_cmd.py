"""`defectrt export ...`: onnx (PyTorch -> ONNX), check (will it parse on TensorRT X.Y?), build (bundle).

Each sub-command is a registrar in SUBCOMMANDS (name -> function(export_subparsers)); `build` comes from
defectrt.cli.export_build when that module is present. Heavy imports stay inside the handlers.
"""
from __future__ import annotations

import importlib
import json

from defectrt.cli import imgsz_arg


def _register_onnx(export_sub):
    p = export_sub.add_parser(
        "onnx", help="PyTorch model -> ONNX (DySample grid-sample native or lowered for old TensorRT)",
        description="Export a registry model, checkpoint (.safetensors / Ultralytics .pt) or demo:NAME to ONNX, "
        "verified against PyTorch with ONNX Runtime. Prints which grid-sample form it chose and why.",
    )
    p.add_argument("model", help="registry name (yolo11n-dysample), checkpoint file, or demo:screw / demo:pcb")
    p.add_argument("-o", "--output", required=True, help="ONNX file to write, e.g. model.onnx")
    p.add_argument("--imgsz", type=int, nargs="+", metavar="N",
                   help="N or H W, multiples of 32 (default: the checkpoint's, else 640)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--batch", type=int, default=1, help="fixed batch size (default 1)")
    g.add_argument("--dynamic-batch", action="store_true", help="make the batch a dynamic axis")
    p.add_argument("--dynamic-hw", action="store_true", help="make height and width dynamic axes")
    p.add_argument("--opset", type=int, default=None,
                   help="ONNX opset (default 17, or 13 for a --target-trt below 8.5 whose parser documents 13)")
    p.add_argument("--grid-sample", choices=("auto", "native", "lowered", "plugin"), default="auto",
                   help="DySample sampling: native GridSample (TensorRT >= 8.5), lowered gathers (any TensorRT 8.0+), "
                   "plugin; auto picks from --target-trt (default auto)")
    p.add_argument("--target-trt", metavar="X.Y", help="TensorRT version of the device, e.g. 8.2 (JetPack 4.6), 8.5, 10.3")
    p.add_argument("--no-simplify", action="store_true", help="skip onnxslim simplification")
    p.add_argument("--nms", choices=("none", "onnx", "trt"), default="none", help="append NMS to the graph (default none)")
    p.add_argument("--conf", type=float, default=0.25, help="score threshold of the in-graph NMS (with --nms)")
    p.add_argument("--iou", type=float, default=0.45, help="IoU threshold of the in-graph NMS (with --nms)")
    p.add_argument("--max-det", type=int, default=300, help="detections kept per class and image by the in-graph NMS")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.set_defaults(func=_run_onnx)


def _run_onnx(args):
    import logging

    from defectrt.export.onnx_export import export_onnx

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    imgsz = imgsz_arg(args.imgsz)
    result = export_onnx(
        args.model, args.output, imgsz=imgsz, batch=args.batch,
        dynamic_batch=args.dynamic_batch, dynamic_hw=args.dynamic_hw, opset=args.opset, grid_sample=args.grid_sample,
        target_trt=args.target_trt, simplify=not args.no_simplify, nms=args.nms, force=args.force,
        nms_conf=args.conf, nms_iou=args.iou, nms_max_det=args.max_det,
    )
    print(result.summary())
    return 0


def _register_check(export_sub):
    p = export_sub.add_parser(
        "check", help="will this ONNX file parse on TensorRT X.Y? (exit 1 when it will not)",
        description="Static check of an ONNX file against the ONNX parser of a TensorRT version: unsupported ops, "
        "GridSample before 8.5 or with opset-20 mode names, 5-D GridSample, opset above the parser's, inputs that "
        "must be constants, plugins. No TensorRT needed.",
    )
    p.add_argument("model", help="ONNX file")
    p.add_argument("--target-trt", required=True, metavar="X.Y", help="e.g. 8.2 (JetPack 4.6), 8.5 (JetPack 5.1), 10.3")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_run_check)


def _run_check(args):
    from defectrt.export.check import check_onnx

    if args.model.lower().endswith((".pt", ".pth", ".safetensors")):  # issue 19: a checkpoint is no ONNX yet
        from defectrt.errors import UserInputError

        raise UserInputError("{0}: export check reads an ONNX file; export the checkpoint first: defectrt export onnx "
                             "{0} --target-trt {1} (or defectrt export build {0} -o model.bundle --target-trt {1})".format(
                                 args.model, args.target_trt))
    report = check_onnx(args.model, args.target_trt)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format())
    return 0 if report.ok else 1


def _build_registrar():
    try:
        module = importlib.import_module("defectrt.cli.export_build")
    except ImportError as exc:
        if exc.name == "defectrt.cli.export_build":
            return None
        raise
    return module.register


SUBCOMMANDS = {"onnx": _register_onnx, "check": _register_check}


def register(subparsers):
    p = subparsers.add_parser("export", help="export to ONNX, check TensorRT compatibility, build deployment bundles")
    export_sub = p.add_subparsers(dest="export_command", metavar="SUBCOMMAND")
    registrars = dict(SUBCOMMANDS)
    build = _build_registrar()
    if build is not None:
        registrars["build"] = build
    for name in ("onnx", "check", "build"):
        if name in registrars:
            registrars[name](export_sub)
    for name, fn in registrars.items():
        if name not in ("onnx", "check", "build"):
            fn(export_sub)
    p.set_defaults(func=lambda args: p.print_help() or 2)

# Triton model repository and DeepStream config (issue 20).
from defectrt.cli import export_triton as _export_triton  # noqa: E402

SUBCOMMANDS["triton"] = _export_triton.register
SUBCOMMANDS["deepstream"] = _export_triton.register_deepstream
