"""Converters: ONNX files and PyTorch modules or state dicts -> one lstm-engine model file.

Framework quirks (gate orders, split biases, exporter subgraphs, batch_first) are resolved here, once; the engine
never asks where a model came from.
"""
from __future__ import annotations

import os

from engine.model import Model, save


def from_onnx(src, dst: str | os.PathLike | None = None, progress: bool = False) -> Model:
    """Convert an ONNX file (path, bytes or ModelProto) and write it to ``dst`` (if given). Returns the Model."""
    from .onnx_import import onnx_to_model

    model = onnx_to_model(src, progress=progress)
    if dst is not None:
        save(model, dst)
    return model


def from_torch(module_or_state_dict, dst: str | os.PathLike | None = None, **options) -> Model:
    """Convert an ``nn.LSTM``, ``nn.GRU``, ``nn.RNN``, ``nn.LSTMCell``, ``nn.GRUCell`` or ``nn.RNNCell`` (or its state
    dict, or a path to one) and write it to ``dst`` (if given).

    See ``converters.torch_import.torch_to_model`` for the options a bare state dict needs.
    """
    from .torch_import import torch_to_model

    model = torch_to_model(module_or_state_dict, **options)
    if dst is not None:
        save(model, dst)
    return model


__all__ = ["from_onnx", "from_torch"]
