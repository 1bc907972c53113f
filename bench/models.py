"""One scenario's model, three ways: the torch ``nn.LSTM`` itself, its ONNX export (for onnxruntime) and the
lstm-engine file converted from that ONNX file (for the engine). All three hold the same weights.
"""
from __future__ import annotations

import os
import warnings
import zlib
from dataclasses import dataclass

import numpy as np

from .scenarios import Scenario

INPUT_NAMES = ["input", "h0", "c0"]
OUTPUT_NAMES = ["output", "h_n", "c_n"]


@dataclass
class BuiltModel:
    scenario: Scenario
    module: object        # torch.nn.LSTM in eval mode, float32
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
    module = torch.nn.LSTM(scenario.input_size, scenario.H, num_layers=scenario.layers,
                           bidirectional=scenario.bidirectional).eval()
    stem = os.path.join(workdir, scenario.name.replace("/", "_"))
    onnx_path, engine_path = stem + ".onnx", stem + ".lstm"
    states = scenario.layers * scenario.directions
    example = (torch.zeros(3, 2, scenario.input_size),
               (torch.zeros(states, 2, scenario.H), torch.zeros(states, 2, scenario.H)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the TorchScript exporter's deprecation notice and LSTM batch warnings
        torch.onnx.export(module, example, onnx_path, dynamo=False, input_names=INPUT_NAMES,
                          output_names=OUTPUT_NAMES,
                          dynamic_axes={"input": {0: "T", 1: "B"}, "h0": {1: "B"}, "c0": {1: "B"},
                                        "output": {0: "T", 1: "B"}, "h_n": {1: "B"}, "c_n": {1: "B"}})
    t0 = time.perf_counter()
    from_onnx(onnx_path, engine_path)
    return BuiltModel(scenario, module, onnx_path, engine_path, time.perf_counter() - t0)


def make_inputs(scenario: Scenario, T: int | None = None) -> dict:
    """Random float32 inputs: input (T, B, I); h0 and c0 (layers*directions, B, H), non-zero so that the state
    plumbing is checked too."""
    rng = np.random.default_rng(seed_of(scenario.name) + 1)
    T = scenario.T if T is None else T
    states = scenario.layers * scenario.directions
    return {"input": rng.standard_normal((T, scenario.B, scenario.input_size), dtype=np.float32),
            "h0": (0.5 * rng.standard_normal((states, scenario.B, scenario.H))).astype(np.float32),
            "c0": (0.5 * rng.standard_normal((states, scenario.B, scenario.H))).astype(np.float32)}
