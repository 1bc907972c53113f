"""The naive reference (tests/naive.py) against onnxruntime, so that the kernel tests compare with something trusted.

No engine code runs here: onnxruntime computes in float32, the reference in float64 on the same float32 values.
"""
import numpy as np
import pytest

import naive

pytestmark = pytest.mark.slow

# (id, op, attrs, options): with_P, inputs
CASES = [
    ("lstm", "LSTM", {}, {}),
    ("lstm-reverse-lens", "LSTM", {"direction": "reverse"}, {"inputs": ("X", "sequence_lens")}),
    ("lstm-bidirectional-state-peepholes", "LSTM", {"direction": "bidirectional"},
     {"with_P": True, "inputs": ("X", "sequence_lens", "initial_h", "initial_c")}),
    ("lstm-clip-input-forget", "LSTM", {"clip": 0.7, "input_forget": 1}, {"with_P": True}),
    ("lstm-activations", "LSTM", {"activations": ["HardSigmoid", "Softsign", "Elu"], "activation_alpha": [0.3, 0.9],
                                  "activation_beta": [0.4]}, {}),
    ("gru", "GRU", {}, {"inputs": ("X", "sequence_lens", "initial_h")}),
    ("gru-lbr-bidirectional-clip", "GRU", {"linear_before_reset": 1, "direction": "bidirectional", "clip": 1.1},
     {"inputs": ("X", "sequence_lens")}),
    ("gru-activations", "GRU", {"activations": ["HardSigmoid", "ScaledTanh"], "activation_alpha": [0.3, 0.8],
                                "activation_beta": [0.4, 1.2]}, {}),
    ("rnn-reverse-state", "RNN", {"direction": "reverse"}, {"inputs": ("X", "sequence_lens", "initial_h")}),
    ("rnn-relu-clip", "RNN", {"activations": ["Relu"], "clip": 2.0}, {}),
]


@pytest.mark.parametrize("op,attrs,opts", [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_naive_reference_matches_onnxruntime(op, attrs, opts):
    from lstm_util import make_feeds, max_abs_diff, ort_session, rnn_model
    rng = np.random.default_rng(3)
    T, B, I, H = 9, 4, 3, 5
    D = 2 if attrs.get("direction") == "bidirectional" else 1
    inputs = opts.get("inputs", ("X",))
    model, w = rnn_model(op, I=I, H=H, D=D, T=T, B=B, rng=rng, attrs=attrs, with_P=opts.get("with_P", False),
                         inputs=inputs)
    feeds = make_feeds(inputs, T, B, I, H, D, rng, op=op, min_len=0)
    names = [o.name for o in model.graph.output]
    ref = ort_session(model).run(names, feeds)
    extra = {"P": w["P"]} if opts.get("with_P") else {}
    got = naive.recurrent(op, feeds["X"], w["W"], w["R"], w["B"], feeds.get("sequence_lens"),
                          feeds.get("initial_h"), feeds.get("initial_c"), **extra, **attrs)
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        assert max_abs_diff(g, r) <= 1e-5
