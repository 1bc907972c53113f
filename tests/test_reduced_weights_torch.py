"""Reduced-precision weights through the converters that need torch and against onnxruntime's int8 model:
from_torch (modules, state dicts, whole modules through the exporter) and from_onnx with weights=..., compared with
torch in float32; the int8 error against float32 next to onnxruntime's DynamicQuantizeLSTM on the same inputs."""
import warnings

import numpy as np
import pytest
import torch

import converters
import engine
from engine.errors import ConversionError
from lstm_util import max_abs_diff

pytestmark = pytest.mark.slow   # torch, onnxruntime

ERROR_BOUND = {"bfloat16": 2e-2, "int8": 6e-2}


def _torch_outputs(m, x):
    with torch.no_grad():
        y, state = m(torch.from_numpy(x))
    states = state if isinstance(state, tuple) else (state,)
    return [y.numpy()] + [s.numpy() for s in states]


@pytest.mark.parametrize("weights", ["bfloat16", "int8"])
@pytest.mark.parametrize("cls,kw", [(torch.nn.LSTM, dict(num_layers=2, bidirectional=True)),
                                    (torch.nn.LSTM, dict(proj_size=5)),          # decoded: no reduced kernel
                                    (torch.nn.GRU, dict(batch_first=True)),
                                    (torch.nn.RNN, dict(nonlinearity="relu"))])
def test_from_torch_modules(cls, kw, weights, tmp_path):
    torch.manual_seed(0)
    m = cls(12, 32, **kw).eval()
    x = np.random.default_rng(0).standard_normal((2, 20, 12) if kw.get("batch_first") else (20, 2, 12))
    x = x.astype(np.float32)
    ref = _torch_outputs(m, x)
    path = tmp_path / "m.lstm"
    model = converters.from_torch(m, path, weights=weights)
    assert model.origin["weights"] == weights and engine.load(path).weight_encodings
    got = engine.Session(path, threads=1).run(None, {"input": x})
    for g, r in zip(got, ref):
        assert max_abs_diff(g, r) <= ERROR_BOUND[weights]
    # the state dict path (torch_to_model) takes the option too
    sd = converters.from_torch(m.state_dict(), weights=weights, batch_first=kw.get("batch_first", False),
                               **({"nonlinearity": "relu"} if kw.get("nonlinearity") else {}))
    assert sd.weight_encodings.keys() == model.weight_encodings.keys()


def test_from_torch_whole_module_and_bad_value():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(8, 24, batch_first=True)
            self.head = torch.nn.Linear(24, 3)

        def forward(self, x):
            return self.head(self.lstm(x)[0])
    torch.manual_seed(0)
    net = Net().eval()
    x = np.random.default_rng(1).standard_normal((2, 15, 8)).astype(np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = converters.from_torch(net, example_input=torch.from_numpy(x), weights="int8")
    assert len(model.weight_encodings) == 2        # the LSTM's W and R; the Linear stays float32
    got = engine.Session(model).run(None, {"input": x})[0]
    assert max_abs_diff(got, ref) <= ERROR_BOUND["int8"]
    with pytest.raises(ConversionError, match="not one of float32, bfloat16, int8"):
        converters.from_torch(net, example_input=torch.from_numpy(x), weights="float16")


@pytest.fixture(scope="module")
def onnx_lstm(tmp_path_factory):
    """A torch LSTM (I = H = 128) exported to ONNX, and onnxruntime's dynamic int8 quantization of it."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    torch.manual_seed(0)
    m = torch.nn.LSTM(128, 128).eval()
    d = tmp_path_factory.mktemp("q")
    src, q = str(d / "lstm.onnx"), str(d / "lstm_int8.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (torch.zeros(3, 1, 128),), src, dynamo=False, input_names=["input"],
                          output_names=["output", "h_n", "c_n"], dynamic_axes={"input": {0: "T", 1: "B"}})
        quantize_dynamic(src, q, weight_type=QuantType.QInt8)
    return src, q


def test_from_onnx_errors_against_float32_and_onnxruntime_int8(onnx_lstm, tmp_path):
    import onnx
    import onnxruntime as ort
    src, q = onnx_lstm
    assert "DynamicQuantizeLSTM" in [n.op_type for n in onnx.load(q).graph.node]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    f32, i8 = (ort.InferenceSession(p, options, providers=["CPUExecutionProvider"]) for p in (src, q))
    rng = np.random.default_rng(2)
    ours = {w: engine.Session(converters.from_onnx(src, tmp_path / f"{w}.lstm", weights=w), threads=1)
            for w in ("float32", "bfloat16", "int8")}
    for T, B in ((100, 1), (30, 4)):
        x = rng.standard_normal((T, B, 128)).astype(np.float32)
        ref = f32.run(None, {"input": x})
        ort_err = max(max_abs_diff(a, b) for a, b in zip(i8.run(None, {"input": x}), ref))
        err = {w: max(max_abs_diff(a, b) for a, b in zip(s.run(None, {"input": x}), ref)) for w, s in ours.items()}
        assert err["float32"] <= 1e-5
        assert err["bfloat16"] <= 2e-2
        assert err["int8"] <= ort_err, (err, ort_err)
