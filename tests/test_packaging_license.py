"""The package's licence metadata (issue 19): every install printed setuptools' `project.license` deprecation
warning. The licence is now set by setup.py in the form the running setuptools knows (License-Expression from 77 on,
License before, for Python 3.8 / JetPack 5), and LICENSE holds the Apache-2.0 text. These tests build the wheel
metadata with the setuptools of this environment (no network, ~2 s) and read it back."""
import os
import shutil
import subprocess
import sys
from email.parser import Parser

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# setup.py's branch for setuptools < 77 is reached by making setuptools report an old version (the real old
# setuptools needs Python 3.8 and the network; a hand check with 75.3.4 on 3.8 is in the notes of issue 19).
_PREPARE = r"""
import os, sys, warnings
warnings.simplefilter("always")
import setuptools
if sys.argv[2]:
    setuptools.__version__ = sys.argv[2]
from setuptools import build_meta
print("DIST-INFO=" + build_meta.prepare_metadata_for_build_wheel(sys.argv[1]))
"""


def _source_copy(dest):
    """The files that make the metadata, copied; a stub package instead of src/ (its contents do not matter here
    and egg-info must not be written into the checkout)."""
    for name in ("pyproject.toml", "setup.py", "LICENSE", "README.md"):
        shutil.copy2(os.path.join(ROOT, name), str(dest / name))
    pkg = dest / "src" / "defectrt"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")


def _metadata(tmp_path, fake_setuptools_version=""):
    try:
        import setuptools  # noqa: F401
    except ImportError:
        pytest.skip("setuptools is not installed in this environment (the build backend): cannot build metadata")
    src = tmp_path / "src-copy"
    src.mkdir()
    _source_copy(src)
    out = tmp_path / "meta"
    out.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", _PREPARE, str(out), fake_setuptools_version],
        cwd=str(src), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=120,
    )
    if "invalid command 'bdist_wheel'" in proc.stdout:  # setuptools < 70.1 builds wheels through `wheel`
        pytest.skip("this environment's setuptools needs the `wheel` package to build metadata, and it is missing")
    assert proc.returncode == 0, proc.stdout[-3000:]
    dist_info = proc.stdout.rsplit("DIST-INFO=", 1)[1].strip()
    with open(str(out / dist_info / "METADATA"), encoding="utf-8") as f:
        meta = Parser().parse(f)
    return proc.stdout, meta, out / dist_info


def _no_licence_warning(log):
    """No warning about the licence (others, e.g. old `wheel` releases' bdist_wheel deprecation, are not ours)."""
    lines = [line for line in log.splitlines()
             if "licen" in line.lower() and ("deprecat" in line.lower() or "classifier" in line.lower())]
    assert not lines, "the build still warns:\n" + "\n".join(lines)


def test_license_file_is_the_apache_2_text():
    with open(os.path.join(ROOT, "LICENSE"), encoding="utf-8") as f:
        text = f.read()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and len(text) > 10000


def test_metadata_says_apache_2_without_a_deprecation_warning(tmp_path):
    import setuptools

    log, meta, dist_info = _metadata(tmp_path)
    _no_licence_warning(log)
    if int(setuptools.__version__.split(".")[0]) >= 77:
        assert meta["License-Expression"] == "Apache-2.0"
    else:
        assert meta["License"] == "Apache-2.0"
    assert "LICENSE" in (meta.get_all("License-File") or [])
    # no licence classifier: setuptools >= 77 warns about them, and refuses them next to License-Expression
    assert not [c for c in (meta.get_all("Classifier") or []) if c.startswith("License ::")]


def test_setuptools_before_77_gets_the_license_field(tmp_path):
    """setup.py's branch for the setuptools of Python 3.8 (< 77, no License-Expression): the plain License
    field, still without a warning."""
    log, meta, _ = _metadata(tmp_path, fake_setuptools_version="75.3.4")
    _no_licence_warning(log)
    assert meta["License"] == "Apache-2.0"
    assert meta["License-Expression"] is None
