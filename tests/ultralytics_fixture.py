"""Write Ultralytics-structured `best.pt` files for tests, without Ultralytics.

Each module of one of our models is re-classed to a stand-in class whose pickled path is the one
Ultralytics (or a fork) uses, registered in sys.modules only while torch.save runs. The file then
looks to a loader exactly like a training team's checkpoint: classes under ultralytics.*, FP16
weights, the `yaml` and `names` attributes on the pickled DetectionModel.
"""
import contextlib
import sys
import types

import torch

# Our class name -> the module path it has in Ultralytics or in the forks that add the papers' blocks.
PICKLE_PATHS = {
    "DetectionModel": "ultralytics.nn.tasks",
    "Conv": "ultralytics.nn.modules.conv",
    "DWConv": "ultralytics.nn.modules.conv",
    "GhostConv": "ultralytics.nn.modules.conv",
    "Concat": "ultralytics.nn.modules.conv",
    "Bottleneck": "ultralytics.nn.modules.block",
    "C2f": "ultralytics.nn.modules.block",
    "C3": "ultralytics.nn.modules.block",
    "C3k": "ultralytics.nn.modules.block",
    "C3k2": "ultralytics.nn.modules.block",
    "SPPF": "ultralytics.nn.modules.block",
    "C2PSA": "ultralytics.nn.modules.block",
    "PSABlock": "ultralytics.nn.modules.block",
    "Attention": "ultralytics.nn.modules.block",
    "GhostBottleneck": "ultralytics.nn.modules.block",
    "C3k2Ghost": "ultralytics.nn.extra_modules.ghost",
    "C3kGhost": "ultralytics.nn.extra_modules.ghost",
    "Detect": "ultralytics.nn.modules.head",
    "DFL": "ultralytics.nn.modules.block",
    "DySample": "ultralytics.nn.extra_modules.dysample",
    "DySampleSampler": "ultralytics.nn.extra_modules.dysample",
    "EUCB": "ultralytics.nn.extra_modules.emcad",
    "MSFA": "ultralytics.nn.extra_modules.msfa",
}


@contextlib.contextmanager
def _fake_ultralytics(model):
    created, originals = {}, []
    try:
        for m in model.modules():
            cls = type(m)
            path = PICKLE_PATHS.get(cls.__name__)
            if path is None or not cls.__module__.startswith("defectrt"):
                continue
            key = (path, cls.__name__)
            if key not in created:
                created[key] = type(cls.__name__, (cls,), {"__module__": path})
                parts = path.split(".")
                for i in range(1, len(parts) + 1):
                    sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
                setattr(sys.modules[path], cls.__name__, created[key])
            originals.append((m, cls))
            m.__class__ = created[key]
        yield
    finally:
        for m, cls in originals:
            m.__class__ = cls
        for name in [n for n in sys.modules if n == "ultralytics" or n.startswith("ultralytics.")]:
            del sys.modules[name]


def write_ultralytics_checkpoint(model, path, key="model"):
    """torch.save a dict shaped like Ultralytics' `best.pt` (FP16 model under `key`)."""
    import copy

    half = copy.deepcopy(model).half().eval()
    yaml = dict(half.yaml)
    yaml.pop("variant", None)  # real files carry no variant name
    # Ultralytics keeps the yaml's arguments as written: None is the string 'None' in a real best.pt.
    yaml["backbone"], yaml["head"] = (
        [[f, n, m, ["None" if a is None else a for a in args]] for f, n, m, args in yaml[part]] for part in ("backbone", "head")
    )
    half.yaml = yaml
    ckpt = {
        "date": "2026-11-21T00:00:00",
        "version": "8.3.0",
        "license": "AGPL-3.0 License (https://ultralytics.com/license)",
        "epoch": -1,
        "best_fitness": None,
        "model": None,
        "ema": None,
        "updates": None,
        "optimizer": None,
        "train_args": {"imgsz": 640, "epochs": 100},
    }
    ckpt[key] = half
    with _fake_ultralytics(half):
        torch.save(ckpt, path)
    return path
