"""Triton Python backend: the network's raw output + orig_shape -> boxes, scores, class_ids, names, count.

Written by `defectrt export triton`; runs defectrt's own decoding and NMS (defectrt.runtime.postprocess) with
the bundle's thresholds and class names, so the detections equal the in-process Detector's."""
import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel(object):
    def initialize(self, args):
        from defectrt.runtime.postprocess import postprocess
        from defectrt.runtime.preprocess import letterbox_info
        from defectrt.serving import protocol

        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.imgsz = tuple(json.loads(params["imgsz"]))
        self.names = {int(k): v for k, v in json.loads(params["names"]).items()}
        self.conf, self.iou = float(params["conf"]), float(params["iou"])
        self.max_det = int(params["max_det"])
        self.output_name = params["output_name"]
        self.postprocess, self.letterbox_info, self.protocol = postprocess, letterbox_info, protocol

    def execute(self, requests):
        responses = []
        for request in requests:
            pred = pb_utils.get_input_tensor_by_name(request, self.output_name).as_numpy()
            shapes = pb_utils.get_input_tensor_by_name(request, "orig_shape").as_numpy()
            infos = [self.letterbox_info(tuple(int(v) for v in s), self.imgsz) for s in shapes]
            dets = self.postprocess(pred.astype(np.float32, copy=False), infos, conf=self.conf, iou=self.iou,
                                    max_det=self.max_det, names=self.names)
            packed = self.protocol.pack(dets)
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor(k, packed[k]) for k in self.protocol.OUTPUTS]))
        return responses
