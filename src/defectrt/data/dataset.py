"""Read and validate YOLO-format detection datasets (no torch; Python 3.8).

Accepted layouts:

* a ``data.yaml`` (Ultralytics style): ``path`` (the root; relative paths are taken relative to the
  YAML file), one entry per split (``train``, ``val``, ...) naming an image folder, a ``.txt`` list
  of image paths, or a list of those; ``names`` as a list or a ``{id: name}`` mapping; ``nc``.
* a folder holding such a ``data.yaml``;
* a folder with ``images/<split>/`` and ``labels/<split>/`` (class names from ``classes.txt`` if
  present, else "0", "1", ... up to the largest class id found).

The label file of ``.../images/.../a.png`` is ``.../labels/.../a.txt`` (last ``images`` folder
swapped for ``labels``); an image without one has no objects. Each label line is
``class cx cy w h`` with coordinates normalised to [0, 1]. Every problem in every label file is
collected first, then reported at once, each with its file and line.
"""
from __future__ import annotations

import collections
import os

import numpy as np

from defectrt.errors import NotFound, UserInputError

IMAGE_EXTS = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
MAX_REPORTED = 20  # problems listed in one error; the rest are counted

Item = collections.namedtuple("Item", "image label_file labels")
Item.__doc__ = """One image: its path, its label file path (may not exist) and labels (N, 5) float32
rows [class, cx, cy, w, h], normalised."""


class Dataset(object):
    """One split of a YOLO dataset: `.names` (list of class names), `.items` (list of Item)."""

    def __init__(self, root, split, names, items, names_inferred=False, source=None):
        self.root = root
        self.split = split
        self.names = list(names)
        self.items = list(items)
        self.names_inferred = names_inferred  # True when names are only "0", "1", ... (no YAML / classes.txt)
        self.source = source or root

    def __len__(self):
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    def __repr__(self):
        return "Dataset({!r}, split={!r}, images={}, names={})".format(self.source, self.split, len(self), self.names)

    @property
    def nc(self):
        return len(self.names)

    def instances(self):
        """Objects per class, (nc,) int64."""
        counts = np.zeros(self.nc, np.int64)
        for it in self.items:
            if len(it.labels):
                counts += np.bincount(it.labels[:, 0].astype(np.int64), minlength=self.nc)[: self.nc]
        return counts

    def images(self):
        """Yield (Item, image BGR uint8) in order; an unreadable image raises UserInputError."""
        for it in self.items:
            yield it, read_image(it.image)

    @staticmethod
    def boxes_xyxy(labels, shape):
        """Normalised labels (N, 5) and an image shape (h, w, ...) -> (N, 4) x1, y1, x2, y2 pixels."""
        h, w = shape[:2]
        labels = np.asarray(labels, np.float64).reshape(-1, 5)
        cx, cy, bw, bh = labels[:, 1] * w, labels[:, 2] * h, labels[:, 3] * w, labels[:, 4] * h
        return np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)


def read_image(path):
    """An image file -> BGR uint8, or a clear UserInputError: a non-regular file (a FIFO would block),
    a truncated PNG / JPEG or an undecodable file is refused, never half-read (defectrt.runtime.media)."""
    from defectrt.runtime.media import ImageProblem
    from defectrt.runtime.media import read_image as read_checked

    try:
        return read_checked(path)
    except ImageProblem as exc:
        raise UserInputError("{}: not a readable image ({}); replace or remove it".format(path, exc))


# ----------------------------------------------------------------------------- YAML


def read_yaml(path):
    """A dataset YAML file as a dict (PyYAML's safe loader: no tags, no code)."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserInputError("{}: cannot read: {}".format(path, getattr(exc, "strerror", None) or exc))
    return parse_yaml(text, path)


def parse_yaml(text, path="<yaml>"):
    """YAML text -> dict; errors name the file and line."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = "{}:{}".format(path, mark.line + 1) if mark is not None else path
        raise UserInputError("{}: not valid YAML: {}".format(where, getattr(exc, "problem", None) or exc))
    if not isinstance(data, dict):
        raise UserInputError("{}: expected a mapping (`key: value` lines), e.g. `val: images/val`".format(path))
    return data


# ----------------------------------------------------------------------------- labels


def label_path(image_path):
    """The label file for an image: the last `images` folder swapped for `labels`, suffix .txt."""
    parts = os.path.normpath(image_path).split(os.sep)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return os.path.splitext(os.sep.join(parts))[0] + ".txt"


def read_labels(path, nc=None):
    """Parse one label file -> (labels (N, 5) float32, [problem strings naming path:line]).

    A missing file means no objects. `nc`: number of classes, to check class ids against.
    """
    problems = []
    if not os.path.exists(path):
        return np.zeros((0, 5), np.float32), problems
    try:
        with open(path, "r", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError:
        return np.zeros((0, 5), np.float32), ["{}: not a UTF-8 text file".format(path)]
    except OSError as exc:
        return np.zeros((0, 5), np.float32), ["{}: cannot read: {}".format(path, exc.strerror)]
    rows = []
    for lineno, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        where = "{}:{}".format(path, lineno)
        if len(fields) != 5:
            hint = ""
            if len(fields) > 5 and len(fields) % 2 == 1:
                hint = " (a segmentation polygon? convert it to its bounding box)"
            problems.append("{}: expected 5 values `class cx cy w h`, found {}{}".format(where, len(fields), hint))
            continue
        try:
            vals = [float(v) for v in fields]
        except ValueError:
            bad = next(v for v in fields if not _is_float(v))
            problems.append("{}: {!r} is not a number".format(where, bad))
            continue
        if not all(np.isfinite(vals)):
            problems.append("{}: NaN or infinite value".format(where))
            continue
        cls, box = vals[0], vals[1:]
        bad = False
        if cls != int(cls) or cls < 0:
            problems.append("{}: class id {} must be a non-negative integer".format(where, fields[0]))
            bad = True
        elif nc is not None and cls >= nc:
            problems.append("{}: class id {} out of range: the dataset has {} classes (ids 0..{})".format(
                where, int(cls), nc, nc - 1))
            bad = True
        if any(v < 0 or v > 1 for v in box):
            problems.append("{}: coordinates {} must be normalised to [0, 1] (divide x, w by the image width "
                            "and y, h by its height)".format(where, " ".join(fields[1:])))
            bad = True
        elif box[2] <= 0 or box[3] <= 0:
            problems.append("{}: width and height must be positive, got w={} h={}".format(where, fields[3], fields[4]))
            bad = True
        if not bad:
            rows.append(vals)
    labels = np.array(rows, np.float32).reshape(-1, 5)
    return labels, problems


def _is_float(v):
    try:
        float(v)
        return True
    except ValueError:
        return False


def raise_problems(problems, what):
    """One UserInputError listing up to MAX_REPORTED problems (and how many more there are)."""
    if not problems:
        return
    shown = problems[:MAX_REPORTED]
    more = len(problems) - len(shown)
    msg = "{} problem{} in {}; fix them and run again:\n  ".format(len(problems), "s" if len(problems) > 1 else "",
                                                                      what) + "\n  ".join(shown)
    if more:
        msg += "\n  ... and {} more".format(more)
    raise UserInputError(msg)


# ----------------------------------------------------------------------------- datasets


def _list_images(folder):
    out = []
    for d, dirs, files in os.walk(folder):
        dirs.sort()
        out.extend(os.path.join(d, f) for f in sorted(files) if f.lower().endswith(IMAGE_EXTS))
    return out


def _images_from(entry, root, yaml_path):
    """Images named by one split entry: a folder, a .txt list of images, or an image file."""
    p = entry if os.path.isabs(entry) else os.path.join(root, entry)
    if os.path.isdir(p):
        return _list_images(p)
    if os.path.isfile(p) and p.lower().endswith(".txt"):
        base = os.path.dirname(p)
        with open(p, "r", encoding="utf-8") as f:
            lines = [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
        return [ln if os.path.isabs(ln) else os.path.normpath(os.path.join(base, ln)) for ln in lines]
    if os.path.isfile(p) and p.lower().endswith(IMAGE_EXTS):
        return [p]
    raise UserInputError("{}: split entry {!r} -> {} does not exist (expected an image folder or a .txt list "
                         "of images)".format(yaml_path, entry, p))


def _names_from_yaml(data, path):
    names = data.get("names")
    nc = data.get("nc")
    if isinstance(names, dict):
        try:
            ids = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError):
            raise UserInputError("{}: `names` keys must be class ids 0, 1, ...".format(path))
        if sorted(ids) != list(range(len(ids))):
            raise UserInputError("{}: `names` ids must be 0..{} without gaps, got {}".format(path, len(ids) - 1,
                                                                                          sorted(ids)))
        names = [ids[i] for i in range(len(ids))]
    elif isinstance(names, list):
        names = [str(n) for n in names]
    elif names is None:
        if nc is None:
            raise UserInputError("{}: no `names` (and no `nc`); add e.g. `names: [scratch, dent]`".format(path))
        names = [str(i) for i in range(int(nc))]
    else:
        raise UserInputError("{}: `names` must be a list or a mapping of id: name".format(path))
    if nc is not None and int(nc) != len(names):
        raise UserInputError("{}: nc is {} but `names` lists {} classes; make them agree".format(path, nc, len(names)))
    if not names:
        raise UserInputError("{}: `names` is empty".format(path))
    return names


def load_dataset(path, split="val"):
    """Load and validate one split of a YOLO dataset -> Dataset.

    `path`: a data.yaml, a folder with a data.yaml, or a folder with images/<split> + labels/<split>.
    Raises UserInputError naming the file (and line) for every problem found.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise NotFound("{}: no such dataset (pass a data.yaml or a folder with images/ and labels/)".format(path))
    yaml_path = None
    if os.path.isfile(path):
        if not path.lower().endswith((".yaml", ".yml")):
            raise UserInputError("{}: expected a data.yaml or a dataset folder".format(path))
        yaml_path = path
    elif os.path.isfile(os.path.join(path, "data.yaml")):
        yaml_path = os.path.join(path, "data.yaml")

    names_inferred = False
    if yaml_path is not None:
        data = read_yaml(yaml_path)
        here = os.path.dirname(os.path.abspath(yaml_path))
        root = data.get("path")
        if root is None or root == "":
            root = here
        else:
            root = str(root)
            if not os.path.isabs(root):
                root = os.path.normpath(os.path.join(here, root))
            elif not os.path.isdir(root):
                root = here  # an absolute path from another machine: the dataset was moved with its YAML
        if split not in data or data[split] in (None, ""):
            keys = [k for k in ("train", "val", "test") if data.get(k)]
            raise UserInputError("{}: no `{}` split; it has: {}".format(yaml_path, split, ", ".join(keys) or "none"))
        entries = data[split] if isinstance(data[split], list) else [data[split]]
        images = []
        for e in entries:
            images.extend(_images_from(str(e), root, yaml_path))
        names = _names_from_yaml(data, yaml_path)
        where = "the {} split of {}".format(split, yaml_path)
        source = yaml_path
    else:
        root = path
        img_dir = os.path.join(path, "images", split)
        if not os.path.isdir(img_dir):
            raise UserInputError("{}: no data.yaml and no images/{} folder; expected {} (with labels/{} beside it) "
                                 "or a data.yaml".format(path, split, img_dir, split))
        images = _list_images(img_dir)
        names = None
        classes_txt = os.path.join(path, "classes.txt")
        if os.path.isfile(classes_txt):
            with open(classes_txt, "r", encoding="utf-8") as f:
                names = [ln.strip() for ln in f if ln.strip()]
        where = "the {} split of {}".format(split, path)
        source = path
    if not images:
        raise UserInputError("{}: {} has no images ({}); check the path and the split name".format(
            source, where, "/".join(e.lstrip(".") for e in IMAGE_EXTS)))

    missing = [p for p in images if not os.path.isfile(p)]
    problems = ["{}: listed image does not exist".format(p) for p in missing]
    nc = len(names) if names is not None else None
    items = []
    for img in images:
        lf = label_path(img)
        labels, probs = read_labels(lf, nc)
        problems.extend(probs)
        items.append(Item(img, lf, labels))
    raise_problems(problems, where)
    if names is None:
        top = max((int(it.labels[:, 0].max()) for it in items if len(it.labels)), default=-1)
        names = [str(i) for i in range(top + 1)] or ["0"]
        names_inferred = True
    return Dataset(root, split, names, items, names_inferred=names_inferred, source=source)
