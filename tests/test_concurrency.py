"""One Session shared by 8 threads: mixed ``run`` (several input shapes, so plans are made while others run),
``stream().step`` (single steps and chunks), ``reset``, and ``state`` read back and assigned, every result equal to
the one the same call gives when the calls run one after another. Each stream is used by one thread at a time.

The models: an LSTM with symbolic time and batch; a whole model (token ids -> embedding -> LSTM -> head) that also
returns an int output (its token ids, which the executor writes into the int work buffer); an LSTM with H=256 and
2 threads, which runs the recurrence in Numba parallel regions launched from every thread at once."""
import sys
import threading

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import engine
from lstm_util import rnn_model

THREADS = 8
ROUNDS = 3


def _whole_model_with_int_output(rng):
    """ids (T, B) -> Gather -> LSTM -> Squeeze -> MatMul -> Softmax, and ids_out = Identity(ids)."""
    V, E, H, K = 13, 6, 8, 5
    W = (rng.standard_normal((1, 4 * H, E)) * 0.4).astype(np.float32)
    R = (rng.standard_normal((1, 4 * H, H)) * 0.4).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in
             [(rng.standard_normal((V, E)).astype(np.float32), "emb"), (W, "W"), (R, "R"),
              (rng.standard_normal((H, K)).astype(np.float32), "head"), (np.array([1], np.int64), "axes")]]
    nodes = [helper.make_node("Gather", ["emb", "ids"], ["e"], axis=0),
             helper.make_node("LSTM", ["e", "W", "R"], ["y"], hidden_size=H),
             helper.make_node("Squeeze", ["y", "axes"], ["ys"]),
             helper.make_node("MatMul", ["ys", "head"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
             helper.make_node("Identity", ["ids"], ["ids_out"])]
    g = helper.make_graph(nodes, "whole", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["T", "B"])],
                          [helper.make_tensor_value_info("probs", TensorProto.FLOAT, None),
                           helper.make_tensor_value_info("ids_out", TensorProto.INT64, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _sessions():
    rng = np.random.default_rng(12)
    small, _ = rnn_model("LSTM", I=5, H=16, D=1, T="T", B="B", rng=rng, attrs={})
    large, _ = rnn_model("LSTM", I=8, H=256, D=1, T="T", B="B", rng=rng, attrs={}, weight_scale=0.1)
    return [("lstm", engine.Session(small.SerializeToString()),
             lambda T, B: rng.standard_normal((T, B, 5)).astype(np.float32)),
            ("whole", engine.Session(_whole_model_with_int_output(rng).SerializeToString()),
             lambda T, B: rng.integers(0, 13, (T, B)).astype(np.int64)),
            ("lstm-h256-2threads", engine.Session(large.SerializeToString(), threads=2),
             lambda T, B: rng.standard_normal((T, B, 8)).astype(np.float32))]


def _tasks(make, rng):
    """A list of jobs: ("run", x) or ("stream", B, x, chunks, reset_at, swap_at). Shapes vary so that plans are made
    concurrently; each stream job steps x (T, B, ...) in chunks, resets once and assigns a saved state once."""
    tasks = []
    for k in range(12):
        T, B = int(rng.integers(1, 9)), int(rng.integers(1, 4))
        tasks.append(("run", make(T, B)))
    for k in range(6):
        T, B = 10, int(rng.integers(1, 3))
        cuts = sorted(set(int(c) for c in rng.integers(1, T, 3)))
        tasks.append(("stream", B, make(T, B), [0] + cuts + [T], int(rng.integers(1, T)), int(rng.integers(1, T))))
    return tasks


def _do(sess, task):
    """Run one job; returns every array it produced, in order."""
    if task[0] == "run":
        return sess.run(None, {sess.get_inputs()[0].name: task[1]})
    _, B, x, bounds, reset_at, swap_at = task
    stream = sess.stream(B)
    out, saved = [], None
    for t in range(x.shape[0]):                       # single steps, a reset, a state saved and restored
        if t == reset_at:
            stream.reset()
        if t == swap_at:
            saved = stream.state
            stream.step(x[t])                         # a step taken and then undone by assigning the saved state
            stream.state = saved
        out.append(stream.step(x[t]))
    out += list(stream.state.values())
    stream.reset()
    for a, b in zip(bounds[:-1], bounds[1:]):         # chunks with their time axis
        out.append(stream.step(x[a:b]))
    return out


@pytest.fixture(scope="module")
def sessions():
    return _sessions()


@pytest.mark.parametrize("which", [0, 1, 2], ids=["lstm", "whole-model-int-output", "lstm-h256-parallel"])
def test_eight_threads_on_one_session_equal_the_serial_results(sessions, which):
    name, sess, make = sessions[which]
    rng = np.random.default_rng(which)
    per_thread = [_tasks(make, rng) for _ in range(THREADS)]
    expected = [[_do(sess, task) for task in tasks] for tasks in per_thread]
    failures = []
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)                       # switch threads often, to interleave as much as we can
    try:
        for _ in range(ROUNDS):
            barrier = threading.Barrier(THREADS)

            def worker(k):
                try:
                    barrier.wait()
                    order = np.random.default_rng(k).permutation(len(per_thread[k]))
                    for j in order:
                        got = _do(sess, per_thread[k][j])
                        want = expected[k][j]
                        if len(got) != len(want) or any(g.dtype != w.dtype or g.shape != w.shape or
                                                         not np.array_equal(g, w) for g, w in zip(got, want)):
                            failures.append((k, int(j), per_thread[k][j][0]))
                except Exception as e:        # noqa: BLE001 - reported below
                    failures.append((k, repr(e)))

            threads = [threading.Thread(target=worker, args=(k,)) for k in range(THREADS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    finally:
        sys.setswitchinterval(old)
    assert not failures, f"{name}: {len(failures)} results differ from the serial ones, e.g. {failures[:5]}"


def test_int_outputs_are_copied_before_the_work_buffers_go_back(sessions, monkeypatch):
    """Regression: int outputs live in the int work buffer; Session._execute used to give the buffers back to the
    plan's pool before copying them out, so another thread could overwrite them first. A pause after giving the
    buffers back makes that window wide enough to hit every time."""
    import time

    import engine.plan
    _, sess, _ = sessions[1]
    give = engine.plan.Plan.give_work

    def give_then_pause(self, pair):
        give(self, pair)
        time.sleep(0.002)

    monkeypatch.setattr(engine.plan.Plan, "give_work", give_then_pause)
    wrong = []

    def worker(k):
        ids = np.full((4, 2), k, np.int64)
        for _ in range(20):
            if not (sess.run(None, {"ids": ids})[1] == k).all():
                wrong.append(k)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong, f"{len(wrong)} int outputs came from another thread's call"
