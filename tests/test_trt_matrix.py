"""The native TensorRT code against the real TensorRT headers (native/trt_matrix/run_matrix.py).

`make trt-matrix` (part of `make test`) runs every version in ../shared/third_party/tensorrt; here the binding-API and
the newest tensor-API version are built again into a temporary folder, and the link is shown to catch a symbol the stub
does not provide. Skipped with the script's reason where ../shared, a compiler or the CUDA toolkit is absent.
"""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "native", "trt_matrix", "run_matrix.py")


def run_matrix(*args):
    proc = subprocess.run([sys.executable, SCRIPT] + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True)
    if "SKIPPED" in proc.stdout:
        pytest.skip(proc.stdout.strip())
    return proc


def test_backend_and_plugins_build_against_binding_and_tensor_api_headers(tmp_path):
    proc = run_matrix("--versions", "8.2,11.1", "--build", str(tmp_path), "--jobs", "2")
    assert proc.returncode == 0, proc.stdout
    assert "ok   8.2    (8.2.3, binding API)" in proc.stdout
    assert "ok   11.1   (11.1.0, tensor API)" in proc.stdout
    assert proc.stdout.count("4 run checks + 31 fake-runtime checks passed") == 2


def test_link_fails_when_the_stub_lacks_a_symbol_the_plugins_call(tmp_path):
    proc = run_matrix("--prove-missing", "--build", str(tmp_path))
    assert proc.returncode == 0, proc.stdout
    assert "undefined reference to `getPluginRegistry'" in proc.stdout


def test_a_missing_version_is_named(tmp_path):
    proc = run_matrix("--versions", "7.1", "--build", str(tmp_path))
    assert proc.returncode != 0 and "no header set for 7.1" in proc.stdout


def test_backend_logic_under_address_and_ub_sanitizers(tmp_path):
    """The fake-runtime run of the backend (binding and tensor API) with ASan + UBSan: a leaked engine / context /
    buffer, an out-of-bounds copy or an overflow fails it."""
    proc = run_matrix("--sanitize", "--versions", "8.4,11.1", "--build", str(tmp_path), "--jobs", "2")
    assert proc.returncode == 0, proc.stdout
    assert "ok   8.4 fake_check under ASan + UBSan" in proc.stdout
    assert "ok   11.1 fake_check under ASan + UBSan" in proc.stdout
