"""The vision ops through the ONNX converter, one node (or two) per graph, against onnxruntime: Conv 2-D, MaxPool and
AveragePool 1-D/2-D, GlobalAveragePool, GlobalMaxPool, BatchNormalization (folded into a convolution where it can be,
a ChannelAffine where not), LeakyRelu, Clip (attributes and inputs), ReduceMax/ReduceMean over any axes, 4-D
Transpose; every graph with a free width, run at two widths; conversion errors that name the node."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import converters
import engine
from engine.errors import ConversionError, UnsupportedModelError
from lstm_util import max_abs_diff, ort_session

pytestmark = pytest.mark.slow   # onnxruntime

F = TensorProto.FLOAT
rng = np.random.default_rng(11)


def graph(nodes, x_shape, inits=(), opset=17, outputs=("y",)):
    """A model whose input "x" has the given shape (strings are free dimensions) and whose outputs are float."""
    x = helper.make_tensor_value_info("x", F, list(x_shape))
    outs = [helper.make_tensor_value_info(o, F, None) for o in outputs]
    g = helper.make_graph(nodes, "g", [x], outs, [numpy_helper.from_array(np.asarray(a), n) for n, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def node(op, inputs=("x",), outputs=("y",), **attrs):
    return helper.make_node(op, list(inputs), list(outputs), name=f"my_{op.lower()}_{outputs[0]}", **attrs)


def w(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def check(model, shapes, tol=1e-5):
    """The engine against onnxruntime on inputs of each shape; returns the largest difference."""
    sess, ort = engine.Session(model.SerializeToString()), ort_session(model)
    worst = 0.0
    for shape in shapes:
        x = rng.standard_normal(shape).astype(np.float32)
        got, ref = sess.run(None, {"x": x}), ort.run(None, {"x": x})
        for g, r in zip(got, ref):
            assert g.shape == r.shape and g.dtype == r.dtype
            d = max_abs_diff(np.atleast_1d(g), np.atleast_1d(r))
            assert d <= tol * max(1.0, float(np.abs(r).max())), f"input {shape}: max abs diff {d}"
            worst = max(worst, d)
    return worst


C3 = [("W", w(4, 3, 3, 3)), ("B", w(4))]
CASES = [
    ("conv-3x3-pads", [node("Conv", ["x", "W", "B"], pads=[1, 1, 1, 1], kernel_shape=[3, 3])], ["N", 3, 8, "W"], C3),
    ("conv-strides-dilations-asymmetric", [node("Conv", ["x", "W"], pads=[2, 0, 1, 3], strides=[2, 3],
                                                dilations=[2, 1])], ["N", 3, 9, "W"], C3[:1]),
    ("conv-groups", [node("Conv", ["x", "W", "B"], group=2, pads=[1, 1, 1, 1])], ["N", 4, 6, "W"],
     [("W", w(6, 2, 3, 3)), ("B", w(6))]),
    ("conv-depthwise", [node("Conv", ["x", "W"], group=4, pads=[0, 1, 0, 1])], ["N", 4, 5, "W"],
     [("W", w(4, 1, 3, 3))]),
    ("conv-1x1", [node("Conv", ["x", "W", "B"])], ["N", 5, 4, "W"], [("W", w(7, 5, 1, 1)), ("B", w(7))]),
    ("conv-valid", [node("Conv", ["x", "W"], auto_pad="VALID")], ["N", 3, 8, "W"], C3[:1]),
    ("conv-same-upper-stride-1", [node("Conv", ["x", "W", "B"], auto_pad="SAME_UPPER")], ["N", 3, 8, "W"],
     [("W", w(4, 3, 2, 4)), ("B", w(4))]),
    ("conv-same-lower-strided-free-width", [node("Conv", ["x", "W"], auto_pad="SAME_LOWER", strides=[2, 3])],
     ["N", 3, 9, "W"], [("W", w(4, 3, 3, 4))]),
    ("conv-same-upper-strided-fixed", [node("Conv", ["x", "W"], auto_pad="SAME_UPPER", strides=[2, 2])],
     [1, 3, 9, 10], [("W", w(4, 3, 3, 3))]),
    ("maxpool-2x2", [node("MaxPool", kernel_shape=[2, 2], strides=[2, 2])], ["N", 3, 8, "W"], []),
    ("maxpool-2x1", [node("MaxPool", kernel_shape=[2, 1], strides=[2, 1])], ["N", 3, 8, "W"], []),
    ("maxpool-ceil-pads", [node("MaxPool", kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1], ceil_mode=1)],
     ["N", 2, 7, "W"], []),
    ("maxpool-dilations", [node("MaxPool", kernel_shape=[2, 3], dilations=[2, 2], pads=[1, 1, 0, 1])],
     ["N", 2, 9, "W"], []),
    ("maxpool-same-upper", [node("MaxPool", kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER")],
     ["N", 2, 7, "W"], []),
    ("maxpool-same-lower", [node("MaxPool", kernel_shape=[2, 3], strides=[1, 2], auto_pad="SAME_LOWER")],
     ["N", 2, 7, "W"], []),
    ("maxpool-1d", [node("MaxPool", kernel_shape=[3], strides=[2], pads=[1, 1])], ["N", 3, "W"], []),
    ("averagepool-exclude-pad", [node("AveragePool", kernel_shape=[3, 3], pads=[1, 1, 1, 1])], ["N", 2, 6, "W"], []),
    ("averagepool-include-pad", [node("AveragePool", kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1)],
     ["N", 2, 6, "W"], []),
    ("averagepool-ceil-include-pad", [node("AveragePool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                           ceil_mode=1, count_include_pad=1)], ["N", 2, 6, "W"], []),
    ("averagepool-ceil-exclude-pad", [node("AveragePool", kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)],
     ["N", 2, 7, "W"], []),
    ("averagepool-1d", [node("AveragePool", kernel_shape=[4], strides=[3], pads=[2, 1], count_include_pad=1)],
     ["N", 3, "W"], []),
    ("averagepool-dilations-19", [node("AveragePool", kernel_shape=[2, 2], dilations=[2, 1], pads=[1, 0, 1, 1])],
     ["N", 2, 7, "W"], [], 19),
    ("globalaveragepool", [node("GlobalAveragePool")], ["N", 3, 5, "W"], []),
    ("globalmaxpool-1d", [node("GlobalMaxPool")], ["N", 3, "W"], []),
    ("batchnorm-alone", [node("BatchNormalization", ["x", "s", "b", "m", "v"], epsilon=1e-3)], ["N", 3, 4, "W"],
     [("s", w(3)), ("b", w(3)), ("m", w(3)), ("v", np.abs(w(3)) + 0.1)]),
    ("batchnorm-9-rank-3", [node("BatchNormalization", ["x", "s", "b", "m", "v"])], ["N", 3, "W"],
     [("s", w(3)), ("b", w(3)), ("m", w(3)), ("v", np.abs(w(3)) + 0.1)], 9),
    ("leakyrelu-default", [node("LeakyRelu")], ["N", 3, 4, "W"], []),
    ("leakyrelu-0.2", [node("LeakyRelu", alpha=0.2)], ["N", 3, 4, "W"], []),
    ("clip-6-attributes", [node("Clip", min=-0.5, max=0.7)], ["N", 3, "W"], [], 10),
    ("clip-6-defaults", [node("Clip")], ["N", 3, "W"], [], 10),
    ("clip-11-min-only", [node("Clip", ["x", "lo"])], ["N", 3, "W"], [("lo", np.array(-0.3, np.float32))], 11),
    ("clip-13-max-only", [node("Clip", ["x", "", "hi"])], ["N", 3, "W"], [("hi", np.array(0.4, np.float32))], 13),
    ("clip-13-relu6", [node("Clip", ["x", "lo", "hi"])], ["N", 3, "W"],
     [("lo", np.array(0, np.float32)), ("hi", np.array(6, np.float32))], 13),
    ("clip-13-none", [node("Clip")], ["N", 3, "W"], [], 13),
    ("clip-castlike-bounds", [node("CastLike", ["lo", "x"], ["lo32"]), node("CastLike", ["hi", "x"], ["hi32"]),
                              node("Clip", ["x", "lo32", "hi32"])], ["N", 3, "W"],
     [("lo", np.array(-0.25)), ("hi", np.array(0.5))], 18),
    ("reducemax-13-axes", [node("ReduceMax", axes=[2], keepdims=0)], ["N", 3, 4, "W"], [], 13),
    ("reducemax-18-input-axes", [node("ReduceMax", ["x", "axes"], keepdims=1)], ["N", 3, 4, "W"],
     [("axes", np.array([1, 3], np.int64))], 18),
    ("reducemax-all", [node("ReduceMax", keepdims=0)], ["N", 3, 4, "W"], [], 13),
    ("reducemean-gapped-axes", [node("ReduceMean", axes=[1, 3], keepdims=1)], ["N", 3, 4, "W"], [], 13),
    ("transpose-4d", [node("Transpose", perm=[3, 0, 2, 1])], ["N", 3, 4, "W"], []),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_single_ops_against_onnxruntime(case):
    name, nodes, x_shape, inits, *opset = case
    model = graph(nodes, x_shape, inits, *opset)
    free = [d for d in x_shape if isinstance(d, str)]
    fixed = [d if isinstance(d, int) else (2 if d == "N" else 13) for d in x_shape]
    shapes = [fixed] + ([[d if isinstance(d, int) else (1 if d == "N" else 20) for d in x_shape]] if free else [])
    check(model, shapes)


def _conv_bn(extra_output=False, bias=True):
    inits = [("W", w(4, 3, 3, 3)), ("s", w(4)), ("b", w(4)), ("m", w(4)), ("v", np.abs(w(4)) + 0.1)]
    if bias:
        inits.append(("B", w(4)))
    nodes = [node("Conv", ["x", "W", "B" if bias else ""], ["c"], pads=[1, 1, 1, 1]),
             node("BatchNormalization", ["c", "s", "b", "m", "v"], ["bn"], epsilon=1e-5),
             node("Relu", ["bn"], ["y"])]
    return graph(nodes, ["N", 3, 6, "W"], inits, 15, ("y", "c") if extra_output else ("y",))


@pytest.mark.parametrize("bias", [True, False])
def test_batchnorm_after_a_convolution_is_folded_into_it(bias):
    model = _conv_bn(bias=bias)
    nodes = converters.from_onnx(model).nodes
    assert [n.op for n in nodes] == ["Conv2D"] and nodes[0].attrs["relu"]        # the Relu fused too
    check(model, [[2, 3, 6, 9], [1, 3, 6, 30]])


def test_batchnorm_after_a_convolution_whose_output_is_also_read_elsewhere_is_not_folded():
    model = _conv_bn(extra_output=True)
    assert [n.op for n in converters.from_onnx(model).nodes] == ["Conv2D", "ChannelAffine", "Relu"]
    check(model, [[2, 3, 6, 9]])


def test_batchnorm_after_a_1d_convolution_is_folded_too():
    inits = [("W", w(4, 3, 3)), ("s", w(4)), ("b", w(4)), ("m", w(4)), ("v", np.abs(w(4)) + 0.1)]
    model = graph([node("Conv", ["x", "W"], ["c"], pads=[1, 1]), node("BatchNormalization", ["c", "s", "b", "m", "v"])],
                  ["N", 3, "L"], inits, 15)
    assert [n.op for n in converters.from_onnx(model).nodes] == ["Conv"]
    check(model, [[2, 3, 9], [1, 3, 4]])


def test_the_width_stays_free_through_a_crnn_style_stack():
    """Conv, pools that halve the height only, a mean over the height: the output's time axis is the input's
    width divided by the width pools, at every width."""
    nodes = [node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]), node("MaxPool", ["c"], ["p"], kernel_shape=[2, 2],
                                                                       strides=[2, 2]),
             node("MaxPool", ["p"], ["q"], kernel_shape=[2, 1], strides=[2, 1]),
             node("ReduceMean", ["q"], ["y"], axes=[2], keepdims=0)]
    model = graph(nodes, ["N", 1, 8, "W"], [("W", w(4, 1, 3, 3))], 13)
    converted = converters.from_onnx(model)
    assert converted.outputs[0].shape[:2] == ["N", 4] and isinstance(converted.outputs[0].shape[2], str)
    check(model, [[1, 1, 8, w_] for w_ in (2, 9, 64)])


BAD = [
    ("MaxPool with its Indices output", [node("MaxPool", outputs=["y", "i"], kernel_shape=[2, 2])], ["N", 1, 4, 4], [],
     17, "Indices output"),
    ("3-D pooling", [node("MaxPool", kernel_shape=[2, 2, 2])], ["N", 1, 4, 4, 4], [], 17, "1-D and 2-D pooling"),
    ("3-D convolution", [node("Conv", ["x", "W"])], ["N", 1, 4, 4, 4], [("W", w(2, 1, 2, 2, 2))], 17,
     "1-D and 2-D convolutions"),
    ("BatchNormalization in training mode", [node("BatchNormalization", ["x", "s", "b", "m", "v"], training_mode=1)],
     ["N", 3, 4], [("s", w(3)), ("b", w(3)), ("m", w(3)), ("v", w(3))], 15, "training mode"),
    ("Clip with a bound computed at run time", [node("Clip", ["x", "x"])], ["N", 3], [], 13, "min must be a constant"),
    ("auto_pad SAME with dilations", [node("MaxPool", kernel_shape=[3, 3], dilations=[2, 2], auto_pad="SAME_UPPER")],
     ["N", 1, 8, 8], [], 17, "auto_pad SAME_UPPER with dilations"),
    ("Conv with a kernel_shape that contradicts W", [node("Conv", ["x", "W"], kernel_shape=[2, 2])], ["N", 3, 5, 5],
     C3[:1], 17, "kernel_shape"),
]


@pytest.mark.parametrize("case", BAD, ids=[b[0] for b in BAD])
def test_unsupported_graphs_are_clear_errors_naming_the_node(case):
    _, nodes, x_shape, inits, opset, message = case
    outputs = tuple(o for n in nodes for o in n.output)
    with pytest.raises((UnsupportedModelError, ConversionError), match=f"my_.*{message}"):
        converters.from_onnx(graph(nodes, x_shape, inits, opset, outputs))


def test_an_input_too_narrow_for_the_kernel_is_an_invalid_input_error():
    sess = engine.Session(graph([node("Conv", ["x", "W"])], ["N", 3, 8, "W"], C3[:1]).SerializeToString())
    with pytest.raises(engine.InvalidInputError, match="my_conv.*smaller than the kernel"):
        sess.run(None, {"x": np.zeros((1, 3, 8, 2), np.float32)})
