"""The licence metadata only; everything else is in pyproject.toml.

pyproject.toml has no `license` form that every setuptools we build with accepts quietly: the PEP 639 string
(`license = "Apache-2.0"`) needs setuptools >= 77, which needs Python >= 3.9, while the device side must install on
Python 3.8 (JetPack 5, whose newest setuptools is 75.3); the old table form (`license = {text = ...}`) prints a
deprecation warning on every build from setuptools 77 on. So `license` is dynamic and set here in the form the
running setuptools knows: `License-Expression` (PEP 639) from 77 on, the older `License` field before. The text is
in LICENSE, which setuptools ships in the wheel by its default license-file patterns in both cases.
"""
import setuptools

LICENSE = "Apache-2.0"


def _setuptools_major():
    try:
        return int(setuptools.__version__.split(".")[0])
    except ValueError:
        return 0


if _setuptools_major() >= 77:
    setuptools.setup(license_expression=LICENSE)
else:
    setuptools.setup(license=LICENSE)
