"""Control flow and the ops around it: If, comparisons, logic, Where, Pad, and shape values read at plan time.

Booleans are int values (0 or 1) in the int spaces. Most of what these ops see in exported models is known when a
plan is made (shapes, constants, the small integer inputs the planner treats as plan-time values, Planner.
require_known), and then the op folds in numpy and no instruction runs. What is left runs here:

    If          the branch its condition picks is planned in place (Planner.plan_branch); the condition must be
                known at plan time (a shape test, a constant, or a small integer input such as Silero's sample
                rate, which then keys the plan). The other branch costs nothing.
    ShapeValue  integers computed from the shapes of values (the converter's symbolic shape arithmetic, made
                concrete once the plan knows the shapes); always folded.
    Equal, Less, Greater, LessOrEqual, GreaterOrEqual on float or int values; Not, And, Or, Xor and Bool (x != 0,
                the ONNX Cast to BOOL) on int values; Where on float values: numpy broadcasting, one strided loop nest
                (control_kernels.elementwise).
    Pad         constant, reflect, edge and wrap, pads known at plan time: each axis's source index for every output
                position is computed here and travels in the instruction.
"""
import math

import numpy as np

from ..errors import ModelFileError
from .base import (Op, broadcast_loop, broadcast_shapes, check_arity, contiguous_strides as _strides, int_list, is_int,
                   is_number)
from .program import CONTROL_BASE, MAX_RANK

ELEMENTWISE, PAD = range(CONTROL_BASE, CONTROL_BASE + 2)
EQ, LT, GT, LE, GE, NE, NOT, AND, OR, XOR, BOOL, WHERE = range(12)
INT_OPERANDS = 16    # added to a comparison's code when its operands are int values (in the int spaces)

_FOLDS = {EQ: np.equal, LT: np.less, GT: np.greater, LE: np.less_equal, GE: np.greater_equal, NE: np.not_equal,
          AND: np.logical_and, OR: np.logical_or, XOR: np.logical_xor}


def _emit_elementwise(p, op, what, vals, out):
    """One ELEMENTWISE instruction: [op, out ref, n, a ref, b ref, c ref, 6 dims, 3 x 6 strides]."""
    loop, strides = broadcast_loop(p, vals)
    strides = strides + [[0] * MAX_RANK] * (3 - len(vals))
    refs = [p.ref(v) for v in vals] + [[0, 0]] * (3 - len(vals))
    p.emit(ELEMENTWISE, what, op, *p.ref(out), out.size, *[x for r in refs for x in r], *loop,
           *[x for st in strides for x in st])


class Compare(Op):
    """Equal, Less, Greater, LessOrEqual, GreaterOrEqual: a bool (int 0/1) tensor, numpy broadcasting. Operands
    known at plan time (shapes, sizes, small integer inputs planned by value) fold; the others compare at run time,
    float with float and int with int."""
    codes = {"Equal": EQ, "Less": LT, "Greater": GT, "LessOrEqual": LE, "GreaterOrEqual": GE}

    @classmethod
    def validate(cls, node, model):
        check_arity(node, 2)

    @classmethod
    def plan(cls, node, p):
        a, b = p.input(0), p.input(1)
        code = cls.codes[node.op]
        if a.kind != b.kind:
            raise ModelFileError(f"node {node.name!r} ({node.op}): compares a float with an int value")
        if p.known(a) and p.known(b):
            p.fold(0, _FOLDS[code](a.const, b.const).astype(np.int64))
            return
        shape, _ = broadcast_shapes(p, [a, b])
        out = p.output(0, shape, "i")
        if out.size:
            _emit_elementwise(p, code + (INT_OPERANDS if a.kind == "i" else 0),
                              f"{node.op.lower()} {a.shape} {b.shape}", [a, b], out)


class Logic(Op):
    """Not, And, Or, Xor and Bool (x != 0: the ONNX Cast to BOOL) on int values."""
    codes = {"Not": NOT, "And": AND, "Or": OR, "Xor": XOR, "Bool": BOOL}

    @classmethod
    def validate(cls, node, model):
        check_arity(node, 1 if node.op in ("Not", "Bool") else 2)

    @classmethod
    def plan(cls, node, p):
        vals = [p.input(k) for k in range(len(node.inputs))]
        code = cls.codes[node.op]
        if node.op == "Bool" and vals[0].kind == "f":
            x = vals[0]
            if x.const is not None and x.space is None:
                p.fold(0, (x.const != 0).astype(np.int64))
                return
            out = p.output(0, x.shape, "i")
            if out.size:
                zero = p.fold_value(np.zeros((), np.float64))
                _emit_elementwise(p, NE, f"bool {x.shape}", [x, zero], out)
            return
        if any(v.kind != "i" for v in vals):
            raise ModelFileError(f"node {node.name!r} ({node.op}): takes boolean (integer) values")
        if all(p.known(v) for v in vals):
            c = [v.const != 0 for v in vals]
            res = np.logical_not(c[0]) if code == NOT else (c[0] if code == BOOL else _FOLDS[code](c[0], c[1]))
            p.fold(0, np.asarray(res).astype(np.int64))
            return
        shape, _ = broadcast_shapes(p, vals)
        out = p.output(0, shape, "i")
        if out.size:
            _emit_elementwise(p, code, f"{node.op.lower()} {' '.join(str(v.shape) for v in vals)}", vals, out)


class Where(Op):
    """Where(condition, X, Y) with numpy broadcasting; the condition is a bool (int) value; float X and Y at run
    time, int ones at plan time."""
    name = "Where"

    @classmethod
    def validate(cls, node, model):
        check_arity(node, 3)

    @classmethod
    def plan(cls, node, p):
        c, x, y = p.input(0), p.input(1), p.input(2)
        if c.kind != "i":
            raise ModelFileError(f"node {node.name!r} (Where): the condition must be a boolean tensor")
        if x.kind != y.kind:
            raise ModelFileError(f"node {node.name!r} (Where): X and Y must have the same type")
        if x.kind == "i":      # at plan time (which may plan small integer inputs by value)
            cs = p.require_known(c, "the condition of a Where on integers")
            xs, ys = p.require_known(x, "Where on integers"), p.require_known(y, "Where on integers")
            p.fold(0, np.where(cs != 0, xs, ys))
            return
        shape, _ = broadcast_shapes(p, [c, x, y])
        out = p.output(0, shape)
        if out.size:
            _emit_elementwise(p, WHERE, f"where {c.shape} {x.shape} {y.shape}", [c, x, y], out)


PAD_MODES = ("constant", "reflect", "edge", "wrap")


class Pad(Op):
    """Pad with attrs ``mode`` and ``value`` (constant mode's fill); the pads (ONNX order: every axis's begin, then
    every axis's end, for the axes in ``axes``, default all) are the attribute ``pads`` or, when they are computed,
    the int input 1 (known at plan time). Negative pads crop."""
    name = "Pad"
    attrs = frozenset({"mode", "value", "pads", "axes"})

    @classmethod
    def validate(cls, node, model):
        check_arity(node, (1, 2))
        a = node.attrs
        if a.get("mode") not in PAD_MODES or not is_number(a.get("value", 0.0)):
            raise ModelFileError(f"node {node.name!r} (Pad): mode must be one of {', '.join(PAD_MODES)} and value "
                                 f"a number")
        if (len(node.inputs) < 2) == ("pads" not in a):
            raise ModelFileError(f"node {node.name!r} (Pad): the pads are either the attribute or input 1")
        if "pads" in a:
            int_list(node, "pads")
        if "axes" in a:
            int_list(node, "axes")

    @classmethod
    def plan(cls, node, p):
        a = node.attrs
        x = p.input(0)
        pads = a["pads"] if "pads" in a else [int(v) for v in p.require_known(p.input(1), "Pad's pads").reshape(-1)]
        axes = a.get("axes", list(range(x.rank)))
        axes = [ax + x.rank if ax < 0 else ax for ax in axes]
        if len(pads) != 2 * len(axes) or any(not 0 <= ax < x.rank for ax in axes) or len(set(axes)) != len(axes):
            raise p.error(f"pads {pads} (axes {axes}) do not fit an input of rank {x.rank}")
        if x.rank > MAX_RANK:
            raise p.unsupported(f"tensors of rank {x.rank} (at most {MAX_RANK})")
        begin, end = [0] * x.rank, [0] * x.rank
        for k, ax in enumerate(axes):
            begin[ax], end[ax] = pads[k], pads[k + len(axes)]
        mode = a["mode"]
        axes_pads = list(zip(x.shape, begin, end))
        for axis, (d, b, e) in enumerate(axes_pads):
            _check_axis(p, d, b, e, mode, axis)
        shape = [d + b + e for d, b, e in axes_pads]
        # before the maps are made (their sum of lengths travels in the instruction): a pad of 10**12 is refused
        p.check_size(max(math.prod(shape), sum(shape)), f"a padded value of shape {tuple(shape)}")
        maps = [_axis_map(d, b, e, mode) for d, b, e in axes_pads]
        if x.kind != "f":
            p.fold(0, _fold_pad(p.require_known(x, "the input of a Pad of integers"), maps, int(a.get("value", 0))))
            return
        out = p.output(0, shape)
        if not out.size:
            return
        pad = MAX_RANK - x.rank
        maps = [[0]] * pad + [m.tolist() for m in maps]
        strides = [0] * pad + _strides(x.shape)
        p.emit(PAD, f"pad {mode} {x.shape} -> {tuple(shape)}", *p.ref(x), *p.ref(out), p.f64(float(a.get("value", 0.0))),
               *[len(m) for m in maps], *strides, *[v for m in maps for v in m])


def _check_axis(p, d, b, e, mode, axis):
    """Refuse pads ``b``, ``e`` of an axis of ``d`` elements that onnxruntime refuses too. Negative pads crop first,
    as in onnxruntime: edge, wrap and reflect then repeat what is left of the axis, never an element cropped away."""
    n = d + b + e
    kept = d - max(-b, 0) - max(-e, 0)        # what is left of the axis after the crops
    if n < 0 or (kept < 0 and mode != "constant"):    # (constant: the axis is all fill, as in onnxruntime)
        raise p.error(f"pads {b}, {e} crop more than the {d} elements of axis {axis}")
    if mode == "reflect" and max(b, e) > max(kept - 1, 0):
        raise p.error(f"reflect pads ({b}, {e}) must be smaller than the size {kept} of axis {axis}"
                      + (" after cropping" if kept != d else ""))
    if mode in ("edge", "wrap") and kept <= 0 and n > 0:
        raise p.error(f"{mode} padding of the empty axis {axis}")


def _axis_map(d, b, e, mode):
    """The source index along one axis for every output position (-1: the constant), as an int64 array; the pads
    passed _check_axis."""
    lo, hi = max(-b, 0), d - max(-e, 0)       # the part of the axis that is kept
    j = np.arange(d + b + e, dtype=np.int64) - b
    if not j.size:
        return j
    if mode == "constant":
        return np.where((j >= lo) & (j < hi), j, -1)
    if mode == "edge":
        return np.clip(j, lo, hi - 1)
    if mode == "wrap":
        return lo + (j - lo) % (hi - lo)
    return np.where(j < lo, 2 * lo - j, np.where(j >= hi, 2 * (hi - 1) - j, j))     # reflect


def _fold_pad(x, maps, value):
    """Pad of int values known at plan time, in numpy."""
    shape = [len(m) for m in maps]
    if x.size == 0 or 0 in shape:
        return np.full(shape, value, dtype=x.dtype)
    out = x[np.ix_(*[np.maximum(m, 0) for m in maps])]
    for axis, m in enumerate(maps):
        fill = m < 0
        if fill.any():
            out[(slice(None),) * axis + (fill,)] = value
    return out


class ShapeValue(Op):
    """Integers computed from the shapes of the inputs: attrs ``dims`` lists each element as
    [coefficient, [[input index, axis], ...]] (the product of the coefficient and those dimensions), ``scalar``
    whether the result is rank 0. The converter writes one where a shape computation meets a run-time op."""
    name = "ShapeValue"
    attrs = frozenset({"dims", "scalar"})

    @classmethod
    def validate(cls, node, model):
        dims = node.attrs.get("dims")
        ok = isinstance(dims, list) and len(node.outputs) == 1 and node.outputs[0] and \
            isinstance(node.attrs.get("scalar"), bool) and (len(dims) == 1 or not node.attrs["scalar"])
        for d in dims if ok else ():
            ok = ok and isinstance(d, list) and len(d) == 2 and is_int(d[0]) and isinstance(d[1], list) and all(
                isinstance(s, list) and len(s) == 2 and is_int(s[0], 0, len(node.inputs) - 1) and is_int(s[1], 0)
                for s in d[1])
        if not ok:
            raise ModelFileError(f"node {node.name!r} (ShapeValue): malformed dims")

    @classmethod
    def reads(cls, node, streaming):
        return [n for n in node.inputs if n]

    @classmethod
    def plan(cls, node, p):
        values = []
        for coef, factors in node.attrs["dims"]:
            v = coef
            for k, axis in factors:
                src = p.input(k)
                if axis >= src.rank:
                    raise ModelFileError(f"node {node.name!r}: dimension {axis} of rank-{src.rank} {node.inputs[k]!r}")
                v *= src.shape[axis]
            values.append(v)
        arr = np.array(values, dtype=np.int64)
        p.fold(0, arr.reshape(()) if node.attrs["scalar"] else arr)


class If(Op):
    """attrs ``then`` and ``else``: {"nodes": [...], "outputs": [...]}, the branches as node lists (Node objects in
    memory, JSON in the file) and the names of the values each gives for the If's outputs; optional ``ranks``: the
    rank of each output that the nodes after the If were converted for (a branch giving another rank is refused
    when planned). Input 0 is the condition; the others are the outer values the branches read (so that liveness
    sees them)."""
    name = "If"
    attrs = frozenset({"then", "else", "ranks"})

    @classmethod
    def validate(cls, node, model):
        if not node.inputs or not node.inputs[0] or not node.outputs or not all(node.outputs):
            raise ModelFileError(f"node {node.name!r} (If): needs a condition and at least one output")
        for key in ("then", "else"):
            br = node.attrs.get(key)
            if not isinstance(br, dict) or not isinstance(br.get("nodes"), list) or \
                    not isinstance(br.get("outputs"), list) or len(br["outputs"]) != len(node.outputs) or \
                    not all(isinstance(n, str) and n for n in br["outputs"]):
                raise ModelFileError(f"node {node.name!r} (If): branch {key!r} must list its nodes and one output "
                                     f"name per If output")
        ranks = node.attrs.get("ranks")
        if ranks is not None and (not isinstance(ranks, list) or len(ranks) != len(node.outputs) or
                                  not all(is_int(r, 0) for r in ranks)):
            raise ModelFileError(f"node {node.name!r} (If): ranks must list one rank (an int >= 0) per output")

    @classmethod
    def plan(cls, node, p):
        cond = p.require_known(p.input(0), "an If condition")
        if cond.size != 1:
            raise p.error(f"the condition must have one element, it has {cond.size}")
        key = "then" if cond.reshape(-1)[0] else "else"
        br = node.attrs[key]
        p.plan_branch(br["nodes"], br["outputs"])
        for k, (name, rank) in enumerate(zip(node.outputs, node.attrs.get("ranks") or [])):
            if p.vals[name].rank != rank:
                raise p.error(f"this call takes the {key} branch, whose output {k} has rank {p.vals[name].rank}, "
                              f"but the model after the If was converted for rank {rank} (the branches differ in "
                              f"rank, and only one of them can be supported)")


CONTROL_OPS = [*(type(n, (Compare,), {"name": n}) for n in Compare.codes),
               *(type(n, (Logic,), {"name": n}) for n in Logic.codes), Where, Pad, ShapeValue, If]
