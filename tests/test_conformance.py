"""onnx's backend conformance node tests for LSTM (``test_lstm_*``), run through the engine as an onnx backend.

The cases come from onnx's own generators (``onnx.backend.test.case.node.collect_testcases``), each with its
inputs, expected outputs and tolerances. The pip wheel of onnx ships without the ``data/node`` directories that
``onnx.backend.test.runner.Runner`` loads, so the Runner would find no node tests at all; the generators are what
those directories are written from. The comparison is the Runner's own (``assert_similar_outputs``: count, shape,
dtype, then rtol/atol), plus the project's fp32 bound of 1e-5 on the largest absolute difference.

onnxruntime fails test_lstm_batchwise (it rejects layout=1); the engine must pass every case.
"""
import warnings

import numpy as np
import pytest
from onnx.backend.test.runner import Runner

import onnx_backend


def lstm_cases():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # the generators warn about unrelated ops' deprecated helpers
        from onnx.backend.test.case.node import collect_testcases
        cases = collect_testcases("LSTM")
    return sorted((c for c in cases if c.name.startswith("test_lstm_")), key=lambda c: c.name)


CASES = lstm_cases()


def test_every_known_lstm_case_is_collected():
    # the six cases onnx has shipped since opset 14; a new one shows up as an extra parametrized item
    names = {c.name for c in CASES}
    assert {"test_lstm_defaults", "test_lstm_with_initial_bias", "test_lstm_with_peepholes", "test_lstm_batchwise",
            "test_lstm_reverse", "test_lstm_bidirectional"} <= names


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_lstm_conformance(case):
    assert case.data_sets, f"{case.name} has no data"
    rep = onnx_backend.prepare(case.model, "CPU")
    for inputs, expected in case.data_sets:
        got = rep.run([np.asarray(v) for v in inputs])
        expected = [np.asarray(e) for e in expected]
        Runner.assert_similar_outputs(expected, got, rtol=case.rtol, atol=case.atol, model_dir=case.name)
        for g, e in zip(got, expected):
            assert float(np.max(np.abs(g.astype(np.float64) - e))) <= 1e-5
