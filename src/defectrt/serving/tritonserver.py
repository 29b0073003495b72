"""Start the `tritonserver` binary that nvidia-pytriton ships on a model repository (no PyTriton proxy).

PyTriton's binary has the Python backend only (no ONNX Runtime, TensorRT or OpenVINO backend), so a repository
from `defectrt export triton` loads here up to its Python-backend steps; the tests use this to run those steps
on a real server. The backend folder is assembled in a scratch folder: Triton's Python backend plus the stub
built for this interpreter's Python version; the stub then runs in `defectrt.serving.stub_env`'s environment.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

from defectrt.errors import BackendUnavailable


def _pytriton_root():
    try:
        import pytriton
    except ImportError:
        raise BackendUnavailable("the tritonserver binary comes with nvidia-pytriton: make install-triton "
                                 "(pip install --no-deps nvidia-pytriton==0.7.0)")
    root = os.path.join(os.path.dirname(os.path.abspath(pytriton.__file__)), "tritonserver")
    libs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(pytriton.__file__))), "nvidia_pytriton.libs")
    return root, libs


def backend_folder(dest):
    """Assemble backends/python (library, utils, this Python's stub) under `dest`; -> the backends folder."""
    root, _ = _pytriton_root()
    stub = os.path.join(root, "python_backend_stubs", "{}.{}".format(*sys.version_info[:2]), "triton_python_backend_stub")
    if not os.path.isfile(stub):
        raise BackendUnavailable("nvidia-pytriton has no Python-backend stub for Python {}.{}".format(
            *sys.version_info[:2]))
    python = os.path.join(dest, "backends", "python")
    os.makedirs(python)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        shutil.copy(os.path.join(root, "backends", "python", name), python)
    shutil.copy(stub, python)
    return os.path.join(dest, "backends")


def launch(repository, ports, load=(), address="127.0.0.1", stub_env=None, log_file=None, extra=()):
    """-> (subprocess.Popen, scratch folder) of tritonserver in explicit model-control mode, loading `load`.

    The caller stops it (terminate / kill) and removes the scratch folder.
    """
    from defectrt.serving import stub_env as stub_mod

    env_dir = stub_mod.require(stub_env)
    root, libs = _pytriton_root()
    scratch = tempfile.mkdtemp(prefix="defectrt-tritonserver-")
    try:
        backends = backend_folder(scratch)
        env = stub_mod.library_path_env()
        env["LD_LIBRARY_PATH"] = env.get("LD_LIBRARY_PATH", "") + os.pathsep + libs
        env["PATH"] = os.path.join(env_dir, "bin") + os.pathsep + env.get("PATH", "")  # the stub's Python
        cmd = [os.path.join(root, "bin", "tritonserver"), "--model-repository", os.path.abspath(repository),
               "--backend-directory", backends, "--model-control-mode", "explicit",
               "--http-address", address, "--http-port", str(ports[0]), "--grpc-address", address,
               "--grpc-port", str(ports[1]), "--metrics-address", address, "--metrics-port", str(ports[2]),
               "--allow-gpu-metrics", "false", "--exit-timeout-secs", "5", "--exit-on-error", "false"]
        cmd += ["--load-model={}".format(m) for m in load] + list(extra)
        out = open(log_file, "ab") if log_file else subprocess.DEVNULL
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        if out is not subprocess.DEVNULL:
            out.close()
        return proc, scratch
    except Exception:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
