"""`defectrt export triton BUNDLE -o model_repository/`: a Triton model repository for a user's own Triton.

    model_repository/
      defectrt_repository.json      what made it (so --force replaces only a repository we wrote)
      NAME/                         ensemble: image in, detections out (defectrt.serving.protocol)
        config.pbtxt, 1/
      NAME_preprocess/              Python backend: defectrt's letterbox -> the network input + orig_shape
        config.pbtxt, 1/model.py
      NAME_model/                   the network: TensorRT plan (bundle with an engine), ONNX Runtime, OpenVINO,
        config.pbtxt, 1/model.plan | 1/model.onnx   or ONNX Runtime inside the Python backend (--backend python)
      NAME_postprocess/             Python backend: defectrt's decode + NMS with the bundle's thresholds and names
        config.pbtxt, 1/model.py

Every config.pbtxt is parsed into tritonclient's `ModelConfig` protobuf before anything is written, and the
parsed names, dtypes and dims are checked against the bundle's model, so a repository that is written is one
Triton can read. The Python steps import defectrt inside Triton's Python backend (pip install defectrt there).
"""
from __future__ import annotations

import json
import os
import shutil

from defectrt import __version__
from defectrt.errors import UserInputError
from defectrt.runtime.bundle import Batch, Manifest, Thresholds
from defectrt.serving import protocol

BACKENDS = ("auto", "onnxruntime", "tensorrt", "openvino", "python")
MARKER = "defectrt_repository.json"
STRIDES = (8, 16, 32)
_ONNX_TYPES = {1: ("TYPE_FP32", "float32"), 10: ("TYPE_FP16", "float16"), 11: ("TYPE_FP64", "float64")}
_PROTOCOL_TYPES = {"UINT8": "TYPE_UINT8", "FP32": "TYPE_FP32", "INT64": "TYPE_INT64", "INT32": "TYPE_INT32",
                   "BYTES": "TYPE_STRING"}


def _model_io(onnx_path, manifest):
    """-> (input name, Triton dtype, numpy dtype, dims without batch), (output name, dtype, dims without batch)."""
    import onnx

    model = onnx.load(onnx_path, load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise UserInputError("{}: export triton takes a model with one input and one raw output (B, 4 + nc, A) "
                             "(exported with --nms none); this one has {} inputs and {} outputs".format(
                                 onnx_path, len(inputs), len(model.graph.output)))

    def describe(value):
        t = value.type.tensor_type
        if t.elem_type not in _ONNX_TYPES:
            raise UserInputError("{}: tensor {} has ONNX element type {}; expected float32 / float16".format(
                onnx_path, value.name, t.elem_type))
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in t.shape.dim]
        return value.name, _ONNX_TYPES[t.elem_type], dims

    in_name, in_type, in_dims = describe(inputs[0])
    out_name, out_type, out_dims = describe(model.graph.output[0])
    h, w = (int(v) for v in manifest.imgsz)
    if len(in_dims) != 4 or len(out_dims) != 3:
        raise UserInputError("{}: input {} and output {} are not (B, 3, H, W) and (B, 4 + nc, A)".format(
            onnx_path, in_dims, out_dims))
    nc = len(manifest.class_names) or (out_dims[1] - 4 if out_dims[1] > 0 else -1)
    anchors = sum((h // s) * (w // s) for s in STRIDES)
    in_dims = [3, in_dims[2] if in_dims[2] > 0 else h, in_dims[3] if in_dims[3] > 0 else w]
    out_dims = [out_dims[1] if out_dims[1] > 0 else 4 + nc, out_dims[2] if out_dims[2] > 0 else anchors]
    return (in_name, in_type[0], in_type[1], in_dims), (out_name, out_type[0], out_dims)


def _tensor(name, dtype, dims):
    return '  {{ name: "{}" data_type: {} dims: [ {} ] }}'.format(name, dtype, ", ".join(str(d) for d in dims))


def _io_block(kind, tensors):
    return "{} [\n{}\n]\n".format(kind, ",\n".join(_tensor(*t) for t in tensors))


def _params(values):
    return "".join('parameters {{ key: "{}" value: {{ string_value: {} }} }}\n'.format(k, json.dumps(str(v)))
                   for k, v in values.items())


def _protocol_outputs():
    return [(k, _PROTOCOL_TYPES[protocol.SPEC[k][1]], protocol.SPEC[k][2]) for k in protocol.OUTPUTS]


def _image_input():
    return [(protocol.IMAGE, "TYPE_UINT8", protocol.SPEC[protocol.IMAGE][2])]


def _batching(max_batch, delay_us):
    return "max_batch_size: {}\ndynamic_batching {{ max_queue_delay_microseconds: {} }}\n".format(max_batch, delay_us)


def _instances(count, kind):
    return "instance_group [ {{ count: {} kind: {} }} ]\n".format(count, kind)


def model_configs(name, manifest, io, backend, max_batch, instances, delay_us=1000):
    """-> {model folder name: config.pbtxt text} of the four models."""
    (in_name, in_type, in_np, in_dims), (out_name, out_type, out_dims) = io
    names = {str(k): v for k, v in manifest.class_names.items()}
    thresholds = manifest.thresholds or Thresholds()
    pre, net, post = name + "_preprocess", name + "_model", name + "_postprocess"
    shape = "orig_shape", "TYPE_INT32", [2]
    configs = {}
    configs[pre] = ('name: "{}"\nbackend: "python"\n'.format(pre) + _batching(max_batch, delay_us)
                    + _io_block("input", _image_input())
                    + _io_block("output", [("images", in_type, in_dims), shape])
                    + _instances(instances, "KIND_CPU")
                    + _params({"imgsz": json.dumps(list(manifest.imgsz)), "dtype": in_np,
                               "defectrt_version": __version__}))
    if backend == "tensorrt":
        head, kind = 'platform: "tensorrt_plan"\ndefault_model_filename: "model.plan"\n', "KIND_GPU"
    elif backend == "openvino":
        head, kind = 'backend: "openvino"\ndefault_model_filename: "model.onnx"\n', "KIND_CPU"
    elif backend == "python":  # ONNX Runtime inside the Python backend: for Triton builds without onnxruntime
        head, kind = 'backend: "python"\n', "KIND_CPU"
    else:
        head, kind = 'backend: "onnxruntime"\ndefault_model_filename: "model.onnx"\n', "KIND_AUTO"
    configs[net] = ('name: "{}"\n'.format(net) + head + _batching(max_batch, delay_us)
                    + _io_block("input", [(in_name, in_type, in_dims)])
                    + _io_block("output", [(out_name, out_type, out_dims)])
                    + _instances(instances, kind))
    configs[post] = ('name: "{}"\nbackend: "python"\n'.format(post) + _batching(max_batch, delay_us)
                     + _io_block("input", [(out_name, out_type, out_dims), shape])
                     + _io_block("output", _protocol_outputs())
                     + _instances(instances, "KIND_CPU")
                     + _params({"imgsz": json.dumps(list(manifest.imgsz)), "names": json.dumps(names),
                                "conf": thresholds.value("conf", 0.25), "iou": thresholds.value("iou", 0.45),
                                "max_det": thresholds.value("max_det", 300), "output_name": out_name,
                                "defectrt_version": __version__}))

    def step(model, inputs, outputs):
        maps = "".join('    input_map {{ key: "{}" value: "{}" }}\n'.format(k, v) for k, v in inputs)
        maps += "".join('    output_map {{ key: "{}" value: "{}" }}\n'.format(k, v) for k, v in outputs)
        return '  step [ {{\n    model_name: "{}"\n    model_version: -1\n{}  }} ]\n'.format(model, maps)

    outs = [(k, k) for k in protocol.OUTPUTS]
    configs[name] = ('name: "{}"\nplatform: "ensemble"\nmax_batch_size: {}\n'.format(name, max_batch)
                     + _io_block("input", _image_input()) + _io_block("output", _protocol_outputs())
                     + "ensemble_scheduling {\n"
                     + step(pre, [(protocol.IMAGE, protocol.IMAGE)], [("images", "_images"), ("orig_shape", "_shape")])
                     + step(net, [(in_name, "_images")], [(out_name, "_raw")])
                     + step(post, [(out_name, "_raw"), ("orig_shape", "_shape")], outs)
                     + "}\n")
    return configs


def parse_config(text, where="config.pbtxt"):
    """config.pbtxt text -> tritonclient's ModelConfig protobuf, or a UserInputError naming what is wrong."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError as exc:
        raise UserInputError("checking config.pbtxt needs tritonclient: pip install 'defectrt[triton]' ({})".format(exc))
    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise UserInputError("{} does not parse as a Triton ModelConfig: {}".format(where, exc))


def check_configs(configs):
    """Parse every config and check the ensemble's wiring against the models' declared inputs and outputs."""
    parsed = {name: parse_config(text, "{}/config.pbtxt".format(name)) for name, text in configs.items()}
    for name, cfg in parsed.items():
        if cfg.name != name:
            raise UserInputError("{}/config.pbtxt names the model {!r}".format(name, cfg.name))
        for t in list(cfg.input) + list(cfg.output):
            if not t.dims:
                raise UserInputError("{}/config.pbtxt: tensor {} has no dims".format(name, t.name))
        for step in cfg.ensemble_scheduling.step:
            target = parsed.get(step.model_name)
            if target is None:
                raise UserInputError("{}: the ensemble step {} is not in the repository".format(name, step.model_name))
            if target.max_batch_size != cfg.max_batch_size:
                raise UserInputError("{}: max_batch_size {} differs from {}'s {}".format(
                    name, cfg.max_batch_size, step.model_name, target.max_batch_size))
            for key in step.input_map:
                if key not in [t.name for t in target.input]:
                    raise UserInputError("{}: step {} has no input {}".format(name, step.model_name, key))
            for key in step.output_map:
                if key not in [t.name for t in target.output]:
                    raise UserInputError("{}: step {} has no output {}".format(name, step.model_name, key))
    return parsed


def _max_batch(manifest, backend, max_batch):
    b = manifest.batch or Batch()
    if not b.dynamic:
        size = int(b.value("size", 1))
        if size != 1 or (max_batch not in (None, 1)):
            raise UserInputError("the bundle's model takes a fixed batch of {}; Triton's batcher needs batch 1 or a "
                                 "dynamic batch: rebuild it with `defectrt export build ... --dynamic-batch "
                                 "--max-batch N`".format(size))
        return 1
    limit = int(b.value("max", 8))
    value = int(max_batch) if max_batch is not None else limit
    if value < 1:
        raise UserInputError("--max-batch {}: must be at least 1".format(value))
    if backend == "tensorrt" and value > limit:
        raise UserInputError("--max-batch {}: the bundle's engine was built for batches up to {}".format(value, limit))
    return value


def export_repository(bundle, output, name=None, max_batch=None, instances=1, backend="auto", force=False,
                      queue_delay_us=1000):
    """Write the repository; -> {"models": [...], "backend": ..., "max_batch": ..., "path": output}."""
    from defectrt.fileio import atomic_dir
    from defectrt.serving.server import model_name

    if backend not in BACKENDS:
        raise UserInputError("--backend {!r}: choose one of {}".format(backend, ", ".join(BACKENDS)))
    if int(instances) < 1:
        raise UserInputError("--instances {}: must be at least 1".format(instances))
    bundle = os.fspath(bundle)
    manifest = Manifest.read(bundle)
    engine = manifest.engine
    if backend == "auto":
        backend = "tensorrt" if engine else "onnxruntime"
    if backend == "tensorrt" and not engine:
        raise UserInputError("{} has no TensorRT engine; build it on the device (defectrt export build {} --engine) or "
                             "use --backend onnxruntime / openvino".format(bundle, bundle))
    name = model_name(bundle, name)
    batch = _max_batch(manifest, backend, max_batch)
    onnx_path = os.path.join(bundle, manifest.model)
    io = _model_io(onnx_path, manifest)
    configs = model_configs(name, manifest, io, backend, batch, int(instances), queue_delay_us)
    check_configs(configs)
    _check_owned(output, force)
    here = os.path.dirname(os.path.abspath(__file__))
    with atomic_dir(output, force=force, ours=our_repository) as tmp:
        for model, text in configs.items():
            os.makedirs(os.path.join(tmp, model, "1"))
            with open(os.path.join(tmp, model, "config.pbtxt"), "w") as f:
                f.write(text)
        shutil.copyfile(os.path.join(here, "triton_models", "preprocess_model.py"),
                        os.path.join(tmp, name + "_preprocess", "1", "model.py"))
        shutil.copyfile(os.path.join(here, "triton_models", "postprocess_model.py"),
                        os.path.join(tmp, name + "_postprocess", "1", "model.py"))
        if backend == "tensorrt":
            shutil.copyfile(os.path.join(bundle, engine.get("file", "model.engine")),
                            os.path.join(tmp, name + "_model", "1", "model.plan"))
        else:
            shutil.copyfile(onnx_path, os.path.join(tmp, name + "_model", "1", "model.onnx"))
        if backend == "python":
            shutil.copyfile(os.path.join(here, "triton_models", "onnxruntime_model.py"),
                            os.path.join(tmp, name + "_model", "1", "model.py"))
        info = {"format": "defectrt-triton-repository", "defectrt_version": __version__, "bundle": os.path.abspath(bundle),
                "model": name, "backend": backend, "max_batch": batch, "instances": int(instances),
                "models": sorted(configs)}
        with open(os.path.join(tmp, MARKER), "w") as f:
            json.dump(info, f, indent=2)
            f.write("\n")
    info["path"] = os.fspath(output)
    return info


def our_repository(folder):
    """For atomic_dir: None when `folder` is empty or a repository this command wrote holding nothing else, else
    the reason --force may not replace it (files a user added to it are never lost)."""
    from defectrt.fileio import describe_foreign, foreign_entries, is_temporary

    if not os.listdir(folder):
        return None
    try:
        with open(os.path.join(folder, MARKER)) as f:
            models = set(json.load(f).get("models") or [])
    except (OSError, ValueError, AttributeError):
        return "it is not a repository written by defectrt export triton (no valid {})".format(MARKER)
    return describe_foreign(foreign_entries(folder, lambda rel: rel == MARKER or is_temporary(rel) or
                                            rel.split("/", 1)[0] in models), "the repository")


def _check_owned(output, force):
    """--force replaces a repository this command wrote, never another folder."""
    if os.path.exists(output) and force and not os.path.isfile(os.path.join(output, MARKER)):
        raise UserInputError("{} exists and is not a repository written by defectrt export triton (no {}); "
                             "choose another -o, or move it away yourself".format(output, MARKER))
