"""The engine as an ``onnx.backend.base.Backend``, so that onnx's own backend test cases can run on it.

``prepare`` converts the model once (``converters.from_onnx``) and makes one Session; ``run`` feeds it every graph
input, as given. The conformance node tests feed the weights W, R, B and P as graph inputs at run time: the engine
packs them on the call (engine/call_weights.py), so nothing is bound or converted again per call.
"""
from __future__ import annotations

import onnx
from onnx.backend.base import Backend, BackendRep

import engine
from converters import from_onnx


class EngineRep(BackendRep):
    def __init__(self, model: onnx.ModelProto, precision: str | None = None):
        self.session = engine.Session(from_onnx(model), precision=precision)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [vi.name for vi in model.graph.output]

    def run(self, inputs, **kwargs):
        if isinstance(inputs, dict):
            feeds = dict(inputs)
        else:
            if len(inputs) != len(self.input_names):
                raise ValueError(f"expected {len(self.input_names)} inputs ({self.input_names}), got {len(inputs)}")
            feeds = dict(zip(self.input_names, inputs))
        return tuple(self.session.run(self.output_names, feeds))


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
