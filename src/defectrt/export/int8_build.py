"""The INT8 step of `export build`: PTQ (or QAT, then PTQ scales) and the gate's fallback, in one place so
that the bundle code only asks for "an INT8 model" and "a fallback for it".

PTQ: defectrt.export.precision.quantize_int8 from the FP32 export. QAT (`qat_epochs` > 0): the checkpoint
is fine-tuned with fake quantization (defectrt.train.qat), exported to FP32 ONNX with the bundle's own
export settings, and quantized by the same quantize_int8 - so each flavour gets exactly its production
Q/DQ graph, with scales calibrated on the same images, on weights trained to tolerate them.
"""
from __future__ import annotations

import os
import warnings

from defectrt.export import precision


class Int8Step(object):
    """source: the FP32 ONNX quantized (the plain export, or the QAT-tuned one); qat: the QAT record or None.
    requantize(exclude_nodes, out_path) makes the INT8 model leaving those nodes out."""

    def __init__(self, source, calib_dir, calib_count, flavour, target_trt, calib_method, qat=None):
        self.source, self.calib_dir, self.qat = source, calib_dir, qat
        self.kw = dict(calib_count=calib_count, flavour=flavour, target_trt=target_trt,
                       calibration_method=calib_method)

    def requantize(self, exclude_nodes, out_path):
        # Looked up on the module at call time: tests stand a faulty quantizer in for the real one.
        return precision.quantize_int8(self.source, out_path, self.calib_dir, exclude_nodes=list(exclude_nodes),
                                       force=True, **self.kw)

    def fallback(self, final_path, imgsz, gate):
        """The gate's Fallback for this step's model (GateOptions `gate`: how many images, how many steps)."""
        from defectrt.export.calibration import CalibrationReader
        from defectrt.export.sensitivity import Fallback

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a few images on purpose: no "fewer than 100" warning
            blob = CalibrationReader(self.calib_dir, imgsz, calib_count=gate.sensitivity_images, seed=1).all()
        return Fallback(self.source, final_path, self.requantize, blob, max_steps=gate.fallback_steps)


def int8_step(fp32_path, final_path, calib_dir, work, calib_count=300, flavour="trt", target_trt=None,
              calib_method="max", qat_epochs=0, model_ref=None, export=None, qat_data=None, imgsz=None, log=None):
    """Write the INT8 model to `final_path`; returns the Int8Step (for the gate's fallback).

    QAT needs model_ref (the checkpoint), export(module, path) (the bundle's FP32 export with its
    settings), qat_data (a labelled dataset: its train split is fine-tuned on) and imgsz.
    """
    source, qat = fp32_path, None
    if qat_epochs:
        from defectrt.train.qat import qat_finetune, quantized_conv_digests

        digests = quantized_conv_digests(fp32_path, qat_excluded_nodes(fp32_path))
        module, qat = qat_finetune(model_ref, qat_data, epochs=qat_epochs, imgsz=imgsz, quantize_digests=digests,
                                   flavour=flavour, log=log)
        source = os.path.join(work, "model_qat_fp32.onnx")
        export(module, source)
    step = Int8Step(source, calib_dir, calib_count, flavour, target_trt, calib_method, qat=qat)
    step.requantize([], final_path)
    return step


def qat_excluded_nodes(fp32_path):
    """FP32 ONNX node names that PTQ leaves unquantized (stem, DySample islands and feeders, decode tail)."""
    names = set(precision.stem_nodes(fp32_path)) | set(precision.island_names(fp32_path))
    names |= set(precision.island_feeders(fp32_path)) | set(precision.decode_tail(fp32_path))
    return names
