"""Hostile images, videos and model outputs (issue 14, item 6): line-scan shapes, 16-bit, 4-channel and
gray images give detections; truncated files and videos are reported with counts; only regular files are
opened (a FIFO named .png would block forever); NaN / Inf outputs are dropped."""
import json
import os
import struct
import zlib

import cv2
import numpy as np
import pytest

from defectrt.runtime import media
from defectrt.runtime.postprocess import postprocess
from defectrt.runtime.preprocess import letterbox_info
from hostile_helpers import run_bounded
from test_runtime_cli import model  # noqa: F401  (fixture: the rect_finder ONNX file)
from test_runtime_detector import det, rf_path  # noqa: F401  (fixtures: a Detector on it)
from test_runtime_models import draw_rect

RECT = (101, 57, 300, 211)


@pytest.mark.parametrize("shape", [(1, 2000), (20000, 1), (3, 5000), (1, 1)])
def test_line_scan_shapes_give_detections_inside_the_image(det, shape):
    img = np.full(shape + (3,), 255, np.uint8)
    info = letterbox_info(shape, det.imgsz)
    assert min(info.unpad_shape) >= 1
    d = det(img)
    # The whole image is bright: its box comes first (a thin box's shifted twin may survive NMS too).
    assert d.image_shape == shape and len(d) >= 2 and d.names[0] == "scratch"
    np.testing.assert_allclose(d.boxes[0], [0, 0, shape[1], shape[0]], atol=max(shape) / 300.0 + 1)
    assert (d.boxes[:, 0::2] <= shape[1]).all() and (d.boxes[:, 1::2] <= shape[0]).all() and (d.boxes >= 0).all()


def test_16bit_4channel_and_gray_arrays_match_their_8bit_bgr(det):
    bgr = draw_rect(333, 517, *RECT)
    ref = det(bgr)
    assert len(ref) == 2
    variants = {
        "16-bit": (bgr.astype(np.uint16) << 8) | 0x7F,  # the high byte is the 8-bit image, as cv2.imread reads it
        "BGRA": np.dstack([bgr, np.full(bgr.shape[:2], 7, np.uint8)]),
        "gray": bgr[:, :, 0].copy(),
        "gray (H, W, 1)": bgr[:, :, :1].copy(),
    }
    for name, img in variants.items():
        got = det(img)
        assert got.names == ref.names, name
        np.testing.assert_allclose(got.boxes, ref.boxes, atol=1e-3, err_msg=name)


def _png_header_only(w, h):
    """A tiny PNG whose header claims w x h pixels (a decompression bomb's header)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def _hostile_folder(folder):
    os.makedirs(folder)
    bgr = draw_rect(333, 517, *RECT)
    cv2.imwrite(os.path.join(folder, "a.png"), bgr)
    cv2.imwrite(os.path.join(folder, "b16.png"), bgr.astype(np.uint16) * 257)
    cv2.imwrite(os.path.join(folder, "c4.png"), np.dstack([bgr, np.full(bgr.shape[:2], 200, np.uint8)]))
    cv2.imwrite(os.path.join(folder, "d_gray.png"), bgr[:, :, 0])
    cv2.imwrite(os.path.join(folder, "e_line.png"), np.full((1, 2000), 255, np.uint8))
    cv2.imwrite(os.path.join(folder, "f_line.png"), np.full((20000, 1), 255, np.uint8))
    for name, ext in (("t_trunc.png", ".png"), ("u_trunc.jpg", ".jpg")):
        ok, buf = cv2.imencode(ext, bgr)
        with open(os.path.join(folder, name), "wb") as f:
            f.write(buf.tobytes()[: len(buf) * 2 // 3])
    with open(os.path.join(folder, "v_bomb.png"), "wb") as f:
        f.write(_png_header_only(100000, 100000))
    os.mkfifo(os.path.join(folder, "w_fifo.png"))  # opening it for reading would block forever
    return folder


def test_detect_on_a_hostile_folder_reports_and_counts_what_it_skips(model, tmp_path):
    folder = _hostile_folder(str(tmp_path / "imgs"))
    proc = run_bounded("import sys\nfrom defectrt.cli import main\nsys.exit(main(['detect', {!r}, '-m', {!r}, "
                       "'--json', '--threads', '1', '--save-dir', {!r}]))".format(folder, model, str(tmp_path / "out")),
                       timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = {os.path.basename(r["source"]): r for r in map(json.loads, proc.stdout.splitlines())}
    assert sorted(records) == ["a.png", "b16.png", "c4.png", "d_gray.png", "e_line.png", "f_line.png"]
    for name in ("b16.png", "c4.png", "d_gray.png"):
        assert records[name]["detections"] == records["a.png"]["detections"], name
    assert all(len(records[n]["detections"]) >= 2 for n in ("e_line.png", "f_line.png"))
    assert records["f_line.png"]["image_shape"] == [20000, 1]
    err = proc.stderr
    assert "w_fifo.png: not a regular file" in err
    assert "u_trunc.jpg: truncated" in err and "t_trunc.png: truncated" in err
    assert "v_bomb.png: its header claims 100000x100000 pixels" in err
    assert "warning: 4 of 10 image file(s) skipped (1 not a regular file; 1 too large; 2 truncated)" in err


def test_a_fifo_given_as_the_source_is_refused_without_opening_it(model, tmp_path):
    fifo = str(tmp_path / "cam.png")
    os.mkfifo(fifo)
    proc = run_bounded("import sys\nfrom defectrt.cli import main\nsys.exit(main(['detect', {!r}, '-m', {!r}]))"
                       .format(fifo, model), timeout=60)
    assert proc.returncode == 1 and "not a regular file" in proc.stderr
    with pytest.raises(media.ImageProblem, match="not a regular file"):
        media.read_image(fifo)


def test_a_truncated_video_warns_with_counts(model, tmp_path):
    from defectrt.cli import main

    path = str(tmp_path / "line.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 64))
    for i in range(30):
        writer.write(np.full((64, 96, 3), i * 8, np.uint8))
    writer.release()
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    proc = run_bounded("import sys\nfrom defectrt.cli import main\nsys.exit(main(['detect', {!r}, '-m', {!r}, "
                       "'--json', '--no-save']))".format(path, model), timeout=60)
    n = len(proc.stdout.splitlines())
    assert proc.returncode == 0 and 0 < n < 30, proc.stderr[-2000:]
    assert "line.avi ended after {} of its 30 frames".format(n) in proc.stderr
    assert main  # imported in-process as well: the CLI module must import without cv2 side effects


def test_truncation_markers():
    ok, jpg = cv2.imencode(".jpg", draw_rect(40, 60, 5, 5, 20, 20))
    ok, png = cv2.imencode(".png", draw_rect(40, 60, 5, 5, 20, 20))
    jpg, png = jpg.tobytes(), png.tobytes()
    assert not media.is_truncated(jpg) and not media.is_truncated(png)
    assert not media.is_truncated(jpg + b"\0\0\n")  # padding after the end marker is fine
    assert media.is_truncated(jpg[:-10]) and media.is_truncated(png[:-20])
    assert media.header_size(jpg) == (40, 60) and media.header_size(png) == (40, 60)


# -- non-finite model outputs ------------------------------------------------------------------------

def _info():
    return letterbox_info((640, 640), (640, 640))


def test_non_finite_raw_outputs_are_dropped():
    pred = np.zeros((1, 6, 5), np.float32)
    pred[0, :4, :] = [[100], [100], [50], [50]]
    pred[0, 4, :] = [0.9, np.nan, 0.8, np.inf, 0.7]
    pred[0, 0, 2] = np.nan  # a NaN box with a high score
    pred[0, 4:, 4] = 0.0
    pred[0, 5, 4] = 0.6
    pred[0, 2, 4] = np.inf
    original = pred.copy()
    (d,) = postprocess(pred, [_info()], conf=0.25, iou=0.45)
    assert d.scores.tolist() == pytest.approx([0.9]) and np.isfinite(d.boxes).all()
    np.testing.assert_array_equal(pred, original)  # the backend's buffer is not written to
    (d,) = postprocess(pred, [_info()], conf=0.0, iou=0.45)
    assert np.isfinite(d.scores).all() and np.isfinite(d.boxes).all() and 0.9 in d.scores


def test_non_finite_rows_and_efficient_nms_outputs_are_dropped():
    rows = np.array([[0, 10, 10, 50, 50, 0.9, 0], [0, np.nan, 10, 50, 50, 0.95, 0], [0, 10, 10, 50, 50, np.inf, 1],
                     [np.nan, 10, 10, 50, 50, 0.8, 0]], np.float32)
    (d,) = postprocess({"detections": rows}, [_info()], conf=0.25)
    assert d.scores.tolist() == pytest.approx([0.9])
    eff = {"num_dets": np.array([[3]]), "det_boxes": np.array([[[10, 10, 50, 50], [np.inf, 0, 1, 1], [5, 5, 9, 9]]],
                                                                 np.float32),
           "det_scores": np.array([[0.9, 0.99, np.nan]], np.float32), "det_classes": np.array([[0, 1, 0]], np.int32)}
    (d,) = postprocess(eff, [_info()], conf=0.25)
    assert d.scores.tolist() == pytest.approx([0.9]) and d.class_ids.tolist() == [0]


def test_a_dataset_image_that_is_a_fifo_or_truncated_is_a_clear_error(tmp_path):
    """Validation must not hang on a FIFO nor score a half-grey truncated image."""
    from defectrt.data.dataset import read_image
    from defectrt.errors import UserInputError

    fifo = str(tmp_path / "f.png")
    os.mkfifo(fifo)
    ok, buf = cv2.imencode(".jpg", draw_rect(80, 90, 5, 5, 40, 40))
    cut = tmp_path / "t.jpg"
    cut.write_bytes(buf.tobytes()[:-200])
    with pytest.raises(UserInputError, match="f.png: not a readable image .not a regular file"):
        read_image(fifo)
    with pytest.raises(UserInputError, match="t.jpg: not a readable image .truncated"):
        read_image(str(cut))
