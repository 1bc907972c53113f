"""Hostile input, fuzzed: mutated model files and ONNX protobufs, absurd sizes, random feeds and stream steps.

    python -m bench.fuzz --cases 10000 [--seconds N] [--seed S]

Every case must end as an ``engine.EngineError`` subclass raised in Python, or a correct result: never a crash, a
hang, a ``MemoryError`` or another exception type. Cases run in a child process (``Worker``) whose address space is
limited to what it uses after warming up plus ``HEADROOM_BYTES``, so that a segfault is a failure with the case
printed (not a dead test run) and an absurd size that is not refused before allocating shows up as a MemoryError.

The generators (``GENERATORS``; each ``gen(rng) -> Case`` for a ``random.Random``, so hypothesis drives the same
code in tests/test_fuzz.py through ``st.randoms()``):

    file_bytes   byte flips, truncations, insertions, deletions of a valid small .lstm file
    file_json    structured mutations of its JSON: the model description (shapes, sizes, attributes, dtype names,
                 node input names, op names, the stream description) and the safetensors header (dtypes, shapes,
                 data offsets): wrong types, negative, huge, missing, swapped with another value of the file
    onnx_bytes   byte-level mutations of valid small ONNX graphs
    onnx_struct  structured ONNX mutations: attributes, dims, initializer dtypes and sizes, node inputs, op types,
                 opsets
    absurd       hidden_size 10^9, T 10^9 in an input shape, tensor headers claiming terabytes, ConstantOfShape of
                 10^18 elements, stream batch 10^9, broadcast feeds of 10^9 elements: refused before allocating
    feeds        random feeds to valid models: wrong dtypes, ranks, shapes, NaN/inf, empty, non-contiguous,
                 read-only, lists, out-of-range token ids and sequence_lens, huge shapes, bad output names
    stream       random steps (and state assignments) to streams of valid models

Seven small valid base models (``base_models``, built without torch: an LSTM with sequence_lens and initial states,
a bidirectional batch-first GRU, a float64 RNN with Relu and clip, a token-id character model, a graph of shape
glue around a Conv, an LSTM cell, and control flow: an If on a rank-0 int input with comparisons, Not, Where and
Pad around it) and four ONNX graphs (``onnx_models``, the last the same control flow) are where the mutations
start.

A result is "correct" when it matches a plain numpy reference of the base model (``reference``, which also decides
independently which feeds are valid; float32 overflow on inf/huge inputs: shapes only), or, for a mutated model that
still loads, when it runs and every output has the shape and dtype the model declares. After every case the child
re-runs each cached base session on a fixed feed: a case that corrupted memory shows up as ``wrong``.

Outcomes: ``error:<EngineError subclass>``, ``ok``, and the failures ``wrong``, ``crash``, ``hang``, ``memory``
(MemoryError), ``other:<exception type>``, ``unclear:<class>`` (an EngineError whose message is empty or not one
line), ``harness`` (a bug of this file). ``@converters`` marks a failure raised inside converters/ while reading
ONNX (outside the engine's own validation).
"""
from __future__ import annotations

import argparse
import copy
import json
import multiprocessing
import os
import random
import struct
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

HEADROOM_BYTES = 1536 * 1024 * 1024      # the child's address space: what it uses after warm-up, plus this
CASE_SECONDS = 30.0                       # a case running longer is a hang
FAILURES = ("wrong", "crash", "hang", "memory", "harness")
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def is_failure(outcome: str) -> bool:
    return outcome in FAILURES or outcome.startswith(("other:", "unclear:"))


@dataclass
class Case:
    generator: str
    label: str          # what was done, enough to rebuild the case by hand
    job: tuple          # what the worker runs (picklable): ("load", bytes, feed), ("run", ...), ("stream", ...)
    notes: list = field(default_factory=list)

    def __str__(self):
        return f"[{self.generator}] {self.label}"


# ---------------------------------------------------------------------- the base models (small, valid, no torch)
def _acts(names, D):
    return [[n, 0.0, 0.0] for n in names] * D


def _lstm_attrs(H, D=1, **kw):
    a = {"hidden_size": H, "direction": {1: "forward", 2: "bidirectional"}[D], "layout": 0,
         "activations": _acts(("Sigmoid", "Tanh", "Tanh"), D), "clip": None, "input_forget": 0, "proj_size": 0}
    a.update(kw)
    return a


def base_models():
    """{name: engine.Model}: one of each kind of graph the fuzzers start from (fixed weights, seed 0)."""
    from engine import Model, Node, TensorSpec

    rng = np.random.default_rng(0)

    def w(*shape, dtype=np.float32):
        return (rng.standard_normal(shape) * 0.5).astype(dtype)

    models = {}
    # LSTM, forward, every optional run-time input; streams on X's axis 0. sequence_lens is required: an optional
    # input that is not given is zeros (the file format's convention, right for initial states), i.e. length 0
    models["lstm"] = Model(
        inputs=[TensorSpec("X", ["T", "B", 3]), TensorSpec("sequence_lens", ["B"], "int32"),
                TensorSpec("initial_h", [1, "B", 4], optional=True),
                TensorSpec("initial_c", [1, "B", 4], optional=True)],
        outputs=[TensorSpec("Y", ["T", 1, "B", 4]), TensorSpec("Y_h", [1, "B", 4]), TensorSpec("Y_c", [1, "B", 4])],
        nodes=[Node("LSTM", "lstm", ["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c"],
                    ["Y", "Y_h", "Y_c"], _lstm_attrs(4))],
        tensors={"W": w(1, 16, 3), "R": w(1, 16, 4), "B": w(1, 32)},
        stream={"input": "X", "time_axis": 0, "batch_axis": 1, "outputs": {"Y": 0, "Y_h": None, "Y_c": None}})
    # GRU, bidirectional, batch-first (layout 1), linear_before_reset
    models["gru"] = Model(
        inputs=[TensorSpec("X", ["B", "T", 2]), TensorSpec("initial_h", ["B", 2, 3], optional=True)],
        outputs=[TensorSpec("Y", ["B", "T", 2, 3]), TensorSpec("Y_h", ["B", 2, 3])],
        nodes=[Node("GRU", "gru", ["X", "W", "R", "B", "", "initial_h"], ["Y", "Y_h"],
                    {"hidden_size": 3, "direction": "bidirectional", "layout": 1,
                     "activations": _acts(("Sigmoid", "Tanh"), 2), "clip": None, "linear_before_reset": 1})],
        tensors={"W": w(2, 9, 2), "R": w(2, 9, 3), "B": w(2, 18)})
    # RNN, Relu with clip, float64
    models["rnn64"] = Model(
        inputs=[TensorSpec("X", ["T", "B", 2], "float64")],
        outputs=[TensorSpec("Y_h", [1, "B", 3], "float64")],
        nodes=[Node("RNN", "rnn", ["X", "W", "R", "B"], ["", "Y_h"],
                    {"hidden_size": 3, "direction": "forward", "layout": 0, "activations": _acts(("Relu",), 1),
                     "clip": 2.5})],
        tensors={"W": w(1, 3, 2, dtype=np.float64), "R": w(1, 3, 3, dtype=np.float64),
                 "B": w(1, 6, dtype=np.float64)}, dtype="float64",
        stream={"input": "X", "time_axis": 0, "batch_axis": 1, "outputs": {"Y_h": None}})
    # a character model: token ids -> embedding (Gather) -> LSTM -> Squeeze -> MatMul + Add -> LogSoftmax
    V, E, H = 7, 3, 4
    models["charlm"] = Model(
        inputs=[TensorSpec("ids", ["T", "B"], "int64")],
        outputs=[TensorSpec("logp", ["T", "B", V])],
        nodes=[Node("Gather", "embed", ["emb", "ids"], ["x"], {"axis": 0}),
               Node("LSTM", "lstm", ["x", "W", "R", "B"], ["y"], _lstm_attrs(H)),
               Node("Squeeze", "squeeze", ["y"], ["y3"], {"axes": [1]}),
               Node("MatMul", "head", ["y3", "head.W"], ["z"]),
               Node("Add", "head.bias", ["z", "head.b"], ["logits"]),
               Node("LogSoftmax", "logp", ["logits"], ["logp"], {"axis": 2})],
        tensors={"emb": w(V, E), "W": w(1, 4 * H, E), "R": w(1, 4 * H, H), "B": w(1, 8 * H), "head.W": w(H, V),
                 "head.b": w(V)},
        stream={"input": "ids", "time_axis": 0, "batch_axis": 1, "outputs": {"logp": 0}})
    # the shape glue around layers: Conv (grouped, padded) -> Relu -> Transpose -> Split -> Slice -> Concat ->
    # Reshape -> Unsqueeze -> ReduceMean -> Squeeze -> Mul -> Sub
    models["glue"] = Model(
        inputs=[TensorSpec("x", ["N", 4, "L"])],
        outputs=[TensorSpec("out", ["L"]), TensorSpec("cat", ["L", "N", 4])],
        nodes=[Node("Conv", "conv", ["x", "conv.W", "conv.B"], ["c"],
                    {"pads": [1, 1], "strides": [1], "dilations": [1], "group": 2}),
               Node("Relu", "relu", ["c"], ["r"]),
               Node("Transpose", "t", ["r"], ["t"], {"perm": [2, 0, 1]}),
               Node("Split", "split", ["t"], ["s1", "s2"], {"axis": 2, "sizes": [2, 4]}),
               Node("Slice", "slice", ["s2"], ["sl"], {"slices": [[2, 0, 4, 2]]}),
               Node("Concat", "concat", ["s1", "sl"], ["cat"], {"axis": 2}),
               Node("Reshape", "reshape", ["cat"], ["rs"], {"shape": [0, -1]}),
               Node("Unsqueeze", "unsqueeze", ["rs"], ["u"], {"axes": [0]}),
               Node("ReduceMean", "mean", ["u"], ["m"], {"axes": [2], "keepdims": 0}),
               Node("Squeeze", "squeeze", ["m"], ["sq"], {"axes": [0]}),
               Node("Mul", "scale", ["sq", "half"], ["mul"]),
               Node("Sub", "shift", ["mul", "c0"], ["out"])],
        tensors={"conv.W": w(6, 2, 3), "conv.B": w(6), "half": np.array(0.5, np.float32), "c0": w(1)})
    # a PyTorch-style LSTMCell: input (B, I), optional hx, cx; streams one step per call (no time axis)
    models["cell"] = Model(
        inputs=[TensorSpec("input", ["B", 3]), TensorSpec("hx", ["B", 4], optional=True),
                TensorSpec("cx", ["B", 4], optional=True)],
        outputs=[TensorSpec("h'", ["B", 4]), TensorSpec("c'", ["B", 4])],
        nodes=[Node("Unsqueeze", "x1", ["input"], ["x1"], {"axes": [0]}),
               Node("Unsqueeze", "h1", ["hx"], ["h1"], {"axes": [0]}),
               Node("Unsqueeze", "c1", ["cx"], ["c1"], {"axes": [0]}),
               Node("LSTM", "cell", ["x1", "W", "R", "B", "", "h1", "c1"], ["", "h", "c"], _lstm_attrs(4)),
               Node("Squeeze", "h'", ["h"], ["h'"], {"axes": [0]}),
               Node("Squeeze", "c'", ["c"], ["c'"], {"axes": [0]})],
        tensors={"W": w(1, 16, 3), "R": w(1, 16, 4), "B": w(1, 32)},
        stream={"input": "input", "time_axis": None, "batch_axis": 0, "outputs": {"h'": None, "c'": None}})
    # control flow: an If on a rank-0 int input (planned by value, Silero's sr) between comparisons, Not, Where and
    # Pad (reflect before it, constant in its else branch); the comparison's bool result is an output too
    models["control"] = Model(
        inputs=[TensorSpec("x", ["N", "L"]), TensorSpec("sr", [], "int64")],
        outputs=[TensorSpec("y", ["N", "Y"]), TensorSpec("neg", ["N", "L"], "bool")],
        nodes=[Node("Equal", "is16k", ["sr", "rate"], ["is16k"]),
               Node("Greater", "pos", ["x", "zero"], ["pos"]),
               Node("Not", "neg", ["pos"], ["neg"]),
               Node("Where", "where", ["neg", "x", "half"], ["w"]),
               Node("Pad", "reflect", ["w"], ["padded"], {"mode": "reflect", "value": 0.0, "pads": [0, 1, 0, 2]}),
               Node("If", "if", ["is16k", "padded", "two"], ["y"],
                    {"then": {"nodes": [Node("Mul", "double", ["padded", "two"], ["t"])], "outputs": ["t"]},
                     "else": {"nodes": [Node("Pad", "extend", ["padded"], ["e"],
                                             {"mode": "constant", "value": -1.0, "pads": [0, 0, 0, 1]})],
                              "outputs": ["e"]},
                     "ranks": [2]})],
        tensors={"rate": np.array(16000, np.int64), "zero": np.array([0.0], np.float32),
                 "half": np.array([0.5], np.float32), "two": np.array([2.0], np.float32)})
    for m in models.values():
        m.validate()
    return models


MODEL_NAMES = ("lstm", "gru", "rnn64", "charlm", "glue", "cell", "control")
STREAM_MODELS = ("lstm", "rnn64", "charlm", "cell")


_MODEL_BYTES = {}


def model_bytes(name):
    """The .lstm file of base model ``name``."""
    if name not in _MODEL_BYTES:
        from engine.model import to_bytes
        for key, m in base_models().items():
            _MODEL_BYTES[key] = to_bytes(m)
    return _MODEL_BYTES[name]


def onnx_models():
    """{name: serialized ONNX}: an LSTM with every optional input, a GRU, and an embedding + LSTM + head graph."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)

    def init(name, *shape, dtype=np.float32):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.5).astype(dtype), name)

    def model(nodes, inputs, outputs, inits, opset=17):
        g = helper.make_graph(nodes, "g", inputs, outputs, inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 8
        return m.SerializeToString()

    F = TensorProto.FLOAT
    out = {}
    out["lstm"] = model(
        [helper.make_node("LSTM", ["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c"], ["Y", "Y_h", "Y_c"],
                          name="lstm", hidden_size=4, direction="forward")],
        [helper.make_tensor_value_info("X", F, ["T", "B", 3]),
         helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, ["B"]),
         helper.make_tensor_value_info("initial_h", F, [1, "B", 4]),
         helper.make_tensor_value_info("initial_c", F, [1, "B", 4])],
        [helper.make_tensor_value_info(n, F, None) for n in ("Y", "Y_h", "Y_c")],
        [init("W", 1, 16, 3), init("R", 1, 16, 4), init("B", 1, 32)])
    out["gru"] = model(
        [helper.make_node("GRU", ["X", "W", "R", "B"], ["Y", "Y_h"], name="gru", hidden_size=3,
                          direction="bidirectional", linear_before_reset=1, clip=3.0)],
        [helper.make_tensor_value_info("X", F, ["T", "B", 2])],
        [helper.make_tensor_value_info(n, F, None) for n in ("Y", "Y_h")],
        [init("W", 2, 9, 2), init("R", 2, 9, 3), init("B", 2, 18)])
    V, E, H = 7, 3, 4
    out["charlm"] = model(
        [helper.make_node("Gather", ["emb", "ids"], ["x"], name="embed", axis=0),
         helper.make_node("LSTM", ["x", "W", "R", "B"], ["y", "h"], name="lstm", hidden_size=H),
         helper.make_node("Squeeze", ["y", "axes"], ["y3"], name="squeeze"),
         helper.make_node("Gemm", ["y2", "head.W", "head.b"], ["z"], name="head", transB=1),
         helper.make_node("Reshape", ["y3", "flat"], ["y2"], name="flatten"),
         helper.make_node("Softmax", ["z"], ["p"], name="softmax", axis=1)],
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["T", 1])],
        [helper.make_tensor_value_info("p", F, None)],
        [init("emb", V, E), init("W", 1, 4 * H, E), init("R", 1, 4 * H, H), init("B", 1, 8 * H),
         init("head.W", V, H), init("head.b", V), numpy_helper.from_array(np.array([1], np.int64), "axes"),
         numpy_helper.from_array(np.array([-1, H], np.int64), "flat")])
    # node order must be topological: the Reshape feeds the Gemm
    m = onnx.load_from_string(out["charlm"])
    nodes = list(m.graph.node)
    nodes[3], nodes[4] = nodes[4], nodes[3]
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    out["charlm"] = m.SerializeToString()

    def const(name, value):
        return numpy_helper.from_array(np.asarray(value), name)

    def branch(nodes, output, inits=()):
        return helper.make_graph(nodes, "branch", [], [helper.make_tensor_value_info(output, F, None)], list(inits))

    # the control flow of base model "control", as an exporter writes it (pads an input, a Cast to BOOL, And)
    out["control"] = model(
        [helper.make_node("Equal", ["sr", "rate"], ["is16k"], name="is16k"),
         helper.make_node("Less", ["x", "zero"], ["lt"], name="lt"),
         helper.make_node("Cast", ["x"], ["nz"], name="nz", to=TensorProto.BOOL),
         helper.make_node("And", ["lt", "nz"], ["both"], name="both"),
         helper.make_node("Where", ["both", "x", "half"], ["w"], name="where"),
         helper.make_node("Pad", ["w", "pads"], ["padded"], name="reflect", mode="reflect"),
         helper.make_node("If", ["is16k"], ["y"], name="if",
                          then_branch=branch([helper.make_node("Mul", ["padded", "two"], ["t"], name="double")], "t"),
                          else_branch=branch([helper.make_node("Pad", ["padded", "more", "minus"], ["e"],
                                                               name="extend")], "e"))],
        [helper.make_tensor_value_info("x", F, ["N", "L"]), helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("y", F, None), helper.make_tensor_value_info("both", TensorProto.BOOL, None)],
        [const("rate", np.array(16000, np.int64)), const("zero", np.float32(0)), const("half", np.float32(0.5)),
         const("two", np.float32(2)), const("pads", np.array([0, 1, 0, 2], np.int64)),
         const("more", np.array([0, 0, 0, 1], np.int64)), const("minus", np.float32(-1))])
    return out


_ONNX = {}


def onnx_bytes(name):
    if not _ONNX:
        _ONNX.update(onnx_models())
    return _ONNX[name]


# ---------------------------------------------------------------------- the reference (plain numpy)
class Invalid(Exception):
    """The reference's verdict: the engine must refuse this feed."""


def _sig(x):
    with np.errstate(over="ignore", invalid="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def _ref_lstm(X, W, R, Bb, lens, h0, c0, H):
    """ONNX LSTM, forward, default activations; X (T, B, I). Returns Y (T, 1, B, H), Y_h, Y_c (1, B, H)."""
    T, Bn, _ = X.shape
    Y = np.zeros((T, 1, Bn, H))
    hN, cN = np.zeros((1, Bn, H)), np.zeros((1, Bn, H))
    with np.errstate(over="ignore", invalid="ignore"):
        for b in range(Bn):
            h, c = h0[0, b].copy(), c0[0, b].copy()
            if lens[b] == 0:
                h, c = np.zeros(H), np.zeros(H)
            for t in range(lens[b]):
                g = X[t, b] @ W[0].T + h @ R[0].T + Bb[0, :4 * H] + Bb[0, 4 * H:]
                i, o, f, cc = g[:H], g[H:2 * H], g[2 * H:3 * H], g[3 * H:]     # gate order i, o, f, c
                c = _sig(f) * c + _sig(i) * np.tanh(cc)
                h = _sig(o) * np.tanh(c)
                Y[t, 0, b] = h
            hN[0, b], cN[0, b] = h, c
    return Y, hN, cN


def _ref_gru_dir(X, W, R, Bb, h, H, reverse):
    """One direction of an ONNX GRU with linear_before_reset=1; X (T, B, I), h (B, H). Returns Y (T, B, H), h."""
    T = X.shape[0]
    Y = np.zeros((T,) + h.shape)
    Wb, Rb = Bb[:3 * H], Bb[3 * H:]
    with np.errstate(over="ignore", invalid="ignore"):
        for t in (range(T - 1, -1, -1) if reverse else range(T)):
            xw = X[t] @ W.T + Wb                         # gate order z, r, h
            hr = h @ R.T + Rb
            z = _sig(xw[:, :H] + hr[:, :H])
            r = _sig(xw[:, H:2 * H] + hr[:, H:2 * H])
            hh = np.tanh(xw[:, 2 * H:] + r * hr[:, 2 * H:])
            h = (1 - z) * hh + z * h
            Y[t] = h
    return Y, h


def _float_input(feed, name, rank):
    x = np.asarray(feed[name])
    if x.size > MAX_REFERENCE_ELEMENTS:
        raise Invalid(f"{name}: {x.size} elements")
    if x.dtype.kind != "f":
        raise Invalid(f"{name}: dtype {x.dtype}")
    if x.ndim != rank or 0 in x.shape:
        raise Invalid(f"{name}: shape {x.shape}")
    return x.astype(np.float64)


def _int_input(feed, name, rank, dtype):
    x = np.asarray(feed[name])
    if x.size > MAX_REFERENCE_ELEMENTS:
        raise Invalid(f"{name}: {x.size} elements")
    if x.dtype.kind not in "iu" or x.ndim != rank or 0 in x.shape:
        raise Invalid(f"{name}: {x.dtype} {x.shape}")
    info = np.iinfo(dtype)
    if x.min() < info.min or x.max() > info.max:
        raise Invalid(f"{name}: values outside {dtype}")
    return x.astype(np.int64)


def _bind(dims, name, value):
    if dims.setdefault(name, value) != value:
        raise Invalid(f"{name} is {value} and {dims[name]}")


MAX_REFERENCE_ELEMENTS = 10 ** 6


def reference(model_name, feed, output_names):
    """The outputs of base model ``model_name`` for ``feed`` as a list of float64 arrays, or Invalid: a feed the
    engine must refuse (and, as Invalid too, one too large for this slow reference; the fuzzers' child process has
    too little memory for such feeds, so the engine must refuse those as well)."""
    try:
        return _reference(model_name, feed, output_names)
    except Invalid:
        raise
    except Exception as e:        # a feed numpy itself cannot read
        raise Invalid(f"{type(e).__name__}: {e}") from None


def _reference(model_name, feed, output_names):
    if not isinstance(feed, dict):
        raise Invalid("feed is not a dict")
    m = base_models()[model_name]
    specs = {s.name: s for s in m.inputs}
    if any(k not in specs for k in feed):
        raise Invalid("unknown input name")
    if any(k not in feed and not s.optional for k, s in specs.items()):
        raise Invalid("missing input")
    if output_names is not None:
        if isinstance(output_names, str) or any(n not in [o.name for o in m.outputs] for n in output_names):
            raise Invalid("bad output names")
    t = {k: np.asarray(v, dtype=np.float64) for k, v in m.tensors.items()}
    dims = {}
    if model_name == "lstm":
        X = _float_input(feed, "X", 3)
        T, B, I = X.shape
        if I != 3:
            raise Invalid("feature size")
        lens = _int_input(feed, "sequence_lens", 1, np.int32)
        _bind(dims, "B", B)
        _bind(dims, "B", lens.shape[0])
        states = []
        for name in ("initial_h", "initial_c"):
            if name in feed:
                s = _float_input(feed, name, 3)
                if s.shape != (1, B, 4):
                    raise Invalid(f"{name} shape")
                states.append(s)
            else:
                states.append(np.zeros((1, B, 4)))
        if lens.min() < 0 or lens.max() > T:
            raise Invalid("sequence_lens out of range")
        Y, Yh, Yc = _ref_lstm(X, t["W"], t["R"], t["B"], lens, states[0], states[1], 4)
        out = {"Y": Y, "Y_h": Yh, "Y_c": Yc}
    elif model_name == "gru":
        X = _float_input(feed, "X", 3)
        B, T, I = X.shape
        if I != 2:
            raise Invalid("feature size")
        h0 = np.zeros((B, 2, 3))
        if "initial_h" in feed:
            h0 = _float_input(feed, "initial_h", 3)
            if h0.shape != (B, 2, 3):
                raise Invalid("initial_h shape")
        Xt = X.transpose(1, 0, 2)
        ys, hs = [], []
        for d in range(2):
            y, h = _ref_gru_dir(Xt, t["W"][d], t["R"][d], t["B"][d], h0[:, d], 3, d == 1)
            ys.append(y)
            hs.append(h)
        out = {"Y": np.stack(ys, 2).transpose(1, 0, 2, 3), "Y_h": np.stack(hs, 1)}
    elif model_name == "rnn64":
        X = _float_input(feed, "X", 3)
        T, B, I = X.shape
        if I != 2:
            raise Invalid("feature size")
        h = np.zeros((B, 3))
        with np.errstate(over="ignore", invalid="ignore"):
            for k in range(T):
                a = np.clip(X[k] @ t["W"][0].T + h @ t["R"][0].T + t["B"][0, :3] + t["B"][0, 3:], -2.5, 2.5)
                h = np.where((a > 0) | np.isnan(a), a, 0.0)
        out = {"Y_h": h[None]}
    elif model_name == "charlm":
        ids = _int_input(feed, "ids", 2, np.int64)
        V = t["emb"].shape[0]
        if ids.min() < -V or ids.max() >= V:
            raise Invalid("token id out of range")
        x = t["emb"][ids]
        T, B = ids.shape
        Y, _, _ = _ref_lstm(x, t["W"], t["R"], t["B"], np.full(B, T), np.zeros((1, B, 4)), np.zeros((1, B, 4)), 4)
        z = Y[:, 0] @ t["head.W"] + t["head.b"]
        z = z - z.max(axis=2, keepdims=True)
        out = {"logp": z - np.log(np.exp(z).sum(axis=2, keepdims=True))}
    elif model_name == "glue":
        x = _float_input(feed, "x", 3)
        N, C, L = x.shape
        if C != 4:
            raise Invalid("channels")
        W, Bc = t["conv.W"], t["conv.B"]                    # (6, 2, 3): two groups of 2 input channels
        xp = np.pad(x, ((0, 0), (0, 0), (1, 1)))
        c = np.zeros((N, 6, L))
        for mo in range(6):
            g = mo // 3
            for k in range(3):
                c[:, mo] += np.einsum("nil,i->nl", xp[:, 2 * g:2 * g + 2, k:k + L], W[mo, :, k])
            c[:, mo] += Bc[mo]
        r = np.where((c > 0) | np.isnan(c), c, 0.0)
        tt = r.transpose(2, 0, 1)                           # (L, N, 6)
        cat = np.concatenate([tt[:, :, :2], tt[:, :, 2:][:, :, 0:4:2]], axis=2)
        out = cat.reshape(L, -1).mean(axis=1) * 0.5 - t["c0"]
        out = {"out": out, "cat": cat}
    elif model_name == "control":
        x = _float_input(feed, "x", 2)
        sr = _int_input(feed, "sr", 0, np.int64)
        if x.shape[1] < 3:
            raise Invalid("reflect pads of 2 need 3 elements")
        with np.errstate(invalid="ignore"):
            neg = ~(x > 0)
        padded = np.pad(np.where(neg, x, 0.5), ((0, 0), (1, 2)), mode="reflect")
        y = padded * 2 if int(sr) == 16000 else np.pad(padded, ((0, 0), (0, 1)), constant_values=-1.0)
        out = {"y": y, "neg": neg.astype(np.float64)}
    elif model_name == "cell":
        x = _float_input(feed, "input", 2)
        B, I = x.shape
        if I != 3:
            raise Invalid("feature size")
        states = []
        for name in ("hx", "cx"):
            st = _float_input(feed, name, 2) if name in feed else np.zeros((B, 4))
            if st.shape != (B, 4):
                raise Invalid(f"{name} shape")
            states.append(st[None])
        _, h, c = _ref_lstm(x[None], t["W"], t["R"], t["B"], np.ones(B, np.int64), states[0], states[1], 4)
        out = {"h'": h[0], "c'": c[0]}
    else:
        raise KeyError(model_name)
    names = [o.name for o in m.outputs] if output_names is None else list(output_names)
    return [out[n] for n in names]


def extreme(values):
    """True if a float input holds inf, NaN or a magnitude past 1e18: float32 arithmetic may then overflow to
    inf - inf = NaN where the float64 reference does not, so only shapes are compared."""
    for v in (values.values() if isinstance(values, dict) else [values]):
        a = np.asarray(v) if not isinstance(v, np.ndarray) else v
        if a.dtype.kind == "f" and a.size and a.size <= MAX_REFERENCE_ELEMENTS:
            with np.errstate(invalid="ignore", over="ignore"):
                if not np.all(np.abs(a.astype(np.float64)) <= 1e18):
                    return True
    return False


def same(got, want, tol=2e-4, values=True):
    """``got`` equals ``want`` within ``tol`` (absolute + relative), NaN where NaN, inf where inf; only the shape
    if not ``values``."""
    got = np.asarray(got, dtype=np.float64)
    if got.shape != want.shape:
        return False
    if not values:
        return True
    nan_g, nan_w = np.isnan(got), np.isnan(want)
    if not np.array_equal(nan_g, nan_w):
        return False
    with np.errstate(invalid="ignore"):
        ok = (got == want) | (np.abs(got - want) <= tol * (1 + np.abs(want))) | nan_w
    return bool(ok.all())


# ---------------------------------------------------------------------- feeds: recipes the worker materialises
# A feed value travels to the worker as a recipe, because what is hostile about it (a non-contiguous or read-only
# view, a broadcast array of 10^9 elements that takes no memory) does not survive pickling:
#   ("arr", a) | ("readonly", a) | ("noncontig", a) | ("fortran", a) | ("list", a) | ("broadcast", value, shape,
#   dtype) | ("raw", python object)
def materialise(recipe):
    kind = recipe[0]
    if kind == "arr":
        return recipe[1].copy()
    if kind == "readonly":
        a = recipe[1].copy()
        a.flags.writeable = False
        return a
    if kind == "noncontig":
        a = recipe[1]
        big = np.repeat(a[..., None], 2, axis=-1) if a.ndim else np.array([a, a])
        return big[..., 0] if a.ndim else big[0:1][0]
    if kind == "fortran":
        return np.asfortranarray(recipe[1])
    if kind == "list":
        return recipe[1].tolist()
    if kind == "broadcast":
        _, value, shape, dtype = recipe
        try:
            base = np.asarray(value, dtype=dtype)
        except (TypeError, ValueError):
            base = np.zeros((), dtype)
        return np.broadcast_to(base, shape)
    if kind == "raw":
        return recipe[1]
    raise ValueError(kind)


def materialise_feed(feed):
    if feed[0] == "dict":
        return {k: materialise(v) for k, v in feed[1].items()}
    return materialise(feed[1])


def _describe(recipe):
    kind = recipe[0]
    if kind in ("arr", "readonly", "noncontig", "fortran", "list"):
        a = recipe[1]
        return f"{kind}({a.dtype}{list(a.shape)})"
    if kind == "broadcast":
        return f"broadcast({recipe[1]!r}, {recipe[2]}, {recipe[3]})"
    return f"raw({recipe[1]!r})"


def describe_feed(feed):
    if feed[0] == "dict":
        return "{" + ", ".join(f"{k!r}: {_describe(v)}" for k, v in feed[1].items()) + "}"
    return _describe(feed[1])


def valid_feed(name, rng, T=None, B=None):
    """A valid feed for base model ``name``: {input: array}."""
    T = T or rng.randint(1, 5)
    B = B or rng.randint(1, 3)
    g = np.random.default_rng(rng.getrandbits(32))
    if name == "lstm":
        feed = {"X": g.standard_normal((T, B, 3)).astype(np.float32),
                "sequence_lens": (g.integers(0, T + 1, B) if rng.random() < 0.5 else np.full(B, T)).astype(np.int32)}
        for s in ("initial_h", "initial_c"):
            if rng.random() < 0.4:
                feed[s] = g.standard_normal((1, B, 4)).astype(np.float32)
        return feed
    if name == "gru":
        feed = {"X": g.standard_normal((B, T, 2)).astype(np.float32)}
        if rng.random() < 0.5:
            feed["initial_h"] = g.standard_normal((B, 2, 3)).astype(np.float32)
        return feed
    if name == "rnn64":
        return {"X": g.standard_normal((T, B, 2))}
    if name == "charlm":
        return {"ids": g.integers(-7, 7, (T, B)).astype(np.int64)}
    if name == "glue":
        return {"x": g.standard_normal((B, 4, T + 1)).astype(np.float32)}
    if name == "cell":
        feed = {"input": g.standard_normal((B, 3)).astype(np.float32)}
        for s in ("hx", "cx"):
            if rng.random() < 0.4:
                feed[s] = g.standard_normal((B, 4)).astype(np.float32)
        return feed
    if name == "control":
        return {"x": g.standard_normal((B, T + 2)).astype(np.float32),
                "sr": np.array(rng.choice([16000, 8000, 16000, 44100]), np.int64)}
    raise KeyError(name)


HOSTILE_DTYPES = [np.float16, np.float32, np.float64, np.int8, np.int32, np.int64, np.uint8, np.uint64, np.bool_,
                  np.complex64, object, "U3", "V4", np.longdouble]
HUGE = [10 ** 9, 2 ** 31, 2 ** 40, 2 ** 50]     # numpy itself refuses 2**63 elements, even as a broadcast view


def _hostile_value(rng, a, name, T, B):
    """One hostile version of the array ``a`` (a recipe)."""
    with np.errstate(all="ignore"):           # casting 3e38 to float16 or NaN to int is the point
        return _hostile(rng, a, name, T, B)


def _hostile(rng, a, name, T, B):
    g = np.random.default_rng(rng.getrandbits(32))
    if a.size == 0:
        return rng.choice([("readonly", a), ("noncontig", a), ("list", a)])
    choice = rng.randrange(16)
    if choice == 0:                                           # another dtype
        dt = rng.choice(HOSTILE_DTYPES)
        try:
            return ("arr", a.astype(dt))
        except (TypeError, ValueError, OverflowError):     # (-1 as uint64 from an object array: OverflowError)
            return ("arr", np.full(a.shape, "x", dtype="U3"))
    if choice == 1:                                           # another rank
        if a.ndim and rng.random() < 0.5:
            return ("arr", a.reshape(a.shape[1:] if a.shape[0] == 1 else (-1,) + a.shape[2:]))
        return ("arr", a[..., None] if rng.random() < 0.5 else a[None])
    if choice == 2 and a.ndim:                                # another size on one axis (0, +1, -1, big)
        axis = rng.randrange(a.ndim)
        shape = list(a.shape)
        shape[axis] = rng.choice([0, shape[axis] + 1, max(shape[axis] - 1, 0), 9])
        return ("arr", np.resize(a, shape) if 0 not in shape else np.zeros(shape, a.dtype))
    if choice == 3 and a.dtype.kind == "f":                   # NaN / inf / -inf / huge / denormal values
        b = a.copy()
        flat = b.reshape(-1)
        for _ in range(rng.randint(1, 3)):
            flat[rng.randrange(flat.size)] = rng.choice([np.nan, np.inf, -np.inf, 3e38, -3e38, 1e-45, 0.0])
        return ("arr", b)
    if choice == 4:                                           # empty
        return ("arr", np.zeros((0,) * max(a.ndim, 1), a.dtype))
    if choice == 5:
        return ("noncontig", a)
    if choice == 6:
        return ("fortran", a)
    if choice == 7:
        return ("readonly", a)
    if choice == 8:
        return ("list", a)
    if choice == 9:                                           # huge: a broadcast view of 10^9+ elements
        shape = list(a.shape) or [1]
        axis = rng.randrange(len(shape))
        shape[axis] = rng.choice(HUGE)
        return ("broadcast", 0, tuple(shape), a.dtype)
    if choice == 10:
        return ("raw", rng.choice([None, "text", 3.5, b"bytes", [1, [2]], {"a": 1}, 7]))
    if a.dtype.kind in "iu":                                  # int ids / sequence lengths out of range
        b = a.astype(np.int64)
        flat = b.reshape(-1)
        flat[rng.randrange(flat.size)] = rng.choice([-1, -8, 7, 8, T, T + 1, -T - 1, 2 ** 31 - 1, 2 ** 31,
                                                     -2 ** 31, 2 ** 40, 2 ** 63 - 1, -2 ** 63])
        dt = rng.choice([np.int64, a.dtype, np.uint64 if flat.min() >= 0 else np.int64])
        return ("arr", b.astype(dt))
    if choice == 11 and a.dtype.kind == "f":
        return ("arr", g.standard_normal(a.shape).astype(a.dtype) * 1e30)
    return ("noncontig", a) if rng.random() < 0.5 else ("readonly", a)


# ---------------------------------------------------------------------- generators
def gen_feeds(rng):
    name = rng.choice(MODEL_NAMES)
    T, B = rng.randint(1, 5), rng.randint(1, 3)
    feed = {k: ("arr", v) for k, v in valid_feed(name, rng, T, B).items()}
    specs = [s.name for s in base_models()[name].inputs]
    notes = []
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        what = rng.randrange(10)
        if what == 0 and feed:
            k = rng.choice(sorted(feed))
            del feed[k]
            notes.append(f"dropped {k}")
        elif what == 1:
            k = rng.choice(specs)
            if k not in feed:
                vf = valid_feed(name, rng, T, B)
                # every optional input of the model can appear, with the batch size of the others
                feed[k] = ("arr", vf.get(k, np.zeros((1, B, 4), np.float32) if k.startswith("initial")
                                   else np.zeros((B, 4), np.float32) if k in ("hx", "cx")
                                   else np.full(B, T, np.int32)))
                notes.append(f"added {k}")
        elif what == 2:
            feed[rng.choice(["bogus", "", "x", "X "])] = ("arr", np.zeros(3, np.float32))
            notes.append("unknown name")
        elif feed:
            k = rng.choice(sorted(feed))
            if feed[k][0] == "arr":
                feed[k] = _hostile_value(rng, feed[k][1], k, T, B)
                notes.append(f"{k} hostile")
    out_names = None
    r = rng.random()
    outs = [o.name for o in base_models()[name].outputs]
    if r < 0.15:
        out_names = rng.choice([["nope"], "Y", [], outs[::-1], outs[:1] * 2, [outs[0], 3]])
    packed = ("dict", feed)
    if rng.random() < 0.03:
        packed = ("raw", ("raw", rng.choice([None, [1, 2], "X", 3])))
    if rng.random() < 0.08:                      # hostile Session arguments, a valid feed
        kwargs = rng.choice([{"threads": rng.choice([0, -1, 1, 2, 10 ** 9, 2.5, "2", True, None])},
                             {"precision": rng.choice(["float64", "float32", "float16", "int8", "", 64, None])},
                             {"run_options": rng.choice([{}, "fast", 1])}])
        packed = ("dict", {k: ("arr", v) for k, v in valid_feed(name, rng, T, B).items()})
        label = f"Session(<{name}>, {kwargs}).run(None, {describe_feed(packed)})"
        return Case("feeds", label, ("session", name, kwargs, packed), notes)
    label = f"Session(<{name}>).run({out_names!r}, {describe_feed(packed)})"
    return Case("feeds", label, ("run", name, packed, out_names), notes)


def gen_stream(rng):
    name = rng.choice(STREAM_MODELS)
    batch = rng.choice([1, 2, 3]) if rng.random() < 0.75 else rng.choice([0, -1, "2", True, 2.0, 10 ** 9, 2 ** 40])
    steps = []
    for _ in range(rng.randint(1, 4)):
        kind = rng.random()
        B = batch if isinstance(batch, int) and not isinstance(batch, bool) and 0 < batch < 5 else 1
        T = rng.randint(1, 3)
        x = valid_feed(name, rng, T, B)[{"lstm": "X", "rnn64": "X", "charlm": "ids", "cell": "input"}[name]]
        one = x if name == "cell" else x[0]          # one step (a cell's input has no time axis)
        if kind < 0.4:
            steps.append(("step", ("arr", one)))
        elif kind < 0.6:
            steps.append(("step", ("arr", x)))        # a chunk of steps (for a cell: one step)
        elif kind < 0.9:
            steps.append(("step", _hostile_value(rng, one if rng.random() < 0.5 else x, "x", T, B)))
        else:
            st = {"lstm/h": np.zeros((1, B, 4), np.float32), "lstm/c": np.zeros((1, B, 4), np.float32),
                  "rnn/h": np.zeros((1, B, 3)), "cell/h": np.zeros((1, B, 4), np.float32)}
            key = rng.choice(sorted(st) + ["bogus"])
            val = st.get(key, np.zeros(3))
            steps.append(("state", {key: _hostile_value(rng, val, key, T, B) if rng.random() < 0.6 else ("arr", val)}))
    label = f"Session(<{name}>).stream({batch!r}) then " + "; ".join(
        f"{k}({_describe(v) if k == 'step' else {n: _describe(r) for n, r in v.items()}})" for k, v in steps)
    return Case("stream", label, ("stream", name, batch, steps))


def _flip_bytes(rng, data):
    """One byte-level mutation of ``data``; returns (new data, description)."""
    data = bytearray(data)
    n = len(data)
    what = rng.randrange(7) if n else 2
    if what == 0:
        k = rng.randint(1, 8)
        where = []
        for _ in range(k):
            i = rng.randrange(n)
            data[i] ^= 1 << rng.randrange(8)
            where.append(i)
        return bytes(data), f"bit flips at {where}"
    if what == 1:
        i = rng.randrange(n)
        return bytes(data[:i]), f"truncated to {i} bytes"
    if what == 2:
        i = rng.randrange(n + 1)
        ins = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 16)))
        return bytes(data[:i] + ins + data[i:]), f"inserted {ins.hex()} at {i}"
    if what == 3:
        i = rng.randrange(n)
        j = min(n, i + rng.randint(1, 64))
        return bytes(data[:i] + data[j:]), f"deleted bytes {i}:{j}"
    if what == 4:
        i = rng.randrange(n)
        v = rng.choice([0, 0xFF, 0x7F, 0x80])
        k = rng.randint(1, 8)
        data[i:i + k] = bytes([v]) * len(data[i:i + k])
        return bytes(data), f"bytes {i}:{i + k} set to {v:#x}"
    if what == 5:
        i, j = sorted(rng.randrange(n) for _ in range(2))
        return bytes(data + data[i:j]), f"appended bytes {i}:{j}"
    i = rng.randrange(n)
    data[i] = rng.getrandbits(8)
    return bytes(data), f"byte {i} set to random"


def gen_file_bytes(rng):
    name = rng.choice(MODEL_NAMES)
    data, how = model_bytes(name), []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        data, d = _flip_bytes(rng, data)
        how.append(d)
    feed = ("dict", {k: ("arr", v) for k, v in valid_feed(name, rng).items()})
    return Case("file_bytes", f"<{name}.lstm> {'; '.join(how)}", ("load", data, feed), [])


def split_file(data):
    """(safetensors header dict, model description dict, tensor bytes) of an .lstm file."""
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    meta = json.loads(header["__metadata__"]["lstm_engine"])
    return header, meta, data[8 + n:]


def join_file(header, meta, body):
    header = dict(header)
    header["__metadata__"] = dict(header.get("__metadata__") or {})
    if meta is not None:
        header["__metadata__"]["lstm_engine"] = json.dumps(meta)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + body


HOSTILE_JSON = [0, -1, 1, 2, 3, 10 ** 9, 2 ** 31, 2 ** 63, -2 ** 63, 10 ** 30, -10 ** 9, 1.5, -0.5, 1e308,
                float("inf"), float("nan"), True, False, None, "", "x", "T", "float16", "float64", "int32", "LSTM",
                "bidirectional", [], {}, [1, 2, 3], [[0, 1]], [-1], [0, 0, -1], ["T", "B"], [10 ** 9], {"a": 1},
                [["Sigmoid", 0, 0]]]


def _paths(tree, prefix=()):
    """Every (path, value) of a JSON tree."""
    out = [(prefix, tree)]
    if isinstance(tree, dict):
        for k, v in tree.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out += _paths(v, prefix + (i,))
    return out


def _set(tree, path, value):
    node = tree
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value


def _delete(tree, path):
    node = tree
    for k in path[:-1]:
        node = node[k]
    del node[path[-1]]


# fields the brief names; paths through them are picked more often
TARGETS = ("shape", "hidden_size", "dtype", "data_offsets", "inputs", "outputs", "op", "stream", "attrs",
           "activations", "axes", "axis", "perm", "time_axis", "batch_axis", "direction", "layout", "clip",
           "proj_size", "slices", "sizes", "index_shape", "format_version", "name", "optional", "then", "else",
           "nodes", "ranks", "pads", "mode", "value")


def mutate_json(rng, tree, where):
    """One structured mutation of the JSON ``tree`` (in place); returns its description."""
    paths = [p for p, _ in _paths(tree) if p]
    targeted = [p for p in paths if any(t in p for t in TARGETS)]
    path = rng.choice(targeted if targeted and rng.random() < 0.7 else paths)
    values = [v for _, v in _paths(tree)]
    what = rng.random()
    if what < 0.55:
        value = rng.choice(HOSTILE_JSON)
        if isinstance(value, (list, dict)):
            value = copy.deepcopy(value)
    elif what < 0.7:
        value = copy.deepcopy(rng.choice(values))            # swap in another value of the same file
    elif what < 0.85:
        _delete(tree, path)
        return f"{where}{list(path)} deleted"
    else:
        old = _get(tree, path)
        if isinstance(old, (int, float)) and not isinstance(old, bool):
            value = rng.choice([old + 1, old - 1, -old, old * 1000, old * 10 ** 9, float(old)])
        elif isinstance(old, list):
            value = old + [copy.deepcopy(old[-1]) if old else 0] if rng.random() < 0.5 else old[:-1]
        elif isinstance(old, str):
            value = rng.choice([old + "x", old.upper(), old[:-1], old * 2])
        else:
            value = rng.choice(HOSTILE_JSON)
    _set(tree, path, value)
    return f"{where}{list(path)} = {_short(value)}"


def _get(tree, path):
    for k in path:
        tree = tree[k]
    return tree


def _short(v):
    s = repr(v)
    return s if len(s) < 80 else s[:77] + "..."


def gen_file_json(rng):
    name = rng.choice(MODEL_NAMES)
    header, meta, body = split_file(model_bytes(name))
    how = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        if rng.random() < 0.75:
            how.append(mutate_json(rng, meta, "meta"))
        else:
            tensors = {k: v for k, v in header.items() if k != "__metadata__"}
            how.append(mutate_json(rng, tensors, "header"))
            header = {"__metadata__": header["__metadata__"], **tensors}
    data = join_file(header, meta, body)
    feed = ("dict", {k: ("arr", v) for k, v in valid_feed(name, rng).items()})
    return Case("file_json", f"<{name}.lstm> {'; '.join(how)}", ("load", data, feed), [])


ONNX_FEEDS = {"lstm": "lstm", "gru": None, "charlm": None, "control": None}


def _onnx_feed(name, rng):
    T, B = rng.randint(1, 4), rng.randint(1, 3)
    g = np.random.default_rng(rng.getrandbits(32))
    if name == "lstm":
        return {"X": g.standard_normal((T, B, 3)).astype(np.float32)}
    if name == "gru":
        return {"X": g.standard_normal((T, B, 2)).astype(np.float32)}
    if name == "control":
        return {"x": g.standard_normal((B, T + 2)).astype(np.float32),
                "sr": np.array(rng.choice([16000, 8000]), np.int64)}
    return {"ids": g.integers(0, 7, (T, 1)).astype(np.int64)}


def gen_onnx_bytes(rng):
    name = rng.choice(sorted(ONNX_FEEDS))
    data, how = onnx_bytes(name), []
    for _ in range(rng.choice([1, 1, 2])):
        data, d = _flip_bytes(rng, data)
        how.append(d)
    feed = ("dict", {k: ("arr", v) for k, v in _onnx_feed(name, rng).items()})
    return Case("onnx_bytes", f"<{name}.onnx> {'; '.join(how)}", ("load", data, feed), [])


ONNX_INTS = [0, -1, 1, 2, 3, 4, 7, 10 ** 9, 2 ** 31, 2 ** 62, -2 ** 62, 2 ** 63 - 1]
ONNX_DTYPES = list(range(0, 27)) + [99, -1]


def mutate_onnx(rng, m):
    """One structured mutation of the ModelProto ``m`` (in place); returns its description."""
    from onnx import TensorProto, helper

    g = m.graph
    what = rng.randrange(11)
    if what == 0 and any(n.attribute for n in g.node):                 # an attribute: value, type, removal
        node = rng.choice([n for n in g.node if n.attribute])
        a = rng.choice(list(node.attribute))
        how = rng.randrange(5)
        if how == 0:
            node.attribute.remove(a)
            return f"node {node.name!r}: attribute {a.name} removed"
        new = rng.choice([rng.choice(ONNX_INTS), rng.choice([1.5, -2.0, float("nan"), float("inf"), 1e30]),
                          rng.choice(["sideways", "", "forward", "reverse", "Tanh", "x" * 100]),
                          [rng.choice(ONNX_INTS) for _ in range(rng.randint(0, 3))],
                          [rng.choice(["Sigmoid", "Tanh", "Bogus", "Relu", ""]) for _ in range(rng.randint(0, 6))],
                          [1.0, 2.0]])
        try:
            attr = helper.make_attribute(a.name, new)
        except (ValueError, TypeError):
            return "no-op"
        node.attribute.remove(a)
        node.attribute.append(attr)
        return f"node {node.name!r}: attribute {a.name} = {_short(new)}"
    if what == 1 and g.node:                                            # an added attribute
        node = rng.choice(list(g.node))
        key = rng.choice(["hidden_size", "layout", "clip", "activations", "activation_alpha", "input_forget",
                          "direction", "axis", "perm", "keepdims", "transA", "alpha", "mode", "then_branch", "to",
                          "bogus"])
        val = rng.choice([rng.choice(ONNX_INTS), 0.5, "forward", ["Relu"], [0.1, 0.2]])
        for a in list(node.attribute):
            if a.name == key:
                node.attribute.remove(a)
        node.attribute.append(helper.make_attribute(key, val))
        return f"node {node.name!r}: attribute {key} = {_short(val)}"
    if what == 2:                                                       # a dim of a graph input or output
        vis = [vi for vi in list(g.input) + list(g.output) if vi.type.tensor_type.HasField("shape")
               and vi.type.tensor_type.shape.dim]
        if vis:
            vi = rng.choice(vis)
            dims = vi.type.tensor_type.shape.dim
            k = rng.randrange(len(dims))
            how = rng.randrange(4)
            if how == 0:
                v = rng.choice(ONNX_INTS)
                dims[k].dim_value = v
                return f"{vi.name} dim {k} = {v}"
            if how == 1:
                dims[k].dim_param = rng.choice(["T", "B", "", "N", "T*2", "x y"])
                return f"{vi.name} dim {k} = {dims[k].dim_param!r}"
            if how == 2:
                del dims[k]
                return f"{vi.name} dim {k} removed"
            dims.add().dim_value = rng.choice([1, 2, 10 ** 9])
            return f"{vi.name} dim added"
    if what == 3 and g.initializer:                                     # an initializer's dtype
        t = rng.choice(list(g.initializer))
        t.data_type = max(0, rng.choice(ONNX_DTYPES))
        return f"initializer {t.name!r} data_type = {t.data_type}"
    if what == 4 and g.initializer:                                     # an initializer's dims / size
        t = rng.choice(list(g.initializer))
        how = rng.randrange(5)
        if how == 0 and t.dims:
            k = rng.randrange(len(t.dims))
            t.dims[k] = rng.choice(ONNX_INTS)
            return f"initializer {t.name!r} dims[{k}] = {t.dims[k]}"
        if how == 1:
            t.raw_data = t.raw_data[:rng.randrange(len(t.raw_data) + 1)]
            return f"initializer {t.name!r} raw_data truncated to {len(t.raw_data)}"
        if how == 2:
            t.raw_data = t.raw_data + bytes(rng.randint(1, 16))
            return f"initializer {t.name!r} raw_data extended to {len(t.raw_data)}"
        if how == 3:
            t.dims.append(rng.choice([1, 2, 10 ** 6]))
            return f"initializer {t.name!r} dims {list(t.dims)}"
        t.ClearField("raw_data")
        t.float_data.extend([1.0, 2.0])
        return f"initializer {t.name!r} raw_data replaced by float_data [1, 2]"
    if what == 5 and g.node:                                            # a node input name
        node = rng.choice(list(g.node))
        if node.input:
            k = rng.randrange(len(node.input))
            names = [n for n in [*(vi.name for vi in g.input), *(t.name for t in g.initializer),
                                 *(o for nn in g.node for o in nn.output)]]
            new = rng.choice(names + ["", "nowhere"])
            node.input[k] = new
            return f"node {node.name!r} input {k} = {new!r}"
        return "no-op"
    if what == 6 and g.node:                                            # an op type
        node = rng.choice(list(g.node))
        new = rng.choice(["LSTM", "GRU", "RNN", "Gather", "MatMul", "Softmax", "Reshape", "Squeeze", "Bogus",
                          "Loop", "Conv", "Concat", "Identity", "Cast", "ConstantOfShape", "Shape", "Expand", "If",
                          "Pad", "Equal", "Where", "Not", "And"])
        old, node.op_type = node.op_type, new
        return f"node {node.name!r}: op {old} -> {new}"
    if what == 7:                                                       # the opset
        v = rng.choice([0, 1, 6, 7, 9, 13, 14, 22, 30, 999])
        m.opset_import[0].version = v
        return f"opset {v}"
    if what == 8 and g.input:                                           # a graph input's element type
        vi = rng.choice(list(g.input))
        vi.type.tensor_type.elem_type = rng.choice([TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.INT32,
                                                    TensorProto.INT64, TensorProto.BOOL, TensorProto.STRING, 0])
        return f"input {vi.name!r} elem_type {vi.type.tensor_type.elem_type}"
    if what == 9 and g.output:                                          # outputs
        if rng.random() < 0.5:
            del g.output[rng.randrange(len(g.output))]
            return "an output removed"
        g.output[rng.randrange(len(g.output))].name = rng.choice(["W", "X", "nowhere", ""])
        return "an output renamed"
    if g.node:                                                          # node order / removal / duplication
        nodes = list(g.node)
        how = rng.randrange(3)
        if how == 0:
            rng.shuffle(nodes)
        elif how == 1:
            nodes.pop(rng.randrange(len(nodes)))
        else:
            nodes.append(copy.deepcopy(rng.choice(nodes)))
        del g.node[:]
        g.node.extend(nodes)
        return ["nodes shuffled", "a node removed", "a node duplicated"][how]
    return "no-op"


def gen_onnx_struct(rng):
    import onnx

    name = rng.choice(sorted(ONNX_FEEDS))
    m = onnx.load_from_string(onnx_bytes(name))
    how = [mutate_onnx(rng, m) for _ in range(rng.choice([1, 1, 2, 3]))]
    try:
        data = m.SerializeToString()
    except Exception:          # e.g. a dim the protobuf library refuses: mutate less
        return gen_onnx_struct(rng)
    feed = ("dict", {k: ("arr", v) for k, v in _onnx_feed(name, rng).items()})
    return Case("onnx_struct", f"<{name}.onnx> {'; '.join(how)}", ("load", data, feed), [])


def _absurd_cases():
    """Hand-made absurd sizes: (label, job) pairs, each must be refused before allocating."""
    import onnx
    from onnx import helper, numpy_helper

    cases = []

    def meta_case(label, name, mutate, feed=None, refuse=True):
        header, meta, body = split_file(model_bytes(name))
        mutate(header, meta)
        cases.append((label, ("load", join_file(header, meta, body), feed), refuse))

    def set_attr(key, value):
        def f(header, meta):
            meta["nodes"][0]["attrs"][key] = value
        return f

    meta_case("lstm hidden_size 10^9", "lstm", set_attr("hidden_size", 10 ** 9))
    meta_case("gru hidden_size 10^18", "gru", set_attr("hidden_size", 10 ** 18))

    def fixed_T(value):
        def f(header, meta):
            meta["inputs"][0]["shape"][0] = value
            for o in meta["outputs"]:
                if o["shape"] and o["shape"][0] == "T":
                    o["shape"][0] = value
        return f

    for T in (10 ** 9, 2 ** 40, 10 ** 30):
        meta_case(f"lstm input X with T = {T} (fixed), run with a broadcast X of that shape", "lstm", fixed_T(T),
                  ("dict", {"X": ("broadcast", 0.5, (T, 1, 3), np.float32),
                            "sequence_lens": ("arr", np.array([1], np.int32))}) if T < 2 ** 62 else None)

    def terabytes(shape, offsets):
        def f(header, meta):
            header["W"]["shape"] = shape
            header["W"]["data_offsets"] = offsets
        return f

    meta_case("tensor header claiming 4 TB", "lstm", terabytes([1, 2 ** 40, 1], [0, 2 ** 42]))
    meta_case("tensor header whose size overflows int64 to 0", "lstm", terabytes([2 ** 31, 2 ** 31, 4], [0, 0]))
    meta_case("tensor header whose size overflows int64", "lstm", terabytes([2 ** 32, 2 ** 32, 2 ** 32], [0, 192]))
    meta_case("tensor header with a dimension of 10^30", "lstm", terabytes([10 ** 30], [0, 192]))

    def const_of_shape(shape):
        def f(header, meta):
            meta["nodes"].append({"op": "ConstantOfShape", "name": "big", "inputs": ["X"], "outputs": ["big"],
                                  "attrs": {"shape": shape, "value": 1.0}})
            meta["outputs"].append({"name": "big", "shape": shape, "dtype": "float32"})
        return f

    for shape in ([10 ** 6, 10 ** 6, 10 ** 6], [2 ** 31, 2 ** 31], [10 ** 30], [[0, 0], 10 ** 12]):
        meta_case(f"ConstantOfShape {shape}", "lstm", const_of_shape(shape),
                  ("dict", {"X": ("arr", np.zeros((2, 1, 3), np.float32)),
                            "sequence_lens": ("arr", np.array([2], np.int32))}))

    def optional_huge(header, meta):
        meta["inputs"][2]["shape"] = [1, 2 ** 31, 4]         # initial_h, optional, not given: zeros

    meta_case("optional input initial_h of fixed shape [1, 2^31, 4], not given", "lstm", optional_huge,
              ("dict", {"X": ("arr", np.zeros((2, 1, 3), np.float32)),
                        "sequence_lens": ("arr", np.array([2], np.int32))}))

    header, _, body = split_file(model_bytes("lstm"))
    header["__metadata__"]["lstm_engine"] = "[" * 100000 + "]" * 100000
    cases.append(("model description nested 100000 deep", ("load", join_file(header, None, body), None), True))

    def big_slice(header, meta):
        meta["nodes"].append({"op": "Slice", "name": "sl", "inputs": ["Y"], "outputs": ["sl"],
                              "attrs": {"slices": [[0, 0, 10 ** 30, 10 ** 30]]}})
        meta["outputs"].append({"name": "sl", "shape": [1, 1, "B", 4], "dtype": "float32"})

    meta_case("Slice with start/end/step 10^30 (valid: one element)", "lstm", big_slice,
              ("dict", {"X": ("arr", np.zeros((2, 1, 3), np.float32)),
                        "sequence_lens": ("arr", np.array([2], np.int32))}), refuse=False)

    def big_index_shape(header, meta):
        meta["nodes"][0]["attrs"]["index_shape"] = [10 ** 9, 10 ** 9]

    meta_case("Gather index_shape [10^9, 10^9]", "charlm", big_index_shape,
              ("dict", {"ids": ("arr", np.zeros((2, 1), np.int64))}))

    def big_pads(pads):
        def f(header, meta):
            meta["nodes"][4]["attrs"]["pads"] = pads
        return f

    for pads in ([0, 10 ** 12, 0, 2], [0, 1, 0, 2 ** 40], [0, 10 ** 30, 0, 2]):
        meta_case(f"control Pad with pads {pads}", "control", big_pads(pads),
                  ("dict", {"x": ("arr", np.ones((2, 4), np.float32)), "sr": ("arr", np.array(16000, np.int64))}))

    # ONNX: the same from the other side
    def onnx_case(label, name, mutate, feed=None):
        m = onnx.load_from_string(onnx_bytes(name))
        mutate(m)
        cases.append((label, ("load", m.SerializeToString(), feed), True))

    def onnx_hidden(m):
        for a in m.graph.node[0].attribute:
            if a.name == "hidden_size":
                a.i = 10 ** 9

    onnx_case("ONNX LSTM hidden_size 10^9", "lstm", onnx_hidden)

    def onnx_T(m):
        m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 10 ** 9

    onnx_case("ONNX input X with T = 10^9, run with a broadcast X", "lstm", onnx_T,
              ("dict", {"X": ("broadcast", 0.5, (10 ** 9, 1, 3), np.float32)}))

    def onnx_init_dims(m):
        t = m.graph.initializer[0]
        del t.dims[:]
        t.dims.extend([10 ** 6, 10 ** 6, 10 ** 6])

    onnx_case("ONNX initializer W claiming 10^18 floats (48 bytes of data)", "lstm", onnx_init_dims)

    def onnx_const_of_shape(m):
        shape = numpy_helper.from_array(np.array([10 ** 6, 10 ** 6, 10 ** 6], np.int64), "bigshape")
        m.graph.initializer.append(shape)
        m.graph.node.append(helper.make_node("ConstantOfShape", ["bigshape"], ["big"], name="big"))
        m.graph.node.append(helper.make_node("Add", ["Y", "big"], ["Y2"], name="add"))
        m.graph.output.append(helper.make_tensor_value_info("Y2", onnx.TensorProto.FLOAT, None))

    onnx_case("ONNX ConstantOfShape of 10^18 elements", "lstm", onnx_const_of_shape)
    # streams and feeds
    for batch in (10 ** 9, 2 ** 40, 10 ** 30):
        cases.append((f"lstm stream(batch_size={batch})", ("stream", "lstm", batch, []), True))
    cases.append(("rnn64 stream(10^9) then step", ("stream", "rnn64", 10 ** 9, [("step", ("arr", np.zeros((1, 2))))]),
                  True))
    for shape in ((10 ** 9, 1, 3), (1, 10 ** 9, 3), (2 ** 40, 2 ** 10, 3)):
        lens = ("broadcast", 1, (shape[1],), np.int32)
        cases.append((f"lstm run with a broadcast X of shape {shape}",
                      ("run", "lstm", ("dict", {"X": ("broadcast", 1.0, shape, np.float32), "sequence_lens": lens}),
                       None), True))
    cases.append(("charlm run with broadcast ids of shape (10^9, 1)",
                  ("run", "charlm", ("dict", {"ids": ("broadcast", 3, (10 ** 9, 1), np.int64)}), None), True))
    cases.append(("charlm run with broadcast ids of shape (10^9, 1), out of range",
                  ("run", "charlm", ("dict", {"ids": ("broadcast", 99, (10 ** 9, 1), np.int64)}), None), True))
    return cases


def absurd_cases():
    """[(Case, must it be refused)] of every absurd size."""
    return [(Case("absurd", label, job), refuse) for label, job, refuse in _absurd_cases()]


_ABSURD = []


def gen_absurd(rng):
    if not _ABSURD:
        _ABSURD.extend(_absurd_cases())
    label, job, _ = rng.choice(_ABSURD)
    return Case("absurd", label, job)


GENERATORS = {"file_bytes": gen_file_bytes, "file_json": gen_file_json, "onnx_bytes": gen_onnx_bytes,
              "onnx_struct": gen_onnx_struct, "absurd": gen_absurd, "feeds": gen_feeds, "stream": gen_stream}


# ---------------------------------------------------------------------- running one case (in the worker)
def _declared_ok(sess, names, outs, feed):
    """Every output has the dtype and rank its spec declares, and its fixed dimensions."""
    specs = {o.name: o for o in sess.model.outputs}
    for name, y in zip(names, outs):
        spec = specs[name]
        if not isinstance(y, np.ndarray) or y.ndim != len(spec.shape):
            return f"output {name!r}: rank {getattr(y, 'ndim', None)} vs declared {spec.shape}"
        if spec.dtype.startswith("float") and y.dtype.kind != "f":
            return f"output {name!r}: dtype {y.dtype}"
        for d, n in zip(spec.shape, y.shape):
            if isinstance(d, int) and d != n:
                return f"output {name!r}: shape {y.shape} vs declared {spec.shape}"
    return None


def run_job(job, sessions):
    """Run one job; returns (outcome, detail). ``sessions`` caches the base models' Sessions."""
    import engine

    kind = job[0]
    try:
        if kind == "load":
            _, data, feed = job
            sess = engine.Session(data, threads=1)
            if feed is None:
                return "ok", "loaded"
            values = materialise_feed(feed)
            outs = sess.run(None, {k: v for k, v in values.items() if k in {i.name for i in sess.get_inputs()}})
            bad = _declared_ok(sess, [o.name for o in sess.get_outputs()], outs, values)
            if bad:
                return "wrong", bad
            if sess.model.stream is not None:
                st = sess.stream(1)
                spec = sess.model.input(sess.model.stream["input"])
                x = values.get(spec.name)
                if x is not None and x.ndim == len(spec.shape):
                    st.step(x)
            return "ok", "ran"
        if kind == "run":
            _, name, feed, out_names = job
            sess = sessions.get(name)
            if sess is None:
                sess = sessions[name] = engine.Session(model_bytes(name), threads=1)
            values = materialise_feed(feed)
            try:
                want = reference(name, values, out_names)
            except Invalid as e:
                want, why = None, str(e)
            outs = sess.run(out_names, values)
            if out_names == [] and outs == []:
                return "ok", "no outputs asked for, none computed"
            if want is None:
                return "wrong", f"accepted a feed the reference refuses ({why})"
            exact = not extreme(values)
            for k, (got, w) in enumerate(zip(outs, want)):
                if not same(got, w, values=exact):
                    return "wrong", f"output {k} differs from the reference"
            return "ok", "matches the reference" if exact else "extreme values: the shapes match the reference"
        if kind == "session":
            _, name, kwargs, feed = job
            run_options = kwargs.pop("run_options", None) if isinstance(kwargs, dict) else None
            sess = engine.Session(model_bytes(name), **kwargs)
            values = materialise_feed(feed)
            outs = sess.run(None, values, run_options)
            want = reference(name, values, None)
            if not all(same(a, b) for a, b in zip(outs, want)):
                return "wrong", "differs from the reference"
            return "ok", "matches the reference"
        if kind == "stream":
            _, name, batch, steps = job
            sess = sessions.get(name)
            if sess is None:
                sess = sessions[name] = engine.Session(model_bytes(name), threads=1)
            return _stream_job(sess, name, batch, steps)
        if kind == "selftest":                 # the harness's own checks (tests/test_fuzz.py)
            what = job[1]
            if what == "alloc":
                np.ones(HEADROOM_BYTES * 2, np.uint8)
            elif what == "segfault":
                import ctypes
                ctypes.string_at(0)
            elif what == "hang":
                time.sleep(3600)
            return "ok", what
        raise ValueError(kind)
    except engine.EngineError as e:
        msg = str(e)
        if not msg or "\n" in msg:
            return (f"unclear:{type(e).__name__}" + ("@converters" if _in_converter(e) else ""),
                    f"an error message that is empty or not one line: {msg!r}")
        return f"error:{type(e).__name__}", msg
    except MemoryError as e:
        return "memory", f"MemoryError: {e}"
    except Exception as e:
        tb = traceback.extract_tb(e.__traceback__)
        in_converter = _in_converter(e)
        where = next((f"{os.path.relpath(f.filename)}:{f.lineno}" for f in reversed(tb)
                      if "/engine/" in f.filename or "/converters/" in f.filename),
                     f"{os.path.basename(tb[-1].filename)}:{tb[-1].lineno}, outside the engine" if tb else "?")
        return (f"other:{type(e).__name__}" + ("@converters" if in_converter else ""),
                f"{type(e).__name__}: {str(e)[:300]} (at {where})")


def _stream_job(sess, name, batch, steps):
    """Step a stream of base model ``name``; every accepted step must match the reference run over all the steps
    accepted so far (for a cell, one reference step from the previous reference state)."""
    import engine

    st = sess.stream(batch)
    x_name = sess.model.stream["input"]
    rank = len(sess.model.input(x_name).shape)
    done, state, exact = [], None, True       # the accepted steps, with a time axis; a cell's reference state
    for what, arg in steps:
        if what == "state":
            st.state = {k: materialise(v) for k, v in arg.items()}
            done = None                        # the reference does not follow an assigned state
            continue
        x = materialise(arg)
        try:
            y = st.step(x)
        except engine.EngineError:
            continue
        arr = np.asarray(x)
        if arr.dtype.kind in "iu":
            if arr.size and (arr.min() < -2 ** 63 or arr.max() >= 2 ** 63):
                return "wrong", "a step with ids outside int64 was accepted"
            arr = arr.astype(np.int64)
        if done is None:
            continue
        exact = exact and not extreme(arr)
        try:
            if name == "cell":
                B = arr.shape[0]
                hx, cx = state if state is not None else (np.zeros((B, 4)), np.zeros((B, 4)))
                want, cn = reference("cell", {"input": arr, "hx": hx, "cx": cx}, None)
                state = (want, cn)
            else:
                single = arr.ndim == rank - 1
                done.append(arr[None] if single else arr)
                xs = np.concatenate(done, 0)
                ref_feed = {x_name: xs}
                if name == "lstm":             # a stream runs every step it is given
                    ref_feed["sequence_lens"] = np.full(xs.shape[1], xs.shape[0], np.int32)
                full = reference(name, ref_feed, [sess.get_outputs()[0].name])[0]
                # the first output: rnn64's Y_h has no time axis; the others' time axis is 0
                want = full if name == "rnn64" else (full[-1] if single else full[-arr.shape[0]:])
        except (Invalid, ValueError) as e:
            return "wrong", f"a step the reference refuses was accepted ({e})"
        if not same(y, want, values=exact):
            return "wrong", "a step differs from the reference"
    return "ok", "streamed"


def _in_converter(e):
    """True if ``e`` was raised while converting ONNX, outside the engine's own validation (which the converter
    calls last): a defect of converters/, reported as such."""
    files = [f.filename.replace(os.sep, "/") for f in traceback.extract_tb(e.__traceback__)]
    return any("/converters/" in f for f in files) and not any(f.endswith("/engine/model.py") for f in files)


def _address_space():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _worker_main(conn, headroom):
    """The child: warm up, limit the address space, then run jobs until told to stop."""
    import resource
    import warnings

    warnings.simplefilter("ignore")
    sessions = {}
    for name in MODEL_NAMES:                               # warm up (executor, BLAS threads, onnx import)
        run_job(("run", name, ("dict", {k: ("arr", v) for k, v in valid_feed(name, random.Random(0)).items()}),
                 None), sessions)
    run_job(("load", onnx_bytes("lstm"), None), sessions)
    if headroom:
        limit = _address_space() + headroom
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    sentinel = {name: valid_feed(name, random.Random(1)) for name in sessions}
    conn.send("ready")
    while True:
        job = conn.recv()
        if job is None:
            return
        outcome, detail = run_job(job, sessions)
        broken = _sentinel(sessions, sentinel)
        if broken:
            # the session survived the case, but no longer computes what it did: something wrote where it must not
            sessions.clear()
            outcome, detail = "wrong", f"{detail}; afterwards {broken}"
        conn.send((outcome, detail))


def _sentinel(sessions, feeds):
    """None if every cached session still gives the reference's outputs for a fixed valid feed."""
    for name, sess in sessions.items():
        try:
            outs = sess.run(None, feeds[name])
        except Exception as e:
            return f"Session(<{name}>) fails on a valid feed ({type(e).__name__}: {e})"
        if not all(same(a, b) for a, b in zip(outs, reference(name, feeds[name], None))):
            return f"Session(<{name}>) gives wrong results on a valid feed (memory corrupted by this case?)"
    return None


class Worker:
    """A child process that runs jobs; a crash or a hang is reported as such and the child restarted."""

    def __init__(self, headroom=HEADROOM_BYTES, timeout=CASE_SECONDS):
        self.headroom, self.timeout = headroom, timeout
        self.ctx = multiprocessing.get_context("spawn")
        self.proc = None
        self._start()

    def _start(self):
        self.conn, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_worker_main, args=(child, self.headroom), daemon=True)
        self.proc.start()
        child.close()
        if not self.conn.poll(300) or self.conn.recv() != "ready":
            raise RuntimeError("the fuzz worker did not start")

    def _restart(self):
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join()
        self._start()

    def run(self, case: Case, timeout=None):
        """(outcome, detail) of ``case``."""
        timeout = self.timeout if timeout is None else timeout
        try:
            self.conn.send(case.job)
        except (BrokenPipeError, OSError):
            self._restart()
            self.conn.send(case.job)
        if self.conn.poll(timeout):
            try:
                return self.conn.recv()
            except (EOFError, OSError):
                pass
            self.proc.join(5)
            code = self.proc.exitcode
            self._restart()
            return "crash", f"the child died (exit code {code})"
        if not self.proc.is_alive():
            code = self.proc.exitcode
            self._restart()
            return "crash", f"the child died (exit code {code})"
        self._restart()
        return "hang", f"no answer after {timeout:.0f} s"

    def close(self):
        if self.proc is not None and self.proc.is_alive():
            try:
                self.conn.send(None)
                self.proc.join(10)
            except (BrokenPipeError, OSError):
                pass
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join()


# ---------------------------------------------------------------------- the command line
def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=10000, help="number of cases (default 10000)")
    ap.add_argument("--seconds", type=float, default=3600.0, help="stop after this long (default 3600)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--generators", default=",".join(GENERATORS), help="comma-separated subset of generators")
    ap.add_argument("--out", default=os.path.join(RESULTS, "fuzz.json"))
    args = ap.parse_args(argv)
    names = [g for g in args.generators.split(",") if g]
    rng = random.Random(args.seed)
    counts = {g: Counter() for g in names}
    failures = []
    worker = Worker()
    t0 = time.perf_counter()
    n = 0
    try:
        while n < args.cases and time.perf_counter() - t0 < args.seconds:
            gen = names[n % len(names)]
            seed = rng.getrandbits(64)
            try:
                case = GENERATORS[gen](random.Random(seed))
            except Exception as e:              # a bug of this file, not of the engine: shown, counted, skipped
                case = Case(gen, f"generator {gen} with random.Random({seed})", ())
                outcome, detail = "harness", f"{type(e).__name__}: {e}"
            else:
                outcome, detail = worker.run(case)
            counts[gen][outcome] += 1
            if is_failure(outcome):
                failures.append({"case": str(case), "outcome": outcome, "detail": detail})
                print(f"FAIL {outcome}: {case}\n    {detail}", file=sys.stderr)
            n += 1
            if n % 500 == 0:
                print(f"{n} cases, {time.perf_counter() - t0:.0f} s, {len(failures)} failures", file=sys.stderr)
    finally:
        worker.close()
    elapsed = time.perf_counter() - t0
    total = Counter()
    for c in counts.values():
        total.update(c)
    engine_side = [f for f in failures if not f["outcome"].endswith("@converters")]
    report = {"cases": n, "seconds": round(elapsed, 1), "seed": args.seed, "failures": len(failures),
              "failures_outside_converters": len(engine_side),
              "by_generator": {g: dict(sorted(c.items())) for g, c in counts.items()},
              "total": dict(sorted(total.items())), "failed_cases": failures[:500]}
    report["table"] = table(report).splitlines()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    print(table(report))
    print(f"written {args.out}")
    return 1 if failures else 0


def table(report):
    outcomes = sorted(report["total"], key=lambda o: (is_failure(o), o != "ok", o))
    gens = list(report["by_generator"])
    width = max(len(o) for o in outcomes + ["outcome"])
    lines = [f"{report['cases']} cases in {report['seconds']} s (seed {report['seed']}), "
             f"{report['failures']} failures ({report['failures_outside_converters']} outside converters/)",
             f"{'outcome':<{width}}  " + "  ".join(f"{g:>11}" for g in gens) + f"  {'total':>7}"]
    for o in outcomes:
        lines.append(f"{o:<{width}}  " + "  ".join(f"{report['by_generator'][g].get(o, 0):>11}" for g in gens)
                     + f"  {report['total'][o]:>7}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
