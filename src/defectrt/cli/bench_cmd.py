"""`defectrt bench`: trtexec-grade latency / throughput reports, and `defectrt bench merge` across machines.

    defectrt bench MODEL... [--backend auto|onnxruntime|tensorrt|openvino] [--batch 1,2,4] [--imgsz H W]
                   [--warmup-s S | --warmup-iters N] [--duration-s S | --iters N] [--threads N]
                   [--end-to-end] [--cuda-graph] [--label NAME] [--no-peak] [--json out.json] [--md out.md] [--force]
    defectrt bench merge A.json B.json ... [--md out.md] [--json out.json] [--force]

Without --end-to-end the query is the model call on a pre-made blob (h2d / compute / d2h per stage where the
backend can time them), with preprocess and postprocess timed separately on a synthetic image of the
model's size; with --end-to-end the query is Detector.__call__ on the images; with --inflight N it is a
burst of images through Detector.stream(inflight=N) (throughput mode: images/s).  Without --json / --md the
Markdown report goes to stdout.
"""
from __future__ import annotations

import argparse
import sys

from defectrt.cli.backend_args import add_backend_args
from defectrt.cli.options import add_batches, add_imgsz, add_threads, batches_arg, detector_options
from defectrt.errors import UserInputError
from defectrt.modelref import ModelRef


def register(sub):
    p = sub.add_parser(
        "bench",
        help="measure latency / throughput (trtexec-style), or `bench merge` reports from several machines",
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("models", nargs="*", metavar="MODEL",
                   help="ONNX file, TensorRT engine or bundle folder (or `merge` followed by report JSON files)")
    add_backend_args(p, inflight=True)
    add_batches(p)
    add_imgsz(p, help="input size H W (or N): default the model's own")
    p.add_argument("--warmup-s", type=float, default=0.2, help="warm-up seconds (default 0.2, as trtexec)")
    p.add_argument("--warmup-iters", type=int, help="warm up for exactly N queries instead of --warmup-s")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--duration-s", type=float, default=3.0,
                   help="measure for at least S seconds and 10 queries (default 3, as trtexec)")
    g.add_argument("--iters", type=int, help="measure exactly N queries instead of a duration")
    add_threads(p, help="intra-op threads for ONNX Runtime (default: its own choice)")
    p.add_argument("--end-to-end", action="store_true", help="time Detector.__call__ (pre + infer + post) on images")
    p.add_argument("--cuda-graph", action="store_true", help="capture and replay a CUDA graph (TensorRT backend)")
    p.add_argument("--label", help="machine label for merged tables (default: GPU or CPU model + host id)")
    p.add_argument("--no-peak", action="store_true", help="skip the numpy matmul peak (no efficiency column)")
    p.add_argument("--json", metavar="PATH", help="write the JSON report here")
    p.add_argument("--md", metavar="PATH", help="write the Markdown report here")
    p.add_argument("--force", action="store_true", help="replace existing output files")
    p.add_argument("--plot", action="store_true", help="latency histogram / CDF per stage and throughput vs batch as "
                   "PNG next to --json (needs matplotlib: pip install 'defectrt[plot]')")
    # Triton (issue 20): latency percentiles and throughput of a served model under concurrent clients.
    p.add_argument("--triton", metavar="URL", help="measure a Triton-served model instead (http:// or grpc://)")
    p.add_argument("--model-name", help="with --triton: the served model (default: the only one)")
    p.add_argument("--clients", default="1,4,8", help="with --triton: concurrent clients per round (default 1,4,8)")
    p.add_argument("--requests", type=int, default=200, help="with --triton: requests per client (default 200)")
    p.set_defaults(func=run)
    register_merge(sub)


def run_triton(args):
    from defectrt.bench import concurrency
    from defectrt.bench.runner import synthetic_images

    if args.models:
        raise UserInputError("bench --triton measures the served model; drop the MODEL arguments")
    _outputs(args)
    imgsz = parse_imgsz(args.imgsz) or (480, 640)
    try:
        clients = batches_arg(args.clients, "--clients")
    except UserInputError:
        raise UserInputError("--clients {!r}: expected comma-separated integers >= 1 such as 1,4,8".format(args.clients))
    result = concurrency.bench_triton(args.triton, clients=clients, requests=args.requests,
                                      model=args.model_name, images=synthetic_images(4, imgsz),
                                      log=lambda m: print(m, file=sys.stderr))
    md = concurrency.to_markdown(result)
    _emit(args, result, md, summary=md)
    return 0 if all(r["errors"] == 0 for r in result["rounds"]) else 1


def parse_imgsz(values):
    from defectrt.modelref import parse_imgsz as parse  # one rule set; bench runs models at exactly this size

    return parse(values, "--imgsz", multiple_of=32)


def _outputs(args):
    from defectrt.fileio import check_output

    for path in (args.json, args.md):
        if path:
            check_output(path, args.force)  # fail before minutes of measuring, not after


def _emit(args, json_obj, markdown, summary=None):
    from defectrt.bench import report as rep

    if getattr(args, "plot", False) and json_obj.get("schema") == "defectrt-bench-report":  # issue 19: bench --plot
        from defectrt.bench.plot import plot_report

        for path in plot_report(json_obj, args.json or args.md or "bench.json"):
            print("wrote {}".format(path))

    if args.json:
        rep.write_text(rep.dumps(json_obj) + "\n", args.json, args.force)
    if args.md:
        rep.write_text(markdown, args.md, args.force)
    if not args.json and not args.md:
        sys.stdout.write(markdown)
    else:
        if summary:
            sys.stdout.write(summary)
        for path in (args.json, args.md):
            if path:
                print("wrote {}".format(path))


def register_merge(sub):
    """`defectrt bench merge REPORT...`: its own parser (cli.main routes `bench merge` here)."""
    p = sub.add_parser("bench-merge", prog="defectrt bench merge",
                       description="Put bench reports (JSON) from several machines into one comparison table.")
    p.add_argument("reports", nargs="*", metavar="REPORT", help="report JSON files written by defectrt bench --json")
    p.add_argument("--json", metavar="PATH", help="write the comparison table (JSON) here")
    p.add_argument("--md", metavar="PATH", help="write the comparison table (Markdown) here")
    p.add_argument("--force", action="store_true", help="replace existing output files")
    p.set_defaults(func=lambda args: run_merge(args, args.reports), command_label="bench merge")


def run_merge(args, files):
    from defectrt.bench import report as rep

    if not files:
        raise UserInputError("bench merge needs report files: defectrt bench merge A.json B.json ...")
    _outputs(args)
    table = rep.merge([rep.load(f) for f in files])
    md = rep.merge_markdown(table)
    _emit(args, table, md, summary=md)
    return 0


def run(args):
    if getattr(args, "triton", None):
        return run_triton(args)
    if not args.models:
        raise UserInputError("give a model to measure (or --triton URL, or `bench merge` with reports)")
    if args.models[0] == "merge":  # options before `merge` (`bench --md X merge A B`): the old spelling
        print("defectrt bench: warning: write `defectrt bench merge REPORT... [--md/--json/--force]`, options "
              "after `merge`; this spelling is deprecated", file=sys.stderr)
        return run_merge(args, args.models[1:])
    import os

    from defectrt.bench import environment, report as rep, runner, timing
    from defectrt.bench.command import bench_command
    from defectrt.bench.flops import peak_gflops

    batches = batches_arg(args.batch)
    # how every model is loaded and run: one DetectorOptions from the shared flags (bench's --imgsz must be a
    # multiple of 32: it runs the model at exactly that size)
    options = detector_options(args, imgsz=parse_imgsz(args.imgsz))
    if args.threads is not None and args.threads < 1:
        raise UserInputError("--threads must be >= 1")
    settings = dict(warmup_s=args.warmup_s, warmup_iters=args.warmup_iters,
                    duration_s=None if args.iters else args.duration_s, iters=args.iters, min_iters=10)
    timing.check_settings(**settings)
    for m in args.models:
        if not ModelRef.parse(m).is_demo and not os.path.exists(m):
            raise UserInputError("{}: no such model file or bundle folder".format(m))
    _outputs(args)
    if getattr(args, "plot", False):  # issue 19: a missing matplotlib fails before the measuring
        from defectrt.bench.plot import import_pyplot

        import_pyplot()

    from tqdm import tqdm

    from defectrt import progress

    def log(msg):
        tqdm.write(msg, file=sys.stderr)  # above the progress bar, not through it

    env = environment.collect()
    peak = None if args.no_peak else peak_gflops()
    settings.update(threads=args.threads, mode="end_to_end" if args.end_to_end else "model", cuda_graph=args.cuda_graph,
                    backend=args.backend, batches=batches)
    if args.inflight:
        settings.update(mode="throughput", inflight=args.inflight)
    report = rep.new_report(bench_command(args), env, settings, label=args.label, peak=peak)
    with progress.bar(total=len(args.models), desc="bench", unit="model") as models_bar:  # none at -q
        for m in args.models:
            report["results"] += runner.bench_model(
                m, batches, options=options, end_to_end=args.end_to_end, settings=settings,
                peak_gflops=(peak or {}).get("gflops"), log=log, inflight=args.inflight,
            )
            models_bar.update(1)
    _emit(args, report, rep.to_markdown(report), summary=rep.summary_markdown(report))
    return 0 if any(r.get("status") == "ok" for r in report["results"]) else 1
