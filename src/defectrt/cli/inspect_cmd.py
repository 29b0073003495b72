"""`defectrt inspect FILE [--json]`: what is inside a checkpoint, ONNX model, bundle or engine."""
from __future__ import annotations

import json


def register(sub):
    p = sub.add_parser("inspect", help="show what a checkpoint, ONNX model, bundle or engine holds")
    p.add_argument("file", help="best.pt / .safetensors / .onnx / bundle folder / .engine")
    p.add_argument("--target-trt", action="append", metavar="VER",
                   help="TensorRT versions to check the ONNX against (repeatable; default: every known release)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args):
    from defectrt.inspection import format_info, inspect_path

    info = inspect_path(args.file, args.target_trt)
    print(json.dumps(info, indent=2, default=str) if args.json else format_info(info))
    return 0
