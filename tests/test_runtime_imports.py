"""The device side imports and runs without torch, and stays Python 3.8 compatible."""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BLOCK_TORCH = """
import sys
class _NoTorch(object):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked for this test")
        return None
    find_module = None
sys.meta_path.insert(0, _NoTorch())
"""

CHECK = BLOCK_TORCH + """
import numpy as np
import defectrt
import defectrt.runtime.detector, defectrt.runtime.preprocess, defectrt.runtime.postprocess
import defectrt.runtime.onnxruntime_backend, defectrt.runtime.bundle, defectrt.runtime.tensorrt_backend
import defectrt.runtime.cuda_buffers, defectrt.runtime.pipeline
import defectrt.cli
parser = defectrt.cli.build_parser()
assert "detect" in parser.format_help()
sys.path.insert(0, sys.argv[1])
from test_runtime_models import rect_finder, save, draw_rect
det = defectrt.Detector(save(rect_finder(), sys.argv[2]), threads=1)
d = det(draw_rect(100, 200, 10, 10, 50, 50))
assert d.names == ["scratch", "dent"], d
assert "torch" not in sys.modules or sys.modules["torch"] is None
print("ok")
"""


def test_runtime_and_cli_work_with_torch_unimportable(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
    proc = subprocess.run([sys.executable, "-c", CHECK, os.path.join(ROOT, "tests"), str(tmp_path / "m.onnx")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("ok")


def test_detect_help_imports_no_torch_and_no_runtime():
    """issue 15: cli/__init__ imports every command module plainly; `defectrt detect --help` (the device side's
    first command) must still import neither torch nor a backend library."""
    code = BLOCK_TORCH + """
from defectrt.cli import main
try:
    main(["detect", "--help"])
except SystemExit as exc:
    assert exc.code == 0, exc.code
heavy = [m for m in ("torch", "onnxruntime", "openvino", "cv2", "onnx") if m in sys.modules]
assert not heavy, heavy
print("ok")
"""
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "--conf" in proc.stdout and proc.stdout.strip().endswith("ok")


def test_blocking_really_blocks_torch():
    proc = subprocess.run([sys.executable, "-c", BLOCK_TORCH + "import torch"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0 and "blocked" in proc.stderr


@pytest.mark.skipif(shutil.which("vermin") is None and not os.path.exists(os.path.join(os.path.dirname(sys.executable), "vermin")),
                    reason="vermin not installed")
def test_runtime_is_python_3_8_compatible():
    vermin = shutil.which("vermin") or os.path.join(os.path.dirname(sys.executable), "vermin")
    files = [os.path.join(ROOT, "src", "defectrt", "runtime"), os.path.join(ROOT, "src", "defectrt", "cli", "detect_cmd.py")]
    proc = subprocess.run([vermin, "-t=3.8-", "--no-tips", "--violations"] + files, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
