"""converters.from_torch on nn.GRU, nn.RNN and the cells (nn.LSTMCell, nn.GRUCell, nn.RNNCell), models from both
PyTorch ONNX exporters for nn.GRU and nn.RNN, and streaming them: compared with torch itself (and onnxruntime).

The converted models keep torch's names and shapes: layers take "input" (T, B, I) or (B, T, I) and optional "h0"
(L*D, B, H), and return "output" (T, B, D*H) and "h_n" (L*D, B, H); cells take "input" (B, I) and optional "hx"
(B, H) (and "cx" for LSTMCell) and return "h'" (and "c'").
"""
import io
import itertools
import warnings

import numpy as np
import pytest
import torch

import converters
import engine
from engine.errors import ConversionError, UnsupportedModelError
from lstm_util import max_abs_diff, ort_session

pytestmark = pytest.mark.slow   # torch

LAYER_KINDS = [
    pytest.param(torch.nn.GRU, {}, id="GRU"),
    pytest.param(torch.nn.RNN, {}, id="RNN-tanh"),
    pytest.param(torch.nn.RNN, {"nonlinearity": "relu"}, id="RNN-relu"),
]
CONFIGS = [dict(num_layers=L, bidirectional=bd, batch_first=bf, bias=bias)
           for L, bd, bf, bias in [(1, False, False, True), (3, False, True, True), (2, True, True, True),
                                   (3, True, False, False)]]


def torch_layer_run(m, x, h0=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.no_grad():
            y, h = m(torch.from_numpy(x), None if h0 is None else torch.from_numpy(h0))
    return [y.numpy(), h.numpy()]


def torch_cell_run(cell, x, state=None):
    """One step of a torch cell; returns [h'] or, for LSTMCell, [h', c']."""
    with torch.no_grad():
        xs = torch.from_numpy(x)
        if isinstance(cell, torch.nn.LSTMCell):
            out = cell(xs, None if state is None else tuple(torch.from_numpy(s) for s in state))
            return [out[0].numpy(), out[1].numpy()]
        return [cell(xs, None if state is None else torch.from_numpy(state[0])).numpy()]


def layer_inputs(cfg, T, B, I, H, rng):
    D = 2 if cfg.get("bidirectional") else 1
    x = rng.standard_normal((B, T, I) if cfg.get("batch_first") else (T, B, I)).astype(np.float32)
    h0 = rng.standard_normal((cfg.get("num_layers", 1) * D, B, H)).astype(np.float32)
    return x, h0


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("cls,extra", LAYER_KINDS)
def test_from_torch_matches_torch(cls, extra, cfg):
    torch.manual_seed(0)
    I, H = 6, 8
    m = cls(I, H, **cfg, **extra).eval()
    sess = engine.Session(converters.from_torch(m))
    assert [i.name for i in sess.get_inputs()] == ["input", "h0"]
    assert [o.name for o in sess.get_outputs()] == ["output", "h_n"]
    rng = np.random.default_rng(1)
    for T, B in [(1, 1), (13, 3)]:
        x, h0 = layer_inputs(cfg, T, B, I, H, rng)
        ref = torch_layer_run(m, x, h0)
        ref0 = torch_layer_run(m, x)
        got = sess.run(None, {"input": x, "h0": h0})
        got0 = sess.run(None, {"input": x})              # h0 optional: zeros, as in torch
        assert len(got) == len(got0) == 2
        for g, r in itertools.chain(zip(got, ref), zip(got0, ref0)):
            assert g.shape == r.shape and g.dtype == np.float32
            assert max_abs_diff(g, r) <= 1e-5


@pytest.mark.parametrize("cls,extra", [LAYER_KINDS[0]])
def test_from_torch_float64_matches_torch_in_double(cls, extra):
    torch.manual_seed(3)
    m = cls(5, 7, num_layers=2, bidirectional=True, **extra).double().eval()
    model = converters.from_torch(m, dtype="float64")
    rng = np.random.default_rng(2)
    x, h0 = rng.standard_normal((30, 2, 5)), rng.standard_normal((4, 2, 7))
    ref = torch_layer_run(m, x, h0)
    got = engine.Session(model).run(None, {"input": x, "h0": h0})
    assert all(g.dtype == np.float64 for g in got)
    assert max(max_abs_diff(g, r) for g, r in zip(got, ref)) <= 1e-12


# ---------------------------------------------------------------------- cells
CELLS = [
    pytest.param(torch.nn.LSTMCell, {}, id="LSTMCell"),
    pytest.param(torch.nn.LSTMCell, {"bias": False}, id="LSTMCell-no-bias"),
    pytest.param(torch.nn.GRUCell, {}, id="GRUCell"),
    pytest.param(torch.nn.GRUCell, {"bias": False}, id="GRUCell-no-bias"),
    pytest.param(torch.nn.RNNCell, {}, id="RNNCell-tanh"),
    pytest.param(torch.nn.RNNCell, {"nonlinearity": "relu"}, id="RNNCell-relu"),
    pytest.param(torch.nn.RNNCell, {"bias": False}, id="RNNCell-no-bias"),
    pytest.param(torch.nn.RNNCell, {"nonlinearity": "relu", "bias": False}, id="RNNCell-relu-no-bias"),
]


def cell_names(cell):
    lstm = isinstance(cell, torch.nn.LSTMCell)
    return (["input", "hx", "cx"] if lstm else ["input", "hx"]), (["h'", "c'"] if lstm else ["h'"])


def cell_state(cell, B, H, rng):
    n = 2 if isinstance(cell, torch.nn.LSTMCell) else 1
    return [rng.standard_normal((B, H)).astype(np.float32) for _ in range(n)]


@pytest.mark.parametrize("cls,extra", CELLS)
def test_cells_match_torch(cls, extra):
    torch.manual_seed(4)
    I, H = 5, 9
    cell = cls(I, H, **extra).eval()
    sess = engine.Session(converters.from_torch(cell))
    in_names, out_names = cell_names(cell)
    assert [i.name for i in sess.get_inputs()] == in_names
    assert [o.name for o in sess.get_outputs()] == out_names
    rng = np.random.default_rng(5)
    for B in (1, 4):
        x = rng.standard_normal((B, I)).astype(np.float32)
        state = cell_state(cell, B, H, rng)
        got = sess.run(None, {"input": x, **dict(zip(in_names[1:], state))})
        got0 = sess.run(None, {"input": x})               # hx (cx) optional: zeros, as in torch
        for g, r in itertools.chain(zip(got, torch_cell_run(cell, x, state)), zip(got0, torch_cell_run(cell, x))):
            assert g.shape == r.shape == (B, H)
            assert max_abs_diff(g, r) <= 1e-5
        assert len(got) == len(got0) == len(out_names)
        h_only = sess.run(["h'"], {"input": x, **dict(zip(in_names[1:], state))})
        assert max_abs_diff(h_only[0], got[0]) == 0


def test_cell_float64_matches_torch_in_double():
    torch.manual_seed(9)
    cell = torch.nn.GRUCell(5, 7).double().eval()
    model = converters.from_torch(cell, dtype="float64")
    rng = np.random.default_rng(3)
    x, hx = rng.standard_normal((4, 5)), rng.standard_normal((4, 7))
    (got,) = engine.Session(model).run(None, {"input": x, "hx": hx})
    assert got.dtype == np.float64
    assert max_abs_diff(got, torch_cell_run(cell, x, [hx])[0]) <= 1e-12


@pytest.mark.parametrize("cls", [torch.nn.LSTMCell, torch.nn.GRUCell, torch.nn.RNNCell])
def test_cell_rejects_unbatched_input_clearly(cls):
    torch.manual_seed(0)
    sess = engine.Session(converters.from_torch(cls(3, 4)))
    with pytest.raises(engine.InvalidInputError):
        sess.run(None, {"input": np.zeros(3, np.float32)})
    with pytest.raises(engine.InvalidInputError):
        sess.run(None, {"input": np.zeros((2, 3), np.float32), "hx": np.zeros(4, np.float32)})


# ---------------------------------------------------------------------- state dict sources, kinds
def test_gru_state_dict_sources(tmp_path):
    """A module, its state dict, a torch.save'd file (weights_only loading), a safetensors file, a state dict
    nested under a prefix, and a written model file all give the same model."""
    from safetensors.torch import save_file

    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Linear(3, 4)
            self.gru = torch.nn.GRU(4, 6, num_layers=2, batch_first=True)

    torch.manual_seed(5)
    w = Wrapper().eval()
    torch.save(w.gru.state_dict(), tmp_path / "gru.pt")
    torch.save(w.state_dict(), tmp_path / "wrapper.pt")
    save_file(w.gru.state_dict(), str(tmp_path / "gru.safetensors"))
    converters.from_torch(w.gru, tmp_path / "gru.lstm")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 9, 4)).astype(np.float32)
    h0 = rng.standard_normal((2, 2, 6)).astype(np.float32)
    ref = torch_layer_run(w.gru, x, h0)
    sources = [w.gru, w.gru.state_dict(), tmp_path / "gru.pt", str(tmp_path / "gru.safetensors"),
               tmp_path / "wrapper.pt", w.state_dict()]
    sessions = [engine.Session(converters.from_torch(src, batch_first=True)) for src in sources]
    sessions.append(engine.Session(tmp_path / "gru.lstm"))
    for src, sess in zip(sources + ["model file"], sessions):
        got = sess.run(None, {"input": x, "h0": h0})
        assert max(max_abs_diff(g, r) for g, r in zip(got, ref)) <= 1e-5, src


@pytest.mark.parametrize("cls,extra", [pytest.param(torch.nn.GRUCell, {}, id="GRUCell"),
                                       pytest.param(torch.nn.RNNCell, {"nonlinearity": "relu"}, id="RNNCell-relu"),
                                       pytest.param(torch.nn.LSTMCell, {}, id="LSTMCell")])
def test_cell_state_dict_sources(cls, extra, tmp_path):
    from safetensors.torch import save_file
    torch.manual_seed(6)
    cell = cls(4, 5, **extra).eval()
    torch.save(cell.state_dict(), tmp_path / "cell.pt")
    save_file(cell.state_dict(), str(tmp_path / "cell.safetensors"))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    state = cell_state(cell, 3, 5, rng)
    in_names, _ = cell_names(cell)
    feeds = {"input": x, **dict(zip(in_names[1:], state))}
    ref = torch_cell_run(cell, x, state)
    opts = {"nonlinearity": "relu"} if extra.get("nonlinearity") == "relu" else {}
    for src in [cell, cell.state_dict(), tmp_path / "cell.pt", tmp_path / "cell.safetensors"]:
        model = converters.from_torch(src, **({} if src is cell else opts))
        got = engine.Session(model).run(None, feeds)
        assert len(got) == len(ref)
        assert max(max_abs_diff(g, r) for g, r in zip(got, ref)) <= 1e-5, src


KIND_MODULES = [
    pytest.param(lambda: torch.nn.LSTM(4, 5, proj_size=3, bidirectional=True), "lstm", {}, id="lstm-proj"),
    pytest.param(lambda: torch.nn.GRU(4, 5, num_layers=2, bidirectional=True), "gru", {}, id="gru"),
    pytest.param(lambda: torch.nn.RNN(4, 5, num_layers=2), "rnn", {}, id="rnn-tanh"),
    pytest.param(lambda: torch.nn.RNN(4, 5, nonlinearity="relu", bidirectional=True), "rnn",
                 {"nonlinearity": "relu"}, id="rnn-relu"),
    pytest.param(lambda: torch.nn.LSTMCell(4, 5), "lstm_cell", {}, id="lstm_cell"),
    pytest.param(lambda: torch.nn.GRUCell(4, 5), "gru_cell", {}, id="gru_cell"),
    pytest.param(lambda: torch.nn.GRUCell(4, 5, bias=False), "gru_cell", {}, id="gru_cell-no-bias"),
    pytest.param(lambda: torch.nn.RNNCell(4, 5), "rnn_cell", {}, id="rnn_cell-tanh"),
    pytest.param(lambda: torch.nn.RNNCell(4, 5, nonlinearity="relu"), "rnn_cell", {"nonlinearity": "relu"},
                 id="rnn_cell-relu"),
]


def run_like_torch(m, sess, rng):
    """The converted model and the torch module on the same random input (and state); returns (got, ref)."""
    if isinstance(m, (torch.nn.LSTMCell, torch.nn.GRUCell, torch.nn.RNNCell)):
        x = rng.standard_normal((3, m.input_size)).astype(np.float32)
        state = cell_state(m, 3, m.hidden_size, rng)
        in_names, _ = cell_names(m)
        return sess.run(None, {"input": x, **dict(zip(in_names[1:], state))}), torch_cell_run(m, x, state)
    x = rng.standard_normal((6, 2, m.input_size)).astype(np.float32)
    if isinstance(m, torch.nn.LSTM):
        with torch.no_grad():
            y, (h, c) = m(torch.from_numpy(x))
        return sess.run(None, {"input": x}), [y.numpy(), h.numpy(), c.numpy()]
    return sess.run(None, {"input": x}), torch_layer_run(m, x)


@pytest.mark.parametrize("make,kind,opts", KIND_MODULES)
def test_state_dict_kind_is_inferred_or_given(make, kind, opts):
    """A bare state dict: the kind is inferred from its keys and shapes, or given; an RNN's nonlinearity is given
    (tanh by default)."""
    torch.manual_seed(7)
    m = make().eval()
    sd = m.state_dict()
    rng = np.random.default_rng(8)
    for model in [converters.from_torch(sd, **opts), converters.from_torch(sd, kind=kind, **opts),
                  converters.from_torch(m)]:
        got, ref = run_like_torch(m, engine.Session(model), np.random.default_rng(8))
        assert len(got) == len(ref)
        assert max(max_abs_diff(g, r) for g, r in zip(got, ref)) <= 1e-5
    if kind.startswith("rnn"):
        # without nonlinearity="relu" a bare state dict is a tanh RNN: right for tanh, different for relu
        got, ref = run_like_torch(m, engine.Session(converters.from_torch(sd)), rng)
        diff = max(max_abs_diff(g, r) for g, r in zip(got, ref))
        assert (diff <= 1e-5) == (opts.get("nonlinearity") != "relu")


def test_unknown_or_mismatched_kind_is_a_conversion_error():
    sd = torch.nn.GRU(4, 5).state_dict()
    with pytest.raises(ConversionError):
        converters.from_torch(sd, kind="transformer")
    with pytest.raises(ConversionError):
        converters.from_torch(torch.nn.GRUCell(4, 5).state_dict(), kind="bogus_cell")
    with pytest.raises(ConversionError):
        converters.from_torch(sd, kind="lstm")        # 3 gates: not an LSTM's weights
    with pytest.raises(ConversionError):
        converters.from_torch(sd, kind="rnn")


# ---------------------------------------------------------------------- both ONNX exporters
# (id, module class, extra module args, config, dynamo, dynamic axes). The dynamo exporter unrolls nn.RNN into
# MatMul/Add/Tanh per step (no RNN node): those graphs grow with layers x directions x steps, and so does the time
# to compile them (minutes for 2 bidirectional layers of 7 steps), hence one layer, one direction and a short
# example sequence (EXPORT_T) there.
EXPORTS = [
    ("GRU-dynamo=False-dynamic", torch.nn.GRU, {}, dict(num_layers=2, bidirectional=True, batch_first=True),
     False, True),
    ("GRU-dynamo=False-fixed", torch.nn.GRU, {}, dict(num_layers=2), False, False),
    ("GRU-dynamo=True-dynamic", torch.nn.GRU, {}, dict(num_layers=2, bidirectional=True, batch_first=True), True,
     True),
    ("RNN-tanh-dynamo=False-dynamic", torch.nn.RNN, {}, dict(num_layers=2, bidirectional=True, batch_first=True),
     False, True),
    ("RNN-relu-dynamo=False-dynamic", torch.nn.RNN, {"nonlinearity": "relu"}, dict(num_layers=1), False, True),
    ("RNN-tanh-dynamo=True-dynamic", torch.nn.RNN, {}, dict(num_layers=1), True, True),
    ("RNN-relu-dynamo=True-fixed", torch.nn.RNN, {"nonlinearity": "relu"}, dict(num_layers=1, batch_first=True),
     True, False),
]
H_EXPORT, I_EXPORT = 6, 5
EXPORT_T = {False: 7, True: 4}          # by dynamo


def export(m, cfg, dynamo, dynamic):
    T, B = EXPORT_T[dynamo], 3
    x = torch.randn(B, T, I_EXPORT) if cfg.get("batch_first") else torch.randn(T, B, I_EXPORT)
    D = 2 if cfg.get("bidirectional") else 1
    h0 = torch.zeros(cfg.get("num_layers", 1) * D, B, H_EXPORT)
    kwargs = dict(input_names=["input", "h0"], output_names=["output", "h_n"])
    bt = (0, 1) if cfg.get("batch_first") else (1, 0)
    if dynamic and not dynamo:
        kwargs["dynamic_axes"] = {"input": {bt[0]: "B", bt[1]: "T"}, "h0": {1: "B"}}
    if dynamic and dynamo:
        Bd, Td = torch.export.Dim("B", min=1), torch.export.Dim("T", min=1)
        kwargs["dynamic_shapes"] = ({bt[0]: Bd, bt[1]: Td}, {1: Bd})
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(m, (x, h0), None if dynamo else buf, dynamo=dynamo, **kwargs)
    if dynamo:
        return prog.model_proto.SerializeToString()
    return buf.getvalue()


@pytest.fixture(scope="module", params=EXPORTS, ids=[e[0] for e in EXPORTS])
def exported(request):
    name, cls, extra, cfg, dynamo, dynamic = request.param
    torch.manual_seed(11)
    m = cls(I_EXPORT, H_EXPORT, **cfg, **extra).eval()
    return m, cfg, export(m, cfg, dynamo, dynamic), dynamic, dynamo


def test_exported_models_match_torch_and_onnxruntime(exported):
    import onnx
    m, cfg, data, dynamic, dynamo = exported
    sess = engine.Session(data)                          # ONNX bytes: converted in memory
    ref_sess = ort_session(onnx.load_from_string(data))
    # the dynamo exporter bakes the example's sequence length into the graph even with a dynamic time axis
    # (onnxruntime refuses other lengths too); only the batch varies for those exports, and only where the exported
    # graph keeps it symbolic (for a time-major bidirectional nn.GRU, torch.export specializes it to the example's)
    batch_axis = 0 if cfg.get("batch_first") else 1
    batch_dim = onnx.load_from_string(data).graph.input[0].type.tensor_type.shape.dim[batch_axis]
    if dynamic and not dynamo:
        assert batch_dim.dim_param
    T0 = EXPORT_T[dynamo]
    shapes = ([(T0, 3)] + ([(T0, 2), (T0, 1)] if batch_dim.dim_param else []) if dynamic and dynamo else
              [(T0, 3), (12, 2), (1, 1)] if dynamic else [(T0, 3)])
    rng = np.random.default_rng(4)
    for T, B in shapes:
        x, h0 = layer_inputs(cfg, T, B, I_EXPORT, H_EXPORT, rng)
        feeds = {"input": x, "h0": h0}
        got = sess.run(None, feeds)
        assert len(got) == 2
        for g, r in zip(got, torch_layer_run(m, x, h0)):
            assert max_abs_diff(g, r) <= 1e-5
        for g, r in zip(got, ref_sess.run(None, feeds)):
            assert max_abs_diff(g, r) <= 1e-5


# ---------------------------------------------------------------------- streaming
def concat_states(state, suffix):
    keys = sorted(k for k in state if k.endswith(suffix))
    assert keys, f"no state ending in {suffix}: {sorted(state)}"
    return np.concatenate([state[k] for k in keys])


@pytest.mark.parametrize("cls,extra,cfg,B", [
    (torch.nn.GRU, {}, dict(num_layers=3), 2),
    (torch.nn.GRU, {}, dict(num_layers=2, batch_first=True, bias=False), 3),
    (torch.nn.RNN, {}, dict(num_layers=2), 2),
    (torch.nn.RNN, {"nonlinearity": "relu"}, dict(num_layers=2, batch_first=True), 1),
], ids=["GRU-3-layers", "GRU-batch-first-no-bias", "RNN-tanh-2-layers", "RNN-relu-batch-first"])
def test_layer_step_by_step_equals_full_sequence(cls, extra, cfg, B):
    torch.manual_seed(1)
    m = cls(5, 7, **cfg, **extra).eval()
    sess = engine.Session(converters.from_torch(m))
    bf = cfg.get("batch_first", False)
    x = np.random.default_rng(0).standard_normal((B, 20, 5) if bf else (20, B, 5)).astype(np.float32)
    full_y, full_h = sess.run(None, {"input": x})
    ref_y, ref_h = torch_layer_run(m, x)
    assert max_abs_diff(full_y, ref_y) <= 1e-5
    stream = sess.stream(batch_size=B)
    ys = [stream.step(x[:, t] if bf else x[t]) for t in range(20)]
    assert all(y.shape == (B, 7) for y in ys)
    y = np.stack(ys, axis=1 if bf else 0)
    assert max_abs_diff(y, full_y) <= 1e-5
    state = stream.state
    assert all(k.endswith("/h") for k in state), sorted(state)      # no cell state for GRU / RNN
    assert max_abs_diff(concat_states(state, "/h"), full_h) <= 1e-5
    stream.reset()
    assert all(not v.any() for v in stream.state.values())
    assert max_abs_diff(stream.step(x[:, 0] if bf else x[0]), full_y[:, 0] if bf else full_y[0]) <= 1e-5


@pytest.mark.parametrize("cls,extra", CELLS)
def test_cell_stream_equals_torch_cell_step_by_step(cls, extra):
    torch.manual_seed(2)
    I, H, B, T = 5, 6, 3, 15
    cell = cls(I, H, **extra).eval()
    sess = engine.Session(converters.from_torch(cell))
    xs = np.random.default_rng(3).standard_normal((T, B, I)).astype(np.float32)
    stream = sess.stream(batch_size=B)
    lstm = isinstance(cell, torch.nn.LSTMCell)
    state = None
    for t in range(T):
        ref = torch_cell_run(cell, xs[t], state)
        state = ref
        y = stream.step(xs[t])
        assert y.shape == (B, H)
        assert max_abs_diff(y, ref[0]) <= 1e-5, t
    st = stream.state
    assert sorted(k[-2:] for k in st) == (["/c", "/h"] if lstm else ["/h"])
    assert max_abs_diff(concat_states(st, "/h").reshape(B, H), state[0]) <= 1e-5
    if lstm:
        assert max_abs_diff(concat_states(st, "/c").reshape(B, H), state[1]) <= 1e-5
    # the same steps through Session.run, feeding the state back by hand
    run_state = {}
    for t in range(T):
        outs = sess.run(None, {"input": xs[t], **run_state})
        run_state = dict(zip(["hx", "cx"], outs))
    assert max_abs_diff(outs[0], y) <= 1e-5
    # reset: back to the zero state; assigning a saved state resumes from it
    saved = stream.state
    stream.reset()
    assert all(not v.any() for v in stream.state.values())
    assert max_abs_diff(stream.step(xs[0]), torch_cell_run(cell, xs[0])[0]) <= 1e-5
    stream.state = saved
    nxt = np.random.default_rng(4).standard_normal((B, I)).astype(np.float32)
    assert max_abs_diff(stream.step(nxt), torch_cell_run(cell, nxt, state)[0]) <= 1e-5


def test_bidirectional_gru_cannot_stream():
    sess = engine.Session(converters.from_torch(torch.nn.GRU(3, 4, bidirectional=True)))
    with pytest.raises(UnsupportedModelError, match="whole sequence"):
        sess.stream()


@pytest.mark.parametrize("cls", [torch.nn.GRU, torch.nn.RNN])
def test_onnx_exported_model_streams(cls):
    torch.manual_seed(4)
    m = cls(5, 6, num_layers=2).eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (torch.randn(9, 1, 5),), buf, dynamo=False, input_names=["input"],
                          output_names=["output", "h_n"], dynamic_axes={"input": {0: "T", 1: "B"}})
    sess = engine.Session(buf.getvalue())
    x = np.random.default_rng(3).standard_normal((9, 2, 5)).astype(np.float32)
    full = sess.run(None, {"input": x})[0]
    assert max_abs_diff(full, torch_layer_run(m, x)[0]) <= 1e-5
    stream = sess.stream(batch_size=2)
    y = np.stack([stream.step(x[t]) for t in range(9)])
    assert max_abs_diff(y, full) <= 1e-5
