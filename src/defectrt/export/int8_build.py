"""The INT8 step of `export build`: PTQ (or QAT, then PTQ) and the gate's fallback, in one place so
that the bundle code only asks for "an INT8 model" and "a fallback for it".

PTQ: defectrt.export.precision.quantize_int8 from the FP32 export. QAT (`qat_epochs` > 0): the plain
model's PTQ graph is made first (it says where the Q/DQ nodes are and with which scales); the checkpoint is
fine-tuned with fake quantization there (defectrt.train.qat), exported to FP32 ONNX with the bundle's own
export settings, quantized by the same quantize_int8 - so each flavour gets exactly its production Q/DQ
graph - and its activation scales are set back to the ones the fine-tuning was done with.
"""
from __future__ import annotations

import os
import warnings

from defectrt.export import precision


class Int8Step(object):
    """source: the FP32 ONNX quantized (the plain export, or the QAT-tuned one); qat: the QAT record or None.
    requantize(exclude_nodes, out_path) makes the INT8 model leaving those nodes out."""

    def __init__(self, source, calib_dir, calib_count, flavour, target_trt, calib_method, qat=None, scales_from=None):
        self.source, self.calib_dir, self.qat, self.scales_from = source, calib_dir, qat, scales_from
        self.kw = dict(calib_count=calib_count, flavour=flavour, target_trt=target_trt,
                       calibration_method=calib_method)

    def requantize(self, exclude_nodes, out_path):
        # Looked up on the module at call time: tests stand a faulty quantizer in for the real one.
        precision.quantize_int8(self.source, out_path, self.calib_dir, exclude_nodes=list(exclude_nodes),
                                force=True, **self.kw)
        if self.scales_from:  # QAT: the activation scales the fine-tuning used, not a re-calibration
            from defectrt.train.qat import transplant_activation_scales

            n = transplant_activation_scales(self.scales_from, out_path)
            if self.qat is not None:
                self.qat["activation_scales_from_ptq"] = n
        return out_path

    def fallback(self, final_path, imgsz, gate):
        """The gate's Fallback for this step's model (GateOptions `gate`: how many images, how many steps)."""
        from defectrt.export.calibration import CalibrationReader
        from defectrt.export.sensitivity import Fallback

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a few images on purpose: no "fewer than 100" warning
            blob = CalibrationReader(self.calib_dir, imgsz, calib_count=gate.sensitivity_images, seed=1).all()
        return Fallback(self.source, final_path, self.requantize, blob, max_steps=gate.fallback_steps)


QAT_MAX_IMAGES = 512  # fine-tuning images taken from --calib (more only cost time: distillation needs no labels)


def int8_step(fp32_path, final_path, calib_dir, work, calib_count=300, flavour="trt", target_trt=None,
              calib_method="max", qat_epochs=0, model_ref=None, export=None, imgsz=None, log=None):
    """Write the INT8 model to `final_path`; returns the Int8Step (for the gate's fallback).

    QAT needs model_ref (the checkpoint), export(module, path) (the bundle's FP32 export with its
    settings) and imgsz; it fine-tunes on the calibration images (up to QAT_MAX_IMAGES).
    """
    source, qat, scales_from = fp32_path, None, None
    if qat_epochs:
        from defectrt.export.calibration import CalibrationReader
        from defectrt.train.qat import qat_finetune

        scales_from = os.path.join(work, "model_ptq_for_qat.onnx")
        Int8Step(fp32_path, calib_dir, calib_count, flavour, target_trt, calib_method).requantize([], scales_from)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the count warning was given for the calibration itself
            images = CalibrationReader(calib_dir, imgsz, calib_count=QAT_MAX_IMAGES, seed=0).all()
        module, qat = qat_finetune(model_ref, images, qat_epochs, fp32_path, scales_from, flavour=flavour, log=log)
        source = os.path.join(work, "model_qat_fp32.onnx")
        export(module, source)
    step = Int8Step(source, calib_dir, calib_count, flavour, target_trt, calib_method, qat=qat, scales_from=scales_from)
    step.requantize([], final_path)
    return step
