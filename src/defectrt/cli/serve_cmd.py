"""`defectrt serve BUNDLE`: serve a bundle through a real Triton Inference Server (PyTriton).

    defectrt serve screw.bundle [--http-port 8000] [--grpc-port 8001] [--metrics-port 8002]
                   [--address 127.0.0.1] [--max-batch 8] [--instances 1] [--name screw]
    defectrt serve --prepare      create the numpy<2 environment PyTriton's Python-backend stub needs (once)

Clients send one BGR uint8 image per request (input `image`) and get boxes / scores / class_ids / names /
count back; `defectrt.client.TritonDetector("http://127.0.0.1:8000")` does that for you. Stop with Ctrl+C or
SIGTERM: requests in flight are answered first (up to --exit-timeout-s).
"""
from __future__ import annotations

import argparse

from defectrt.cli.options import add_threads, serve_spec


def register(subparsers):
    p = subparsers.add_parser(
        "serve", help="serve a bundle through Triton Inference Server (HTTP / gRPC, dynamic batching)",
        description=__doc__.split("\n\n")[0], epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", nargs="?", help="bundle folder (defectrt export build) or demo:NAME")
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--metrics-port", type=int, default=8002)
    p.add_argument("--address", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for the network)")
    p.add_argument("--max-batch", type=int, default=8, help="largest batch Triton's dynamic batcher forms (default 8)")
    p.add_argument("--instances", type=int, default=1, help="model instances (one Detector each; default 1)")
    p.add_argument("--name", help="model name (default: the bundle folder's name without .bundle)")
    p.add_argument("--queue-delay-us", type=int, default=2000,
                   help="how long the batcher waits to fill a batch, in microseconds (default 2000)")
    p.add_argument("--backend", choices=("auto", "onnxruntime", "tensorrt"), default="auto")
    add_threads(p, help="ONNX Runtime intra-op threads per instance")
    p.add_argument("--exit-timeout-s", type=int, default=10, help="on stop, wait this long for requests in flight")
    p.add_argument("--prepare", action="store_true",
                   help="create the Python-backend environment (numpy<2) PyTriton's stub needs, then exit "
                   "unless a bundle is given")
    p.add_argument("--verbose", action="store_true", help="Triton's own log on stdout")
    p.set_defaults(func=run)


def run(args):
    import signal
    import sys

    from defectrt.errors import UserInputError
    from defectrt.serving import server, stub_env

    if args.prepare:
        print(stub_env.prepare(log=lambda m: print(m, file=sys.stderr)))
        if not args.bundle:
            return 0
    if not args.bundle:
        raise UserInputError("give a bundle folder to serve (or --prepare alone)")

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)

    def ready(urls):
        print("defectrt serve: model {model} ready: {http} (HTTP), {grpc} (gRPC), {metrics}".format(**urls),
              flush=True)

    server.serve(args.bundle, spec=serve_spec(args), on_ready=ready)
    print("defectrt serve: stopped", file=sys.stderr)
    return 0
