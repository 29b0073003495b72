"""The `defectrt` command: a thin argparse layer over the Python API.

Each sub-command lives in its own module with `register(subparsers)`; handlers import their heavy
dependencies (torch, onnxruntime, cv2) lazily so `defectrt --help` and the device-side commands never
pay for, or need, torch.
"""
from __future__ import annotations

import argparse
import sys

from defectrt import __version__
from defectrt.cli import output_options as _output_options
# issue 15: plain imports of our own command modules (each imports its heavy dependencies lazily, in its
# handler, so `defectrt detect --help` never imports torch; tests/test_runtime_imports.py checks that).
from defectrt.cli import (bench_cmd, data_cmd, detect_cmd, doctor_cmd, export_cmd, inspect_cmd, models_cmd,
                          serve_cmd, train_cmd, val_cmd, verify_cmd)
from defectrt.cli.options import imgsz_arg  # noqa: F401  (kept importable from defectrt.cli)
from defectrt.errors import DefectrtError

# The commands, in the order of the flow: models -> export -> runtime -> bench.
_COMMAND_MODULES = (models_cmd, data_cmd, train_cmd, val_cmd, export_cmd, detect_cmd, bench_cmd)
# issue 16: on-device checks (defectrt verify BUNDLE, defectrt doctor)
_COMMAND_MODULES += (verify_cmd, doctor_cmd)
_COMMAND_MODULES += (inspect_cmd,)  # issue 19: defectrt inspect FILE


def build_parser():
    parser = argparse.ArgumentParser(
        prog="defectrt",
        description="YOLO11 defect detectors from PyTorch to TensorRT / ONNX Runtime: export, build, run, measure.",
    )
    parser.add_argument("--version", action="version", version="defectrt " + __version__)
    _output_options.add(parser)  # issue 19: -q / -v / --debug
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _COMMAND_MODULES:
        module.register(sub)
    _output_options.everywhere(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(route_nested(sys.argv[1:] if argv is None else list(argv)))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    _output_options.apply(args)  # issue 19: output level; errors as one line (--debug: the traceback)
    try:
        result = args.func(args)
    except DefectrtError as exc:
        print("defectrt {}: error: {}".format(getattr(args, "command_label", args.command), exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("defectrt {}: interrupted".format(args.command), file=sys.stderr)
        return 130
    return int(result or 0)


# Triton serving (issue 20): `defectrt serve`.
_COMMAND_MODULES += (serve_cmd,)


# issue 15: nested sub-commands. `defectrt PARENT CHILD ...` is parsed by the parser registered as
# "PARENT-CHILD" (prog "defectrt PARENT CHILD"), so `bench merge` has its own options and help while
# `bench MODEL...` keeps its positional models.
_NESTED = {("bench", "merge"): "bench-merge"}


def route_nested(argv):
    argv = [str(a) for a in argv]
    for i, token in enumerate(argv):
        if not token.startswith("-"):  # the command: the first word that is not an option
            if tuple(argv[i:i + 2]) in _NESTED:
                return argv[:i] + [_NESTED[tuple(argv[i:i + 2])]] + argv[i + 2:]
            break
    return argv
