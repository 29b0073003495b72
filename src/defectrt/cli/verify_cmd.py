"""`defectrt verify BUNDLE [--backend onnxruntime|tensorrt] [--json OUT]` (library: defectrt.runtime.verify)."""
from __future__ import annotations

from defectrt.cli.options import add_plugins, verify_spec


def register(sub):
    p = sub.add_parser(
        "verify",
        help="run a bundle's golden inputs here and compare with its golden outputs (verdict + JSON report)",
        description="Runs the bundle's golden inputs through the chosen backend and compares every output with the "
        "golden outputs at the bundle's tolerance for its precision. Exit status 0 = pass, 1 = fail. Send the JSON "
        "report (--json) back with any question about a device.",
    )
    p.add_argument("bundle", help="bundle folder (defectrt export build)")
    p.add_argument("--backend", choices=("onnxruntime", "tensorrt"), default="onnxruntime",
                   help="onnxruntime (default) or tensorrt (the bundle's engine; unverified on hardware)")
    p.add_argument("--json", metavar="OUT", help="write the full report here")
    add_plugins(p, help="TensorRT plugin libraries the engine needs")
    p.add_argument("--runs", type=int, default=20, help="timed runs for the latency (default 20, after 2 warm-up)")
    p.add_argument("--force", action="store_true", help="replace an existing --json file")
    p.set_defaults(func=run)


def run(args):
    import json

    from defectrt.fileio import atomic_path, check_output
    from defectrt.runtime.verify import format_report, verify_bundle

    spec = verify_spec(args)
    if args.json:
        check_output(args.json, args.force)
    report = verify_bundle(args.bundle, spec=spec)
    print(format_report(report))
    if args.json:
        with atomic_path(args.json, force=True) as tmp:
            with open(tmp, "w") as f:
                json.dump(report, f, indent=2)
                f.write("\n")
        print("report: " + args.json)
    return 0 if report["verdict"] == "pass" else 1
