"""Procedurally generated defect datasets in YOLO format (numpy + OpenCV only, no torch).

Two generators, one module each:

* ``screw`` (`synth.screw`): a metal screw (shaded head, threaded shank, varying pose, scale and
  position) on a textured conveyor background, with the screw-inspection defect classes ``scratch``,
  ``dent``, ``coating`` (a coating / colour anomaly) and ``unprocessed`` (a band of the shank left
  without thread). Default size 384x672 (H x W), the aspect of a line-scan style inspection camera.
* ``pcb`` (`synth.pcb`): a bare board (green solder mask, copper traces in buses, pads, drilled holes,
  silkscreen, IC bodies) with the six PKU-PCB defect classes, each a few percent of the image side,
  each drawn by its own painter. Default 640x640.

Every image depends only on (kind, seed, index, size) - each draws from its own
``numpy.random.default_rng([version, kind, seed, index])`` stream - so the same seed always yields the
same labels, and one image can be regenerated without the others.

Boxes are measured from the rendered defect masks (pixels at >= half coverage), never from the
parameters used to draw them, so a box is tight around what is visible. Defects never overlap (a
few pixels of clearance) and each kind has one consistent look, so a small detector can learn the
task while sizes, contrasts and shapes still vary.
"""
from __future__ import annotations

import json
import os
import re
import time

import cv2
import numpy as np

from defectrt.data.synth import pcb, screw
from defectrt.data.synth.common import to_labels
from defectrt.errors import UserInputError
from defectrt.fileio import atomic_dir, describe_foreign, foreign_entries, is_temporary

GENERATORS = {"screw": screw, "pcb": pcb}
SCREW_NAMES = screw.NAMES
PCB_NAMES = pcb.NAMES
KINDS = {kind: module.NAMES for kind, module in GENERATORS.items()}
DEFAULT_IMGSZ = {kind: module.DEFAULT_IMGSZ for kind, module in GENERATORS.items()}
# Part of every image's random stream: bump it whenever the renderers change what a seed yields.
GENERATOR_VERSION = 1
_KIND_CODE = {"screw": 1, "pcb": 2}
_MIN_SIDE = 128


def _check_imgsz(kind, imgsz):
    if imgsz is None:
        return DEFAULT_IMGSZ[kind]
    if isinstance(imgsz, int):
        imgsz = (imgsz, imgsz)
    h, w = (int(v) for v in imgsz)
    if h < _MIN_SIDE or w < _MIN_SIDE:
        raise UserInputError("--imgsz {} {}: both sides must be at least {} pixels".format(h, w, _MIN_SIDE))
    return h, w


def generate(kind, index, seed=0, imgsz=None):
    """One synthetic image and its labels.

    Returns (image HxWx3 uint8 BGR, labels (N, 5) float64 rows [class, cx, cy, w, h] normalised
    to [0, 1]). Deterministic in (kind, index, seed, imgsz).
    """
    if kind not in KINDS:
        raise UserInputError("unknown dataset kind {!r}: choose one of {}".format(kind, ", ".join(sorted(KINDS))))
    if int(seed) < 0 or int(index) < 0:
        raise UserInputError("--seed and the image index must be non-negative integers")
    h, w = _check_imgsz(kind, imgsz)
    rng = np.random.default_rng([GENERATOR_VERSION, _KIND_CODE[kind], int(seed), int(index)])
    render = GENERATORS[kind].render
    for _attempt in range(20):  # a layout with no room for any defect is rare; draw another
        img, boxes = render(rng, h, w)
        if boxes:
            break
    return img, to_labels(boxes, h, w)


def format_labels(labels):
    """YOLO label-file text: one `cls cx cy w h` line per object, 6 decimals."""
    return "".join("{:d} {:.6f} {:.6f} {:.6f} {:.6f}\n".format(int(r[0]), r[1], r[2], r[3], r[4]) for r in labels)


def data_yaml(path, names, train="images/train", val="images/val", comment=None):
    """data.yaml text (the Ultralytics layout) written without a YAML library.

    Strings are emitted JSON-quoted, which YAML reads as double-quoted scalars, so any path or
    class name round-trips.
    """
    lines = ["# " + comment] if comment else []
    lines += [
        "path: " + json.dumps(str(path)),
        "train: " + json.dumps(train),
        "val: " + json.dumps(val),
        "nc: {:d}".format(len(names)),
        "names: [" + ", ".join(json.dumps(n) for n in names) + "]",
    ]
    return "\n".join(lines) + "\n"


# Every file write_dataset writes; anything else in a folder means the user put it there.
_OUR_FILES = re.compile(r"^(data\.yaml|synth\.json|images/(train|val)/[a-z]+_\d{6}\.(png|jpg)|labels/(train|val)/[a-z]+_\d{6}\.txt)$")


def our_dataset(folder):
    """For atomic_dir: None when `folder` may be replaced (empty, or a synthetic dataset of ours and nothing
    else), else the reason it may not."""
    if not os.listdir(folder):
        return None
    if not os.path.isfile(os.path.join(folder, "synth.json")):
        return "it is not a dataset written by `defectrt data synth` (no synth.json)"
    return describe_foreign(foreign_entries(folder, lambda rel: bool(_OUR_FILES.match(rel)) or is_temporary(rel)),
                            "a synthetic dataset")


def write_dataset(out, kind="screw", n=500, imgsz=None, seed=0, val_fraction=0.2, fmt="png", force=False,
                  progress=True):
    """Generate a dataset into folder `out` (replaced only with `force`); returns a summary dict.

    Images 0 .. n_train-1 go to train, the rest to val, n_val = round(n * val_fraction) (at least
    one when val_fraction > 0 and n > 1). The folder appears only once complete.
    """
    if kind not in KINDS:
        raise UserInputError("unknown dataset kind {!r}: choose one of {}".format(kind, ", ".join(sorted(KINDS))))
    if int(n) < 1:
        raise UserInputError("--n {}: generate at least one image".format(n))
    if not 0 <= float(val_fraction) < 1:
        raise UserInputError("--val-fraction {}: use a value in [0, 1)".format(val_fraction))
    if fmt not in ("png", "jpg"):
        raise UserInputError("--format {}: use png or jpg".format(fmt))
    if int(seed) < 0:
        raise UserInputError("--seed {}: use a non-negative integer".format(seed))
    h, w = _check_imgsz(kind, imgsz)
    n = int(n)
    n_val = int(round(n * float(val_fraction)))
    if val_fraction > 0 and n > 1:
        n_val = min(max(n_val, 1), n - 1)
    n_train = n - n_val
    names = KINDS[kind]
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1] if fmt == "png" else [cv2.IMWRITE_JPEG_QUALITY, 95]
    counts = [0] * len(names)
    gen_s = 0.0
    t0 = time.perf_counter()
    out = os.path.abspath(os.fspath(out))
    with atomic_dir(out, force=force, ours=our_dataset) as tmp:
        for split in ("train", "val"):
            os.makedirs(os.path.join(tmp, "images", split))
            os.makedirs(os.path.join(tmp, "labels", split))
        it = range(n)
        if progress:
            from tqdm import tqdm

            it = tqdm(it, desc="synth " + kind, unit="img")
        for i in it:
            split = "train" if i < n_train else "val"
            tg = time.perf_counter()
            img, labels = generate(kind, i, seed, (h, w))
            gen_s += time.perf_counter() - tg
            stem = "{}_{:06d}".format(kind, i)
            ok, buf = cv2.imencode("." + fmt, img, params)
            if not ok:
                raise RuntimeError("OpenCV could not encode " + fmt)
            with open(os.path.join(tmp, "images", split, stem + "." + fmt), "wb") as f:
                f.write(buf.tobytes())
            with open(os.path.join(tmp, "labels", split, stem + ".txt"), "w", newline="\n") as f:
                f.write(format_labels(labels))
            for c in labels[:, 0].astype(int):
                counts[c] += 1
        summary = {
            "kind": kind,
            "generator_version": GENERATOR_VERSION,
            "seed": int(seed),
            "imgsz": [h, w],
            "format": fmt,
            "train": n_train,
            "val": n_val,
            "names": list(names),
            "instances": dict(zip(names, counts)),
        }
        comment = "defectrt synthetic {} dataset, seed {}, {}x{}, generator v{}".format(kind, seed, h, w,
                                                                                    GENERATOR_VERSION)
        with open(os.path.join(tmp, "data.yaml"), "w", newline="\n") as f:
            f.write(data_yaml(out, names, comment=comment))
        with open(os.path.join(tmp, "synth.json"), "w", newline="\n") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")
    summary["path"] = out
    summary["seconds"] = time.perf_counter() - t0
    summary["ms_per_image_generate"] = 1000.0 * gen_s / n
    return summary
