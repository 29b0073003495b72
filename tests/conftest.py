import os
import sys

import pytest

# Test helpers (fixtures that write checkpoints etc.) live beside the tests.
sys.path.insert(0, os.path.dirname(__file__))


def pytest_collection_modifyitems(config, items):
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        skip = pytest.mark.skip(reason="TensorRT not installed: TensorRT paths are unverified on hardware here")
        for item in items:
            if "tensorrt" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch intra-op thread for a module (exports trace on one thread anyway; tiny training tensors gain
    nothing from more): on a shared 2-core machine more OpenMP threads only spin. Use with
    `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def demo_bundle(tmp_path_factory):
    """demo:screw built into an FP32 bundle by the export API (what `make demo` builds), once per session."""
    pytest.importorskip("torch")
    from defectrt.export.bundle import build_bundle

    out = str(tmp_path_factory.mktemp("demo") / "screw.bundle")
    build_bundle("demo:screw", out, precision="fp32")
    return out


@pytest.fixture(scope="session")
def screw_image():
    """(BGR 384x672 image, YOLO labels): a synthetic screw from a seed no demo training set uses."""
    from defectrt.data.synth import generate

    return generate("screw", 3, seed=4242)


@pytest.fixture(autouse=True)
def _verbosity_restored():
    """A test that runs the CLI with -q sets DEFECTRT_VERBOSITY for the whole process (as the CLI should);
    put it back so that later tests see the default level (a quiet level left behind silenced the engine
    build's progress lines in test_trt_fixes when test order changed)."""
    saved = os.environ.get("DEFECTRT_VERBOSITY")
    yield
    if saved is None:
        os.environ.pop("DEFECTRT_VERBOSITY", None)
    else:
        os.environ["DEFECTRT_VERBOSITY"] = saved
