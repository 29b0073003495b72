"""PyTorch model -> ONNX for every TensorRT our users have (`defectrt export onnx`).

    from defectrt.export.onnx import export_onnx
    r = export_onnx("yolo11n-dysample", "m.onnx", imgsz=640, target_trt="8.2")
    r.grid_sample, r.grid_sample_reason, r.max_abs_diff

Decisions (docs/EXPORT.md has the long form):
- Exporter: the TorchScript one, `torch.onnx.export(..., dynamo=False)`. torch >= 2.9 defaults to the
  dynamo exporter; the TorchScript one is deprecated but still shipped and working in torch 2.13 (checked
  by the tests). We keep it because (1) its node names carry the module scope (`/model.11/sampler/...`),
  which is how the DySample FP32 island is found by the FP16/INT8 steps and the TensorRT builder; (2) it
  exports at opset 13 for TensorRT 8.0-8.4 parsers and at 16-17 with GridSample, and its `dynamic_axes`
  are mature; (3) its graphs are the ones every TensorRT release has been validated with in the field.
- DySample grid sampling ("grid_sample"): "native" = ONNX GridSample (opset >= 16, TensorRT >= 8.5);
  "lowered" = gather-based subgraph every TensorRT 8.0+ parses (defectrt.models.gridsample_lowered);
  "plugin" = native, then GridSample replaced by a TensorRT plugin node (defectrt.export.plugins);
  "auto": with --target-trt: lowered below 8.5, native from 8.5; without a target: native (what ONNX
  Runtime and TensorRT >= 8.5 run), with the reason saying how to get the lowered form - or lowered when
  the file is for ONNX Runtime's CPU provider (`for_cpu`, the INT8 `cpu` flavour), where it is faster.
- Opset: 17 by default (GridSample exists from 16; opset 20 renames GridSample's modes and TensorRT then
  silently samples nearest). With a --target-trt whose parser documents a lower maximum (8.0-8.2: 13) the
  default becomes that maximum.
- After export: onnxslim simplification, checked (ONNX Runtime before vs after on the same input, and the
  island names re-checked), then PyTorch vs ONNX Runtime parity (max abs diff recorded), metadata per
  docs/CONTRACTS.md, and `check_onnx` against the target when one is given. Written atomically.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass, field

import numpy as np

from defectrt import __version__
from defectrt.errors import DefectrtError, UserInputError
from defectrt.export.islands import ISLAND_MARK
from defectrt.options import ExportSpec
from defectrt.options import resolve as resolve_options
from defectrt.fileio import atomic_path, check_output
from defectrt.modelref import parse_imgsz

log = logging.getLogger("defectrt")

GRID_SAMPLE_MODES = ("auto", "native", "lowered", "plugin")
DEFAULT_OPSET = 17
MIN_OPSET = 11
GRIDSAMPLE_MIN_OPSET = 16
GRIDSAMPLE_RENAMED_OPSET = 20
# Parity tolerances, as a fraction of the output's range (boxes are in pixels, scores in [0, 1]).
PARITY_RTOL = 1e-3  # torch vs ONNX Runtime: fails the export (real differences are ~1e-7 of the range)
SIMPLIFY_RTOL = 1e-5  # ONNX Runtime before vs after simplification


class ExportVerificationError(DefectrtError):
    """The exported graph does not compute what the PyTorch model computes."""


@dataclass
class ExportResult:
    path: str
    grid_sample: str  # "native" | "lowered" | "plugin" | "none"
    grid_sample_reason: str
    metadata: dict
    max_abs_diff: float = None  # torch vs ONNX Runtime on the export input (None for plugin graphs)
    output_range: float = None
    opset: int = None
    imgsz: tuple = None
    batch: object = 1  # int, or "dynamic"
    dynamic_hw: bool = False
    simplified: bool = False
    island_nodes: list = field(default_factory=list)
    check: object = None  # defectrt.export.check.Report when a target was given
    notes: list = field(default_factory=list)

    def summary(self):
        lines = [
            "wrote {} (opset {}, {}x{}, batch {}{}{})".format(
                self.path, self.opset, self.imgsz[0], self.imgsz[1], self.batch, ", dynamic H/W" if self.dynamic_hw else "",
                ", simplified" if self.simplified else ""),
            "grid-sample: {} - {}".format(self.grid_sample, self.grid_sample_reason),
        ]
        if self.max_abs_diff is not None:
            lines.append("PyTorch vs ONNX Runtime: max abs diff {:.3g} (output range {:.4g})".format(
                self.max_abs_diff, self.output_range))
        if self.island_nodes:
            lines.append("FP32 island: {} nodes under {}".format(
                len(self.island_nodes), ", ".join(sorted({n[: n.index(ISLAND_MARK) + len(ISLAND_MARK)] for n in self.island_nodes}))))
        if self.check is not None:
            lines.append(self.check.format())
        lines.extend("note: " + n for n in self.notes)
        return "\n".join(lines)


def resolve_opset(opset, target_trt=None, grid_sample="auto"):
    """None -> 17, or the target parser's documented maximum when that is lower (TensorRT 8.0-8.2: 13).

    grid_sample="plugin" keeps at least 16: the GridSample node must exist before it becomes a plugin node.
    """
    if opset is None:
        opset = DEFAULT_OPSET
        if target_trt is not None:
            from defectrt.export.check import support_for

            opset = min(opset, support_for(target_trt)[1]["max_opset"])
        if grid_sample == "plugin":
            opset = max(opset, GRIDSAMPLE_MIN_OPSET)
        return opset
    try:
        opset = int(opset)
    except (TypeError, ValueError):
        raise UserInputError("--opset {!r}: give an integer such as 17".format(opset)) from None
    max_opset = _exporter_max_opset()
    if not MIN_OPSET <= opset <= max_opset:
        raise UserInputError("--opset {}: the TorchScript exporter takes {}..{} (default {})".format(
            opset, MIN_OPSET, max_opset, DEFAULT_OPSET))
    return opset


def _exporter_max_opset():
    try:
        from torch.onnx import _constants

        return int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 20))
    except ImportError:
        return 20


def choose_grid_sample(requested, has_dysample, opset, target_trt=None, for_cpu=False):
    """-> (mode, reason). Raises UserInputError for combinations that cannot work.

    for_cpu: the file is meant for ONNX Runtime's CPU provider; "auto" without a TensorRT target then
    picks the lowered form, the faster of the two there (BENCHMARKS.md) for the same function.
    """
    from defectrt import trt_compat

    if requested not in GRID_SAMPLE_MODES:
        raise UserInputError("--grid-sample {!r}: choose one of {}".format(requested, ", ".join(GRID_SAMPLE_MODES)))
    if not has_dysample:
        return "none", "the model has no DySample, so there is no grid sampling to export"
    # Whether the target's ONNX parser imports GridSample is read from the support table (8.5+).
    target = target_trt is not None
    no_native = target and not trt_compat.parser_has_op(target_trt, "GridSample")
    tname = "TensorRT {}".format(target_trt) if target_trt is not None else None
    if requested == "native" and no_native:
        raise UserInputError(
            "--grid-sample native cannot be parsed by {} (ONNX GridSample is parsed from TensorRT 8.5 / JetPack 5.1); "
            "use --grid-sample lowered (or auto)".format(tname))
    if requested in ("native", "plugin"):
        if opset < GRIDSAMPLE_MIN_OPSET:
            raise UserInputError(
                "--grid-sample {} needs opset >= {} (ONNX GridSample arrives in opset 16), got --opset {}; use --opset 17 "
                "or --grid-sample lowered".format(requested, GRIDSAMPLE_MIN_OPSET, opset))
        if opset >= GRIDSAMPLE_RENAMED_OPSET:
            raise UserInputError(
                "--grid-sample {} at --opset {}: GridSample-20 renames its modes to 'linear'/'cubic', which TensorRT's "
                "parser does not recognise (it silently samples nearest, NVIDIA/TensorRT#4646); use --opset 17".format(
                    requested, opset))
    if requested == "native":
        return "native", "asked for (--grid-sample native): ONNX GridSample, parsed by TensorRT >= 8.5"
    if requested == "lowered":
        return "lowered", "asked for (--grid-sample lowered): gather-based sampling that every TensorRT 8.0+ parses"
    if requested == "plugin":
        return "plugin", "asked for (--grid-sample plugin): GridSample replaced by a TensorRT plugin node"
    # auto
    if no_native:
        return "lowered", ("{} has no GridSample in its ONNX parser (8.5+), so DySample's sampling is lowered to "
                           "Gather/Floor/Mul/Add, which it parses".format(tname))
    if opset < GRIDSAMPLE_MIN_OPSET:
        return "lowered", "opset {} has no GridSample (opset 16+), so the sampling is lowered to gathers".format(opset)
    if opset >= GRIDSAMPLE_RENAMED_OPSET:
        return "lowered", ("at opset {} GridSample's renamed modes are misread by TensorRT (falls back to nearest), "
                           "so the sampling is lowered to gathers".format(opset))
    if target:
        return "native", "{} parses ONNX GridSample (8.5+), so the native op is kept".format(tname)
    if for_cpu:
        return "lowered", ("for ONNX Runtime's CPU provider, where the gather-based form runs faster than GridSample "
                           "(same function); pass --grid-sample native to keep the op")
    return "native", ("no --target-trt given: native ONNX GridSample (ONNX Runtime; TensorRT >= 8.5). For JetPack 4.6 / "
                      "5.0 (TensorRT 8.0-8.4) pass --target-trt 8.2 / 8.4 or --grid-sample lowered")


def _has_dysample(model):
    from defectrt.models.dysample import DySample

    return any(isinstance(m, DySample) for m in model.modules())


def _state_dict_digest(model):
    h = hashlib.sha256()
    sd = model.state_dict()
    for k in sorted(sd):
        h.update(k.encode())
        h.update(sd[k].detach().float().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def _resolve_model(model_or_ref):
    """-> (private eval-mode copy of the model, weights_sha256)."""
    import torch

    if isinstance(model_or_ref, torch.nn.Module):
        model = copy.deepcopy(model_or_ref)
    else:
        from defectrt.models import resolve_model_ref

        if not isinstance(model_or_ref, (str, os.PathLike)):
            raise UserInputError("model must be an nn.Module, a registry name, a checkpoint path or demo:NAME, got {!r}".format(
                type(model_or_ref).__name__))
        model = resolve_model_ref(model_or_ref)
    digest = getattr(model, "weights_sha256", None) or _state_dict_digest(model)
    return model.eval(), digest


def _ort_session(model_bytes):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = min(4, os.cpu_count() or 1)
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # verification runs: do not busy-wait
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def _run_ort(model_bytes, x):
    return _ort_session(model_bytes).run(None, {"images": x})[0]


def _torch_export(model, x, path, opset, dynamic_batch, dynamic_hw):
    import torch

    axes_in, axes_out = {}, {}
    if dynamic_batch:
        axes_in[0], axes_out[0] = "batch", "batch"
    if dynamic_hw:
        axes_in.update({2: "height", 3: "width"})
        axes_out[2] = "anchors"
    with warnings.catch_warnings():
        # The TorchScript exporter warns that it is deprecated (chosen on purpose, see module docstring),
        # and the tracer warns about Python-side shape checks that do not affect the graph.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        with torch.no_grad():
            torch.onnx.export(
                model, (torch.from_numpy(x),), path, dynamo=False, opset_version=opset, input_names=["images"],
                output_names=["output0"], dynamic_axes={"images": axes_in, "output0": axes_out} if axes_in else None,
                do_constant_folding=True,
            )


def _simplify(model):
    import onnxslim

    try:
        return onnxslim.slim(model)
    except Exception as exc:  # onnxslim raises assorted errors on graphs it cannot handle
        raise ExportVerificationError("onnxslim failed ({}: {}); export with simplify=False / --no-simplify".format(
            type(exc).__name__, exc)) from None


def _rel(diff, ref):
    rng = float(np.max(ref) - np.min(ref)) if ref.size else 0.0
    return diff / max(rng, 1e-6), rng


def _torch_forward(model, x):
    import torch

    with torch.no_grad():
        y = model(torch.from_numpy(x))
    if isinstance(y, (tuple, list)):
        y = y[0]
    return y.detach().cpu().numpy()


def _verify(model, model_bytes, x, what):
    ref = _torch_forward(model, x)
    got = _run_ort(model_bytes, x)
    if got.shape != ref.shape:
        raise ExportVerificationError("{}: ONNX output shape {} but PyTorch gives {}".format(what, got.shape, ref.shape))
    diff = float(np.max(np.abs(got - ref))) if ref.size else 0.0
    rel, rng = _rel(diff, ref)
    if not np.isfinite(diff) or rel > PARITY_RTOL:
        raise ExportVerificationError("{}: ONNX Runtime differs from PyTorch by {:.4g} (output range {:.4g})".format(
            what, diff, rng))
    return diff, rng


def _metadata(model, imgsz, grid_sample, nms, digest):
    names = getattr(model, "names", None) or {}
    stride = getattr(model, "stride", None)
    stride = int(max(float(s) for s in stride)) if stride is not None and len(stride) else 32
    variant = getattr(model, "variant", None) or (getattr(model, "yaml", None) or {}).get("variant") or type(model).__name__
    return {
        "names": json.dumps({str(k): str(v) for k, v in sorted(names.items(), key=lambda kv: int(kv[0]))}),
        "imgsz": json.dumps([int(imgsz[0]), int(imgsz[1])]),
        "stride": str(stride),
        "variant": str(variant),
        "grid_sample": grid_sample,
        "nms": nms,
        "defectrt_version": __version__,
        "weights_sha256": digest,
        "precision": "fp32",
        "task": "detect",
    }


def _set_metadata(onnx_model, meta):
    existing = {p.key: p for p in onnx_model.metadata_props}
    for k, v in meta.items():
        if k in existing:
            existing[k].value = v
        else:
            p = onnx_model.metadata_props.add()
            p.key, p.value = k, v


def _model_stride(model):
    stride = getattr(model, "stride", None)
    try:
        return int(max(float(s) for s in stride))
    except (TypeError, ValueError):
        return 32


def export_onnx(model_or_ref, output, imgsz=None, batch=1, dynamic_batch=False, dynamic_hw=False, opset=None,
                grid_sample="auto", target_trt=None, simplify=True, nms="none", force=False,
                nms_conf=0.25, nms_iou=0.45, nms_max_det=300, for_cpu=False, spec=None):
    """Export a detector to ONNX (see the module docstring). Returns an ExportResult.

    model_or_ref: nn.Module, registry name ("yolo11n-dysample"), checkpoint path (.safetensors / .pt) or demo:NAME.
    imgsz: 640 or (h, w), multiples of the model's largest stride (32); None = the checkpoint's, else 640.
    batch: fixed batch size; dynamic_batch=True makes it a dynamic axis (batch is then the export/verify batch).
    dynamic_hw: dynamic height/width axes (sizes are computed in-graph, so other sizes stay correct).
    opset: None = 17, or the target parser's maximum when lower. grid_sample: auto | native | lowered | plugin;
    for_cpu: the file is for ONNX Runtime on a CPU ("auto" then lowers the grid sampling, see choose_grid_sample).
    target_trt: "8.2", "10.3", ... chooses the grid-sample form and opset, and the result is checked against it.
    nms: "none" (default), or "onnx" / "trt" to append NMS (defectrt.export.nms).
    spec: the same settings as one defectrt.options.ExportSpec (then give none of them as keywords).
    """
    import onnx

    spec = resolve_options(ExportSpec, spec, dict(
        imgsz=imgsz, batch=batch, dynamic_batch=dynamic_batch, dynamic_hw=dynamic_hw, opset=opset,
        grid_sample=grid_sample, target_trt=target_trt, simplify=simplify, nms=nms, nms_conf=nms_conf,
        nms_iou=nms_iou, nms_max_det=nms_max_det, for_cpu=for_cpu), "export_onnx")
    imgsz, batch, dynamic_batch, dynamic_hw = spec.imgsz, spec.batch, spec.dynamic_batch, spec.dynamic_hw
    opset, grid_sample, target_trt, simplify, nms = spec.opset, spec.grid_sample, spec.target_trt, spec.simplify, spec.nms
    nms_conf, nms_iou, nms_max_det, for_cpu = spec.nms_conf, spec.nms_iou, spec.nms_max_det, spec.for_cpu

    output = os.fspath(output)
    if not output.endswith(".onnx"):
        raise UserInputError("{}: the output should be an .onnx file".format(output))
    if nms not in ("none", "onnx", "trt"):
        raise UserInputError("--nms {!r}: choose none, onnx or trt".format(nms))
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise UserInputError("--batch {!r}: give a positive integer".format(batch))
    if target_trt is not None:
        from defectrt.export.check import support_for

        support_for(target_trt)  # validates the version early
    opset = resolve_opset(opset, target_trt, grid_sample)
    check_output(output, force)  # fail before the slow part: existing file without force, unwritable folder

    model, digest = _resolve_model(model_or_ref)
    if imgsz is None:
        imgsz = getattr(model, "imgsz", None) or 640
    h, w = parse_imgsz(imgsz, "--imgsz")
    stride = _model_stride(model)
    if h % stride or w % stride:
        def near(v):
            return "{} or {}".format(max(stride, v // stride * stride), (v // stride + 1) * stride)

        raise UserInputError("--imgsz {}x{} must be a multiple of {} (the model's largest stride); try {} x {}".format(
            h, w, stride, near(h), near(w)))
    has_dysample = _has_dysample(model)
    mode, reason = choose_grid_sample(grid_sample, has_dysample, opset, target_trt, for_cpu=for_cpu)
    notes = []

    if hasattr(model, "fuse"):
        model.fuse()
    if has_dysample:
        from defectrt.models import set_sample_mode

        set_sample_mode(model, "lowered" if mode == "lowered" else "native")
    x = np.random.default_rng(0).random((int(batch), 3, h, w), dtype=np.float32)

    with tempfile.TemporaryDirectory(prefix="defectrt-export-") as work:
        raw_path = os.path.join(work, "raw.onnx")
        try:
            _torch_export(model, x, raw_path, opset, dynamic_batch, dynamic_hw)
        except DefectrtError:
            raise
        except Exception as exc:
            raise ExportVerificationError("torch.onnx.export failed: {}: {}".format(type(exc).__name__, exc)) from exc
        onnx_model = onnx.load(raw_path)

    if mode == "plugin":
        onnx_model = _apply_plugin(onnx_model, target_trt)
    runnable = mode != "plugin"  # ONNX Runtime cannot run a TensorRT plugin node

    simplified = False
    if simplify:
        before = onnx_model
        after = _simplify(copy.deepcopy(onnx_model))
        from defectrt.export.islands import island_intact, repair_island

        renamed = repair_island(after)
        if renamed:
            notes.append("re-marked {} node(s) into the FP32 island after simplification".format(len(renamed)))
        problems = island_intact(before, after)
        if problems:
            raise ExportVerificationError("simplification broke the DySample FP32 island ({}); export with --no-simplify".format(
                "; ".join(problems)))
        if runnable:
            y0 = _run_ort(before.SerializeToString(), x)
            y1 = _run_ort(after.SerializeToString(), x)
            d = float(np.max(np.abs(y0 - y1))) if y0.shape == y1.shape else float("inf")
            rel, rng = _rel(d, y0)
            if not np.isfinite(d) or rel > SIMPLIFY_RTOL:
                raise ExportVerificationError("simplification changed the outputs by {:.4g} (range {:.4g}); export with "
                                              "--no-simplify".format(d, rng))
        onnx_model, simplified = after, True

    max_diff = out_range = None
    if runnable:
        data = onnx_model.SerializeToString()
        max_diff, out_range = _verify(model, data, x, "export input")
        if dynamic_batch:
            xb = np.random.default_rng(1).random((int(batch) + 1, 3, h, w), dtype=np.float32)
            max_diff = max(max_diff, _verify(model, data, xb, "dynamic batch {}".format(int(batch) + 1))[0])
        if dynamic_hw:
            xs = np.random.default_rng(2).random((int(batch), 3, h + stride, w + 2 * stride), dtype=np.float32)
            max_diff = max(max_diff, _verify(model, data, xs, "dynamic H/W at {}x{}".format(h + stride, w + 2 * stride))[0])
    else:
        notes.append("the plugin graph was not run (ONNX Runtime has no TensorRT plugins); the native graph it came from "
                     "is what PyTorch parity covers")

    meta = _metadata(model, (h, w), mode, nms, digest)
    if nms != "none":
        from defectrt.export.nms import append_nms

        onnx_model = append_nms(onnx_model, nms, conf=nms_conf, iou=nms_iou, max_det=nms_max_det)
    _set_metadata(onnx_model, meta)
    onnx_model.producer_name, onnx_model.producer_version = "defectrt", __version__

    from defectrt.export.islands import island_nodes

    report = None
    if target_trt is not None:
        from defectrt.export.check import check_onnx

        report = check_onnx(onnx_model, target_trt)
        if not report.ok:
            raise UserInputError("the exported model would not parse on TensorRT {}:\n{}".format(target_trt, report.format()))
    with atomic_path(output, force=force) as tmp:
        onnx.save(onnx_model, tmp)
    result = ExportResult(
        path=output, grid_sample=mode, grid_sample_reason=reason, metadata=meta, max_abs_diff=max_diff,
        output_range=out_range, opset=opset, imgsz=(h, w), batch="dynamic" if dynamic_batch else int(batch),
        dynamic_hw=bool(dynamic_hw), simplified=simplified, island_nodes=island_nodes(onnx_model), check=report, notes=notes,
    )
    log.info("grid-sample %s: %s", mode, reason)
    return result


def _apply_plugin(onnx_model, target_trt):
    try:
        from defectrt.export.plugins import replace_gridsample_with_plugin
    except ImportError as exc:
        if exc.name and exc.name.startswith("defectrt.export.plugins"):
            raise UserInputError("--grid-sample plugin is not available in this installation (defectrt.export.plugins "
                                 "is missing); use --grid-sample lowered or native") from None
        raise
    replaced = replace_gridsample_with_plugin(onnx_model, target_trt)
    return replaced if replaced is not None else onnx_model
