"""The lowered (gather-based) grid sample: equal to torch's border/bilinear grid_sample, in PyTorch and after export."""
import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from defectrt.export.check import check_onnx  # noqa: E402
from defectrt.models.dysample import DySample  # noqa: E402
from defectrt.models.gridsample_lowered import grid_sample_border_bilinear  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def reference(x, grid):
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@pytest.mark.parametrize("shape", [(2, 3, 5, 7, 10, 14), (3, 8, 20, 20, 40, 40), (1, 4, 1, 1, 3, 3), (2, 2, 1, 9, 4, 5),
                                   (1, 5, 13, 3, 6, 2)])
def test_matches_torch_on_random_grids(shape):
    n, c, h, w, ho, wo = shape
    gen = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(n, c, h, w, generator=gen)
    grid = torch.rand(n, ho, wo, 2, generator=gen) * 2.2 - 1.1  # a little outside on every side too
    torch.testing.assert_close(grid_sample_border_bilinear(x, grid), reference(x, grid), atol=1e-5, rtol=0)


@pytest.mark.parametrize("scale", [3.0, 50.0, 1e4])
def test_matches_torch_far_outside_the_map(scale):
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, 6, 9, 11, generator=gen)
    grid = (torch.rand(2, 8, 12, 2, generator=gen) * 2 - 1) * scale
    out = grid_sample_border_bilinear(x, grid)
    torch.testing.assert_close(out, reference(x, grid), atol=1e-5, rtol=0)
    # border padding: nothing beyond the value range of the map
    assert out.min() >= x.min() - 1e-6 and out.max() <= x.max() + 1e-6


def test_exact_edges_and_pixel_centres():
    h, w = 4, 6
    x = torch.arange(2 * 3 * h * w, dtype=torch.float).reshape(2, 3, h, w)
    # Pixel centres (exact values), the -1/+1 borders, half-pixel positions and the exact corners.
    xs = torch.tensor([-1.0, -1 + 1 / w, 0.0, 1 - 1 / w, 1.0, (2 * 2.5 + 1) / w - 1])
    ys = torch.tensor([-1.0, -1 + 1 / h, 1 - 1 / h, 1.0])
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack((gx, gy), -1).unsqueeze(0).repeat(2, 1, 1, 1)
    out = grid_sample_border_bilinear(x, grid)
    torch.testing.assert_close(out, reference(x, grid), atol=1e-5, rtol=0)
    # The centres of the first and of the last pixel read those pixels; the corners clamp to them.
    torch.testing.assert_close(out[:, :, 1, 1], x[:, :, 0, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[:, :, 2, 3], x[:, :, h - 1, w - 1], atol=1e-5, rtol=0)
    assert torch.equal(out[:, :, 0, 0], x[:, :, 0, 0]) and torch.equal(out[:, :, 3, 4], x[:, :, h - 1, w - 1])


def test_dysample_lowered_equals_native_in_torch():
    torch.manual_seed(0)
    block = DySample(64).eval()
    torch.nn.init.normal_(block.offset.weight, std=0.5)  # large offsets: samples leave the map
    x = torch.randn(2, 64, 12, 10)
    with torch.no_grad():
        block.sample_mode = "native"
        native = block(x)
        block.sample_mode = "lowered"
        lowered = block(x)
    torch.testing.assert_close(lowered, native, atol=1e-5, rtol=0)


def _export(module, args, names, dynamic_axes, opset=17):
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, f, dynamo=False, opset_version=opset, input_names=names, output_names=["y"],
                          dynamic_axes=dynamic_axes)
    return onnx.load_from_string(f.getvalue())


def _ort(model, feeds):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def _reference_evaluator(model, feeds):
    """onnx.reference's GridSample only knows the opset-20 mode names: rename bilinear -> linear (same function)."""
    from onnx.reference import ReferenceEvaluator

    m = onnx.ModelProto()
    m.CopyFrom(model)
    for node in m.graph.node:
        for a in node.attribute:
            if node.op_type == "GridSample" and a.name == "mode" and a.s == b"bilinear":
                a.s = b"linear"
    m.opset_import[0].version = 20
    return ReferenceEvaluator(m).run(None, feeds)[0]


class _Fn(torch.nn.Module):
    def forward(self, x, grid):
        return grid_sample_border_bilinear(x, grid)


def test_lowered_function_exports_without_gridsample_and_is_size_generic():
    dyn = {"x": {0: "n", 2: "h", 3: "w"}, "g": {0: "n", 1: "ho", 2: "wo"}}
    model = _export(_Fn(), (torch.randn(1, 4, 6, 8), torch.rand(1, 12, 16, 2) * 2 - 1), ["x", "g"], dyn, opset=13)
    ops = {n.op_type for n in model.graph.node}
    assert "GridSample" not in ops and "Gather" in ops and "GatherElements" not in ops
    assert check_onnx(model, "8.0").ok, check_onnx(model, "8.0").format()  # dynamic everything, still TensorRT 8.0
    gen = torch.Generator().manual_seed(3)
    for n, c, h, w, ho, wo in [(1, 4, 6, 8, 12, 16), (3, 4, 9, 5, 7, 11), (2, 4, 1, 2, 3, 3)]:
        x = torch.randn(n, c, h, w, generator=gen)
        grid = (torch.rand(n, ho, wo, 2, generator=gen) * 2 - 1) * 1.5
        got = _ort(model, {"x": x.numpy(), "g": grid.numpy()})
        np.testing.assert_allclose(got, reference(x, grid).numpy(), atol=1e-5, rtol=0)


def test_dysample_block_lowered_vs_native_vs_reference_after_export():
    torch.manual_seed(1)
    block = DySample(16).eval()
    torch.nn.init.normal_(block.offset.weight, std=0.3)
    dyn = {"x": {0: "n", 2: "h", 3: "w"}}
    graphs = {}
    for mode in ("native", "lowered"):
        block.sample_mode = mode
        graphs[mode] = _export(block, (torch.randn(1, 16, 8, 8),), ["x"], dyn)
    assert "GridSample" in {n.op_type for n in graphs["native"].graph.node}
    assert "GridSample" not in {n.op_type for n in graphs["lowered"].graph.node}
    assert all("/sampler/" in n.name for n in graphs["lowered"].graph.node if n.op_type in ("Gather", "Floor"))
    block.sample_mode = "native"
    for shape in [(1, 16, 8, 8), (2, 16, 5, 7), (1, 16, 3, 12)]:  # sizes other than the export size
        x = torch.randn(*shape)
        with torch.no_grad():
            want = block(x).numpy()
        feeds = {"x": x.numpy()}
        native, lowered = _ort(graphs["native"], feeds), _ort(graphs["lowered"], feeds)
        assert native.shape == lowered.shape == (shape[0], 16, 2 * shape[2], 2 * shape[3])
        np.testing.assert_allclose(lowered, native, atol=1e-5, rtol=0)
        np.testing.assert_allclose(lowered, want, atol=1e-5, rtol=0)
        if shape[0] * shape[2] * shape[3] <= 64:  # onnx.reference's GridSample is a Python loop: small maps only
            np.testing.assert_allclose(_reference_evaluator(graphs["native"], feeds), want, atol=1e-5, rtol=0)
