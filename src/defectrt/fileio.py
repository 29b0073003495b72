"""Safe output handling shared by every command: never clobber, never leave half-written files.

Three rules, each for a way users lose data:
- An existing output is replaced only with `force`, and a FOLDER only when this tool wrote it: the caller
  passes `ours(folder) -> None | reason`, and without it only an empty folder may go. `--force` on a
  dataset or a home folder is therefore refused with the reason, never carried out.
- Outputs are built under a temporary name beside the target (`.tmp-<pid>-...`) and moved in place only
  when complete. SIGTERM is turned into an exception while such a temporary exists, so the `finally`
  that removes it runs (SIGINT already raises KeyboardInterrupt).
- Leftovers of a run that was killed outright (SIGKILL, power loss) carry the dead process' id in their
  name; the next write to the same target removes them. Those of a live process are left alone.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import tempfile
import threading

from defectrt.errors import OutputExistsError, UserInputError

TMP_PREFIX = ".tmp-"
_TMP_NAME = re.compile(r"^\.tmp-(\d+)-")
# issue 19: what to do when an output's folder cannot be written (a read-only share, a root-owned folder)
_CHOOSE = "choose an output path in a folder you can write to"
_CHOOSE_SAVE_DIR = "choose another --save-dir, in a folder you can write to"


def check_output(path, force=False, ours=None):
    """Refuse to replace an existing output unless `force` (and, for a folder, unless `ours` allows it);
    check the folder can be written."""
    path = os.fspath(path)
    if os.path.lexists(path):
        if not force:
            raise OutputExistsError("{} already exists; pass --force (force=True) to replace it".format(path))
        why = replace_refusal(path, ours)
        if why:
            raise OutputExistsError("{}: --force refused: {}. Choose another output path, or move it away "
                                    "yourself if it really should go".format(path, why))
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as exc:
            raise UserInputError("cannot create the output folder {}: {} ({})".format(parent, exc.strerror, _CHOOSE))
    if not os.access(parent, os.W_OK):
        raise UserInputError("cannot write to {}: the folder is not writable ({}, or make this one "
                             "writable)".format(parent, _CHOOSE))
    return path


def replace_refusal(path, ours=None):
    """-> None when `path` may be replaced, else the reason it may not (for the error message)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return "it is a symbolic link (defectrt writes no links)"
    if stat.S_ISDIR(st.st_mode):
        if ours is not None:
            return ours(path)
        try:
            entries = os.listdir(path)
        except OSError as exc:
            return "it is a folder that cannot be listed ({})".format(exc.strerror)
        return "it is a folder with {} entries that defectrt did not write".format(len(entries)) if entries else None
    if not stat.S_ISREG(st.st_mode):
        return "it is not a regular file"
    if ours is not None:
        return ours(path)
    return None


def foreign_entries(folder, is_ours, limit=5):
    """Relative paths under `folder` (not followed through links) for which `is_ours(rel)` is False.

    Stops after `limit` finds: enough for an error message, and bounded on a huge folder. `rel` uses "/".
    """
    found = []
    for root, dirs, files in os.walk(folder):
        for name in sorted(files) + sorted(d for d in dirs if os.path.islink(os.path.join(root, d))):
            rel = os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/")
            if not is_ours(rel):
                found.append(rel)
                if len(found) >= limit:
                    return found
        dirs[:] = sorted(d for d in dirs if not os.path.islink(os.path.join(root, d)))
    return found


def describe_foreign(found, what):
    """A reason for replace_refusal from foreign_entries' result (None when there are none)."""
    if not found:
        return None
    return "it holds files that are not part of {} ({}{})".format(
        what, ", ".join(found[:4]), ", ..." if len(found) > 4 else "")


@contextlib.contextmanager
def atomic_path(path, force=False, ours=None):
    """Yield a temporary file path beside `path`; it replaces `path` only if the block succeeds."""
    ours = ours or _not_a_folder
    path = check_output(path, force, ours)
    parent = os.path.dirname(os.path.abspath(path))
    clean_stale_temporaries(parent, os.path.basename(path))
    tmp = None
    with terminate_raises():  # before the temporary exists: a SIGTERM at any point runs the finally below
        try:
            fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(), suffix=os.path.basename(path), dir=parent)
            os.close(fd)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; give the file the usual permissions
            yield tmp
            if os.path.lexists(path):
                check_output(path, force, ours)  # it may have changed while we worked
            os.replace(tmp, path)
        finally:
            if tmp is not None and os.path.lexists(tmp):
                _remove(tmp)


def _not_a_folder(path):
    return "it is a folder, and the output is a file" if os.path.isdir(path) else None


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path, data, force=False):
    with atomic_path(path, force) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


@contextlib.contextmanager
def atomic_dir(path, force=False, ours=None):
    """Yield a temporary folder beside `path`; it becomes `path` only if the block succeeds.

    A failed or interrupted build therefore leaves nothing behind, and an existing folder is replaced
    (with `force`, and only when `ours(path)` returns None; without `ours` only an empty folder) once the
    new one is complete.
    """
    path = check_output(path, force, ours)
    parent = os.path.dirname(os.path.abspath(path))
    clean_stale_temporaries(parent, os.path.basename(path))
    tmp = old = None
    with terminate_raises():  # before the temporary exists: a SIGTERM at any point runs the finally below
        try:
            tmp = tempfile.mkdtemp(prefix=_tmp_prefix(), suffix=os.path.basename(path), dir=parent)
            old = tmp + ".old"
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; a bundle is meant to be shared
            yield tmp
            if os.path.lexists(path):
                check_output(path, force, ours)  # the user may have put files there while we worked
                os.replace(path, old)
                os.replace(tmp, path)
                _remove(old)
            else:
                os.replace(tmp, path)
        finally:
            if old is not None and os.path.lexists(old) and not os.path.lexists(path):
                os.replace(old, path)  # interrupted between the two renames: put the previous one back
            for leftover in (tmp, old):
                if leftover is not None and os.path.lexists(leftover):
                    _remove(leftover)


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            os.remove(path)


def _tmp_prefix():
    return "{}{}-".format(TMP_PREFIX, os.getpid())


def is_temporary(name):
    """True for the names atomic_path / atomic_dir use: readers of a folder skip them."""
    return os.path.basename(name).startswith(TMP_PREFIX)


def _pid_alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM  # exists, owned by someone else
    return True


def clean_stale_temporaries(parent, basename):
    """Remove `.tmp-<pid>-...<basename>` entries in `parent` whose process no longer runs.

    Only our own naming pattern for this very target is touched; a live process' temporaries stay.
    """
    try:
        names = os.listdir(parent)
    except OSError:
        return []
    removed = []
    for name in names:
        m = _TMP_NAME.match(name)
        if not m or not (name.endswith(basename) or name.endswith(basename + ".old")):
            continue
        if not _pid_alive(int(m.group(1))):
            _remove(os.path.join(parent, name))
            removed.append(name)
    return removed


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived while an output was being written (raised so that clean-up code runs)."""


@contextlib.contextmanager
def terminate_raises():
    """Within the block, SIGTERM raises Terminated instead of ending the process on the spot.

    Only in the main thread (Python delivers signals there) and only when nobody else installed a
    SIGTERM handler; the previous handler is restored afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except (AttributeError, ValueError):
        previous = None
    if previous is not signal.SIG_DFL:  # someone else handles it (or we already do, in an outer block)
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_terminated(signum, frame):
    raise Terminated("terminated by signal {}".format(signum))


RUN_MARKER = ".defectrt-run.json"


def _marked_files(folder):
    """Names a run folder's marker says this tool wrote there (empty when there is no valid marker)."""
    try:
        with open(os.path.join(folder, RUN_MARKER), "rb") as f:
            data = f.read(1 << 22)
        files = json.loads(data.decode("utf-8")).get("files", [])
    except (OSError, ValueError, AttributeError, RecursionError):
        return set()
    return {n for n in files if isinstance(n, str)} if isinstance(files, list) else set()


def claim_outputs(folder, names, force=False, input_dirs=(), tool="defectrt"):
    """Check that a run may write files `names` into run folder `folder`, and record them there first.

    - `folder` is never the folder of an input (`input_dirs`): a run never writes beside what it reads,
      with or without --force.
    - An existing file is replaced only with `force` AND when the folder's marker (RUN_MARKER) lists it,
      i.e. an earlier run of this tool wrote it; a user's file of the same name is refused.
    The marker lists the names before any is written, so an interrupted run's files stay replaceable.
    """
    folder = os.path.abspath(os.fspath(folder))
    real = os.path.realpath(folder)
    for d in input_dirs:
        if os.path.realpath(os.fspath(d)) == real:
            raise UserInputError("--save-dir {}: it is the folder of the input, and {} never writes beside its "
                                 "inputs (an annotated image would replace the original); choose another "
                                 "folder".format(folder, tool))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise UserInputError("cannot create the output folder {}: {} ({})".format(
            folder, exc.strerror, _CHOOSE_SAVE_DIR))
    if not os.access(folder, os.W_OK):
        raise UserInputError("cannot write to {}: the folder is not writable ({}, or make this one "
                             "writable)".format(folder, _CHOOSE_SAVE_DIR))
    ours = _marked_files(folder)
    for name in names:
        path = os.path.join(folder, name)
        if os.path.lexists(path) and force and name not in ours:
            why = replace_refusal(path) or "{} did not write it (it is not listed in {})".format(tool, RUN_MARKER)
            raise OutputExistsError("{}: --force refused: {}. Choose another --save-dir, or move the file away "
                                    "yourself".format(path, why))
        check_output(path, force)
    marker = {"tool": tool, "files": sorted(ours | set(names))}
    with atomic_path(os.path.join(folder, RUN_MARKER), force=True) as tmp:
        with open(tmp, "w") as f:
            json.dump(marker, f, indent=1)
    return [os.path.join(folder, n) for n in names]


def next_run_dir(project, name, option="--project"):
    """Create and return PROJECT/NAME, or NAME2, NAME3, ... if it exists (never an existing folder).

    option: the command's flag that chooses another place, for the error message."""
    try:
        os.makedirs(project, exist_ok=True)
    except OSError as exc:
        raise UserInputError("cannot create the project folder {}: {} (run from a folder you can write to, or "
                             "choose the output with {})".format(os.path.abspath(project), exc.strerror, option))
    for n in range(1, 100000):
        path = os.path.join(project, name if n == 1 else "{}{}".format(name, n))
        try:
            os.makedirs(path)  # atomic: two runs starting together still get different folders
        except FileExistsError:
            continue
        return path
    raise UserInputError("{}: too many runs named {}".format(project, name))


def sha256_file(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
