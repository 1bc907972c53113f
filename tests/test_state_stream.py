"""Streams of models whose state is an input/output pair (engine/state_stream.py), on a model built here: an LSTM
whose h and c are graph inputs and hn, cn outputs, each call one chunk. Stepping (the fast path that calls the
executor itself after the first step) equals chaining Session.run with the state passed in and out, also across
state assignment, reset, a change of chunk length and a float64 step (the checked path). And Session.run's own fast
path (a repeated shape) on the same model."""
import numpy as np
import pytest

import engine

I, H = 5, 7
rng = np.random.default_rng(21)


def state_pair_model():
    W = (rng.standard_normal((1, 4 * H, I)) * 0.4).astype(np.float32)
    R = (rng.standard_normal((1, 4 * H, H)) * 0.4).astype(np.float32)
    B = (rng.standard_normal((1, 8 * H)) * 0.2).astype(np.float32)
    attrs = {"hidden_size": H, "direction": "forward", "layout": 0, "clip": None, "input_forget": 0, "proj_size": 0,
             "activations": [["Sigmoid", 0.0, 0.0], ["Tanh", 0.0, 0.0], ["Tanh", 0.0, 0.0]]}
    node = engine.Node("LSTM", "lstm", ["x", "W", "R", "B", "", "h", "c"], ["y", "hn", "cn"], attrs)
    return engine.Model(
        inputs=[engine.TensorSpec("x", ["T", 1, I], "float32"), engine.TensorSpec("h", [1, 1, H], "float32"),
                engine.TensorSpec("c", [1, 1, H], "float32")],
        outputs=[engine.TensorSpec("y", ["T", 1, 1, H], "float32"), engine.TensorSpec("hn", [1, 1, H], "float32"),
                 engine.TensorSpec("cn", [1, 1, H], "float32")],
        nodes=[node], tensors={"W": W, "R": R, "B": B}, dtype="float32", origin={"source": "tests"},
        stream={"input": "x", "time_axis": None, "batch_axis": None, "outputs": {"y": None, "hn": None, "cn": None},
                "state": [["h", "hn"], ["c", "cn"]]}).validate()


def test_steps_equal_run_with_the_state_passed():
    sess = engine.Session(state_pair_model(), threads=1)
    stream = sess.stream()
    h, c = np.zeros((1, 1, H), np.float32), np.zeros((1, 1, H), np.float32)
    for k, T in enumerate([3, 3, 3, 1, 4, 4, 3]):           # repeated shapes take the fast path
        x = rng.standard_normal((T, 1, I)).astype(np.float32)
        if k == 5:
            x = x.astype(np.float64)                          # another dtype: the checked path, the same result
        y = stream.step(x)
        y_ref, h, c = sess.run(None, {"x": x.astype(np.float32), "h": h, "c": c})
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(stream.state["h"], h)
        np.testing.assert_array_equal(stream.state["c"], c)
    assert stream._fast, "the repeated chunk shapes did not take the fast path"


def test_state_assignment_and_reset_reach_the_fast_path():
    sess = engine.Session(state_pair_model(), threads=1)
    stream = sess.stream()
    x = rng.standard_normal((2, 1, I)).astype(np.float32)
    stream.step(x)
    stream.step(x)
    h = rng.standard_normal((1, 1, H)).astype(np.float32)
    c = rng.standard_normal((1, 1, H)).astype(np.float32)
    stream.state = {"h": h, "c": c}
    y = stream.step(x)
    np.testing.assert_array_equal(y, sess.run(["y"], {"x": x, "h": h, "c": c})[0])
    stream.reset()
    y = stream.step(x)
    zeros = np.zeros((1, 1, H), np.float32)
    np.testing.assert_array_equal(y, sess.run(["y"], {"x": x, "h": zeros, "c": zeros})[0])


def test_the_state_returned_is_not_overwritten_by_later_steps():
    sess = engine.Session(state_pair_model(), threads=1)
    stream = sess.stream()
    x = rng.standard_normal((2, 1, I)).astype(np.float32)
    ys = [stream.step(x) for _ in range(3)]
    kept = [y.copy() for y in ys]
    for _ in range(3):
        stream.step(x)
    for y, k in zip(ys, kept):
        np.testing.assert_array_equal(y, k)


def test_a_wrong_step_is_refused_on_every_path():
    stream = engine.Session(state_pair_model(), threads=1).stream()
    stream.step(rng.standard_normal((2, 1, I)).astype(np.float32))
    with pytest.raises(engine.InvalidInputError):
        stream.step(np.zeros((2, 1, I + 1), np.float32))
    with pytest.raises(engine.InvalidInputError):
        stream.step(np.zeros((2, 1, I), np.int64))


def test_runtime_direct_is_the_compiled_entry_point_only_for_exact_types():
    sess = engine.Session(state_pair_model(), threads=1)
    stream = sess.stream()
    x = rng.standard_normal((2, 1, I)).astype(np.float32)
    stream.step(x)
    run = stream._fast[(x.shape, "y")][0]
    if sess.runtime != "jit":
        assert run is sess._run
        return
    assert run is not sess._run                       # the entry point: no type dispatch
    args = [np.zeros(3, np.int64)] + [np.zeros(3, np.float32)] * 4 + [np.zeros(1, np.int64),
                                                                     np.zeros(3, np.float32), np.zeros(1, np.int64),
                                                                     np.zeros(3, np.float32), np.zeros(2, np.float32)]
    assert sess._runtime.direct(sess._run, args) is not sess._run
    args[1] = np.zeros(3, np.float64)                 # types never called with: the dispatcher itself
    assert sess._runtime.direct(sess._run, args) is sess._run
    args[1] = np.zeros(6, np.float32)[::2]            # not contiguous
    assert sess._runtime.direct(sess._run, args) is sess._run


def test_runtime_bind_is_the_bound_entry_point_only_for_fixed_contiguous_arrays():
    """Runtime.bind (a stream's step and run's fast path): the compiled execute_bound with the addresses and lengths
    of prog, fconst, fwork, iwork and state, for fixed arrays that are C-contiguous, writable and 1-D and call types
    already compiled; None otherwise, and always with the AOT runtime (the callers then pass all ten arrays)."""
    sess = engine.Session(state_pair_model(), threads=1)
    rt = sess._runtime
    prog = np.array([2, 2], np.int64)                 # no instructions
    fixed = [prog, np.zeros(4, np.float32), np.zeros(4, np.float32), np.zeros(2, np.int64), np.zeros(1, np.float32)]
    example = (np.zeros(1, np.float32),) * 3 + (np.zeros(1, np.int64), np.zeros(1, np.float32))
    bound = rt.bind(sess.precision, *fixed, example)
    if sess.runtime != "jit":
        assert bound is None
        return
    call, at = bound
    assert list(at[0::2]) == [a.ctypes.data for a in fixed] and list(at[1::2]) == [2, 4, 4, 2, 1]
    assert call(at, *example) == 0
    readonly = np.zeros(4, np.float32)
    readonly.flags.writeable = False
    assert rt.bind(sess.precision, prog, readonly, *fixed[2:], example) is None
    assert rt.bind(sess.precision, prog, np.zeros(8, np.float32)[::2], *fixed[2:], example) is None
    assert rt.bind(sess.precision, prog, np.zeros((2, 2), np.float32), *fixed[2:], example) is None
    assert rt.bind(sess.precision, *fixed, (np.zeros(1, np.float16),) + example[1:]) is None   # never compiled
    assert rt.bind(sess.precision, prog, np.zeros(4, np.float64), *fixed[2:], example) is None   # read as float32
    assert rt.bind(sess.precision, *fixed[:3], np.zeros(2, np.int32), fixed[4], example) is None


def test_runs_fast_path_binds_a_work_pair_of_its_own_only_for_small_calls():
    """run's fast path binds its own work pair (Runtime.bind) while the work is at most BIND_MAX_WORK_BYTES; a
    larger call's work stays in the plan's pool, reused call after call, whichever runner takes it. The results
    are the checked path's either way."""
    from engine.session import BIND_MAX_WORK_BYTES
    sess = engine.Session(state_pair_model(), threads=1)
    h, c = np.zeros((1, 1, H), np.float32), np.zeros((1, 1, H), np.float32)
    for T in (1, 4000):
        feed = {"x": rng.standard_normal((T, 1, I)).astype(np.float32), "h": h, "c": c}
        first = sess.run(None, feed)                   # the checked path, which arms the fast one
        again = sess.run(None, feed)                   # the fast path
        for a, b in zip(first, again):
            assert np.array_equal(a, b)
        plan = sess._fast_run.plan
        small = plan.fwork_size * 4 + plan.iwork_size * 8 <= BIND_MAX_WORK_BYTES
        assert small == (T == 1)
        assert ("call" in sess._fast_run.__globals__) == (small and sess.runtime == "jit")
        if not small:
            assert len(plan._pool) == 1                 # the one pair, back in the pool after each call


def test_runs_repeating_a_shape_equal_the_first_whatever_the_arrays_layout():
    """Session.run's fast path (a repeated shape: the executor called directly) gives the checked path's results,
    for float64, non-contiguous and read-only inputs too (converted as the checked path converts them)."""
    sess = engine.Session(state_pair_model(), threads=1)
    x = rng.standard_normal((3, 1, I)).astype(np.float32)
    h = rng.standard_normal((1, 1, H)).astype(np.float32)
    c = rng.standard_normal((1, 1, H)).astype(np.float32)
    want = sess.run(None, {"x": x, "h": h, "c": c})
    frozen = x.copy()
    frozen.setflags(write=False)
    strided = np.repeat(x, 2, axis=2)[:, :, ::2]
    for feed in ({"x": x, "h": h, "c": c}, {"x": x.astype(np.float64), "h": h, "c": c},
                 {"x": strided, "h": h, "c": c}, {"x": frozen, "h": h, "c": c}, {"x": x, "h": h, "c": c}):
        got = sess.run(None, feed)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
    before = [g.copy() for g in got]
    sess.run(None, {"x": x * 2, "h": h, "c": c})
    for g, b in zip(got, before):                     # a later call does not write into returned arrays
        np.testing.assert_array_equal(g, b)
