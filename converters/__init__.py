"""Converters: ONNX files and PyTorch modules or state dicts -> one lstm-engine model file.

Framework quirks (gate orders, split biases, exporter subgraphs, batch_first) are resolved here, once; the engine
never asks where a model came from.
"""
from __future__ import annotations

import os

from engine.model import Model, save


def from_onnx(src, dst: str | os.PathLike | None = None, progress: bool = False, state: dict | None = None,
              weights: str = "float32") -> Model:
    """Convert an ONNX file (path, bytes or ModelProto) and write it to ``dst`` (if given). Returns the Model.
    ``state``: {input: output} pairs whose output is the input's next value, kept inside a stream (default: found by
    name and shape, as Silero's ``state`` -> ``stateN`` or ``h``, ``c`` -> ``hn``, ``cn``). ``weights``: "float32",
    "bfloat16" or "int8", how the recurrent W and R matrices are stored (converters/reduced.py)."""
    from .onnx import onnx_to_model
    from .reduced import reduce_weights

    _check_weights(weights)
    model = reduce_weights(onnx_to_model(src, progress=progress, state=state), weights)
    if dst is not None:
        save(model, dst)
    return model


def from_torch(module_or_state_dict, dst: str | os.PathLike | None = None, example_input=None,
               weights: str = "float32", **options) -> Model:
    """Convert a PyTorch model and write it to ``dst`` (if given). Returns the Model. ``weights``: "float32",
    "bfloat16" or "int8", how the recurrent W and R matrices are stored (converters/reduced.py).

    * ``nn.LSTM``, ``nn.GRU``, ``nn.RNN``, ``nn.LSTMCell``, ``nn.GRUCell``, ``nn.RNNCell``, or the state dict of one
      (or a path to one): converted directly, keeping torch's input and output names (see
      ``converters.torch_import.torch_to_model`` for the options a bare state dict needs).
    * any other ``nn.Module`` (an embedding, a convolutional front end, a linear head around recurrent layers):
      exported with ``torch.onnx.export(dynamo=False)`` on ``example_input`` (a tensor or a tuple of tensors) and
      converted from ONNX. Options: ``input_names`` / ``output_names`` (default ``input``, ``input1``, ... and
      ``output``, ``output1``, ...) and ``dynamic_axes`` (default: axes 0 and 1 of the first input, its batch and
      time, so that any length runs and the model can stream).
    """
    from .reduced import reduce_weights
    from .torch_import import MODULES, torch_to_model

    _check_weights(weights)
    is_module = hasattr(module_or_state_dict, "state_dict") and not isinstance(module_or_state_dict, dict)
    if is_module and type(module_or_state_dict).__name__ not in MODULES:
        model = _from_torch_module(module_or_state_dict, example_input, **options)
    else:
        if example_input is not None:
            options.pop("input_names", None)
        model = torch_to_model(module_or_state_dict, **options)
    model = reduce_weights(model, weights)
    if dst is not None:
        save(model, dst)
    return model


def _check_weights(weights):
    from engine.errors import ConversionError
    from engine.quant import ENCODINGS
    if weights not in ENCODINGS:
        raise ConversionError(f"weights={weights!r} is not one of {', '.join(ENCODINGS)}")


def _from_torch_module(module, example_input, input_names=None, output_names=None, dynamic_axes=None,
                       progress: bool = False) -> Model:
    import io
    import warnings

    from engine.errors import ConversionError

    if example_input is None:
        raise ConversionError(f"converting a whole {type(module).__name__} goes through the ONNX exporter and needs "
                              f"example_input (a tensor or a tuple of tensors of the shapes it takes)")
    args = example_input if isinstance(example_input, tuple) else (example_input,)
    input_names = list(input_names or ["input"] + [f"input{k}" for k in range(1, len(args))])
    if dynamic_axes is None:
        first = args[0]
        dynamic_axes = {input_names[0]: {k: f"dim{k}" for k in range(min(2, first.dim()))}}
    import torch
    buf = io.BytesIO()
    was_training = module.training
    module.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, buf, dynamo=False, input_names=input_names, output_names=output_names,
                              dynamic_axes=dynamic_axes)
    except Exception as e:
        raise ConversionError(f"torch.onnx.export failed on {type(module).__name__}: "
                              f"{str(e).splitlines()[0]}") from e
    finally:
        module.train(was_training)
    return from_onnx(buf.getvalue(), progress=progress)


__all__ = ["from_onnx", "from_torch"]
