"""Nothing the user owns is lost (issue 14, item 5): --force replaces only what defectrt wrote, detect never
writes beside its inputs, interrupted builds leave no temporary folders. Each data-loss case hashes the
user's tree before and after: it must be byte-identical."""
import os
import signal
import subprocess
import sys
import time

import cv2
import pytest

from defectrt import fileio
from defectrt.cli import main
from defectrt.errors import OutputExistsError
from hostile_helpers import HERE, SRC, tree_digest
from test_runtime_cli import model  # noqa: F401  (fixture: the rect_finder ONNX file)
from test_runtime_models import draw_rect, make_bundle, rect_finder

DEAD_PID = 4194305  # above Linux's largest pid_max: no process can have it


def _user_tree(root):
    """A folder a user owns: a dataset with images and labels, and a home-folder style note."""
    os.makedirs(os.path.join(root, "images", "train"))
    os.makedirs(os.path.join(root, "labels", "train"))
    cv2.imwrite(os.path.join(root, "images", "train", "a.png"), draw_rect(100, 120, 10, 10, 50, 60))
    with open(os.path.join(root, "labels", "train", "a.txt"), "w") as f:
        f.write("0 0.5 0.5 0.2 0.2\n")
    with open(os.path.join(root, "data.yaml"), "w") as f:
        f.write("path: .\ntrain: images/train\nval: images/train\nnames: [scratch]\n")
    with open(os.path.join(root, ".bashrc"), "w") as f:
        f.write("export PATH=$HOME/bin:$PATH\n")
    return str(root)


# -- export build -o DIR --force -----------------------------------------------------------------------

@pytest.mark.parametrize("what", ["dataset", "bundle_with_user_file", "symlink"])
def test_export_build_force_refuses_what_it_did_not_write(model, tmp_path, capsys, what):
    if what == "dataset":
        target = _user_tree(tmp_path / "dataset")
        words = "it is not a defectrt bundle"
    elif what == "bundle_with_user_file":
        target = make_bundle(str(tmp_path / "old.bundle"), rect_finder())
        with open(os.path.join(target, "my_notes.txt"), "w") as f:
            f.write("line 3 calibration notes")
        words = "it holds files that are not part of the bundle (my_notes.txt)"
    else:
        real = _user_tree(tmp_path / "home")
        target = str(tmp_path / "link.bundle")
        os.symlink(real, target)
        words = "it is a symbolic link"
    watched = str(tmp_path)
    before = tree_digest(watched)
    assert main(["export", "build", model, "-o", target, "--force", "--precision", "fp32"]) == 1
    err = capsys.readouterr().err
    assert "--force refused: " + words in err, err
    assert tree_digest(watched) == before


def test_export_build_force_replaces_its_own_bundle(model, tmp_path, capsys):
    out = str(tmp_path / "m.bundle")
    assert main(["export", "build", model, "-o", out, "--precision", "fp32", "--conf", "0.3"]) == 0
    assert main(["export", "build", model, "-o", out, "--precision", "fp32", "--conf", "0.6", "--force"]) == 0
    from defectrt.runtime.bundle import read_manifest

    assert read_manifest(out)["thresholds"]["conf"] == 0.6
    assert [n for n in os.listdir(str(tmp_path)) if n.startswith(".tmp-")] == []


# -- detect --save-dir ---------------------------------------------------------------------------------

def _images(folder):
    os.makedirs(folder, exist_ok=True)
    cv2.imwrite(os.path.join(folder, "a.png"), draw_rect(333, 517, 101, 57, 300, 211))
    cv2.imwrite(os.path.join(folder, "b.jpg"), draw_rect(200, 120, 10, 20, 60, 150))
    return str(folder)


@pytest.mark.parametrize("source", ["folder", "image"])
def test_detect_never_writes_into_its_input_folder(model, tmp_path, capsys, source):
    src = _images(tmp_path / "src")
    before = tree_digest(src)
    arg = src if source == "folder" else os.path.join(src, "a.png")
    assert main(["detect", arg, "-m", model, "--save-dir", src, "--force"]) == 1
    assert "it is the folder of the input" in capsys.readouterr().err
    assert tree_digest(src) == before


def test_detect_force_keeps_a_users_file_of_the_same_name(model, tmp_path, capsys):
    src = _images(tmp_path / "src")
    out = tmp_path / "reports"
    out.mkdir()
    (out / "a.png").write_bytes(b"the user's own a.png")
    (out / "other.txt").write_text("kept")
    before = tree_digest(str(out))
    assert main(["detect", src, "-m", model, "--save-dir", str(out), "--force"]) == 1
    assert "did not write it (it is not listed in .defectrt-run.json)" in capsys.readouterr().err
    assert {k: v for k, v in tree_digest(str(out)).items() if k != fileio.RUN_MARKER} == before
    # Without a name clash the run goes ahead and the user's other files stay as they were.
    os.remove(str(out / "a.png"))
    before = tree_digest(str(out))
    assert main(["detect", src, "-m", model, "--save-dir", str(out)]) == 0
    assert main(["detect", src, "-m", model, "--save-dir", str(out), "--force"]) == 0  # ours now: replaced
    after = tree_digest(str(out))
    assert all(after[k] == v for k, v in before.items() if k != fileio.RUN_MARKER)


# -- data synth -o DIR --force -------------------------------------------------------------------------

def test_data_synth_force_refuses_a_folder_with_other_files(tmp_path, capsys):
    target = _user_tree(tmp_path / "mine")
    before = tree_digest(str(tmp_path))
    args = ["data", "synth", "--kind", "screw", "--n", "2", "--imgsz", "160", "224", "--quiet", "-o", target, "--force"]
    assert main(args) == 1
    assert "--force refused: it is not a dataset written by `defectrt data synth`" in capsys.readouterr().err
    assert tree_digest(str(tmp_path)) == before
    # Our own dataset is replaced; once the user adds a file to it, it is not.
    ours = str(tmp_path / "synth")
    args[-2] = ours
    assert main(args[:-1]) == 0 and main(args) == 0
    with open(os.path.join(ours, "images", "train", "real_photo.png"), "wb") as f:
        f.write(b"not ours")
    before = tree_digest(ours)
    assert main(args) == 1
    assert "images/train/real_photo.png" in capsys.readouterr().err
    assert tree_digest(ours) == before


# -- interrupted and killed runs -----------------------------------------------------------------------

def test_leftovers_of_a_killed_run_are_cleaned_but_a_live_runs_are_not(tmp_path):
    dead = tmp_path / ".tmp-{}-abcdout.bundle".format(DEAD_PID)
    dead_old = tmp_path / ".tmp-{}-efghout.bundle.old".format(DEAD_PID)
    live = tmp_path / ".tmp-{}-ijklout.bundle".format(os.getpid())
    unrelated = tmp_path / ".tmp-{}-mnopother.bundle".format(DEAD_PID)
    for d in (dead, dead_old, live, unrelated):
        d.mkdir()
        (d / "model.onnx").write_bytes(b"x")
    with fileio.atomic_dir(str(tmp_path / "out.bundle")) as tmp:
        open(os.path.join(tmp, "f"), "w").close()
    assert not dead.exists() and not dead_old.exists()
    assert live.exists() and unrelated.exists()
    assert (tmp_path / "out.bundle" / "f").exists()


def _child(code):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, HERE]))
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_inside_atomic_dir_removes_the_temporary(tmp_path, sig):
    out = str(tmp_path / "out.bundle")
    proc = _child("import time\nfrom defectrt.fileio import atomic_dir\n"
                  "with atomic_dir({!r}) as tmp:\n    open(tmp + '/f', 'w').close()\n"
                  "    print('ready', flush=True)\n    time.sleep(60)\n".format(out))
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(sig)
    proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert os.listdir(str(tmp_path)) == []


def test_sigterm_to_a_running_export_build_leaves_no_temporary_folder(tmp_path):
    out = str(tmp_path / "m.bundle")
    proc = _child("import sys\nfrom defectrt.cli import main\n"
                  "sys.exit(main(['export', 'build', 'yolo11n', '-o', {!r}, '--precision', 'fp32', '--imgsz', '64']))"
                  .format(out))
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if any(n.startswith(".tmp-") for n in os.listdir(str(tmp_path))):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the build ended before its temporary folder was seen: " + proc.communicate()[1]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err, err[-2000:]
    assert os.listdir(str(tmp_path)) == []


def test_force_never_replaces_a_folder_without_an_owner_check(tmp_path):
    target = _user_tree(tmp_path / "d")
    before = tree_digest(target)
    with pytest.raises(OutputExistsError, match="folder with 4 entries that defectrt did not write"):
        with fileio.atomic_dir(target, force=True):
            pass
    assert tree_digest(target) == before


@pytest.mark.parametrize("args,words", [
    (["--conf", "1.5"], "--conf=1.5: must be between 0 and 1"),
    (["--iou", "nan"], "--iou=nan: must be a finite number"),
    (["--imgsz", "40000"], "--imgsz 40000x40000 (h x w) is too large"),
])
def test_export_build_refuses_values_its_bundle_could_not_load(model, tmp_path, capsys, args, words):
    out = tmp_path / "x.bundle"
    assert main(["export", "build", model, "-o", str(out), "--precision", "fp32"] + args) == 1
    assert words in capsys.readouterr().err and not out.exists()


def test_a_file_output_never_replaces_a_folder_or_a_fifo(tmp_path):
    (tmp_path / "empty_dir").mkdir()
    os.mkfifo(str(tmp_path / "pipe"))
    with pytest.raises(OutputExistsError, match="it is a folder, and the output is a file"):
        fileio.atomic_write_bytes(str(tmp_path / "empty_dir"), b"x", force=True)
    with pytest.raises(OutputExistsError, match="it is not a regular file"):
        fileio.atomic_write_bytes(str(tmp_path / "pipe"), b"x", force=True)
    assert sorted(os.listdir(str(tmp_path))) == ["empty_dir", "pipe"]
