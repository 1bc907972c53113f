"""Small models built directly with engine.Model and engine.Node (no torch, no onnx, no converter), and their
float64 reference outputs from tests/naive.py.

Each model is one recurrent node with ONNX's inputs and outputs, every attribute filled in as the converters write
them (engine/model.py), weights in ONNX gate order: LSTM i, o, f, c; GRU z, r, h.
"""
from __future__ import annotations

import numpy as np

import engine
import naive

DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}


def recurrent_model(op="LSTM", *, I=4, H=6, direction="forward", sequence_lens=False, peepholes=False, clip=None,
                    input_forget=0, linear_before_reset=0, dtype="float32", seed=0, scale=0.5):
    """(engine.Model, reference): one ``op`` node.

    Inputs X (T, B, I); sequence_lens (B,) int32 if asked for (then required, as in ONNX); initial_h (D, B, H)
    and, for the LSTM, initial_c (D, B, H), both optional (zeros). Outputs Y (T, D, B, H), Y_h (D, B, H) and, for
    the LSTM, Y_c (D, B, H). Forward models can stream along T.
    ``reference(feed)`` returns the outputs computed by tests/naive.py in float64.
    """
    rng = np.random.default_rng(seed)
    D = 2 if direction == "bidirectional" else 1
    G = naive.GATES[op]
    w = lambda *shape: (rng.standard_normal(shape) * scale).astype(dtype)   # noqa: E731
    tensors = {"W": w(D, G * H, I), "R": w(D, G * H, H), "B": w(D, 2 * G * H)}   # B: Wb then Rb
    if peepholes:
        tensors["P"] = w(D, 3 * H)                                                 # i, o, f
    inputs = [engine.TensorSpec("X", ["T", "B", I], dtype)]
    if sequence_lens:
        inputs.append(engine.TensorSpec("sequence_lens", ["B"], "int32"))          # required, as in ONNX
    states = ["initial_h", "initial_c"] if op == "LSTM" else ["initial_h"]
    inputs += [engine.TensorSpec(s, [D, "B", H], dtype, optional=True) for s in states]
    node_inputs = ["X", "W", "R", "B", "sequence_lens" if sequence_lens else "", *states]
    attrs = {"hidden_size": H, "direction": direction, "layout": 0,
             "activations": [[a, 0.0, 0.0] for a in DEFAULT_ACTIVATIONS[op] * D], "clip": clip}
    if op == "LSTM":
        node_inputs += ["P" if peepholes else ""]
        attrs.update(input_forget=input_forget, proj_size=0)
    elif op == "GRU":
        attrs.update(linear_before_reset=linear_before_reset)
    outputs = ["Y", "Y_h", "Y_c"] if op == "LSTM" else ["Y", "Y_h"]
    out_specs = [engine.TensorSpec("Y", ["T", D, "B", H], dtype)]
    out_specs += [engine.TensorSpec(o, [D, "B", H], dtype) for o in outputs[1:]]
    stream = None
    if direction == "forward":
        stream = {"input": "X", "time_axis": 0, "batch_axis": 1, "outputs": {"Y": 0, **{o: None for o in outputs[1:]}}}
    model = engine.Model(inputs=inputs, outputs=out_specs, nodes=[engine.Node(op, op.lower(), node_inputs, outputs,
                                                                               attrs)],
                         tensors=tensors, dtype=dtype, origin={"source": "tests/built_models.py"}, stream=stream)

    def reference(feed):
        extra = {"P": tensors["P"]} if peepholes else {}
        return naive.recurrent(op, feed["X"], tensors["W"], tensors["R"], tensors["B"], feed.get("sequence_lens"),
                               feed.get("initial_h"), feed.get("initial_c"), direction=direction, clip=clip,
                               input_forget=input_forget, linear_before_reset=linear_before_reset, **extra)

    return model.validate(), reference


def if_model():
    """(engine.Model, reference): y = x * 2 if sr == 16000 else x + 1, and the condition itself as a bool output.

    Inputs x (N, 4) float32 and sr, a rank-0 int64 (Silero VAD's sample rate: the planner plans by its value);
    nodes Equal(sr, rate) -> cond, If(cond; then Mul(x, two), else Add(x, one)) -> y."""
    two, one = np.array([2.0], np.float32), np.array([1.0], np.float32)
    model = engine.Model(
        inputs=[engine.TensorSpec("x", ["N", 4]), engine.TensorSpec("sr", [], "int64")],
        outputs=[engine.TensorSpec("y", ["N", 4]), engine.TensorSpec("cond", [], "bool")],
        nodes=[engine.Node("Equal", "eq", ["sr", "rate"], ["cond"]),
               engine.Node("If", "if", ["cond", "x", "two", "one"], ["y"],
                           {"then": {"nodes": [engine.Node("Mul", "mul", ["x", "two"], ["t"])], "outputs": ["t"]},
                            "else": {"nodes": [engine.Node("Add", "add", ["x", "one"], ["e"])], "outputs": ["e"]},
                            "ranks": [2]})],
        tensors={"rate": np.array(16000, np.int64), "two": two, "one": one},
        origin={"source": "tests/built_models.py"})

    def reference(feed):
        x, sr = feed["x"].astype(np.float64), int(feed["sr"])
        return [x * 2 if sr == 16000 else x + 1, np.array(sr == 16000)]

    return model.validate(), reference


def weights_as_inputs(model, names, shapes=None):
    """A copy of ``model`` whose tensors ``names`` are graph inputs instead (after its other inputs, declared with
    their shapes or with ``shapes[name]``), and those arrays, to feed: the model of an ONNX graph whose weights are
    fed at run time."""
    fed = {name: model.tensors[name] for name in names}
    inputs = list(model.inputs) + [engine.TensorSpec(name, list((shapes or {}).get(name, arr.shape)), model.dtype)
                                   for name, arr in fed.items()]
    tensors = {k: v for k, v in model.tensors.items() if k not in fed}
    out = engine.Model(inputs=inputs, outputs=model.outputs, nodes=model.nodes, tensors=tensors, dtype=model.dtype,
                       origin=model.origin, stream=model.stream)
    return out.validate(), fed
