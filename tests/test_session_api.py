"""The Session API (onnxruntime's shape) and every kind of bad input, each a clear InvalidInputError."""
import numpy as np
import pytest
import torch

import converters
import engine
from engine.errors import EngineError, InvalidInputError
from lstm_util import max_abs_diff, ort_session, rnn_model


@pytest.fixture(scope="module")
def torch_sess():
    torch.manual_seed(0)
    m = torch.nn.LSTM(4, 6, num_layers=2).eval()
    return m, engine.Session(converters.from_torch(m))


@pytest.fixture(scope="module")
def onnx_sess():
    rng = np.random.default_rng(0)
    model, _ = rnn_model("LSTM", I=3, H=5, D=1, T=6, B=2, rng=rng, attrs={},
                         inputs=("X", "sequence_lens", "initial_h", "initial_c"))
    return model, engine.Session(model.SerializeToString())


def x_of(T=5, B=2, I=4, seed=0):
    return np.random.default_rng(seed).standard_normal((T, B, I)).astype(np.float32)


def test_describes_inputs_and_outputs_like_onnxruntime(torch_sess, onnx_sess):
    _, sess = torch_sess
    ins, outs = sess.get_inputs(), sess.get_outputs()
    assert [(i.name, i.shape, i.type) for i in ins] == [
        ("input", ["T", "B", 4], "tensor(float)"), ("h0", [2, "B", 6], "tensor(float)"),
        ("c0", [2, "B", 6], "tensor(float)")]
    assert [o.name for o in outs] == ["output", "h_n", "c_n"]
    model, osess = onnx_sess
    ref = ort_session(model)
    assert [i.name for i in osess.get_inputs()] == [i.name for i in ref.get_inputs()]
    assert [o.name for o in osess.get_outputs()] == [o.name for o in ref.get_outputs()]
    assert [i.type for i in osess.get_inputs()] == [i.type for i in ref.get_inputs()]


def test_run_all_and_selected_outputs(torch_sess):
    m, sess = torch_sess
    x = x_of()
    y, h, c = sess.run(None, {"input": x})
    (h2,) = sess.run(["h_n"], {"input": x})
    c3, y3 = sess.run(["c_n", "output"], {"input": x})
    assert np.array_equal(h, h2) and np.array_equal(c, c3) and np.array_equal(y, y3)
    with torch.no_grad():
        ref = m(torch.from_numpy(x))
    assert max_abs_diff(y, ref[0].numpy()) <= 1e-5


def test_float64_input_is_converted_for_a_float32_model(torch_sess):
    _, sess = torch_sess
    x = x_of()
    a = sess.run(None, {"input": x})[0]
    b = sess.run(None, {"input": x.astype(np.float64)})[0]
    assert b.dtype == np.float32 and max_abs_diff(a, b) == 0.0


def test_non_contiguous_and_read_only_inputs_work(torch_sess):
    _, sess = torch_sess
    x = x_of(B=4)
    ref = sess.run(None, {"input": np.ascontiguousarray(x[:, ::2])})[0]
    assert np.array_equal(sess.run(None, {"input": x[:, ::2]})[0], ref)       # a strided view
    ro = np.ascontiguousarray(x[:, ::2])
    ro.flags.writeable = False
    assert np.array_equal(sess.run(None, {"input": ro})[0], ref)
    assert np.array_equal(sess.run(None, {"input": ro.tolist()})[0], ref)       # nested lists


BAD = [
    ("wrong rank", {"input": np.zeros((5, 4), np.float32)}, "rank 3"),
    ("wrong feature size", {"input": np.zeros((5, 2, 3), np.float32)}, "dimension 2 must be 4"),
    ("int input", {"input": np.zeros((5, 2, 4), np.int64)}, "must be a float array"),
    ("bool input", {"input": np.zeros((5, 2, 4), bool)}, "must be a float array"),
    ("strings", {"input": np.array([["a"]])}, "must be a float array"),
    ("missing input", {}, "missing required input 'input'"),
    ("unknown input", {"input": np.zeros((5, 2, 4), np.float32), "hidden": np.zeros(3)}, "unknown input"),
    ("inconsistent batch", {"input": np.zeros((5, 2, 4), np.float32), "h0": np.zeros((2, 3, 6), np.float32)},
     "'B'"),
    ("wrong state size", {"input": np.zeros((5, 2, 4), np.float32), "h0": np.zeros((2, 2, 7), np.float32)},
     "dimension 2 must be 6"),
    ("empty batch", {"input": np.zeros((5, 0, 4), np.float32)}, "empty dimension"),
    ("empty sequence", {"input": np.zeros((0, 2, 4), np.float32)}, "empty dimension"),
]


@pytest.mark.parametrize("name,feed,message", BAD, ids=[b[0] for b in BAD])
def test_bad_inputs_are_clear_errors(torch_sess, name, feed, message):
    _, sess = torch_sess
    with pytest.raises(InvalidInputError, match=message):
        sess.run(None, feed)


def test_bad_calls(torch_sess):
    _, sess = torch_sess
    with pytest.raises(InvalidInputError, match="unknown output 'nope'"):
        sess.run(["nope"], {"input": x_of()})
    with pytest.raises(InvalidInputError, match="dict"):
        sess.run(None, [x_of()])
    with pytest.raises(InvalidInputError, match="not a string"):
        sess.run("output", {"input": x_of()})
    with pytest.raises(EngineError, match="threads"):
        engine.Session(sess.model, threads=0)
    with pytest.raises(EngineError, match="precision"):
        engine.Session(sess.model, precision="float16")


def test_sequence_lens_out_of_range_is_refused(onnx_sess):
    model, sess = onnx_sess
    x = np.zeros((6, 2, 3), np.float32)
    st = np.zeros((1, 2, 5), np.float32)
    for lens in ([7, 1], [-1, 3]):
        with pytest.raises(InvalidInputError, match="sequence_lens"):
            sess.run(None, {"X": x, "sequence_lens": np.array(lens, np.int32), "initial_h": st, "initial_c": st})
    with pytest.raises(InvalidInputError, match="int32 range"):
        sess.run(None, {"X": x, "sequence_lens": np.array([2 ** 40, 1]), "initial_h": st, "initial_c": st})
    with pytest.raises(InvalidInputError, match="integer"):
        sess.run(None, {"X": x, "sequence_lens": np.array([1.5, 2.0]), "initial_h": st, "initial_c": st})
    y = sess.run(None, {"X": x + 1, "sequence_lens": np.array([6, 3], np.int64), "initial_h": st, "initial_c": st})
    ref = ort_session(model).run(None, {"X": x + 1, "sequence_lens": np.array([6, 3], np.int32), "initial_h": st,
                                        "initial_c": st})
    assert all(max_abs_diff(a, b) <= 1e-5 for a, b in zip(y, ref))
    assert not y[0][3:, 0, 1].any()          # padding past the end of a sequence is zero


def test_nan_and_inf_inputs_propagate(torch_sess):
    _, sess = torch_sess
    x = x_of()
    x[1, 0, 0] = np.nan
    x[2, 1, 1] = -np.inf
    y, h, c = sess.run(None, {"input": x})
    assert np.isnan(y[1:, 0]).all() and np.isfinite(y[:, 1]).all()


def test_threads_and_precision(torch_sess):
    m, sess = torch_sess
    x = x_of(T=40, B=3)
    one = engine.Session(sess.model, threads=1).run(None, {"input": x})
    two = engine.Session(sess.model, threads=2).run(None, {"input": x})
    assert all(max_abs_diff(a, b) <= 1e-6 for a, b in zip(one, two))
    s64 = engine.Session(sess.model, precision="float64")
    assert s64.get_inputs()[0].type == "tensor(double)"
    y64 = s64.run(None, {"input": x.astype(np.float64)})
    md = m.double()
    with torch.no_grad():
        ref = md(torch.from_numpy(x.astype(np.float64)))
    assert y64[0].dtype == np.float64 and max_abs_diff(y64[0], ref[0].numpy()) <= 1e-12
    m.float()


def test_compilation_happens_in_the_constructor(torch_sess):
    _, sess = torch_sess
    assert sess.compile_seconds >= 0
    if sess.runtime == "jit":
        from engine.executor import execute
        assert execute.signatures, "compiled (or loaded from the cache) before the first run"


def test_sessions_are_usable_from_several_threads(torch_sess):
    from concurrent.futures import ThreadPoolExecutor
    _, sess = torch_sess
    xs = [x_of(seed=i) for i in range(8)]
    expected = [sess.run(None, {"input": x})[0] for x in xs]
    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(lambda x: sess.run(None, {"input": x})[0], xs))
    assert all(np.array_equal(a, b) for a, b in zip(got, expected))
