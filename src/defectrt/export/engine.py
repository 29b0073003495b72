"""TensorRT engine building: the one place on the export side that talks to TensorRT.

UNVERIFIED ON HARDWARE: no machine this project is developed and tested on has TensorRT or a GPU.
The code follows the documented API of each version (../shared/notes/tensorrt.md and NVIDIA's docs);
its tests are marked `tensorrt` and skipped where TensorRT is absent.

How precision reaches the engine, per TensorRT version:
- 8.x and 10.x: builder flags. FP16 for fp16; INT8 *and* FP16 for int8 (explicit Q/DQ in the ONNX, and
  FP16 so that un-quantized layers do not fall back to FP32). The DySample FP32 island (ONNX node
  names containing "/sampler/") is pinned to FP32 with layer precision constraints ("obey").
- 11.x: flags and precision constraints are gone; the network is strongly typed and the precision is
  whatever the ONNX file says (AutoCast FP16 / Q/DQ INT8 from defectrt.export.precision), which already
  keeps the island FP32.
Polygraphy's loaders are used from TensorRT 8.5 on (they need it); 8.0-8.4 (JetPack 4.6 / 5.0) go
through the raw builder API, which those versions document.
"""
from __future__ import annotations

import os
import re
import time

from defectrt.errors import UserInputError
# The device side owns TensorRT discovery, plugin loading and the GPU identity; the builder reuses them so an
# engine records exactly what the runtime later compares against.
from defectrt.runtime.tensorrt_backend import (  # noqa: F401  (re-exported for the export side)
    _logger,
    gpu_identity,
    import_tensorrt,
    load_plugin_libraries,
    parse_version,
)

ISLAND_MARK = "/sampler/"


def parse_size(text):
    """'2G', '512M', '1073741824' -> bytes (for --workspace)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B?|B)?\s*", str(text), re.I)
    if not m:
        raise UserInputError("--workspace {!r}: expected a size such as 2G, 512M or a byte count".format(text))
    unit = (m.group(2) or "B").upper()[0]
    return int(float(m.group(1)) * {"B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[unit])


def build_engine(onnx_path, engine_path, precision="fp32", batch=(1, 1, 1), imgsz=(640, 640), workspace="2G",
                 timing_cache=None, dla_core=None, plugins=(), input_name="images", force=False):
    """Build a serialized engine from `onnx_path`; returns the engine record for the manifest.

    batch = (min, opt, max) for the optimisation profile (all equal for a fixed batch).
    """
    trt = import_tensorrt()
    if trt is None:
        raise UserInputError("TensorRT is not installed here; build the engine on the device (JetPack provides it)")
    from defectrt.fileio import atomic_write_bytes, check_output

    check_output(engine_path, force)
    version = parse_version(trt.__version__)
    logger = _logger(trt)
    load_plugin_libraries(trt, logger, plugins)
    t0 = time.time()
    if version >= (8, 5):
        data = _build_with_polygraphy(trt, version, onnx_path, precision, batch, imgsz, workspace, timing_cache, dla_core, input_name)
    else:
        data = _build_raw_8x(trt, version, logger, onnx_path, precision, batch, imgsz, workspace, dla_core, input_name)
    if data is None:
        raise UserInputError("TensorRT {} failed to build {} (see the log above)".format(trt.__version__, onnx_path))
    atomic_write_bytes(engine_path, bytes(data), force=force)
    record = {
        "file": os.path.basename(engine_path),
        "tensorrt_version": trt.__version__,
        "precision": precision,
        "batch": {"min": batch[0], "opt": batch[1], "max": batch[2]},
        "dla_core": dla_core,
        "build_seconds": round(time.time() - t0, 1),
        "plugins": [os.path.basename(p) for p in plugins or ()],
    }
    record.update(gpu_identity())
    return record


def _island_layers(network):
    return [network.get_layer(i) for i in range(network.num_layers) if ISLAND_MARK in network.get_layer(i).name]


def _pin_island_fp32(trt, network):
    for layer in _island_layers(network):
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            layer.set_output_type(j, trt.float32)
    return network


def _build_with_polygraphy(trt, version, onnx_path, precision, batch, imgsz, workspace, timing_cache, dla_core, input_name):
    from polygraphy.backend.trt import CreateConfig, EngineBytesFromNetwork, NetworkFromOnnxPath, Profile

    strongly_typed = version >= (11, 0)
    network_loader = NetworkFromOnnxPath(onnx_path, strongly_typed=True if strongly_typed else None)
    h, w = imgsz
    profile = Profile().add(input_name, min=(batch[0], 3, h, w), opt=(batch[1], 3, h, w), max=(batch[2], 3, h, w))
    kwargs = dict(
        profiles=[profile],
        memory_pool_limits={trt.MemoryPoolType.WORKSPACE: parse_size(workspace)},
        load_timing_cache=timing_cache if timing_cache and os.path.isfile(timing_cache) else None,
    )
    if not strongly_typed:
        kwargs.update(fp16=precision in ("fp16", "int8"), int8=precision == "int8")
        if precision != "fp32":
            kwargs["precision_constraints"] = "obey"
    if dla_core is not None:
        kwargs.update(use_dla=True, allow_gpu_fallback=True)
    create_config = CreateConfig(**kwargs)

    def network_with_island():
        builder, network, parser = network_loader()
        if not strongly_typed and precision != "fp32":
            _pin_island_fp32(trt, network)
        return builder, network, parser

    def config_for(builder, network):
        config = create_config(builder, network)
        if dla_core is not None:
            config.DLA_core = int(dla_core)
        return config

    return EngineBytesFromNetwork(network_with_island, config=config_for, save_timing_cache=timing_cache)()


def _build_raw_8x(trt, version, logger, onnx_path, precision, batch, imgsz, workspace, dla_core, input_name):
    """TensorRT 8.0-8.4 (JetPack 4.6 / 5.0): explicit-batch network, builder flags, FP32 island pinned."""
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    parser = trt.OnnxParser(network, logger)
    with open(onnx_path, "rb") as f:
        if not parser.parse(f.read()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise UserInputError("TensorRT {} cannot parse {}: {}".format(trt.__version__, onnx_path, errors))
    config = builder.create_builder_config()
    size = parse_size(workspace)
    if version >= (8, 4):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, size)
    else:
        config.max_workspace_size = size
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
        _pin_island_fp32(trt, network)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS if version >= (8, 2) else trt.BuilderFlag.STRICT_TYPES)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    if dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(dla_core)
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    h, w = imgsz
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, (batch[0], 3, h, w), (batch[1], 3, h, w), (batch[2], 3, h, w))
    config.add_optimization_profile(profile)
    return builder.build_serialized_network(network, config)
