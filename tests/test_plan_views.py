"""Values the planner takes as views of other values, without a copy: a Slice that keeps one contiguous range of the
flat data (every axis before the sliced one of size 1) and a Gather of one constant index into the outermost axis
that is not 1. Each case against numpy, the view read by a later op and returned as an output too."""
import numpy as np
import pytest

import engine

rng = np.random.default_rng(5)


def model(op, attrs, in_shape, out_shape, tensors=None, inputs=("x",)):
    """x -> op -> v -> Relu -> y; outputs y and v."""
    nodes = [engine.Node(op, "view", list(inputs), ["v"], attrs), engine.Node("Relu", "relu", ["v"], ["y"], {})]
    return engine.Model(inputs=[engine.TensorSpec("x", list(in_shape), "float32")],
                        outputs=[engine.TensorSpec("y", list(out_shape), "float32"),
                                 engine.TensorSpec("v", list(out_shape), "float32")],
                        nodes=nodes, tensors=dict(tensors or {}), dtype="float32", origin={"source": "tests"},
                        stream=None).validate()


def run(m, x):
    sess = engine.Session(m)
    y, v = sess.run(None, {"x": x})
    return sess.program({"x": x.shape}), y, v


SLICES = [  # (shape, [axis, start, end, step] entries, contiguous)
    ((1, 1, 768), [[2, 128, None, 1]], True),
    ((1, 6, 5), [[1, 2, 4, 1]], True),
    ((1, 1, 9), [[2, -4, None, 1]], True),
    ((1, 4, 3), [[1, 1, 3, 1], [2, 0, None, 1]], True),
    ((1, 4, 3), [[1, 3, 4, 1], [2, 1, 2, 1]], False),       # two partial axes, even for one element
    ((2, 4, 3), [[1, 1, 3, 1]], False),                      # an axis before it is not 1
    ((1, 4, 3), [[1, 1, 3, 1], [2, 1, None, 1]], False),     # two partial axes
    ((1, 1, 9), [[2, 0, None, 2]], False),                   # a step
    ((1, 1, 9), [[2, 8, 0, -1]], False),
]


@pytest.mark.parametrize("shape,slices,contiguous", SLICES)
def test_a_contiguous_slice_is_a_view(shape, slices, contiguous):
    x = rng.standard_normal(shape).astype(np.float32)
    index = [slice(None)] * len(shape)
    for axis, start, end, step in slices:
        index[axis] = slice(start, end, step)
    want = x[tuple(index)]
    m = model("Slice", {"slices": slices}, shape, ["a%d" % k for k in range(len(shape))])
    listing, y, v = run(m, x)
    assert np.array_equal(v, want) and np.array_equal(y, np.maximum(want, 0))
    body = [line for line in listing.splitlines()[1:] if "'view'" in line]
    assert (not body) == contiguous, listing


@pytest.mark.parametrize("shape,axis,index,view", [((2, 1, 128), 0, 1, True), ((2, 1, 128), 0, -2, True),
                                                   ((1, 3, 4), 1, 2, True), ((3, 4), 1, 1, False),
                                                   ((1, 1, 5), 2, 4, True)])
def test_a_gather_of_one_index_into_the_outer_axis_is_a_view(shape, axis, index, view):
    x = rng.standard_normal(shape).astype(np.float32)
    want = np.take(x, index, axis=axis)
    m = model("Gather", {"axis": axis, "index_shape": []}, shape, ["a%d" % k for k in range(len(shape) - 1)],
              tensors={"i": np.array(index, np.int64)}, inputs=("x", "i"))
    listing, y, v = run(m, x)
    assert np.array_equal(v, want) and np.array_equal(y, np.maximum(want, 0))
    body = [line for line in listing.splitlines()[1:] if "'view'" in line]
    assert (not body) == view, listing


def test_a_gather_index_out_of_range_is_a_clear_error():
    m = model("Gather", {"axis": 0, "index_shape": []}, (2, 3), ["a"], tensors={"i": np.array(2, np.int64)},
              inputs=("x", "i"))
    with pytest.raises(engine.EngineError, match="out of range"):
        engine.Session(m).run(None, {"x": np.zeros((2, 3), np.float32)})
