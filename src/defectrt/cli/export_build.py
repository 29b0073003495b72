"""`defectrt export build`: the command our users know this tool by."""
from __future__ import annotations

import json
import os

from defectrt.cli.options import (add_batch, add_grid_sample, add_imgsz, add_opset, add_plugins, add_target_trt,
                                  add_thresholds, build_spec)


def register(export_sub):
    p = export_sub.add_parser(
        "build",
        help="checkpoint / registry name / ONNX -> deployment bundle (ONNX at a precision, manifest, engine)",
        description="Build a deployment bundle. Without TensorRT the bundle is complete except the engine; "
        "run `defectrt export build BUNDLE --engine` on the device later to add it in place.",
    )
    p.add_argument("model", help="checkpoint (.safetensors/.pt), registry name, demo:screw, an .onnx file, "
                   "or (with --engine) an existing bundle folder")
    p.add_argument("-o", "--output", help="bundle folder to write (e.g. screw.bundle)")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8", "bf16"), default="fp16",
                   help="fp32; fp16 (default, TensorRT / GPUs); int8 (needs --calib images; see --int8-flavour); "
                   "bf16: FP32 model run by OpenVINO in bf16 on AMX / AVX-512 BF16 CPUs; needs --val (offered "
                   "only when it loses at most 0.3 points of mAP50-95)")
    p.add_argument("--calib", help="calibration images (a folder, or a dataset whose images/train is used)")
    p.add_argument("--calib-count", type=int, default=300, help="calibration images to use (default 300)")
    p.add_argument("--int8-flavour", choices=("trt", "cpu"), default="trt",
                   help="trt: symmetric Q/DQ for TensorRT (ModelOpt); cpu: ONNX Runtime QDQ (fast on CPUs)")
    p.add_argument("--calib-method", choices=("max", "entropy"), default="max",
                   help="INT8 activation ranges: max (absolute max, the default) or entropy (KL divergence, clips "
                   "outliers; with --int8-flavour trt it is many times slower to calibrate)")
    add_target_trt(p, help="TensorRT version of the device, e.g. 8.2 (JetPack 4.6) or 10.3")
    add_imgsz(p, help="N or H W (default: the checkpoint's, else 640)")
    add_batch(p)
    p.add_argument("--max-batch", type=int, default=8, help="largest batch of the engine profile with --dynamic-batch")
    p.add_argument("--workspace", default="auto", help="builder workspace (e.g. 2G, 512M; default auto: 1G, which "
                   "fits a 4 GB Jetson Nano; raise it on bigger devices)")
    p.add_argument("--timing-cache", help="TensorRT timing cache file, read and updated (default: timing.cache in the "
                   "bundle, device-local and not hashed)")
    p.add_argument("--dla-core", type=int, help="build for this DLA core with GPU fallback (Xavier / Orin AGX, NX)")
    p.add_argument("--val", metavar="DATA", help="dataset to measure mAP of FP32 and of the final precision")
    add_grid_sample(p, help="DySample sampling form (default auto: from --target-trt; lowered for a CPU bundle - "
                    "fp32 / bf16 without --target-trt and without an engine, or --int8-flavour cpu - the faster form "
                    "on ONNX Runtime and OpenVINO)")
    add_opset(p)
    add_thresholds(p, conf=0.25, iou=0.45, what=" stored in the manifest", max_det_flag=False)
    add_plugins(p)
    # accuracy gate and QAT (defectrt.export.accuracy_gate, defectrt.export.sensitivity, defectrt.train.qat)
    p.add_argument("--max-loss", type=float, default=0.5,
                   help="with --val: fail the build when mAP50-95 drops more than this many points (default 0.5)")
    p.add_argument("--max-recall-drop", type=float, default=2.0,
                   help="with --val: fail when any class's recall at --conf drops more than this many points "
                   "(default 2.0; a single object never fails)")
    p.add_argument("--accept-loss", action="store_true", help="with --val: report a failed gate, but write the bundle")
    p.add_argument("--strict-gate", dest="strict_gate", action="store_true", default=True,
                   help="with --val (the default): judge the mAP50-95 loss at the pessimistic end of the val split's "
                   "90%% interval (a paired bootstrap over its images): a pass means within --max-loss at 95%% "
                   "one-sided confidence on this split; a 0.5-point limit wants a few hundred val images")
    p.add_argument("--no-strict-gate", dest="strict_gate", action="store_false",
                   help="with --val: judge the measured change alone; on a coarse val split a model that loses more "
                   "than --max-loss passes by chance (the build warns)")
    p.add_argument("--no-fallback", action="store_true",
                   help="INT8 with --val: on a failed gate, do not keep the most sensitive layers out of INT8")
    p.add_argument("--qat-epochs", type=int, default=0,
                   help="INT8 by quantization-aware fine-tuning for N epochs on the --calib images (distilled from "
                   "the FP32 model: no labels needed), then Q/DQ export for --int8-flavour (default 0: "
                   "post-training quantization only)")
    p.add_argument("--engine", action="store_true", help="add (or with --force rebuild) the engine of an existing bundle")
    p.add_argument("--force", action="store_true", help="replace an existing bundle")
    p.set_defaults(func=run)


def run(args):
    import logging

    from defectrt.errors import UserInputError
    from defectrt.export import bundle

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.engine:
        if not os.path.isdir(args.model):
            raise UserInputError("--engine takes an existing bundle folder, not {}".format(args.model))
        manifest = bundle.add_engine(args.model, workspace=args.workspace, timing_cache=args.timing_cache,
                                     dla_core=args.dla_core, plugins=args.plugins, force=args.force)
        print("engine added to {}: {}".format(args.model, json.dumps(manifest.engine.to_json())))
        return 0
    if not args.output:
        raise UserInputError("-o/--output BUNDLE is required")
    if args.calib_count < 100 and args.precision == "int8":
        logging.getLogger("defectrt").warning("--calib-count %d is below 100: INT8 scales may be poorly estimated", args.calib_count)
    if args.qat_epochs and args.precision != "int8":
        raise UserInputError("--qat-epochs needs --precision int8")
    if args.qat_epochs < 0:
        raise UserInputError("--qat-epochs {}: give 0 or more".format(args.qat_epochs))
    from defectrt.export.accuracy_gate import GateOptions

    gate = GateOptions(max_loss=args.max_loss, max_recall_drop=args.max_recall_drop, accept_loss=args.accept_loss,
                       fallback=not args.no_fallback, strict=args.strict_gate)
    manifest = bundle.build_bundle(args.model, args.output, force=args.force, spec=build_spec(args), gate=gate,
                                   qat_epochs=args.qat_epochs)
    print("bundle {}: {} {}x{}, grid-sample {}, engine: {}".format(
        args.output, manifest.precision, manifest.imgsz[0], manifest.imgsz[1], manifest.grid_sample,
        manifest.engine.tensorrt_version if manifest.engine else
        "none (a bf16 bundle is for OpenVINO)" if manifest.precision == "bf16" else "none (TensorRT not installed here)"))
    if manifest.val:
        for prec in ("fp32", "fp16", "int8", "bf16"):
            m = manifest.val.metrics(prec)
            if m is not None:
                print("  val {}: mAP50 {:.4f}  mAP50-95 {:.4f}  P {:.4f}  R {:.4f}".format(
                    prec, m["map50"], m["map50_95"], m["precision"], m["recall"]))
    g = manifest.accuracy_gate
    if g:
        fb = g.get("fallback") or {}
        judged = g["measured"].get("judged_loss")
        print("  accuracy gate: mAP50-95 -{:.2f} points{} (max {:g}), {}{}".format(
            g["measured"]["map50_95_loss"], "" if judged is None else ", judged at -{:.2f} (the val split's "
            "interval end)".format(judged), g["max_loss"], "passed" if g["passed"] else "FAILED, accepted",
            "; {} layers kept out of INT8: {}".format(len(fb["kept"]), ", ".join(fb["kept"])) if fb.get("kept") else ""))
        res = g.get("resolution")
        if res:
            print("  val split: {} images resolve the change to +-{:.2f} points ({:g}% interval {:+.2f} to {:+.2f}){}".format(
                res["images"], res["half_width"], 100 * res["level"], res["change_interval"][0],
                res["change_interval"][1], "" if res["resolves_limit"] else
                ": coarser than the limit, about {} images would resolve it".format(res["images_for_limit"])))
    return 0
