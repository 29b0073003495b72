import os

import cv2
import numpy as np
import pytest

from defectrt.data import dataset as dsmod
from defectrt.data.dataset import Dataset, label_path, load_dataset, parse_yaml, read_labels
from defectrt.errors import UserInputError


def _make(root, split="val", labels=None, n_images=2, yaml=None, shape=(40, 60)):
    """images/<split>/im{i}.png and labels/<split>/im{i}.txt from {i: text}."""
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    for i in range(n_images):
        cv2.imwrite(str(root / "images" / split / "im{}.png".format(i)), np.full(shape + (3,), 100, np.uint8))
    for i, text in (labels or {}).items():
        (root / "labels" / split / "im{}.txt".format(i)).write_text(text)
    if yaml is not None:
        (root / "data.yaml").write_text(yaml)
    return root


def test_reads_yaml_dataset_and_denormalises(tmp_path):
    root = _make(tmp_path, labels={0: "1 0.5 0.5 0.5 0.25\n\n0 0.1 0.2 0.1 0.2\n"},
                 yaml="path: .\nval: images/val\nnames:\n  0: scratch\n  1: dent\n")
    ds = load_dataset(str(root), "val")
    assert ds.names == ["scratch", "dent"] and not ds.names_inferred
    assert [os.path.basename(it.image) for it in ds] == ["im0.png", "im1.png"]
    assert ds.items[0].labels.shape == (2, 5) and ds.items[1].labels.shape == (0, 5)  # no label file: no objects
    assert ds.instances().tolist() == [1, 1]
    xyxy = Dataset.boxes_xyxy(ds.items[0].labels, (40, 60))
    assert np.allclose(xyxy[0], [15, 15, 45, 25])


def test_every_label_problem_is_reported_with_file_and_line(tmp_path):
    bad = ("0 0.5 0.5 0.2 0.2\n"      # 1 fine
           "0 0.5 0.5 0.2\n"          # 2 column count
           "7 0.5 0.5 0.2 0.2\n"      # 3 class out of range
           "1.5 0.5 0.5 0.2 0.2\n"    # 4 non-integer class
           "0 1.5 0.5 0.2 0.2\n"      # 5 outside [0, 1]
           "0 0.5 0.5 0 0.2\n"        # 6 zero width
           "0 0.5 abc 0.2 0.2\n"      # 7 not a number
           "0 0.1 0.1 0.2 0.1 0.3 0.3 0.1 0.3\n")  # 8 polygon
    root = _make(tmp_path, labels={0: bad, 1: "-1 0.5 0.5 0.1 0.1\n"}, yaml="val: images/val\nnames: [a, b]\n")
    with pytest.raises(UserInputError) as e:
        load_dataset(str(root / "data.yaml"))
    msg = str(e.value)
    f0 = str(root / "labels" / "val" / "im0.txt")
    f1 = str(root / "labels" / "val" / "im1.txt")
    assert msg.startswith("8 problems")
    for line, words in ((2, "expected 5 values"), (3, "out of range"), (4, "non-negative integer"), (5, "[0, 1]"),
                        (6, "positive"), (7, "not a number"), (8, "polygon")):
        assert "{}:{}: ".format(f0, line) in msg and words in msg
    assert "{}:1: ".format(f1) in msg
    assert "{}:1:".format(f0) not in msg


def test_problem_list_is_capped(tmp_path):
    root = _make(tmp_path, labels={0: "0 2 2 2 2\n" * 30}, yaml="val: images/val\nnames: [a]\n")
    with pytest.raises(UserInputError) as e:
        load_dataset(str(root))
    msg = str(e.value)
    assert msg.startswith("30 problems") and "... and {} more".format(30 - dsmod.MAX_REPORTED) in msg
    assert msg.count("must be normalised") == dsmod.MAX_REPORTED


def test_folder_without_images_and_missing_split(tmp_path):
    (tmp_path / "images" / "val").mkdir(parents=True)
    with pytest.raises(UserInputError, match="has no images"):
        load_dataset(str(tmp_path), "val")
    with pytest.raises(UserInputError, match="no images/train folder"):
        load_dataset(str(tmp_path), "train")
    (tmp_path / "data.yaml").write_text("train: images/train\nnames: [a]\n")
    with pytest.raises(UserInputError, match="no `val` split; it has: train"):
        load_dataset(str(tmp_path), "val")
    with pytest.raises(UserInputError, match="no such dataset"):
        load_dataset(str(tmp_path / "nope"))


def test_folder_without_yaml_infers_or_reads_names(tmp_path):
    root = _make(tmp_path, labels={0: "2 0.5 0.5 0.1 0.1\n"})
    ds = load_dataset(str(root))
    assert ds.names == ["0", "1", "2"] and ds.names_inferred
    (root / "classes.txt").write_text("a\nb\nc\n")
    ds = load_dataset(str(root))
    assert ds.names == ["a", "b", "c"] and not ds.names_inferred
    (root / "classes.txt").write_text("a\nb\n")
    with pytest.raises(UserInputError, match="out of range"):
        load_dataset(str(root))


def test_moved_dataset_and_txt_lists(tmp_path):
    root = _make(tmp_path / "moved", n_images=3, labels={2: "0 0.5 0.5 0.2 0.2\n"},
                 yaml='path: "/no/longer/here"\nval: val.txt\nnames: {0: part}\n')
    (root / "val.txt").write_text("./images/val/im2.png\n# comment\nimages/val/im0.png\n")
    ds = load_dataset(str(root / "data.yaml"))
    assert [os.path.basename(it.image) for it in ds] == ["im2.png", "im0.png"]
    assert len(ds.items[0].labels) == 1
    (root / "val.txt").write_text("images/val/missing.png\n")
    with pytest.raises(UserInputError, match="missing.png: listed image does not exist"):
        load_dataset(str(root / "data.yaml"))


def test_names_and_nc_must_agree(tmp_path):
    root = _make(tmp_path, yaml="val: images/val\nnc: 3\nnames: [a, b]\n")
    with pytest.raises(UserInputError, match="nc is 3 but `names` lists 2"):
        load_dataset(str(root))


def test_unreadable_image_named(tmp_path):
    root = _make(tmp_path, n_images=1, yaml="val: images/val\nnames: [a]\n")
    (root / "images" / "val" / "im0.png").write_bytes(b"not a png")
    ds = load_dataset(str(root))
    with pytest.raises(UserInputError, match="im0.png: not a readable image"):
        list(ds.images())


def test_label_path_uses_the_last_images_folder():
    p = os.path.join("data", "images", "x", "images", "val", "a.b.jpg")
    assert label_path(p) == os.path.join("data", "images", "x", "labels", "val", "a.b.txt")
    assert label_path(os.path.join("flat", "a.png")) == os.path.join("flat", "a.txt")


def test_yaml_is_read_with_pyyaml_and_errors_name_file_and_line(tmp_path):
    d = parse_yaml("# c\npath: ../d  # comment\ntrain: [a, 'b c']\nnc: 2\nnames:\n  - x\n  - 'y # z'\n"
                   "flag: true\nempty:\n")
    assert d == {"path": "../d", "train": ["a", "b c"], "nc": 2, "names": ["x", "y # z"], "flag": True,
                 "empty": None}
    assert parse_yaml("names:\n  0: {en: scratch}\n") == {"names": {0: {"en": "scratch"}}}  # nested blocks too
    with pytest.raises(UserInputError, match=r"f\.yaml:\d+: not valid YAML"):
        parse_yaml("a: 1\nnames: [a, b\n", "f.yaml")
    with pytest.raises(UserInputError, match=r"f\.yaml:3: not valid YAML"):
        parse_yaml("names:\n  - a\n  1: b\n", "f.yaml")
    with pytest.raises(UserInputError, match="f.yaml: expected a mapping"):
        parse_yaml("- a\n- b\n", "f.yaml")
    with pytest.raises(UserInputError, match="not valid YAML"):  # safe_load: no Python objects from a data.yaml
        parse_yaml("x: !!python/object/apply:os.system ['true']\n", "f.yaml")


def test_read_labels_missing_file_means_no_objects(tmp_path):
    labels, problems = read_labels(str(tmp_path / "none.txt"), nc=2)
    assert labels.shape == (0, 5) and problems == []


def test_data_package_never_imports_torch():
    import subprocess
    import sys

    code = ("import sys, defectrt.data.synth, defectrt.data.dataset, defectrt.data.metrics, defectrt.data.val; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
