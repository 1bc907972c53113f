"""The converter's fusions (converters/onnx/fusion.py) against onnxruntime on the same ONNX graphs: a spelled-out STFT
magnitude becomes one Conv with ``magnitude`` and a spelled-out LSTM cell one LSTM node, in every operand order and
gate order the pattern allows; where an intermediate value is read elsewhere (or the shapes differ) the graph is left
as it is, and still runs right. And torch's own exports: nn.LSTMCell through both exporters."""
import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

import converters
import engine

pytestmark = pytest.mark.slow

rng = np.random.default_rng(11)
F = TensorProto.FLOAT


def ort_run(m, feed):
    sess = onnxruntime.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feed)


def ops_of(model):
    return [n.op for n in model.all_nodes()]


def graph(nodes, inputs, outputs, inits, opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(np.asarray(v), k)
                                                        for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8

    return m


def check(m, feed, tol=1e-5):
    got = engine.Session(m.SerializeToString()).run(None, feed)
    ref = ort_run(m, feed)
    for g, r in zip(got, ref):
        assert g.shape == r.shape
        scale = max(1.0, float(np.abs(r).max(initial=0.0)))
        diff = float(np.abs(g - r).max(initial=0.0))
        assert diff <= tol * scale, f"max abs diff {diff:.3g}"


# ---------------------------------------------------------------------- STFT magnitude
def dft_weights(N, sign=-1.0):
    k = np.arange(N)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * k / N)
    angle = 2 * np.pi * np.arange(N // 2 + 1)[:, None] * k / N
    return np.concatenate([hann * np.cos(angle), sign * hann * np.sin(angle)])[:, None, :].astype(np.float32)


def magnitude_model(N=64, hop=32, square="pow", frames=None, swap=False, extra_output=None, identity=False):
    """x (B, 1, L) -> Conv(DFT) -> Slice re / im on axis 1 (``frames``: a further Slice of axis 2 on both) ->
    squares -> Add -> Sqrt."""
    nb = N // 2 + 1
    nodes = [helper.make_node("Conv", ["x", "W"], ["spec"], strides=[hop])]
    inits = {"W": dft_weights(N), "two": np.array(2.0, np.float32)}
    outs = []
    for part, (s, e) in (("re", (0, nb)), ("im", (nb, 2 * nb))):
        inits[f"{part}_s"], inits[f"{part}_e"], inits["ax1"] = np.array([s]), np.array([e]), np.array([1])
        nodes.append(helper.make_node("Slice", ["spec", f"{part}_s", f"{part}_e", "ax1"], [f"{part}0"]))
        cur = f"{part}0"
        if frames is not None:
            inits["f_s"], inits["f_e"], inits["ax2"] = np.array([frames[0]]), np.array([frames[1]]), np.array([2])
            nodes.append(helper.make_node("Slice", [cur, "f_s", "f_e", "ax2"], [f"{part}1"]))
            cur = f"{part}1"
        if identity:
            nodes.append(helper.make_node("Identity", [cur], [f"{part}2"]))
            cur = f"{part}2"
        if square == "pow":
            nodes.append(helper.make_node("Pow", [cur, "two"], [f"{part}sq"]))
        else:
            nodes.append(helper.make_node("Mul", [cur, cur], [f"{part}sq"]))
        outs.append(f"{part}sq")
    nodes.append(helper.make_node("Add", outs[::-1] if swap else outs, ["power"]))
    nodes.append(helper.make_node("Sqrt", ["power"], ["mag"]))
    outputs = [helper.make_tensor_value_info("mag", F, None)]
    if extra_output:
        outputs.append(helper.make_tensor_value_info(extra_output, F, None))
    return graph(nodes, [helper.make_tensor_value_info("x", F, ["B", 1, "L"])], outputs, inits)


@pytest.mark.parametrize("square,frames,swap,identity", [("pow", None, False, False), ("mul", None, True, False),
                                                         ("pow", (1, 1 << 40), False, True), ("mul", (0, 3), True, True),
                                                         ("pow", (3, 1 << 62), True, False)])
def test_a_spelled_out_stft_magnitude_is_one_conv(square, frames, swap, identity):
    m = magnitude_model(square=square, frames=frames, swap=swap, identity=identity)
    model = converters.from_onnx(m)
    ops = ops_of(model)
    assert "Sqrt" not in ops and "Pow" not in ops and ops.count("Conv") == 1
    conv = next(n for n in model.all_nodes() if n.op == "Conv")
    assert conv.attrs["magnitude"] is True
    dropped = frames is not None and frames[1] >= 2 ** 31      # frames k: on: the conv's first_output, no Slice
    assert ops.count("Slice") == (1 if frames and not dropped else 0)
    assert conv.attrs.get("first_output", 0) == (frames[0] if dropped else 0)
    listing = engine.Session(model).program({"x": (2, 1, 300)})
    assert "magnitude" in listing and "sqrt" not in listing
    for B, L in ((1, 64), (2, 300), (3, 517)):
        check(m, {"x": rng.standard_normal((B, 1, L)).astype(np.float32)})


def test_an_stft_whose_parts_are_read_elsewhere_is_left_as_it_is():
    m = magnitude_model(extra_output="re0")       # the real half is also an output
    ops = ops_of(converters.from_onnx(m))
    assert "Sqrt" in ops and all(not n.attrs.get("magnitude") for n in converters.from_onnx(m).all_nodes())
    check(m, {"x": rng.standard_normal((2, 1, 200)).astype(np.float32)})


def test_a_magnitude_conv_without_a_dft_basis_is_a_clear_error():
    m = magnitude_model()
    model = converters.from_onnx(m)
    conv = next(n for n in model.all_nodes() if n.op == "Conv")
    model.tensors[conv.inputs[1]] = model.tensors[conv.inputs[1]] + np.float32(1e-2)
    with pytest.raises(engine.ModelFileError, match="magnitude needs W to be a windowed DFT basis"):
        engine.Session(model)


# ---------------------------------------------------------------------- LSTM cell
def cell_model(I=5, H=6, order="ifgo", bias=(True, True), swap=False, c_shape=None, h_out_extra=False, gemm=False):
    """x (B, I), h (B, H), c (B, H) -> gates = x @ Wx (+ bx) + h @ Wh (+ bh), split in four in ``order``, then
    c' = f * c + i * g, h' = o * tanh(c'); outputs h', c'. ``swap``: every commutative operand the other way."""
    nodes, inits = [], {"Wx": rng.standard_normal((I, 4 * H)).astype(np.float32) * 0.4,
                        "Wh": rng.standard_normal((H, 4 * H)).astype(np.float32) * 0.4,
                        "bx": rng.standard_normal(4 * H).astype(np.float32) * 0.3,
                        "bh": rng.standard_normal(4 * H).astype(np.float32) * 0.3}
    terms = []
    for v, W, b, use in (("x", "Wx", "bx", bias[0]), ("h", "Wh", "bh", bias[1])):
        nodes.append(helper.make_node("MatMul", [v, W], [v + "W"]))
        if use:
            nodes.append(helper.make_node("Add", [b, v + "W"] if swap else [v + "W", b], [v + "Wb"]))
        terms.append(v + "Wb" if use else v + "W")
    nodes.append(helper.make_node("Add", terms[::-1] if swap else terms, ["gates"]))
    inits["split"] = np.array([H] * 4)
    nodes.append(helper.make_node("Split", ["gates", "split"], [f"s_{g}" for g in order], axis=1))
    for g in order:
        nodes.append(helper.make_node("Tanh" if g == "g" else "Sigmoid", [f"s_{g}"], [g]))

    def mul(a, b, out):
        nodes.append(helper.make_node("Mul", [b, a] if swap else [a, b], [out]))
    mul("f", "c", "fc")
    mul("i", "g", "ig")
    nodes.append(helper.make_node("Add", ["ig", "fc"] if swap else ["fc", "ig"], ["c_new"]))
    nodes.append(helper.make_node("Tanh", ["c_new"], ["tc"]))
    mul("o", "tc", "h_new")
    outputs = [helper.make_tensor_value_info(n, F, None) for n in ("h_new", "c_new")]
    if h_out_extra:
        outputs.append(helper.make_tensor_value_info("ig", F, None))
    ins = [helper.make_tensor_value_info("x", F, ["B", I]), helper.make_tensor_value_info("h", F, ["B", H]),
           helper.make_tensor_value_info("c", F, c_shape or ["B", H])]
    return graph(nodes, ins, outputs, inits)


def cell_feed(I=5, H=6, B=3, c_cols=None):
    return {"x": rng.standard_normal((B, I)).astype(np.float32), "h": rng.standard_normal((B, H)).astype(np.float32),
            "c": rng.standard_normal((B, c_cols or H)).astype(np.float32)}


@pytest.mark.parametrize("order,bias,swap,I", [("ifgo", (True, True), False, 5), ("iofg", (False, True), True, 6),
                                               ("gofi", (True, False), False, 9), ("fgio", (False, False), True, 3)])
def test_a_spelled_out_lstm_cell_is_one_lstm_node(order, bias, swap, I):
    m = cell_model(I=I, order=order, bias=bias, swap=swap)
    model = converters.from_onnx(m)
    ops = ops_of(model)
    assert ops.count("LSTM") == 1 and not {"Split", "Sigmoid", "Tanh", "MatMul"} & set(ops), ops
    for B in (1, 3):
        check(m, cell_feed(I=I, B=B))


def test_a_cell_whose_gates_are_read_elsewhere_or_whose_state_broadcasts_is_left_as_it_is():
    for m, feed in ((cell_model(h_out_extra=True), cell_feed()),
                    (cell_model(c_shape=["B", 1]), cell_feed(c_cols=1))):
        ops = ops_of(converters.from_onnx(m))
        assert "LSTM" not in ops and "Split" in ops
        check(m, feed)


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_torch_lstm_cell_exports_run_as_an_lstm_node(tmp_path, dynamo):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)

    class Cell(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = torch.nn.LSTMCell(7, 16)

        def forward(self, x, h, c):
            return self.cell(x, (h, c))

    module = Cell().eval()
    x, h, c = torch.randn(2, 7), torch.randn(2, 16), torch.randn(2, 16)
    path = tmp_path / "cell.onnx"
    torch.onnx.export(module, (x, h, c), str(path), input_names=["x", "h", "c"], output_names=["hn", "cn"],
                      dynamo=dynamo, opset_version=18)
    m = onnx.load(str(path))
    model = converters.from_onnx(m)
    assert "LSTM" in ops_of(model), ops_of(model)
    feed = {"x": x.numpy(), "h": h.numpy(), "c": c.numpy()}
    check(m, feed)
    with torch.no_grad():
        ref = [t.numpy() for t in module(x, h, c)]
    got = engine.Session(model).run(None, feed)
    for g, r in zip(got, ref):
        assert np.abs(g - r).max() <= 1e-5


# ---------------------------------------------------------------------- Conv: reflect Pad in front, Relu after
def padded_conv_model(pads, W, unsqueeze=True, relu=True, pad_axis_last=True, conv_pads=(0, 0)):
    """x (B, L) [or (B, 1, L)] -> Pad reflect -> [Unsqueeze 1] -> Conv (stride 2) -> [Relu]."""
    rank = 2 if unsqueeze else 3
    p = [0] * (2 * rank)
    axis = rank - 1 if pad_axis_last else 0
    p[axis], p[rank + axis] = pads
    inits = {"W": W, "pads": np.array(p, np.int64), "ax": np.array([1])}
    nodes = [helper.make_node("Pad", ["x", "pads"], ["xp"], mode="reflect")]
    src = "xp"
    if unsqueeze:
        nodes.append(helper.make_node("Unsqueeze", ["xp", "ax"], ["x3"]))
        src = "x3"
    nodes.append(helper.make_node("Conv", [src, "W"], ["y0"], strides=[2], pads=list(conv_pads)))
    if relu:
        nodes.append(helper.make_node("Relu", ["y0"], ["y"]))
    shape = ["B", "L"] if unsqueeze else ["B", 1, "L"]
    return graph(nodes, [helper.make_tensor_value_info("x", F, shape)],
                 [helper.make_tensor_value_info("y" if relu else "y0", F, None)], inits, opset=18)


@pytest.mark.parametrize("dft", [False, True], ids=["conv", "dft"])
@pytest.mark.parametrize("pads,unsqueeze", [((3, 3), True), ((0, 5), True), ((4, 0), False)])
def test_a_reflect_pad_and_a_relu_fold_into_the_conv(dft, pads, unsqueeze):
    W = dft_weights(16) if dft else rng.standard_normal((6, 1, 5)).astype(np.float32)
    m = padded_conv_model(pads, W, unsqueeze=unsqueeze)
    model = converters.from_onnx(m)
    ops = ops_of(model)
    assert "Pad" not in ops and "Relu" not in ops, ops
    conv = next(n for n in model.all_nodes() if n.op == "Conv")
    assert conv.attrs["pad_mode"] == "reflect" and conv.attrs["relu"] and conv.attrs["pads"] == list(pads)
    for L in (17, 40):
        x = rng.standard_normal((2, L) if unsqueeze else (2, 1, L)).astype(np.float32)
        check(m, {"x": x})
    short = np.zeros((1, 3) if unsqueeze else (1, 1, 3), np.float32)       # reflect pads must be < the length
    if max(pads) >= 3:
        with pytest.raises(engine.EngineError, match="reflect"):
            engine.Session(model).run(None, {"x": short})


@pytest.mark.parametrize("dft", [False, True], ids=["conv", "dft"])
def test_the_1d_convs_fused_relu_is_relus_rule(dft):
    """The fused Relu of the 1-D Conv (its product and its FFT kernel) gives, bit for bit, Relu's rule on the
    unfused output: positive values as they are, NaN as NaN, everything else +0.0."""
    W = dft_weights(16) if dft else rng.standard_normal((6, 1, 5)).astype(np.float32)
    x = rng.standard_normal((2, 40)).astype(np.float32)
    x[1, 7] = np.nan
    fused, plain = (engine.Session(converters.from_onnx(padded_conv_model((3, 3), W, relu=relu)))
                    .run(None, {"x": x})[0] for relu in (True, False))
    want = np.where((plain > 0) | np.isnan(plain), plain, np.float32(0))
    assert np.isnan(want).any() and (want == 0).any() and (want > 0).any()
    assert fused.tobytes() == want.tobytes()


def conv2d_relu_model(bias, also_output=False):
    """x (N, 3, 9, 11) -> Conv 3x3 (pads 1, 5 output channels, with or without a bias) -> Relu -> y; the Conv's
    output a graph output too with ``also_output``. The same weights every time."""
    weights = np.random.default_rng(5)
    inits = {"W": weights.standard_normal((5, 3, 3, 3)).astype(np.float32)}
    if bias:
        inits["b"] = weights.standard_normal(5).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "W"] + (["b"] if bias else []), ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"])]
    outputs = [helper.make_tensor_value_info("y", F, None)]
    if also_output:
        outputs.append(helper.make_tensor_value_info("c", F, None))
    return graph(nodes, [helper.make_tensor_value_info("x", F, ["N", 3, 9, 11])], outputs, inits)


@pytest.mark.parametrize("bias", [True, False])
def test_a_relu_folds_into_the_2d_conv_before_it(bias):
    m = conv2d_relu_model(bias)
    model = converters.from_onnx(m)
    assert ops_of(model) == ["Conv2D"] and next(iter(model.all_nodes())).attrs["relu"]
    x = rng.standard_normal((2, 3, 9, 11)).astype(np.float32)
    check(m, {"x": x})
    for threads in (1, 2):          # the register tiles and the BLAS
        y = engine.Session(model, threads=threads).run(None, {"x": x})[0]
        assert (y >= 0).all() and (y == 0).any() and (y > 0).any()
    x[1, 0, 4, 5] = np.nan          # NaN stays NaN through the fused Relu, as through Relu
    fused = engine.Session(model, threads=1).run(None, {"x": x})[0]
    unfused = engine.Session(converters.from_onnx(conv2d_relu_model(bias, also_output=True)),
                             threads=1).run(None, {"x": x})[0]
    assert np.isnan(fused[1]).any() and not np.isnan(fused[0]).any()
    np.testing.assert_array_equal(fused, unfused)


def test_a_2d_conv_whose_output_is_read_elsewhere_keeps_its_relu():
    m = conv2d_relu_model(True, also_output=True)
    assert ops_of(converters.from_onnx(m)) == ["Conv2D", "Relu"]
    check(m, {"x": rng.standard_normal((1, 3, 9, 11)).astype(np.float32)})


def test_a_pad_the_conv_cannot_take_stays_a_pad():
    W = rng.standard_normal((6, 1, 5)).astype(np.float32)
    for m, shape in ((padded_conv_model((2, 2), W, unsqueeze=False, pad_axis_last=False), (3, 1, 20)),
                     (padded_conv_model((2, 2), W, conv_pads=(1, 1), relu=False), (2, 20))):
        assert "Pad" in ops_of(converters.from_onnx(m))
        check(m, {"x": rng.standard_normal(shape).astype(np.float32)})


# ---------------------------------------------------------------------- Gather through Transpose
def transposed_gather_model(perm, axis, index, extra_output=False):
    """x (4, 3, 5, 2) -> Transpose(perm) -> Gather(axis, one constant index) -> y (and the transposed value too
    with ``extra_output``)."""
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=list(perm)),
             helper.make_node("Gather", ["t", "i"], ["y"], axis=axis)]
    outputs = [helper.make_tensor_value_info("y", F, None)]
    if extra_output:
        outputs.append(helper.make_tensor_value_info("t", F, None))
    return graph(nodes, [helper.make_tensor_value_info("x", F, [4, 3, 5, 2])], outputs,
                 {"i": np.asarray(index, np.int64)})


@pytest.mark.parametrize("perm,axis,index,transposes", [
    ((1, 0, 2, 3), 1, -1, 0),       # torch's batch_first output[:, -1]: what is left keeps its order
    ((1, 0, 2, 3), 0, 2, 0),
    ((0, 2, 1, 3), 2, 1, 0),
    ((3, 1, 0, 2), 0, 1, 1),        # the rest still permuted: a smaller Transpose after the Gather
    ((2, 3, 0, 1), 3, -2, 1),
])
def test_a_gather_of_one_index_moves_before_the_transpose(perm, axis, index, transposes):
    m = transposed_gather_model(perm, axis, index)
    ops = ops_of(converters.from_onnx(m))
    assert ops.count("Transpose") == transposes and ops.count("Gather") == 1, ops
    check(m, {"x": rng.standard_normal((4, 3, 5, 2)).astype(np.float32)})


def test_a_transpose_read_elsewhere_or_a_gather_of_many_indices_is_left_as_it_is():
    for m in (transposed_gather_model((1, 0, 2, 3), 1, -1, extra_output=True),
              transposed_gather_model((1, 0, 2, 3), 1, [0, 2])):
        ops = ops_of(converters.from_onnx(m))
        assert ops.index("Transpose") < ops.index("Gather"), ops
        check(m, {"x": rng.standard_normal((4, 3, 5, 2)).astype(np.float32)})


def test_a_batch_first_lstm_exported_from_torch_keeps_only_its_last_step(tmp_path):
    """nn.LSTM(batch_first=True) and out[:, -1] through the classic exporter: no Transpose of the whole output."""
    torch = pytest.importorskip("torch")

    class Last(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(3, 8, batch_first=True)

        def forward(self, x):
            return self.lstm(x)[0][:, -1]

    torch.manual_seed(0)
    path = tmp_path / "last.onnx"
    torch.onnx.export(Last().eval(), (torch.zeros(2, 5, 3),), str(path), dynamo=False, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "B", 1: "T"}})
    model = converters.from_onnx(str(path))
    after = ops_of(model)[ops_of(model).index("LSTM"):]
    assert "Transpose" not in after, after
    x = rng.standard_normal((6, 9, 3)).astype(np.float32)
    check(onnx.load(str(path)), {"x": x})
