"""Shape computations evaluated at conversion time, on symbolic dimensions.

Exporters compute Reshape targets and zero initial states from the input's shape (Shape -> Gather/Slice -> Mul ->
Concat -> Reshape, Shape -> ConstantOfShape). Those integer tensors ("shape values", ``ctx.symvals``) are kept as
lists of dimensions (dims.py) instead of run-time values: a Reshape target becomes static (0 = copy a dimension,
-1 = infer), a zero state a ConstantOfShape node whose dimensions are read off the graph inputs at run time.
A shape value whose dimensions are all known is a constant (``ctx.consts``).
"""
from __future__ import annotations

import numpy as np

from .handlers.shape_glue import clamp_end, slice_params_v1, slice_params_v10
from .registry import SHAPE, shape_handler

SOURCES = ("Shape", "Size")   # ops whose output is always a shape value
BOOL = 9                      # the ONNX element type


def applies(ctx, node) -> bool:
    """The node computes a shape value: a Shape or Size, or an op on shape values and constants only."""
    ins = [i for i in node.input if i]
    return node.op_type in SOURCES or (any(i in ctx.symvals for i in ins)
                                       and all(i in ctx.symvals or i in ctx.consts for i in ins))


class Undecidable(Exception):
    """The node's result depends on dimensions only a plan knows: it is converted as a run-time node instead, its
    shape-value inputs made concrete by ShapeValue nodes (context.materialize)."""


def evaluate(ctx, node):
    """Evaluate the node on shape values; raise Undecidable if that takes the shapes of a call."""
    op = node.op_type
    fn = SHAPE.lookup(op, ctx.opset)
    if fn is None:
        raise Undecidable(op)
    fn(ctx, node, list(node.input), ctx.attrs(node))


def sym(ctx, name, node):
    """(dims, is_scalar) of a shape value or of a small integer constant used with one."""
    if name in ctx.symvals:
        return ctx.symvals[name]
    if name in ctx.consts:
        c = ctx.consts[name]
        if c.dtype.kind not in "iu" or c.ndim > 1:
            raise ctx.err(node, f"mixes a shape computation with non-integer constant {name!r}")
        return [int(v) for v in c.reshape(-1)], c.ndim == 0
    raise ctx.err(node, f"mixes a shape computation with the run-time value {name!r}")


def set_sym(ctx, name, dims, scalar=False):
    dims = [ctx.S.norm(d) for d in dims]
    if all(isinstance(d, int) for d in dims):
        arr = np.array(dims, dtype=np.int64)
        ctx.consts[name] = arr.reshape(()) if scalar else arr
    else:
        ctx.symvals[name] = (dims, scalar)


# ---------------------------------------------------------------------- handlers
@shape_handler("Shape")
def shape(ctx, node, ins, a):
    dims = ctx.shape_of(ins[0], node)
    start, end = a.get("start", 0), a.get("end", None)
    set_sym(ctx, node.output[0], dims[slice(start, end)])


@shape_handler("Size")
def size(ctx, node, ins, a):
    if ins[0] in ctx.symvals:        # the size of a shape value: its length (Size(Shape(x)) is x's rank)
        dims, scalar = ctx.symvals[ins[0]]
        set_sym(ctx, node.output[0], [1 if scalar else len(dims)], scalar=True)
        return
    set_sym(ctx, node.output[0], [ctx.S.prod(ctx.shape_of(ins[0], node))], scalar=True)


@shape_handler("Cast")
@shape_handler("Identity")
def same(ctx, node, ins, a):
    vals, scalar = sym(ctx, ins[0], node)
    if node.op_type == "Cast" and a.get("to") == BOOL:
        vals = [_relied_on(ctx, d) for d in vals]
        if not all(isinstance(d, int) for d in vals):
            raise Undecidable("Cast")
        c = np.array([d != 0 for d in vals])
        ctx.consts[node.output[0]] = c.reshape(()) if scalar else c
        return
    set_sym(ctx, node.output[0], vals, scalar)


def _relied_on(ctx, d):
    """A dimension a condition tests: a size fixed in the file (a soft symbol) is bound to it here, as a Reshape to a
    literal shape binds it (Silero tests its state's declared first dimension, 2); others stay symbolic."""
    ctx.S.concretize(d)
    return ctx.S.norm(d)


_COMPARE = {"Equal": np.equal, "Less": np.less, "Greater": np.greater, "LessOrEqual": np.less_equal,
            "GreaterOrEqual": np.greater_equal}


@shape_handler("Equal")
@shape_handler("Less")
@shape_handler("Greater")
@shape_handler("LessOrEqual")
@shape_handler("GreaterOrEqual")
def compare(ctx, node, ins, a):
    """Decided here when both sides are numbers, or (Equal) the same symbolic dimension; else at plan time."""
    (x, sx), (y, sy) = sym(ctx, ins[0], node), sym(ctx, ins[1], node)
    n = max(len(x), len(y))
    if len(x) not in (1, n) or len(y) not in (1, n):
        raise ctx.err(node, f"cannot compare shape values of lengths {len(x)} and {len(y)}")
    x, y = (x * n if len(x) == 1 else x), (y * n if len(y) == 1 else y)
    out = []
    for p, q in zip(x, y):
        p, q = _relied_on(ctx, p), _relied_on(ctx, q)
        if isinstance(p, int) and isinstance(q, int):
            out.append(bool(_COMPARE[node.op_type](p, q)))
        elif node.op_type in ("Equal", "LessOrEqual", "GreaterOrEqual") and p == q:
            out.append(True)
        else:
            raise Undecidable(node.op_type)
    c = np.array(out)
    ctx.consts[node.output[0]] = c.reshape(()) if (sx and sy) else c


@shape_handler("Unsqueeze")
@shape_handler("Reshape")
def as_vector(ctx, node, ins, a):
    vals, _ = sym(ctx, ins[0], node)
    set_sym(ctx, node.output[0], vals, scalar=False)


@shape_handler("Squeeze")
def as_scalar(ctx, node, ins, a):
    vals, _ = sym(ctx, ins[0], node)
    set_sym(ctx, node.output[0], vals, scalar=True)


@shape_handler("Gather")
def gather(ctx, node, ins, a):
    vals, _ = sym(ctx, ins[0], node)
    idx = ctx.const_input(node, 1, "Gather indices")
    if a.get("axis", 0) != 0:
        raise ctx.err(node, "Gather on a shape value must use axis 0")
    picked = [vals[int(i)] for i in np.asarray(idx).reshape(-1)]
    set_sym(ctx, node.output[0], picked, scalar=np.asarray(idx).ndim == 0)


def _slice(ctx, node, ins, a, params):
    vals, _ = sym(ctx, ins[0], node)
    starts, ends, axes, steps = params(ctx, node, ins, a)
    if axes not in (None, [0]):
        raise ctx.err(node, "Slice on a shape value must use axis 0")
    set_sym(ctx, node.output[0], vals[slice(starts[0], clamp_end(ends[0]), steps[0] if steps else 1)])


@shape_handler("Slice", since=1)
def slice_v1(ctx, node, ins, a):
    _slice(ctx, node, ins, a, slice_params_v1)


@shape_handler("Slice", since=10)
def slice_v10(ctx, node, ins, a):
    _slice(ctx, node, ins, a, slice_params_v10)


@shape_handler("Concat")
def concat(ctx, node, ins, a):
    dims = []
    for i in ins:
        dims += sym(ctx, i, node)[0]
    set_sym(ctx, node.output[0], dims)


@shape_handler("Mul")
def mul(ctx, node, ins, a):
    vals, scalar = sym(ctx, ins[0], node)
    other, s2 = sym(ctx, ins[1], node)
    n = max(len(vals), len(other))
    vals = vals * n if len(vals) == 1 else vals
    other = other * n if len(other) == 1 else other
    set_sym(ctx, node.output[0], [ctx.S.mul(x, y) for x, y in zip(vals, other)], scalar and s2)


@shape_handler("ConstantOfShape", since=9)
def constant_of_shape(ctx, node, ins, a):
    vals, _ = sym(ctx, ins[0], node)
    _fill(ctx, node, vals, a)


@shape_handler("Expand", since=8)
def expand(ctx, node, ins, a):
    """A float constant broadcast to a run-time shape: exporters build zero initial states this way."""
    if not (ins[0] in ctx.consts and ctx.consts[ins[0]].dtype.kind == "f"):
        # Expanding a shape value is not evaluated: its output stays undefined, so any use of it is an error
        sym(ctx, ins[0], node)
        return
    fill = ctx.consts[ins[0]]
    target, _ = sym(ctx, ins[1], node)
    target = [ctx.S.norm(d) for d in target]
    if fill.ndim > len(target):
        raise ctx.err(node, f"cannot expand a rank-{fill.ndim} tensor to rank {len(target)}")
    out = list(target)
    for k, d in enumerate(fill.shape):       # numpy broadcasting, right-aligned
        t = len(target) - fill.ndim + k
        if d != 1:
            if isinstance(target[t], int) and target[t] not in (1, d):
                raise ctx.err(node, f"shape {fill.shape} does not broadcast to the target")
            if target[t] != 1:
                ctx.S.unify(target[t], d, f"node {node.name!r} (Expand)")
            out[t] = d
    if fill.size == 0 or not np.all(fill == fill.reshape(-1)[0]):
        raise ctx.err(node, "only a constant of one repeated value expanded to a run-time shape is supported")
    _fill(ctx, node, out, {}, value=fill.reshape(-1)[0])


def _fill(ctx, node, dims, a, value=None):
    """A run-time tensor of one value whose dimensions come from graph inputs' dimensions (the engine's
    ConstantOfShape: each dimension a number or [index of a source input, its axis])."""
    if value is None:
        value = ctx.to_array(node.attribute[0].t) if a.get("value") is not None else np.zeros(1, np.float32)
    value = np.asarray(value)
    if value.dtype.kind != "f":
        raise ctx.err(node, f"only float fill values are supported on run-time shapes, got {value.dtype}")
    sources, shape = [], []
    for d in dims:
        d = ctx.S.norm(d)
        if isinstance(d, int):
            shape.append(d)
            continue
        src = _dim_source(ctx, ctx.S.single_sym(d))
        if src is None:
            raise ctx.err(node, f"the dimension {d} is not a dimension of a graph input")
        if src[0] not in sources:
            sources.append(src[0])
        shape.append([sources.index(src[0]), src[1]])
    dtype = ctx.float_dtype or "float32"
    ctx.emit("ConstantOfShape", node, sources, [node.output[0]],
             {"shape": shape, "value": float(value.reshape(-1)[0])}, [list(dims)], [dtype])


def _dim_source(ctx, sym_name):
    """(graph input, axis) whose dimension is the symbol ``sym_name``, or None."""
    if sym_name is None:
        return None
    for name in ctx.input_names:
        for axis, d in enumerate(ctx.shapes[name]):
            if ctx.S.single_sym(d) == sym_name:
                return name, axis
    return None
