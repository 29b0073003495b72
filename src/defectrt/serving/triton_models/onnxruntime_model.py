"""Triton Python backend: the network through ONNX Runtime in Python (`export triton --backend python`).

For Triton builds without the onnxruntime backend (PyTriton's tritonserver has only the Python backend).
The requests of one dynamic batch are concatenated into one session run, then split again."""
import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel(object):
    def initialize(self, args):
        import onnxruntime as ort

        params = {k: v["string_value"] for k, v in json.loads(args["model_config"]).get("parameters", {}).items()}
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        opts = ort.SessionOptions()
        threads = int(params.get("intra_op_threads", "0"))
        if threads > 0:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def execute(self, requests):
        blobs = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        out = self.session.run([self.output_name], {self.input_name: np.concatenate(blobs)})[0]
        responses, start = [], 0
        for blob in blobs:
            part = np.ascontiguousarray(out[start:start + len(blob)])
            start += len(blob)
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.output_name, part)]))
        return responses
