"""Read a `torch.save` file ourselves: zipfile + an allow-list unpickler + bounded storage records.

`torch.load` is never called on a user's checkpoint. It dispatches on what the file looks like: a zip
with `constants.pkl` goes to `torch.jit.load` (TorchScript runs its own code while it loads), a tar goes
to the legacy loader (which extracts members, FIFOs included), and only then to the pickle module it was
given. Here the file is opened once, classified from its bytes, and only the one format we understand
(the zip written by torch >= 1.6) is read:

- `<archive>/data.pkl` is unpickled by `SafeUnpickler` (globals through an allow-list; every other class
  becomes an inert placeholder; callables that could amplify memory take bounded, typed arguments);
- each storage `<archive>/data/<key>` is read once, after its declared size was checked against the
  record's size and against the limits, with a bounded read (a record that inflates past its size is
  refused, so zip bombs stop at the limit);
- every tensor view is checked to lie inside its storage without overlap (no stride-0 expansion), and
  the elements of all views together are bounded (no amplification through many views of one storage).

Every failure is a `CheckpointError` (a `UserInputError`) naming the file and the reason.
"""
from __future__ import annotations

import _compat_pickle
import collections
import io
import os
import pickle
import stat
import struct
import tarfile
import zipfile
from dataclasses import dataclass

import torch

from defectrt.errors import UserInputError


class CheckpointError(UserInputError):
    """A checkpoint file that is refused or unreadable; the message names the file and the reason."""


@dataclass(frozen=True)
class Limits:
    """Bounds for one checkpoint. Defaults fit YOLO11x (57M parameters) with room to spare."""

    max_pickle_bytes: int = 64 << 20
    max_storage_bytes: int = 2 << 30  # all storages together
    max_elements: int = 400_000_000  # all tensor views together
    max_records: int = 200_000
    max_directory_bytes: int = 8 << 20  # the zip's central directory: ~100 bytes per record
    max_ndim: int = 16


DEFAULT_LIMITS = Limits()

_STORAGE_DTYPES = {
    "DoubleStorage": torch.float64, "FloatStorage": torch.float32, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool, "ComplexFloatStorage": torch.complex64, "ComplexDoubleStorage": torch.complex128,
}
_DTYPES = {name: getattr(torch, name) for name in dir(torch) if isinstance(getattr(torch, name, None), torch.dtype)}

# Module prefixes whose globals are never data: a pickle naming them is an attack or a broken file.
_DANGEROUS_MODULES = (
    "os", "posix", "nt", "subprocess", "sys", "shutil", "socket", "importlib", "pickle", "marshal",
    "runpy", "ctypes", "types", "code", "codeop", "pty", "signal", "multiprocessing", "webbrowser",
    "urllib", "http", "ftplib", "smtplib", "asyncio", "threading", "functools", "operator", "inspect",
    "torch.hub", "torch.jit", "torch.package", "torch.ops", "torch._ops", "torch.cuda", "numpy.lib.npyio",
    "io", "tempfile", "glob", "zipimport", "shelve", "dbm", "sqlite3",
)
# Builtins that are plain data types are never needed as callables in a checkpoint (pickle has opcodes for
# them) and several amplify memory (bytes(10**10), list(range(10**9))): every builtin is refused.


class RefusedPickle(pickle.UnpicklingError):
    pass


class Placeholder:
    """An inert stand-in for any class the pickle names: it stores what it is given and does nothing."""

    _pickled_module = "?"
    _pickled_name = "?"

    def __init__(self, *args, **kwargs):
        self._args, self._kwargs = args, kwargs

    def __setstate__(self, state):
        self._state = state

    def __call__(self, *args, **kwargs):  # a placeholder used as a function: stays inert
        return type(self)(*args, **kwargs)

    # A pickled dict / list subclass gets its items through these; they are kept, never interpreted.
    def __setitem__(self, key, value):
        self.__dict__.setdefault("_items", {})[key] = value

    def append(self, value):
        self.__dict__.setdefault("_list", []).append(value)

    def extend(self, values):
        self.__dict__.setdefault("_list", []).extend(values)

    @property
    def state(self):
        """The attribute dict pickle gave (slot state merged), or {}."""
        state = getattr(self, "_state", None)
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):
            merged = dict(state[0])
            merged.update(state[1] if isinstance(state[1], dict) else {})
            return merged
        return state if isinstance(state, dict) else {}

    def __repr__(self):
        return "<placeholder {}.{}>".format(self._pickled_module, self._pickled_name)


def _placeholder(cache, module, name):
    """One placeholder class per (module, name) of one load (the cache dies with its unpickler)."""
    key = (module, name)
    if key not in cache:
        cache[key] = type(name, (Placeholder,), {"_pickled_module": module, "_pickled_name": name})
    return cache[key]


class _StorageType:
    """What `torch.HalfStorage` & co. become: only a dtype for the persistent-id record."""

    def __init__(self, dtype):
        self.dtype = dtype


# --- bounded constructors the allow-list hands to pickle ------------------------------------------


def _plain(value, what):
    if not isinstance(value, (list, tuple, dict, set, frozenset, str)):
        raise RefusedPickle("{} of a {} (only plain containers are accepted)".format(what, type(value).__name__))
    return value


def _ordered_dict(*args):
    if len(args) > 1:
        raise RefusedPickle("OrderedDict with {} arguments".format(len(args)))
    return collections.OrderedDict(_plain(args[0], "OrderedDict") if args else ())


def _defaultdict(*args):  # the factory is dropped: a missing key must never call anything from the file
    return {}


def _set(items=()):
    return set(_plain(items, "set"))


def _frozenset(items=()):
    return frozenset(_plain(items, "frozenset"))


def _size(dims=()):
    if not isinstance(dims, (list, tuple)) or len(dims) > DEFAULT_LIMITS.max_ndim or not all(
        type(d) is int for d in dims
    ):
        raise RefusedPickle("torch.Size({!r:.60})".format(dims))
    return torch.Size(dims)


def _device(*args):
    return torch.device("cpu")  # everything is loaded on the CPU, whatever device it was saved from


def _scalar_args(fn, name):
    def make(*args):
        if len(args) > 3 or not all(a is None or type(a) in (int, float) for a in args):
            raise RefusedPickle("{} with arguments {!r:.60}".format(name, args))
        return fn(*args)

    return make


def _is_state_dict_metadata(target, state):
    return (type(target) is collections.OrderedDict and type(state) is dict and list(state) == ["_metadata"]
            and isinstance(state["_metadata"], dict))


class SafeUnpickler(pickle._Unpickler):
    """Unpickler whose globals come from an allow-list; tensors come from the reader's bounded storages.

    It is pickle's pure-Python unpickler, because one opcode needs a guard: BUILD calls the `__setstate__`
    of whatever object is on the stack, and `torch.Tensor.__setstate__` with a 4-tuple is `tensor.set_()`,
    which would re-view a checked storage through any size and stride (stride 0: gigabytes). BUILD is only
    accepted on placeholders.
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, reader=None):
        super().__init__(file)
        self._reader = reader
        self._placeholders = {}
        self._allowed = {
            ("collections", "OrderedDict"): _ordered_dict,
            ("collections", "defaultdict"): _defaultdict,
            ("builtins", "set"): _set,
            ("builtins", "frozenset"): _frozenset,
            ("builtins", "slice"): _scalar_args(slice, "slice"),
            ("builtins", "complex"): _scalar_args(complex, "complex"),
            ("torch", "Size"): _size,
            ("torch", "device"): _device,
        }
        if reader is not None:
            self._allowed.update({
                ("torch._utils", "_rebuild_tensor"): reader.rebuild_tensor,
                ("torch._utils", "_rebuild_tensor_v2"): reader.rebuild_tensor_v2,
                ("torch._utils", "_rebuild_parameter"): reader.rebuild_parameter,
                ("torch._utils", "_rebuild_parameter_with_state"): reader.rebuild_parameter_with_state,
                ("torch._tensor", "_rebuild_from_type_v2"): reader.rebuild_from_type_v2,
                ("torch.nn.parameter", "Parameter"): reader.parameter,
            })

    def find_class(self, module, name):
        # torch.save writes protocol 2, which names Python 2 modules (__builtin__, copy_reg, ...).
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in self._allowed:
            return self._allowed[(module, name)]
        if module == "torch" and name in _DTYPES:
            return _DTYPES[name]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if any(module == d or module.startswith(d + ".") for d in _DANGEROUS_MODULES):
            raise RefusedPickle("it names {}.{}, which can execute code".format(module, name))
        if module == "builtins":
            raise RefusedPickle("it names builtins.{} (a callable no checkpoint needs)".format(name))
        return _placeholder(self._placeholders, module, name)

    def load_build(self):
        target = self.stack[-2] if len(self.stack) >= 2 else None
        if _is_state_dict_metadata(target, self.stack[-1] if self.stack else None):
            # A module's state_dict() is an OrderedDict with one attribute, `_metadata` (per-prefix version
            # dicts); the trainer's resume state holds three of them. Set it directly: no __setstate__ runs.
            target._metadata = self.stack.pop()["_metadata"]
            return
        if not isinstance(target, Placeholder):
            raise RefusedPickle("it sets the state of a {} (only pickled modules carry state)".format(
                type(target).__name__))
        pickle._Unpickler.load_build(self)

    dispatch[pickle.BUILD[0]] = load_build

    def persistent_load(self, pid):
        if self._reader is None:
            raise RefusedPickle("a persistent reference in a pickle that has no storages")
        return self._reader.storage(pid)


class TorchZipReader:
    """The storages of one torch zip archive, read on demand, each once, within `limits`."""

    def __init__(self, path, zf, prefix, limits):
        self.path, self.zf, self.prefix, self.limits = path, zf, prefix, limits
        self._storages = {}
        self._storage_bytes = 0
        self._elements = 0

    def storage(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise RefusedPickle("an unknown persistent reference {!r:.80}".format(pid))
        _, stype, key, _location, numel = pid
        if not isinstance(stype, _StorageType):
            raise RefusedPickle("a storage of unknown type {!r:.60}".format(stype))
        if not isinstance(key, str) or type(numel) is not int or numel < 0:
            raise RefusedPickle("a malformed storage reference {!r:.80}".format(pid))
        cached = self._storages.get(key)
        if cached is not None:
            if cached.dtype != stype.dtype:
                raise RefusedPickle("storage {} used with two dtypes".format(key))
            return cached
        itemsize = torch.empty((), dtype=stype.dtype).element_size()
        nbytes = numel * itemsize
        name = "{}data/{}".format(self.prefix, key)
        try:
            info = self.zf.getinfo(name)
        except KeyError:
            raise RefusedPickle("storage record {} is missing".format(name)) from None
        if info.file_size != nbytes:
            raise RefusedPickle("storage record {} holds {} bytes, but {} elements of {} were declared".format(
                name, info.file_size, numel, stype.dtype))
        if self._storage_bytes + nbytes > self.limits.max_storage_bytes:
            raise RefusedPickle("its storages exceed {} bytes (limit)".format(self.limits.max_storage_bytes))
        self._storage_bytes += nbytes
        data = bytearray(read_record(self.zf, info, nbytes))
        tensor = torch.frombuffer(data, dtype=stype.dtype) if nbytes else torch.empty(0, dtype=stype.dtype)
        self._storages[key] = tensor
        return tensor

    def _view(self, storage, offset, size, stride):
        if not isinstance(storage, torch.Tensor) or storage.dim() != 1:
            raise RefusedPickle("a tensor without a storage from this file")
        size, stride = tuple(size), tuple(stride)
        if len(size) != len(stride) or len(size) > self.limits.max_ndim or not all(
            type(v) is int and v >= 0 for v in size + stride + (offset,)
        ):
            raise RefusedPickle("a tensor with size {!r:.60} / stride {!r:.60}".format(size, stride))
        numel = 1
        for s in size:
            numel *= s
        if numel:
            last = offset + sum((s - 1) * st for s, st in zip(size, stride))
            if last >= storage.numel():
                raise RefusedPickle("a tensor reaches past its storage ({} >= {} elements)".format(last + 1, storage.numel()))
            if numel > storage.numel() or not _non_overlapping(size, stride):
                raise RefusedPickle(
                    "a tensor of {} elements expands a storage of {} through zero or overlapping strides "
                    "(size {}, stride {})".format(numel, storage.numel(), size, stride))
        self._elements += numel
        if self._elements > self.limits.max_elements:
            raise RefusedPickle("its tensors hold more than {} elements (limit)".format(self.limits.max_elements))
        return torch.as_strided(storage, size, stride, offset)

    def rebuild_tensor(self, storage, offset, size, stride):
        return self._view(storage, offset, size, stride)

    def rebuild_tensor_v2(self, storage, offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
        return self._view(storage, offset, size, stride)

    def rebuild_parameter(self, data, requires_grad=False, backward_hooks=None):
        return self.parameter(data)

    def rebuild_parameter_with_state(self, data, requires_grad=False, backward_hooks=None, state=None):
        return self.parameter(data)

    def parameter(self, data=None, requires_grad=True):
        if not isinstance(data, torch.Tensor):
            raise RefusedPickle("a Parameter of a {}".format(type(data).__name__))
        return data  # the data is all we need; never a subclass with behaviour

    def rebuild_from_type_v2(self, func, new_type=None, args=(), state=None):
        allowed = (self.rebuild_tensor, self.rebuild_tensor_v2, self.rebuild_parameter, self.rebuild_parameter_with_state)
        if func not in allowed or not isinstance(args, tuple):
            raise RefusedPickle("a tensor rebuilt through {!r:.60}".format(func))
        return func(*args)


def _non_overlapping(size, stride):
    """True when distinct indices address distinct elements (dims sorted by stride nest inside each other)."""
    dims = sorted((st, s) for s, st in zip(size, stride) if s > 1)
    span = 1
    for st, s in dims:
        if st < span:
            return False
        span = st * s
    return True


def read_record(zf, info, limit):
    """The bytes of one zip record, refusing more than `limit` (a deflated record can claim any size)."""
    if info.file_size > limit:
        raise RefusedPickle("record {} is {} bytes (limit {})".format(info.filename, info.file_size, limit))
    out = io.BytesIO()
    with zf.open(info) as f:
        while True:
            chunk = f.read(min(1 << 20, limit + 1 - out.tell()))
            if not chunk:
                break
            out.write(chunk)
            if out.tell() > limit:
                raise RefusedPickle("record {} inflates past {} bytes (a zip bomb?)".format(info.filename, limit))
    return out.getvalue()


_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"  # pickle of torch's legacy magic number


def _classify(path, f):
    head = f.read(512)
    f.seek(0)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    if head.startswith(_LEGACY_MAGIC):
        return "legacy"
    return "unknown"


def _check_directory(f, limits):
    """Bound the zip's central directory from its end records BEFORE zipfile parses it into objects."""
    f.seek(0, os.SEEK_END)
    size = f.tell()
    tail_len = min(size, (1 << 16) + 22)
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    f.seek(0)
    pos = tail.rfind(b"PK\x05\x06")
    if pos < 0 or pos + 22 > len(tail):
        raise RefusedPickle("no zip end-of-directory record (truncated?)")
    entries, cd_size = struct.unpack("<HI", tail[pos + 10:pos + 16])
    if entries == 0xFFFF or cd_size == 0xFFFFFFFF:  # zip64: the real numbers are in the zip64 end record
        loc = tail.rfind(b"PK\x06\x07", 0, pos)
        if loc < 0 or loc + 16 > len(tail):
            raise RefusedPickle("a zip64 archive without its locator")
        (offset,) = struct.unpack("<Q", tail[loc + 8:loc + 16])
        if offset > size:
            raise RefusedPickle("a zip64 end record past the end of the file")
        f.seek(offset)
        record = f.read(56)
        f.seek(0)
        if len(record) < 56 or record[:4] != b"PK\x06\x06":
            raise RefusedPickle("a damaged zip64 end record")
        entries, cd_size = struct.unpack("<QQ", record[32:48])
    if entries > limits.max_records or cd_size > limits.max_directory_bytes:
        raise RefusedPickle("its zip directory lists {} records in {} bytes (limits {} / {})".format(
            entries, cd_size, limits.max_records, limits.max_directory_bytes))


def _refuse_tar(path, f):
    reasons = []
    try:
        with tarfile.open(fileobj=f, mode="r:") as tf:  # headers only, never extracted, never decompressed
            for i, member in enumerate(tf):
                if i > 10_000:
                    break
                if not member.isfile() and not member.isdir():
                    kind = ("FIFO" if member.isfifo() else "symlink" if member.issym() else "hard link" if member.islnk()
                            else "device" if member.isdev() else "non-regular")
                    reasons.append("member {!r} is a {}".format(member.name, kind))
    except (tarfile.TarError, OSError, ValueError) as exc:
        reasons.append("unreadable tar ({})".format(exc))
    detail = "; it holds a non-regular member ({}), which a loader would open or follow".format(reasons[0]) if reasons else ""
    raise CheckpointError(
        "{}: refused: a legacy tar-format PyTorch checkpoint (torch < 0.4){}. Nothing was extracted. "
        "Re-save it with a current torch on a trusted machine, or export the weights as .safetensors.".format(path, detail))


def open_regular(path):
    """Open `path` for reading only if it is a regular file (a FIFO named best.pt would block forever)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise CheckpointError("{}: cannot read the checkpoint ({})".format(path, exc.strerror or exc)) from None
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError("{}: not a regular file; give the path of a checkpoint file".format(path))
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped between stat and open
        os.close(fd)
        raise CheckpointError("{}: not a regular file".format(path))
    return os.fdopen(fd, "rb")


def load(path, limits=DEFAULT_LIMITS):
    """Unpickle the object `torch.save` wrote to `path`, never running code from it. -> object."""
    path = os.fspath(path)
    with open_regular(path) as f:
        kind = _classify(path, f)
        if kind == "tar":
            _refuse_tar(path, f)
        if kind == "legacy":
            raise CheckpointError(
                "{}: refused: a legacy (torch < 1.6) pickle-stream checkpoint; defectrt reads only the zip format "
                "torch has written since 1.6. Re-save it (torch.save) on a trusted machine.".format(path))
        if kind != "zip":
            raise CheckpointError(
                "{}: not a readable PyTorch checkpoint (neither the zip format of torch.save nor safetensors); "
                "is the file truncated or of another kind?".format(path))
        try:
            _check_directory(f, limits)
            with zipfile.ZipFile(f) as zf:
                return _load_zip(path, zf, limits)
        except CheckpointError:
            raise
        except RefusedPickle as exc:
            raise CheckpointError(
                "{}: refused to load: {}. This file is not a plain checkpoint; nothing from it was executed. "
                "Ask for the weights as .safetensors or re-export them from a trusted machine.".format(path, exc)
            ) from None
        except MemoryError:
            raise CheckpointError("{}: refused: reading it ran out of memory".format(path)) from None
        except RecursionError:
            raise CheckpointError("{}: refused: its pickle nests too deeply".format(path)) from None
        except Exception as exc:  # noqa: BLE001 - any malformed input becomes one clear error
            msg = str(exc).splitlines()[0] if str(exc) else ""
            raise CheckpointError(
                "{}: not a readable PyTorch checkpoint ({}: {:.200}); is the file truncated or of another kind?".format(
                    path, type(exc).__name__, msg)
            ) from None


def _load_zip(path, zf, limits):
    infos = zf.infolist()
    if len(infos) > limits.max_records:
        raise RefusedPickle("the archive has {} records (limit {})".format(len(infos), limits.max_records))
    names = [i.filename for i in infos]
    script = [n for n in names if n.endswith("constants.pkl") or "/code/" in n or n.startswith("code/")
              or n.endswith(".data/extern_modules") or "/.data/ts_code/" in n]
    if script:
        raise CheckpointError(
            "{}: refused: a TorchScript / torch.package archive (it has {}), which runs its own code when "
            "loaded; nothing from it was executed. Give the training checkpoint (best.pt written by training) "
            "or the weights as .safetensors.".format(path, script[0]))
    pkls = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pkls) != 1 or "data.pkl" in names:
        raise RefusedPickle("expected one <archive>/data.pkl record, found {}".format(len(pkls)))
    prefix = pkls[0][: -len("data.pkl")]
    if any(not n.startswith(prefix) for n in names):
        raise RefusedPickle("records outside the archive folder {}".format(prefix))
    order = prefix + "byteorder"
    if order in names and read_record(zf, zf.getinfo(order), 16).strip() not in (b"little", b""):
        raise RefusedPickle("big-endian storages are not supported")
    data = read_record(zf, zf.getinfo(pkls[0]), limits.max_pickle_bytes)
    reader = TorchZipReader(path, zf, prefix, limits)
    return SafeUnpickler(io.BytesIO(data), reader=reader).load()
