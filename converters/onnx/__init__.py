"""ONNX -> lstm-engine model.

Handles what both PyTorch exporters emit around recurrent layers:
  * weight-only subgraphs (the dynamo exporter's Slice/Concat gate reordering, Constant nodes, Casts) are folded to
    constants with onnx's reference evaluator (folding.py);
  * shape computations (Shape -> Gather/Slice -> Mul -> Concat -> Reshape) are evaluated symbolically, so that the
    Reshape between stacked layers becomes a static target (shape_values.py, dims.py);
  * every other node goes to the handler registered for its op and opset (registry.py, handlers/), which emits
    the engine's nodes.
Anything else is a ConversionError/UnsupportedModelError naming the node, the op and what is supported.

    loading.py      protobuf, opset, initializers, graph inputs
    context.py      the state of one import and the helpers handlers share
    importer.py     the driver: each node to folding, shape values or its handler; the Model
    streaming.py    which input and axes a model streams over
"""
from .importer import convert, onnx_bytes_to_model, onnx_to_model

__all__ = ["convert", "onnx_bytes_to_model", "onnx_to_model"]
