"""`defectrt export triton` (a Triton model repository) and `defectrt export deepstream` (an nvinfer config)."""
from __future__ import annotations


def register(export_sub):
    p = export_sub.add_parser(
        "triton", help="bundle -> Triton model repository (model + pre/post ensemble, validated config.pbtxt)",
        description="Write a Triton model repository for your own Triton server: the network (TensorRT plan where "
        "the bundle has an engine, else ONNX Runtime; OpenVINO on request), Python-backend pre- and post-processing "
        "with defectrt's own code, and an ensemble NAME taking an image and returning detections. Every "
        "config.pbtxt is parsed into Triton's ModelConfig before it is written.")
    p.add_argument("bundle", help="bundle folder (defectrt export build)")
    p.add_argument("-o", "--output", required=True, help="repository folder to create, e.g. model_repository")
    p.add_argument("--name", help="model name (default: the bundle folder's name without .bundle)")
    p.add_argument("--max-batch", type=int, help="max_batch_size (default: the bundle's batch limit)")
    p.add_argument("--instances", type=int, default=1, help="instances of each model (default 1)")
    p.add_argument("--backend", choices=("auto", "onnxruntime", "tensorrt", "openvino", "python"), default="auto",
                   help="the network's Triton backend (auto: tensorrt where the bundle has an engine; python: ONNX "
                   "Runtime inside Triton's Python backend, for Triton builds without the onnxruntime backend)")
    p.add_argument("--deepstream", action="store_true", help="also write a DeepStream nvinfer config into -o")
    p.add_argument("--force", action="store_true", help="replace a repository this command wrote before")
    p.set_defaults(func=_run_triton)


def _run_triton(args):
    from defectrt.serving.repository import export_repository

    info = export_repository(args.bundle, args.output, name=args.name, max_batch=args.max_batch,
                             instances=args.instances, backend=args.backend, force=args.force)
    print("wrote {path}: ensemble {model} ({backend} network, max batch {max_batch}); models: {0}".format(
        ", ".join(info["models"]), **info))
    if args.deepstream:
        from defectrt.export.deepstream import write_for_bundle

        for path in write_for_bundle(args.bundle, args.output, force=True):
            print("wrote {} (unverified on hardware)".format(path))
    return 0


def register_deepstream(export_sub):
    p = export_sub.add_parser(
        "deepstream", help="bundle -> DeepStream nvinfer config + label file (unverified on hardware)",
        description="Write deepstream_nvinfer.txt and labels.txt with the bundle's pre-processing in nvinfer's keys. "
        "Bundles with an engine get them at build time already.")
    p.add_argument("bundle", help="bundle folder")
    p.add_argument("-o", "--output", help="folder to write into (default: the bundle folder)")
    p.add_argument("--force", action="store_true", help="replace existing files")
    p.set_defaults(func=_run_deepstream)


def _run_deepstream(args):
    from defectrt.export.deepstream import write_for_bundle

    for path in write_for_bundle(args.bundle, args.output, force=args.force):
        print("wrote {} (unverified on hardware)".format(path))
    return 0
