"""`defectrt export ...`: onnx (PyTorch -> ONNX), check (will it parse on TensorRT X.Y?), build (bundle).

Each sub-command is a registrar in SUBCOMMANDS (name -> function(export_subparsers)); `build` comes from
defectrt.cli.export_build. Heavy imports stay inside the handlers.
"""
from __future__ import annotations

import json

from defectrt.cli import export_build
from defectrt.cli.options import add_batch, add_grid_sample, add_imgsz, add_opset, add_target_trt, add_thresholds, export_spec


def _register_onnx(export_sub):
    p = export_sub.add_parser(
        "onnx", help="PyTorch model -> ONNX (DySample grid-sample native or lowered for old TensorRT)",
        description="Export a registry model, checkpoint (.safetensors / Ultralytics .pt) or demo:NAME to ONNX, "
        "verified against PyTorch with ONNX Runtime. Prints which grid-sample form it chose and why.",
    )
    p.add_argument("model", help="registry name (yolo11n-dysample), checkpoint file, or demo:screw / demo:pcb")
    p.add_argument("-o", "--output", required=True, help="ONNX file to write, e.g. model.onnx")
    add_imgsz(p, help="N or H W, multiples of 32 (default: the checkpoint's, else 640)")
    add_batch(p)
    p.add_argument("--dynamic-hw", action="store_true", help="make height and width dynamic axes")
    add_opset(p, help="ONNX opset (default 17, or 13 for a --target-trt below 8.5 whose parser documents 13)")
    add_grid_sample(p)
    add_target_trt(p)
    p.add_argument("--no-simplify", action="store_true", help="skip onnxslim simplification")
    p.add_argument("--nms", choices=("none", "onnx", "trt"), default="none", help="append NMS to the graph (default none)")
    add_thresholds(p, conf=0.25, iou=0.45, max_det=300, what=" of the in-graph NMS (with --nms)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.set_defaults(func=_run_onnx)


def _run_onnx(args):
    import logging

    from defectrt.export.onnx import export_onnx

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    result = export_onnx(args.model, args.output, force=args.force, spec=export_spec(args))
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
    add_target_trt(p, required=True, help="e.g. 8.2 (JetPack 4.6), 8.5 (JetPack 5.1), 10.3")
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


SUBCOMMANDS = {"onnx": _register_onnx, "check": _register_check, "build": export_build.register}


def register(subparsers):
    p = subparsers.add_parser("export", help="export to ONNX, check TensorRT compatibility, build deployment bundles")
    export_sub = p.add_subparsers(dest="export_command", metavar="SUBCOMMAND")
    for fn in SUBCOMMANDS.values():  # in insertion order: onnx, check, build, then the later ones
        fn(export_sub)
    p.set_defaults(func=lambda args: p.print_help() or 2)

# Triton model repository and DeepStream config (issue 20).
from defectrt.cli import export_triton as _export_triton  # noqa: E402

SUBCOMMANDS["triton"] = _export_triton.register
SUBCOMMANDS["deepstream"] = _export_triton.register_deepstream
