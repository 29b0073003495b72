"""A DeepStream Gst-nvinfer config and label file for a bundle (no torch, Python 3.8).

The bundle's pre-processing in nvinfer's keys: y = net-scale-factor * (x - offsets), so 1/255 and offsets 0
give the [0, 1] input; model-color-format=0 is RGB; maintain-aspect-ratio=1 with symmetric-padding=1 is the
centred letterbox. Unverified on hardware: no DeepStream here. Known differences from defectrt's letterbox:
nvinfer pads with black, not grey 114, and scales with its own interpolation; and the network's raw output
(B, 4 + nc, A) needs a custom bounding-box parser library (parse-bbox-func-name / custom-lib-path), which
defectrt does not ship: the two keys are written commented out for the user to fill in.
"""
from __future__ import annotations

import os

from defectrt import __version__
from defectrt.errors import UserInputError
from defectrt.runtime.bundle import Batch, EngineRecord, Manifest, Thresholds

CONFIG = "deepstream_nvinfer.txt"
LABELS = "labels.txt"
_NETWORK_MODE = {"fp32": 0, "int8": 1, "fp16": 2}


def nvinfer_config(manifest, model_dir="", bundle_name="bundle"):
    """Manifest -> (config text, labels text). model_dir prefixes the model / engine paths ('' = beside the config)."""
    names = {int(k): str(v) for k, v in manifest.class_names.items()}
    if not names:
        raise UserInputError("the bundle's manifest has no class names; DeepStream needs them for its label file")
    h, w = (int(v) for v in manifest.imgsz)
    batch = manifest.batch or Batch()
    thresholds = manifest.thresholds or Thresholds()
    engine = manifest.engine or EngineRecord()
    lines = [
        "# DeepStream Gst-nvinfer config for {}, written by defectrt {}.".format(bundle_name, __version__),
        "# UNVERIFIED ON HARDWARE. Pre-processing as the bundle's: x / 255, RGB, centred letterbox (nvinfer pads",
        "# with black where defectrt pads with 114). The raw output (B, {}, A) needs a bounding-box parser".format(
            4 + len(names)),
        "# library: set parse-bbox-func-name and custom-lib-path below to one that reads that layout.",
        "[property]",
        "gpu-id=0",
        "net-scale-factor=0.00392156862745098",
        "offsets=0;0;0",
        "model-color-format=0",
        "onnx-file={}".format(os.path.join(model_dir, manifest.model)),
    ]
    if engine.file:
        lines.append("model-engine-file={}".format(os.path.join(model_dir, engine.file)))
    lines += [
        "labelfile-path={}".format(LABELS),
        "infer-dims=3;{};{}".format(h, w),
        "batch-size={}".format(int((batch.max if batch.dynamic else batch.size) or 1)),
        "network-mode={}".format(_NETWORK_MODE.get(manifest.precision or "fp32", 0)),
        "num-detected-classes={}".format(len(names)),
        "interval=0",
        "gie-unique-id=1",
        "process-mode=1",
        "network-type=0",
        "cluster-mode=2",
        "maintain-aspect-ratio=1",
        "symmetric-padding=1",
        "#parse-bbox-func-name=",
        "#custom-lib-path=",
        "",
        "[class-attrs-all]",
        "pre-cluster-threshold={}".format(thresholds.value("conf", 0.25)),
        "nms-iou-threshold={}".format(thresholds.value("iou", 0.45)),
        "topk={}".format(thresholds.value("max_det", 300)),
    ]
    labels = "".join(names.get(i, "class{}".format(i)) + "\n" for i in range(max(names) + 1))
    return "\n".join(lines) + "\n", labels


def write_beside(folder, manifest):
    """Write the config and label file into a bundle folder being built (its files are hashed afterwards)."""
    config, labels = nvinfer_config(manifest, "", os.path.basename(os.path.normpath(folder)))
    for name, text in ((CONFIG, config), (LABELS, labels)):
        with open(os.path.join(folder, name), "w") as f:
            f.write(text)


def write_for_bundle(bundle, output=None, force=False):
    """`defectrt export deepstream BUNDLE [-o DIR]`: -> the paths written (the bundle folder by default)."""
    from defectrt.fileio import atomic_path
    manifest = Manifest.read(bundle)
    out = output or bundle
    os.makedirs(out, exist_ok=True)
    same = os.path.abspath(out) == os.path.abspath(bundle)
    config, labels = nvinfer_config(manifest, "" if same else os.path.abspath(bundle),
                                    os.path.basename(os.path.normpath(bundle)))
    paths = []
    for name, text in ((CONFIG, config), (LABELS, labels)):
        path = os.path.join(out, name)
        with atomic_path(path, force=force) as tmp:
            with open(tmp, "w") as f:
                f.write(text)
        paths.append(path)
    return paths
