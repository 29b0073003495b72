"""`defectrt.export.onnx.export_onnx`: the implementation lives in onnx_export.py (see there)."""
from defectrt.export.onnx_export import ExportResult, ExportVerificationError, choose_grid_sample, export_onnx  # noqa: F401
