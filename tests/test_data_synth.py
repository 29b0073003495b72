import os

import numpy as np
import pytest

from box_helpers import labels_xyxy
from defectrt.data import synth
from defectrt.data.dataset import load_dataset, read_labels
from defectrt.errors import OutputExistsError, UserInputError


@pytest.mark.parametrize("kind", ["screw", "pcb"])
def test_generate_is_deterministic_and_seed_dependent(kind):
    a_img, a_lab = synth.generate(kind, 3, seed=11)
    b_img, b_lab = synth.generate(kind, 3, seed=11)
    assert np.array_equal(a_img, b_img)
    assert synth.format_labels(a_lab) == synth.format_labels(b_lab)
    c_img, c_lab = synth.generate(kind, 3, seed=12)
    assert not np.array_equal(a_img, c_img)
    assert synth.format_labels(a_lab) != synth.format_labels(c_lab)
    # An image does not depend on which images were generated before it.
    synth.generate(kind, 0, seed=11)
    d_img, _ = synth.generate(kind, 3, seed=11)
    assert np.array_equal(a_img, d_img)


@pytest.mark.parametrize("kind,max_side", [("screw", 0.35), ("pcb", 0.1)])
def test_labels_valid_small_inside_and_disjoint(kind, max_side):
    names = synth.KINDS[kind]
    h, w = synth.DEFAULT_IMGSZ[kind]
    seen = set()
    for i in range(24):
        img, lab = synth.generate(kind, i, seed=5)
        assert img.shape == (h, w, 3) and img.dtype == np.uint8
        assert 1 <= len(lab) <= 4
        assert np.all(lab[:, 0] == np.round(lab[:, 0])) and lab[:, 0].min() >= 0 and lab[:, 0].max() < len(names)
        assert np.all(lab[:, 1:] >= 0) and np.all(lab[:, 1:] <= 1)
        box = labels_xyxy(lab, h, w)
        assert np.all(box[:, :2] >= -1e-6) and box[:, 2].max() <= w + 1e-6 and box[:, 3].max() <= h + 1e-6
        # Small, yet never a degenerate sliver.
        assert np.all(lab[:, 3:] <= max_side), lab
        assert np.all(box[:, 2] - box[:, 0] >= 3) and np.all(box[:, 3] - box[:, 1] >= 3)
        for a in range(len(box)):
            for b in range(a + 1, len(box)):
                ix = min(box[a, 2], box[b, 2]) - max(box[a, 0], box[b, 0])
                iy = min(box[a, 3], box[b, 3]) - max(box[a, 1], box[b, 1])
                assert ix <= 0 or iy <= 0, "defects overlap in image {}".format(i)
        seen.update(int(c) for c in lab[:, 0])
    assert seen == set(range(len(names))), "every defect kind appears"


def test_screw_defects_change_the_pixels_in_their_box():
    # The box must sit on the defect: a coating anomaly is strongly hued, the metal is near grey.
    found = 0
    for i in range(24):
        img, lab = synth.generate("screw", i, seed=2)
        h, w = img.shape[:2]
        for row, (x1, y1, x2, y2) in zip(lab, labels_xyxy(lab, h, w)):
            if row[0] != 2:
                continue
            x1, y1, x2, y2 = int(round(x1)), int(round(y1)), int(round(x2)), int(round(y2))
            patch = img[y1:y2, x1:x2].astype(np.float32)
            chroma = patch.max(axis=2) - patch.min(axis=2)
            ring = img[max(0, y1 - 12):y2 + 12, max(0, x1 - 12):x2 + 12].astype(np.float32)
            ring_chroma = ring.max(axis=2) - ring.min(axis=2)
            # The box holds the most saturated pixels of its neighbourhood.
            assert np.percentile(chroma, 90) >= np.percentile(ring_chroma, 90) - 1e-3
            assert np.percentile(chroma, 90) > 30
            found += 1
    assert found >= 4


def test_write_dataset_layout_reproducible_and_readable(tmp_path):
    a = synth.write_dataset(tmp_path / "a", kind="pcb", n=5, imgsz=(192, 256), seed=4, val_fraction=0.4,
                            progress=False)
    synth.write_dataset(tmp_path / "b", kind="pcb", n=5, imgsz=(192, 256), seed=4, val_fraction=0.4, progress=False)
    assert (a["train"], a["val"]) == (3, 2)
    for split, count in (("train", 3), ("val", 2)):
        la = sorted(os.listdir(tmp_path / "a" / "labels" / split))
        assert len(la) == count and len(os.listdir(tmp_path / "a" / "images" / split)) == count
        for f in la:
            assert (tmp_path / "a" / "labels" / split / f).read_bytes() == (tmp_path / "b" / "labels" / split / f).read_bytes()
            _, problems = read_labels(str(tmp_path / "a" / "labels" / split / f), nc=6)
            assert problems == []
    ds = load_dataset(str(tmp_path / "a" / "data.yaml"), "val")
    assert ds.names == list(synth.PCB_NAMES) and len(ds) == 2
    assert sum(len(it.labels) for it in ds) == ds.instances().sum() > 0
    item, img = next(ds.images())
    assert img.shape == (192, 256, 3)


def test_write_dataset_refuses_to_overwrite_and_validates(tmp_path):
    out = tmp_path / "ds"
    synth.write_dataset(out, kind="screw", n=2, imgsz=(160, 224), progress=False, fmt="jpg")
    assert os.listdir(out / "images" / "train")[0].endswith(".jpg")
    with pytest.raises(OutputExistsError):
        synth.write_dataset(out, kind="screw", n=2, imgsz=(160, 224), progress=False)
    synth.write_dataset(out, kind="screw", n=3, imgsz=(160, 224), progress=False, force=True)
    assert len(os.listdir(out / "labels" / "train")) + len(os.listdir(out / "labels" / "val")) == 3
    for bad in (dict(kind="wood"), dict(n=0), dict(val_fraction=1.0), dict(imgsz=(64, 64)), dict(seed=-1)):
        kw = dict(kind="screw", n=2, progress=False)
        kw.update(bad)
        with pytest.raises(UserInputError):
            synth.write_dataset(tmp_path / "x", **kw)
    assert not (tmp_path / "x").exists()


def test_data_yaml_round_trips_awkward_strings(tmp_path):
    from defectrt.data.dataset import parse_yaml

    text = synth.data_yaml('/data/a "b" #c', ["sc: ratch", "it's"])
    d = parse_yaml(text)
    assert d["path"] == '/data/a "b" #c' and d["names"] == ["sc: ratch", "it's"] and d["nc"] == 2


def test_one_painter_per_defect_class_in_class_id_order():
    from defectrt.data.synth import pcb, screw

    assert [p.__name__ for p in pcb.PAINTERS] == ["paint_" + n for n in pcb.NAMES]
    assert (screw.SCRATCH, screw.DENT, screw.COATING, screw.UNPROCESSED) == tuple(
        screw.NAMES.index(n) for n in ("scratch", "dent", "coating", "unprocessed"))
    assert synth.KINDS == {"screw": screw.NAMES, "pcb": pcb.NAMES}
