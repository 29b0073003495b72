"""`defectrt serve BUNDLE`: the bundle's Detector behind a real Triton Inference Server, through PyTriton.

The server (`tritonserver` from nvidia-pytriton) owns HTTP / gRPC / metrics and the dynamic batcher; each
batch it forms reaches `_InferFunction` in this process, which runs one `Detector` per model instance (a
Detector is not thread-safe, and PyTriton calls each instance's function from its own thread). Requests
in a batch all have the same image size (Triton batches only equal shapes), so a batch is one Detector
call. A request that is wrong in content (an empty or oversized image) gets an error naming the problem;
requests of other shapes are never in its batch, so they are not affected. Wrong dtypes and ranks are
refused by Triton itself before they reach us.
"""
from __future__ import annotations

import logging
import os
import re

import numpy as np

from defectrt.errors import BackendUnavailable, UnsupportedFormat, UserInputError
from defectrt.serving import protocol

log = logging.getLogger("defectrt")

DEFAULT_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
DEFAULT_QUEUE_DELAY_US = 2000
RESTRICTED = ("shared-memory", "model-repository", "trace", "logging")


def model_name(bundle, name=None):
    """Triton model name: `name`, else the bundle folder's name without `.bundle`."""
    if name is None:
        name = os.path.basename(os.path.normpath(os.fspath(bundle)))
        name = name[:-len(".bundle")] if name.endswith(".bundle") else name
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip(".") or "defectrt"
    if not re.match(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$", name):
        raise UserInputError("--name {!r}: use letters, digits, '_', '-' and '.' (a Triton model name)".format(name))
    return name


class _InferFunction(object):
    """One model instance: its own Detector, called with PyTriton's list of requests of one batch."""

    def __init__(self, make_detector):
        self.detector = make_detector()

    def __call__(self, requests):
        from pytriton.exceptions import PyTritonBadParameterError

        images = []
        for i, request in enumerate(requests):
            batch = request.data.get(protocol.IMAGE)
            if batch is None:
                raise PyTritonBadParameterError("request has no `{}` input".format(protocol.IMAGE))
            for img in batch:  # each request carries a batch dimension of its own (usually 1)
                try:
                    images.append(protocol.check_image(img, "image of request {}".format(i)))
                except UserInputError as exc:
                    raise PyTritonBadParameterError(str(exc))
        try:
            detections = self.detector(images)
        except UserInputError as exc:
            raise PyTritonBadParameterError(str(exc))
        responses = []
        start = 0
        for request in requests:
            n = len(request.data[protocol.IMAGE])
            responses.append(protocol.pack(detections[start:start + n]))
            start += n
        return responses


def _tensors():
    from pytriton.model_config import Tensor

    inputs = [Tensor(name=protocol.IMAGE, dtype=np.uint8, shape=protocol.SPEC[protocol.IMAGE][2])]
    outputs = [Tensor(name=k, dtype=protocol.SPEC[k][0] if k != "names" else bytes, shape=protocol.SPEC[k][2])
               for k in protocol.OUTPUTS]
    return inputs, outputs


def serve(bundle, http_port=None, grpc_port=None, metrics_port=None, address="127.0.0.1", max_batch=8, instances=1,
          name=None, queue_delay_us=DEFAULT_QUEUE_DELAY_US, backend="auto", threads=None, stub_env=None,
          exit_timeout_s=10, verbose=False, on_ready=None, spec=None):
    """Serve a bundle until interrupted (SIGINT / SIGTERM). on_ready(urls) is called once it answers.
    spec: the settings as one defectrt.options.ServeSpec (then give none of them as keywords)."""
    from defectrt.options import DetectorOptions, ServeSpec, make
    from defectrt.options import resolve as resolve_options

    spec = resolve_options(ServeSpec, spec, dict(
        http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port, address=address, max_batch=max_batch,
        instances=instances, name=name, queue_delay_us=queue_delay_us, backend=backend, threads=threads,
        exit_timeout_s=exit_timeout_s, verbose=verbose), "serve")
    from defectrt.runtime import bundle as bundle_mod
    from defectrt.runtime.detector import Detector, resolve_model_path
    from defectrt.serving import stub_env as stub_mod

    if int(spec.max_batch) < 1:
        raise UserInputError("--max-batch {}: must be at least 1".format(spec.max_batch))
    if int(spec.instances) < 1:
        raise UserInputError("--instances {}: must be at least 1".format(spec.instances))
    path = resolve_model_path(bundle)
    if not bundle_mod.is_bundle(path):
        raise UnsupportedFormat("{}: not a bundle folder (no manifest.json); build one with `defectrt export build`".format(
            path))
    env = stub_mod.require(stub_env)
    name = model_name(path, spec.name)
    # Load (and verify) the model here, before the server starts: a bad bundle fails fast with its own message.
    options = make(DetectorOptions, backend=spec.backend, threads=spec.threads, max_batch=spec.max_batch)
    functions = [_InferFunction(lambda: Detector(path, options=options)) for _ in range(int(spec.instances))]
    try:
        from pytriton.model_config import DynamicBatcher, ModelConfig
        from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig
    except ImportError as exc:
        raise BackendUnavailable("defectrt serve needs PyTriton: pip install 'defectrt[triton]' and "
                                 "nvidia-pytriton==0.7.0 --no-deps (see docs/SERVING.md) ({})".format(exc))
    stub_mod.use_for_pytriton(env)
    ports = {"http": spec.http_port, "grpc": spec.grpc_port, "metrics": spec.metrics_port}
    ports = {k: int(v if v is not None else DEFAULT_PORTS[k]) for k, v in ports.items()}
    config = TritonConfig(http_address=spec.address, http_port=ports["http"], grpc_address=spec.address,
                          grpc_port=ports["grpc"], metrics_address=spec.address, metrics_port=ports["metrics"], allow_gpu_metrics=False,
                          exit_timeout_secs=int(spec.exit_timeout_s), log_verbose=1 if spec.verbose else None)
    inputs, outputs = _tensors()
    # Loading / unloading models, shared memory, tracing and logging stay behind PyTriton's random token;
    # statistics stay open: read-only, and how `bench --triton` and TritonDetector see batches and models.
    security = TritonSecurityConfig(restricted_endpoints=list(RESTRICTED))
    with Triton(config=config, security_config=security) as triton:
        triton.bind(model_name=name, infer_func=functions, inputs=inputs, outputs=outputs,
                    config=ModelConfig(max_batch_size=int(spec.max_batch),
                                       batcher=DynamicBatcher(max_queue_delay_microseconds=int(spec.queue_delay_us))),
                    strict=True)
        triton.run()
        urls = {"http": "http://{}:{}".format(spec.address, ports["http"]), "grpc": "grpc://{}:{}".format(
            spec.address, ports["grpc"]), "metrics": "http://{}:{}/metrics".format(spec.address, ports["metrics"]),
            "model": name}
        if on_ready is not None:
            on_ready(urls)
        triton.serve()
