"""The ONNX backend conformance node cases for LSTM, run on the engine.

The cases come from onnx's own generators (onnx.backend.test.case.node), with their expected outputs and
tolerances. Their weights are graph inputs; the engine needs constants, so they are bound as initializers first
(the node, its attributes and the run-time inputs are unchanged). onnxruntime fails test_lstm_batchwise (it rejects
layout=1); the engine must pass every case.
"""
import warnings

import numpy as np
import pytest

import engine
from lstm_util import max_abs_diff, weights_to_initializers


def _cases(prefixes):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from onnx.backend.test.case.node import collect_testcases
        seen = {}
        for case in collect_testcases(None) if _takes_arg() else collect_testcases():
            if case.name.startswith(prefixes) and case.name not in seen:
                seen[case.name] = case
    return [seen[k] for k in sorted(seen)]


def _takes_arg():
    import inspect
    from onnx.backend.test.case.node import collect_testcases
    return bool(inspect.signature(collect_testcases).parameters)


LSTM_CASES = _cases(("test_lstm_",))


def run_case(case):
    results = []
    for inputs, expected in case.data_sets:
        feeds = {vi.name: np.asarray(v) for vi, v in zip(case.model.graph.input, inputs)}
        model, run_feeds = weights_to_initializers(case.model, feeds)
        sess = engine.Session(model.SerializeToString())
        got = sess.run([o.name for o in case.model.graph.output], run_feeds)
        for g, e in zip(got, expected):
            results.append((g, np.asarray(e)))
    return results


def test_the_lstm_cases_are_all_there():
    names = {c.name for c in LSTM_CASES}
    assert {"test_lstm_defaults", "test_lstm_with_initial_bias", "test_lstm_with_peepholes", "test_lstm_batchwise",
            "test_lstm_reverse", "test_lstm_bidirectional"} <= names


@pytest.mark.parametrize("case", LSTM_CASES, ids=lambda c: c.name)
def test_onnx_conformance_lstm(case):
    for got, expected in run_case(case):
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=case.rtol, atol=case.atol)
        assert max_abs_diff(got, expected) < 1e-5
