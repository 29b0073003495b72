"""Serving defectrt models through NVIDIA Triton Inference Server (see docs/SERVING.md).

- `protocol`    the tensors a defectrt Triton model takes and returns (shared with `defectrt.client`)
- `server`      `defectrt serve`: a bundle's Detector behind a real Triton server, through PyTriton
- `stub_env`    the Python environment PyTriton's Python-backend stub runs in (it needs numpy < 2)
- `repository`  `defectrt export triton`: a model repository for a user's own Triton, configs validated
- `tritonserver` starting PyTriton's `tritonserver` binary on a model repository (tests, local checks)
- `deepstream`  a DeepStream nvinfer config and label file for a bundle

The client side lives in `defectrt.client` (Python 3.8, no torch).
"""
