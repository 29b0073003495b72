"""`defectrt detect`: folders with a corrupt image, videos, --json, --force."""
import json
import os

import cv2
import numpy as np
import pytest

from defectrt.cli import main
from test_runtime_models import draw_rect, rect_finder, save


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return save(rect_finder(), tmp_path_factory.mktemp("m") / "rf.onnx")


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    cv2.imwrite(str(d / "a.png"), draw_rect(333, 517, 101, 57, 300, 211))
    cv2.imwrite(str(d / "c.jpg"), draw_rect(200, 120, 10, 20, 60, 150))
    (d / "b.jpg").write_bytes(b"\xff\xd8 this is not really a jpeg")
    (d / "notes.txt").write_text("ignored")
    return d


def test_folder_with_a_corrupt_image_reports_it_and_processes_the_rest(model, folder, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["detect", str(folder), "--model", model, "--save-dir", str(out), "--json", "--threads", "1"])
    captured = capsys.readouterr()
    assert rc == 0
    assert "b.jpg" in captured.err and "skipping" in captured.err
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert [os.path.basename(r["source"]) for r in lines] == ["a.png", "c.jpg"]
    first = lines[0]["detections"]
    assert [d["name"] for d in first] == ["scratch", "dent"]
    np.testing.assert_allclose(first[0]["box"], [101, 57, 300, 211], atol=1.0)
    assert lines[1]["image_shape"] == [200, 120]
    saved = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert saved == lines
    assert sorted(os.listdir(out)) == [".defectrt-run.json", "a.png", "c.jpg", "results.jsonl"]  # the marker: --force may replace these
    annotated = cv2.imread(str(out / "a.png"))
    assert annotated.shape == (333, 517, 3) and not np.array_equal(annotated, draw_rect(333, 517, 101, 57, 300, 211))


def test_existing_outputs_need_force(model, folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["detect", str(folder), "-m", model, "--save-dir", str(out)]) == 0
    before = (out / "results.jsonl").read_text()
    capsys.readouterr()
    assert main(["detect", str(folder), "-m", model, "--save-dir", str(out), "--conf", "0.8"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert (out / "results.jsonl").read_text() == before
    assert main(["detect", str(folder), "-m", model, "--save-dir", str(out), "--conf", "0.8", "--force"]) == 0
    after = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [len(r["detections"]) for r in after] == [1, 1]  # dent 0.7 dropped by --conf 0.8


def test_single_image_prints_a_summary_without_json(model, folder, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["detect", str(folder / "a.png"), "-m", model]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "a.png" in out and "1 dent" in out and "1 scratch" in out
    run = tmp_path / "runs" / "detect" / "exp"  # issue 19: saved by default into the next free run folder
    assert "1 images, 1 dent, 1 scratch" in captured.err and str(run) in captured.err
    assert sorted(os.listdir(run)) == [".defectrt-run.json", "a.png", "results.jsonl"]
    assert json.loads((run / "results.jsonl").read_text())["source"].endswith("a.png")


def test_default_run_folders_never_overwrite_and_no_save_writes_nothing(model, folder, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["detect", str(folder), "-m", model]) == 0
    assert main(["detect", str(folder / "c.jpg"), "-m", model]) == 0
    runs = tmp_path / "runs" / "detect"
    assert sorted(os.listdir(runs)) == ["exp", "exp2"]
    assert sorted(os.listdir(runs / "exp")) == [".defectrt-run.json", "a.png", "c.jpg", "results.jsonl"]
    assert sorted(os.listdir(runs / "exp2")) == [".defectrt-run.json", "c.jpg", "results.jsonl"]
    assert main(["detect", str(folder), "-m", model, "--no-save", "--json"]) == 0
    assert sorted(os.listdir(runs)) == ["exp", "exp2"]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"nope")
    capsys.readouterr()
    assert main(["detect", str(bad), "-m", model]) == 1  # a failed run leaves no empty exp3 behind
    assert "no image could be read" in capsys.readouterr().err
    assert sorted(os.listdir(runs)) == ["exp", "exp2"]
    assert main(["detect", str(folder), "-m", model, "--no-save", "--save-dir", "x"]) == 1


def test_class_colours_are_distinct_and_stable():
    from defectrt.viz import class_color

    colours = [class_color(i) for i in range(256)]
    assert len(set(colours)) == 256 and colours == [class_color(i) for i in range(256)]
    assert all(0 <= c <= 255 for bgr in colours for c in bgr)
    near = min(sum(abs(a - b) for a, b in zip(colours[i], colours[i + 1])) for i in range(255))
    assert near > 60  # neighbouring class ids are told apart at a glance


def _write_video(path, n=5):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (160, 96))
    assert writer.isOpened()
    for i in range(n):
        writer.write(draw_rect(96, 160, 10 + 20 * i, 20, 40 + 20 * i, 70))
    writer.release()


def test_video_gives_one_result_per_frame_and_an_annotated_mp4(model, tmp_path, capsys):
    video = tmp_path / "line.mp4"
    _write_video(video)
    out = tmp_path / "out"
    assert main(["detect", str(video), "-m", model, "--save-dir", str(out), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["frame"] for r in lines] == [0, 1, 2, 3, 4]
    xs = [r["detections"][0]["box"][0] for r in lines]
    np.testing.assert_allclose(xs, [10, 30, 50, 70, 90], atol=2.5)  # mp4 compression blurs edges a little
    cap = cv2.VideoCapture(str(out / "line.mp4"))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    cap.release()


def test_unreadable_video_and_missing_source_are_clear_errors(model, tmp_path, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 100)
    assert main(["detect", str(bad), "-m", model]) == 1
    err = capsys.readouterr().err
    assert "broken.mp4" in err and "cannot open" in err
    assert main(["detect", str(tmp_path / "nothing.png"), "-m", model]) == 1
    assert "no such file" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["detect", str(empty), "-m", model]) == 1
    assert "no images" in capsys.readouterr().err


def test_a_folder_of_only_corrupt_images_fails(model, tmp_path, capsys):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "x.png").write_bytes(b"nope")
    assert main(["detect", str(d), "-m", model, "--save-dir", str(tmp_path / "out")]) == 1
    assert "no image could be read" in capsys.readouterr().err
    assert not (tmp_path / "out" / "results.jsonl").exists()  # a failed run leaves no empty results behind


class FakeCamera(object):
    """cv2.VideoCapture stand-in for a camera index: only index 0 opens; reports no FPS or frame count
    (as USB cameras often do); `read` yields `frames`, then ends with `end` (False: unplugged, or an
    exception class such as KeyboardInterrupt: the operator stops the run)."""

    instances = []

    def __init__(self, index, frames, end):
        self.index, self.frames, self.end, self.released = index, list(frames), end, False
        FakeCamera.instances.append(self)

    def isOpened(self):
        return self.index == 0 and not self.released

    def get(self, prop):
        return 0.0 if prop == cv2.CAP_PROP_FPS else -1.0

    def read(self):
        if self.frames:
            return True, self.frames.pop(0)
        if self.end is False:
            return False, None
        raise self.end()

    def release(self):
        self.released = True


@pytest.mark.parametrize("end", [False, KeyboardInterrupt])
def test_camera_index_streams_until_it_ends_or_is_stopped(model, tmp_path, capsys, monkeypatch, end):
    frames = [draw_rect(96, 160, 10 + 20 * i, 20, 40 + 20 * i, 70) for i in range(4)]
    FakeCamera.instances = []
    monkeypatch.setattr(cv2, "VideoCapture", lambda index: FakeCamera(index, frames, end))
    out = tmp_path / "out"
    assert main(["detect", "0", "-m", model, "--save-dir", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    assert [cam.index for cam in FakeCamera.instances] == [0] and FakeCamera.instances[0].released
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["frame"] for r in lines] == [0, 1, 2, 3] and {r["source"] for r in lines} == {"0"}
    np.testing.assert_allclose([r["detections"][0]["box"][0] for r in lines], [10, 30, 50, 70], atol=1.0)
    saved = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert saved == lines
    monkeypatch.undo()  # the real VideoCapture reads the annotated video back
    video = cv2.VideoCapture(str(out / "camera0.mp4"))
    assert video.isOpened() and int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    video.release()
    if end is KeyboardInterrupt:
        assert "stopped; keeping the 4 frames processed" in captured.err


def test_a_camera_that_does_not_open_is_a_clear_error(model, capsys, monkeypatch):
    monkeypatch.setattr(cv2, "VideoCapture", lambda index: FakeCamera(index, [], False))
    assert main(["detect", "3", "-m", model]) == 1
    err = capsys.readouterr().err
    assert "camera 3" in err and "cannot open" in err
