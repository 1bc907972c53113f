"""The benchmark's scenarios and the speed targets of issue 3, in one place.

A target is a minimum ratio (onnxruntime's median time per call / the engine's) or, for cold starts, a maximum
time. Two targets compare rows with each other and are evaluated in ``run.evaluate_targets``: ``stream.step`` must
be faster than ``session.run`` with the state passed in and out, and each all-core ratio must be at least the
single-thread ratio of the same row.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str                  # "stream" (T=1, state carried between calls), "sequence", "batched", "bidirectional"
    T: int                     # sequence length per call
    B: int                     # batch size
    H: int                     # hidden size
    I: int | None = None       # input size; None means I = H
    layers: int = 1
    bidirectional: bool = False
    min_ratio: float | None = None   # target: onnxruntime time / engine time >= this (None: the issue sets none)
    target_source: str = ""          # where min_ratio comes from, for the JSON
    cell: str = "lstm"               # "lstm", "gru" or "rnn": the torch module nn.LSTM / nn.GRU / nn.RNN

    @property
    def gates(self) -> int:
        return {"lstm": 4, "gru": 3, "rnn": 1}[self.cell]

    @property
    def state_names(self) -> list:
        """The model's state inputs (torch's names): h0 and, for an LSTM, c0."""
        return ["h0", "c0"] if self.cell == "lstm" else ["h0"]

    @property
    def input_size(self) -> int:
        return self.H if self.I is None else self.I

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    def flops_per_call(self) -> int:
        """Multiply-adds of the matrix products, counted as 2 flops: 2*T*B*G*H*(I_layer+H) per direction per layer
        (G gates: 4 for LSTM, 3 for GRU, 1 for RNN; I_layer = I for the first layer, directions*H after it). The
        elementwise gate work is not counted, so GFLOP/s are those of the products alone."""
        total = 0
        for layer in range(self.layers):
            i_layer = self.input_size if layer == 0 else self.directions * self.H
            total += self.directions * 2 * self.T * self.B * self.gates * self.H * (i_layer + self.H)
        return total

    def tolerance(self) -> float:
        """The project's fp32 tolerance (max abs diff): 1e-5 up to 100 steps, 1e-4 up to 1000."""
        return 1e-5 if self.T <= 100 else 1e-4


@dataclass(frozen=True)
class ColdScenario:
    name: str
    runtime: str               # "engine", "onnxruntime" or a peer's name ("openvino", "tract")
    cache: str | None          # engine only: "warm" or "empty" compile cache
    max_seconds: float | None  # target: from import to the first result, in a fresh process
    target_source: str = ""


_ISSUE = "issue 3"
SCENARIOS = [
    *(Scenario(f"stream/H{h}", "stream", T=1, B=1, H=h, min_ratio=3.0,
               target_source=f"{_ISSUE}: streaming with the state in/out >= 3x at every H; stream.step faster still")
      for h in (64, 128, 256, 512)),
    *(Scenario(f"seq/T100/H{h}", "sequence", T=100, B=1, H=h, min_ratio=1.5 if h in (128, 256, 512) else 1.2,
               target_source=f"{_ISSUE}: sequence B=1 >= 1.5x at H 128/256/512, >= 1.2x at 64 and 1024")
      for h in (64, 128, 256, 512, 1024)),
    Scenario("seq/T1000/H128", "sequence", T=1000, B=1, H=128, min_ratio=1.5,
             target_source=f"{_ISSUE}: sequence B=1 >= 1.5x at H 128"),
    Scenario("batch/B32/H256", "batched", T=100, B=32, H=256, min_ratio=1.0, target_source=f"{_ISSUE}: batched >= 1.0x"),
    Scenario("batch/B64/H512", "batched", T=100, B=64, H=512, min_ratio=1.0, target_source=f"{_ISSUE}: batched >= 1.0x"),
    # the issue sets no ratio for the bidirectional case; it is measured and shown without a target
    Scenario("bidir2/H256", "bidirectional", T=100, B=1, H=256, layers=2, bidirectional=True),
    # issue 4: GRU and RNN, streaming and T=100 at B=1, H = 128 and 256, with the LSTM targets
    *(Scenario(f"{cell}/stream/H{h}", "stream", T=1, B=1, H=h, cell=cell, min_ratio=3.0,
               target_source="issue 4: GRU/RNN with the LSTM targets (streaming >= 3x)")
      for cell in ("gru", "rnn") for h in (128, 256)),
    *(Scenario(f"{cell}/seq/T100/H{h}", "sequence", T=100, B=1, H=h, cell=cell, min_ratio=1.5,
               target_source="issue 4: GRU/RNN with the LSTM targets (sequence B=1 >= 1.5x at H 128/256)")
      for cell in ("gru", "rnn") for h in (128, 256)),
]

# issue 11 target 5, reduced-precision weights: run by bench/reduced.py (python -m bench.reduced), not by run.py, since
# each row has five contenders (onnxruntime float32 and int8, the engine float32, bfloat16 and int8) and its own
# accuracy checks; min_ratio is engine int8 / onnxruntime's int8 model (bfloat16's target is in bench/reduced.py)
REDUCED_SCENARIOS = [
    Scenario(f"reduced/T100/B1/H{h}", "sequence", T=100, B=1, H=h, min_ratio=1.2,
             target_source="issue 11: int8 >= 1.2x onnxruntime int8; bfloat16 >= 1.5x onnxruntime float32 at H=512")
    for h in (256, 512)]

# Cold start: the sequence model T=100, B=1, H=128, one thread, in a fresh Python process
COLD_MODEL = Scenario("cold", "sequence", T=100, B=1, H=128)
COLD_SCENARIOS = [
    ColdScenario("cold/engine-warm", "engine", "warm", 0.3,
                 "issue 10: a warm fresh process (executor cached) to the first result <= 0.3 s; with no per-model "
                 "compilation every model structure starts like this"),
    ColdScenario("cold/engine-empty", "engine", "empty", 3.0,
                 "issue 10: empty cache <= 3 s, or lstm-engine warmup once per install"),
    ColdScenario("cold/onnxruntime", "onnxruntime", None, None),
    # the peers (bench/peers.py), when installed: the same ONNX file, one thread
    ColdScenario("cold/openvino", "openvino", None, None),
    ColdScenario("cold/tract", "tract", None, None),
]


def matches(name: str, patterns) -> bool:
    """A name is selected by a pattern that is a glob (``seq/*``) or a substring (``stream``); no patterns: all."""
    if not patterns:
        return True
    return any(fnmatch.fnmatchcase(name, p) or p in name for p in patterns)


def select(patterns, scenarios=None, cold=None):
    """(scenarios, cold scenarios) whose names match any of the patterns."""
    scenarios = SCENARIOS if scenarios is None else scenarios
    cold = COLD_SCENARIOS if cold is None else cold
    return [s for s in scenarios if matches(s.name, patterns)], [c for c in cold if matches(c.name, patterns)]
