"""Whole exported models (an embedding, a convolutional front end, linear heads and softmax around recurrent
layers), from both PyTorch exporters, against torch and onnxruntime; streaming a whole model against its
full-sequence run; the per-op kernels against onnxruntime on single-node graphs; clear errors."""
import io
import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import converters
import engine
from engine.errors import UnsupportedModelError
from lstm_util import max_abs_diff, ort_session

pytestmark = pytest.mark.slow   # torch and onnxruntime


class CharLM(torch.nn.Module):
    """Embedding -> 2-layer LSTM -> Linear -> LogSoftmax, with the state as inputs and outputs."""

    def __init__(self, vocab=23, emb=8, hidden=16):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, emb)
        self.lstm = torch.nn.LSTM(emb, hidden, num_layers=2)
        self.fc = torch.nn.Linear(hidden, vocab)

    def forward(self, tokens, h0, c0):
        y, (h, c) = self.lstm(self.emb(tokens), (h0, c0))
        return torch.log_softmax(self.fc(y), -1), h, c


class ConvGRUClassifier(torch.nn.Module):
    """Conv1d + ReLU front end -> bidirectional GRU -> mean over time and last step -> Linear -> Softmax."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(4, 6, 3, padding=1)
        self.gru = torch.nn.GRU(6, 10, batch_first=True, bidirectional=True)
        self.fc = torch.nn.Linear(20, 5)

    def forward(self, x):
        z = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)
        y, _ = self.gru(z)
        return torch.softmax(self.fc(y.mean(dim=1)), -1), torch.tanh(self.fc(y[:, -1])) * 2.0 - 1.0


class Forecaster(torch.nn.Module):
    """Batch-first LSTM -> last step -> two-layer MLP head with a sigmoid gate; split and recombined."""

    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(3, 12, batch_first=True)
        self.head = torch.nn.Sequential(torch.nn.Linear(12, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))

    def forward(self, x):
        y, _ = self.lstm(x)
        out = self.head(y[:, -1, :])
        a, b = torch.split(out, [2, 2], dim=-1)
        return torch.flatten(torch.sigmoid(a) * b / 3.0, 1)


class TinyRNNTagger(torch.nn.Module):
    """Embedding -> RNN(relu) -> Linear per step (what the dynamo exporter unrolls into MatMul/Add/Relu)."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(11, 5)
        self.rnn = torch.nn.RNN(5, 7, nonlinearity="relu")
        self.fc = torch.nn.Linear(7, 3)

    def forward(self, tokens):
        y, _ = self.rnn(self.emb(tokens))
        return self.fc(y)


def _charlm_args(T=7, B=3):
    return (torch.randint(0, 23, (T, B)), torch.randn(2, B, 16), torch.randn(2, B, 16))


MODELS = {
    "charlm": (CharLM, _charlm_args, ["tokens", "h0", "c0"], ["logp", "h_n", "c_n"],
               {"tokens": {0: "T", 1: "B"}, "h0": {1: "B"}, "c0": {1: "B"}}),
    "conv-gru": (ConvGRUClassifier, lambda T=9, B=3: (torch.randn(B, T, 4),), ["x"], ["p", "q"],
                 {"x": {0: "B", 1: "T"}}),
    "forecaster": (Forecaster, lambda T=10, B=2: (torch.randn(B, T, 3),), ["x"], ["y"], {"x": {0: "B", 1: "T"}}),
    "rnn-tagger": (TinyRNNTagger, lambda T=6, B=2: (torch.randint(0, 11, (T, B)),), ["tokens"], ["tags"],
                   {"tokens": {0: "T", 1: "B"}}),
}


def export(name, dynamo):
    cls, make_args, ins, outs, axes = MODELS[name]
    torch.manual_seed(sum(map(ord, name)))
    m = cls().eval()
    args = make_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            data = torch.onnx.export(m, args, None, dynamo=True, input_names=ins,
                                     output_names=outs).model_proto.SerializeToString()
        else:
            buf = io.BytesIO()
            torch.onnx.export(m, args, buf, dynamo=False, input_names=ins, output_names=outs, dynamic_axes=axes)
            data = buf.getvalue()
    return m, args, data


@pytest.mark.parametrize("dynamo", [False, True], ids=["dynamo=False", "dynamo=True"])
@pytest.mark.parametrize("name", list(MODELS))
def test_exported_whole_models_match_torch_and_onnxruntime(name, dynamo):
    m, args, data = export(name, dynamo)
    ins = MODELS[name][2]
    sess = engine.Session(data)
    feeds = {k: v.numpy() for k, v in zip(ins, args)}
    got = sess.run(None, feeds)
    with torch.no_grad():
        ref = m(*args)
    ref = ref if isinstance(ref, tuple) else (ref,)
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        assert g.shape == tuple(r.shape)
        assert max_abs_diff(g, r.numpy()) <= 1e-5
    for g, r in zip(got, ort_session(onnx.load_from_string(data)).run(None, feeds)):
        assert max_abs_diff(g, r) <= 1e-5
    if not dynamo:
        # dynamic axes: another length and batch, still equal to torch
        args2 = MODELS[name][1](T=4, B=1) if name != "conv-gru" else (torch.randn(1, 4, 4),)
        got2 = sess.run(None, {k: v.numpy() for k, v in zip(ins, args2)})
        with torch.no_grad():
            ref2 = m(*args2)
        ref2 = ref2 if isinstance(ref2, tuple) else (ref2,)
        for g, r in zip(got2, ref2):
            assert max_abs_diff(g, r.numpy()) <= 1e-5


def test_a_whole_model_runs_as_one_program_of_the_precompiled_executor():
    _, _, data = export("conv-gru", False)
    sess = engine.Session(data)
    program = sess.program()
    assert "conv1d" in program and "gru" in program and "softmax" in program and "mean" in program
    assert "# node" in program        # every instruction names its node


def test_streaming_a_character_model_one_token_at_a_time():
    m, _, data = export("charlm", False)
    sess = engine.Session(data)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 23, (15, 2))
    h0 = np.zeros((2, 2, 16), np.float32)
    full = sess.run(None, {"tokens": tokens, "h0": h0, "c0": h0})
    stream = sess.stream(batch_size=2)
    steps = np.stack([stream.step(tokens[t]) for t in range(15)])
    assert max_abs_diff(steps, full[0]) <= 1e-5
    st = stream.state
    assert sorted(st) == sorted(k for k in st)   # names of both layers' h and c
    h_final = np.concatenate([st[k] for k in sorted(st) if k.endswith("/h")])
    assert max_abs_diff(h_final, full[1]) <= 1e-5
    # and against torch, step by step
    with torch.no_grad():
        ref, _, _ = m(torch.from_numpy(tokens), torch.from_numpy(h0), torch.from_numpy(h0))
    assert max_abs_diff(steps, ref.numpy()) <= 1e-5


def test_from_torch_converts_a_whole_module_through_the_exporter():
    torch.manual_seed(3)
    m = Forecaster().eval()
    x = torch.randn(2, 10, 3)
    model = converters.from_torch(m, None, x, input_names=["x"], output_names=["y"])
    sess = engine.Session(model)
    assert [i.name for i in sess.get_inputs()] == ["x"]
    for T in (10, 25):
        xt = torch.randn(3, T, 3)
        with torch.no_grad():
            ref = m(xt).numpy()
        assert max_abs_diff(sess.run(None, {"x": xt.numpy()})[0], ref) <= 1e-5
    with pytest.raises(engine.errors.ConversionError, match="example_input"):
        converters.from_torch(m)


def test_out_of_range_token_ids_are_a_clear_error():
    _, _, data = export("charlm", False)
    sess = engine.Session(data)
    h0 = np.zeros((2, 1, 16), np.float32)
    with pytest.raises(engine.InvalidInputError, match="out of range"):
        sess.run(None, {"tokens": np.array([[23]]), "h0": h0, "c0": h0})
    with pytest.raises(engine.InvalidInputError):
        sess.run(None, {"tokens": np.zeros((2, 1), np.float32), "h0": h0, "c0": h0})


def test_an_unsupported_op_names_the_node_and_lists_what_is_supported():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    g = helper.make_graph([helper.make_node("Erf", ["x"], ["y"], name="my_erf")], "g", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(UnsupportedModelError, match=r"my_erf.*Erf.*supported: .*LSTM.*MatMul"):
        converters.from_onnx(m)


# ---------------------------------------------------------------------- single ops against onnxruntime
def _single(op, inputs, attrs=None, inits=(), opset=17, n_out=1):
    vis = [helper.make_tensor_value_info(n, elem, shape) for n, elem, shape in inputs]
    outs = [helper.make_tensor_value_info(f"out{k}", TensorProto.FLOAT, None) for k in range(n_out)]
    node = helper.make_node(op, [n for n, _, _ in inputs] + [n for n, _ in inits], [o.name for o in outs],
                            **(attrs or {}))
    g = helper.make_graph([node], "g", vis, outs, [numpy_helper.from_array(a, n) for n, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


F = TensorProto.FLOAT
rng = np.random.default_rng(5)
W34 = rng.standard_normal((3, 4)).astype(np.float32)
SINGLE = [
    ("Add-broadcast", _single("Add", [("x", F, ["N", 3, 4])], inits=[("b", rng.standard_normal(4).astype(np.float32))]),
     {"x": (2, 3, 4)}),
    ("Sub-scalar", _single("Sub", [("x", F, ["N", 4])], inits=[("b", np.array(0.5, np.float32))]), {"x": (5, 4)}),
    ("Mul-two-inputs", _single("Mul", [("x", F, ["N", 4]), ("y", F, [1, 4])]), {"x": (3, 4), "y": (1, 4)}),
    ("Div", _single("Div", [("x", F, ["N", 4])], inits=[("b", np.full((1, 4), 3.0, np.float32))]), {"x": (3, 4)}),
    ("Relu", _single("Relu", [("x", F, ["N", 5])]), {"x": (4, 5)}),
    ("Sigmoid", _single("Sigmoid", [("x", F, ["N", 5])]), {"x": (4, 5)}),
    ("Tanh", _single("Tanh", [("x", F, ["N", 5])]), {"x": (4, 5)}),
    ("MatMul-3d-by-2d", _single("MatMul", [("x", F, ["T", "N", 3])], inits=[("w", W34)]), {"x": (5, 2, 3)}),
    ("MatMul-batched", _single("MatMul", [("x", F, [2, "N", 3]), ("y", F, [2, 3, 4])]), {"x": (2, 5, 3), "y": (2, 3, 4)}),
    ("Gemm-transB-alpha-beta", _single("Gemm", [("x", F, ["N", 4])], {"transB": 1, "alpha": 0.5, "beta": 2.0},
                                       inits=[("w", W34), ("c", np.arange(3, dtype=np.float32))]), {"x": (6, 4)}),
    ("Gemm-transA", _single("Gemm", [("x", F, [3, "N"])], {"transA": 1}, inits=[("w", W34)]), {"x": (3, 2)}),
    ("Softmax-last", _single("Softmax", [("x", F, ["N", 3, 7])], {"axis": -1}), {"x": (2, 3, 7)}),
    ("Softmax-middle", _single("Softmax", [("x", F, ["N", 3, 7])], {"axis": 1}), {"x": (2, 3, 7)}),
    ("LogSoftmax", _single("LogSoftmax", [("x", F, ["N", 9])], {"axis": 1}), {"x": (4, 9)}),
    ("ReduceMean-keepdims", _single("ReduceMean", [("x", F, ["N", 3, 5])], {"axes": [1, 2], "keepdims": 1}),
     {"x": (2, 3, 5)}),
    ("ReduceMean-18-input-axes", _single("ReduceMean", [("x", F, ["N", 3, 5])], {"keepdims": 0},
                                         inits=[("axes", np.array([1], np.int64))], opset=18), {"x": (2, 3, 5)}),
    ("Conv1d-pads-stride-dilation", _single("Conv", [("x", F, ["N", 4, "L"])],
                                            {"pads": [2, 1], "strides": [2], "dilations": [2]},
                                            inits=[("w", rng.standard_normal((6, 4, 3)).astype(np.float32)),
                                                   ("b", rng.standard_normal(6).astype(np.float32))]), {"x": (2, 4, 11)}),
    ("Conv1d-groups", _single("Conv", [("x", F, ["N", 4, "L"])], {"group": 2},
                              inits=[("w", rng.standard_normal((6, 2, 3)).astype(np.float32))]), {"x": (1, 4, 8)}),
    ("Flatten", _single("Flatten", [("x", F, ["N", 3, 5])], {"axis": 1}), {"x": (2, 3, 5)}),
    ("Gather-constant-index", _single("Gather", [("x", F, ["N", "T", 5])], {"axis": 1},
                                      inits=[("i", np.array(-1, np.int64))]), {"x": (2, 6, 5)}),
]


@pytest.mark.parametrize("name,model,shapes", SINGLE, ids=[s[0] for s in SINGLE])
def test_single_ops_against_onnxruntime(name, model, shapes):
    feeds = {k: rng.standard_normal(v).astype(np.float32) for k, v in shapes.items()}
    got = engine.Session(model.SerializeToString()).run(None, feeds)
    ref = ort_session(model).run(None, feeds)
    for g, r in zip(got, ref):
        assert g.shape == r.shape and g.dtype == r.dtype
        assert max_abs_diff(g, r) <= 1e-5


def test_split_against_onnxruntime():
    m = _single("Split", [("x", F, ["N", 7])], {"axis": 1}, inits=[("s", np.array([3, 4], np.int64))], opset=13,
                n_out=2)
    x = rng.standard_normal((2, 7)).astype(np.float32)
    for g, r in zip(engine.Session(m.SerializeToString()).run(None, {"x": x}), ort_session(m).run(None, {"x": x})):
        assert max_abs_diff(g, r) <= 1e-7


def test_embedding_gather_and_cast_against_onnxruntime():
    table = rng.standard_normal((10, 4)).astype(np.float32)
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, ["T", "B"])
    out = helper.make_tensor_value_info("e", TensorProto.FLOAT, None)
    out2 = helper.make_tensor_value_info("f", TensorProto.FLOAT, None)
    g = helper.make_graph([helper.make_node("Gather", ["table", "ids"], ["e"]),
                           helper.make_node("Cast", ["ids"], ["f"], to=TensorProto.FLOAT)], "g", [ids], [out, out2],
                          [numpy_helper.from_array(table, "table")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    feeds = {"ids": np.array([[1, 9], [-1, 0], [3, 3]], np.int64)}
    for gv, r in zip(engine.Session(m.SerializeToString()).run(None, feeds), ort_session(m).run(None, feeds)):
        assert gv.shape == r.shape and max_abs_diff(gv, r) == 0.0


# ---------------------------------------------------------------------- the zoo (engine/data/zoo)
def _zoo(name):
    from engine.demo import zoo_path
    return zoo_path(f"{name}.onnx")


def test_zoo_charlm_against_onnxruntime_and_streamed():
    from engine.demo import load_meta
    sess = engine.Session(_zoo("charlm"))
    ref = ort_session(onnx.load(_zoo("charlm")))
    vocab = load_meta("charlm")["demo"]["vocab"]
    text = "def greet(name):\n    return f'hello {name}'\n" * 3
    ids = np.array([[vocab.index(ch) if ch in vocab else 0] for ch in text], np.int64)        # (T, 1)
    zeros = np.zeros((1, 1, 192), np.float32)
    feed = {"tokens": ids, "h0": zeros, "c0": zeros}
    got = sess.run(None, feed)
    for g, r in zip(got, ref.run(None, feed)):
        assert max_abs_diff(g, r) <= 1e-5
    stream = sess.stream(batch_size=1)
    steps = np.stack([stream.step(ids[t]) for t in range(len(ids))])
    assert max_abs_diff(steps, got[0]) <= 1e-5
    h_final = next(v for k, v in stream.state.items() if k.endswith("/h"))
    assert max_abs_diff(h_final, got[1]) <= 1e-5


def test_zoo_co2_and_digits_against_onnxruntime():
    from engine.demo import load_meta, zoo_path
    d = np.load(zoo_path("co2_heldout.npz"))
    z = ((d["ppm"] - d["mean"]) / d["std"]).astype(np.float32)
    W, start = int(d["window"]), int(d["heldout_start"])
    windows = np.stack([z[start + k - W:start + k] for k in range(len(d["heldout"]))])[:, :, None]
    for name, feed in (("co2", {"x": windows}), ("co2", {"x": windows[:1, -10:]})):
        got = engine.Session(_zoo(name)).run(None, feed)
        assert max_abs_diff(got[0], ort_session(onnx.load(_zoo(name))).run(None, feed)[0]) <= 1e-5
    onestep = engine.Session(_zoo("co2")).run(None, {"x": windows})[0][:, 0] * d["std"] + d["mean"]
    rmse = float(np.sqrt(np.mean((onestep - d["heldout"]) ** 2)))
    assert rmse == pytest.approx(load_meta("co2")["quality"]["onestep"]["rmse_ppm"], abs=1e-3)
    t = np.load(zoo_path("digits_test.npz"))
    x = t["images"].astype(np.float32) / np.float32(16.0)
    got = engine.Session(_zoo("digits")).run(None, {"image_rows": x})[0]
    assert max_abs_diff(got, ort_session(onnx.load(_zoo("digits"))).run(None, {"image_rows": x})[0]) <= 1e-5
    assert float((got.argmax(1) == t["labels"]).mean()) == pytest.approx(
        load_meta("digits")["quality"]["test_accuracy"])
