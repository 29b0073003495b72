"""`defectrt detect SOURCE --model M`: run a detector on an image, a folder, a video or a camera.

Parsing and printing only: sources are read by defectrt.runtime.sources, outputs written by
defectrt.runtime.run_folder (annotation: defectrt.viz). Results are JSON lines (one per image / frame:
source, frame, image_shape, detections), printed with --json and written to SAVE_DIR/results.jsonl with
the annotated images / an mp4; SAVE_DIR is the next free runs/detect/expN unless --save-dir chooses one
(never the input's folder; nothing existing replaced without --force, and --force replaces only files an
earlier run wrote there) or --no-save writes nothing. An unreadable image in a folder is reported, skipped
and counted; a video that cannot be opened is an error, one that ends before its frame count a warning.
"""
from __future__ import annotations

import os

from defectrt.cli.backend_args import add_backend_args
from defectrt.cli.options import add_imgsz, add_plugins, add_threads, add_thresholds, detector_options


def register(subparsers):
    p = subparsers.add_parser(
        "detect", help="run a model on an image, folder, video or camera",
        description="Run a detector (bundle, .onnx, .engine or demo:NAME) and write JSON-lines results and "
        "annotated images / video.")
    p.add_argument("source", help="image file, folder of images, video file (or URL), or camera index (0, 1, ...)")
    p.add_argument("-m", "--model", help="bundle folder, .onnx, .engine / .plan, or demo:screw / demo:pcb "
                   "(with --triton: the served model's name, default the only one)")
    p.add_argument("--triton", metavar="URL", help="run on a Triton server instead: http://HOST:8000 or grpc://HOST:8001")
    p.add_argument("--save-dir", help="write annotated images / video and results.jsonl here (default: the next "
                   "free runs/detect/exp, exp2, ...; never the input's folder)")
    p.add_argument("--no-save", action="store_true", help="write no files: print the results only")
    p.add_argument("--json", action="store_true", help="print one JSON line per image / frame on stdout")
    add_thresholds(p)
    p.add_argument("--classes", type=int, nargs="+", help="keep only these class ids")
    add_backend_args(p, inflight=True)
    add_imgsz(p, help="N or H W, for models with a dynamic input size")
    add_threads(p)
    p.add_argument("--device", help="ONNX Runtime device: cpu (default) or cuda")
    add_plugins(p)
    p.add_argument("--force", action="store_true", help="replace existing outputs in --save-dir")
    p.set_defaults(func=run)


def run(args):
    import contextlib
    import json
    import sys
    import time

    from defectrt import progress
    from defectrt.errors import UserInputError
    from defectrt.runtime.detector import Detector
    from defectrt.runtime.run_folder import DetectRun
    from defectrt.runtime.sources import Frames, classify_source
    from defectrt.viz import count_by_name

    def skipped(path, problem):
        print("defectrt detect: skipping {}: {}".format(path, problem), file=sys.stderr)

    if args.no_save and args.save_dir:
        raise UserInputError("--no-save and --save-dir contradict each other; give one")
    kind, value = classify_source(args.source)
    options = detector_options(args)
    frames = Frames(kind, value, on_skip=skipped)
    outputs = None if args.no_save else DetectRun(frames, args.save_dir, force=args.force)
    if outputs is not None:
        outputs.claim()  # before any work: a refused --save-dir costs no model load
    model = args.model
    if args.triton or not args.model:  # issue 20: a model served by Triton, called like a Detector
        Detector = _triton_detector(args)  # noqa: N806
    else:  # a checkpoint (best.pt) or registry name runs through PyTorch, as `val` does (issue 19)
        from defectrt.cli.val_cmd import model_or_torch_backend

        model = model_or_torch_backend(args.model, options.imgsz)
    det = Detector(model, options=options)
    done, names, start = 0, [], time.perf_counter()
    unit = "frame" if frames.is_stream else "img"
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(outputs) if outputs is not None else None
        bar = stack.enter_context(progress.bar(total=frames.total, unit=unit, desc="detect",
                                               enabled=(frames.total or 99) >= 10))  # none at -q
        stream = det.stream(frames, inflight=args.inflight)
        try:
            for dets in stream:
                source, index, img = frames.meta.popleft()
                record = {"source": source, "frame": index}
                record.update(dets.to_dict())
                line = json.dumps(record)
                if args.json:
                    print(line)
                elif not frames.is_stream or outputs is None:
                    print("{}{}: {}".format(source, "" if index is None else " #{}".format(index),
                                            count_by_name(dets.names)))
                if sink is not None:
                    sink.write(line, img, dets, source)
                names.extend(dets.names)
                done += 1
                bar.update(1)
        except KeyboardInterrupt:
            if kind != "camera":
                raise
            print("defectrt detect: stopped; keeping the {} frames processed".format(done), file=sys.stderr)
        finally:
            stream.close()  # stops the reader thread before the capture is released
            frames.close()
        for warning in frames.warnings():
            print("defectrt detect: warning: " + warning, file=sys.stderr)
        if done == 0 and not frames.is_stream:  # raised inside: no empty results.jsonl is left behind
            raise UserInputError("{}: no image could be read".format(args.source))
    seconds = time.perf_counter() - start
    print("defectrt detect: {} {}, {} ({:.1f} ms each){}".format(
        done, "frames" if frames.is_stream else "images", count_by_name(names), 1000.0 * seconds / max(done, 1),
        "" if outputs is None else " -> " + os.path.abspath(outputs.folder)), file=sys.stderr)
    return 0


def _triton_detector(args):
    """--triton URL: -> a factory with Detector's signature that returns a TritonDetector (issue 20)."""
    from defectrt.errors import UserInputError

    if not args.triton:
        raise UserInputError("give the model with -m / --model (or a Triton server with --triton URL)")
    local = [flag for flag, value in (("--conf", args.conf), ("--iou", args.iou), ("--max-det", args.max_det),
                                      ("--classes", args.classes), ("--imgsz", args.imgsz)) if value is not None]
    if local:
        raise UserInputError("{} cannot be applied with --triton: the served model uses the bundle's settings "
                             "(re-export or restart the server with the ones you want)".format(", ".join(local)))

    def make(model, **ignored):
        from defectrt.client import TritonDetector

        return TritonDetector(args.triton, model=model)

    return make
