"""One scenario's model, three ways: the torch module itself (``nn.LSTM``, ``nn.GRU`` or ``nn.RNN``), its ONNX export (for onnxruntime) and the
lstm-engine file converted from that ONNX file (for the engine). All three hold the same weights.
"""
from __future__ import annotations

import os
import warnings
import zlib
from dataclasses import dataclass

import numpy as np

from .scenarios import Scenario

MODULES = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}


def input_names(scenario: Scenario) -> list:
    return ["input", *scenario.state_names]


def output_names(scenario: Scenario) -> list:
    return ["output", "h_n", "c_n"][:1 + len(scenario.state_names)]


@dataclass
class BuiltModel:
    scenario: Scenario
    module: object        # torch.nn.LSTM / GRU / RNN in eval mode, float32
    onnx_path: str        # torch.onnx.export(dynamo=False), dynamic T and B
    engine_path: str      # converters.from_onnx(onnx_path) saved as an lstm-engine file
    convert_seconds: float


def seed_of(name: str) -> int:
    """A fixed seed per scenario name, so that every run builds the same weights and inputs."""
    return zlib.crc32(name.encode())


def build(scenario: Scenario, workdir: str) -> BuiltModel:
    import time

    import torch
    from converters import from_onnx

    torch.manual_seed(seed_of(scenario.name))
    cls = getattr(torch.nn, MODULES[scenario.cell])
    module = cls(scenario.input_size, scenario.H, num_layers=scenario.layers,
                 bidirectional=scenario.bidirectional).eval()
    stem = os.path.join(workdir, scenario.name.replace("/", "_"))
    onnx_path, engine_path = stem + ".onnx", stem + ".lstm"
    states = scenario.layers * scenario.directions
    zeros = [torch.zeros(states, 2, scenario.H) for _ in scenario.state_names]
    example = (torch.zeros(3, 2, scenario.input_size), tuple(zeros) if len(zeros) > 1 else zeros[0])
    names_in, names_out = input_names(scenario), output_names(scenario)
    axes = {"input": {0: "T", 1: "B"}, "output": {0: "T", 1: "B"}}
    axes.update({n: {1: "B"} for n in names_in[1:] + names_out[1:]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the TorchScript exporter's deprecation notice and LSTM batch warnings
        torch.onnx.export(module, example, onnx_path, dynamo=False, input_names=names_in, output_names=names_out,
                          dynamic_axes=axes)
    t0 = time.perf_counter()
    from_onnx(onnx_path, engine_path)
    return BuiltModel(scenario, module, onnx_path, engine_path, time.perf_counter() - t0)


def make_inputs(scenario: Scenario, T: int | None = None) -> dict:
    """Random float32 inputs: input (T, B, I); h0 (and c0 for an LSTM) (layers*directions, B, H), non-zero so that
    the state plumbing is checked too."""
    rng = np.random.default_rng(seed_of(scenario.name) + 1)
    T = scenario.T if T is None else T
    states = scenario.layers * scenario.directions
    feed = {"input": rng.standard_normal((T, scenario.B, scenario.input_size), dtype=np.float32)}
    for name in scenario.state_names:
        feed[name] = (0.5 * rng.standard_normal((states, scenario.B, scenario.H))).astype(np.float32)
    return feed
