"""Progress bars and how loud the libraries we drive may be (issue 19).

Three levels, set once by the CLI (`-q`, default, `-v`) and readable by any library code:

- ``QUIET`` (-1): no progress bars, no library logs; errors only.
- ``NORMAL`` (0, the default): a progress bar for every step that can take more than two seconds, drawn
  only on a terminal (tqdm's own check); the libraries' chatter (Polygraphy's ``[I]`` lines, its
  ``'colored' module`` warning, ModelOpt's repeated warnings, calibration ``UserWarning`` source lines)
  is hidden.
- ``VERBOSE`` (1): the libraries log as they like.

The level also lives in the environment variable ``DEFECTRT_VERBOSITY`` so worker processes follow it.
Python 3.8 compatible (device side); tqdm is a base dependency.
"""
from __future__ import annotations

import logging
import os
import sys
import warnings

QUIET, NORMAL, VERBOSE = -1, 0, 1
_ENV = "DEFECTRT_VERBOSITY"


def verbosity():
    try:
        return max(QUIET, min(VERBOSE, int(os.environ.get(_ENV, NORMAL))))
    except ValueError:
        return NORMAL


def set_verbosity(level):
    """Set the level for this process and its children, and quiet the libraries accordingly."""
    level = max(QUIET, min(VERBOSE, int(level)))
    os.environ[_ENV] = str(level)
    quiet_libraries(level)
    return level


def bar(iterable=None, total=None, desc=None, unit="it", leave=False, enabled=True):
    """A tqdm bar on stderr; none at -q, none when `enabled` is False (a job known to be short), and none when
    stderr is not a terminal (tqdm's disable=None)."""
    from tqdm import tqdm

    import shutil

    disable = True if verbosity() <= QUIET or not enabled else None
    # a terminal that reports 0 columns (a fresh pty, `script`) would make tqdm draw an empty bar
    # and 0 rows would make it hide the bar as "below the screen"
    size = shutil.get_terminal_size((100, 24))
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, disable=disable, file=sys.stderr,
                ncols=size.columns or 100, nrows=size.lines or 24)


class Phases(object):
    """A bar over the named phases of one long job (export -> check -> build ...): ``with Phases([...]) as p:
    p.next("export")``. Each call names the phase now running."""

    def __init__(self, names, desc=None):
        self.names = list(names)
        self._bar = bar(total=len(self.names), desc=desc, unit="step")
        self._started = False

    def next(self, name):
        if self._started:
            self._bar.update(1)
        self._started = True
        self._bar.set_postfix_str(name, refresh=True)

    def close(self):
        if self._started:
            self._bar.update(1)
        self._bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def info(message):
    """A status line on stderr, unless -q."""
    if verbosity() > QUIET:
        print(message, file=sys.stderr)


# Loggers of libraries we call that speak at INFO by default.
_NOISY_LOGGERS = ("modelopt", "onnx2torch", "onnxslim", "polygraphy", "onnxscript", "torch.onnx", "onnx_ir",
                  "openvino")


def quiet_libraries(level=None):
    """Hide the libraries' own logs at NORMAL / QUIET; restore them at VERBOSE."""
    level = verbosity() if level is None else level
    if level >= VERBOSE:
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.NOTSET)
        _quiet_polygraphy(level)
        return
    threshold = logging.ERROR if level <= QUIET else logging.WARNING
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(threshold)
    # Polygraphy prints `[W] 'colored' module is not installed` and `[I]` lines through its own logger.
    os.environ.setdefault("POLYGRAPHY_AUTOINSTALL_DEPS", "0")
    warnings.filterwarnings("ignore", message=".*'colored' module.*")
    # ModelOpt / calibration warnings: once, without the source line (showwarning below), or none at -q.
    warnings.filterwarnings("ignore" if level <= QUIET else "once", category=UserWarning, module="modelopt.*")
    warnings.filterwarnings("ignore" if level <= QUIET else "once", category=UserWarning, module="torch.*")
    warnings.showwarning = _one_line_warning
    _quiet_polygraphy(level)


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    if verbosity() <= QUIET:
        return
    print("warning: {} ({})".format(message, category.__name__), file=file or sys.stderr)


def _quiet_polygraphy(level):
    try:  # a base dependency, light to import; its G_LOGGER is one object for every later import
        from polygraphy.logger import G_LOGGER
    except Exception:
        return
    apply_polygraphy_level(G_LOGGER, level)


def apply_polygraphy_level(g_logger, level=None):
    """Polygraphy's G_LOGGER at WARNING (NORMAL), ERROR (QUIET) or INFO (VERBOSE)."""
    level = verbosity() if level is None else level
    try:
        if level >= VERBOSE:
            g_logger.module_severity = g_logger.INFO
        else:
            g_logger.module_severity = g_logger.ERROR if level <= QUIET else g_logger.WARNING
    except Exception:  # an older Polygraphy without module_severity: leave it as it is
        pass
