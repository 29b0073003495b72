"""Safe output handling shared by every command: never clobber, never leave half-written files."""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile

from defectrt.errors import OutputExistsError, UserInputError


def check_output(path, force=False):
    """Refuse to replace an existing output unless `force`; check the folder can be written."""
    path = os.fspath(path)
    if os.path.exists(path) and not force:
        raise OutputExistsError("{} already exists; pass --force (force=True) to replace it".format(path))
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as exc:
            raise UserInputError("cannot create the output folder {}: {}".format(parent, exc.strerror))
    if not os.access(parent, os.W_OK):
        raise UserInputError("cannot write to {}: the folder is not writable".format(parent))
    return path


@contextlib.contextmanager
def atomic_path(path, force=False):
    """Yield a temporary file path beside `path`; it replaces `path` only if the block succeeds."""
    path = check_output(path, force)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=os.path.dirname(os.path.abspath(path)))
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; give the file the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path, data, force=False):
    with atomic_path(path, force) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


@contextlib.contextmanager
def atomic_dir(path, force=False):
    """Yield a temporary folder beside `path`; it becomes `path` only if the block succeeds.

    A failed build therefore leaves nothing behind, and an existing folder is replaced (with
    `force`) only once the new one is complete.
    """
    path = check_output(path, force)
    tmp = tempfile.mkdtemp(prefix=".tmp-", suffix=os.path.basename(path), dir=os.path.dirname(os.path.abspath(path)))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; a bundle is meant to be shared
    try:
        yield tmp
        if os.path.exists(path):
            old = tmp + ".old"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True) if os.path.isdir(old) else os.remove(old)
        else:
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def sha256_file(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
