"""The one home for TensorRT versions: parsing, the capabilities of each release, the API flavour.

Every other module asks this one ("does this TensorRT have the tensor-name API?", "which support-table
row applies?") instead of comparing version numbers itself; tests/test_trt_truth.py checks that no
module outside this one compares TensorRT versions, and that every TensorRT Python name our code uses
on a capability's path exists in the real API surface of every release that path claims
(../shared/notes/trt-python-api/<version>.json).

Device side: no torch, no onnx, Python 3.8. UNVERIFIED ON HARDWARE: the ranges below come from the
headers in ../shared/third_party/tensorrt/<version>/include, the pybind11 API surfaces and NVIDIA's docs,
not from runs on a GPU.
"""
from __future__ import annotations

import functools
import json
import os
import re

from defectrt.errors import UserInputError

# Releases whose Python API surface we name-check (../shared/notes/trt-python-api/<v>.json); the claim
# "8.0 ... 11.1" covers the releases in between through these rows.
CLAIMED_VERSIONS = ("8.0", "8.2", "8.4", "8.5", "8.6", "10.0", "10.3", "10.8", "10.13", "10.16", "11.0", "11.1")
OLDEST = (8, 0, 0)

# name -> (first release that has it, first release that no longer has it (None: still there), why).
# A capability is a *path* in our code: `if flavour.<name>:` guards the TensorRT calls only that path makes.
CAPABILITIES = {
    "tensor_io": ((8, 5), None,
                  "IExecutionContext::enqueueV3 / setTensorAddress / setInputShape arrive in 8.5 (NvInferRuntime.h 8.5)"),
    "bindings_io": ((8, 0), (10, 0),
                    "bindings + execute_async_v2: the only I/O API below 8.5; removed in 10.0 (ICudaEngine has no "
                    "num_bindings in trt-python-api/10.0.json). We use it below 8.5 only (see io_api)."),
    "polygraphy_build": ((8, 5), None, "Polygraphy's TensorRT loaders need TensorRT 8.5+"),
    "memory_pool_limit": ((8, 4), None, "IBuilderConfig::setMemoryPoolLimit / MemoryPoolType arrive in 8.4"),
    "max_workspace_size": ((8, 0), (10, 0), "IBuilderConfig.max_workspace_size: deprecated 8.4, removed 10.0"),
    "obey_precision_constraints": ((8, 2), (11, 0),
                                   "BuilderFlag::kOBEY_PRECISION_CONSTRAINTS arrives in 8.2 (NvInfer.h 8.2: 'Require "
                                   "that layers execute in specified precisions'); removed in 11.0"),
    "strict_types": ((8, 0), (8, 2), "kSTRICT_TYPES: the 8.0-8.1 spelling of obey (deprecated from 8.2)"),
    "precision_flags": ((8, 0), (11, 0),
                        "BuilderFlag FP16 / INT8 and ILayer precision / set_output_type: deprecated in 10.12 "
                        "('Superseded by strong typing', NvInfer.h 10.16), absent from trt-python-api/11.0.json"),
    "explicit_batch_flag": ((8, 0), (10, 0),
                            "NetworkDefinitionCreationFlag.EXPLICIT_BATCH: required in 8.x, ignored in 10.x, gone in 11.0"),
    "strongly_typed_network": ((10, 0), None, "NetworkDefinitionCreationFlag.STRONGLY_TYPED (trt-python-api/10.0.json)"),
    "strongly_typed_default": ((10, 12), None,
                               "from 10.12 the precision APIs are deprecated: bundles whose precision is in the graph "
                               "(AutoCast FP16, Q/DQ INT8) build strongly typed"),
    "cast_layer": ((8, 6), None, "LayerType.CAST / ICastLayer arrive in 8.6; 8.0-8.5 parse ONNX Cast as an IDENTITY layer"),
    "parser_node_name": ((10, 0), None, "ParserError.node_name / node_operator arrive in 10.0"),
    # issue 19: engine-build progress (export.build_progress)
    "progress_monitor": ((10, 0), None, "IProgressMonitor and IBuilderConfig.progress_monitor: in trt-python-api/"
                         "10.0.json ... 11.1.json, not in 8.6.json (NvInfer.h 10.3: phaseStart / stepComplete / "
                         "phaseFinish)"),
    "device_memory_size_v2": ((10, 0), None, "ICudaEngine.device_memory_size_v2 (the only one in 11.x)"),
    "plugin_v3": ((10, 0), None, "IPluginV3 exists from 10.0 (NvInferRuntimePlugin.h)"),
    "trtexec_static_plugins": ((10, 0), None, "trtexec --staticPlugins (10.x: '--plugins flag has been deprecated, use "
                               "--staticPlugins'); --plugins before"),
    "trtexec_skip_inference": ((10, 0), None, "trtexec --skipInference (10.x); --buildOnly before"),
    "fp16_qdq_inputs": ((10, 0), None,
                        "explicit Q/DQ on 8.x wants FP32 inputs to QuantizeLinear; 10.x takes FP16 (AutoCast around Q/DQ)"),
}

SUPPORT_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "export", "trt_support.json")


def parse_version(text, what="TensorRT version"):
    """'8.2', '8.2.1.8', '10.3.0.26', 10.3, (8, 6) -> (major, minor, patch). Anything else: UserInputError."""
    if isinstance(text, (tuple, list)):
        nums = [int(v) for v in text][:3]
    else:
        m = re.fullmatch(r"\s*v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:\.\d+)*\s*", str(text))
        if not m:
            raise UserInputError("{} {!r}: give a TensorRT version such as 8.2, 8.6 or 10.3".format(what, text))
        nums = [int(g) for g in m.groups() if g is not None]
    if not nums:
        raise UserInputError("{} {!r}: give a TensorRT version such as 8.2, 8.6 or 10.3".format(what, text))
    return tuple(nums + [0] * (3 - len(nums)))


def major_minor(text, what="--target-trt"):
    return parse_version(text, what)[:2]




def same_release(built, running):
    """Engines run only on the TensorRT release they were built with (major.minor.patch)."""
    return parse_version(built) == parse_version(running)


def has_at_least(version, minimum):
    """Is TensorRT `version` at least `minimum` (e.g. a plugin's min_trt from the support table)?"""
    return parse_version(version) >= parse_version(minimum)


def has(version, capability):
    """Does TensorRT `version` have `capability` (a CAPABILITIES key)?"""
    since, until, _why = CAPABILITIES[capability]
    v = parse_version(version)[:2]
    return v >= since and (until is None or v < until)


def only_with(capability, present=True):
    """Mark a function as one capability's path (`present=False`: the path of the releases without it). It
    changes nothing at run time (the caller branches on the Flavour); tests/test_trt_truth.py reads the mark
    to check the TensorRT names used inside against exactly those releases' API surfaces."""
    if capability not in CAPABILITIES:
        raise ValueError("unknown TensorRT capability " + capability)

    def mark(func):
        func.trt_path = (capability, present)
        return func
    return mark


class Flavour(object):
    """The API flavour of one TensorRT release, chosen once: one boolean attribute per capability,
    plus `io_api` ("tensor" from 8.5, "bindings" below) and `version` (3-tuple)."""

    def __init__(self, version):
        self.version = parse_version(version)
        self.text = ".".join(str(v) for v in self.version)
        for name in CAPABILITIES:
            setattr(self, name, has(self.version, name))
        # 8.5-9.x still have bindings, but the tensor API is the one we use wherever it exists.
        self.bindings_io = self.bindings_io and not self.tensor_io
        self.io_api = "tensor" if self.tensor_io else "bindings"

    def __repr__(self):
        return "Flavour({}: {})".format(self.text, ", ".join(n for n in CAPABILITIES if getattr(self, n)))


@functools.lru_cache(maxsize=32)
def _flavour(version):
    return Flavour(version)


def flavour(version):
    """The Flavour of a TensorRT version string; below 8.0 is a UserInputError (we claim 8.0+)."""
    v = parse_version(version)
    if v < OLDEST:
        raise UserInputError("TensorRT {} is too old: defectrt supports TensorRT 8.0 (JetPack 4.6) and later".format(
            ".".join(str(x) for x in v)))
    return _flavour(v)


def use_strongly_typed(flav, precision_in_graph=True):
    """Build a strongly typed network? Always on 11.x (no precision flags left); from 10.12 when the bundle's
    precision lives in the graph (AutoCast FP16, Q/DQ INT8, or FP32); never before 10.0."""
    if not flav.strongly_typed_network:
        return False
    return (not flav.precision_flags) or (flav.strongly_typed_default and bool(precision_in_graph))


# ------------------------------------------------------------------------------ the support table

@functools.lru_cache(maxsize=1)
def load_support():
    with open(SUPPORT_FILE) as f:
        return json.load(f)


def _key(version_text):
    return tuple(int(p) for p in version_text.split("."))


def _resolve_ops(versions, key, seen=()):
    row = versions[key]
    if "ops" in row:
        ops = set(row["ops"])
    else:
        if key in seen:
            raise ValueError("trt_support.json: base cycle at " + key)
        ops = _resolve_ops(versions, row["base"], seen + (key,))
    return (ops | set(row.get("add", ()))) - set(row.get("remove", ()))


def support_row(target_trt, what="--target-trt"):
    """The support-table row for a TensorRT version: (row key, row with the resolved `ops` set).
    A row applies from its version up to the next row of the same major (10.9 uses 10.8's)."""
    major, minor = major_minor(target_trt, what)
    versions = load_support()["versions"]
    rows = sorted(versions, key=_key)
    candidates = [k for k in rows if _key(k) <= (major, minor) and _key(k)[0] == major]
    if not candidates:
        known = sorted({k.split(".")[0] for k in rows}, key=int)
        raise UserInputError("{} {}: TensorRT {}.x is not covered (known: {}.x; the oldest is {})".format(
            what, target_trt, major, ".x, ".join(known), rows[0]))
    key = candidates[-1]
    row = dict(versions[key])
    row["ops"] = _resolve_ops(versions, key)
    return key, row


def parser_has_op(target_trt, op):
    """Does the ONNX parser of `target_trt` import `op` (read from trt_support.json)?"""
    return op in support_row(target_trt)[1]["ops"]


# ------------------------------------------------------------------------------ trtexec (device side)

# Version ranges [first, next) within which trtexec takes the same flags for our bundles: --workspace before
# 8.4, --memPoolSize from 8.4; --fp16/--int8, --plugins, --buildOnly through 9.x; --stronglyTyped,
# --staticPlugins, --skipInference in 10.x; no precision flags from 11.0. The bundle scripts branch on these
# (tests/test_bundle_scripts.py checks every claimed release gets the flags of its own family).
TRTEXEC_FAMILIES = (((8, 0), (8, 4)), ((8, 4), (10, 0)), ((10, 0), (11, 0)), ((11, 0), None))


def trtexec_family(version):
    """-> (first, next) of the TRTEXEC_FAMILIES range `version` falls in."""
    v = parse_version(version)[:2]
    for lo, hi in TRTEXEC_FAMILIES:
        if v >= lo and (hi is None or v < hi):
            return lo, hi
    raise UserInputError("TensorRT {} is older than 8.0: no trtexec command for it".format(version))


def trtexec_precision_flags(target_trt, precision):
    """The trtexec flags that carry `precision` on `target_trt`:
    8.x: --fp16 (FP16) / --int8 --fp16 (INT8 with explicit Q/DQ: the un-quantized layers run FP16);
    10.x: --stronglyTyped (the graph carries its precision: AutoCast / Q/DQ); 11.x: nothing (always strongly
    typed, the precision flags are gone). FP32: nothing anywhere."""
    flav = flavour(target_trt)
    if precision == "fp32":
        return []
    if not flav.precision_flags:
        return []
    if flav.strongly_typed_network:
        return ["--stronglyTyped"]
    return ["--fp16"] if precision == "fp16" else ["--int8", "--fp16"]


def trtexec_workspace_flag(target_trt, mib):
    """--memPoolSize=workspace:<N> from 8.4, --workspace=<N> before (10.x has no --workspace). No unit suffix:
    MiB is the default unit of both in every trtexec help text (8.4: 'poolfmt ::= pool:sizeInMiB')."""
    if flavour(target_trt).memory_pool_limit:
        return "--memPoolSize=workspace:{}".format(int(mib))
    return "--workspace={}".format(int(mib))


def trtexec_plugin_flag(target_trt, path):
    return ("--staticPlugins=" if flavour(target_trt).trtexec_static_plugins else "--plugins=") + path


def trtexec_build_only_flag(target_trt):
    return "--skipInference" if flavour(target_trt).trtexec_skip_inference else "--buildOnly"
