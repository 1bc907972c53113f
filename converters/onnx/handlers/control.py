"""Handlers of comparisons, logic, Where and Pad on run-time values (engine/ops/control.py). If is converted by
control_flow.py; comparisons of shapes that are known at conversion fold in shape_values.py. Booleans are int64
0/1 in the engine."""
from __future__ import annotations

import numpy as np

from ..registry import handler
from .layers import broadcast

BOOL = "bool"   # the converter's dtype of boolean values (the engine holds them as int64)


def _operand(ctx, node, name):
    """A run-time value's name; a constant becomes a model tensor of its own shape (booleans and ints as int64)."""
    if name in ctx.consts and name not in ctx.shapes:
        c = np.asarray(ctx.consts[name])
        if c.dtype.kind not in "biuf":
            raise ctx.err(node, f"constant {name!r} of type {c.dtype} is not supported")
        c = c.astype(ctx.float_dtype or "float32") if c.dtype.kind == "f" else c.astype(np.int64)
        key = ctx.store(f"{name}.const", np.asarray(c, order="C"))     # (rank 0 stays rank 0)
        if np.asarray(ctx.consts[name]).dtype.kind == "b":
            ctx.dtypes[key] = BOOL
        return key
    return ctx.value(name, node)


def _is_bool_or_int(dtype):
    return not dtype.startswith("float")


@handler("Equal")
@handler("Less")
@handler("Greater")
@handler("LessOrEqual")
@handler("GreaterOrEqual")
def compare(ctx, node, ins, a):
    xs = [_operand(ctx, node, i) for i in ins]
    fl = [ctx.dtypes[x].startswith("float") for x in xs]
    if fl[0] != fl[1]:
        raise ctx.err(node, f"compares {ctx.dtypes[xs[0]]} with {ctx.dtypes[xs[1]]}")
    out = broadcast(ctx, node, [ctx.shapes[x] for x in xs])
    ctx.emit(node.op_type, node, xs, [node.output[0]], {}, [out], [BOOL])


@handler("Not")
@handler("And")
@handler("Or")
@handler("Xor")
def logic(ctx, node, ins, a):
    xs = [_operand(ctx, node, i) for i in ins]
    if not all(_is_bool_or_int(ctx.dtypes[x]) for x in xs):
        raise ctx.err(node, "takes boolean inputs")
    out = broadcast(ctx, node, [ctx.shapes[x] for x in xs])
    ctx.emit(node.op_type, node, xs, [node.output[0]], {}, [out], [BOOL])


@handler("Where", since=9)
def where(ctx, node, ins, a):
    xs = [_operand(ctx, node, i) for i in ins]
    if ctx.dtypes[xs[0]].startswith("float"):
        raise ctx.err(node, "the condition must be a boolean tensor")
    if ctx.dtypes[xs[1]][:3] != ctx.dtypes[xs[2]][:3]:
        raise ctx.err(node, f"X is {ctx.dtypes[xs[1]]} and Y {ctx.dtypes[xs[2]]}")
    out = broadcast(ctx, node, [ctx.shapes[x] for x in xs])
    ctx.emit("Where", node, xs, [node.output[0]], {}, [out], [ctx.dtypes[xs[1]]])


def _pad(ctx, node, x, mode, pads, value, axes=None):
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise ctx.err(node, f"mode {mode!r} is not supported (constant, reflect, edge, wrap)")
    xs = ctx.shapes[x]
    rank = len(xs)
    axes = list(range(rank)) if axes is None else [int(v) + rank if int(v) < 0 else int(v) for v in axes]
    if any(not 0 <= v < rank for v in axes) or len(set(axes)) != len(axes):
        raise ctx.err(node, f"axes {axes} out of range for rank {rank}")
    attrs = {"mode": mode, "value": float(value), "axes": axes}
    inputs = [x]
    if isinstance(pads, str):             # computed at run time (known when a plan is made)
        inputs.append(pads)
        out = [ctx.S.new("pad") if k in axes else d for k, d in enumerate(xs)]
    else:
        pads = [int(v) for v in np.asarray(pads).reshape(-1)]
        if len(pads) != 2 * len(axes):
            raise ctx.err(node, f"{len(pads)} pads for {len(axes)} axes")
        attrs["pads"] = pads
        out = list(xs)
        for k, ax in enumerate(axes):
            b, e = pads[k], pads[k + len(axes)]
            if b or e:
                d = ctx.S.norm(xs[ax])
                out[ax] = d + b + e if isinstance(d, int) else ctx.S.new("pad")
                if isinstance(d, int) and out[ax] < 0:
                    raise ctx.err(node, f"pads {b}, {e} crop more than the {d} elements of axis {ax}")
    ctx.emit("Pad", node, inputs, [node.output[0]], attrs, [out], [ctx.dtypes[x]])


@handler("Pad", since=1)
def pad_v1(ctx, node, ins, a):
    pads = a.get("paddings", a.get("pads"))
    if pads is None:
        raise ctx.err(node, "needs pads")
    _pad(ctx, node, ctx.value(ins[0], node), a.get("mode", "constant"), pads, a.get("value", 0.0))


@handler("Pad", since=11)
def pad_v11(ctx, node, ins, a):
    """pads, constant_value and (opset 18) axes are inputs; pads may be computed, the others must be constants."""
    x = ctx.value(ins[0], node)
    if len(ins) < 2 or not ins[1]:
        raise ctx.err(node, "needs pads")
    pads = ins[1]
    if pads in ctx.consts:
        pads = ctx.consts[pads]
    else:
        pads = ctx.value(pads, node)      # a shape value becomes a ShapeValue node
        if ctx.dtypes[pads].startswith("float"):
            raise ctx.err(node, "pads must be integers")
    value = 0.0
    if len(ins) > 2 and ins[2]:
        c = ctx.const_input(node, 2, "constant_value")
        if c.size != 1:
            raise ctx.err(node, "constant_value must be a scalar")
        value = c.reshape(-1)[0]
    axes = None
    if len(ins) > 3 and ins[3]:
        axes = ctx.const_input(node, 3, "axes").reshape(-1).tolist()
    _pad(ctx, node, x, a.get("mode", "constant"), pads, value, axes)
