"""Hostile bundles and ONNX metadata (issue 14, item 4): paths stay inside the bundle, the file hashed is
the file run, and every number that sizes memory or work is bounded, with a clear UserInputError."""
import hashlib
import json
import math
import os
import shutil
import string
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from defectrt import Detector
from defectrt.errors import UserInputError
from defectrt.runtime import bundle, limits, modelinfo
from hostile_helpers import run_bounded, set_metadata
from test_runtime_bundle import _rewrite_manifest as _edit
from test_runtime_models import draw_rect, make_bundle, rect_finder, save


def _sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture
def good(tmp_path):
    return make_bundle(str(tmp_path / "b.bundle"), rect_finder())


# -- paths ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rel", ["../outside.onnx", "ABS", "./model.onnx", "sub/../model.onnx", "model.onnx/",
                                 "sub//model.onnx", "C:\\model.onnx", "sub\\model.onnx", "", "a\0b"])
def test_manifest_paths_outside_or_unnormalised_are_refused(good, tmp_path, rel):
    outside = save(rect_finder(), tmp_path / "outside.onnx")
    rel = outside if rel == "ABS" else rel
    _edit(good, model=rel, files={rel: _sha(outside), "model.onnx": _sha(os.path.join(good, "model.onnx"))})
    with pytest.raises(UserInputError, match="the path .* (is absolute|part|normalised|backslash|non-empty)") as exc:
        Detector(good)
    assert "manifest.json" in str(exc.value)


def test_an_engine_path_outside_is_refused(good):
    _edit(good, engine={"file": "../x.engine", "tensorrt_version": "10.3"})
    with pytest.raises(UserInputError, match="'../x.engine' has an empty, '.' or '..' part"):
        bundle.read_manifest(good)


def test_a_link_that_leaves_the_bundle_is_refused(good, tmp_path):
    outside = save(rect_finder(), tmp_path / "outside.onnx")
    os.remove(os.path.join(good, "model.onnx"))
    os.symlink(outside, os.path.join(good, "model.onnx"))
    _edit(good, files={"model.onnx": _sha(outside)})
    with pytest.raises(UserInputError, match="model.onnx leaves the bundle folder"):
        Detector(good)
    (tmp_path / "elsewhere").mkdir()
    shutil.copy(outside, tmp_path / "elsewhere" / "model.onnx")
    os.symlink(str(tmp_path / "elsewhere"), os.path.join(good, "sub"))
    _edit(good, model="sub/model.onnx", files={"sub/model.onnx": _sha(outside)})
    with pytest.raises(UserInputError, match="sub/model.onnx leaves the bundle folder"):
        Detector(good)


def test_a_link_inside_the_bundle_is_fine(good):
    os.symlink("model.onnx", os.path.join(good, "alias.onnx"))
    _edit(good, model="alias.onnx", files={"alias.onnx": _sha(os.path.join(good, "model.onnx"))})
    assert len(Detector(good)(draw_rect(333, 517, 101, 57, 300, 211))) == 2


def test_the_file_hashed_is_the_file_run(good, tmp_path, monkeypatch):
    """A model swapped after verify_files (a race, or a second path to the file) is caught: the bytes
    given to ONNX Runtime are hashed again as they are read."""
    other = save(rect_finder(h=64, w=64), tmp_path / "other.onnx")
    real_verify = bundle.verify_files

    def verify_then_swap(folder, files):
        real_verify(folder, files)
        shutil.copy(other, os.path.join(folder, "model.onnx"))

    monkeypatch.setattr(bundle, "verify_files", verify_then_swap)
    with pytest.raises(UserInputError, match="model.onnx does not match its sha256"):
        Detector(good)


# -- bounds in a manifest ----------------------------------------------------------------------------

@pytest.mark.parametrize("changes,words", [
    ({"thresholds": {"conf": 1.5}}, "thresholds.conf=1.5: must be between 0 and 1"),
    ({"thresholds": {"iou": "abc"}}, "thresholds.iou='abc': expected a number"),
    ({"thresholds": {"conf": float("nan")}}, "must be a finite number"),
    ({"thresholds": {"max_det": 0}}, "max_det=0: must be between 1 and"),
    ({"thresholds": {"max_det": 10 ** 9}}, "max_det=1000000000: must be between 1 and"),
    ({"thresholds": {"max_det": 2.5}}, "expected a whole number"),
    ({"thresholds": [1]}, "`thresholds` must be an object"),
    ({"imgsz": [40000, 40000]}, "40000x40000 .* is too large"),
    ({"imgsz": "big"}, "`imgsz` 'big' is not"),
    ({"names": {"1000000000": "x"}}, "class id 1000000000 is out of range"),
    ({"names": ["n"] * 20000}, "20000 class names, more than the 10000"),
    ({"names": "scratch"}, "`names` must be an object"),
    ({"engine": [1]}, "`engine` must be an object"),
    ({"files": {"model.onnx": "not-a-hash"}}, "is not 64 hex digits"),
])
def test_manifest_numbers_are_bounded(good, changes, words):
    _edit(good, **changes)
    with pytest.raises(UserInputError, match=words) as exc:
        Detector(good)
    assert "manifest.json" in str(exc.value)


def test_a_huge_manifest_is_not_read(good):
    with open(os.path.join(good, "manifest.json"), "w") as f:
        f.write("[" * (bundle.MAX_MANIFEST_BYTES + 1))
    with pytest.raises(UserInputError, match="too large for a manifest"):
        bundle.read_manifest(good)


def test_deeply_nested_manifest_is_a_clear_error(good):
    with open(os.path.join(good, "manifest.json"), "w") as f:
        f.write("[" * 100000 + "]" * 100000)
    with pytest.raises(UserInputError, match="not valid JSON|format is None"):
        bundle.read_manifest(good)


# -- Detector / backend arguments ---------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,words", [
    ({"conf": float("nan")}, "conf=nan: must be a finite number"),
    ({"conf": 2}, "conf=2: must be between 0 and 1"),
    ({"iou": -0.1}, "iou=-0.1: must be between 0 and 1"),
    ({"max_det": 0}, "max_det=0"),
    ({"max_det": 10 ** 9}, "max_det=1000000000"),
    ({"threads": 0}, "threads=0: use 1 .."),
    ({"threads": "many"}, "threads='many': expected a number"),
    ({"imgsz": (40000, 40000)}, "imgsz 40000x40000 .* too large"),
    ({"classes": [10 ** 9]}, "class id 1000000000 is out of range"),
])
def test_detector_arguments_are_bounded(tmp_path, kwargs, words):
    model = save(rect_finder(dynamic_hw=True), tmp_path / "m.onnx")
    with pytest.raises(UserInputError, match=words):
        Detector(model, **kwargs)


def test_threads_100000_is_refused_fast_not_hung(tmp_path):
    model = save(rect_finder(), tmp_path / "m.onnx")
    proc = run_bounded("from defectrt import Detector\nfrom defectrt.errors import UserInputError\n"
                       "try:\n    Detector({!r}, threads=100000)\nexcept Exception as e:\n"
                       "    print('UserInputError' if isinstance(e, UserInputError) else type(e).__name__, e)\n".format(model), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "UserInputError threads=100000: use 1 .. {}".format(limits.max_threads()) in proc.stdout


# -- ONNX metadata and declared shapes, loaded under a memory limit -----------------------------------

def _hostile_onnx(tmp_path, name, **kw):
    model = rect_finder(**{k: v for k, v in kw.items() if k in ("h", "w", "dynamic_hw")})
    meta = kw.get("meta")
    if meta:
        set_metadata(model, **meta)
    return save(model, tmp_path / name)


@pytest.mark.parametrize("name,kw,words", [
    ("ids.onnx", {"meta": {"names": json.dumps({"1000000000": "x"})}}, "its `names` metadata: class id 1000000000"),
    ("ids_literal.onnx", {"meta": {"names": "{1000000000: 'x'}"}}, "class id 1000000000 is out of range"),
    ("imgsz_meta.onnx", {"dynamic_hw": True, "meta": {"imgsz": "[40000, 40000]"}},
     "its `imgsz` metadata 40000x40000 .* too large"),
    ("imgsz_inf.onnx", {"dynamic_hw": True, "meta": {"imgsz": "[1e400, 5]"}}, "no `imgsz` metadata"),
    ("fixed.onnx", {"h": 40000, "w": 40000}, "its fixed input 40000x40000 .* too large"),
])
def test_hostile_onnx_metadata_is_refused_within_bounds(tmp_path, name, kw, words):
    import re

    path = _hostile_onnx(tmp_path, name, **kw)
    proc = run_bounded("from defectrt import Detector\nfrom defectrt.errors import UserInputError\n"
                       "try:\n    d = Detector({!r}); d(__import__('numpy').zeros((64, 64, 3), 'uint8'))\n"
                       "except Exception as e:\n    print('UserInputError' if isinstance(e, UserInputError) else type(e).__name__, e)\n".format(path), timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("UserInputError"), proc.stdout
    assert re.search(words, proc.stdout) and path in proc.stdout, proc.stdout


def test_a_huge_declared_class_count_allocates_nothing():
    """An output shape (B, 4 + 1e9, A), as an engine may declare it (ONNX Runtime falls back to the inferred
    shape for an ONNX file), must not size a names table."""
    proc = run_bounded("from defectrt.runtime import modelinfo\n"
                       "try:\n    modelinfo.default_names({}, 10 ** 9)\n"
                       "except Exception as e:\n    print(type(e).__name__, e)\n", timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("UserInputError the model's output declares 1000000000 classes"), proc.stdout


# -- property-based: manifests and metadata -----------------------------------------------------------
# derandomize: CI runs the same examples every time (a red CI must be reproducible); run with a larger
# max_examples and derandomize=False locally to explore (3000 examples each passed on 2026-12-01).

_PATH_TEXT = st.text(alphabet="ab./\\:\0 ", max_size=12)


@settings(max_examples=500, derandomize=True)
@given(_PATH_TEXT)
def test_an_accepted_path_always_stays_inside(rel):
    if bundle.path_problem(rel) is None:
        root = os.path.abspath("/bundle")
        full = os.path.normpath(os.path.join(root, *rel.split("/")))
        assert os.path.commonpath([root, full]) == root and full != root
        assert not os.path.isabs(rel) and ".." not in rel.split("/")


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12)
_FIELDS = st.sampled_from(["model", "files", "names", "imgsz", "thresholds", "engine", "format"])
_SPECIAL = {
    "model": _PATH_TEXT | st.sampled_from(["model.onnx", "../model.onnx", "/etc/passwd"]),
    "names": _JSON | st.dictionaries(st.integers(-10, 2 ** 40).map(str), st.text(max_size=3), max_size=3),
    "imgsz": _JSON | st.lists(st.integers(-5, 10 ** 6), max_size=3),
    "thresholds": _JSON | st.fixed_dictionaries({"conf": _JSON, "iou": _JSON, "max_det": _JSON}),
    "files": _JSON | st.dictionaries(_PATH_TEXT, st.sampled_from(["0" * 64, "x"]), max_size=3),
}


@settings(max_examples=150, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_FIELDS, st.none(), min_size=1).flatmap(
    lambda keys: st.fixed_dictionaries({k: _SPECIAL.get(k, _JSON) for k in keys})))
def test_any_manifest_is_read_or_refused_clearly(changes):
    folder = tempfile.mkdtemp()
    try:
        base = make_bundle(os.path.join(folder, "b"), rect_finder(h=32, w=32))
        with open(os.path.join(base, "manifest.json")) as f:
            manifest = json.load(f)
        manifest.update(changes)
        with open(os.path.join(base, "manifest.json"), "w") as f:
            json.dump(manifest, f)
        try:
            got = bundle.Manifest.read(base)  # typed: a record of the wrong JSON type is refused clearly too
            t = got.stored_thresholds()
        except UserInputError:
            return
        root = os.path.realpath(base)
        for rel in list(got.files) + [got.model]:
            full = bundle.resolve_file(base, rel)
            assert os.path.commonpath([root, full]) == root
        hw = got.imgsz
        assert hw is None or hw[0] * hw[1] <= limits.MAX_IMGSZ_PIXELS
        assert all(0 <= t[k] <= 1 for k in ("conf", "iou") if k in t)
        assert 1 <= t.get("max_det", 1) <= limits.MAX_DET
    finally:
        shutil.rmtree(folder)


_META_TEXT = _JSON.map(json.dumps) | st.text(alphabet=string.printable, max_size=40) | st.sampled_from(
    ["{1000000000: 'a'}", "[" * 5000, "{0: 'a', -1: 'b'}", "[1e400, 1e400]", "[40000, 40000]", "1e9", "[8192, 8192]"])


@settings(max_examples=300, derandomize=True, deadline=None)
@given(_META_TEXT, _META_TEXT)
def test_any_metadata_text_parses_bounded_or_is_refused(names, imgsz):
    try:
        parsed = modelinfo.parse_names(names, "m.onnx")
        assert len(parsed) <= limits.MAX_CLASSES and all(0 <= k < limits.MAX_CLASSES for k in parsed)
    except UserInputError as exc:
        assert "m.onnx" in str(exc)
    try:
        hw = modelinfo.resolve_imgsz("m.onnx", ["b", 3, "h", "w"], imgsz)
        assert 1 <= hw[0] <= limits.MAX_IMGSZ_SIDE and hw[0] * hw[1] <= limits.MAX_IMGSZ_PIXELS
    except UserInputError as exc:
        assert "m.onnx" in str(exc)


@settings(max_examples=25, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_META_TEXT, _META_TEXT)
def test_any_onnx_metadata_loads_bounded_or_is_refused(names, imgsz):
    folder = tempfile.mkdtemp()
    try:
        path = save(set_metadata(rect_finder(dynamic_hw=True), names=names, imgsz=imgsz),
                    os.path.join(folder, "m.onnx"))
        try:
            det = Detector(path, threads=1)
        except UserInputError as exc:
            assert path in str(exc)
            return
        assert len(det.names) <= limits.MAX_CLASSES
        assert det.imgsz[0] * det.imgsz[1] <= limits.MAX_IMGSZ_PIXELS and not math.isinf(det.imgsz[0])
    finally:
        shutil.rmtree(folder)


def test_the_writer_refuses_links_and_writes_only_paths_the_reader_accepts(tmp_path):
    from defectrt.export.bundle import write_manifest

    folder = tmp_path / "b"
    (folder / "golden").mkdir(parents=True)
    save(rect_finder(), folder / "model.onnx")
    (folder / "golden" / "inputs.json").write_text("[]")
    (folder / ".tmp-1-leftover").write_text("skipped")
    manifest = write_manifest(str(folder), {"format": "defectrt-bundle", "model": "model.onnx"})
    assert sorted(manifest.files) == ["golden/inputs.json", "model.onnx"]
    assert all(bundle.path_problem(rel) is None for rel in manifest.files)
    assert bundle.read_manifest(str(folder))["files"] == manifest.files
    os.symlink(str(tmp_path), str(folder / "golden" / "up"))
    with pytest.raises(UserInputError, match="golden/up is a symbolic link"):
        write_manifest(str(folder), {"format": "defectrt-bundle", "model": "model.onnx"})
