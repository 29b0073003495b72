"""issue 19: `detect --save-dir` on a read-only folder (and `export build -o` into one) ends in one line that names
the folder and says what to do: exit 1, no traceback, nothing written.

End to end: the CLI runs in a subprocess against a folder the kernel really refuses. Tests here run as root, which
ignores permission bits, so as root the subprocess runs without the capabilities that let root write anywhere
(CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH dropped from its bounding set before exec: it keeps uid 0, so an
interpreter under /root stays reachable) or, where that is not allowed, as the user `nobody`; as any other user a
chmod 0o555 is enough."""
import ctypes
import os
import stat
import subprocess
import sys
import tempfile

import cv2
import pytest

from test_runtime_models import draw_rect, rect_finder, save

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")

_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


def _drop_dac_capabilities():
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, "prctl(PR_CAPBSET_DROP): " + os.strerror(err))


def _as_nobody():
    import pwd

    user = pwd.getpwnam("nobody")
    os.setgroups([])
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)


def _can_write(folder, preexec_fn, env):
    probe = "open({!r}, 'w').close()".format(os.path.join(folder, "probe"))
    try:
        p = subprocess.run([sys.executable, "-c", probe], preexec_fn=preexec_fn, env=env, timeout=60,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    except (OSError, subprocess.SubprocessError) as exc:  # that user cannot run the interpreter, or no prctl
        return None, str(exc)
    if "PermissionError" in p.stderr:
        return False, ""
    return (True, "") if p.returncode == 0 else (None, p.stderr.strip().splitlines()[-1:])


@pytest.fixture(scope="module")
def case():
    """A world-readable folder with a model, an image folder, a read-only folder `ro` and a writable HOME; and how
    to run a process that the read-only folder really refuses."""
    root = tempfile.mkdtemp(prefix="defectrt-ro-")
    os.chmod(root, 0o755)  # readable by `nobody`
    save(rect_finder(), os.path.join(root, "rf.onnx"))
    images = os.path.join(root, "imgs")
    os.mkdir(images)
    cv2.imwrite(os.path.join(images, "a.png"), draw_rect(333, 517, 101, 57, 300, 211))
    home = os.path.join(root, "home")
    os.mkdir(home)
    os.chmod(home, 0o777)
    ro = os.path.join(root, "ro")
    os.mkdir(ro)
    os.chmod(ro, 0o555)
    for dirpath, dirs, files in os.walk(root):
        for name in files:
            os.chmod(os.path.join(dirpath, name), 0o644)
    env = dict(os.environ, PYTHONPATH=SRC, HOME=home, XDG_CACHE_HOME=os.path.join(home, ".cache"))
    env.pop("DEFECTRT_VERBOSITY", None)
    how, reasons = None, []
    candidates = [("no capabilities", _drop_dac_capabilities), ("nobody", _as_nobody)] if os.geteuid() == 0 else [
        ("chmod 0o555", None)]
    for label, fn in candidates:
        writes, why = _can_write(ro, fn, env)
        if writes is False:
            how = fn
            break
        reasons.append("{}: {}".format(label, why or "the read-only folder was still writable"))
    try:
        if len(reasons) == len(candidates):
            pytest.skip("no way to run the CLI where a read-only folder is refused ({})".format("; ".join(reasons)))
        yield root, ro, how, env
    finally:
        os.chmod(ro, stat.S_IRWXU)
        import shutil

        shutil.rmtree(root, ignore_errors=True)


def _cli(case, argv, cwd=None):
    root, ro, how, env = case
    p = subprocess.run([sys.executable, "-m", "defectrt"] + argv, preexec_fn=how, env=env, cwd=cwd or root,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=300)
    assert "Traceback" not in p.stderr, p.stderr
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert os.listdir(ro) == [], "something was written into the read-only folder"
    return p.stderr.strip()


def test_detect_into_a_read_only_save_dir(case):
    root, ro, _, _ = case
    err = _cli(case, ["detect", os.path.join(root, "imgs"), "-m", os.path.join(root, "rf.onnx"), "--save-dir", ro])
    assert err.startswith("defectrt detect: error: cannot write to {}: the folder is not writable".format(ro)), err
    assert "choose another --save-dir, in a folder you can write to" in err


def test_detect_save_dir_inside_a_read_only_folder(case):
    root, ro, _, _ = case
    wanted = os.path.join(ro, "run1")
    err = _cli(case, ["detect", os.path.join(root, "imgs"), "-m", os.path.join(root, "rf.onnx"),
                      "--save-dir", wanted])
    assert "cannot create the output folder {}: Permission denied".format(wanted) in err, err
    assert "choose another --save-dir" in err


def test_detect_default_run_folder_in_a_read_only_working_folder(case):
    root, ro, _, _ = case
    err = _cli(case, ["detect", os.path.join(root, "imgs", "a.png"), "-m", os.path.join(root, "rf.onnx")], cwd=ro)
    assert "cannot create the project folder {}".format(os.path.join(ro, "runs", "detect")) in err, err
    assert "choose the output with --save-dir" in err


def test_export_build_into_a_read_only_parent(case):
    root, ro, _, _ = case
    out = os.path.join(ro, "rf.bundle")
    err = _cli(case, ["export", "build", os.path.join(root, "rf.onnx"), "-o", out])
    assert "cannot write to {}: the folder is not writable".format(ro) in err, err
    assert "choose an output path in a folder you can write to" in err
