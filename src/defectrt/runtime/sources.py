"""What `detect` reads: an image, a folder of images, a video file or URL, or a camera index.

`classify_source` says which (or raises a clear error); `Frames` yields the images / frames and records
which source / frame each one was (`meta`), what was skipped and why, and whether a video ended early.
Problems are reported through `on_skip(path, problem)` and `warnings()`, never printed here.
"""
from __future__ import annotations

import collections
import os

from defectrt.errors import UserInputError
from defectrt.runtime.media import IMAGE_EXTS, ImageProblem, list_images, read_image

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".wmv", ".webm", ".h264", ".h265")


def classify_source(source):
    """-> ("camera", int) | ("video", path) | ("folder", path) | ("image", path)."""
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
    paths, skipped = list_images(folder)
    if not paths and not skipped:
        raise UserInputError("{}: no images ({}) in this folder".format(folder, " ".join(IMAGE_EXTS)))
    return paths, skipped


def input_dirs(kind, value):
    """The folders a source reads from (outputs must never go there)."""
    if kind == "folder":
        return [value]
    if kind in ("image", "video") and "://" not in str(value):
        return [os.path.dirname(os.path.abspath(value))]
    return []


class Frames(object):
    """The frames of a source, plus a record of which source / frame each yielded image was (`meta`, a
    deque of (source, frame index or None, image) in the order yielded)."""

    def __init__(self, kind, value, on_skip=None):
        self.kind, self.value = kind, value
        self.on_skip = on_skip
        self.meta = collections.deque()
        self.skipped = []
        self.total = None
        self.fps = 30.0
        self.cap = None
        self.read = 0
        self.paths = []
        self.listed = 0
        if kind in ("video", "camera"):
            self._open_capture()
        else:
            self.paths, skipped = folder_images(value) if kind == "folder" else ([value], [])
            for path, why in skipped:
                self._skip(path, why)
            self.total = len(self.paths)
            self.listed = len(self.paths) + len(skipped)

    @property
    def is_stream(self):
        return self.kind in ("video", "camera")

    def _open_capture(self):
        import cv2

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
        if self.on_skip is not None:
            self.on_skip(path, problem)
        self.skipped.append((path, problem.kind))

    def close(self):
        if self.cap is not None:
            self.cap.release()

    def warnings(self):
        """What was not processed, with counts (never a silent partial result): a list of sentences."""
        out = []
        if self.skipped:
            counts = {}
            for _, kind in self.skipped:
                counts[kind] = counts.get(kind, 0) + 1
            out.append("{} of {} image file(s) skipped ({}): {}".format(
                len(self.skipped), self.listed, "; ".join("{} {}".format(v, k) for k, v in sorted(counts.items())),
                ", ".join(p for p, _ in self.skipped)))
        if self.kind == "video" and self.total and self.read < self.total:
            out.append("{} ended after {} of its {} frames (truncated or corrupt); the results cover only "
                       "those".format(self.value, self.read, self.total))
        return out

    def __iter__(self):
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
