"""The `defectrt` command: a thin argparse layer over the Python API.

Each sub-command lives in its own module with `register(subparsers)`; handlers import their heavy
dependencies (torch, onnxruntime, cv2) lazily so `defectrt --help` and the device-side commands never
pay for, or need, torch.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from defectrt import __version__
from defectrt.errors import DefectrtError

# Module names under defectrt.cli, in the order of the flow: models -> export -> runtime -> bench.
_COMMAND_MODULES = ("models_cmd", "data_cmd", "train_cmd", "val_cmd", "export_cmd", "detect_cmd", "bench_cmd")
# issue 16: on-device checks (defectrt verify BUNDLE, defectrt doctor)
_COMMAND_MODULES += ("verify_cmd", "doctor_cmd")


def imgsz_arg(values):
    """--imgsz as given (`nargs="+"` ints: N or H W) -> (h, w), or None when it was not given."""
    if not values:
        return None
    if len(values) not in (1, 2):
        from defectrt.errors import UserInputError

        raise UserInputError("--imgsz takes one value or two (H W)")
    _check_imgsz_values(values)  # issue 19: refused before anything is loaded, by every command
    return int(values[0]), int(values[-1])


def build_parser():
    parser = argparse.ArgumentParser(
        prog="defectrt",
        description="YOLO11 defect detectors from PyTorch to TensorRT / ONNX Runtime: export, build, run, measure.",
    )
    parser.add_argument("--version", action="version", version="defectrt " + __version__)
    add_output_options(parser)  # issue 19: -q / -v / --debug
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module("defectrt.cli." + name)
        except ImportError as exc:  # a command whose module is missing must not break the others
            if exc.name == "defectrt.cli." + name:
                continue
            raise
        module.register(sub)
    _output_options_everywhere(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    apply_output_options(args)
    try:
        result = args.func(args)
    except DefectrtError as exc:
        if getattr(args, "debug", False):
            raise
        from defectrt.friendly import clean

        print("defectrt {}: error: {}".format(args.command, clean(exc)), file=sys.stderr)
        return 1
    except Exception as exc:  # issue 19: one actionable line, the traceback only with --debug
        return _unexpected(args, exc)
    except KeyboardInterrupt:
        print("defectrt {}: interrupted".format(args.command), file=sys.stderr)
        return 130
    return int(result or 0)


# Triton serving (issue 20): `defectrt serve`.
_COMMAND_MODULES += ("serve_cmd",)
# issue 19: `defectrt inspect FILE`.
_COMMAND_MODULES += ("inspect_cmd",)


# issue 19: output levels (-q / -v), --debug, and no raw traceback for errors we can explain.
def add_output_options(parser):
    g = parser.add_mutually_exclusive_group()
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bars and no library logs (errors only)")
    g.add_argument("-v", "--verbose", action="store_true", help="show the libraries' own logs (Polygraphy, ModelOpt)")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")


def _output_options_everywhere(subparsers_action):
    """-q / -v / --debug also after the sub-command (`defectrt export build ... -q`), where free."""
    for parser in subparsers_action.choices.values():
        taken = set(parser._option_string_actions)
        for flags, kw in ((("-q", "--quiet"), dict(action="store_true", help="no progress bars and no library logs")),
                          (("-v", "--verbose"), dict(action="store_true", help="show the libraries' own logs")),
                          (("--debug",), dict(action="store_true", help="show the full traceback of an error"))):
            free = [f for f in flags if f not in taken]
            if len(free) == len(flags):
                parser.add_argument(*free, default=argparse.SUPPRESS, **kw)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                _output_options_everywhere(action)


def apply_output_options(args):
    from defectrt import progress

    level = progress.QUIET if getattr(args, "quiet", False) else progress.VERBOSE if getattr(args, "verbose", False) else progress.NORMAL
    progress.set_verbosity(level)


def _unexpected(args, exc):
    from defectrt.friendly import clean, explain

    if getattr(args, "debug", False):
        raise exc
    message = explain(exc)
    if message is None:
        message = "{}: {} (an unexpected error; run again with --debug for the traceback and report it)".format(
            type(exc).__name__, exc)
    print("defectrt {}: error: {}".format(args.command, clean(message)), file=sys.stderr)
    return 1


def _check_imgsz_values(values):
    from defectrt.errors import UserInputError

    text = " ".join(str(v) for v in values)
    if any(int(v) <= 0 for v in values):
        raise UserInputError("--imgsz {}: sizes must be positive multiples of 32, e.g. --imgsz 640 or --imgsz 384 672".format(text))
    if any(int(v) % 32 for v in values):
        near = " ".join(str(max(32, int(round(int(v) / 32.0)) * 32)) for v in values)
        raise UserInputError("--imgsz {}: not a multiple of 32 (the models' stride); use --imgsz {}".format(text, near))
