"""Hostile checkpoints: each test builds its file itself, loads it in a subprocess under an address-space limit
and a timeout, and asserts no side effect, a bounded run and a clear UserInputError naming file and reason."""
import collections
import io
import json
import os
import pickle
import subprocess
import sys
import tarfile
import textwrap
import zipfile

import pytest

torch = pytest.importorskip("torch")

from defectrt import models  # noqa: E402
from defectrt.errors import UserInputError  # noqa: E402

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
HEADROOM = 1 << 30  # address space the load may take beyond what the interpreter with torch already maps
TIMEOUT = 60

_CHILD = textwrap.dedent("""
    import json, resource, sys
    from defectrt.errors import UserInputError
    from defectrt.models.checkpoint import load
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize"))
    limit = vm + int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        load(sys.argv[1])
        print(json.dumps({"ok": True}))
    except BaseException as exc:
        print(json.dumps({"type": type(exc).__name__, "user": isinstance(exc, UserInputError), "msg": str(exc)}))
""")


def load_bounded(path, headroom=HEADROOM):
    """models.load(path) in a child with RLIMIT_AS = (what it maps after importing torch) + headroom."""
    env = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1", MALLOC_ARENA_MAX="2")
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(path), str(headroom)], capture_output=True, text=True,
                          timeout=TIMEOUT, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def assert_refused(path, *reasons, headroom=HEADROOM):
    out = load_bounded(path, headroom)
    assert out.get("user"), out
    assert str(path) in out["msg"], out["msg"]
    for reason in reasons:
        assert reason in out["msg"], out["msg"]
    return out["msg"]


def stock_yaml(nc=3):
    return models.create("yolo11n", nc=nc).yaml


class _Module(torch.nn.Module):
    pass


def _shared_chain(depth, leaf):
    """A module graph where every level holds the next level twice: depth levels, 2^depth paths."""
    node = leaf
    for _ in range(depth):
        parent = _Module()
        parent._modules["a"] = node
        parent._modules["b"] = node
        node = parent
    node.yaml = stock_yaml()
    node.names = {0: "a", 1: "b", 2: "c"}
    return node


_TORCHSCRIPT_PAYLOAD = textwrap.dedent("""
    import torch
    from typing import Tuple
    class Payload(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.x = torch.zeros(1)
        @torch.jit.export
        def __getstate__(self) -> Tuple[torch.Tensor, bool]:
            return (self.x, self.training)
        @torch.jit.export
        def __setstate__(self, state: Tuple[torch.Tensor, bool]):
            self.x = state[0]
            self.training = state[1]
            self.x = torch.from_file({marker!r}, shared=True, size=1, dtype=torch.float32)
    torch.jit.save(torch.jit.script(Payload()), {path!r})
""")


def make_torchscript_payload(tmp_path, marker_path, out):
    """A TorchScript archive whose scripted __setstate__ creates `marker_path` when torch.jit.load runs it."""
    script = tmp_path / "make_payload.py"  # torch.jit.script reads the class's source from a file
    script.write_text(_TORCHSCRIPT_PAYLOAD.format(marker=str(marker_path), path=str(out)))
    subprocess.run([sys.executable, str(script)], check=True, timeout=TIMEOUT)


def test_torchscript_archive_is_refused_before_its_code_runs(tmp_path):
    """A scripted __setstate__ that creates (and could overwrite) a file through torch.from_file(shared=True):
    torch.load hands such a zip to torch.jit.load, which runs it."""
    marker = tmp_path / "pwned"
    path = tmp_path / "best.pt"
    make_torchscript_payload(tmp_path, marker, path)
    assert path.exists() and not marker.exists()
    # The payload is real: plain torch.load executes it (in a child, on a twin file with its own marker).
    proof_marker, proof = tmp_path / "proof-marker", tmp_path / "proof.pt"
    make_torchscript_payload(tmp_path, proof_marker, proof)
    subprocess.run([sys.executable, "-c", "import torch, sys; torch.load(sys.argv[1], weights_only=False)", str(proof)],
                   check=True, timeout=TIMEOUT)
    assert proof_marker.exists()
    assert_refused(path, "TorchScript", "nothing from it was executed")
    assert not marker.exists()


def test_torchscript_archive_as_resume_state_is_refused(tmp_path, monkeypatch):
    """`train --resume` reads weights/last_state.pt through the same reader, never through torch.load (whose
    dispatch to torch.jit.load is refused for weights_only=True only since torch 2.4)."""
    from defectrt.train import train

    marker = tmp_path / "pwned"
    state = tmp_path / "runs" / "exp" / "weights" / "last_state.pt"
    state.parent.mkdir(parents=True)
    make_torchscript_payload(tmp_path, marker, state)

    def no_torch_load(*_a, **_k):
        raise AssertionError("the resume state went to torch.load")

    monkeypatch.setattr(torch, "load", no_torch_load)
    for resume, project in ((str(state), "unused"), (True, str(tmp_path / "runs"))):
        with pytest.raises(UserInputError) as exc:
            train(None, None, resume=resume, project=project, log=lambda *a, **k: None)
        msg = str(exc.value)
        assert str(state) in msg and "TorchScript" in msg and "nothing from it was executed" in msg, msg
    assert not marker.exists()


def test_resume_state_with_foreign_objects_is_refused(tmp_path):
    """Only tensors, numbers, strings, lists and dicts: a class from the file (an inert placeholder) is named."""
    from defectrt.train import train

    state = tmp_path / "exp" / "weights" / "last_state.pt"
    state.parent.mkdir(parents=True)
    torch.save({"version": 1, "epoch": 1, "config": {"epochs": 2}, "optimizer": {"hook": _Module()}}, str(state))
    with pytest.raises(UserInputError, match=r"last_state\.pt: not a defectrt training state: it holds a _Module "
                                             r"at the top\['optimizer'\]\['hook'\]"):
        train(None, None, resume=str(state), log=lambda *a, **k: None)


def test_ordered_dict_state_is_only_a_state_dicts_metadata(tmp_path):
    """torchzip lets BUILD set `_metadata` on an OrderedDict (what state_dict() pickles, needed for resume
    states), and nothing else: any other attribute on a plain container is still refused."""
    from defectrt.models import torchzip

    sd = torch.nn.Linear(2, 2).state_dict()
    torch.save({"model": sd}, str(tmp_path / "ok.pt"))
    assert torchzip.load(tmp_path / "ok.pt")["model"]._metadata == sd._metadata
    odd = collections.OrderedDict(a=1)
    odd._metadata, odd.extra = {}, "x"
    torch.save(odd, str(tmp_path / "odd.pt"))
    with pytest.raises(torchzip.CheckpointError, match=r"odd\.pt: refused to load: it sets the state of a OrderedDict"):
        torchzip.load(tmp_path / "odd.pt")


def test_shared_children_graph_is_not_walked_per_path(tmp_path):
    leaf = _Module()
    leaf.register_parameter("w", torch.nn.Parameter(torch.ones(4)))
    path = tmp_path / "graph.pt"
    torch.save({"model": _shared_chain(40, leaf)}, str(path))
    assert path.stat().st_size < 20_000
    assert_refused(path, "module paths")


def test_per_path_float_copies_are_bounded(tmp_path):
    """One 256K-element half tensor shared under 2^13 paths: 4 GB if every path made its own float copy."""
    leaf = _Module()
    leaf.register_buffer("w", torch.zeros(1 << 18, dtype=torch.half))
    path = tmp_path / "amplify.pt"
    torch.save({"model": _shared_chain(13, leaf)}, str(path))
    assert path.stat().st_size < 1 << 20
    assert_refused(path, "elements")


def test_stride_zero_half_tensor_is_refused(tmp_path):
    path = tmp_path / "stride0.pt"
    torch.save({"model": torch.zeros(1, dtype=torch.half).expand(3_000_000_000)}, str(path))
    assert path.stat().st_size < 2000
    assert_refused(path, "zero or overlapping strides")


def test_overlapping_strides_and_out_of_bounds_views_are_refused(tmp_path):
    overlap = tmp_path / "overlap.pt"
    torch.save({"model": torch.zeros(64).as_strided((32, 32), (1, 1))}, str(overlap))  # 1024 views of 63 elements
    assert_refused(overlap, "overlapping")
    inside = tmp_path / "inside.pt"
    torch.save({"model": torch.zeros(64).as_strided((8, 8), (1, 8))}, str(inside))  # a transpose: legal
    assert load_bounded(inside)["msg"].endswith("is this an Ultralytics checkpoint?")


def test_list_of_range_pickle_is_refused(tmp_path):
    class Amplify:
        def __reduce__(self):
            return (list, (range(10**8),))

    path = tmp_path / "range.pt"
    torch.save({"model": Amplify()}, str(path))
    assert path.stat().st_size < 2000
    assert_refused(path, "builtins")


@pytest.mark.parametrize("callable_,args", [(bytes, (10**10,))])
def test_other_amplifying_builtins_are_refused(tmp_path, callable_, args):
    class Amplify:
        def __reduce__(self):
            return (callable_, args)

    path = tmp_path / "amp.pt"
    torch.save({"model": Amplify()}, str(path))
    assert_refused(path, "builtins." + callable_.__name__)


def test_zip_bomb_is_refused_without_inflating_it(tmp_path):
    """256 MB of pickle compressed to ~250 KB: refused from its declared size, never inflated."""
    path = tmp_path / "bomb.pt"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("archive/data.pkl", "w", force_zip64=True) as f:
            chunk = b"\x00" * (1 << 20)
            for _ in range(256):
                f.write(chunk)
    assert path.stat().st_size < 2 << 20
    assert_refused(path, "data.pkl", "limit", headroom=256 << 20)


def test_record_that_inflates_past_its_declared_size_is_cut_off(tmp_path):
    """A lying header: the central directory says 100 bytes, the deflated stream holds 64 MB."""
    from defectrt.models.torchzip import RefusedPickle, read_record

    path = tmp_path / "liar.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", b"\x00" * (64 << 20))
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("archive/data.pkl")
        info.file_size = 100  # what a forged central directory would claim
        with pytest.raises((RefusedPickle, zipfile.BadZipFile)):
            read_record(zf, info, 1000)


def test_legacy_tar_with_fifo_member_is_refused_without_hanging(tmp_path):
    path = tmp_path / "legacy.pt"
    with tarfile.open(path, "w") as tf:
        for name in ("sys_info", "pickle", "tensors"):
            data = pickle.dumps({})
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        fifo = tarfile.TarInfo("storages")
        fifo.type = tarfile.FIFOTYPE
        tf.addfile(fifo)
    assert_refused(path, "legacy tar", "FIFO", "'storages'")


def test_fifo_named_best_pt_is_refused(tmp_path):
    path = tmp_path / "best.pt"
    os.mkfifo(str(path))
    assert_refused(path, "not a regular file")


def _safetensors(path, arch, tensors=None, **cfg):
    from safetensors.torch import save_file

    meta = dict({"format": "defectrt-checkpoint", "version": 1, "variant": None, "nc": 3, "arch": arch}, **cfg)
    save_file(tensors or {"model.0.conv.weight": torch.zeros(1)}, str(path), metadata={"defectrt": json.dumps(meta)})
    return path


def test_oversized_safetensors_config_is_refused_before_building(tmp_path):
    arch = stock_yaml()
    arch["scales"] = {"n": [1.0, 1.0, 12000]}
    arch["backbone"][7][3][0] = 12000
    assert_refused(_safetensors(tmp_path / "huge.safetensors", arch), "max_channels")
    # Within the channel bounds but 4096 wide everywhere (gigabytes of weights): refused from the shapes
    # of the file's tensors, before a module is built.
    arch = stock_yaml()
    arch["scales"] = {"n": [1.0, 4.0, 4096]}
    assert_refused(_safetensors(tmp_path / "wide.safetensors", arch), "weights do not fit", headroom=512 << 20)


@pytest.mark.parametrize("edit,reason", [
    (lambda a: a["backbone"][2].__setitem__(1, 10**6), "repeats"),
    (lambda a: a.__setitem__("nc", 10**9), "nc = "),
    (lambda a: a["head"].__setitem__(1, [[-1, 99], 1, "Concat", [1]]), "does not name earlier layers"),
    (lambda a: a["head"].extend([[-1, 1, "Conv", [64, 3, 1]]] * 600), "layers"),
    (lambda a: a["backbone"][0].__setitem__(2, "os.system"), "unknown module"),
    (lambda a: a["head"][0].__setitem__(3, ["None", 1000, "nearest"]), "feature map of 16384000000 elements"),
    (lambda a: a["backbone"][1].__setitem__(3, [128, 3, 0]), "cannot rebuild"),
])
def test_safetensors_config_bounds(tmp_path, edit, reason):
    arch = stock_yaml()
    edit(arch)
    with pytest.raises(UserInputError, match=reason):
        models.load(str(_safetensors(tmp_path / "bad.safetensors", arch)))


def test_unknown_variant_in_safetensors_config_is_refused(tmp_path):
    path = _safetensors(tmp_path / "v.safetensors", stock_yaml(), variant="yolo11z-warp")
    with pytest.raises(UserInputError, match="unknown variant 'yolo11z-warp'"):
        models.load(str(path))


def test_tensor_state_cannot_re_view_its_storage(tmp_path):
    """BUILD on a tensor would call Tensor.__setstate__ -> set_(storage, 0, (3e9,), (0,)): refused."""
    import collections
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        storage = torch.zeros(1, dtype=torch.half).storage()

    class Reviewed:
        def __reduce__(self):
            args = (storage, 0, (1,), (1,), False, collections.OrderedDict())
            return (torch._utils._rebuild_tensor_v2, args, (storage, 0, (3_000_000_000,), (0,)))

    path = tmp_path / "setstate.pt"
    torch.save({"model": Reviewed()}, str(path))
    assert_refused(path, "sets the state of a Tensor")


@pytest.mark.parametrize("kind,word", [(tarfile.SYMTYPE, "symlink"), (tarfile.CHRTYPE, "device"),
                                       (tarfile.LNKTYPE, "hard link")])
def test_legacy_tar_with_other_non_regular_members_is_refused(tmp_path, kind, word):
    path = tmp_path / "legacy.pt"
    with tarfile.open(path, "w") as tf:
        member = tarfile.TarInfo("storages")
        member.type = kind
        member.linkname = "/etc/passwd"
        tf.addfile(member)
    with pytest.raises(UserInputError, match="legacy tar.*{}.*Nothing was extracted".format(word)):
        models.load(str(path))


def test_legacy_pickle_stream_format_is_refused(tmp_path):
    """torch < 1.6's format: torch.load would unpickle it with its own rules; we read only the zip format."""
    path = tmp_path / "old.pt"
    torch.save({"model": torch.zeros(2)}, str(path), _use_new_zipfile_serialization=False)
    with pytest.raises(UserInputError, match="old.pt: refused: a legacy"):
        models.load(str(path))


def test_zip_directory_is_bounded_before_it_is_parsed(tmp_path):
    """3,001 records against lowered limits: refused from the end record, before zipfile builds its objects."""
    from defectrt.models.torchzip import Limits, load

    path = tmp_path / "many.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({}, protocol=2))
        for i in range(3000):
            zf.writestr("archive/x{}".format(i), b"")
    with pytest.raises(UserInputError, match="zip directory lists 3001 records"):
        load(str(path), Limits(max_records=1000))
    with pytest.raises(UserInputError, match="zip directory lists 3001 records in [0-9]+ bytes"):
        load(str(path), Limits(max_directory_bytes=10_000))
    assert load(str(path)) == {}


def test_zip64_end_record_is_read_for_the_directory_bounds(tmp_path):
    """torch writes zip64 end records; with the classic record saying 0xFFFF the zip64 numbers are the ones used."""
    from defectrt.models.torchzip import Limits, load

    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "ultralytics", "multipliers_leaky_nc2.pt")
    data = bytearray(open(src, "rb").read())
    pos = data.rfind(b"PK\x05\x06")
    data[pos + 8:pos + 12] = b"\xff\xff\xff\xff"  # entries on this disk / in all: see the zip64 record
    path = tmp_path / "z64.pt"
    path.write_bytes(bytes(data))
    assert "train_args" in load(str(path))
    with pytest.raises(UserInputError, match="zip directory lists [0-9]+ records"):
        load(str(path), Limits(max_records=100))


def test_odd_objects_where_the_model_should_be_give_a_clear_error(tmp_path):
    for i, ckpt in enumerate([{"ema": torch.zeros(3), "model": torch.zeros(3)}, {"model": [1, 2]}, [torch.zeros(2)]]):
        path = tmp_path / "odd{}.pt".format(i)
        torch.save(ckpt, str(path))
        with pytest.raises(UserInputError, match="odd{}.pt".format(i)):
            models.load(str(path))
