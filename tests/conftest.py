import os
import sys

# Test helpers (fixtures that write checkpoints etc.) live beside the tests.
sys.path.insert(0, os.path.dirname(__file__))


def pytest_collection_modifyitems(config, items):
    import pytest

    try:
        import tensorrt  # noqa: F401
    except ImportError:
        skip = pytest.mark.skip(reason="TensorRT not installed: TensorRT paths are unverified on hardware here")
        for item in items:
            if "tensorrt" in item.keywords:
                item.add_marker(skip)
