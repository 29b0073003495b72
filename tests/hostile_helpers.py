"""Helpers for the hostile-input tests: a bounded subprocess, and a digest of a folder tree."""
import hashlib
import os
import subprocess
import sys

import onnx

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")
MEMORY_LIMIT = 1536 << 20  # imports need ~0.6 GB of address space; a 18 GB blob or a 1e9 table would not fit


def run_bounded(code, timeout=90, memory=MEMORY_LIMIT):
    """Run `code` in a fresh Python under RLIMIT_AS and a timeout; -> CompletedProcess (text)."""
    prelude = ("import resource\nresource.setrlimit(resource.RLIMIT_AS, ({0}, {0}))\n".format(int(memory)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, HERE]), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=timeout,
                          env=env)


def tree_digest(root):
    """{relative path: sha256 | "<dir>" | "<link> target"} of everything under root (links not followed)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            if os.path.islink(full):
                out[rel] = "<link> " + os.readlink(full)
            elif os.path.isdir(full):
                out[rel] = "<dir>"
            else:
                with open(full, "rb") as f:
                    out[rel] = hashlib.sha256(f.read()).hexdigest()
    return out


def set_metadata(model, **meta):
    """Replace (or add) metadata_props of an ONNX ModelProto; returns it."""
    keep = [p for p in model.metadata_props if p.key not in meta]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for k, v in meta.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    return model
