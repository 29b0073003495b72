"""TensorRT engine building: the one place on the export side that talks to TensorRT.

UNVERIFIED ON HARDWARE: no machine this project is developed and tested on has TensorRT or a GPU.
The code follows the headers and Python API surface of each version (../shared/third_party/tensorrt,
../shared/notes/trt-python-api, checked in CI by tests/test_trt_truth.py); its behaviour is tested
against fakes, and the real-build tests are marked `tensorrt` and skipped where TensorRT is absent.

Which API each version gets is decided once, by defectrt.trt_compat.flavour(trt.__version__):
- Strongly typed network (precision taken from the graph: AutoCast FP16 / Q/DQ INT8) on 11.x, where the
  precision flags are gone, and from 10.12 for bundles whose precision is in the graph (all of ours), where
  the flags, OBEY/PREFER, set_precision and set_output_type are deprecated ("Superseded by strong typing",
  NvInfer.h 10.16).
- Otherwise (8.x, 10.0-10.11): builder flags. FP16 for fp16; INT8 *and* FP16 for int8 (explicit Q/DQ,
  FP16 so un-quantized layers do not fall back to FP32). The DySample FP32 island (ONNX node names with
  "/sampler/") is pinned to FP32 with OBEY_PRECISION_CONSTRAINTS (8.2+; STRICT_TYPES on 8.0/8.1) -
  only the layers that compute floats (see _pin_island_fp32).
- Polygraphy's loaders (NetworkFromOnnxPath / CreateConfig / EngineBytesFromNetwork, polygraphy>=0.49.9)
  from 8.5 on; the raw builder API on 8.0-8.4 (JetPack 4.6 / 5.0). DLA is configured by us on both paths.
Each build phase prints one progress line (a Jetson Nano build takes many minutes; none at -q); from 10.0 on,
TensorRT's own phases and steps show as nested bars and Ctrl-C stops the build at its next step
(export.build_progress). The timing cache is loaded and saved when a path is given; the workspace defaults to
a cap that fits 4 GB devices.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import time

from defectrt import progress as progress_levels
from defectrt import trt_compat
from defectrt.errors import BackendUnavailable, RuntimeFailure, UserInputError
from defectrt.export import build_progress
from defectrt.export.islands import ISLAND_MARK

# The device side owns TensorRT discovery, plugin loading and the GPU identity; the builder reuses them so an
# engine records exactly what the runtime later compares against.
from defectrt.runtime.tensorrt_backend import (  # noqa: F401  (re-exported for the export side)
    _logger,
    gpu_identity,
    import_tensorrt,
    load_plugin_libraries,
    parse_version,
)

# Default workspace: 1 GiB fits a 4 GB Jetson Nano (CPU and GPU share its memory) and is plenty for YOLO11;
# pass --workspace to raise it on bigger devices.
DEFAULT_WORKSPACE = "1G"
WORKSPACE_CAP_SMALL_DEVICE = 1 << 30


def parse_size(text):
    """'2G', '512M', '1073741824' -> bytes (for --workspace)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B?|B)?\s*", str(text), re.I)
    if not m:
        raise UserInputError("--workspace {!r}: expected a size such as 2G, 512M or a byte count".format(text))
    unit = (m.group(2) or "B").upper()[0]
    return int(float(m.group(1)) * {"B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[unit])


def resolve_workspace(workspace=None, device_memory=None):
    """--workspace -> bytes. None / "auto": DEFAULT_WORKSPACE, and never more than a quarter of the device's
    memory when that is known (a 4 GB Jetson shares it with the OS and the application)."""
    if workspace in (None, "", "auto"):
        size = parse_size(DEFAULT_WORKSPACE)
        if device_memory:
            size = min(size, max(256 << 20, int(device_memory) // 4))
        return size
    return parse_size(workspace)


def device_memory_bytes(environment=None):
    """Memory the engine competes for, or None: a Jetson's RAM (CPU and GPU share it), else GPU 0's memory
    from nvidia-smi. Never raises. UNVERIFIED ON HARDWARE."""
    try:
        if environment is None:
            from defectrt.bench import environment
        if environment.is_jetson():
            total = environment.memory_info().get("total_bytes")
            return int(total) if isinstance(total, int) else None
        gpus = environment.gpu_info()
        if isinstance(gpus, list) and gpus:
            return int(float(gpus[0]["memory_total_mib"])) << 20
    except Exception:  # unknown memory: the plain default applies
        pass
    return None


class Progress(object):
    """One line per build phase on stderr: '[engine 2/5 +0.4s] parse model.onnx'."""

    PHASES = ("load plugins", "parse", "configure", "build (minutes on a Jetson; the timing cache shortens rebuilds)",
              "write")

    def __init__(self, out=None, enabled=None):
        self.out = out if out is not None else sys.stderr
        self.enabled = progress_levels.verbosity() > progress_levels.QUIET if enabled is None else enabled  # -q
        self.t0 = time.time()
        self.lines = []

    def __call__(self, phase, detail=""):
        i = self.PHASES.index(phase) + 1
        line = "[engine {}/{} +{:.1f}s] {}{}".format(i, len(self.PHASES), time.time() - self.t0, phase,
                                                     ": " + detail if detail else "")
        self.lines.append(line)
        if self.enabled:
            print(line, file=self.out, flush=True)


def build_engine(onnx_path, engine_path, precision="fp32", batch=(1, 1, 1), imgsz=(640, 640), workspace=None,
                 timing_cache=None, dla_core=None, plugins=(), input_name="images", force=False,
                 precision_in_graph=True, progress=None, trt=None):
    """Build a serialized engine from `onnx_path`; returns the engine record for the manifest.

    batch = (min, opt, max) for the optimisation profile (all equal for a fixed batch). precision_in_graph:
    the ONNX file carries its precision (AutoCast / Q/DQ; true for every defectrt bundle), which lets
    10.12+ build strongly typed. UNVERIFIED ON HARDWARE.
    """
    trt = trt or import_tensorrt()
    if trt is None:
        raise BackendUnavailable("TensorRT is not installed here; build the engine on the device (JetPack provides it), "
                                 "or run the bundle's build_engine.sh there")
    from defectrt.fileio import atomic_write_bytes, check_output

    check_output(engine_path, force)
    flav = trt_compat.flavour(trt.__version__)
    say = progress if progress is not None else Progress()
    strongly = trt_compat.use_strongly_typed(flav, precision_in_graph)
    auto = workspace in (None, "", "auto")
    options = dict(precision=precision, batch=batch, imgsz=imgsz,
                   workspace=resolve_workspace(workspace, device_memory_bytes() if auto else None),
                   timing_cache=timing_cache, dla_core=dla_core, input_name=input_name, strongly_typed=strongly)
    logger = _logger(trt)
    t0 = time.time()
    say("load plugins", ", ".join(os.path.basename(p) for p in plugins or ()) or "built-in only")
    load_plugin_libraries(trt, logger, plugins)
    if flav.polygraphy_build:
        data = _build_with_polygraphy(trt, flav, logger, onnx_path, options, say)
    else:
        data = _build_raw(trt, flav, logger, onnx_path, options, say)
    if data is None:
        raise RuntimeFailure("TensorRT {} failed to build {} (see the TensorRT log above; a smaller --workspace or "
                             "--imgsz can help when it ran out of memory)".format(trt.__version__, onnx_path))
    say("write", engine_path)
    atomic_write_bytes(engine_path, bytes(data), force=force)
    record = {
        "file": os.path.basename(engine_path),
        "tensorrt_version": trt.__version__,
        "precision": precision,
        "strongly_typed": strongly,
        "batch": {"min": batch[0], "opt": batch[1], "max": batch[2]},
        "dla_core": dla_core,
        "workspace_bytes": options["workspace"],
        "build_seconds": round(time.time() - t0, 1),
        "plugins": [os.path.basename(p) for p in plugins or ()],
    }
    record.update(gpu_identity())
    return record


# ------------------------------------------------------------------------------------ network

def _island_layers(network):
    return [network.get_layer(i) for i in range(network.num_layers) if ISLAND_MARK in network.get_layer(i).name]


def _unpinnable_layer_types(trt, flav):
    """Layers that never get a precision: SHAPE (its output is always an index type: 'the output type of all
    layers that are shape operations must be DataType::kINT32', NvInfer.h 8.0 ILayer::setOutputType),
    CONSTANT (typed by its weights), IDENTITY (8.0-8.5 parse ONNX Cast as an identity layer typed only by
    setOutputType: pinning it would turn the index casts into float) and CAST (8.6+; its output type is its
    `to`, and OBEY makes a float pin on an integer cast fail the build)."""
    types = [trt.LayerType.SHAPE, trt.LayerType.CONSTANT, trt.LayerType.IDENTITY]
    if flav.cast_layer:
        types.append(trt.LayerType.CAST)
    return types


@trt_compat.only_with("precision_flags")
def _pin_island_fp32(trt, flav, network):
    """Pin the DySample island's float layers to FP32; -> the names pinned.

    Only layers whose every output is FLOAT or HALF: the lowered island also computes gather indices
    (Cast to INT64, Shape, Range, integer Add/Mul/Min/Gather/Reshape); a float pin on those breaks the build
    under OBEY (8.6+) or silently turns indices into floats (8.0-8.5)."""
    skip = _unpinnable_layer_types(trt, flav)
    floats = (trt.DataType.FLOAT, trt.DataType.HALF)
    pinned = []
    for layer in _island_layers(network):
        if layer.type in skip or layer.num_outputs == 0:
            continue
        outputs = [layer.get_output(j) for j in range(layer.num_outputs)]
        if any(t.dtype not in floats for t in outputs):
            continue
        layer.precision = trt.DataType.FLOAT
        for j in range(layer.num_outputs):
            layer.set_output_type(j, trt.DataType.FLOAT)
        pinned.append(layer.name)
    return pinned


def _parser_errors(trt, flav, parser):
    """The ONNX parser's errors, each with the node it failed on (index, and name / op from 10.0)."""
    out = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        where = "node {}".format(err.node())
        if flav.parser_node_name:
            where = "node {} ({}, {})".format(err.node(), err.node_name() or "unnamed", err.node_operator())
        out.append("{}: {}".format(where, err.desc()))
    return out


def _network_flags(trt, flav, strongly_typed):
    flags = 0
    if flav.explicit_batch_flag:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return flags


def _parse_raw(trt, flav, logger, onnx_path, strongly_typed):
    """-> (builder, network, parser), or UserInputError naming the node the parser stopped at."""
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt, flav, strongly_typed))
    parser = trt.OnnxParser(network, logger)
    with open(onnx_path, "rb") as f:
        ok = parser.parse(f.read())
    if not ok:
        raise UserInputError(_parse_failure(trt, onnx_path, _parser_errors(trt, flav, parser)))
    return builder, network, parser


def _parse_failure(trt, onnx_path, errors):
    return ("TensorRT {}'s ONNX parser cannot take {}: {}. Check the model for this version first: defectrt export "
            "check {} --target-trt {}".format(trt.__version__, onnx_path, "; ".join(errors) or "no error reported",
                                              onnx_path, trt.__version__))


# ------------------------------------------------------------------------------------ config

def _configure_dla(trt, builder, config, dla_core):
    """DLA set by us (not CreateConfig(use_dla=True), which also sets PREFER_PRECISION_CONSTRAINTS beside our
    OBEY - NvInfer.h 8.2 documents them as alternatives - and, in Polygraphy < 0.49.9, does so on 11.x too)."""
    cores = builder.num_DLA_cores
    if cores == 0:
        raise UserInputError("--dla-core {}: this device has no DLA (Xavier and Orin AGX/NX have them; Orin Nano "
                             "and desktop GPUs do not); build without --dla-core".format(dla_core))
    if int(dla_core) >= cores:
        raise UserInputError("--dla-core {}: this device has {} DLA core(s) (0..{})".format(dla_core, cores, cores - 1))
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = int(dla_core)
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)


@trt_compat.only_with("precision_flags")
def _set_precision(trt, flav, network, config, precision):
    """Builder flags and the FP32 island pin (weakly typed networks only; not on 11.x)."""
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    if precision != "fp32":
        _pin_island_fp32(trt, flav, network)
        if flav.obey_precision_constraints:
            config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        else:
            config.set_flag(trt.BuilderFlag.STRICT_TYPES)


def _timing_cache_bytes(path):
    if path and os.path.isfile(path):
        with open(path, "rb") as f:
            return f.read()
    return b""


@trt_compat.only_with("polygraphy_build", present=False)
def _build_raw(trt, flav, logger, onnx_path, o, say):
    """TensorRT 8.0-8.4 (JetPack 4.6 / 5.0): raw builder API."""
    say("parse", onnx_path)
    builder, network, _parser = _parse_raw(trt, flav, logger, onnx_path, o["strongly_typed"])
    say("configure", _describe(flav, o))
    config = builder.create_builder_config()
    if flav.memory_pool_limit:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, o["workspace"])
    else:
        config.max_workspace_size = o["workspace"]
    if not o["strongly_typed"]:
        _set_precision(trt, flav, network, config, o["precision"])
    if o["dla_core"] is not None:
        _configure_dla(trt, builder, config, o["dla_core"])
    h, w = o["imgsz"]
    b = o["batch"]
    profile = builder.create_optimization_profile()
    profile.set_shape(o["input_name"], (b[0], 3, h, w), (b[1], 3, h, w), (b[2], 3, h, w))
    config.add_optimization_profile(profile)
    cache = None
    if o["timing_cache"]:
        cache = config.create_timing_cache(_timing_cache_bytes(o["timing_cache"]))
        config.set_timing_cache(cache, False)
    say("build (minutes on a Jetson; the timing cache shortens rebuilds)")
    data = builder.build_serialized_network(network, config)
    if data is not None and cache is not None:
        _save_timing_cache(o["timing_cache"], cache.serialize())
    return data


def _save_timing_cache(path, data):
    from defectrt.fileio import atomic_write_bytes

    atomic_write_bytes(path, bytes(data), force=True)


def _describe(flav, o):
    mode = "strongly typed (precision from the graph)" if o["strongly_typed"] else "{} via builder flags".format(o["precision"])
    return "TensorRT {}, {}, workspace {} MiB{}{}".format(
        flav.text, mode, o["workspace"] >> 20, ", DLA core {}".format(o["dla_core"]) if o["dla_core"] is not None else "",
        ", timing cache " + o["timing_cache"] if o["timing_cache"] else "")


@trt_compat.only_with("polygraphy_build")
def _build_with_polygraphy(trt, flav, logger, onnx_path, o, say):
    """TensorRT 8.5+ through Polygraphy's loaders; a PolygraphyException becomes a UserInputError that names the
    parser's node and message (Polygraphy only logs those and raises 'Could not parse ONNX correctly')."""
    from polygraphy.backend.trt import CreateConfig, EngineBytesFromNetwork, NetworkFromOnnxPath, Profile
    from polygraphy.exception import PolygraphyException

    # strongly_typed only when true: a keyword Polygraphy < 0.47 lacks, and `False` is the default anyway.
    kwargs = {"strongly_typed": True} if o["strongly_typed"] else {}
    network_loader = NetworkFromOnnxPath(onnx_path, **kwargs)
    h, w = o["imgsz"]
    b = o["batch"]
    profile = Profile().add(o["input_name"], min=(b[0], 3, h, w), opt=(b[1], 3, h, w), max=(b[2], 3, h, w))
    config_kwargs = dict(
        profiles=[profile],
        memory_pool_limits={trt.MemoryPoolType.WORKSPACE: o["workspace"]},
        load_timing_cache=o["timing_cache"] if o["timing_cache"] and os.path.isfile(o["timing_cache"]) else None,
    )
    if not o["strongly_typed"] and o["precision"] != "fp32":
        config_kwargs.update(fp16=True, int8=o["precision"] == "int8", precision_constraints="obey")
    create_config = CreateConfig(**config_kwargs)

    def network():
        say("parse", onnx_path)
        try:
            builder, net, parser = network_loader()
        except PolygraphyException as exc:
            # Re-parse with the raw parser to name the node and the parser's message.
            _parse_raw(trt, flav, logger, onnx_path, o["strongly_typed"])
            raise UserInputError(_parse_failure(trt, onnx_path, [str(exc)]))
        if not o["strongly_typed"] and o["precision"] != "fp32":
            _pin_island_fp32(trt, flav, net)
        return builder, net, parser

    # issue 19: TensorRT 10+ reports its build phases and steps (nested bars) and stops on Ctrl-C
    watch = build_progress.Watch(trt) if flav.progress_monitor else None

    def config_for(builder, net):
        say("configure", _describe(flav, o))
        config = create_config(builder, net)
        if o["dla_core"] is not None:
            _configure_dla(trt, builder, config, o["dla_core"])
        if flav.progress_monitor:
            config.progress_monitor = watch.monitor
        say("build (minutes on a Jetson; the timing cache shortens rebuilds)")
        return config

    try:
        with watch if watch is not None else contextlib.nullcontext():
            data = EngineBytesFromNetwork(network, config=config_for, save_timing_cache=o["timing_cache"])()
    except PolygraphyException as exc:
        if watch is not None:
            watch.check()  # a cancelled build has no engine: say so, not "could not build"
        raise UserInputError("TensorRT {} could not build an engine from {}: {} (the TensorRT log above has the "
                             "details)".format(trt.__version__, onnx_path, exc))
    if watch is not None:
        watch.check()
    return data
