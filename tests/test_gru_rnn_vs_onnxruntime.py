"""Single GRU and RNN node ONNX graphs, engine against onnxruntime, over every attribute and optional input.

GRU runs with linear_before_reset 0 (the attribute absent: its default) and 1; RNN with its default Tanh. Each
parametrized case fixes the graph's structure (each structure is one compile); hypothesis varies sizes, lengths
(sequence_lens may be 0) and values. layout=1 is compared with onnxruntime running the equivalent layout=0 graph on
transposed data, since onnxruntime rejects layout=1.

onnxruntime 1.32 has no float64 GRU ("GRU operator does not support double yet" at run time) and no float64 RNN
kernel at all, so float64 models are compared with onnxruntime's float32 run at the float32 tolerance.
"""
import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import converters
import engine
from lstm_util import (SETTINGS, compare, make_feeds, max_abs_diff, ort_session, rnn_model, to_double,
                       to_layout0, tolerance)

pytestmark = pytest.mark.slow   # onnxruntime, and many compiled models

FEW = settings(SETTINGS, max_examples=4)

# (id, op, fixed attributes)
VARIANTS = [
    ("gru", "GRU", {}),                                  # linear_before_reset absent: 0
    ("gru-lbr1", "GRU", {"linear_before_reset": 1}),
    ("rnn", "RNN", {}),
]

# (id, attrs, options, layouts) - options: with_B, inputs, outputs
CASES = [
    ("forward-defaults", {}, {}, (0, 1)),
    ("no-bias", {}, {"with_B": False}, (0,)),
    ("no-bias-reverse-initial-h", {"direction": "reverse"}, {"with_B": False, "inputs": ("X", "initial_h")}, (1,)),
    ("reverse", {"direction": "reverse"}, {}, (0, 1)),
    ("bidirectional", {"direction": "bidirectional"}, {}, (0, 1)),
    ("initial-h", {}, {"inputs": ("X", "initial_h")}, (0,)),
    ("initial-h-bidirectional", {"direction": "bidirectional"}, {"inputs": ("X", "initial_h")}, (0, 1)),
    ("sequence-lens", {}, {"inputs": ("X", "sequence_lens", "initial_h")}, (0, 1)),
    ("sequence-lens-reverse", {"direction": "reverse"}, {"inputs": ("X", "sequence_lens")}, (0,)),
    ("sequence-lens-bidirectional", {"direction": "bidirectional"},
     {"inputs": ("X", "sequence_lens", "initial_h")}, (0, 1)),
    ("clip", {"clip": 0.7}, {}, (0,)),
    ("clip-bidirectional", {"clip": 1.5, "direction": "bidirectional"}, {"inputs": ("X", "initial_h")}, (0,)),
    ("only-Y", {}, {"outputs": ("Y",)}, (0, 1)),
    ("only-Y_h", {"direction": "bidirectional"}, {"outputs": ("Y_h",), "inputs": ("X", "sequence_lens")}, (0, 1)),
]

shapes = st.fixed_dictionaries({
    "T": st.integers(1, 24), "B": st.integers(1, 5), "I": st.integers(1, 9), "H": st.integers(1, 12),
    "seed": st.integers(0, 2 ** 31 - 1)})
# unbounded activations make the state grow geometrically with the steps: short sequences and small weights keep
# both engines far from float32 overflow
short_shapes = st.fixed_dictionaries({
    "T": st.integers(1, 10), "B": st.integers(1, 4), "I": st.integers(1, 6), "H": st.integers(1, 10),
    "seed": st.integers(0, 2 ** 31 - 1)})

ATTRIBUTE_ITEMS = [pytest.param(op, {**fixed, **attrs, "layout": layout}, opts, id=f"{vid}-{cid}-layout{layout}")
                   for vid, op, fixed in VARIANTS for cid, attrs, opts, layouts in CASES for layout in layouts]


def ndir(attrs):
    return 2 if attrs.get("direction") == "bidirectional" else 1


@pytest.mark.parametrize("op,attrs,opts", ATTRIBUTE_ITEMS)
def test_attributes_against_onnxruntime(op, attrs, opts):
    D = ndir(attrs)
    layout = attrs["layout"]
    inputs = opts.get("inputs", ("X",))

    @FEW
    @given(shapes)
    def check(s):
        rng = np.random.default_rng(s["seed"])
        T, B, I, H = s["T"], s["B"], s["I"], s["H"]
        model, _ = rnn_model(op, I=I, H=H, D=D, T=T, B=B, rng=rng, attrs=attrs, with_B=opts.get("with_B", True),
                             inputs=inputs, outputs=opts.get("outputs", ("Y", "Y_h")))
        # sequence lengths from 0 up: an empty sequence ends with Y and Y_h zero
        feeds = make_feeds(inputs, T, B, I, H, D, rng, layout, op=op, min_len=0)
        compare(model, feeds, T, layout)

    check()


# (id, op, attrs) - the activations, alphas and betas of every direction; GRU: f (z and r), g (candidate);
# RNN: f. Bidirectional rows give each direction different functions: the alpha / beta lists are consumed in order
# by the functions that take them, across directions.
ACTIVATION_CASES = [
    ("gru-hardsigmoid-softsign", "GRU", {"activations": ["HardSigmoid", "Softsign"], "activation_alpha": [0.3],
                                         "activation_beta": [0.4]}),
    ("gru-sigmoid-relu", "GRU", {"activations": ["Sigmoid", "Relu"]}),
    ("gru-leakyrelu-scaledtanh-lbr1", "GRU", {"activations": ["LeakyRelu", "ScaledTanh"],
                                              "activation_alpha": [0.05, 1.2], "activation_beta": [0.8],
                                              "linear_before_reset": 1}),
    ("gru-affine-elu", "GRU", {"activations": ["Affine", "Elu"], "activation_alpha": [0.4, 0.9],
                               "activation_beta": [0.5]}),
    ("gru-softplus-thresholdedrelu", "GRU", {"activations": ["Softplus", "ThresholdedRelu"],
                                             "activation_alpha": [0.2]}),
    ("gru-defaults-for-missing-alpha", "GRU", {"activations": ["HardSigmoid", "LeakyRelu"]}),
    # onnxruntime's defaults when alpha/beta run out: 0 for ScaledTanh and Affine (not the standalone ops' 1.0)
    ("gru-defaults-scaledtanh-affine-lbr1", "GRU", {"activations": ["ScaledTanh", "Affine"],
                                                    "linear_before_reset": 1}),
    ("gru-bidirectional-per-direction", "GRU", {"direction": "bidirectional",
                                                "activations": ["HardSigmoid", "Tanh", "Sigmoid", "Affine"],
                                                "activation_alpha": [0.3, 0.8], "activation_beta": [0.4, 0.1]}),
    ("gru-bidirectional-relu-lbr1", "GRU", {"direction": "bidirectional", "linear_before_reset": 1,
                                            "activations": ["Sigmoid", "Relu", "Sigmoid", "Softsign"]}),
    ("rnn-relu", "RNN", {"activations": ["Relu"]}),
    ("rnn-leakyrelu", "RNN", {"activations": ["LeakyRelu"], "activation_alpha": [0.1]}),
    ("rnn-hardsigmoid", "RNN", {"activations": ["HardSigmoid"], "activation_alpha": [0.3],
                                "activation_beta": [0.4]}),
    ("rnn-scaledtanh", "RNN", {"activations": ["ScaledTanh"], "activation_alpha": [1.2], "activation_beta": [0.8]}),
    ("rnn-affine", "RNN", {"activations": ["Affine"], "activation_alpha": [0.9], "activation_beta": [0.1]}),
    ("rnn-softsign", "RNN", {"activations": ["Softsign"]}),
    ("rnn-softplus", "RNN", {"activations": ["Softplus"]}),
    ("rnn-elu", "RNN", {"activations": ["Elu"], "activation_alpha": [0.9]}),
    ("rnn-thresholdedrelu", "RNN", {"activations": ["ThresholdedRelu"], "activation_alpha": [0.2]}),
    ("rnn-sigmoid", "RNN", {"activations": ["Sigmoid"]}),
    ("rnn-defaults-leakyrelu", "RNN", {"activations": ["LeakyRelu"]}),
    ("rnn-defaults-affine", "RNN", {"activations": ["Affine"]}),
    ("rnn-bidirectional-per-direction", "RNN", {"direction": "bidirectional",
                                                "activations": ["LeakyRelu", "ScaledTanh"],
                                                "activation_alpha": [0.1, 1.5], "activation_beta": [0.7]}),
    ("rnn-bidirectional-relu-clip", "RNN", {"direction": "bidirectional", "activations": ["Relu", "Relu"],
                                            "clip": 0.5}),
]


@pytest.mark.parametrize("op,attrs", [pytest.param(op, attrs, id=cid) for cid, op, attrs in ACTIVATION_CASES])
def test_activations_against_onnxruntime(op, attrs):
    D = ndir(attrs)
    n = {"GRU": 2, "RNN": 1}[op]
    assert len(attrs["activations"]) == n * D

    @FEW
    @given(short_shapes)
    def check(s):
        rng = np.random.default_rng(s["seed"])
        T, B, I, H = s["T"], s["B"], s["I"], s["H"]
        model, _ = rnn_model(op, I=I, H=H, D=D, T=T, B=B, rng=rng, attrs=attrs, inputs=("X", "initial_h"),
                             weight_scale=0.15)
        compare(model, make_feeds(("initial_h",), T, B, I, H, D, rng, op=op), T, rel=2e-6)

    check()


@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("op,fixed", [pytest.param(op, fixed, id=vid) for vid, op, fixed in VARIANTS])
def test_zero_length_sequences_against_onnxruntime(op, fixed, direction, layout):
    """A batch entry with sequence_lens 0: Y all zero, and Y_h zero too (not the initial state)."""
    D = 2 if direction == "bidirectional" else 1
    T, B, I, H = 5, 4, 3, 6
    rng = np.random.default_rng(7)
    inputs = ("X", "sequence_lens", "initial_h")
    model, _ = rnn_model(op, I=I, H=H, D=D, T=T, B=B, rng=rng, attrs={**fixed, "direction": direction,
                                                                       "layout": layout}, inputs=inputs)
    feeds = make_feeds(inputs, T, B, I, H, D, rng, layout, op=op)
    feeds["sequence_lens"] = np.array([T, 0, 2, 0], dtype=np.int32)
    compare(model, feeds, T, layout)
    y, yh = engine.Session(model.SerializeToString()).run(None, feeds)
    if layout == 1:      # (B, T, D, H), (B, D, H) -> (T, D, B, H), (D, B, H)
        y, yh = y.transpose(1, 2, 0, 3), yh.transpose(1, 0, 2)
    assert not y[:, :, 1].any() and not yh[:, 1].any()
    assert not y[:, :, 3].any() and not yh[:, 3].any()
    assert not y[2:, :, 2].any()                             # past the end of a short sequence
    assert y[:, :, 0].any() and yh[:, 0].any() and yh[:, 2].any()


@pytest.mark.parametrize("op,fixed", [pytest.param(op, fixed, id=vid) for vid, op, fixed in VARIANTS])
def test_float64_model_matches_float32_reference(op, fixed):
    """onnxruntime has no float64 GRU or RNN: compare the engine's float64 run with onnxruntime's float32 run of the
    same weights (fp32 tolerance), and the engine's float64 precision mode on the float32 model with the float64
    model."""
    rng = np.random.default_rng(11)
    inputs = ("X", "sequence_lens", "initial_h")
    m32, _ = rnn_model(op, I=5, H=7, D=2, T=12, B=3, rng=rng, attrs={**fixed, "direction": "bidirectional"},
                       inputs=inputs)
    m64 = to_double(m32)     # the same weights, exactly, as doubles
    feeds = make_feeds(inputs, 12, 3, 5, 7, 2, np.random.default_rng(5), op=op)
    feeds64 = {k: (v.astype(np.float64) if v.dtype == np.float32 else v) for k, v in feeds.items()}
    s64 = engine.Session(m64.SerializeToString())
    assert s64.get_inputs()[0].type == "tensor(double)"
    got64 = s64.run(None, feeds64)
    assert len(got64) == 2 and all(g.dtype == np.float64 for g in got64)
    compare(m64, feeds64, 12, ref_model=m32)
    prec = engine.Session(m32.SerializeToString(), precision="float64").run(None, feeds)
    assert max(max_abs_diff(g, r) for g, r in zip(prec, got64)) <= 1e-12
    # and float64 really is computed in double: it differs from the engine's float32 run by float32 rounding
    got32 = engine.Session(m32.SerializeToString()).run(None, feeds)
    assert 0 < max(max_abs_diff(g, r) for g, r in zip(got32, got64)) <= 1e-5


@pytest.mark.parametrize("T,H", [(100, 64), (1000, 32)])
@pytest.mark.parametrize("op,fixed", [pytest.param(op, fixed, id=vid) for vid, op, fixed in VARIANTS])
def test_long_sequences_against_onnxruntime(op, fixed, T, H):
    rng = np.random.default_rng(T)
    model, _ = rnn_model(op, I=16, H=H, D=1, T=T, B=2, rng=rng, attrs=fixed, inputs=("X", "initial_h"),
                         weight_scale=0.2)
    diff = compare(model, make_feeds(("initial_h",), T, 2, 16, H, 1, rng, op=op), T)
    assert diff <= tolerance(T)


@pytest.mark.parametrize("H", [64, 256])
@pytest.mark.parametrize("op,fixed", [pytest.param(op, fixed, id=vid) for vid, op, fixed in VARIANTS])
def test_larger_sizes_against_onnxruntime(op, fixed, H):
    """Hidden sizes a blocked kernel would split without remainder, and batch sizes on both sides of a switch to a
    BLAS product for the recurrence."""
    for B in (1, 3, 8):
        rng = np.random.default_rng(H + B)
        model, _ = rnn_model(op, I=H, H=H, D=1, T=20, B=B, rng=rng, attrs=fixed,
                             inputs=("X", "sequence_lens", "initial_h"), weight_scale=0.1)
        compare(model, make_feeds(("sequence_lens", "initial_h"), 20, B, H, H, 1, rng, op=op), 20)


@pytest.mark.parametrize("op,fixed", [pytest.param(op, fixed, id=vid) for vid, op, fixed in VARIANTS])
def test_two_threads_against_onnxruntime(op, fixed):
    rng = np.random.default_rng(7)
    H = 256
    model, _ = rnn_model(op, I=32, H=H, D=2, T=30, B=2, rng=rng, attrs={**fixed, "direction": "bidirectional"},
                         inputs=("X", "sequence_lens", "initial_h"), weight_scale=0.1)
    feeds = make_feeds(("sequence_lens", "initial_h"), 30, 2, 32, H, 2, rng, op=op)
    got = engine.Session(model.SerializeToString(), threads=2).run(None, feeds)
    ref = ort_session(model).run(None, feeds)
    assert max(max_abs_diff(g, r) for g, r in zip(got, ref)) <= 1e-5


@pytest.mark.parametrize("opset", [7, 14, 22])
@pytest.mark.parametrize("op,attrs", [
    pytest.param("GRU", {"linear_before_reset": 0}, id="gru-explicit-lbr0"),
    pytest.param("GRU", {"linear_before_reset": 1, "direction": "bidirectional", "clip": 2.0}, id="gru-lbr1"),
    pytest.param("RNN", {"direction": "bidirectional", "activations": ["Relu", "Tanh"]}, id="rnn"),
])
def test_opsets(op, attrs, opset):
    """GRU-7 / RNN-7 (no layout attribute), -14 (layout) and -22 (bfloat16 added) all load."""
    D = ndir(attrs)
    rng = np.random.default_rng(opset)
    inputs = ("X", "sequence_lens", "initial_h")
    model, _ = rnn_model(op, I=4, H=5, D=D, T=9, B=3, rng=rng, attrs=attrs, inputs=inputs, opset=opset,
                         weight_scale=0.3)
    ctx = onnx.checker.C.CheckerContext()             # the node is valid for that opset (GRU-7 has no layout)
    ctx.ir_version, ctx.opset_imports = model.ir_version, {"": opset}
    onnx.checker.check_node(model.graph.node[0], ctx)
    compare(model, make_feeds(inputs, 9, 3, 4, 5, D, rng, op=op, min_len=0), 9)


@pytest.mark.parametrize("op", ["GRU", "RNN"])
def test_every_model_source(op, tmp_path):
    """converters.from_onnx takes a ModelProto, bytes or a path; engine.Session takes ONNX bytes, a path or a
    converted Model (and a saved model file). All give onnxruntime's results."""
    rng = np.random.default_rng(3)
    inputs = ("X", "sequence_lens", "initial_h")
    model, _ = rnn_model(op, I=4, H=6, D=2, T=8, B=2, rng=rng, attrs={"direction": "bidirectional"},
                         inputs=inputs)
    feeds = make_feeds(inputs, 8, 2, 4, 6, 2, rng, op=op)
    ref = ort_session(model).run(None, feeds)
    data = model.SerializeToString()
    path = tmp_path / "m.onnx"
    path.write_bytes(data)
    converted = [converters.from_onnx(model), converters.from_onnx(data), converters.from_onnx(str(path)),
                 converters.from_onnx(path, tmp_path / "m.lstm")]
    assert [n.op for n in converted[0].nodes].count(op) == 1
    sessions = [engine.Session(data), engine.Session(str(path)), engine.Session(tmp_path / "m.lstm")]
    sessions += [engine.Session(m) for m in converted]
    for sess in sessions:
        assert [i.name for i in sess.get_inputs()] == ["X", "sequence_lens", "initial_h"]
        assert [o.name for o in sess.get_outputs()] == ["Y", "Y_h"]
        got = sess.run(None, feeds)
        assert max(max_abs_diff(g, r) for g, r in zip(got, ref)) <= 1e-5


@pytest.mark.parametrize("op", ["GRU", "RNN"])
def test_layout1_shapes(op):
    """layout=1: X (B, T, I), initial_h (B, D, H); Y (B, T, D, H), Y_h (B, D, H)."""
    rng = np.random.default_rng(0)
    model, _ = rnn_model(op, I=3, H=4, D=2, T=6, B=5, rng=rng, attrs={"direction": "bidirectional", "layout": 1},
                         inputs=("X", "initial_h"))
    feeds = make_feeds(("initial_h",), 6, 5, 3, 4, 2, rng, layout=1, op=op)
    y, yh = engine.Session(model.SerializeToString()).run(None, feeds)
    assert y.shape == (5, 6, 2, 4) and yh.shape == (5, 2, 4)
    ref = ort_session(to_layout0(model)).run(None, {"X": feeds["X"].transpose(1, 0, 2).copy(),
                                                    "initial_h": feeds["initial_h"].transpose(1, 0, 2).copy()})
    assert max_abs_diff(y, ref[0].transpose(2, 0, 1, 3)) <= 1e-5
    assert max_abs_diff(yh, ref[1].transpose(1, 0, 2)) <= 1e-5
