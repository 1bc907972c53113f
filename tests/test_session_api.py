"""The Session API (onnxruntime's shape) and every kind of bad input, each a clear InvalidInputError.

The models are built directly with engine.Model (tests/built_models.py) and checked against tests/naive.py, so that
this file needs neither torch nor onnxruntime; one slow test compares the description with onnxruntime's.
"""
import numpy as np
import pytest

import engine
from built_models import recurrent_model
from engine.errors import EngineError, InvalidInputError


def max_abs_diff(a, b):
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


@pytest.fixture(scope="module")
def bidirectional():
    """X (T, B, 4), optional initial_h / initial_c (2, B, 6) -> Y (T, 2, B, 6), Y_h, Y_c."""
    model, reference = recurrent_model("LSTM", I=4, H=6, direction="bidirectional")
    return engine.Session(model), reference


@pytest.fixture(scope="module")
def with_lens():
    """X (T, B, 3), sequence_lens (B,) int32, optional initial_h / initial_c (1, B, 5)."""
    model, reference = recurrent_model("LSTM", I=3, H=5, sequence_lens=True, seed=1)
    return engine.Session(model), reference


def x_of(T=5, B=2, I=4, seed=0):
    return np.random.default_rng(seed).standard_normal((T, B, I)).astype(np.float32)


def test_describes_inputs_and_outputs_like_onnxruntime(bidirectional, with_lens):
    sess, _ = bidirectional
    assert [(i.name, i.shape, i.type) for i in sess.get_inputs()] == [
        ("X", ["T", "B", 4], "tensor(float)"), ("initial_h", [2, "B", 6], "tensor(float)"),
        ("initial_c", [2, "B", 6], "tensor(float)")]
    assert [(o.name, o.shape, o.type) for o in sess.get_outputs()] == [
        ("Y", ["T", 2, "B", 6], "tensor(float)"), ("Y_h", [2, "B", 6], "tensor(float)"),
        ("Y_c", [2, "B", 6], "tensor(float)")]
    assert [i.type for i in with_lens[0].get_inputs()][:2] == ["tensor(float)", "tensor(int32)"]


@pytest.mark.slow
def test_describes_an_onnx_model_as_onnxruntime_does():
    from lstm_util import ort_session, rnn_model
    model, _ = rnn_model("LSTM", I=3, H=5, D=1, T=6, B=2, rng=np.random.default_rng(0), attrs={},
                         inputs=("X", "sequence_lens", "initial_h", "initial_c"))
    sess, ref = engine.Session(model.SerializeToString()), ort_session(model)
    assert [i.name for i in sess.get_inputs()] == [i.name for i in ref.get_inputs()]
    assert [o.name for o in sess.get_outputs()] == [o.name for o in ref.get_outputs()]
    assert [i.type for i in sess.get_inputs()] == [i.type for i in ref.get_inputs()]


def test_run_all_and_selected_outputs(bidirectional):
    sess, reference = bidirectional
    x = x_of()
    y, h, c = sess.run(None, {"X": x})
    (h2,) = sess.run(["Y_h"], {"X": x})
    c3, y3 = sess.run(["Y_c", "Y"], {"X": x})
    assert np.array_equal(h, h2) and np.array_equal(c, c3) and np.array_equal(y, y3)
    assert all(max_abs_diff(a, b) <= 1e-5 for a, b in zip((y, h, c), reference({"X": x})))
    st = np.random.default_rng(1).standard_normal((2, 2, 6)).astype(np.float32)
    got = sess.run(None, {"X": x, "initial_h": st, "initial_c": -st})
    assert all(max_abs_diff(a, b) <= 1e-5 for a, b in zip(got, reference({"X": x, "initial_h": st,
                                                                           "initial_c": -st})))


def test_repeated_runs_with_optional_inputs_left_out_take_the_fast_path(bidirectional):
    """A feed that leaves out the optional initial state, repeated, is served by run's fast path (made once, not
    per call: making it costs ~70 us), with the checked path's results; adding the state, or leaving it out again,
    switches paths with the right results each time."""
    model, reference = recurrent_model("LSTM", I=4, H=6, direction="bidirectional")
    sess = engine.Session(model)
    x = x_of()
    st = np.random.default_rng(1).standard_normal((2, 2, 6)).astype(np.float32)
    first = sess.run(None, {"X": x})
    kept = [a.copy() for a in first]
    fast = sess._fast_run
    assert fast is not None and fast.given == (True, False, False)
    read_only = x.copy()
    read_only.flags.writeable = False
    for variant in (x, x, x.astype(np.float64), np.asfortranarray(x), read_only):   # converted where needed
        again = sess.run(None, {"X": variant})
        assert sess._fast_run is fast
        assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert all(max_abs_diff(a, b) <= 1e-5 for a, b in zip(first, reference({"X": x})))
    for feed in ({"X": x, "initial_h": st}, {"X": x, "initial_h": st, "initial_c": -st}, {"X": x},
                 {"X": x, "initial_c": st}):
        for _ in range(2):
            got = sess.run(None, feed)
            assert all(max_abs_diff(a, b) <= 1e-5 for a, b in zip(got, reference(feed))), list(feed)
    assert sess._fast_run.given == (True, False, True)
    assert all(np.array_equal(a, b) for a, b in zip(first, kept)), "a later call wrote into an earlier result"


def test_the_fast_path_checks_each_fed_input_as_it_binds_it(bidirectional):
    """With every input fed, run's fast path checks and binds the inputs in one pass: a feed of the same size with
    another name, a wrong shape or a non-float array in any position falls to the checked path and its clear
    error, and the fast path keeps serving good feeds."""
    model, reference = recurrent_model("LSTM", I=4, H=6, direction="bidirectional")
    sess = engine.Session(model)
    x = x_of()
    st = np.random.default_rng(2).standard_normal((2, 2, 6)).astype(np.float32)
    feed = {"X": x, "initial_h": st, "initial_c": -st}
    sess.run(None, feed)
    fast = sess._fast_run
    assert fast.given == (True, True, True)
    bad = [({"X": x, "initial_h": st, "hidden": st}, "unknown input"),
           ({"X": x, "initial_h": st, "initial_c": st[:, :1]}, "'B'"),
           ({"X": x, "initial_h": st.astype(np.int64), "initial_c": st}, "must be a float array"),
           ({"X": x[:, :, :3], "initial_h": st, "initial_c": st}, "dimension 2 must be 4")]
    for bad_feed, message in bad:
        with pytest.raises(InvalidInputError, match=message):
            sess.run(None, bad_feed)
    got = sess.run(None, feed)
    assert sess._fast_run is fast
    assert all(max_abs_diff(a, b) <= 1e-5 for a, b in zip(got, reference(feed)))
    swapped = sess.run(None, {"initial_c": -st, "X": x, "initial_h": st})       # any order of the keys
    assert all(np.array_equal(a, b) for a, b in zip(got, swapped))


def test_float64_input_is_converted_for_a_float32_model(bidirectional):
    sess, _ = bidirectional
    x = x_of()
    a = sess.run(None, {"X": x})[0]
    b = sess.run(None, {"X": x.astype(np.float64)})[0]
    assert b.dtype == np.float32 and max_abs_diff(a, b) == 0.0


def test_non_contiguous_and_read_only_inputs_work(bidirectional):
    sess, _ = bidirectional
    x = x_of(B=4)
    ref = sess.run(None, {"X": np.ascontiguousarray(x[:, ::2])})[0]
    assert np.array_equal(sess.run(None, {"X": x[:, ::2]})[0], ref)       # a strided view
    ro = np.ascontiguousarray(x[:, ::2])
    ro.flags.writeable = False
    assert np.array_equal(sess.run(None, {"X": ro})[0], ref)
    assert np.array_equal(sess.run(None, {"X": ro.tolist()})[0], ref)       # nested lists


BAD = [
    ("wrong rank", {"X": np.zeros((5, 4), np.float32)}, "rank 3"),
    ("wrong feature size", {"X": np.zeros((5, 2, 3), np.float32)}, "dimension 2 must be 4"),
    ("int input", {"X": np.zeros((5, 2, 4), np.int64)}, "must be a float array"),
    ("bool input", {"X": np.zeros((5, 2, 4), bool)}, "must be a float array"),
    ("strings", {"X": np.array([["a"]])}, "must be a float array"),
    ("missing input", {}, "missing required input 'X'"),
    ("unknown input", {"X": np.zeros((5, 2, 4), np.float32), "hidden": np.zeros(3)}, "unknown input"),
    ("inconsistent batch", {"X": np.zeros((5, 2, 4), np.float32), "initial_h": np.zeros((2, 3, 6), np.float32)},
     "'B'"),
    ("wrong state size", {"X": np.zeros((5, 2, 4), np.float32), "initial_h": np.zeros((2, 2, 7), np.float32)},
     "dimension 2 must be 6"),
    ("empty batch", {"X": np.zeros((5, 0, 4), np.float32)}, "empty dimension"),
    ("empty sequence", {"X": np.zeros((0, 2, 4), np.float32)}, "empty dimension"),
]


@pytest.mark.parametrize("name,feed,message", BAD, ids=[b[0] for b in BAD])
def test_bad_inputs_are_clear_errors(bidirectional, name, feed, message):
    sess, _ = bidirectional
    with pytest.raises(InvalidInputError, match=message):
        sess.run(None, feed)


def test_bad_calls(bidirectional):
    sess, _ = bidirectional
    with pytest.raises(InvalidInputError, match="unknown output 'nope'"):
        sess.run(["nope"], {"X": x_of()})
    with pytest.raises(InvalidInputError, match="dict"):
        sess.run(None, [x_of()])
    with pytest.raises(InvalidInputError, match="not a string"):
        sess.run("Y", {"X": x_of()})
    with pytest.raises(EngineError, match="run_options"):
        sess.run(None, {"X": x_of()}, run_options={})
    with pytest.raises(EngineError, match="threads"):
        engine.Session(sess.model, threads=0)
    with pytest.raises(EngineError, match="precision"):
        engine.Session(sess.model, precision="float16")


def test_sequence_lens_out_of_range_is_refused(with_lens):
    sess, reference = with_lens
    x = np.zeros((6, 2, 3), np.float32)
    for lens in ([7, 1], [-1, 3]):
        with pytest.raises(InvalidInputError, match="sequence_lens"):
            sess.run(None, {"X": x, "sequence_lens": np.array(lens, np.int32)})
    with pytest.raises(InvalidInputError, match="int32 range"):
        sess.run(None, {"X": x, "sequence_lens": np.array([2 ** 40, 1])})
    with pytest.raises(InvalidInputError, match="integer"):
        sess.run(None, {"X": x, "sequence_lens": np.array([1.5, 2.0])})
    with pytest.raises(InvalidInputError, match="missing required input 'sequence_lens'"):
        sess.run(None, {"X": x})
    feed = {"X": x + 1, "sequence_lens": np.array([6, 3], np.int64)}
    y = sess.run(None, feed)
    assert all(max_abs_diff(a, b) <= 1e-5 for a, b in zip(y, reference(feed)))
    assert not y[0][3:, 0, 1].any()          # padding past the end of a sequence is zero


def test_nan_and_inf_inputs_propagate(bidirectional):
    sess, reference = bidirectional
    x = x_of()
    x[1, 0, 0] = np.nan
    x[2, 1, 1] = -np.inf
    y, h, c = sess.run(None, {"X": x})
    assert np.isnan(y[1:, 0, 0]).all() and np.isnan(y[:2, 1, 0]).all()    # forward from step 1, reverse up to it
    assert np.isfinite(y[:, :, 1]).all()                                   # -inf saturates the gates
    ref = reference({"X": x})
    for got, want in zip((y, h, c), ref):
        assert np.array_equal(np.isnan(got), np.isnan(want))
        finite = np.isfinite(want)
        assert np.abs(got[finite] - want[finite]).max() <= 1e-5


def test_threads_and_precision(bidirectional):
    sess, reference = bidirectional
    x = x_of(T=40, B=3)
    one = engine.Session(sess.model, threads=1).run(None, {"X": x})
    two = engine.Session(sess.model, threads=2).run(None, {"X": x})
    assert all(max_abs_diff(a, b) <= 1e-6 for a, b in zip(one, two))
    s64 = engine.Session(sess.model, precision="float64")
    assert s64.get_inputs()[0].type == "tensor(double)"
    y64 = s64.run(None, {"X": x.astype(np.float64)})
    assert all(a.dtype == np.float64 for a in y64)
    assert all(max_abs_diff(a, b) <= 1e-12 for a, b in zip(y64, reference({"X": x})))


def test_executor_is_ready_after_the_constructor(bidirectional):
    sess, _ = bidirectional
    assert sess.compile_seconds >= 0 and sess.load_seconds >= 0
    if sess.runtime == "jit":
        from engine.executor import execute
        assert execute.signatures, "compiled (or loaded from the cache) before the first run"


def test_sessions_are_usable_from_several_threads(bidirectional):
    from concurrent.futures import ThreadPoolExecutor
    sess, _ = bidirectional
    xs = [x_of(seed=i) for i in range(8)]
    expected = [sess.run(None, {"X": x})[0] for x in xs]
    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(lambda x: sess.run(None, {"X": x})[0], xs))
    assert all(np.array_equal(a, b) for a, b in zip(got, expected))


@pytest.mark.parametrize("op,kw", [("GRU", {"direction": "bidirectional", "sequence_lens": True}),
                                   ("GRU", {"linear_before_reset": 1, "clip": 0.8}),
                                   ("RNN", {"direction": "reverse", "sequence_lens": True})],
                         ids=["gru-bidirectional-lens", "gru-lbr-clip", "rnn-reverse-lens"])
def test_gru_and_rnn_sessions(op, kw):
    model, reference = recurrent_model(op, I=3, H=5, seed=2, **kw)
    sess = engine.Session(model)
    feed = {"X": x_of(T=7, B=3, I=3), "initial_h": x_of(T=model.inputs[-1].shape[0], B=3, I=5, seed=3)}
    if kw.get("sequence_lens"):
        feed["sequence_lens"] = np.array([7, 0, 4], np.int32)
    got = sess.run(None, feed)
    assert [o.name for o in sess.get_outputs()] == ["Y", "Y_h"]
    assert all(max_abs_diff(a, b) <= 1e-5 for a, b in zip(got, reference(feed)))


def test_stream_steps_match_one_run(bidirectional):
    model, _ = recurrent_model("LSTM", I=4, H=6, seed=4)
    sess = engine.Session(model)
    x = x_of(T=6, B=2)
    y, h, c = sess.run(None, {"X": x})
    stream = sess.stream(batch_size=2)
    steps = [stream.step(x[t]) for t in range(6)]
    assert max_abs_diff(np.stack(steps), y) <= 1e-6
    assert max_abs_diff(stream.state["lstm/h"], h) <= 1e-6 and max_abs_diff(stream.state["lstm/c"], c) <= 1e-6
    with pytest.raises(engine.UnsupportedModelError, match="cannot be streamed"):
        bidirectional[0].stream()


def test_a_session_lets_go_of_the_weights_it_loaded(bidirectional, tmp_path):
    owner, _ = bidirectional
    engine.save(owner.model, tmp_path / "m.lstm")
    sess = engine.Session(tmp_path / "m.lstm")
    x = x_of()
    assert all(np.array_equal(a, b) for a, b in zip(sess.run(None, {"X": x}), owner.run(None, {"X": x})))
    assert sess.model.released and all(t.strides == (0,) * t.ndim for t in sess.model.tensors.values()
                                       if t.dtype.kind == "f")
    with pytest.raises(EngineError, match="released"):
        engine.Session(sess.model)
    assert not owner.model.released          # a Model passed in is the caller's, left whole


@pytest.mark.parametrize("H", [6, 16])
def test_run_step_by_step_with_the_state_in_and_out_equals_the_sequence(H):
    """One step per run with the state fed back (a service's streaming loop): run's fast path hands the outputs out
    as rows of one buffer when they are of one size and fill it (H=16: Y (1, 1, 2, 16), Y_h and Y_c (1, 2, 16);
    at H=6 each is padded to 16 floats, and they are views at their offsets); each has its own shape and memory,
    results stay as they were, and the steps equal one run over the sequence."""
    from engine.session import _output_rows
    model, reference = recurrent_model("LSTM", I=4, H=H)
    sess = engine.Session(model)
    x = x_of(T=7)
    want = reference({"X": x})
    h = c = np.zeros((1, 2, H), np.float32)
    ys, kept = [], []
    for t in range(7):
        y, h, c = sess.run(None, {"X": x[t:t + 1], "initial_h": h, "initial_c": c})
        assert (y.shape, h.shape, c.shape) == ((1, 1, 2, H), (1, 2, H), (1, 2, H))
        assert not (np.shares_memory(y, h) or np.shares_memory(h, c) or np.shares_memory(y, c))
        ys.append(y)
        kept.append(y.copy())
    plan = sess._fast_run.plan
    assert (_output_rows(plan.out_views, plan.fout_size) is not None) == (H == 16)
    assert all(np.array_equal(a, b) for a, b in zip(ys, kept)), "a later step wrote into an earlier result"
    assert max_abs_diff(np.concatenate(ys), want[0]) <= 1e-5
    assert max_abs_diff(h, want[1]) <= 1e-5 and max_abs_diff(c, want[2]) <= 1e-5


def test_output_rows_only_for_outputs_of_one_size_that_tile_the_buffer():
    from engine.session import _output_rows
    shape, reshape, get = _output_rows([(8, 12, (1, 4)), (0, 4, (4,)), (4, 8, (1, 4))], 12)
    assert shape == (3, 1, 4) and reshape == ((1, (4,)),)
    assert get(np.arange(12).reshape(shape))[0].tolist() == [[8, 9, 10, 11]]
    assert _output_rows([(0, 4, (4,))], 4) is None                              # one output: a plain view
    assert _output_rows([(0, 4, (4,)), (4, 10, (6,))], 10) is None              # sizes differ
    assert _output_rows([(0, 4, (4,)), (6, 10, (4,))], 10) is None              # a gap
    assert _output_rows([(0, 4, (4,)), (2, 6, (4,))], 8) is None                # unaligned
    assert _output_rows([(0, 4, (4,)), (0, 4, (4,))], 8) is None                # the same row twice
    assert _output_rows([(0, 0, (0,)), (0, 0, (0,))], 0) is None                # empty


@pytest.mark.parametrize("shapes, message", [
    ({"X": np.zeros((5, 2, 4), np.float32)}, r"is an array: program\(\) takes shapes, e.g. \{'X': \(5, 2, 4\)\}"),
    ({"nope": (5, 2, 4)}, "unknown input 'nope'"),
    ({"X": (5, 2)}, "must be a tuple of 3 non-negative ints"),
    ({"X": (5, -2, 4)}, "must be a tuple of 3 non-negative ints"),
    ({"X": (5, 2.0, 4)}, "must be a tuple of 3 non-negative ints"),
    ({"X": "5,2,4"}, "must be a tuple of 3 non-negative ints"),
    ([("X", (5, 2, 4))], "must be a dict"),
])
def test_program_refuses_what_is_not_shapes(bidirectional, shapes, message):
    sess, _ = bidirectional
    with pytest.raises(InvalidInputError, match=message):
        sess.program(shapes)
    assert "lstm" in sess.program({"X": (5, 2, 4)}) and "lstm" in sess.program({"X": [5, np.int64(2), 4]})


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_the_buffers_the_kernels_read_start_on_a_64_byte_boundary(dtype):
    """engine._memory.aligned_empty, under the packed weights and every work buffer (numpy promises 16 bytes, and
    its larger buffers start 16 or 48 bytes past a boundary): whatever the allocator's state, n elements, writable."""
    from engine import _memory
    keep = [np.empty(n, np.uint8) for n in (1, 17, 4100, 70000)]      # the allocator in some other state
    for n in (1, 3, 16, 1000, 5000, 60000, 300000):
        a = _memory.aligned_empty(n, dtype)
        assert a.ctypes.data % 64 == 0 and a.shape == (n,) and a.dtype == dtype and a.flags.writeable
    del keep
    model, _ = recurrent_model("LSTM", I=4, H=6)
    sess = engine.Session(model, precision="float64" if dtype == np.float64 else None)
    assert sess._fconst.ctypes.data % 64 == 0
    feed = {"X": np.zeros((3, 2, 4), np.float32)}
    sess.run(None, feed)
    for plan in sess._plans.values():
        fwork, iwork = plan.take_work(sess.dtype)
        assert fwork.ctypes.data % 64 == 0 and iwork.ctypes.data % 64 == 0
        assert fwork.dtype == sess.dtype and fwork.size >= plan.fwork_size and iwork.size >= plan.iwork_size
