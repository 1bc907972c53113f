"""Handlers of the ops that move data without computing (engine/ops/glue.py): Identity, Dropout, Transpose,
Reshape, Flatten, Squeeze, Unsqueeze, Concat, Slice. Dimensions are tracked symbolically (dims.py): a target or
a slice that relies on a fixed input size binds that size; otherwise it stays free."""
from __future__ import annotations

import numpy as np

from ..dims import Dim
from ..registry import handler

INT64_BIG = 2 ** 62   # at or beyond this, a Slice bound means "to the end" (exporters write INT64_MAX, INT64_MIN)


@handler("Identity")
def identity(ctx, node, ins, a):
    x = ctx.value(ins[0], node)
    ctx.emit("Identity", node, [x], [node.output[0]], {}, [ctx.shapes[x]], [ctx.dtypes[x]])


@handler("Dropout")
def dropout(ctx, node, ins, a):
    """Inference: the identity."""
    if len(node.output) > 1 and node.output[1]:
        raise ctx.err(node, "the Dropout mask output is not supported (inference only)")
    if len(ins) > 2 and ins[2]:
        training = ctx.const_input(node, 2, "training_mode")
        if training is not None and bool(np.asarray(training)):
            raise ctx.err(node, "training_mode=True is not supported (inference only)")
    identity(ctx, node, ins, a)


@handler("Transpose")
def transpose(ctx, node, ins, a):
    x = ctx.value(ins[0], node)
    shape = ctx.shapes[x]
    perm = list(a.get("perm", list(range(len(shape)))[::-1]))
    if sorted(perm) != list(range(len(shape))):
        raise ctx.err(node, f"perm {perm} does not fit a rank-{len(shape)} input")
    ctx.emit("Transpose", node, [x], [node.output[0]], {"perm": perm}, [[shape[p] for p in perm]], [ctx.dtypes[x]])


@handler("Reshape", since=5)
def reshape(ctx, node, ins, a):
    """The target is a constant or a shape value; it is stored as a static spec (0 = copy, -1 = infer)."""
    x = ctx.value(ins[0], node)
    shape_in = ctx.shapes[x]
    allowzero = a.get("allowzero", 0)
    if ins[1] in ctx.consts:
        target = [int(v) for v in ctx.consts[ins[1]].reshape(-1)]
        literal = True
    elif ins[1] in ctx.symvals:
        target = list(ctx.symvals[ins[1]][0])
        literal = False
    else:
        raise ctx.err(node, "the target shape must be a constant or computed from shapes")
    spec, out = reshape_spec(ctx, node, shape_in, target, literal, allowzero)
    ctx.emit("Reshape", node, [x], [node.output[0]], {"shape": spec}, [out], [ctx.dtypes[x]])


@handler("Flatten")
def flatten(ctx, node, ins, a):
    """A Reshape to (product of the axes before ``axis``, product of the rest)."""
    x = ctx.value(ins[0], node)
    shape = ctx.shapes[x]
    axis = a.get("axis", 1)
    if not -len(shape) <= axis <= len(shape):
        raise ctx.err(node, f"axis {axis} out of range for rank {len(shape)}")
    axis %= len(shape) + 1
    target = [ctx.S.prod(shape[:axis]), ctx.S.prod(shape[axis:])]
    spec, out = reshape_spec(ctx, node, shape, target, False, 0)
    ctx.emit("Reshape", node, [x], [node.output[0]], {"shape": spec}, [out], [ctx.dtypes[x]])


def reshape_spec(ctx, node, shape_in, target, literal, allowzero):
    """(the engine's Reshape spec, the output's dims) for ``target``: literal numbers from a constant, or dims.
    A target dimension equal to the input's at the same position is copied (0), keeping it free."""
    S = ctx.S
    spec, out = [], []
    for k, t in enumerate(target):
        t = S.norm(t)
        if literal and t == 0 and not allowzero:
            if k >= len(shape_in):
                raise ctx.err(node, f"target copies dimension {k} of a rank-{len(shape_in)} input")
            spec.append(0)
            out.append(shape_in[k])
        elif literal and t == -1:
            spec.append(-1)
            out.append(None)
        elif isinstance(t, int):
            if t == 0:
                raise ctx.err(node, "allowzero=1 with a zero dimension (an empty tensor) is not supported")
            # a literal equal to the declared size at the same position: keep that dimension free
            if k < len(shape_in) and (S.equal(shape_in[k], t) or ctx.soft_equal(shape_in[k], t)):
                spec.append(0)
                out.append(shape_in[k])
            else:
                spec.append(t)
                out.append(t)
        elif k < len(shape_in) and S.equal(shape_in[k], t):
            spec.append(0)
            out.append(shape_in[k])
        else:
            spec.append(-1)
            out.append(t)
    if spec.count(-1) > 1:
        for d in shape_in:
            S.concretize(d)
        for t in target:
            S.concretize(t)
        if any(isinstance(S.norm(t), Dim) for t in target if not (literal and t in (0, -1))) or \
                sum(1 for t in target if literal and t == -1) > 1:
            raise ctx.err(node, f"cannot express the target shape {[str(t) for t in target]} statically")
        return reshape_spec(ctx, node, shape_in, [S.norm(t) for t in target], True, allowzero)
    if -1 in spec:
        i = spec.index(-1)
        known = S.prod([d for j, d in enumerate(out) if j != i])
        total = S.prod(shape_in)
        inferred = S.div(total, known)
        if out[i] is None:
            out[i] = inferred if inferred is not None else S.new("r")
        elif inferred is not None:
            S.unify(out[i], inferred, f"node {node.name!r} (Reshape)")
    else:
        S.unify(S.prod(shape_in), S.prod(out), f"node {node.name!r} (Reshape)")
    return spec, out


def _axes(ctx, node, ins, a, rank, what):
    """Squeeze/Unsqueeze axes, from the input (opset 13 on) or the attribute, normalised; None if absent."""
    if len(ins) > 1 and ins[1]:
        axes = ctx.const_input(node, 1, f"{what} axes")
        axes = [int(v) for v in np.asarray(axes).reshape(-1)]
    else:
        axes = a.get("axes")
        axes = None if axes is None else [int(v) for v in axes]
    if axes is None:
        return None
    out = []
    for ax in axes:
        if not -rank <= ax < rank:
            raise ctx.err(node, f"axis {ax} out of range for rank {rank}")
        out.append(ax % rank)
    return out


@handler("Squeeze")
def squeeze(ctx, node, ins, a):
    """Without axes: the dimensions that are 1, or declared 1."""
    x = ctx.value(ins[0], node)
    shape = ctx.shapes[x]
    axes = _axes(ctx, node, ins, a, len(shape), "Squeeze")
    if axes is None:
        axes = [k for k, d in enumerate(shape) if ctx.S.norm(d) == 1 or ctx.soft_equal(d, 1)]
    for k in axes:
        ctx.S.unify(shape[k], 1, f"node {node.name!r} (Squeeze axis {k})")
    out = [d for k, d in enumerate(shape) if k not in axes]
    ctx.emit("Squeeze", node, [x], [node.output[0]], {"axes": sorted(axes)}, [out], [ctx.dtypes[x]])


@handler("Unsqueeze")
def unsqueeze(ctx, node, ins, a):
    x = ctx.value(ins[0], node)
    shape = ctx.shapes[x]
    n_axes = len(ctx.const_input(node, 1, "Unsqueeze axes").reshape(-1)) if len(ins) > 1 and ins[1] \
        else len(a.get("axes", []))
    axes = _axes(ctx, node, ins, a, len(shape) + n_axes, "Unsqueeze")
    if not axes:
        raise ctx.err(node, "Unsqueeze needs axes")
    out = list(shape)
    for k in sorted(axes):
        out.insert(k, 1)
    ctx.emit("Unsqueeze", node, [x], [node.output[0]], {"axes": sorted(axes)}, [out], [ctx.dtypes[x]])


@handler("Concat")
def concat(ctx, node, ins, a):
    # integer constants are allowed: pads or a Reshape target computed from shapes joined with fixed numbers
    xs = [ctx.data(i, node, allow_int=True) for i in ins if i]
    if len({ctx.dtypes[x].startswith("float") for x in xs}) > 1:
        raise ctx.err(node, "joins float and integer values")
    rank = len(ctx.shapes[xs[0]])
    axis = a.get("axis")
    if axis is None or not -rank <= axis < rank:
        raise ctx.err(node, f"axis {axis} out of range for rank {rank}")
    axis %= rank
    out = list(ctx.shapes[xs[0]])
    total = ctx.S.norm(out[axis])
    for x in xs[1:]:
        s = ctx.shapes[x]
        if len(s) != rank:
            raise ctx.err(node, "inputs have different ranks")
        for k in range(rank):
            if k != axis:
                ctx.S.unify(out[k], s[k], f"node {node.name!r} (Concat dimension {k})")
        d = ctx.S.norm(s[axis])
        total = total + d if isinstance(total, int) and isinstance(d, int) else None
        if total is None:
            break
    out[axis] = total if total is not None else ctx.S.new("cat")
    ctx.emit("Concat", node, xs, [node.output[0]], {"axis": axis}, [out], [ctx.dtypes[xs[0]]])


# ---------------------------------------------------------------------- Slice
def slice_params_v1(ctx, node, ins, a):
    """Slice-1: starts, ends, axes as attributes, no steps."""
    starts, ends = list(a["starts"]), list(a["ends"])
    axes = list(a["axes"]) if "axes" in a else None
    return starts, ends, axes, None


def slice_params_v10(ctx, node, ins, a):
    """Slice-10 on: starts, ends, axes, steps as constant inputs."""
    starts = [int(v) for v in ctx.const_input(node, 1, "Slice starts").reshape(-1)]
    ends = [int(v) for v in ctx.const_input(node, 2, "Slice ends").reshape(-1)]
    ax = ctx.const_input(node, 3, "Slice axes") if len(ins) > 3 else None
    st = ctx.const_input(node, 4, "Slice steps") if len(ins) > 4 else None
    axes = None if ax is None else [int(v) for v in ax.reshape(-1)]
    steps = None if st is None else [int(v) for v in st.reshape(-1)]
    return starts, ends, axes, steps


def clamp_end(e):
    return None if abs(e) >= INT64_BIG else e


@handler("Slice", since=1)
def slice_v1(ctx, node, ins, a):
    _slice(ctx, node, ins, a, slice_params_v1)


@handler("Slice", since=10)
def slice_v10(ctx, node, ins, a):
    _slice(ctx, node, ins, a, slice_params_v10)


def _slice(ctx, node, ins, a, params):
    x = ctx.value(ins[0], node)
    shape = ctx.shapes[x]
    rank = len(shape)
    starts, ends, axes, steps = params(ctx, node, ins, a)
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    slices = []
    out = list(shape)
    for ax, st, en, sp in zip(axes, starts, ends, steps):
        if not -rank <= ax < rank:
            raise ctx.err(node, f"axis {ax} out of range for rank {rank}")
        if sp == 0:
            raise ctx.err(node, "step 0 is invalid")
        ax %= rank
        st_c = None if (sp > 0 and st <= -INT64_BIG) or (sp < 0 and st >= INT64_BIG) else st
        en_c = None if abs(en) >= INT64_BIG else en
        slices.append([ax, st_c, en_c, sp])
        full = st_c in (None, 0) and en_c is None and sp == 1
        if not full:
            ctx.S.concretize(shape[ax])   # a partial slice depends on the declared size
        d = ctx.S.norm(shape[ax])
        if isinstance(d, int):
            out[ax] = len(range(*slice(st_c, en_c, sp).indices(d)))
        elif full:
            out[ax] = d
        else:
            out[ax] = ctx.S.new("slice")
    ctx.emit("Slice", node, [x], [node.output[0]], {"slices": slices}, [out], [ctx.dtypes[x]])
