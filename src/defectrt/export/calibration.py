"""INT8 calibration data: images from a folder, pre-processed exactly like the runtime does.

Calibration must see the pixels the deployed model will see, so every image goes through
`defectrt.runtime.preprocess.preprocess` (letterbox, RGB, /255, NCHW) - the same function the
Detector calls - and nothing else.

`CalibrationReader` speaks both calibration-reader protocols in use:
- ONNX Runtime's `CalibrationDataReader` (`get_next() -> {input: blob}` until None), used by
  `onnxruntime.quantization.quantize_static`;
- ModelOpt's additions `get_first()` (peek without consuming) and `rewind()`.

Images are read lazily (300 images at 640x640 would be 1.5 GB as float32 blobs) and the selection
is deterministic: all files sorted by name; when there are more than `calib_count`, a seeded subset
(kept in name order) is used. When the images have YOLO labels (images/<split>/x.png ->
labels/<split>/x.txt), the subset is stratified: classes take turns, rarest first, each adding one
not-yet-chosen image that contains it, so a rare defect class is not left to chance (a random 100 of
5000 images may hold none of a class seen in 1%); images without objects fill what is left.
`sample_record()` says what was used (count, sha256 over the chosen files' names and bytes,
images per class) for the bundle manifest.
"""
from __future__ import annotations

import hashlib
import os
import warnings

import numpy as np

from defectrt.errors import UserInputError

try:  # the base class only adds __iter__/__next__; ORT also accepts any object with get_next
    from onnxruntime.quantization import CalibrationDataReader as _Base
except Exception:  # pragma: no cover - onnxruntime is a base dependency
    _Base = object

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
DEFAULT_CALIB_COUNT = 300
MIN_RECOMMENDED = 100


def list_images(folder):
    """Image files (jpg/jpeg/png/bmp, any case) directly in `folder`, sorted by name."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise UserInputError("calibration folder {} does not exist or is not a folder".format(folder))
    files = sorted(f for f in os.listdir(folder)
                   if f.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(folder, f)))
    if not files:
        raise UserInputError("calibration folder {} has no images ({}); point --calib at a folder of "
                             "images like the ones the model will see".format(folder, "/".join(e[1:] for e in IMAGE_EXTENSIONS)))
    return [os.path.join(folder, f) for f in files]


def select_images(files, count, seed=0):
    """Deterministic choice of `count` of `files`: all of them when there are not more than `count`."""
    if count is None or count >= len(files):
        return list(files)
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(files), size=int(count), replace=False))
    return [files[i] for i in keep]


def image_classes(files):
    """{path: set of class ids} from each image's YOLO label file, or None when no image has one."""
    from defectrt.data.dataset import label_path

    found, out = False, {}
    for path in files:
        classes = set()
        lp = label_path(path)
        if lp and os.path.isfile(lp):
            found = True
            with open(lp) as f:
                for line in f:
                    parts = line.split()
                    if parts:
                        try:
                            classes.add(int(float(parts[0])))
                        except ValueError:
                            continue  # a malformed line: dataset validation reports it, calibration ignores it
        out[path] = classes
    return out if found else None


def stratified_select(files, classes, count, seed=0):
    """`count` of `files` with every class represented as evenly as the images allow (see the module doc).

    classes: {path: set of class ids}. Deterministic in `seed`; returned in name order.
    """
    if count is None or count >= len(files):
        return list(files)
    rng = np.random.default_rng(seed)
    order = [files[i] for i in rng.permutation(len(files))]
    by_class = {}
    for path in order:
        for c in classes.get(path, ()):
            by_class.setdefault(c, []).append(path)
    turn = sorted(by_class, key=lambda c: (len(by_class[c]), c))  # rarest class first
    chosen, taken = [], set()
    cursors = {c: 0 for c in turn}
    while len(chosen) < count and turn:
        for c in list(turn):
            pool = by_class[c]
            while cursors[c] < len(pool) and pool[cursors[c]] in taken:
                cursors[c] += 1
            if cursors[c] >= len(pool):
                turn.remove(c)
                continue
            chosen.append(pool[cursors[c]])
            taken.add(pool[cursors[c]])
            if len(chosen) >= count:
                break
    for path in order:  # background images (and whatever the classes did not fill)
        if len(chosen) >= count:
            break
        if path not in taken:
            chosen.append(path)
            taken.add(path)
    return sorted(chosen)


class CalibrationReader(_Base):
    """Calibration batches for the model input `input_name` of shape (batch, 3, h, w).

    calib_dir: folder of images; imgsz: (h, w) or int; calib_count: how many images (default 300;
    fewer than 100 gives a warning because INT8 ranges from few images are noisy); seed: which subset
    when the folder has more; batch: images per calibration step (the model's static batch, 1 when dynamic).
    """

    def __init__(self, calib_dir, imgsz, calib_count=DEFAULT_CALIB_COUNT, seed=0, input_name="images", batch=1):
        try:
            calib_count = int(calib_count)
        except (TypeError, ValueError):
            raise UserInputError("calib_count {!r}: expected a positive whole number".format(calib_count))
        if calib_count < 1:
            raise UserInputError("calib_count {}: expected at least 1 image".format(calib_count))
        if isinstance(imgsz, (int, np.integer)):
            imgsz = (int(imgsz), int(imgsz))
        self.imgsz = tuple(int(v) for v in imgsz)
        self.input_name = input_name
        self.batch = max(1, int(batch))
        self.calib_dir = os.fspath(calib_dir)
        available = list_images(self.calib_dir)
        self.seed = seed
        self.available = len(available)
        self._classes = image_classes(available)
        if self._classes is None:
            self.files = select_images(available, calib_count, seed)
        else:
            self.files = stratified_select(available, self._classes, calib_count, seed)
        if len(self.files) < MIN_RECOMMENDED:
            why = ("calib_count is {}".format(calib_count) if calib_count < MIN_RECOMMENDED
                   else "{} has only {} images".format(self.calib_dir, len(available)))
            msg = ("INT8 calibration with {} images ({}): fewer than {} gives noisy activation ranges; "
                   "300 is recommended".format(len(self.files), why, MIN_RECOMMENDED))
            warnings.warn(msg, UserWarning, stacklevel=2)  # logging.captureWarnings routes it to the log
        self._pos = 0

    def sample_record(self):
        """What was calibrated on, for the manifest: count, available, seed, stratified, images per class,
        sha256 (over each chosen file's name and bytes, in order: the same images give the same hash)."""
        digest = hashlib.sha256()
        for path in self.files:
            digest.update(os.path.basename(path).encode("utf-8") + b"\0")
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
        record = {"count": len(self.files), "available": self.available, "seed": self.seed,
                  "folder": os.path.basename(os.path.abspath(self.calib_dir)),
                  "stratified": self._classes is not None, "sha256": digest.hexdigest()}
        if self._classes is not None:
            per = {}
            for path in self.files:
                for c in self._classes.get(path, ()):
                    per[c] = per.get(c, 0) + 1
            record["images_per_class"] = {str(c): per[c] for c in sorted(per)}
        return record

    def __len__(self):
        """Number of calibration steps (batches)."""
        return (len(self.files) + self.batch - 1) // self.batch

    def _blob(self, index):
        import cv2

        from defectrt.runtime.preprocess import preprocess

        names = self.files[index * self.batch:(index + 1) * self.batch]
        # A static batch larger than what is left is filled by repeating images (same statistics).
        while len(names) < self.batch:
            names = names + names[: self.batch - len(names)]
        images = []
        for path in names:
            img = cv2.imread(path, cv2.IMREAD_COLOR)
            if img is None:
                raise UserInputError("calibration image {} cannot be read (corrupt or not an image)".format(path))
            images.append(img)
        blob, _ = preprocess(images, self.imgsz)
        return blob

    def get_next(self):
        bar = self.__dict__.get("_bar")
        if self._pos >= len(self):
            if bar is not None:
                bar.close()
                self._bar = None
            return None
        if bar is None:  # issue 19: calibration of 300 images takes minutes; a bar on a terminal (none at -q)
            from defectrt import progress

            bar = self._bar = progress.bar(total=len(self), desc="calibration", unit="batch")
        blob = self._blob(self._pos)
        self._pos += 1
        bar.update(1)
        return {self.input_name: blob}

    def get_first(self):
        """The first batch, without advancing (ModelOpt runs one inference with it)."""
        return {self.input_name: self._blob(0)}

    def rewind(self):
        self._pos = 0

    def set_range(self, start_index, end_index):  # ORT's interface; calibration uses the whole set
        self.files = self.files[start_index * self.batch:end_index * self.batch]
        self._pos = 0

    def all(self):
        """Every batch concatenated: (n, 3, h, w) float32 (for small sets and tests)."""
        return np.concatenate([self._blob(i) for i in range(len(self))], axis=0)
