"""float16 models: weights widened to float32 at conversion, float16 inputs accepted, outputs returned in float16 as
the model declares. The oracle is the same graph in float32 on onnxruntime (the weights are exactly representable
in float16, so the two differ only by the final rounding to float16)."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

pytestmark = pytest.mark.slow   # onnxruntime

import onnxruntime as ort  # noqa: E402

import engine  # noqa: E402
from converters import from_onnx  # noqa: E402


def _graph(dtype):
    """X [T, B, 8] -> LSTM(16) -> Y [T, 1, B, 16] -> Squeeze -> MatMul (16, 4) -> Add -> Tanh, plus a constant
    Cast to the float type of the graph (a float32 constant cast, as exporters write)."""
    rng = np.random.default_rng(0)
    elem = TensorProto.FLOAT16 if dtype == np.float16 else TensorProto.FLOAT

    def init(name, shape, scale=0.3):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float16).astype(dtype), name)
    inits = [init("W", (1, 64, 8)), init("R", (1, 64, 16)), init("B", (1, 128), 0.1), init("M", (16, 4)),
             numpy_helper.from_array(np.array([0.25, -0.5, 1.0, 0.0], np.float32), "bias32")]
    nodes = [helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y"], hidden_size=16),
             helper.make_node("Squeeze", ["Y", "one"], ["Ys"]),
             helper.make_node("MatMul", ["Ys", "M"], ["P"]),
             helper.make_node("Cast", ["bias32"], ["bias"], to=elem),
             helper.make_node("Add", ["P", "bias"], ["Q"]),
             helper.make_node("Tanh", ["Q"], ["out"])]
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "one"))
    g = helper.make_graph(nodes, "half", [helper.make_tensor_value_info("X", elem, ["T", "B", 8])],
                          [helper.make_tensor_value_info("out", elem, ["T", "B", 4])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_float16_model_against_its_float32_twin(tmp_path):
    half, full = _graph(np.float16), _graph(np.float32)
    onnx.checker.check_model(half)
    path = tmp_path / "half.lstm"
    model = from_onnx(half.SerializeToString(), str(path))
    assert model.dtype == "float32" and model.inputs[0].dtype == "float16" and model.outputs[0].dtype == "float16"
    sess = engine.Session(str(path))
    assert sess.get_inputs()[0].type == "tensor(float16)" and sess.get_outputs()[0].type == "tensor(float16)"
    ref = ort.InferenceSession(full.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    for T, B in ((1, 1), (7, 3), (40, 2)):
        x = rng.standard_normal((T, B, 8)).astype(np.float16)
        (y,) = sess.run(None, {"X": x})
        (y32,) = sess.run(None, {"X": x.astype(np.float32)})        # any float input is accepted
        (r,) = ref.run(None, {"X": x.astype(np.float32)})
        assert y.dtype == np.float16 and y.shape == (T, B, 4)
        assert np.abs(y.astype(np.float32) - r).max() <= 1e-3         # float16 rounding of outputs in [-1, 1]
        np.testing.assert_array_equal(y, y32)
    stream = sess.stream()
    x = rng.standard_normal((5, 1, 8)).astype(np.float16)
    steps = np.stack([stream.step(x[t]) for t in range(5)])
    assert steps.dtype == np.float16
    np.testing.assert_array_equal(steps, sess.run(None, {"X": x})[0])


def test_float16_model_against_onnxruntime_float16_when_it_runs():
    half = _graph(np.float16)
    try:
        ref = ort.InferenceSession(half.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as e:   # onnxruntime's CPU provider has no float16 LSTM kernel in some versions
        pytest.skip(f"onnxruntime cannot run this float16 graph: {str(e).splitlines()[0][:120]}")
    sess = engine.Session(from_onnx(half.SerializeToString()))
    x = np.random.default_rng(2).standard_normal((9, 2, 8)).astype(np.float16)
    (y,) = sess.run(None, {"X": x})
    (r,) = ref.run(None, {"X": x})
    assert r.dtype == np.float16 and np.abs(y.astype(np.float32) - r.astype(np.float32)).max() <= 1e-2
