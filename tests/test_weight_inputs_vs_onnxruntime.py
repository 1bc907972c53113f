"""ONNX graphs whose recurrent weights (W, R, B, P) are graph inputs fed at run time, as onnxruntime runs them:
converted as they are (converters/onnx/handlers/recurrent.py) and packed on the call (engine/call_weights.py),
against onnxruntime; weights changed between calls, some weights constant, declared shapes and their errors.
"""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import converters
import engine
from engine.errors import InvalidInputError, UnsupportedModelError
from lstm_util import (compare, make_feeds, max_abs_diff, ort_session, rnn_model, state_inputs, tolerance,
                       weights_to_inputs)

pytestmark = pytest.mark.slow   # onnxruntime

# (id, op, attrs, with_P, run-time inputs besides the weights)
CASES = [
    ("lstm-peepholes-bias-states-lens", "LSTM", {}, True, ("X", "sequence_lens", "initial_h", "initial_c")),
    ("lstm-bidirectional-peepholes", "LSTM", {"direction": "bidirectional"}, True, ("X", "initial_h", "initial_c")),
    ("lstm-reverse-clip", "LSTM", {"direction": "reverse", "clip": 0.9}, False, ("X",)),
    ("gru", "GRU", {}, False, ("X", "initial_h")),
    ("gru-linear-before-reset", "GRU", {"linear_before_reset": 1}, False, ("X", "sequence_lens", "initial_h")),
    ("gru-bidirectional-linear-before-reset", "GRU", {"direction": "bidirectional", "linear_before_reset": 1},
     False, ("X", "initial_h")),
    ("rnn", "RNN", {}, False, ("X", "initial_h")),
    ("rnn-bidirectional", "RNN", {"direction": "bidirectional"}, False, ("X", "sequence_lens")),
]


def fed_graph(op, attrs, with_P, inputs, T=6, B=3, I=5, H=7, seed=0):
    rng = np.random.default_rng(seed)
    D = 2 if attrs.get("direction") == "bidirectional" else 1
    model, weights = rnn_model(op, I=I, H=H, D=D, T=T, B=B, rng=rng, attrs=attrs, with_P=with_P, inputs=inputs)
    fed = weights_to_inputs(model)
    names = [vi.name for vi in fed.graph.input if vi.name in weights]
    return fed, {n: weights[n] for n in names}, make_feeds(inputs, T, B, I, H, D, rng, op=op), rng


def other_weights(weights, rng):
    return {k: (rng.standard_normal(v.shape) * 0.5).astype(v.dtype) for k, v in weights.items()}


@pytest.mark.parametrize("op,attrs,with_P,inputs", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_fed_weights_against_onnxruntime(op, attrs, with_P, inputs):
    model, weights, feeds, rng = fed_graph(op, attrs, with_P, inputs)
    sess, ref = engine.Session(model.SerializeToString()), ort_session(model)
    assert [i.name for i in sess.get_inputs()] == [i.name for i in ref.get_inputs()]
    assert {"W", "R", "B"} <= {i.name for i in sess.get_inputs()}
    names = [o.name for o in model.graph.output]
    for w in (weights, other_weights(weights, rng), weights):     # new weights, then the first ones again
        got, want = sess.run(names, {**feeds, **w}), ref.run(names, {**feeds, **w})
        assert max(max_abs_diff(g, r) for g, r in zip(got, want)) < tolerance(6)


def test_weights_changed_in_place_between_calls():
    model, weights, feeds, rng = fed_graph("LSTM", {}, True, ("X", "initial_h", "initial_c"))
    weights = {k: v.copy() for k, v in weights.items()}
    sess, ref = engine.Session(model.SerializeToString()), ort_session(model)
    previous = None
    for step in range(5):
        if step:
            name = ["W", "R", "B", "P"][step - 1]
            weights[name] *= np.float32(-0.8)                      # the same array object, new contents
        got, want = sess.run(None, {**feeds, **weights}), ref.run(None, {**feeds, **weights})
        assert max(max_abs_diff(g, r) for g, r in zip(got, want)) < tolerance(6)
        if previous is not None:
            assert max_abs_diff(got[0], previous[0]) > 1e-3             # not a stale result
        previous = got


def test_some_weights_fed_the_others_initializers():
    rng = np.random.default_rng(3)
    model, weights = rnn_model("LSTM", I=4, H=6, D=1, T=5, B=2, rng=rng, attrs={}, with_P=True,
                               inputs=("X", "initial_h"))
    fed = weights_to_inputs(model, ["R"])
    feeds = make_feeds(("X", "initial_h"), 5, 2, 4, 6, 1, rng)
    diff = compare(fed, {**feeds, "R": weights["R"]}, T=5)
    assert diff < tolerance(5)
    sess = engine.Session(fed.SerializeToString())
    assert [i.name for i in sess.get_inputs()] == ["X", "initial_h", "R"]


def test_symbolic_weight_dimensions_are_bound_to_the_node():
    """dim_param names on the weights: the converter binds them to the sizes the node needs, and the Session
    declares (and checks) those sizes; the input size stays a name, shared by X and W."""
    model, weights, feeds, _ = fed_graph("GRU", {}, False, ("X",))
    fed = weights_to_inputs(rnn_model("GRU", I=5, H=7, D=1, T=6, B=3, rng=np.random.default_rng(0), attrs={})[0],
                            dims={"W": ["dirs", "gates", "features"], "R": ["dirs", "gates", "hidden"],
                                  "B": ["dirs", "biases"]})
    sess = engine.Session(fed.SerializeToString())
    declared = {i.name: i.shape for i in sess.get_inputs()}
    assert declared["W"] == [1, 21, "features"] and declared["X"][2] == "features"
    assert declared["R"] == [1, 21, 7] and declared["B"] == [1, 42]
    got = sess.run(None, {**feeds, **weights})
    want = ort_session(model).run(None, {**feeds, **weights})
    assert max(max_abs_diff(g, r) for g, r in zip(got, want)) < tolerance(6)
    with pytest.raises(InvalidInputError, match=r"input 'R' must have shape \[1, 21, 7\], got \(1, 21, 6\)"):
        sess.run(None, {**feeds, **weights, "R": weights["R"][:, :, :6]})
    with pytest.raises(InvalidInputError, match=r"input 'W' dimension 2 \('features'\) is 4, but another input gave "
                                                r"'features' = 5"):
        sess.run(None, {**feeds, **weights, "W": weights["W"][:, :, :4]})


def test_hidden_size_is_read_off_a_fed_R():
    """hidden_size is optional in ONNX (onnxruntime requires it): without it, R's declared size is the node's."""
    model, weights, feeds, _ = fed_graph("RNN", {}, False, ("X",))
    unnamed = onnx.ModelProto()
    unnamed.CopyFrom(model)
    for a in list(unnamed.graph.node[0].attribute):
        if a.name == "hidden_size":
            unnamed.graph.node[0].attribute.remove(a)
    got = engine.Session(unnamed.SerializeToString()).run(None, {**feeds, **weights})
    want = ort_session(model).run(None, {**feeds, **weights})
    assert max(max_abs_diff(g, r) for g, r in zip(got, want)) < tolerance(6)
    unsized = weights_to_inputs(rnn_model("RNN", I=5, H=7, D=1, T=6, B=3, rng=np.random.default_rng(0),
                                          attrs={})[0], dims={"R": [1, 7, "hidden"]})
    for a in list(unsized.graph.node[0].attribute):
        if a.name == "hidden_size":
            unsized.graph.node[0].attribute.remove(a)
    with pytest.raises(UnsupportedModelError, match=r"hidden_size is not given and R \('R'\) does not state its size"):
        converters.from_onnx(unsized)


def test_declared_weight_shapes_that_do_not_fit():
    """A wrong rank is a conversion error. A fixed size that contradicts the node is, as for every graph input, a
    soft dimension that the node's size replaces (converters/onnx/dims.py): the Session declares the size the node
    needs and refuses a feed of the file's, naming the input; onnxruntime would fail at run time too."""
    base = rnn_model("LSTM", I=4, H=6, D=1, T=5, B=2, rng=np.random.default_rng(0), attrs={})[0]
    with pytest.raises(UnsupportedModelError, match=r"B must have rank 2, got shape \(1, 1, 48\)"):
        converters.from_onnx(weights_to_inputs(base, dims={"B": [1, 1, 48]}))
    sess = engine.Session(weights_to_inputs(base, dims={"R": [1, 24, 5]}).SerializeToString())
    assert {i.name: i.shape for i in sess.get_inputs()}["R"] == [1, 24, 6]
    feeds = {"X": np.zeros((5, 2, 4), np.float32), "W": np.zeros((1, 24, 4), np.float32),
             "R": np.zeros((1, 24, 5), np.float32)}
    with pytest.raises(InvalidInputError, match=r"input 'R' must have shape \[1, 24, 6\], got \(1, 24, 5\)"):
        sess.run(None, feeds)


def test_weights_computed_at_run_time_are_refused():
    """W = Mul(W_in, scale) with W_in a graph input: computed by the graph, not packed on the call."""
    base = rnn_model("RNN", I=4, H=6, D=1, T=5, B=2, rng=np.random.default_rng(0), attrs={})[0]
    m = weights_to_inputs(base, ["W"])
    m.graph.input[-1].name = "W_in"
    m.graph.initializer.append(helper.make_tensor("scale", TensorProto.FLOAT, [], [2.0]))
    m.graph.node.insert(0, helper.make_node("Mul", ["W_in", "scale"], ["W"]))
    with pytest.raises(UnsupportedModelError, match=r"W \('W'\) is computed by the graph at run time: weights must be "
                                                    r"constants .* or graph inputs"):
        converters.from_onnx(m)


def test_a_fed_weight_of_another_float_type_is_refused():
    base = rnn_model("RNN", I=4, H=6, D=1, T=5, B=2, rng=np.random.default_rng(0), attrs={})[0]
    m = weights_to_inputs(base)
    m.graph.input[1].type.tensor_type.elem_type = TensorProto.DOUBLE
    with pytest.raises(UnsupportedModelError, match=r"W \(graph input 'W'\) is float64, but X is float32"):
        converters.from_onnx(m)


def test_streaming_a_model_with_fed_weights_is_a_clear_error():
    model, weights, feeds, _ = fed_graph("LSTM", {}, False, ("X", *state_inputs("LSTM")))
    sess = engine.Session(model.SerializeToString())
    with pytest.raises(UnsupportedModelError, match=r"takes its weights from the graph inputs \['W', 'R', 'B'\], and "
                                                    r"this stream is fed only 'X': use Session.run; or .* "
                                                    r"stream\(inputs=...\)"):
        sess.stream(1)
    assert len(sess.run(None, {**feeds, **weights})) == 3       # run works


def test_a_state_pair_stream_takes_the_weights_once():
    """The state as input/output pairs (initial_h -> Y_h, initial_c -> Y_c): the stream feeds the state back, the
    weights are given once (stream(inputs=...)) and packed once; step by step equals onnxruntime's whole sequence."""
    rng = np.random.default_rng(5)
    model, w = rnn_model("LSTM", I=4, H=6, D=1, T="T", B=2, rng=rng, attrs={}, with_P=True,
                         inputs=("X", "initial_h", "initial_c"))
    fed = weights_to_inputs(model)
    sess = engine.Session(converters.from_onnx(fed, state={"initial_h": "Y_h", "initial_c": "Y_c"}))
    weights = {k: w[k] for k in ("W", "R", "B", "P")}
    stream = sess.stream(2, inputs=weights)
    x = rng.standard_normal((9, 2, 4)).astype(np.float32)
    steps = np.stack([stream.step(x[t]) for t in range(9)])
    zeros = np.zeros((1, 2, 6), np.float32)
    want = ort_session(fed).run(["Y"], {"X": x, "initial_h": zeros, "initial_c": zeros, **weights})[0]
    assert max_abs_diff(steps, want) < tolerance(9)
    assert sess._call_weights.packs == 1


def test_a_model_file_keeps_its_weight_inputs(tmp_path):
    model, weights, feeds, _ = fed_graph("GRU", {"linear_before_reset": 1}, False, ("X",))
    path = tmp_path / "gru.lstm"
    converters.from_onnx(model, str(path))
    got = engine.Session(str(path)).run(None, {**feeds, **weights})
    want = ort_session(model).run(None, {**feeds, **weights})
    assert max(max_abs_diff(g, r) for g, r in zip(got, want)) < tolerance(6)
