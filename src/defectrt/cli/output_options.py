"""issue 19: -q / -v / --debug on every command, and errors as one actionable line (no traceback)."""
from __future__ import annotations

import argparse
import sys
import traceback

from defectrt.errors import DefectrtError


def add(parser):
    g = parser.add_mutually_exclusive_group()
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bars and no library logs (errors only)")
    g.add_argument("-v", "--verbose", action="store_true", help="show the libraries' own logs (Polygraphy, ModelOpt)")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")


def everywhere(subparsers_action):
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
                everywhere(action)


def apply(args):
    """Set the output level and wrap the command so that errors end as one clean line."""
    from defectrt import progress

    level = progress.QUIET if getattr(args, "quiet", False) else \
        progress.VERBOSE if getattr(args, "verbose", False) else progress.NORMAL
    progress.set_verbosity(level)
    func = args.func

    def guarded(a):
        try:
            check_imgsz(getattr(a, "imgsz", None))  # before the command loads anything
            return func(a)
        except DefectrtError as exc:  # printed by cli.main as one line; --debug shows the traceback first
            if getattr(a, "debug", False):
                traceback.print_exc()
            from defectrt.friendly import clean

            exc.args = (clean(str(exc)),)
            raise
        except Exception as exc:  # KeyboardInterrupt is no Exception: main() handles it
            return unexpected(a, exc)

    args.func = guarded


def unexpected(args, exc):
    from defectrt.friendly import clean, explain

    if getattr(args, "debug", False):
        raise exc
    message = explain(exc)
    if message is None:
        message = "{}: {} (an unexpected error; run again with --debug for the traceback and report it)".format(
            type(exc).__name__, exc)
    print("defectrt {}: error: {}".format(getattr(args, "command", "") or "", clean(message)), file=sys.stderr)
    return 1


def check_imgsz(values):
    """Every command's --imgsz (N or H W): positive multiples of 32 (the models' stride), refused up front."""
    from defectrt.errors import UserInputError
    from defectrt.modelref import parse_imgsz

    if not isinstance(values, (list, tuple)) or not values:
        return
    text = " ".join(str(v) for v in values)
    try:
        hw = parse_imgsz(list(values), "--imgsz")
    except UserInputError:
        raise UserInputError("--imgsz {}: sizes must be positive multiples of 32, e.g. --imgsz 640 or --imgsz 384 672"
                             .format(text)) from None
    if hw[0] % 32 or hw[1] % 32:
        near = " ".join(str(max(32, int(round(int(v) / 32.0)) * 32)) for v in values)
        raise UserInputError("--imgsz {}: not a multiple of 32 (the models' stride); use --imgsz {}".format(text, near))