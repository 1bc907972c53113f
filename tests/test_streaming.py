"""session.stream(): one step (or a chunk) at a time with the state inside equals the full-sequence run."""
import io
import warnings

import numpy as np
import pytest
import torch

import converters
import engine
from engine.errors import InvalidInputError, UnsupportedModelError
from lstm_util import max_abs_diff, rnn_model

pytestmark = pytest.mark.slow   # torch


def torch_model(**cfg):
    torch.manual_seed(1)
    m = torch.nn.LSTM(5, 7, **cfg).eval()
    return m, engine.Session(converters.from_torch(m))


@pytest.mark.parametrize("cfg,B", [(dict(num_layers=1), 1), (dict(num_layers=3), 1), (dict(num_layers=2), 3),
                                   (dict(num_layers=2, batch_first=True), 2), (dict(num_layers=2, proj_size=3), 2)],
                         ids=["1-layer", "3-layers", "batch-3", "batch-first", "projection"])
def test_step_by_step_equals_full_sequence(cfg, B):
    m, sess = torch_model(**cfg)
    bf = cfg.get("batch_first", False)
    x = np.random.default_rng(0).standard_normal((B, 20, 5) if bf else (20, B, 5)).astype(np.float32)
    full_y, full_h, full_c = sess.run(None, {"input": x})
    stream = sess.stream(batch_size=B)
    ys = [stream.step(x[:, t] if bf else x[t]) for t in range(20)]
    y = np.stack(ys, axis=1 if bf else 0)
    assert max_abs_diff(y, full_y) <= 1e-5
    state = stream.state
    L = cfg["num_layers"]
    h = np.concatenate([state[f"lstm.l{k}/h"] for k in range(L)])
    c = np.concatenate([state[f"lstm.l{k}/c"] for k in range(L)])
    assert max_abs_diff(h, full_h) <= 1e-5 and max_abs_diff(c, full_c) <= 1e-5


def test_steps_of_every_kind_mixed_equal_the_full_sequence():
    """step's fast paths (the shape and output of the step before; a shape seen before) and its checked path
    interleaved: non-contiguous, read-only, float64 and list steps, a chunk, the output named, each step its own
    array: every step continues from the state the one before left."""
    _, sess = torch_model(num_layers=2)
    x = np.random.default_rng(3).standard_normal((14, 2, 5)).astype(np.float32)
    full = sess.run(None, {"input": x})[0]
    first = sess.get_outputs()[0].name
    stream = sess.stream(batch_size=2)
    readonly = x[4].copy()
    readonly.flags.writeable = False
    steps = [(0, 1, x[0], None), (1, 2, x[1], None), (2, 3, x[2].copy(), None), (3, 4, np.asfortranarray(x[3]), None),
             (4, 5, readonly, None), (5, 6, x[5].astype(np.float64), None), (6, 7, x[6].tolist(), None),
             (7, 9, x[7:9], None), (9, 10, x[9], first), (10, 11, x[10], None), (11, 12, x[11], first),
             (12, 13, x[12], first), (13, 14, x[13], None)]
    outs = []
    for a, b, xs, name in steps:
        y = stream.step(xs, name) if name else stream.step(xs)
        assert y.shape == (full[a:b] if b - a > 1 else full[a]).shape, (a, y.shape)
        outs.append(y if b - a > 1 else y[None])
        if len(outs) > 1:
            assert not np.shares_memory(outs[-1], outs[-2])      # each step returns its own array
    assert max_abs_diff(np.concatenate(outs), full) <= 1e-5


def test_chunks_reset_and_state_assignment():
    m, sess = torch_model(num_layers=2)
    x = np.random.default_rng(1).standard_normal((30, 2, 5)).astype(np.float32)
    full = sess.run(None, {"input": x})[0]
    stream = sess.stream(batch_size=2)
    chunks = [stream.step(x[a:b]) for a, b in [(0, 7), (7, 8), (8, 30)]]       # chunks keep their time axis
    assert max_abs_diff(np.concatenate(chunks), full) <= 1e-5
    saved = stream.state
    stream.reset()
    assert all(not v.any() for v in stream.state.values())
    assert max_abs_diff(stream.step(x[0]), full[0]) <= 1e-5                      # from zero again
    stream.state = saved                                                          # resume where we were
    nxt = np.random.default_rng(2).standard_normal((2, 5)).astype(np.float32)
    with_state = sess.run(None, {"input": np.concatenate([x, nxt[None]])})[0][-1]
    assert max_abs_diff(stream.step(nxt), with_state) <= 1e-5


def test_state_validation():
    _, sess = torch_model(num_layers=1)
    stream = sess.stream(batch_size=2)
    with pytest.raises(InvalidInputError, match="unknown state"):
        stream.state = {"nope/h": np.zeros((1, 2, 7))}
    with pytest.raises(InvalidInputError, match="must have shape"):
        stream.state = {"lstm.l0/h": np.zeros((1, 3, 7))}
    with pytest.raises(InvalidInputError, match="float"):
        stream.state = {"lstm.l0/h": np.zeros((1, 2, 7), dtype=np.int32)}
    with pytest.raises(InvalidInputError, match="batch size 2"):
        stream.step(np.zeros((3, 5), np.float32))
    with pytest.raises(InvalidInputError):
        stream.step(np.zeros((2, 4), np.float32))
    with pytest.raises(engine.EngineError, match="batch_size"):
        sess.stream(batch_size=0)


def test_bidirectional_and_reverse_models_cannot_stream():
    _, sess = torch_model(num_layers=1, bidirectional=True)
    with pytest.raises(UnsupportedModelError, match="whole sequence"):
        sess.stream()
    rng = np.random.default_rng(0)
    model, _ = rnn_model("LSTM", I=3, H=4, D=1, T=5, B=1, rng=rng, attrs={"direction": "reverse"})
    with pytest.raises(UnsupportedModelError, match="reverse"):
        engine.Session(model.SerializeToString()).stream()


@pytest.mark.parametrize("dynamic", [True, False], ids=["dynamic-axes", "fixed-shape"])
def test_onnx_exported_model_streams(dynamic):
    """A model exported with a fixed sequence length still streams: nothing in its graph depends on that length."""
    torch.manual_seed(4)
    m = torch.nn.LSTM(5, 6, num_layers=2).eval()
    buf = io.BytesIO()
    kw = {"dynamic_axes": {"input": {0: "T", 1: "B"}}} if dynamic else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (torch.randn(9, 1, 5),), buf, dynamo=False, input_names=["input"],
                          output_names=["output", "h_n", "c_n"], **kw)
    sess = engine.Session(buf.getvalue())
    x = np.random.default_rng(3).standard_normal((9, 1, 5)).astype(np.float32)
    full = sess.run(None, {"input": x})[0]
    stream = sess.stream(batch_size=1)
    y = np.stack([stream.step(x[t]) for t in range(9)])
    assert max_abs_diff(y, full) <= 1e-5
    with torch.no_grad():
        assert max_abs_diff(full, m(torch.from_numpy(x))[0].numpy()) <= 1e-5
