"""onnx's backend conformance node tests for the recurrent ops - LSTM (``test_lstm_*``), GRU (``test_gru_*``) and
RNN (``test_rnn_*``, ``test_simple_rnn_*``) - run through the engine as an onnx backend.

The cases come from onnx's own generators (``onnx.backend.test.case.node.collect_testcases``), each with its
inputs, expected outputs and tolerances. The pip wheel of onnx ships without the ``data/node`` directories that
``onnx.backend.test.runner.Runner`` loads, so the Runner would find no node tests at all; the generators are what
those directories are written from. The comparison is the Runner's own (``assert_similar_outputs``: count, shape,
dtype, then rtol/atol), plus the project's fp32 bound: the largest absolute difference below 1e-5.

The cases feed the weights W, R, B (and P) as graph inputs at run time. Each case runs three times: through
``onnx_backend`` as it is (``converters.from_onnx``, one Session, every input fed: the weights are packed on the
call), as serialized ONNX bytes given straight to ``engine.Session`` (its own in-memory conversion), and with the
weights bound into initializers first (the constant-weights path, packed at load), which must agree.

onnxruntime fails test_lstm_batchwise, test_gru_batchwise and test_simple_rnn_batchwise (it rejects layout=1); the
engine must pass every case.

``collect_testcases(op_type)`` only filters on its first call in a process (the generator modules run once, when
imported); later calls return the first call's list whatever op_type they ask for. So the cases are collected once,
for every op, and selected by name.
"""
import warnings

import numpy as np
import pytest
from onnx.backend.test.runner import Runner

import engine
import onnx_backend
from lstm_util import max_abs_diff, weights_to_initializers

pytestmark = pytest.mark.slow   # imports onnx's case generators; three Sessions per case

PREFIXES = ("test_lstm_", "test_gru_", "test_rnn_", "test_simple_rnn_")

# the cases onnx 1.23 generates for the three ops (LSTM's six since opset 14); a new one shows up as an extra
# parametrized item, a missing one fails test_every_known_case_is_collected
KNOWN = {
    "LSTM": {"test_lstm_defaults", "test_lstm_with_initial_bias", "test_lstm_with_peepholes", "test_lstm_batchwise",
             "test_lstm_reverse", "test_lstm_bidirectional"},
    "GRU": {"test_gru_defaults", "test_gru_with_initial_bias", "test_gru_seq_length", "test_gru_batchwise",
            "test_gru_reverse", "test_gru_bidirectional"},
    "RNN": {"test_simple_rnn_defaults", "test_simple_rnn_with_initial_bias", "test_rnn_seq_length",
            "test_simple_rnn_batchwise", "test_simple_rnn_reverse", "test_simple_rnn_bidirectional"},
}


def recurrent_cases():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # the generators warn about unrelated ops' deprecated helpers
        from onnx.backend.test.case.node import collect_testcases
        cases = collect_testcases(None)
    seen = {}
    for c in cases:
        if c.name.startswith(PREFIXES) and c.name not in seen:
            seen[c.name] = c
    return [seen[k] for k in sorted(seen)]


CASES = recurrent_cases()


def test_every_known_case_is_collected():
    names = {c.name for c in CASES}
    for op, known in KNOWN.items():
        assert known <= names, f"{op} cases missing: {sorted(known - names)}"


def test_cases_are_the_op_they_are_named_for():
    op_of = {name: op for op, known in KNOWN.items() for name in known}
    for c in CASES:
        node_ops = [n.op_type for n in c.model.graph.node]
        assert node_ops == [op_of.get(c.name, node_ops[0])] and node_ops[0] in KNOWN, (c.name, node_ops)


def check_outputs(case, got, expected):
    expected = [np.asarray(e) for e in expected]
    Runner.assert_similar_outputs(expected, list(got), rtol=case.rtol, atol=case.atol, model_dir=case.name)
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        assert max_abs_diff(g, e) < 1e-5


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_conformance(case):
    assert case.data_sets, f"{case.name} has no data"
    rep = onnx_backend.prepare(case.model, "CPU")
    for inputs, expected in case.data_sets:
        got = rep.run([np.asarray(v) for v in inputs])
        check_outputs(case, got, expected)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_conformance_from_onnx_bytes(case):
    """The same case as ONNX bytes given to engine.Session directly (its own in-memory conversion)."""
    assert case.data_sets, f"{case.name} has no data"
    for inputs, expected in case.data_sets:
        feeds = {vi.name: np.asarray(v) for vi, v in zip(case.model.graph.input, inputs)}
        sess = engine.Session(case.model.SerializeToString())
        assert {"W", "R"} <= {i.name for i in sess.get_inputs()}      # the weights stay inputs
        got = sess.run([o.name for o in case.model.graph.output], feeds)
        check_outputs(case, got, expected)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_conformance_weights_as_initializers(case):
    """The same case with the fed weights bound into initializers: packed at load, the same results."""
    for inputs, expected in case.data_sets:
        feeds = {vi.name: np.asarray(v) for vi, v in zip(case.model.graph.input, inputs)}
        model, run_feeds = weights_to_initializers(case.model, feeds)
        sess = engine.Session(model.SerializeToString())
        assert "W" not in {i.name for i in sess.get_inputs()}
        constant = sess.run([o.name for o in case.model.graph.output], run_feeds)
        check_outputs(case, constant, expected)
        fed = engine.Session(case.model.SerializeToString()).run([o.name for o in case.model.graph.output], feeds)
        for a, b in zip(constant, fed):
            np.testing.assert_array_equal(a, b)
