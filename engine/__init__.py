"""lstm-engine: a Numba-jitted CPU inference engine for LSTM models, with onnxruntime's API.

    import engine
    sess = engine.Session("model.lstm")          # or "model.onnx"
    y, h, c = sess.run(None, {"X": x})
"""
from .errors import (ConversionError, EngineError, FormatVersionError, InvalidInputError, ModelFileError,
                     UnsupportedModelError)
from .model import FORMAT_VERSION, Model, Node, TensorSpec, load, save
from .session import NodeArg, Session, Stream

__version__ = "0.1.0"

__all__ = [
    "Session", "Stream", "NodeArg", "Model", "Node", "TensorSpec", "load", "save", "FORMAT_VERSION",
    "EngineError", "ModelFileError", "FormatVersionError", "UnsupportedModelError", "InvalidInputError",
    "ConversionError", "__version__",
]
