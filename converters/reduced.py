"""Reduced-precision weights at conversion: the W and R matrices of every LSTM, GRU and RNN node stored as bfloat16
or int8 (engine/quant.py describes the encodings). Biases, peepholes, projections and every other tensor stay as
they are."""
from __future__ import annotations

from engine.errors import ConversionError
from engine.model import Model
from engine.quant import ENCODINGS, FORMAT_VERSION_REDUCED, constant_weights, to_bfloat16, to_int8


def reduce_weights(model: Model, weights: str) -> Model:
    """``model`` with its recurrent W and R tensors encoded as ``weights`` ("float32": unchanged). A tensor is
    encoded only where nothing but recurrent W/R inputs read it; weights fed at run time (graph inputs) stay float."""
    from engine.ops import RECURRENT_OP_NAMES
    if weights not in ENCODINGS:
        raise ConversionError(f"weights {weights!r} is not one of {', '.join(ENCODINGS)}")
    if weights == "float32":
        return model
    if model.dtype != "float32":
        raise ConversionError(f"--weights {weights} applies to float32 models; this one is {model.dtype}")
    readers = {}
    for node in model.all_nodes():
        for i, name in enumerate(node.inputs):
            if name:
                readers.setdefault(name, []).append((node, i))
    names = []
    for node in model.all_nodes():
        if node.op not in RECURRENT_OP_NAMES or not constant_weights(node, model):
            continue
        for i in (1, 2):
            name = node.inputs[i]
            if (name in model.tensors and name not in names and model.tensors[name].dtype.kind == "f"
                    and all(n.op in RECURRENT_OP_NAMES and k in (1, 2) for n, k in readers[name])):
                names.append(name)
    if not names:
        raise ConversionError(f"--weights {weights}: the model has no LSTM, GRU or RNN node with constant W and R "
                              f"matrices, the only weights that can be stored in {weights}; convert it with "
                              f"--weights float32")
    tensors, encodings = dict(model.tensors), dict(model.weight_encodings)
    for name in names:
        if weights == "bfloat16":
            tensors[name] = to_bfloat16(tensors[name])
            encodings[name] = {"encoding": "bfloat16"}
        else:
            scale_name = _free_name(f"{name}.scales", tensors)
            tensors[name], tensors[scale_name] = to_int8(tensors[name])
            encodings[name] = {"encoding": "int8", "scales": scale_name}
    return Model(inputs=model.inputs, outputs=model.outputs, nodes=model.nodes, tensors=tensors, dtype=model.dtype,
                 origin=dict(model.origin, weights=weights), stream=model.stream,
                 format_version=max(model.format_version, FORMAT_VERSION_REDUCED),
                 weight_encodings=encodings).validate()


def _free_name(name, taken):
    k = 0
    out = name
    while out in taken:
        k += 1
        out = f"{name}{k}"
    return out
