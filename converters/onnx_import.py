"""The ONNX importer's old address, kept for its callers: the importer is the package converters/onnx/."""
from .onnx import onnx_bytes_to_model, onnx_to_model

__all__ = ["onnx_bytes_to_model", "onnx_to_model"]
