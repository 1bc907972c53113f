"""converters.from_torch and models from both PyTorch ONNX exporters, compared with torch itself (and onnxruntime)."""
import io
import itertools
import warnings

import numpy as np
import pytest
import torch

import converters
import engine
from engine.errors import ConversionError
from lstm_util import max_abs_diff, ort_session

pytestmark = pytest.mark.slow   # torch

CONFIGS = [dict(num_layers=L, bidirectional=bd, batch_first=bf, bias=bias, proj_size=proj)
           for L, bd, bf, bias, proj in [
               (1, False, False, True, 0), (2, False, False, True, 0), (3, False, True, True, 0),
               (1, True, False, True, 0), (2, True, True, True, 0), (1, False, False, False, 0),
               (2, True, False, False, 0), (1, False, False, True, 4), (2, True, True, True, 3),
               (3, False, False, False, 5)]]


def torch_run(m, x, state=None):
    with torch.no_grad():
        y, (h, c) = m(torch.from_numpy(x), None if state is None else tuple(torch.from_numpy(s) for s in state))
    return [y.numpy(), h.numpy(), c.numpy()]


def make_inputs(cfg, T, B, I, H, rng):
    D = 2 if cfg["bidirectional"] else 1
    Hout = cfg["proj_size"] or H
    x = rng.standard_normal((B, T, I) if cfg["batch_first"] else (T, B, I)).astype(np.float32)
    h0 = rng.standard_normal((cfg["num_layers"] * D, B, Hout)).astype(np.float32)
    c0 = rng.standard_normal((cfg["num_layers"] * D, B, H)).astype(np.float32)
    return x, h0, c0


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_from_torch_matches_torch(cfg):
    torch.manual_seed(0)
    I, H = 6, 8
    m = torch.nn.LSTM(I, H, **cfg).eval()
    sess = engine.Session(converters.from_torch(m))
    assert [i.name for i in sess.get_inputs()] == ["input", "h0", "c0"]
    assert [o.name for o in sess.get_outputs()] == ["output", "h_n", "c_n"]
    rng = np.random.default_rng(1)
    for T, B in [(1, 1), (13, 3)]:
        x, h0, c0 = make_inputs(cfg, T, B, I, H, rng)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = torch_run(m, x, (h0, c0))
            ref0 = torch_run(m, x)
        got = sess.run(None, {"input": x, "h0": h0, "c0": c0})
        got0 = sess.run(None, {"input": x})              # h0/c0 optional: zeros, as in torch
        for g, r in itertools.chain(zip(got, ref), zip(got0, ref0)):
            assert g.shape == r.shape
            assert max_abs_diff(g, r) <= 1e-5


def test_from_torch_float64_matches_torch_in_double():
    torch.manual_seed(3)
    m = torch.nn.LSTM(5, 7, num_layers=2, bidirectional=True).double().eval()
    model = converters.from_torch(m, dtype="float64")
    x = np.random.default_rng(2).standard_normal((30, 2, 5))
    with torch.no_grad():
        ref = m(torch.from_numpy(x))
    got = engine.Session(model).run(None, {"input": x})
    assert got[0].dtype == np.float64
    assert max_abs_diff(got[0], ref[0].numpy()) <= 1e-12
    assert max_abs_diff(got[1], ref[1][0].numpy()) <= 1e-12


def test_state_dict_sources(tmp_path):
    """A module, its state dict, a torch.save'd file (weights_only loading), a safetensors file, and a state dict
    nested under a prefix all give the same model."""
    from safetensors.torch import save_file

    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Linear(3, 4)
            self.lstm = torch.nn.LSTM(4, 6, num_layers=2, batch_first=True)

    torch.manual_seed(5)
    w = Wrapper().eval()
    torch.save(w.lstm.state_dict(), tmp_path / "lstm.pt")
    torch.save(w.state_dict(), tmp_path / "wrapper.pt")
    save_file(w.lstm.state_dict(), str(tmp_path / "lstm.safetensors"))
    x = np.random.default_rng(0).standard_normal((2, 9, 4)).astype(np.float32)
    ref = torch_run(w.lstm, x)
    sources = [w.lstm, w.lstm.state_dict(), tmp_path / "lstm.pt", tmp_path / "lstm.safetensors",
               tmp_path / "wrapper.pt", w.state_dict()]
    for src in sources:
        model = converters.from_torch(src, batch_first=True)
        got = engine.Session(model).run(None, {"input": x})
        assert max(max_abs_diff(g, r) for g, r in zip(got, ref)) <= 1e-5, src


def test_bad_state_dicts_are_refused_clearly(tmp_path):
    sd = torch.nn.LSTM(4, 6).state_dict()
    missing = {k: v for k, v in sd.items() if k != "weight_hh_l0"}
    with pytest.raises(ConversionError, match="weight_hh_l0"):
        converters.from_torch(missing)
    wrong = dict(sd)
    wrong["bias_hh_l0"] = torch.zeros(5)
    with pytest.raises(ConversionError, match="bias_hh_l0 has shape"):
        converters.from_torch(wrong)
    two = {**{f"a.{k}": v for k, v in sd.items()}, **{f"b.{k}": v for k, v in sd.items()}}
    with pytest.raises(ConversionError, match="several recurrent layers"):
        converters.from_torch(two)
    with pytest.raises(ConversionError, match="no recurrent weights"):
        converters.from_torch({"fc.weight": torch.zeros(2, 2)})
    with pytest.raises(ConversionError, match="not found"):
        converters.from_torch(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ConversionError, match="weights_only"):
        converters.from_torch(tmp_path / "junk.pt")


def test_pickled_code_in_a_state_dict_is_not_executed(tmp_path):
    """torch.load(weights_only=True) refuses arbitrary objects: a file that would run code on unpickling is an error."""
    import pickle

    class Evil:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"weight_ih_l0": Evil()}, f)
    with pytest.raises(ConversionError):
        converters.from_torch(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


# ---------------------------------------------------------------------- both ONNX exporters
EXPORTS = [
    ("dynamo=False-dynamic", False, dict(num_layers=2, bidirectional=True, batch_first=True), True),
    ("dynamo=False-fixed", False, dict(num_layers=2), False),
    ("dynamo=True-dynamic", True, dict(num_layers=2, bidirectional=True, batch_first=False), True),
    ("dynamo=True-fixed", True, dict(num_layers=1, batch_first=True), False),
]


def export(m, cfg, dynamo, dynamic):
    T, B = 7, 3
    x = torch.randn(B, T, 5) if cfg.get("batch_first") else torch.randn(T, B, 5)
    D = 2 if cfg.get("bidirectional") else 1
    h0 = torch.zeros(cfg.get("num_layers", 1) * D, B, 6)
    kwargs = dict(input_names=["input", "h0", "c0"], output_names=["output", "h_n", "c_n"])
    bt = (0, 1) if cfg.get("batch_first") else (1, 0)
    if dynamic and not dynamo:
        kwargs["dynamic_axes"] = {"input": {bt[0]: "B", bt[1]: "T"}, "h0": {1: "B"}, "c0": {1: "B"}}
    if dynamic and dynamo:
        Bd, Td = torch.export.Dim("B", min=1), torch.export.Dim("T", min=1)
        kwargs["dynamic_shapes"] = ({bt[0]: Bd, bt[1]: Td}, ({1: Bd}, {1: Bd}))
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(m, (x, (h0, h0.clone())), None if dynamo else buf, dynamo=dynamo, **kwargs)
    if dynamo:
        return prog.model_proto.SerializeToString()
    return buf.getvalue()


@pytest.fixture(scope="module", params=EXPORTS, ids=[e[0] for e in EXPORTS])
def exported(request):
    name, dynamo, cfg, dynamic = request.param
    torch.manual_seed(11)
    m = torch.nn.LSTM(5, 6, **cfg).eval()
    return m, cfg, export(m, cfg, dynamo, dynamic), dynamic, dynamo


def test_exported_models_match_torch_and_onnxruntime(exported):
    import onnx
    m, cfg, data, dynamic, dynamo = exported
    sess = engine.Session(data)                          # ONNX bytes: converted in memory
    ref_sess = ort_session(onnx.load_from_string(data))
    # the dynamo exporter bakes the example's sequence length into the last Reshape even with a dynamic time axis
    # (onnxruntime refuses other lengths too); only the batch varies for those exports
    shapes = [(7, 3), (7, 2), (7, 1)] if dynamic and dynamo else [(7, 3), (12, 2), (1, 1)] if dynamic else [(7, 3)]
    D = 2 if cfg.get("bidirectional") else 1
    rng = np.random.default_rng(4)
    for T, B in shapes:
        x = rng.standard_normal((B, T, 5) if cfg.get("batch_first") else (T, B, 5)).astype(np.float32)
        h0 = rng.standard_normal((cfg["num_layers"] * D, B, 6)).astype(np.float32)
        c0 = rng.standard_normal((cfg["num_layers"] * D, B, 6)).astype(np.float32)
        feeds = {"input": x, "h0": h0, "c0": c0}
        got = sess.run(None, feeds)
        for g, r in zip(got, torch_run(m, x, (h0, c0))):
            assert max_abs_diff(g, r) <= 1e-5
        for g, r in zip(got, ref_sess.run(None, feeds)):
            assert max_abs_diff(g, r) <= 1e-5


def test_dynamo_export_with_weight_subgraphs_is_folded():
    """dynamo=True with optimize=False keeps the gate-reordering Slice/Concat of the weights in the graph: the
    converter must fold them into constants."""
    torch.manual_seed(2)
    m = torch.nn.LSTM(4, 5, num_layers=2).eval()
    x = torch.randn(6, 2, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(m, (x,), None, dynamo=True, optimize=False, input_names=["input"])
    proto = prog.model_proto
    ops = {n.op_type for n in proto.graph.node}
    assert "LSTM" in ops and len(proto.graph.node) > 3
    model = converters.from_onnx(proto)
    assert [n.op for n in model.nodes].count("LSTM") == 2
    got = engine.Session(model).run(None, {model.inputs[0].name: x.numpy()})
    ref = torch_run(m, x.numpy())
    assert max_abs_diff(got[0], ref[0]) <= 1e-5


def test_a_sequence_length_baked_in_by_the_exporter_is_a_clear_error(exported):
    m, cfg, data, dynamic, dynamo = exported
    if not (dynamic and dynamo):
        pytest.skip("only the dynamo exporter bakes the length into a dynamic-axis graph")
    sess = engine.Session(data)
    D = 2 if cfg.get("bidirectional") else 1
    z = np.zeros((cfg["num_layers"] * D, 2, 6), np.float32)
    with pytest.raises(engine.InvalidInputError, match="Reshape.*cannot be reshaped"):
        sess.run(None, {"input": np.zeros((12, 2, 5), np.float32), "h0": z, "c0": z})
