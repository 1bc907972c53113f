"""The engine as an ``onnx.backend.base.Backend``, so that onnx's own backend test cases can run on it.

The conformance node tests pass the weights W, R, B and P as graph inputs and feed them at run time; the engine
compiles weights as constants. So ``prepare`` only keeps the model, and ``run`` binds the fed weights into
initializers (a new ModelProto: the node, its attributes and the other inputs unchanged), converts that with
``converters.from_onnx`` and runs it. Each distinct set of weights is therefore a conversion and a Session; the
compiled code is shared, since it depends only on the graph's structure.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.backend.base import Backend, BackendRep

import engine
from converters import from_onnx

# Input positions that are weights, per recurrent op: what must become an initializer before conversion.
WEIGHT_INPUTS = {"LSTM": (1, 2, 3, 7), "GRU": (1, 2, 3), "RNN": (1, 2, 3)}


def weight_names(model: onnx.ModelProto) -> set:
    """Names of graph inputs that feed a weight position of a recurrent node."""
    graph_inputs = {vi.name for vi in model.graph.input}
    names = set()
    for node in model.graph.node:
        for i in WEIGHT_INPUTS.get(node.op_type, ()):
            if i < len(node.input) and node.input[i] in graph_inputs:
                names.add(node.input[i])
    return names


def bind_weights(model: onnx.ModelProto, feeds: dict) -> tuple:
    """A copy of ``model`` whose weight inputs are initializers holding the fed values, and the remaining feeds."""
    bound = weight_names(model)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    kept = [vi for vi in out.graph.input if vi.name not in bound]
    del out.graph.input[:]
    out.graph.input.extend(kept)
    for name in sorted(bound):
        out.graph.initializer.append(numpy_helper.from_array(np.asarray(feeds[name]), name))
    return out, {k: v for k, v in feeds.items() if k not in bound}


class EngineRep(BackendRep):
    def __init__(self, model: onnx.ModelProto, precision: str | None = None):
        self.model = model
        self.precision = precision
        self.input_names = [vi.name for vi in model.graph.input
                            if vi.name not in {init.name for init in model.graph.initializer}]
        self.output_names = [vi.name for vi in model.graph.output]

    def run(self, inputs, **kwargs):
        if isinstance(inputs, dict):
            feeds = dict(inputs)
        else:
            if len(inputs) != len(self.input_names):
                raise ValueError(f"expected {len(self.input_names)} inputs ({self.input_names}), got {len(inputs)}")
            feeds = dict(zip(self.input_names, inputs))
        bound, run_feeds = bind_weights(self.model, feeds)
        session = engine.Session(from_onnx(bound), precision=self.precision)
        return tuple(session.run(self.output_names, run_feeds))


class EngineBackend(Backend):
    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs):
        super().prepare(model, device, **kwargs)     # onnx.checker on the model as given
        return EngineRep(model, kwargs.get("precision"))

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device == "CPU"


prepare = EngineBackend.prepare
run_model = EngineBackend.run_model
supports_device = EngineBackend.supports_device
