"""The Python environment that Triton's Python-backend stub runs in, under PyTriton's `tritonserver`.

Why a separate environment: the stub binaries shipped in nvidia-pytriton 0.7.0 read numpy arrays through a
pybind11 that predates numpy 2's new array-descriptor layout. Under numpy >= 2 they read every tensor's
element size as 0: inputs arrive as copies of their first element and outputs leave with 0 bytes (measured
here: `binary_data_size: 0` for every output). That is why every nvidia-pytriton release requires numpy < 2.
defectrt's own process keeps the numpy it has; only the stub gets numpy < 2, from a small environment that
holds `STUB_PACKAGES` and then falls through (a `site.addsitedir` line in a .pth file) to the packages of the
environment that runs the server (pyzmq, pytriton, defectrt, onnxruntime).

Also: the stub links `libpython3.X.so` by name. The dynamic loader finds the system's copy first, which
may be an older patch release than the interpreter whose standard library the stub then imports (seen
here: Debian's 3.11.2 library with pyenv's 3.11.7 library -> AttributeError inside multiprocessing). So the
interpreter's own library folder goes first on LD_LIBRARY_PATH (`library_path_env`).

Create the environment once with `defectrt serve --prepare` (or `python -m defectrt.serving.stub_env`);
`make test` does that. It lives inside the virtual environment that runs the server (else in
~/.cache/defectrt/), unless DEFECTRT_TRITON_STUB_ENV names a folder.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import sysconfig

from defectrt.errors import UserInputError

STUB_PACKAGES = ("numpy==1.26.4", "opencv-python-headless==4.11.0.86")
MARKER = "defectrt-stub-env.txt"
LAYOUT = 2  # bump when the .pth changes: prepare() then rewrites an existing environment


def needed():
    """True when this environment's numpy is too new for the stub (numpy >= 2)."""
    import numpy as np

    return int(np.__version__.split(".")[0]) >= 2


def default_path():
    """Per interpreter environment: the .pth inside points at this environment's packages."""
    override = os.environ.get("DEFECTRT_TRITON_STUB_ENV")
    if override:
        return os.path.abspath(override)
    if sys.prefix != sys.base_prefix and os.access(sys.prefix, os.W_OK):
        return os.path.join(sys.prefix, "defectrt-triton-stub")  # beside the packages it falls through to
    key = hashlib.sha256(os.path.abspath(sys.prefix).encode("utf-8")).hexdigest()[:10]
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "defectrt", "triton-stub-py{}.{}-{}".format(
        sys.version_info[0], sys.version_info[1], key))


def _site_packages(env):
    return os.path.join(env, "lib", "python{}.{}".format(*sys.version_info[:2]), "site-packages")


def _marker_text():
    return "\n".join(STUB_PACKAGES + (sys.prefix, "layout {}".format(LAYOUT))) + "\n"


def is_ready(env):
    marker = os.path.join(env, MARKER)
    if not os.path.isfile(marker):
        return False
    with open(marker) as f:
        return f.read() == _marker_text()


def prepare(env=None, log=print, timeout_s=600):
    """Create (or complete) the stub environment; idempotent. -> its path."""
    env = env or default_path()
    if is_ready(env):
        return env
    log("defectrt: creating the Triton Python-backend environment in {} ({})".format(env, ", ".join(STUB_PACKAGES)))
    base = getattr(sys, "_base_executable", None) or sys.executable
    try:
        subprocess.run([base, "-m", "venv", "--without-pip", "--clear", env], check=True, timeout=timeout_s)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                        "--target", _site_packages(env)] + list(STUB_PACKAGES), check=True, timeout=timeout_s)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        raise UserInputError("could not create the Triton Python-backend environment {}: {}; check that pip can "
                             "reach the package index, or set DEFECTRT_TRITON_STUB_ENV to a folder you can "
                             "write".format(env, exc))
    parents = [p for p in sysconfig.get_paths().values() if p.endswith("site-packages")]
    parents = sorted(set(parents), key=parents.index)
    with open(os.path.join(_site_packages(env), "zz_defectrt_parent.pth"), "w") as f:
        # After this folder's own packages: the server environment's (pyzmq, pytriton, defectrt, editable finders).
        # The embedded stub ignores PYTHONPATH; honour it the way python does (first on the path).
        f.write("import os, sys; sys.path[:0] = [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) "
                "if p and p not in sys.path]\n")
        f.write("import site; " + "; ".join("site.addsitedir({!r})".format(p) for p in parents) + "\n")
    with open(os.path.join(env, MARKER), "w") as f:
        f.write(_marker_text())
    return env


def require(env=None):
    """-> the stub environment to use, or a UserInputError saying how to create it."""
    if not needed():
        return sys.exec_prefix
    env = env or default_path()
    if not is_ready(env):
        raise UserInputError("the Triton Python-backend environment {} is missing: PyTriton's stub needs numpy < 2 "
                             "and this environment has numpy >= 2. Create it once with `defectrt serve --prepare` "
                             "(pip installs {} there)".format(env, ", ".join(STUB_PACKAGES)))
    return env


def library_path_env(environ=None):
    """A copy of `environ` whose LD_LIBRARY_PATH starts with this interpreter's libpython folder."""
    environ = dict(os.environ if environ is None else environ)
    libdir = sysconfig.get_config_var("LIBDIR")
    ldlib = sysconfig.get_config_var("LDLIBRARY")
    if libdir and ldlib and os.path.exists(os.path.join(libdir, ldlib)):
        rest = environ.get("LD_LIBRARY_PATH")
        environ["LD_LIBRARY_PATH"] = libdir + (os.pathsep + rest if rest else "")
    return environ


def use_for_pytriton(env):
    """Point PyTriton's server at `env` for its Python-backend stub (nvidia-pytriton 0.7.0's hook)."""
    import pathlib

    from pytriton.server import triton_server

    triton_server.get_triton_python_backend_python_env = lambda: pathlib.Path(env)
    os.environ.update(library_path_env())


if __name__ == "__main__":
    print(prepare())
