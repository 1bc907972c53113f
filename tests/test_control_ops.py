"""Control flow and the ops Silero VAD brought (engine/ops/control.py, converters/onnx/control_flow.py,
handlers/control.py), and the new 1-D Conv paths (im2col + product, the FFT of a windowed-DFT-basis Conv), against
onnxruntime on the same inputs.

Single-op (or few-op) ONNX graphs built with onnx.helper, converted by the engine's ONNX importer, run by
engine.Session and by onnxruntime. Comparisons, logic, Where, Pad and If must match exactly (NaN compares false, as
in IEEE); Pow within 1e-6 of the value; Conv within 1e-5 (the DFT Conv, an FFT, within 1e-5 of the output's
scale; measured: at most 7e-7 of it).
"""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import converters
import engine
from engine.errors import InvalidInputError, UnsupportedModelError
from lstm_util import max_abs_diff, ort_session

pytestmark = pytest.mark.slow

F, I64, BOOL = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL
rng = np.random.default_rng(9)


def graph_model(nodes, inputs, outputs, inits=(), opset=17):
    """A ModelProto: ``inputs`` and ``outputs`` as (name, elem type, shape) (shape None: unknown)."""
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(*i) for i in inputs],
                          [helper.make_tensor_value_info(*o) for o in outputs],
                          [numpy_helper.from_array(np.asarray(a), n) for n, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def branch(nodes, outputs, inits=()):
    """An If branch: a graph without inputs whose outputs are (name, elem type) of unknown shape."""
    return helper.make_graph(nodes, "branch", [], [helper.make_tensor_value_info(n, t, None) for n, t in outputs],
                             [numpy_helper.from_array(np.asarray(a), n) for n, a in inits])


def compare(sess, ort, feeds, tol=0.0, rel=0.0):
    """engine and onnxruntime on ``feeds``: the same output shapes and dtypes, values within ``tol + rel * |ref|``
    element by element (NaN and inf at the same places). Returns the largest absolute difference."""
    got, ref = sess.run(None, feeds), ort.run(None, feeds)
    assert len(got) == len(ref)
    worst = 0.0
    for k, (g, r) in enumerate(zip(got, ref)):
        assert g.shape == r.shape, f"output {k}: shape {g.shape}, onnxruntime {r.shape}"
        assert g.dtype == r.dtype, f"output {k}: dtype {g.dtype}, onnxruntime {r.dtype}"
        if r.dtype == np.bool_:
            assert np.array_equal(g, r), f"output {k}: {g} vs {r}"
            continue
        d = max_abs_diff(g, r)
        if rel:
            finite = np.isfinite(r)
            assert np.array_equal(finite, np.isfinite(g)), f"output {k}: NaN or inf at other places"
            excess = np.abs(g[finite].astype(np.float64) - r[finite]) - (tol + rel * np.abs(r[finite]))
            assert excess.max(initial=-1.0) <= 0, f"output {k}: max abs diff {d:.3g} beyond {tol:.3g} + {rel:.3g} |ref|"
        else:
            assert d <= tol, f"output {k}: max abs diff {d:.3g} (tolerance {tol:.3g})"
        worst = max(worst, d)
    return worst


def check(model, *feed_list, tol=0.0, rel=0.0):
    """One Session and one onnxruntime session of ``model``, compared on each feed in turn."""
    sess, ort = engine.Session(model.SerializeToString()), ort_session(model)
    return max(compare(sess, ort, feeds, tol, rel) for feeds in feed_list)


def specials(shape, ints=True):
    """Float32 values with NaN, +-inf, -0.0 and (``ints``) small integers, so that equal values occur."""
    x = (rng.integers(-2, 3, shape) if ints else rng.standard_normal(shape)).astype(np.float32)
    flat = x.reshape(-1)
    for k, v in zip(rng.permutation(flat.size)[:4], [np.nan, np.inf, -np.inf, -0.0]):
        flat[k] = v
    return x


# ---------------------------------------------------------------------- comparisons, logic, Where, Cast to BOOL
COMPARISONS = ["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"]


@pytest.mark.parametrize("op", COMPARISONS)
def test_comparisons_broadcast_with_nan_and_inf(op):
    m = graph_model([helper.make_node(op, ["a", "b"], ["c"]),
                     helper.make_node(op, ["a", "k"], ["d"])],          # against a constant
                    [("a", F, ["N", 1, 4]), ("b", F, [3, 1])], [("c", BOOL, None), ("d", BOOL, None)],
                    inits=[("k", np.array([0.0, np.nan, 1.0, -np.inf], np.float32))])
    check(m, *({"a": specials((n, 1, 4)), "b": specials((3, 1))} for n in (1, 2, 5)))


def test_comparisons_of_int_values_at_run_time():
    """Regression: an int comparison had to be known when planned, so a token-id input (small in the warm-up's
    dummy shapes) was planned by value: a new plan for every distinct input, each kept (64 plans of keys as long as
    the input). Now it compares at run time; only inputs declared small (Silero's rank-0 sr) are planned by value."""
    m = graph_model([helper.make_node("Equal", ["ids", "pad"], ["is_pad"]),
                     helper.make_node("Less", ["ids", "lens"], ["short"]),
                     helper.make_node("Cast", ["ids"], ["nonzero"], to=BOOL),
                     helper.make_node("And", ["short", "nonzero"], ["both"])],
                    [("ids", I64, ["T", "B"]), ("lens", I64, [1, "B"])],
                    [("is_pad", BOOL, None), ("short", BOOL, None), ("both", BOOL, None)],
                    inits=[("pad", np.array(0, np.int64))])
    sess, ort = engine.Session(m.SerializeToString()), ort_session(m)
    for k in range(6):
        feed = {"ids": rng.integers(-2, 4, (5, 3)), "lens": rng.integers(0, 3, (1, 3))}
        compare(sess, ort, feed)
    assert sess._value_inputs == () and len(sess._plans) <= 2       # (the warm-up's plan and this shape's)


def test_logic_on_comparison_results():
    nodes = [helper.make_node("Less", ["a", "b"], ["lt"]), helper.make_node("Greater", ["a", "c"], ["gt"]),
             helper.make_node("Not", ["lt"], ["not"]), helper.make_node("And", ["lt", "gt"], ["and"]),
             helper.make_node("Or", ["lt", "gt"], ["or"]), helper.make_node("Xor", ["lt", "gt"], ["xor"]),
             helper.make_node("And", ["gt", "mask"], ["masked"])]      # a constant bool, broadcast
    outs = [(n, BOOL, None) for n in ("not", "and", "or", "xor", "masked")]
    m = graph_model(nodes, [("a", F, ["N", 3]), ("b", F, [1, 3]), ("c", F, ["N", 1])], outs,
                    inits=[("mask", np.array([True, False, True]))])
    check(m, *({"a": specials((n, 3)), "b": specials((1, 3)), "c": specials((n, 1))} for n in (1, 4)))


def test_where_broadcasts_all_three_operands():
    nodes = [helper.make_node("Greater", ["c", "zero"], ["cond"]),
             helper.make_node("Where", ["cond", "x", "y"], ["w"]),
             helper.make_node("Where", ["cond", "x", "half"], ["w2"]),    # a constant Y
             helper.make_node("Where", ["mask", "y", "x"], ["w3"])]       # a constant condition
    m = graph_model(nodes, [("c", F, ["A", 1, 1]), ("x", F, [1, "B", 1]), ("y", F, [1, 1, "C"])],
                    [("w", F, None), ("w2", F, None), ("w3", F, None)],
                    inits=[("zero", np.array(0.0, np.float32)), ("half", np.array(0.5, np.float32)),
                           ("mask", np.array([[True], [False], [True]]))])
    check(m, *({"c": specials((a, 1, 1)), "x": specials((1, 3, 1), ints=False), "y": specials((1, 1, c), False)}
               for a, c in ((4, 5), (1, 1), (2, 7))))


def test_cast_to_bool_of_floats():
    m = graph_model([helper.make_node("Cast", ["x"], ["b"], to=BOOL),
                     helper.make_node("Cast", ["b"], ["f"], to=F)], [("x", F, ["N", 6])],
                    [("b", BOOL, None), ("f", F, None)])
    x = np.array([[0.0, -0.0, np.nan, np.inf, -np.inf, 1e-45], [2.0, -3.0, 0.0, 1e-38, 0.5, 0.0]], np.float32)
    check(m, {"x": x}, {"x": x[:1]})


def test_rank_0_operands_give_rank_0_results(tmp_path):
    """Regression: a rank-0 constant became a (1,) tensor (the converter's np.ascontiguousarray, also in
    engine.save), so comparisons, Where, Pow and Add of rank-0 values gave (1,) where onnxruntime gives ()."""
    m = graph_model([helper.make_node("Equal", ["sr", "rate"], ["c"]),
                     helper.make_node("Greater", ["v", "half"], ["g"]),
                     helper.make_node("Where", ["g", "v", "half"], ["w"]), helper.make_node("Pow", ["v", "two"], ["p"]),
                     helper.make_node("Add", ["v", "half"], ["a"])],
                    [("sr", I64, []), ("v", F, [])], [("c", BOOL, None), ("g", BOOL, None), ("w", F, None),
                                                      ("p", F, None), ("a", F, None)],
                    inits=[("rate", np.array(16000, np.int64)), ("half", np.array(0.5, np.float32)),
                           ("two", np.array(2.0, np.float32))])
    feeds = [{"sr": np.array(sr, np.int64), "v": np.array(v, np.float32)} for sr, v in ((16000, 0.7), (8000, -2.0))]
    check(m, *feeds)
    path = tmp_path / "rank0.lstm"
    engine.save(converters.from_onnx(m), path)
    assert engine.load(path).tensors["rate.const"].shape == ()
    compare(engine.Session(path), ort_session(m), feeds[0])


# ---------------------------------------------------------------------- Pad
def pad_model(rank, mode, pads, opset, value=None, axes=None, computed=False):
    """Pad of x (rank ``rank``, every dim symbolic). Opset < 11: pads and value are attributes; from 11 inputs, the
    pads an initializer or (``computed``) Concat(pads[:-1], Shape(x)[-1] - (3 - pads[-1])): the same numbers for
    a last axis of 3, known only when a plan knows the shape; from 18 the axes an input."""
    x = ("x", F, [f"d{k}" for k in range(rank)])
    attrs = {"mode": mode}
    if opset < 11:
        node = helper.make_node("Pad", ["x"], ["y"], pads=list(pads), value=float(value or 0.0), **attrs)
        return graph_model([node], [x], [("y", F, None)], opset=opset)
    inits, nodes = [], []
    if computed:
        inits += [("last", np.array([-1], np.int64)), ("less", np.array([3 - pads[-1]], np.int64)),
                  ("rest", np.array(pads[:-1], np.int64))]
        nodes += [helper.make_node("Shape", ["x"], ["shape"]), helper.make_node("Gather", ["shape", "last"], ["d"]),
                  helper.make_node("Sub", ["d", "less"], ["end"]),
                  helper.make_node("Concat", ["rest", "end"], ["pads"], axis=0)]
    else:
        inits.append(("pads", np.array(pads, np.int64)))
    ins = ["x", "pads"]
    if value is not None or axes is not None:
        ins.append("value" if value is not None else "")
        if value is not None:
            inits.append(("value", np.array(value, np.float32)))
    if axes is not None:
        ins.append("axes")
        inits.append(("axes", np.array(axes, np.int64)))
    nodes.append(helper.make_node("Pad", ins, ["y"], **attrs))
    return graph_model(nodes, [x], [("y", F, None)], inits, opset=opset)


def _pads(rank, lo, hi, seed):
    r = np.random.default_rng(seed)
    return [int(v) for v in r.integers(lo, hi + 1, 2 * rank)]


PAD_CASES = []
for _mode, _opset in (("constant", 13), ("reflect", 13), ("edge", 13), ("wrap", 19)):
    for _rank in (1, 2, 3, 4):
        for _computed in (False, True):
            PAD_CASES.append(pytest.param(_mode, _rank, _opset, _computed,
                                          id=f"{_mode}-rank{_rank}-{'computed' if _computed else 'initializer'}"))


@pytest.mark.parametrize("mode,rank,opset,computed", PAD_CASES)
def test_pad_modes_and_ranks(mode, rank, opset, computed):
    pads = _pads(rank, 0, 2, rank)
    m = pad_model(rank, mode, pads, opset, value=1.5 if mode == "constant" else None, computed=computed)
    shapes = [(3,) * rank, tuple(range(3, 3 + rank))]
    check(m, *({"x": specials(s, ints=False)} for s in shapes))


@pytest.mark.parametrize("opset", [10, 11, 13, 18])
@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_pad_across_opsets(mode, opset):
    """Opset 10 (attributes, Pad-2), 11 and 13 (inputs), 18 (an axes input: only axes 0 and -1 padded)."""
    axes = [0, -1] if opset >= 18 else None
    pads = [1, 2, 2, 1] if axes else [1, 0, 2, 2, 1, 1]
    m = pad_model(3, mode, pads, opset, value=-2.0 if mode == "constant" else None, axes=axes)
    check(m, {"x": specials((3, 4, 5), ints=False)}, {"x": specials((4, 3, 3), ints=False)})


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_negative_pads_crop(mode):
    m = pad_model(3, mode, [-1, 0, 2, 1, -2, -1], 19, computed=mode == "edge")
    check(m, {"x": specials((3, 4, 4), ints=False)}, {"x": specials((4, 3, 5), ints=False)})


CROPS = [(-1, 2), (2, -1), (-2, 3), (3, -2), (-1, 3), (0, 4), (4, 0), (-3, -1), (-4, 4), (-5, 2), (1, -5), (-6, 3),
         (-7, 7), (-6, 0)]


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_a_crop_comes_before_the_padding(mode):
    """Regression: wrap repeated (and reflect read) elements a negative pad had cropped away; onnxruntime crops
    first. Pads onnxruntime refuses (reflect wider than what is left, edge or wrap of nothing) are a clear
    InvalidInputError here too."""
    x = {"x": np.arange(5, dtype=np.float32)}
    for pads in CROPS:
        m = pad_model(1, mode, list(pads), 19)
        sess, ort = engine.Session(m.SerializeToString()), ort_session(m)
        try:
            ref = ort.run(None, x)[0]
        except Exception:
            with pytest.raises(InvalidInputError, match=f"{mode}|crop"):
                sess.run(None, x)
            continue
        assert np.array_equal(sess.run(None, x)[0], ref), (pads, sess.run(None, x)[0], ref)


def test_wrap_pads_larger_than_the_axis():
    m = pad_model(2, "wrap", [5, 0, 1, 7], 19)
    check(m, {"x": specials((3, 2), ints=False)})


def test_reflect_pad_too_large_is_a_clear_error():
    m = pad_model(2, "reflect", [0, 3, 0, 1], 13)
    sess = engine.Session(m.SerializeToString())
    check(m, {"x": specials((2, 4), ints=False)})
    with pytest.raises(InvalidInputError, match=r"reflect pads \(3, 1\) must be smaller than the size 3 of axis 1"):
        sess.run(None, {"x": specials((2, 3), ints=False)})
    with pytest.raises(InvalidInputError, match="reflect"):
        sess.run(None, {"x": specials((2, 1), ints=False)})
    assert sess.run(None, {"x": specials((2, 5), ints=False)})[0].shape == (2, 9)    # the Session still works


# ---------------------------------------------------------------------- Pow
def test_pow_with_float_exponent_tensors():
    m = graph_model([helper.make_node("Pow", ["x", "e"], ["y"]), helper.make_node("Pow", ["x", "k"], ["z"])],
                    [("x", F, ["N", 3]), ("e", F, [1, 3])], [("y", F, None), ("z", F, None)],
                    inits=[("k", np.array([0.5, -1.5, 3.0], np.float32))])
    x = np.abs(rng.standard_normal((4, 3))).astype(np.float32) + 0.1
    x[0] = [0.0, np.inf, np.nan]
    e = np.array([[2.5, -0.5, 1.0]], np.float32)
    check(m, {"x": x, "e": e}, {"x": x[1:], "e": np.array([[0.0, np.nan, -2.0]], np.float32)}, rel=1e-6)
    neg = -np.abs(x[1:]) - 0.5             # a negative base: integral exponents are defined, others NaN
    check(m, {"x": neg, "e": np.array([[2.0, 3.0, 0.5]], np.float32)}, rel=1e-6)


@pytest.mark.parametrize("exponent", [np.array(2.0, np.float32), np.array([2.0], np.float32),
                                      np.full((1, 1, 1), 2.0, np.float32), np.array(3, np.int64),
                                      np.array([2, 3, 1], np.int64), np.array(2, np.int32)],
                         ids=["scalar-2.0", "vector-2.0", "rank3-2.0", "int64-3", "int64-vector", "int32-2"])
def test_pow_by_constants(exponent):
    """x ** 2 runs as x * x (exact), but not for a rank-3 exponent that broadcasts the output up; integer exponents
    of a float base are allowed (ONNX's mixed types)."""
    m = graph_model([helper.make_node("Pow", ["x", "e"], ["y"])], [("x", F, ["N", 3])], [("y", F, None)],
                    inits=[("e", exponent)], opset=15)
    x = rng.standard_normal((5, 3)).astype(np.float32)
    x[0] = [np.nan, -np.inf, 3e38]
    check(m, {"x": x}, {"x": x[:1]}, rel=1e-6)
    listing = engine.Session(m.SerializeToString()).program({"x": (5, 3)})
    squared = exponent.size == 1 and exponent.reshape(-1)[0] == 2 and exponent.ndim <= 2
    assert ("(as x * x)" in listing) == squared, listing


# ---------------------------------------------------------------------- If
def if_node(cond, then_nodes, then_outs, else_nodes, else_outs, outputs, then_inits=(), else_inits=()):
    return helper.make_node("If", [cond], outputs,
                            then_branch=branch(then_nodes, then_outs, then_inits),
                            else_branch=branch(else_nodes, else_outs, else_inits))


def has_if(model):
    return any(n.op == "If" for n in model.all_nodes())


def test_if_with_a_constant_condition_is_inlined():
    for flag, want in ((True, np.arange(3) * 2), (False, np.arange(3) + 1)):
        m = graph_model([if_node("c", [helper.make_node("Mul", ["x", "two"], ["t"])], [("t", F)],
                                 [helper.make_node("Add", ["x", "one"], ["e"])], [("e", F)], ["y"],
                                 then_inits=[("two", np.array(2.0, np.float32))],
                                 else_inits=[("one", np.array(1.0, np.float32))])],
                        [("x", F, ["N"])], [("y", F, None)], inits=[("c", np.array(flag))])
        converted = converters.from_onnx(m)
        assert not has_if(converted), [n.op for n in converted.all_nodes()]
        x = np.arange(3, dtype=np.float32)
        check(m, {"x": x})
        assert engine.Session(converted).run(None, {"x": x})[0].tolist() == want.tolist()


def shape_test_model():
    """y = x * 2 if x.shape[1] == 1 else x + 1 (then and else of the same rank), x (N, C, 4)."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "one_i"], ["c"]),
             helper.make_node("Equal", ["c", "one_i"], ["cond"]),
             if_node("cond", [helper.make_node("Mul", ["x", "two"], ["t"])], [("t", F)],
                     [helper.make_node("Add", ["x", "one"], ["e"])], [("e", F)], ["y"]),
             helper.make_node("Relu", ["y"], ["out"])]
    return graph_model(nodes, [("x", F, ["N", "C", 4])], [("out", F, None)],
                       inits=[("one_i", np.array(1, np.int64)), ("two", np.array(2.0, np.float32)),
                              ("one", np.array(1.0, np.float32))])


def test_if_on_a_shape_test_takes_each_branch_by_the_call_shape():
    m = shape_test_model()
    converted = converters.from_onnx(m)
    assert has_if(converted)
    sess, ort = engine.Session(converted), ort_session(m)
    for shape in ((2, 1, 4), (2, 3, 4), (1, 1, 4), (3, 2, 4)):
        x = rng.standard_normal(shape).astype(np.float32)
        compare(sess, ort, {"x": x})
        want = np.maximum(x * 2 if shape[1] == 1 else x + 1, 0)
        assert np.array_equal(sess.run(None, {"x": x})[0], want)


def sample_rate_model(nested=False):
    """Silero's pattern: a rank-0 int64 input sr decides the branch: y = x * 2 if sr == 16000 else x + 1, or
    (``nested``) else (x - 3 if x.shape[0] == 1 else x + 1)."""
    else_nodes = [helper.make_node("Add", ["x", "one"], ["e"])]
    if nested:
        inner = if_node("single", [helper.make_node("Sub", ["x", "three"], ["ie"])], [("ie", F)],
                        [helper.make_node("Add", ["x", "one"], ["ee"])], [("ee", F)], ["e"])
        else_nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "zero_i"], ["n"]),
                      helper.make_node("Equal", ["n", "one_i"], ["single"]), inner]
    nodes = [helper.make_node("Equal", ["sr", "rate"], ["cond"]),
             if_node("cond", [helper.make_node("Mul", ["x", "two"], ["t"])], [("t", F)], else_nodes, [("e", F)],
                     ["y"])]
    return graph_model(nodes, [("x", F, ["N", 4]), ("sr", I64, [])], [("y", F, None)],
                       inits=[("rate", np.array(16000, np.int64)), ("two", np.array(2.0, np.float32)),
                              ("one", np.array(1.0, np.float32)), ("three", np.array(3.0, np.float32)),
                              ("zero_i", np.array(0, np.int64)), ("one_i", np.array(1, np.int64))])


def sample_rate_reference(x, sr):
    if sr == 16000:
        return x * 2
    return x - 3 if x.shape[0] == 1 else x + 1


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
def test_if_on_a_small_int_input_keys_the_plans_by_its_value(nested):
    """sr = 16000 and 8000 alternately in one Session, through run(None, feed) (the fast path) and with output
    names (the checked path): every result follows the value of this call, never that of the plan made before."""
    m = sample_rate_model(nested)
    sess, ort = engine.Session(m.SerializeToString()), ort_session(m)
    x2, x1 = rng.standard_normal((2, 4)).astype(np.float32), rng.standard_normal((1, 4)).astype(np.float32)
    calls = set()
    for k in range(12):
        x = x1 if nested and k % 4 >= 2 else x2
        sr = np.array(16000 if k % 2 else 8000, np.int64)
        feed = {"x": x, "sr": sr}
        got = sess.run(None, feed)[0] if k % 3 else sess.run(["y"], feed)[0]
        calls.add((x.shape, int(sr), bool(k % 3)))
        assert np.array_equal(got, sample_rate_reference(x, int(sr))), (k, int(sr))
        compare(sess, ort, feed)
    # one plan per shape, value and output list, made once and reused (and the one the constructor's warm-up made)
    assert len(sess._plans) == len(calls) + 1
    assert sess.run(None, {"x": x2, "sr": np.array(44100, np.int64)})[0].tolist() == (x2 + 1).tolist()


def outer_values_model(identity):
    """then gives a constant of the branch and an initializer of the main graph; else an outer value (the graph
    input) and a value it computes. onnxruntime wants an Identity between an outer value and a branch output
    (``identity``); the engine takes both."""
    def out(name):
        return ([helper.make_node("Identity", [name], [name + "_id"])], name + "_id") if identity else ([], name)
    w_nodes, w_out = out("w")
    x_nodes, x_out = out("x")
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "zero_i"], ["n"]),
             helper.make_node("Equal", ["n", "three_i"], ["cond"]),
             if_node("cond", [helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(
                                  np.array([7.0, 8.0, 9.0], np.float32)))] + w_nodes, [("k", F), (w_out, F)],
                     x_nodes + [helper.make_node("Neg", ["w"], ["nw"])], [(x_out, F), ("nw", F)], ["y", "z"])]
    return graph_model(nodes, [("x", F, ["N"])], [("y", F, None), ("z", F, None)],
                       inits=[("zero_i", np.array(0, np.int64)), ("three_i", np.array(3, np.int64)),
                              ("w", np.array([1.0, -2.0], np.float32))])


def test_branch_outputs_that_are_constants_or_outer_values():
    feeds = [{"x": np.arange(n, dtype=np.float32) + 1} for n in (3, 5, 3, 1)]
    check(outer_values_model(identity=True), *feeds)
    sess = engine.Session(outer_values_model(identity=False).SerializeToString())
    for feed in feeds:
        y, z = sess.run(None, feed)
        x = feed["x"]
        want = ([7.0, 8.0, 9.0], [1.0, -2.0]) if x.size == 3 else (x.tolist(), [-1.0, 2.0])
        assert (y.tolist(), z.tolist()) == want


def test_a_rank_0_constant_from_one_branch_and_a_computed_scalar_from_the_other():
    """Regression: the branch's constant became rank 1, so the other branch (rank 0) was refused."""
    nodes = [helper.make_node("Equal", ["sr", "rate"], ["cond"]),
             if_node("cond", [helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(
                                  np.array(3.0, np.float32)))], [("k", F)],
                     [helper.make_node("ReduceMean", ["x"], ["e"], keepdims=0)], [("e", F)], ["y"])]
    m = graph_model(nodes, [("x", F, ["N"]), ("sr", I64, [])], [("y", F, None)],
                    inits=[("rate", np.array(16000, np.int64))], opset=13)
    check(m, *({"x": np.arange(4, dtype=np.float32), "sr": np.array(sr, np.int64)} for sr in (16000, 8000, 16000)))


def rank_changing_model():
    """then (x.shape[0] == 1): Squeeze(x, 0), rank 1; else x itself, rank 2. Then Softmax(axis=-1) and a Reshape
    to one axis: converted for the then branch, the Softmax runs over axis 0."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "zero_i"], ["n"]),
             helper.make_node("Equal", ["n", "one_i"], ["cond"]),
             if_node("cond", [helper.make_node("Squeeze", ["x", "axes"], ["sq"])], [("sq", F)],
                     [helper.make_node("Identity", ["x"], ["same"])], [("same", F)], ["y"]),
             helper.make_node("Softmax", ["y"], ["sm"], axis=-1),
             helper.make_node("Reshape", ["sm", "flat"], ["out"])]
    return graph_model(nodes, [("x", F, ["N", 4])], [("out", F, None)],
                       inits=[("zero_i", np.array(0, np.int64)), ("one_i", np.array(1, np.int64)),
                              ("axes", np.array([0], np.int64)), ("flat", np.array([-1], np.int64))])


def test_branches_of_different_ranks_follow_the_then_branch():
    """Regression: a call taking the else branch ran the Softmax over the wrong axis (a wrong result, no error)."""
    m = rank_changing_model()
    sess, ort = engine.Session(m.SerializeToString()), ort_session(m)
    compare(sess, ort, {"x": rng.standard_normal((1, 4)).astype(np.float32)}, tol=1e-7)
    with pytest.raises(InvalidInputError, match="takes the else branch, whose output 0 has rank 2, but the model "
                                                "after the If was converted for rank 1"):
        sess.run(None, {"x": rng.standard_normal((3, 4)).astype(np.float32)})
    compare(sess, ort, {"x": rng.standard_normal((1, 4)).astype(np.float32)}, tol=1e-7)    # still fine


def test_a_condition_computed_from_float_data_is_refused_when_planned():
    nodes = [helper.make_node("ReduceMean", ["x"], ["total"], keepdims=0),
             helper.make_node("Greater", ["total", "zero"], ["cond"]),
             if_node("cond", [helper.make_node("Mul", ["x", "two"], ["t"])], [("t", F)],
                     [helper.make_node("Neg", ["x"], ["e"])], [("e", F)], ["y"])]
    m = graph_model(nodes, [("x", F, ["N"])], [("y", F, None)],
                    inits=[("zero", np.array(0.0, np.float32)), ("two", np.array(2.0, np.float32))], opset=13)
    with pytest.raises(UnsupportedModelError, match="If.*condition.*known when the model is planned"):
        engine.Session(m.SerializeToString()).run(None, {"x": np.ones(3, np.float32)})


def test_if_survives_the_model_file(tmp_path):
    for m, feeds in ((shape_test_model(), [{"x": rng.standard_normal(s).astype(np.float32)}
                                           for s in ((2, 1, 4), (2, 3, 4))]),
                     (sample_rate_model(nested=True), [{"x": rng.standard_normal((n, 4)).astype(np.float32),
                                                        "sr": np.array(sr, np.int64)}
                                                       for n, sr in ((2, 16000), (2, 8000), (1, 8000))])):
        path = tmp_path / "if.lstm"
        engine.save(converters.from_onnx(m), path)
        assert has_if(engine.load(path))
        direct, loaded = engine.Session(m.SerializeToString()), engine.Session(path)
        for feed in feeds:
            assert all(np.array_equal(a, b) for a, b in zip(direct.run(None, feed), loaded.run(None, feed)))


# ---------------------------------------------------------------------- Conv 1-D: im2col + product, and the FFT path
def conv_model(W, B=None, **attrs):
    inits = [("W", W)] + ([("B", B)] if B is not None else [])
    node = helper.make_node("Conv", ["x", "W"] + (["B"] if B is not None else []), ["y"], **attrs)
    return graph_model([node], [("x", F, ["N", W.shape[1] * attrs.get("group", 1), "L"])], [("y", F, None)], inits)


CONV_CASES = [pytest.param(s, d, g, bias, pads,
                           id=f"stride{s}-dil{d}-group{g}-{'bias' if bias else 'nobias'}-pads{pads[0]}{pads[1]}")
              for s in (1, 2, 3) for d in (1, 2) for g in (1, 2, 4) for bias in (True, False)
              for pads in ([0, 0], [2, 1])]


@pytest.mark.parametrize("stride,dilation,group,bias,pads", CONV_CASES)
def test_conv1d_against_onnxruntime(stride, dilation, group, bias, pads):
    """1 to 8 output positions (one position is the product without BLAS), batches 1 to 3."""
    C, M, K = 4, 8, 3
    W = rng.standard_normal((M, C // group, K)).astype(np.float32)
    B = rng.standard_normal(M).astype(np.float32) if bias else None
    m = conv_model(W, B, strides=[stride], dilations=[dilation], group=group, pads=pads)
    span = dilation * (K - 1) + 1 - sum(pads)
    lengths = {n: (n - 1) * stride + span + n % stride for n in range(1, 9)}     # n output positions
    positions = [n for n, L in lengths.items() if L >= 1]
    feeds = [{"x": rng.standard_normal((1 + n % 3, C, lengths[n])).astype(np.float32)} for n in positions]
    sess = engine.Session(m.SerializeToString())
    assert [sess.run(None, f)[0].shape[2] for f in feeds] == positions and positions[:2] in ([1, 2], [2, 3])
    assert "conv1d" in sess.program({"x": feeds[0]["x"].shape})
    check(m, *feeds, tol=1e-5)


def dft_weights(N, sign=-1.0, window=True):
    """(N + 2, 1, N): periodic-Hann-windowed cos rows for bins 0 .. N/2, then sign * sin rows (Silero's STFT)."""
    k = np.arange(N)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * k / N) if window else np.ones(N)
    angle = 2 * np.pi * np.arange(N // 2 + 1)[:, None] * k / N
    return np.concatenate([hann * np.cos(angle), sign * hann * np.sin(angle)])[:, None, :].astype(np.float32)


@pytest.mark.parametrize("N,stride,sign,bias", [(64, 32, -1.0, False), (128, 64, -1.0, True), (256, 128, -1.0, False),
                                                (128, 128, 1.0, False), (64, 1, 1.0, True), (256, 64, -1.0, True)])
def test_a_dft_basis_conv_runs_as_an_fft(N, stride, sign, bias):
    W = dft_weights(N, sign)
    B = rng.standard_normal(N + 2).astype(np.float32) if bias else None
    m = conv_model(W, B, strides=[stride], pads=[0, N // 4])
    sess, ort = engine.Session(m.SerializeToString()), ort_session(m)
    worst = 0.0
    for batch, length in ((1, N), (2, N + 3 * stride), (3, 4 * N + 5)):
        x = rng.standard_normal((batch, 1, length)).astype(np.float32)
        assert "stft" in sess.program({"x": x.shape}) and "conv1d" not in sess.program({"x": x.shape})
        got, ref = sess.run(None, {"x": x})[0], ort.run(None, {"x": x})[0]
        scale = float(np.abs(ref).max())
        d = max_abs_diff(got, ref)
        assert d <= 1e-5 * scale, f"max abs diff {d:.3g}, output scale {scale:.3g}"
        worst = max(worst, d / scale)
    print(f"DFT conv N={N} stride={stride} sign={sign:+.0f} bias={bias}: max abs diff / output scale {worst:.2e}")


@pytest.mark.parametrize("where", ["cos", "sin", "window"])
def test_a_near_dft_conv_is_an_ordinary_conv(where):
    N = 64
    W = dft_weights(N)
    row = {"cos": 3, "sin": N // 2 + 5, "window": 0}[where]
    W[row, 0, 17] += 1e-3
    m = conv_model(W, strides=[16])
    sess = engine.Session(m.SerializeToString())
    listing = sess.program({"x": (1, 1, 200)})
    assert "conv1d" in listing and "stft" not in listing
    check(m, {"x": rng.standard_normal((2, 1, 200)).astype(np.float32)}, tol=1e-5)


def test_a_dft_basis_with_dilation_or_two_channels_is_an_ordinary_conv():
    W = dft_weights(64)
    for m, C in ((conv_model(W, dilations=[2]), 1), (conv_model(np.concatenate([W, W], axis=1)), 2)):
        listing = engine.Session(m.SerializeToString()).program({"x": (1, C, 300)})
        assert "conv1d" in listing and "stft" not in listing
        check(m, {"x": rng.standard_normal((1, C, 300)).astype(np.float32)}, tol=1e-4)
