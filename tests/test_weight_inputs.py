"""Recurrent weights fed as graph inputs at run time (engine/call_weights.py), on models built with engine.Model:
against tests/naive.py and against the same model with its weights as constants; the packed buffer reused while the
same weights come back and packed again when they change (in place or not); shapes, dtypes and streams refused
clearly. The same against onnxruntime, through the converter: tests/test_weight_inputs_vs_onnxruntime.py.
"""
import threading

import numpy as np
import pytest

import engine
from built_models import recurrent_model, weights_as_inputs
from engine import call_weights
from engine.errors import InvalidInputError, ModelFileError, UnsupportedModelError
from engine.model import to_bytes

CASES = [("LSTM", dict(peepholes=True)), ("LSTM", dict(direction="bidirectional", peepholes=True)),
         ("GRU", dict(linear_before_reset=0)), ("GRU", dict(linear_before_reset=1, direction="bidirectional")),
         ("RNN", dict()), ("RNN", dict(direction="reverse"))]


def names_of(op):
    return ["W", "R", "B", "P"] if op == "LSTM" else ["W", "R", "B"]


def feed_of(T=5, B=3, I=4, D=1, H=6, seed=0, op="LSTM"):
    rng = np.random.default_rng(seed)
    feed = {"X": rng.standard_normal((T, B, I)).astype(np.float32),
            "initial_h": rng.standard_normal((D, B, H)).astype(np.float32)}
    if op == "LSTM":
        feed["initial_c"] = rng.standard_normal((D, B, H)).astype(np.float32)
    return feed


def reference(op, kw, feed, weights):
    import naive
    return naive.recurrent(op, feed["X"], weights["W"], weights["R"], weights["B"], None, feed["initial_h"],
                           feed.get("initial_c"), P=weights.get("P"), direction=kw.get("direction", "forward"),
                           linear_before_reset=kw.get("linear_before_reset", 0))


def max_abs_diff(a, b):
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


IDS = [f"{op}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for op, kw in CASES]


@pytest.mark.parametrize("op,kw", CASES, ids=IDS)
def test_fed_weights_give_the_results_of_constant_weights(op, kw):
    model, _ = recurrent_model(op, I=4, H=6, **kw)
    fed_model, weights = weights_as_inputs(model, [n for n in names_of(op) if n in model.tensors])
    D = 2 if kw.get("direction") == "bidirectional" else 1
    feed = feed_of(D=D, op=op)
    sess = engine.Session(to_bytes(fed_model))
    assert [i.name for i in sess.get_inputs()][-len(weights):] == list(weights)
    got = sess.run(None, {**feed, **weights})
    constant = engine.Session(model).run(None, feed)
    for g, c, r in zip(got, constant, reference(op, kw, feed, weights)):
        np.testing.assert_array_equal(g, c)       # the same packing, the same kernels
        assert max_abs_diff(g, r) < 1e-5


def test_the_packed_weights_are_reused_while_the_same_weights_come_back():
    model, _ = recurrent_model("LSTM", I=4, H=6, peepholes=True)
    fed_model, weights = weights_as_inputs(model, ["W", "R", "B", "P"])
    sess = engine.Session(fed_model)
    feed = feed_of()
    first = sess.run(None, {**feed, **weights})
    for _ in range(3):                                          # the same arrays: the fast path, no packing
        again = sess.run(None, {**feed, **weights})
    copies = {k: v.copy() for k, v in weights.items()}          # other arrays, the same contents
    other = sess.run(None, {**feed, **copies})
    assert sess._call_weights.packs == 1
    for a, b, c in zip(first, again, other):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_the_weights_packed_on_the_call_start_on_a_64_byte_boundary():
    model, _ = recurrent_model("LSTM", I=4, H=6, peepholes=True)
    fed_model, weights = weights_as_inputs(model, ["W", "R", "B", "P"])
    sess = engine.Session(fed_model)
    feed = feed_of()
    for scale in (1.0, 2.0, 3.0):                     # packed again each time: new buffers
        sess.run(None, {**feed, **{k: v * np.float32(scale) for k, v in weights.items()}})
        (_, buf), = sess._call_weights._last.values()
        assert buf.ctypes.data % 64 == 0


def test_weights_changed_in_place_or_replaced_give_new_results():
    model, _ = recurrent_model("LSTM", I=4, H=6, peepholes=True)
    fed_model, weights = weights_as_inputs(model, ["W", "R", "B", "P"])
    weights = {k: v.copy() for k, v in weights.items()}
    sess = engine.Session(fed_model)
    feed = feed_of()
    kw = dict(peepholes=True)
    before = sess.run(None, {**feed, **weights})
    rng = np.random.default_rng(7)
    for name in ["W", "R", "B", "P"]:                            # one array changed in place: same object, new values
        weights[name][..., 0] += 0.25
        got = sess.run(None, {**feed, **weights})
        assert max_abs_diff(got[0], before[0]) > 1e-3
        assert max_abs_diff(got[0], reference("LSTM", kw, feed, weights)[0]) < 1e-5
        before = got
    weights["R"] = (rng.standard_normal(weights["R"].shape) * 0.5).astype(np.float32)   # a new array
    got = sess.run(None, {**feed, **weights})
    assert max_abs_diff(got[1], reference("LSTM", kw, feed, weights)[1]) < 1e-5
    weights["W"][0, 0, 0] = np.nan                               # NaN compares unequal to itself, not its bytes
    nan = sess.run(None, {**feed, **weights})
    assert np.isnan(nan[0]).any()
    packs = sess._call_weights.packs
    sess.run(None, {**feed, **weights})
    assert sess._call_weights.packs == packs                     # the NaN weights are reused, not packed again


def test_weights_of_another_dtype_or_layout_are_converted():
    model, _ = recurrent_model("GRU", I=4, H=6, linear_before_reset=1)
    fed_model, weights = weights_as_inputs(model, ["W", "R", "B"])
    sess = engine.Session(fed_model)
    feed = feed_of(op="GRU")
    want = reference("GRU", dict(linear_before_reset=1), feed, weights)
    as64 = {k: v.astype(np.float64) for k, v in weights.items()}
    fortran = {k: np.asfortranarray(v) for k, v in weights.items()}
    readonly = {k: v.copy() for k, v in weights.items()}
    for v in readonly.values():
        v.flags.writeable = False
    for w in (as64, fortran, readonly, as64):
        got = sess.run(None, {**feed, **w})
        assert max_abs_diff(got[0], want[0]) < 1e-5


def test_some_weights_fed_the_others_constant():
    """W fed, R and B constants of the file: the constants are kept at load for the packing on the call, though
    the Session lets the file's arrays go."""
    model, _ = recurrent_model("RNN", I=4, H=6)
    fed_model, weights = weights_as_inputs(model, ["W"])
    sess = engine.Session(to_bytes(fed_model))
    assert sess.model.released
    feed = feed_of(op="RNN")
    for scale in (1.0, -0.5):
        w = {"W": weights["W"] * np.float32(scale)}
        got = sess.run(None, {**feed, **w})
        want = reference("RNN", {}, feed, {"W": w["W"], "R": model.tensors["R"], "B": model.tensors["B"]})
        assert max_abs_diff(got[0], want[0]) < 1e-5


def test_float64_precision():
    model, _ = recurrent_model("LSTM", I=4, H=6, peepholes=True)
    fed_model, weights = weights_as_inputs(model, ["W", "R", "B", "P"])
    feed = feed_of()
    got = engine.Session(fed_model, precision="float64").run(None, {**feed, **weights})
    assert got[0].dtype == np.float64
    assert max_abs_diff(got[0], reference("LSTM", dict(peepholes=True), feed, weights)[0]) < 1e-12


def test_the_threaded_kernel_packs_its_own_layout_on_the_call():
    """H >= 256 at batch < 4 with two threads: the threaded LSTM kernel, whose per-thread slices are packed on the
    call too (where the runtime has that kernel; else the single-thread one)."""
    model, _ = recurrent_model("LSTM", I=8, H=256, scale=0.1)
    fed_model, weights = weights_as_inputs(model, ["W", "R", "B"])
    feed = feed_of(T=4, B=1, I=8, H=256)
    got = engine.Session(fed_model, threads=2).run(None, {**feed, **weights})
    constant = engine.Session(model, threads=2).run(None, feed)
    for g, c in zip(got, constant):
        np.testing.assert_array_equal(g, c)


def test_large_weights_changed_in_place_are_packed_again():
    """R of 768 KiB is compared in place, 8 bytes at a time, rather than copied (call_weights._same_bytes)."""
    model, _ = recurrent_model("GRU", I=8, H=256, scale=0.05)
    fed_model, weights = weights_as_inputs(model, ["W", "R", "B"])
    weights = {k: v.copy() for k, v in weights.items()}
    assert weights["R"].nbytes >= call_weights.BIG
    sess = engine.Session(fed_model, threads=1)
    feed = feed_of(T=3, B=1, I=8, H=256, op="GRU")
    before = sess.run(None, {**feed, **weights})
    weights["R"][0, -1, -1] += 1.0                    # one element, at the end
    got = sess.run(None, {**feed, **weights})
    changed = engine.Model(inputs=model.inputs, outputs=model.outputs, nodes=model.nodes,
                           tensors={**model.tensors, **weights}, dtype=model.dtype, stream=model.stream)
    want = engine.Session(changed, threads=1).run(None, feed)
    assert max_abs_diff(got[0], before[0]) > 0
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    assert sess._call_weights.packs == 2


def test_wrong_shapes_and_dtypes_name_the_input():
    model, _ = recurrent_model("LSTM", I=4, H=6)
    fed_model, weights = weights_as_inputs(model, ["W", "R", "B"])
    sess = engine.Session(fed_model)
    feed = feed_of()
    with pytest.raises(InvalidInputError, match=r"input 'R' must have shape \[1, 24, 6\], got \(1, 24, 5\)"):
        sess.run(None, {**feed, **weights, "R": weights["R"][:, :, :5]})
    with pytest.raises(InvalidInputError, match=r"input 'B' must have rank 2"):
        sess.run(None, {**feed, **weights, "B": weights["B"][0]})
    with pytest.raises(InvalidInputError, match=r"input 'W' must be a float array"):
        sess.run(None, {**feed, **weights, "W": weights["W"].astype(np.int32)})
    with pytest.raises(InvalidInputError, match=r"missing required input 'W'"):
        sess.run(None, {**feed, "R": weights["R"], "B": weights["B"]})


def test_symbolic_weight_dimensions_are_checked_when_the_call_gives_them():
    model, _ = recurrent_model("LSTM", I=4, H=6)
    fed_model, weights = weights_as_inputs(model, ["W", "R"], shapes={"W": ["D", "G", "I"], "R": ["D", "G", "K"]})
    sess = engine.Session(fed_model)
    feed = feed_of()
    got = sess.run(None, {**feed, **weights})
    assert max_abs_diff(got[0], engine.Session(model).run(None, feed)[0]) == 0
    with pytest.raises(InvalidInputError, match=r"node 'lstm' \(LSTM\): input 'R' \(R\) has shape \(1, 24, 5\), "
                                                r"expected \(1, 24, 6\)"):
        sess.run(None, {**feed, **weights, "R": weights["R"][:, :, :5]})
    with pytest.raises(InvalidInputError, match=r"input 'W' \(W\) has shape \(1, 24, 3\), expected \(1, 24, 4\)"):
        sess.run(None, {**feed, **weights, "W": np.zeros((1, 24, 3), np.float32)})


def test_a_declared_shape_that_cannot_fit_is_refused_at_load():
    model, _ = recurrent_model("GRU", I=4, H=6)
    with pytest.raises(ModelFileError, match=r"node 'gru': R has shape \(1, 18, 5\), expected \(1, 18, 6\)"):
        weights_as_inputs(model, ["R"], shapes={"R": [1, 18, 5]})
    fed, _ = weights_as_inputs(model, ["W"])
    fed.inputs[-1] = engine.TensorSpec("W", [1, 18, 4], "int32")
    with pytest.raises(ModelFileError, match=r"W \(graph input 'W'\) must be a float tensor"):
        fed.validate()


def test_weights_computed_by_the_graph_are_refused():
    model, _ = recurrent_model("RNN", I=4, H=6)
    fed, _ = weights_as_inputs(model, ["W"])
    fed.nodes = [engine.Node("Identity", "copy", ["W"], ["W2"], {})] + fed.nodes   # W2: computed at run time
    fed.nodes[1].inputs[1] = "W2"
    with pytest.raises(ModelFileError, match=r"W \('W2'\) must be a constant tensor stored in the model or a graph "
                                             r"input"):
        fed.validate()


def test_streams_are_refused_clearly():
    model, _ = recurrent_model("LSTM", I=4, H=6)
    fed_model, _ = weights_as_inputs(model, ["W", "R", "B"])
    sess = engine.Session(fed_model)
    with pytest.raises(UnsupportedModelError, match=r"node 'lstm' takes its weights from the graph inputs "
                                                    r"\['W', 'R', 'B'\].*use Session.run"):
        sess.stream(1)


def test_threads_with_different_weights_share_one_session():
    model, _ = recurrent_model("LSTM", I=4, H=6, peepholes=True)
    fed_model, weights = weights_as_inputs(model, ["W", "R", "B", "P"])
    sess = engine.Session(fed_model)
    feed = feed_of()
    sets = [{k: (v * np.float32(1 + 0.1 * j)) for k, v in weights.items()} for j in range(4)]
    want = [sess.run(None, {**feed, **w}) for w in sets]
    failures = []

    def worker(j):
        for _ in range(25):
            got = sess.run(None, {**feed, **sets[j]})
            if any(not np.array_equal(g, e) for g, e in zip(got, want[j])):
                failures.append(j)

    threads = [threading.Thread(target=worker, args=(j,)) for j in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def test_the_program_reads_the_fed_weights_from_the_call():
    model, _ = recurrent_model("GRU", I=4, H=6)
    fed_model, weights = weights_as_inputs(model, ["W", "R", "B"])
    sess = engine.Session(fed_model)
    plan = sess._plan(("run", ((5, 3, 4), (1, 3, 6), (1, 18, 4), (1, 18, 6), (1, 36)), None),
                      {"X": (5, 3, 4), "initial_h": (1, 3, 6), "W": (1, 18, 4), "R": (1, 18, 6), "B": (1, 36)},
                      sess._output_names)
    assert [name for name, *_ in plan.inputs] == ["X", "initial_h"]      # the weights take no input slot
    assert plan.call is not None and plan.call.positions == [2, 3, 4]
    assert engine.Session(model)._plan(("run", ((5, 3, 4), (1, 3, 6)), None), {"X": (5, 3, 4), "initial_h": (1, 3, 6)},
                                       sess._output_names).call is None
