"""Where `detect` writes: a run folder with results.jsonl and the annotated images or video.

The folder is either chosen (--save-dir: never the input's folder; an existing file is replaced only with
`force` and only when an earlier run wrote it, see fileio.claim_outputs) or the next free
`runs/detect/exp`, `exp2`, ... (never an existing folder). Every file is written under a temporary name
and moved in place when complete.
"""
from __future__ import annotations

import contextlib
import os

from defectrt.errors import UserInputError
from defectrt.fileio import atomic_path, claim_outputs, next_run_dir
from defectrt.runtime.sources import input_dirs

RESULTS = "results.jsonl"
DEFAULT_PROJECT = os.path.join("runs", "detect")


class DetectRun(object):
    """Outputs of one detect run into `folder` (None: the next free runs/detect/expN, made by `open`)."""

    def __init__(self, frames, folder=None, force=False, tool="defectrt detect", project=DEFAULT_PROJECT):
        self.frames, self.folder, self.force, self.tool, self.project = frames, folder, force, tool, project
        self._stack = None
        self._results = None
        self._video = None
        self._made = False

    def _names(self):
        if self.frames.is_stream:
            return [RESULTS, self.video_name()]
        return [RESULTS] + [os.path.basename(p) for p in self.frames.paths]

    def video_name(self):
        if self.frames.kind == "camera":
            return "camera{}.mp4".format(self.frames.value)
        return (os.path.splitext(os.path.basename(str(self.frames.value).rstrip("/")))[0] or "stream") + ".mp4"

    def claim(self):
        """Check (before any work) that a chosen folder may take the outputs, and record them in its marker."""
        if self.folder is not None:
            claim_outputs(self.folder, self._names(), self.force, input_dirs(self.frames.kind, self.frames.value),
                          tool=self.tool)

    def __enter__(self):
        if self.folder is None:
            self.folder = next_run_dir(self.project, "exp", option="--save-dir")
            self._made = True
            claim_outputs(self.folder, self._names(), False, (), tool=self.tool)
        self._stack = contextlib.ExitStack()
        try:
            tmp = self._stack.enter_context(atomic_path(os.path.join(self.folder, RESULTS), force=self.force))
            self._results = self._stack.enter_context(open(tmp, "w"))
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc):
        try:
            return self._stack.__exit__(*exc)
        finally:
            if exc[0] is not None and self._made:
                self._remove_if_unused()

    def _remove_if_unused(self):
        """A failed run leaves no empty runs/detect/expN behind (only our marker in it: both go)."""
        from defectrt.fileio import RUN_MARKER

        try:
            if os.listdir(self.folder) == [RUN_MARKER]:
                os.remove(os.path.join(self.folder, RUN_MARKER))
                os.rmdir(self.folder)
        except OSError:
            pass

    def write(self, line, img, dets, source):
        """One result: its JSON line, and the annotated image (or video frame)."""
        import cv2

        from defectrt.viz import annotate

        self._results.write(line + "\n")
        drawn = annotate(img, dets)
        if not self.frames.is_stream:
            out = os.path.join(self.folder, os.path.basename(source))
            with atomic_path(out, force=True) as tmp:  # existence was checked against --force before any work
                if not cv2.imwrite(tmp, drawn):
                    raise UserInputError("cannot write the annotated image {}".format(out))
            return
        if self._video is None:
            out = os.path.join(self.folder, self.video_name())
            tmp = self._stack.enter_context(atomic_path(out, force=self.force))
            h, w = drawn.shape[:2]
            self._video = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), self.frames.fps, (w, h))
            if not self._video.isOpened():
                raise UserInputError("cannot write the video {} (no mp4v encoder in this OpenCV build)".format(out))
            self._stack.callback(self._video.release)  # after atomic_path: released before the file is moved in place
        self._video.write(drawn)
