"""issue 19 item 1: progress bars on a terminal, none with -q; the libraries' logs quiet by default."""
import os
import subprocess
import sys
import warnings

import pytest

pty = pytest.importorskip("pty")  # POSIX only

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def _run_in_pty(args, timeout=300):
    """Run `python -m defectrt ARGS` with stdout / stderr on a pseudo-terminal; -> (rc, everything it wrote)."""
    master, slave = pty.openpty()
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), COLUMNS="120")
    proc = subprocess.Popen([sys.executable, "-m", "defectrt"] + args, stdin=slave, stdout=slave, stderr=slave,
                            env=env, close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    rc = proc.wait(timeout=timeout)
    return rc, b"".join(chunks).decode("utf-8", "replace")


# nc=3 is not in the shipped GFLOPs cache, so the row is computed behind a progress bar.
_MODELS = ["models", "--variant", "yolo11n", "--nc", "3"]


def test_terminal_shows_a_progress_bar():
    rc, out = _run_in_pty(_MODELS)
    assert rc == 0, out
    assert "computing GFLOPs" in out and "|" in out and "model" in out
    assert "yolo11n" in out and "Traceback" not in out


def test_quiet_shows_no_progress_bar():
    rc, out = _run_in_pty(["-q"] + _MODELS)
    assert rc == 0, out
    assert "computing GFLOPs" not in out and "yolo11n" in out


def test_no_bar_when_not_a_terminal():
    env = dict(os.environ, PYTHONPATH=SRC)
    p = subprocess.run([sys.executable, "-m", "defectrt"] + _MODELS, capture_output=True,
                       text=True, env=env, timeout=300)
    assert p.returncode == 0 and "computing GFLOPs" not in p.stderr


def test_levels_quiet_the_libraries(monkeypatch):
    from polygraphy.logger import G_LOGGER

    from defectrt import progress

    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)
    with warnings.catch_warnings():
        progress.set_verbosity(progress.NORMAL)
        assert G_LOGGER.module_severity.get() == G_LOGGER.WARNING
        progress.set_verbosity(progress.VERBOSE)
        assert G_LOGGER.module_severity.get() == G_LOGGER.INFO
        progress.set_verbosity(progress.QUIET)
        assert progress.verbosity() == progress.QUIET
        assert list(progress.bar(range(3))) == [0, 1, 2]
        progress.set_verbosity(progress.NORMAL)


def test_one_line_warning_without_source(capsys):
    from defectrt import progress

    progress.set_verbosity(progress.NORMAL)
    progress._one_line_warning(UserWarning("calibration used 3 images"), UserWarning, "/x/y.py", 12,
                               line="    warnings.warn(...)")
    err = capsys.readouterr().err
    assert err.strip() == "warning: calibration used 3 images (UserWarning)"


def test_detect_draws_a_bar_on_a_terminal_and_none_with_q(tmp_path):
    """detect over a folder: a bar on a terminal, none with -q (the same rule as every other command)."""
    import cv2
    import numpy as np

    for i in range(12):
        cv2.imwrite(str(tmp_path / "{:02d}.png".format(i)), np.full((48, 64, 3), 20 * i, np.uint8))
    ckpt = os.path.join(os.path.dirname(SRC), "tests", "fixtures", "ultralytics", "multipliers_leaky_nc2.pt")
    argv = ["detect", "-m", ckpt, str(tmp_path), "--imgsz", "64", "--no-save"]
    rc, out = _run_in_pty(argv)
    assert rc == 0, out
    assert "detect:" in out and "/12 [" in out
    rc, out = _run_in_pty(["-q"] + argv)
    assert rc == 0, out
    assert "/12 [" not in out and "12 images" in out
