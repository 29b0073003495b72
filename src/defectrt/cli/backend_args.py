"""Backend options shared by the commands that load a runtime model (detect, val, bench)."""
from __future__ import annotations

BACKEND_CHOICES = ("auto", "onnxruntime", "tensorrt", "openvino")
BACKEND_HELP = ("runtime backend (default auto: the bundle's engine where it fits, else ONNX Runtime; a bf16 "
                "bundle runs on OpenVINO where installed); openvino needs pip install 'defectrt[openvino]'")


def add_backend_args(p, inflight=False):
    p.add_argument("--backend", choices=BACKEND_CHOICES, default="auto", help=BACKEND_HELP)
    p.add_argument("--ov-precision", choices=("f32", "bf16"),
                   help="OpenVINO execution precision (default: the bundle's, else f32; bf16 is fast on AMX / "
                   "AVX-512 BF16 CPUs and changes results slightly)")
    p.add_argument("--ov-streams", type=int, help="OpenVINO CPU streams (default 1)")
    p.add_argument("--ov-cache-dir", help="OpenVINO cache folder for compiled models (later loads skip compiling)")
    if inflight:
        p.add_argument("--inflight", type=int, default=None,
                       help="throughput mode: keep N requests in flight (OpenVINO async requests / ONNX Runtime "
                       "sessions on N threads); results stay in input order")


def openvino_options(args):
    """The Detector's `openvino` options from the parsed flags (None when none was given)."""
    from defectrt.errors import UserInputError

    opts = {}
    if getattr(args, "ov_precision", None):
        opts["precision"] = args.ov_precision
    if getattr(args, "ov_streams", None) is not None:
        if args.ov_streams < 1:
            raise UserInputError("--ov-streams must be >= 1")
        opts["streams"] = args.ov_streams
    if getattr(args, "ov_cache_dir", None):
        opts["cache_dir"] = args.ov_cache_dir
    if getattr(args, "inflight", None) is not None and args.inflight < 1:
        raise UserInputError("--inflight must be >= 1")
    return opts or None
