"""`defectrt export build`: checkpoint -> deployment bundle (ONNX at the asked precision, manifest,
golden I/O for on-device checks, and the TensorRT engine where TensorRT exists).

Bundle layout (a folder, written atomically: a failed build leaves nothing behind):
    manifest.json     what the runtime needs (names, input size, letterbox, thresholds), how it was
                      made (precision, flavour, opset, grid-sample mode, versions), sha256 of every file,
                      val metrics per precision when --val was given, and the engine record
    model.onnx        the model at its final precision (FP32, AutoCast FP16 or Q/DQ INT8)
    golden/inputs.json, golden/outputs.json
                      Polygraphy-format inputs and ONNX Runtime outputs, so that on the device
                      `polygraphy run model.engine --trt --load-inputs ... --load-outputs ...` checks the engine
    model.engine      only when built where TensorRT is present (or added later with --engine)

A bundle is "for a CPU" when no --target-trt is given and no engine is built with it (TensorRT absent here,
or engine="never"), at fp32 or bf16, or with the INT8 `cpu` flavour: its DySample grid sampling is then
lowered by `auto` (the faster form on both CPU runtimes; TensorRT 8.0+ parses it too, should an engine be
added later). fp16 and the INT8 `trt` flavour are GPU precisions and keep the native op.

bf16 (OpenVINO on CPUs with AMX / AVX-512 BF16): model.onnx is the FP32 model and the manifest asks
OpenVINO for bf16 execution (`runtime.openvino.inference_precision`). It is offered only with its accuracy
measured (--val, OpenVINO installed, a bf16-capable CPU) and only when mAP50-95 drops by at most
BF16_MAX_LOSS against FP32; otherwise the build fails and says why.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile

import numpy as np

from defectrt import __version__
from defectrt.errors import BackendUnavailable, NotFound, UnsupportedFormat, UserInputError
from defectrt.export.trtexec_script import TIMING_CACHE  # written beside the engine by our builder, never hashed
from defectrt.fileio import atomic_dir, describe_foreign, foreign_entries, is_temporary, sha256_file
from defectrt.modelref import onnx_metadata, parse_imgsz
# the bundle layout and the manifest's type have one home: runtime/bundle.py
from defectrt.runtime.bundle import (FORMAT, MANIFEST, Batch, BuildSettings, EngineRecord, Golden, Letterbox, Manifest,
                                     RuntimeSettings, Thresholds, ValRecord)

log = logging.getLogger("defectrt")

FORMAT_VERSION = 1
PRECISIONS = ("fp32", "fp16", "int8", "bf16")
# bf16's golden data is ONNX Runtime's FP32 run of the (FP32) file, so it is checked at FP32 tolerance.
GOLDEN_TOLERANCE = {"fp32": (1e-3, 1e-3), "fp16": (2e-2, 2e-2), "int8": (5e-2, 5e-2), "bf16": (1e-3, 1e-3)}
BF16_MAX_LOSS = 0.003  # mAP50-95 (0..1): 0.3 points


def for_cpu(precision, int8_flavour, target_trt, engine_built):
    """Is the bundle meant for a CPU (see the module docstring)? Decides `auto` grid sampling."""
    if precision == "int8":
        return int8_flavour == "cpu"
    return precision in ("fp32", "bf16") and target_trt is None and not engine_built




def _export_fp32(model_ref, out_path, imgsz, batch, dynamic_batch, opset, grid_sample, target_trt, plugin_nms,
                 for_cpu=False):
    if str(model_ref).endswith(".onnx"):
        if not os.path.isfile(model_ref):
            raise NotFound("{}: no such ONNX file".format(model_ref))
        shutil.copyfile(model_ref, out_path)
        return {"grid_sample_reason": "taken as given from the ONNX file"}
    from defectrt.export.onnx import export_onnx

    result = export_onnx(
        model_ref, out_path, imgsz=imgsz, batch=batch, dynamic_batch=dynamic_batch, opset=opset,
        grid_sample=grid_sample, target_trt=target_trt, nms=plugin_nms, force=True, for_cpu=for_cpu,
    )
    return {"grid_sample_reason": getattr(result, "reason", None) or getattr(result, "grid_sample_reason", None)}


def _golden_io(onnx_path, out_dir, imgsz, batch, sample_images):
    """Save one real (letterboxed) input batch and ONNX Runtime's outputs in Polygraphy's JSON format."""
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
    from polygraphy.comparator import Comparator
    from polygraphy.json import save_json

    from defectrt.runtime.preprocess import preprocess

    h, w = imgsz
    if sample_images:
        blob, _ = preprocess(sample_images[:1] * batch, (h, w))
    else:  # no images at hand: a deterministic pattern still pins the engine's numerics
        blob = np.random.default_rng(0).random((batch, 3, h, w), dtype=np.float32)
    feeds = [{"images": np.ascontiguousarray(blob, dtype=np.float32)}]
    os.makedirs(out_dir, exist_ok=True)
    inputs_path = os.path.join(out_dir, "inputs.json")
    outputs_path = os.path.join(out_dir, "outputs.json")
    save_json(feeds, inputs_path)
    runner = OnnxrtRunner(SessionFromOnnx(onnx_path, providers=["CPUExecutionProvider"]))
    results = Comparator.run([runner], data_loader=feeds)
    results.save(outputs_path)
    return {"inputs": "golden/inputs.json", "outputs": "golden/outputs.json"}


def _read_images(folder, limit):
    """Up to `limit` readable images of `folder` (regular files only: a FIFO there must not block a build)."""
    from defectrt.runtime.media import ImageProblem, list_images, read_image

    if not folder:
        return []
    out = []
    for path in list_images(folder)[0]:
        if len(out) >= limit:
            break
        try:
            out.append(read_image(path))
        except ImageProblem as exc:
            log.warning("skipping %s: %s", path, exc)
    return out


VAL_CONF, VAL_IOU = 0.001, 0.6


def _calibration_folder(calib):
    """--calib may name an image folder or a dataset (its train images)."""
    if calib is None:
        return None
    for candidate in (calib, os.path.join(calib, "images", "train"), os.path.join(calib, "images")):
        if os.path.isdir(candidate) and any(
            f.lower().endswith((".jpg", ".jpeg", ".png", ".bmp")) for f in os.listdir(candidate)
        ):
            return candidate
    raise UserInputError("--calib {}: no images (.jpg/.png/.bmp) found there or in its images/train".format(calib))


def _validate(onnx_path, data, imgsz, conf, iou, backend="onnxruntime", openvino=None):
    from defectrt.data.dataset import load_dataset
    from defectrt.data.val import evaluate
    from defectrt.runtime.detector import Detector

    det = Detector(onnx_path, backend=backend, conf=conf, iou=iou, openvino=openvino)
    metrics = evaluate(det, load_dataset(data, split="val"), progress=True)  # issue 19: a bar on a terminal
    return {k: metrics[k] for k in ("precision", "recall", "map50", "map50_95")}


def build_bundle(model, output, precision="fp32", calib=None, calib_count=300, int8_flavour="trt", calib_method="max",
                 target_trt=None,
                 imgsz=None, batch=1, dynamic_batch=False, max_batch=8, workspace="auto", timing_cache=None,
                 dla_core=None, val=None, conf=0.25, iou=0.45, max_det=300, opset=None, grid_sample="auto",
                 plugins=(), engine="auto", force=False, gate=None, qat_epochs=0, spec=None):
    """Build a bundle folder. engine: "auto" (build when TensorRT is importable), "never", or "always".

    gate: accuracy_gate.GateOptions applied with `val`; qat_epochs: INT8 by quantization-aware fine-tuning
    on `calib` (a labelled dataset) first (defectrt.export.int8_build).
    spec: the settings as one defectrt.options.BuildSpec (then give none of them as keywords)."""
    import onnx

    from defectrt.options import BuildSpec
    from defectrt.options import resolve as resolve_options

    spec = resolve_options(BuildSpec, spec, dict(
        precision=precision, calib=calib, calib_count=calib_count, int8_flavour=int8_flavour,
        calib_method=calib_method, target_trt=target_trt, imgsz=imgsz, batch=batch, dynamic_batch=dynamic_batch,
        max_batch=max_batch, workspace=workspace, timing_cache=timing_cache, dla_core=dla_core, val=val, conf=conf,
        iou=iou, max_det=max_det, opset=opset, grid_sample=grid_sample, plugins=plugins, engine=engine), "build_bundle")
    from defectrt.export.check import model_opset
    from defectrt.export.engine import import_tensorrt

    if spec.precision not in PRECISIONS:
        raise UserInputError("--precision {!r}: choose one of {}".format(spec.precision, ", ".join(PRECISIONS)))
    if spec.precision == "int8" and not spec.calib:
        raise UserInputError("--precision int8 needs --calib DIR (images pre-processed like the runtime)")
    if spec.int8_flavour not in ("trt", "cpu"):
        raise UserInputError("--int8-flavour {!r}: choose trt or cpu".format(spec.int8_flavour))
    if spec.dla_core is not None and spec.precision in ("fp32", "bf16"):
        raise UserInputError("--dla-core needs --precision fp16 or int8: DLA runs no FP32 / bf16")
    from defectrt.runtime import limits

    # The manifest stores these for the runtime, which refuses them out of bounds: refuse them here first.
    spec = dataclasses.replace(
        spec, conf=limits.check_threshold(spec.conf, "--conf"), iou=limits.check_threshold(spec.iou, "--iou"),
        max_det=limits.check_max_det(spec.max_det, "--max-det"),
        imgsz=parse_imgsz(spec.imgsz, "--imgsz"))  # imgsz None: the model's own size, read after the export
    if spec.imgsz is not None:
        limits.check_imgsz(spec.imgsz, "--imgsz")
    if spec.precision == "bf16":
        _check_bf16_possible(spec.val, spec.engine)
    calib_dir = _calibration_folder(spec.calib) if spec.precision == "int8" else None
    val_names = _val_names_early(spec.val)  # issue 19: an unusable --val fails here, before the export
    if str(model).endswith(".onnx") and os.path.isfile(str(model)):
        _check_detector_onnx(model)  # issue 19: a foreign ONNX fails here in words, not in Polygraphy
    trt = import_tensorrt()
    if spec.engine == "always" and trt is None:
        raise BackendUnavailable("--engine was asked for, but TensorRT is not installed here")

    from defectrt.progress import Phases  # issue 19: one bar over the build's phases, on a terminal

    with atomic_dir(output, force=force, ours=our_bundle) as tmp, tempfile.TemporaryDirectory() as work, \
            Phases(("export", spec.precision, "golden, val, engine", "manifest"), desc="export build") as phase:
        phase.next("export ONNX")
        fp32_path = os.path.join(work, "model_fp32.onnx")
        # A bundle for a CPU: "auto" grid sampling takes its faster form there (see for_cpu).
        cpu = for_cpu(spec.precision, spec.int8_flavour, spec.target_trt, trt is not None and spec.engine != "never" and spec.precision != "bf16")
        export_info = _export_fp32(model, fp32_path, spec.imgsz, spec.batch, spec.dynamic_batch, spec.opset, spec.grid_sample, spec.target_trt, "none",
                                   for_cpu=cpu)
        meta = onnx_metadata(onnx.load(fp32_path, load_external_data=False))
        imgsz = spec.imgsz or parse_imgsz(meta.get("imgsz"), strict=False) or (640, 640)  # the size built
        final = os.path.join(tmp, "model.onnx")
        flavour = None
        phase.next(spec.precision)
        if spec.precision in ("fp32", "bf16"):
            shutil.copyfile(fp32_path, final)
        elif spec.precision == "fp16":
            from defectrt.export.precision import convert_fp16

            convert_fp16(fp32_path, final, force=True)
        else:
            from defectrt.export.int8_build import int8_step

            flavour = spec.int8_flavour
            int8 = int8_step(fp32_path, final, calib_dir, work, calib_count=spec.calib_count, flavour=spec.int8_flavour,
                             target_trt=spec.target_trt, calib_method=spec.calib_method, qat_epochs=qat_epochs,
                             model_ref=model, imgsz=imgsz, log=log.info,
                             export=lambda module, path: _export_fp32(
                                 module, path, imgsz, spec.batch, spec.dynamic_batch, spec.opset, spec.grid_sample, spec.target_trt, "none",
                                 for_cpu=cpu))
        final_model = onnx.load(final, load_external_data=False)
        final_meta = onnx_metadata(final_model)
        if spec.precision not in ("fp32", "bf16"):
            from defectrt.export.precision import island_violations

            bad = island_violations(final_model)
            if bad:
                raise UserInputError("the {} model has low-precision nodes inside a DySample FP32 island: {}".format(
                    spec.precision, ", ".join(bad[:5])))
        _warn_name_mismatch(meta.get("names"), val_names, spec.val)
        phase.next("golden data, --val, engine" if spec.val else "golden data, engine")
        samples = _read_images(calib_dir, 1) or _read_images(_val_images(spec.val), 1)
        golden = _golden_io(final, os.path.join(tmp, "golden"), imgsz, spec.batch if not spec.dynamic_batch else 1, samples)

        names = json.loads(meta.get("names", "{}")) or {}
        from defectrt.runtime.modelinfo import parse_names

        parse_names(names, "{}: its `names` metadata".format(model))  # bounded ids, before they reach a manifest
        b = spec.batch
        manifest = Manifest.create(
            format=FORMAT,
            version=FORMAT_VERSION,
            model="model.onnx",
            names=names,
            imgsz=tuple(imgsz),
            letterbox=Letterbox.create(center=True, pad_value=114, scaleup=True, stride=int(meta.get("stride", 32)),
                                       color="RGB", scale="1/255", layout="NCHW"),
            precision=spec.precision,
            int8_flavour=flavour,
            int8_calibration=final_meta.get("int8_calibration") if flavour else None,
            int8_unquantized=final_meta.get("int8_unquantized") if flavour else None,
            # ModelOpt's INT8 output is opset 19 for TensorRT >= 10: record what the shipped file declares.
            opset=model_opset(final_model),
            grid_sample=meta.get("grid_sample", "unknown"),
            grid_sample_reason=export_info.get("grid_sample_reason"),
            nms=meta.get("nms", "none"),
            variant=meta.get("variant"),
            weights_sha256=meta.get("weights_sha256"),
            batch=Batch.create(dynamic=bool(spec.dynamic_batch), size=b, max=spec.max_batch if spec.dynamic_batch else b),
            target_trt=spec.target_trt,
            thresholds=Thresholds.create(conf=spec.conf, iou=spec.iou, max_det=spec.max_det),
            golden=Golden.create(atol=GOLDEN_TOLERANCE[spec.precision][0], rtol=GOLDEN_TOLERANCE[spec.precision][1],
                                 **golden),
            build=BuildSettings.create(workspace=spec.workspace, dla_core=spec.dla_core,
                                       timing_cache=os.path.basename(spec.timing_cache) if spec.timing_cache else None,
                                       plugins=[os.path.basename(p) for p in spec.plugins or ()]),
            versions=_versions(trt),
            engine=None,
            val=None,
        )
        if spec.precision == "bf16":
            manifest = manifest.set(runtime=RuntimeSettings.create(openvino={"inference_precision": "bf16"}))
        if spec.val and spec.precision == "bf16":
            # mAP is measured the usual way: a low confidence threshold, so the whole PR curve counts.
            val = {"data": os.path.abspath(spec.val), "split": "val", "conf": VAL_CONF, "iou": VAL_IOU,
                   "fp32": _validate(fp32_path, spec.val, imgsz, VAL_CONF, VAL_IOU)}
            val["bf16"] = _validate(final, spec.val, imgsz, VAL_CONF, VAL_IOU, backend="openvino",
                                    openvino={"precision": "bf16"})
            val["bf16"]["runtime"] = "OpenVINO bf16"
            _check_bf16_loss(val)
            manifest = manifest.set(val=ValRecord.from_json(val))
        elif spec.val:  # the accuracy gate: FP32 against the final precision; raises (nothing written) when it fails
            from defectrt.export import accuracy_gate

            gate = gate or accuracy_gate.GateOptions()
            fallback = int8.fallback(final, imgsz, gate) if spec.precision == "int8" else None
            val, gate_record = accuracy_gate.gate(
                fp32_path, final, spec.precision, os.path.abspath(spec.val), spec.conf, gate, fallback=fallback)
            manifest = manifest.set(val=ValRecord.from_json(val), accuracy_gate=gate_record)
            if gate_record["fallback"] and gate_record["fallback"]["kept"]:
                manifest = manifest.set(int8_unquantized="{}, fallback ({} layers)".format(
                    manifest.int8_unquantized, len(gate_record["fallback"]["kept"])))
                golden = _golden_io(final, os.path.join(tmp, "golden"), imgsz,
                                    spec.batch if not spec.dynamic_batch else 1, samples)
                manifest = manifest.set(golden=manifest.golden.set(**golden))
        if flavour:
            manifest = manifest.set(
                int8_calibration_sample=json.loads(final_meta.get("int8_calibration_sample") or "null"),
                int8_qat=int8.qat)
        if trt is not None and spec.engine != "never" and spec.precision != "bf16":
            manifest = manifest.set(engine=_engine_for(tmp, manifest, spec.workspace, spec.timing_cache, spec.dla_core,
                                                       spec.plugins))
        phase.next("manifest")
        from defectrt.export.trtexec_script import write_build_scripts  # issue 16: devices without our Python

        manifest = write_manifest(tmp, manifest.set(device_scripts=write_build_scripts(tmp, manifest)))
    manifest = dataclasses.replace(manifest, folder=os.fspath(output))
    if manifest.engine is None and cpu:  # issue 19: a CPU bundle needs no engine, say how to run it
        log.info("%s is for a CPU (ONNX Runtime / OpenVINO): run it with defectrt detect -m %s SOURCE", output, output)
    elif manifest.engine is None and spec.precision != "bf16":  # bf16 is for OpenVINO: no engine to add
        log.warning("TensorRT is not installed here: %s is complete except the engine. On the device run: "
                    "defectrt export build %s --engine", output, output)
    return manifest


def _check_bf16_possible(val, engine):
    from defectrt.runtime.openvino_backend import cpu_bf16_support, import_openvino

    if engine == "always":
        raise UserInputError("--precision bf16 is for OpenVINO on CPUs and has no TensorRT engine; "
                             "use --precision fp16 or int8 for TensorRT")
    if not val:
        raise UserInputError("--precision bf16 needs --val DATA: bf16 is offered only with its accuracy measured "
                             "(at most {:.1f} points of mAP50-95 below FP32)".format(BF16_MAX_LOSS * 100))
    if import_openvino() is None:
        raise BackendUnavailable("--precision bf16 runs on OpenVINO, which is not installed here (pip install "
                                 "'defectrt[openvino]'); its accuracy cannot be measured without it")
    if not cpu_bf16_support():
        raise UserInputError("--precision bf16: this CPU has no bf16 (AMX / AVX-512 BF16), so OpenVINO would run "
                             "FP32 and the measured accuracy would not be bf16's; build it on a bf16-capable CPU")


def _check_bf16_loss(val):
    loss = val["fp32"]["map50_95"] - val["bf16"]["map50_95"]
    val["bf16"]["map50_95_loss"] = loss
    if loss > BF16_MAX_LOSS:
        raise UserInputError("--precision bf16 is not offered for this model: OpenVINO bf16 lost {:.2f} points of "
                             "mAP50-95 against FP32 ({:.4f} -> {:.4f}) on --val, more than the {:.1f} allowed; use "
                             "--precision fp32, or int8 --int8-flavour cpu".format(
                                 loss * 100, val["fp32"]["map50_95"], val["bf16"]["map50_95"], BF16_MAX_LOSS * 100))


def _val_images(val):
    if not val:
        return None
    for candidate in (os.path.join(val, "images", "val"), os.path.join(val, "images")):
        if os.path.isdir(candidate):
            return candidate
    return None


def _versions(trt):
    import onnx
    import onnxruntime

    return {"defectrt": __version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
            "tensorrt": getattr(trt, "__version__", None)}


def _engine_for(folder, manifest, workspace, timing_cache, dla_core, plugins):
    """Build model.engine for the Manifest `manifest` of `folder` -> its EngineRecord."""
    from defectrt.export.engine import build_engine

    b = manifest.batch
    batch = (1, max(1, b.max // 2), b.max) if b.dynamic else (b.size,) * 3
    return EngineRecord.from_json(build_engine(
        os.path.join(folder, "model.onnx"), os.path.join(folder, "model.engine"), precision=manifest.precision,
        batch=batch, imgsz=tuple(manifest.imgsz), workspace=workspace,
        timing_cache=timing_cache or os.path.join(folder, TIMING_CACHE),  # on by default, next to the engine
        dla_core=dla_core, plugins=plugins, force=True,
    ))


def our_bundle(folder):
    """For atomic_dir: None when `folder` may be replaced by a new bundle, else the reason it may not.

    Only an empty folder, or a bundle of ours holding nothing but the files its manifest lists, goes:
    `--force` on a dataset, a home folder or a bundle the user added files to is refused.
    """
    if not os.listdir(folder):
        return None
    try:
        listed = set(Manifest.read(folder, verify=False).files) | {MANIFEST, TIMING_CACHE}
    except UserInputError:
        return "it is not a defectrt bundle (no valid {} of format {!r})".format(MANIFEST, FORMAT)
    return describe_foreign(foreign_entries(folder, lambda rel: rel in listed or is_temporary(rel)), "the bundle")


def write_manifest(folder, manifest):
    """Hash every file of the bundle (but the manifest) and write the Manifest atomically; -> the Manifest
    written (with its `files`). A JSON object is taken too (tests, hand-made bundles).

    Every path written obeys the reader's rules (relative, normalised, inside the folder): a link in the
    bundle is refused rather than hashed through.
    """
    from defectrt.runtime.bundle import check_relpath, write_manifest_file

    manifest = Manifest.from_json(manifest)
    if manifest.engine is not None:  # issue 20: a DeepStream nvinfer config beside each engine, hashed with the rest
        from defectrt.export.deepstream import write_beside

        write_beside(folder, manifest)
    files = {}
    where = os.path.join(folder, MANIFEST)
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not is_temporary(d))
        for name in dirs + sorted(names):
            full = os.path.join(root, name)
            rel = os.path.relpath(full, folder).replace(os.sep, "/")
            if os.path.islink(full):
                raise UserInputError("{}: {} is a symbolic link; a bundle holds its own files".format(folder, rel))
            if name in names and rel != MANIFEST and not is_temporary(name):
                files[check_relpath(rel, where)] = sha256_file(full)
    files.pop(TIMING_CACHE, None)
    return write_manifest_file(folder, manifest.set(files=dict(sorted(files.items()))))


def add_engine(bundle, workspace=None, timing_cache=None, dla_core=None, plugins=(), force=False):
    """`defectrt export build BUNDLE --engine`, run on the device: build model.engine in place."""
    from defectrt.export.engine import import_tensorrt

    if import_tensorrt() is None:
        raise BackendUnavailable("TensorRT is not installed here; run this on the device that will run the engine")
    manifest = Manifest.read(bundle)  # verifies every hash first: never build from a tampered bundle
    if manifest.precision == "bf16":
        raise UserInputError("{} is a bf16 bundle, for OpenVINO on CPUs; build an fp16 or int8 bundle for "
                             "TensorRT".format(bundle))
    if manifest.engine is not None and not force:
        raise UserInputError("{} already has an engine ({}); pass --force to rebuild it".format(
            bundle, manifest.engine.tensorrt_version))
    build = manifest.build or BuildSettings()
    engine = _engine_for(bundle, manifest, workspace or build.workspace or "auto", timing_cache,
                         dla_core if dla_core is not None else build.dla_core, plugins)
    return write_manifest(bundle, manifest.set(engine=engine))


def _val_names_early(val):
    """issue 19: load the --val dataset before anything expensive; -> its class names (or None)."""
    if not val:
        return None
    from defectrt.data.dataset import load_dataset

    ds = load_dataset(val, split="val")
    if not len(ds):
        raise UserInputError("--val {}: the val split has no images; pass a dataset with images/val and labels/val".format(val))
    return None if ds.names_inferred else ds.names


def _warn_name_mismatch(model_names, val_names, val):
    """issue 19: like `defectrt val`, say when the model's class names differ from the dataset's."""
    if not model_names or not val_names:
        return
    try:
        model = json.loads(model_names) if isinstance(model_names, str) else model_names
    except ValueError:
        return
    model = [model[k] for k in sorted(model, key=int)] if isinstance(model, dict) else list(model)
    data = [val_names[k] for k in sorted(val_names)] if isinstance(val_names, dict) else list(val_names)
    if model != data:
        log.warning("the model's class names %s differ from --val %s's %s: mAP per class compares by index",
                    model[:8], val, data[:8])


def _check_detector_onnx(path):
    """One image input (N, 3, H, W) and a YOLO head output (N, 4 + nc, anchors): what a bundle can run."""
    from defectrt.export.check import load_onnx

    model = load_onnx(path)
    init = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in init]

    def dims(v):
        return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in v.type.tensor_type.shape.dim]

    problem = None
    if len(inputs) != 1:
        problem = "it has {} inputs".format(len(inputs))
    elif len(dims(inputs[0])) != 4 or dims(inputs[0])[1] != 3:
        problem = "its input {} has shape {}".format(inputs[0].name, dims(inputs[0]))
    elif not model.graph.output or len(dims(model.graph.output[0])) not in (2, 3):  # head (3) or in-graph NMS (2/3)
        problem = "its first output has shape {}".format(dims(model.graph.output[0]) if model.graph.output else None)
    if problem:
        raise UnsupportedFormat("{}: not a YOLO detector ONNX ({}); export build takes a model with one image input "
                             "(N, 3, H, W) and a (N, 4 + classes, anchors) output, e.g. from defectrt export onnx "
                             "best.pt or Ultralytics' export".format(path, problem))
