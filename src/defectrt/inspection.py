"""`defectrt inspect FILE`: what is inside a checkpoint, ONNX model, bundle or engine (issue 19 item 3).

    info = inspect_path("best.pt")          # -> a plain dict (JSON-able); format_info(info) -> text

- checkpoint (.pt / .safetensors): read only through defectrt.models' safe loader (never torch.load):
  variant, classes, input size, parameters, weights hash, the Ultralytics record (epoch, date, version).
- ONNX: metadata written by our export (variant, classes, input size, precision, grid-sample form, NMS form),
  opset / IR version, inputs and outputs, and the TensorRT parser compatibility per release
  (defectrt.export.check against the support table).
- bundle (a folder with manifest.json): the manifest (verified hashes), the model's ONNX facts, golden data.
- engine (.engine / .plan): size and sha256, and the bundle's engine record when a manifest beside it lists
  it; layers, bindings and the TensorRT version inside need TensorRT itself (said in the output).
"""
from __future__ import annotations

import json
import os

from defectrt.errors import UserInputError

CHECKPOINT_EXT = (".pt", ".pth", ".safetensors")
ENGINE_EXT = (".engine", ".plan", ".trt")


from defectrt.fileio import sha256_file as sha256  # noqa: E402


def kind_of(path):
    if os.path.isdir(path):
        return "bundle"
    low = path.lower()
    if low.endswith(CHECKPOINT_EXT):
        return "checkpoint"
    if low.endswith(".onnx"):
        return "onnx"
    if low.endswith(ENGINE_EXT):
        return "engine"
    raise UserInputError("{}: cannot tell what this is; inspect takes a checkpoint (.pt, .safetensors), an ONNX "
                         "model (.onnx), a bundle folder or an engine (.engine / .plan)".format(path))


def inspect_path(path, trt_versions=None):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise UserInputError("{}: no such file or folder".format(path))
    kind = kind_of(path)
    info = {"path": path, "kind": kind}
    if kind == "checkpoint":
        info.update(inspect_checkpoint(path))
    elif kind == "onnx":
        info.update(inspect_onnx(path, trt_versions))
    elif kind == "bundle":
        info.update(inspect_bundle(path, trt_versions))
    else:
        info.update(inspect_engine(path))
    return info


def inspect_checkpoint(path):
    from defectrt.models import load  # the safe loader: restricted unpickler / safetensors, bounded

    model = load(path)
    names = getattr(model, "names", None) or {}
    out = {
        "size_bytes": os.path.getsize(path),
        "sha256": sha256(path),
        "format": "defectrt safetensors" if path.lower().endswith(".safetensors") else "Ultralytics .pt",
        "variant": getattr(model, "variant", None),
        "nc": getattr(model, "nc", len(names)),
        "names": {str(k): v for k, v in dict(names).items()} if isinstance(names, dict) else
        {str(i): n for i, n in enumerate(names)},
        "imgsz": getattr(model, "imgsz", None),
        "params": sum(p.numel() for p in model.parameters()),
        "weights_sha256": getattr(model, "weights_sha256", None),
        "precision": "fp32 (PyTorch weights)",
    }
    if getattr(model, "source_info", None):
        out["ultralytics"] = dict(model.source_info)
    out["next"] = "defectrt export build {} -o model.bundle".format(path)
    return out


def _jsonish(text):
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        return text


def _dims(value_info):
    dims = []
    for d in value_info.type.tensor_type.shape.dim:
        dims.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?"))
    return dims


def inspect_onnx(path, trt_versions=None):
    import onnx

    from defectrt.export.check import check_onnx, load_onnx, model_opset
    from defectrt.modelref import onnx_metadata
    from defectrt.trt_compat import load_support

    model = load_onnx(path)
    meta = onnx_metadata(model)
    ops = sorted({n.op_type for n in model.graph.node})
    out = {
        "size_bytes": os.path.getsize(path),
        "sha256": sha256(path),
        "opset": model_opset(model),
        "ir_version": model.ir_version,
        "producer": "{} {}".format(model.producer_name, model.producer_version).strip(),
        "inputs": [{"name": i.name, "shape": _dims(i),
                    "dtype": onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type).name}
                   for i in model.graph.input],
        "outputs": [{"name": o.name, "shape": _dims(o)} for o in model.graph.output],
        "variant": meta.get("variant"),
        "names": _jsonish(meta.get("names")),
        "imgsz": _jsonish(meta.get("imgsz")),
        "precision": meta.get("precision") or ("int8 (Q/DQ)" if "QuantizeLinear" in ops else "fp32"),
        "grid_sample": meta.get("grid_sample") or ("native" if "GridSample" in ops else "none"),
        "nms": meta.get("nms") or ("in graph" if any("NMS" in o for o in ops) else "none"),
        "weights_sha256": meta.get("weights_sha256"),
        "nodes": len(model.graph.node),
        "ops": ops,
    }
    if not meta.get("variant"):
        out["note"] = "no defectrt metadata: not exported by defectrt (names / input size come from the graph only)"
    versions = trt_versions or [v for v in load_support()["versions"]]
    compat = {}
    for v in versions:
        try:
            rep = check_onnx(model, v)
        except UserInputError as exc:
            compat[v] = {"ok": False, "errors": 1, "warnings": 0, "first": str(exc)}
            continue
        first = rep.errors[0].message if rep.errors else (rep.warnings[0].message if rep.warnings else None)
        compat[v] = {"ok": rep.ok, "errors": len(rep.errors), "warnings": len(rep.warnings), "first": first}
    out["tensorrt"] = compat
    return out


def inspect_bundle(path, trt_versions=None):
    from defectrt.runtime.bundle import MANIFEST, Manifest

    manifest = Manifest.read(path, verify=True)  # every file's sha256 checked against the manifest
    out = {"manifest": manifest.to_json(), "hashes_verified": True}
    for key in ("variant", "names", "imgsz", "precision", "int8_flavour", "opset", "grid_sample", "nms",
                "target_trt", "weights_sha256"):
        out[key] = getattr(manifest, key)
    out["imgsz"] = list(manifest.imgsz) if manifest.imgsz else None
    out["onnx"] = inspect_onnx(os.path.join(path, manifest.model), trt_versions)
    golden = manifest.golden
    if golden is not None and golden.to_json():
        out["golden"] = {"inputs": golden.inputs, "outputs": golden.outputs, "atol": golden.atol, "rtol": golden.rtol,
                         "check": "defectrt verify {}".format(path)}
    engine = manifest.engine.to_json() if manifest.engine else None
    out["engine"] = engine or "none (no TensorRT where it was built: run the bundle's build_engine.sh on the device)"
    out["manifest_file"] = os.path.join(path, MANIFEST)
    return out


NEEDS_TRT = ("layers, bindings, the TensorRT version and GPU it was built for are inside the serialized plan and "
             "need TensorRT to read: on the device run `trtexec --loadEngine={0} --verbose` or `defectrt verify` on "
             "its bundle (unverified on hardware here)")


def inspect_engine(path):
    from defectrt.runtime.bundle import Manifest

    out = {"size_bytes": os.path.getsize(path), "sha256": sha256(path), "needs_tensorrt": NEEDS_TRT.format(path)}
    manifest = Manifest.peek(os.path.dirname(os.path.abspath(path)))
    record = manifest.engine if manifest is not None else None
    if record is not None and record.file == os.path.basename(path):
        out["manifest_record"] = record.to_json()
        listed = manifest.files.get(record.file) if isinstance(manifest.files, dict) else None
        out["hash_matches_manifest"] = listed == out["sha256"] if listed else None
    return out


_ORDER = ("kind", "format", "variant", "nc", "names", "imgsz", "precision", "int8_flavour", "opset", "ir_version",
          "grid_sample", "nms", "target_trt", "params", "nodes", "inputs", "outputs", "size_bytes", "sha256",
          "weights_sha256", "hashes_verified", "hash_matches_manifest", "ultralytics", "golden", "engine",
          "manifest_record", "needs_tensorrt", "note", "next")


def _fmt(value):
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=False)
    return str(value)


def format_info(info):
    lines = ["{}".format(info["path"])]
    for key in _ORDER:
        if key in info and info[key] is not None:
            lines.append("  {:<20} {}".format(key, _fmt(info[key])))
    onnx_part = info.get("onnx") or (info if info.get("kind") == "onnx" else None)
    if onnx_part:
        if info.get("kind") == "bundle":
            lines.append("  {:<20} {} (sha256 {})".format("onnx", onnx_part.get("ops") and
                                                          "{} nodes".format(onnx_part["nodes"]), onnx_part["sha256"]))
        lines.append("  TensorRT parser compatibility (defectrt export check; unverified on hardware):")
        for v, r in onnx_part.get("tensorrt", {}).items():
            state = "ok" if r["ok"] and not r["warnings"] else "{} error(s), {} warning(s)".format(r["errors"], r["warnings"])
            lines.append("    {:<6} {}{}".format(v, state, " - " + r["first"] if r.get("first") and not r["ok"] else ""))
    return "\n".join(lines)
