"""The zoo table behind `defectrt models`: parameters and GFLOPs per variant, fast (issue 19).

Computing GFLOPs builds and traces every model (minutes for the 30-row default table on a small CPU), so the
figures of the default settings (nc=80, 640x640) are computed once from the models themselves and shipped in
``zoo_complexity.json``; anything not in it (another --nc / --imgsz, a new variant) is computed on demand with
a progress bar, and `test_models.py` recomputes a cached row to prove the file still matches the code.

This module imports no torch unless a row must be computed: the cached table prints in about a second.
Regenerate after changing a model:  python -m defectrt.zoo_table --write-cache
"""
from __future__ import annotations

import json
import os
import sys

CACHE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "zoo_complexity.json")


def _key(name, nc, imgsz):
    return "{}|nc={}|{}x{}".format(name, nc, imgsz[0], imgsz[1])


def _read(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def load_cache(path=CACHE):
    return _read(path).get("rows", {})


def zoo_names(path=CACHE):
    """The registry's names in its order: from the cache (no torch), else from the registry itself."""
    names = _read(path).get("names")
    if names:
        return list(names)
    from defectrt.models.registry import available

    return available()


def compute_row(name, nc=80, imgsz=(640, 640)):
    from defectrt.models import create
    from defectrt.models.complexity import count_parameters, gflops

    model = create(name, nc=nc)
    return {"model": name, "params": count_parameters(model), "gflops": round(gflops(model, tuple(imgsz)), 2)}


def table(imgsz=(640, 640), nc=80, scales="nsmlx", variants=None, recompute=False, cache=None):
    """Rows {model, params, gflops} for the selected variants; cached rows unless `recompute`."""
    from defectrt import progress

    imgsz = (imgsz, imgsz) if isinstance(imgsz, int) else tuple(imgsz)
    names = list(variants) if variants else [n for n in zoo_names() if n[6] in scales]
    cached = {} if recompute else (load_cache() if cache is None else cache)
    rows, missing = {}, []
    for name in names:
        row = cached.get(_key(name, nc, imgsz))
        if row is not None:
            rows[name] = dict(row, model=name)
        else:
            missing.append(name)
    for name in progress.bar(missing, desc="computing GFLOPs", unit="model"):
        rows[name] = compute_row(name, nc, imgsz)
    return [rows[n] for n in names]


def write_cache(path=CACHE, nc=80, imgsz=(640, 640)):
    from defectrt.models.registry import available

    rows = {}
    for name in available():
        rows[_key(name, nc, imgsz)] = {k: v for k, v in compute_row(name, nc, imgsz).items() if k != "model"}
        print(name, rows[_key(name, nc, imgsz)], file=sys.stderr)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"how": "python -m defectrt.zoo_table --write-cache (BN fused, FlopCounterMode)",
                   "names": available(), "rows": rows},
                  f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


if __name__ == "__main__":
    if "--write-cache" in sys.argv:
        write_cache()
