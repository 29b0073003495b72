"""`defectrt export build`: the command our users know this tool by."""
from __future__ import annotations

import json
import os

from defectrt.cli import imgsz_arg


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
    p.add_argument("--target-trt", help="TensorRT version of the device, e.g. 8.2 (JetPack 4.6) or 10.3")
    p.add_argument("--imgsz", type=int, nargs="+", help="N or H W (default: the checkpoint's, else 640)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--batch", type=int, default=1)
    g.add_argument("--dynamic-batch", action="store_true")
    p.add_argument("--max-batch", type=int, default=8, help="largest batch of the engine profile with --dynamic-batch")
    p.add_argument("--workspace", default="auto", help="builder workspace (e.g. 2G, 512M; default auto: 1G, which "
                   "fits a 4 GB Jetson Nano; raise it on bigger devices)")
    p.add_argument("--timing-cache", help="TensorRT timing cache file, read and updated (default: timing.cache in the "
                   "bundle, device-local and not hashed)")
    p.add_argument("--dla-core", type=int, help="build for this DLA core with GPU fallback (Xavier / Orin AGX, NX)")
    p.add_argument("--val", metavar="DATA", help="dataset to measure mAP of FP32 and of the final precision")
    p.add_argument("--grid-sample", choices=("auto", "native", "lowered", "plugin"), default="auto",
                   help="DySample sampling form (default auto: from --target-trt; lowered for a CPU bundle - "
                   "fp32 / bf16 without --target-trt and without an engine, or --int8-flavour cpu - the faster form "
                   "on ONNX Runtime and OpenVINO)")
    p.add_argument("--opset", type=int, default=None,
                   help="ONNX opset (default 17, or the most the --target-trt parser documents, e.g. 13 for 8.0-8.2)")
    p.add_argument("--conf", type=float, default=0.25, help="default confidence threshold stored in the manifest")
    p.add_argument("--iou", type=float, default=0.45, help="default NMS IoU stored in the manifest")
    p.add_argument("--plugins", nargs="*", default=[], help="TensorRT plugin libraries to load")
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
        print("engine added to {}: {}".format(args.model, json.dumps(manifest["engine"])))
        return 0
    if not args.output:
        raise UserInputError("-o/--output BUNDLE is required")
    if args.calib_count < 100 and args.precision == "int8":
        logging.getLogger("defectrt").warning("--calib-count %d is below 100: INT8 scales may be poorly estimated", args.calib_count)
    manifest = bundle.build_bundle(
        args.model, args.output, precision=args.precision, calib=args.calib, calib_count=args.calib_count,
        int8_flavour=args.int8_flavour, calib_method=args.calib_method, target_trt=args.target_trt,
        imgsz=imgsz_arg(args.imgsz), batch=args.batch,
        dynamic_batch=args.dynamic_batch, max_batch=args.max_batch, workspace=args.workspace,
        timing_cache=args.timing_cache, dla_core=args.dla_core, val=args.val, conf=args.conf, iou=args.iou,
        opset=args.opset, grid_sample=args.grid_sample, plugins=args.plugins, force=args.force,
    )
    print("bundle {}: {} {}x{}, grid-sample {}, engine: {}".format(
        args.output, manifest["precision"], manifest["imgsz"][0], manifest["imgsz"][1], manifest["grid_sample"],
        manifest["engine"]["tensorrt_version"] if manifest["engine"] else
        "none (a bf16 bundle is for OpenVINO)" if manifest["precision"] == "bf16" else "none (TensorRT not installed here)"))
    if manifest.get("val"):
        for prec in ("fp32", "fp16", "int8", "bf16"):
            if prec in manifest["val"]:
                m = manifest["val"][prec]
                print("  val {}: mAP50 {:.4f}  mAP50-95 {:.4f}  P {:.4f}  R {:.4f}".format(
                    prec, m["map50"], m["map50_95"], m["precision"], m["recall"]))
    return 0
