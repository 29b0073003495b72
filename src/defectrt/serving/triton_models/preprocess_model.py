"""Triton Python backend: image UINT8 (H, W, 3) BGR -> images (3, h, w) as the network takes them + orig_shape.

Written by `defectrt export triton`; runs defectrt's own letterbox (defectrt.runtime.preprocess), so Triton
sees the same input tensor as the in-process Detector. Needs `pip install defectrt` in Triton's Python."""
import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel(object):
    def initialize(self, args):
        from defectrt.runtime.preprocess import preprocess

        params = {k: v["string_value"] for k, v in json.loads(args["model_config"]).get("parameters", {}).items()}
        self.imgsz = tuple(json.loads(params["imgsz"]))
        self.dtype = np.dtype(params.get("dtype", "float32"))
        self.preprocess = preprocess

    def execute(self, requests):
        from defectrt.errors import UserInputError

        responses = []
        for request in requests:
            images = pb_utils.get_input_tensor_by_name(request, "image").as_numpy()
            try:
                if images.ndim != 4 or min(images.shape[1:3]) < 1:
                    raise UserInputError("image has shape {}, expected (H, W, 3) with H, W >= 1".format(
                        tuple(images.shape[1:])))
                blob, _ = self.preprocess(list(images), self.imgsz)
            except UserInputError as exc:
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(exc))))
                continue
            shapes = np.array([img.shape[:2] for img in images], dtype=np.int32)
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("images", blob.astype(self.dtype, copy=False)),
                pb_utils.Tensor("orig_shape", shapes)]))
        return responses
