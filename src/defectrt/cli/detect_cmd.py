"""`defectrt detect SOURCE --model M`: run a detector on an image, a folder, a video or a camera.

Results are JSON lines (one per image / frame: source, frame, image_shape, detections), printed with
--json and written to SAVE_DIR/results.jsonl; annotated images / an mp4 (mp4v) go to SAVE_DIR. An
unreadable, truncated or non-regular image file in a folder is reported on stderr, skipped and counted;
a video that cannot be opened is an error, one that ends before its frame count a warning. SAVE_DIR is
never the input's folder; nothing existing is replaced without --force, and --force replaces only files
an earlier run wrote there (defectrt.fileio.claim_outputs).
"""
from __future__ import annotations

import os

from defectrt.cli import imgsz_arg
from defectrt.cli.backend_args import add_backend_args, openvino_options

from defectrt.runtime.media import IMAGE_EXTS
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".wmv", ".webm", ".h264", ".h265")
RESULTS = "results.jsonl"


def register(subparsers):
    p = subparsers.add_parser(
        "detect", help="run a model on an image, folder, video or camera",
        description="Run a detector (bundle, .onnx, .engine or demo:NAME) and write JSON-lines results and "
        "annotated images / video.")
    p.add_argument("source", help="image file, folder of images, video file (or URL), or camera index (0, 1, ...)")
    p.add_argument("-m", "--model", help="bundle folder, .onnx, .engine / .plan, or demo:screw / demo:pcb "
                   "(with --triton: the served model's name, default the only one)")
    p.add_argument("--triton", metavar="URL", help="run on a Triton server instead: http://HOST:8000 or grpc://HOST:8001")
    p.add_argument("--save-dir", help="write annotated images / video and results.jsonl here")
    p.add_argument("--json", action="store_true", help="print one JSON line per image / frame on stdout")
    p.add_argument("--conf", type=float, help="confidence threshold (default: the bundle's, else 0.25)")
    p.add_argument("--iou", type=float, help="NMS IoU threshold (default: the bundle's, else 0.45)")
    p.add_argument("--max-det", type=int, help="detections kept per image (default: the bundle's, else 300)")
    p.add_argument("--classes", type=int, nargs="+", help="keep only these class ids")
    add_backend_args(p, inflight=True)
    p.add_argument("--imgsz", type=int, nargs="+", help="N or H W, for models with a dynamic input size")
    p.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: one per core)")
    p.add_argument("--device", help="ONNX Runtime device: cpu (default) or cuda")
    p.add_argument("--plugins", nargs="*", default=[], help="TensorRT plugin libraries to load")
    p.add_argument("--force", action="store_true", help="replace existing outputs in --save-dir")
    p.set_defaults(func=run)


def classify_source(source):
    """-> ("camera", int) | ("video", path) | ("folder", path) | ("image", path)."""
    from defectrt.errors import UserInputError

    text = str(source)
    if text.isdigit() and not os.path.exists(text):
        return "camera", int(text)
    if "://" in text:
        return "video", text
    if os.path.isdir(text):
        return "folder", text
    if os.path.exists(text) and not os.path.isfile(text):
        raise UserInputError("{}: not a regular file (a FIFO, socket or device); defectrt reads images and videos "
                             "from regular files only".format(text))
    if not os.path.isfile(text):
        raise UserInputError("{}: no such file or folder (and not a camera index)".format(text))
    ext = os.path.splitext(text)[1].lower()
    if ext in VIDEO_EXTS:
        return "video", text
    if ext in IMAGE_EXTS:
        return "image", text
    raise UserInputError("{}: unknown source type {!r}; expected an image ({}), a video ({}) or a folder".format(
        text, ext, " ".join(IMAGE_EXTS), " ".join(VIDEO_EXTS)))


def folder_images(folder):
    """-> (image paths, [(path, ImageProblem)] skipped before reading: not regular files)."""
    from defectrt.errors import UserInputError
    from defectrt.runtime.media import list_images

    paths, skipped = list_images(folder)
    if not paths and not skipped:
        raise UserInputError("{}: no images ({}) in this folder".format(folder, " ".join(IMAGE_EXTS)))
    return paths, skipped


def annotate(img, dets):
    import cv2

    out = img.copy()
    thickness = max(1, int(round(sum(out.shape[:2]) / 600)))
    for box, score, cls, name in zip(dets.boxes, dets.scores, dets.class_ids, dets.names):
        color = _color(int(cls))
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness)
        label = "{} {:.2f}".format(name, float(score))
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        ty = y1 - 4 if y1 - th - base - 4 >= 0 else y1 + th + 4
        cv2.rectangle(out, (x1, ty - th - 2), (x1 + tw + 2, ty + base - 2), color, -1)
        cv2.putText(out, label, (x1 + 1, ty - 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def _color(i):
    palette = ((56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207), (10, 249, 72),
               (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0), (168, 153, 44), (255, 194, 0))
    return palette[i % len(palette)]


def _summary(dets):
    counts = {}
    for n in dets.names:
        counts[n] = counts.get(n, 0) + 1
    return ", ".join("{} {}".format(v, k) for k, v in sorted(counts.items())) or "no detections"


class _Frames(object):
    """The frames of a source, plus a record of which source / frame each yielded image was."""

    def __init__(self, kind, value, err):
        import collections

        self.kind, self.value, self.err = kind, value, err
        self.meta = collections.deque()
        self.skipped = []
        self.total = None
        self.fps = 30.0
        self.cap = None
        self.read = 0
        if kind in ("video", "camera"):
            self._open_capture()
        else:
            self.paths, skipped = folder_images(value) if kind == "folder" else ([value], [])
            for path, why in skipped:
                self._skip(path, why)
            self.total = len(self.paths)
            self.listed = len(self.paths) + len(skipped)

    def _open_capture(self):
        import cv2

        from defectrt.errors import UserInputError

        self.cap = cv2.VideoCapture(self.value)
        if not self.cap.isOpened():
            what = "camera {}".format(self.value) if self.kind == "camera" else str(self.value)
            raise UserInputError("{}: cannot open it as a video (missing, unsupported codec, or not a video); "
                                 "check the path / index, or convert it to mp4 (H.264)".format(what))
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and 0 < fps < 1000 else 30.0
        count = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.total = count if self.kind == "video" and count > 0 else None

    def _skip(self, path, problem):
        print("defectrt detect: skipping {}: {}".format(path, problem), file=self.err)
        self.skipped.append((path, problem.kind))

    def close(self):
        if self.cap is not None:
            self.cap.release()

    def report(self):
        """Warn, with counts, about what was not processed (never a silent partial result)."""
        if self.skipped:
            counts = {}
            for _, kind in self.skipped:
                counts[kind] = counts.get(kind, 0) + 1
            print("defectrt detect: warning: {} of {} image file(s) skipped ({}): {}".format(
                len(self.skipped), self.listed, "; ".join("{} {}".format(v, k) for k, v in sorted(counts.items())),
                ", ".join(p for p, _ in self.skipped)), file=self.err)
        if self.kind == "video" and self.total and self.read < self.total:
            print("defectrt detect: warning: {} ended after {} of its {} frames (truncated or corrupt); the results "
                  "cover only those".format(self.value, self.read, self.total), file=self.err)

    def __iter__(self):
        from defectrt.runtime.media import ImageProblem, read_image

        if self.cap is not None:
            self.read = 0
            try:
                while True:
                    ok, frame = self.cap.read()
                    if not ok:
                        break
                    self.meta.append((str(self.value), self.read, frame))
                    yield frame
                    self.read += 1
            finally:
                self.cap.release()
            return
        for path in self.paths:
            try:
                img = read_image(path)
            except ImageProblem as exc:
                self._skip(path, exc)
                continue
            self.meta.append((path, None, img))
            yield img


def _check_outputs(args, frames):
    """Fail before any work when an output exists and --force was not given, when --force would replace a
    file this tool did not write, or when --save-dir is the input's folder."""
    from defectrt.fileio import claim_outputs

    if not args.save_dir:
        return
    if frames.kind == "folder":
        input_dirs = [frames.value]
    elif frames.kind in ("image", "video") and "://" not in str(frames.value):
        input_dirs = [os.path.dirname(os.path.abspath(frames.value))]
    else:
        input_dirs = []
    names = [RESULTS] + [os.path.basename(p) for p in _media_outputs(args, frames)]
    claim_outputs(args.save_dir, names, args.force, input_dirs, tool="defectrt detect")


def _media_outputs(args, frames):
    if frames.kind in ("image", "folder"):
        return [os.path.join(args.save_dir, os.path.basename(p)) for p in frames.paths]
    return [_video_output(args, frames)]


def _video_output(args, frames):
    if frames.kind == "camera":
        stem = "camera{}".format(frames.value)
    else:
        stem = os.path.splitext(os.path.basename(str(frames.value).rstrip("/")))[0] or "stream"
    return os.path.join(args.save_dir, stem + ".mp4")


def run(args):
    import contextlib
    import json
    import sys

    from tqdm import tqdm

    from defectrt.errors import UserInputError
    from defectrt.fileio import atomic_path
    from defectrt.runtime.detector import Detector

    kind, value = classify_source(args.source)
    imgsz = imgsz_arg(args.imgsz)
    frames = _Frames(kind, value, sys.stderr)
    _check_outputs(args, frames)
    if args.triton or not args.model:  # issue 20: a model served by Triton, called like a Detector
        Detector = _triton_detector(args)  # noqa: N806
    det = Detector(args.model, backend=args.backend, conf=args.conf, iou=args.iou, max_det=args.max_det,
                   classes=args.classes, threads=args.threads, imgsz=imgsz, plugins=args.plugins,
                   device=args.device, openvino=openvino_options(args))
    done = 0
    with contextlib.ExitStack() as stack:
        results = video = None
        if args.save_dir:
            tmp = stack.enter_context(atomic_path(os.path.join(args.save_dir, RESULTS), force=args.force))
            results = stack.enter_context(open(tmp, "w"))
        bar = stack.enter_context(tqdm(total=frames.total, unit="img" if kind in ("image", "folder") else "frame",
                                       file=sys.stderr, disable=not sys.stderr.isatty() or (frames.total or 99) < 10))
        stream = det.stream(frames, inflight=args.inflight)
        try:
            for dets in stream:
                source, index, img = frames.meta.popleft()
                record = {"source": source, "frame": index}
                record.update(dets.to_dict())
                line = json.dumps(record)
                if args.json:
                    print(line)
                elif not args.save_dir or kind in ("image", "folder"):
                    print("{}{}: {}".format(source, "" if index is None else " #{}".format(index), _summary(dets)))
                if results is not None:
                    results.write(line + "\n")
                    video = _save_media(args, frames, stack, video, img, dets, source)
                done += 1
                bar.update(1)
        except KeyboardInterrupt:
            if kind != "camera":
                raise
            print("defectrt detect: stopped; keeping the {} frames processed".format(done), file=sys.stderr)
        finally:
            stream.close()  # stops the reader thread before the capture is released
            frames.close()
        frames.report()
        if done == 0 and kind in ("image", "folder"):  # raised inside: no empty results.jsonl is left behind
            raise UserInputError("{}: no image could be read".format(args.source))
    if args.save_dir:
        print("defectrt detect: {} {} -> {}".format(done, "frames" if kind in ("video", "camera") else "images",
                                                   os.path.abspath(args.save_dir)), file=sys.stderr)
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


def _save_media(args, frames, stack, video, img, dets, source):
    import cv2

    from defectrt.errors import UserInputError
    from defectrt.fileio import atomic_path

    drawn = annotate(img, dets)
    if frames.kind in ("image", "folder"):
        out = os.path.join(args.save_dir, os.path.basename(source))
        with atomic_path(out, force=True) as tmp:  # existence was checked against --force before any work
            if not cv2.imwrite(tmp, drawn):
                raise UserInputError("cannot write the annotated image {}".format(out))
        return video
    if video is None:
        out = _video_output(args, frames)
        tmp = stack.enter_context(atomic_path(out, force=args.force))
        h, w = drawn.shape[:2]
        video = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), frames.fps, (w, h))
        if not video.isOpened():
            raise UserInputError("cannot write the video {} (no mp4v encoder in this OpenCV build)".format(out))
        stack.callback(video.release)  # registered after atomic_path, so it runs before the file is moved in place
    video.write(drawn)
    return video
