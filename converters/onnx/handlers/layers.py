"""Handlers of the ops around the recurrent layers (engine/ops/layers.py): elementwise Add/Sub/Mul/Div and
Relu/Tanh/Sigmoid/Exp/Neg/Sqrt/Abs, MatMul, Gemm, Softmax, LogSoftmax, ReduceMean, Gather, Conv (1-D; 2-D in
vision.py), Split, Cast, CastLike."""
from __future__ import annotations

import numpy as np

from ..context import Named
from ..loading import ELEM, FLOAT16
from ..registry import handler
from .shape_glue import identity


def broadcast(ctx, node, shapes):
    """The dims of numpy broadcasting ``shapes``; equal non-1 dimensions are unified."""
    S = ctx.S
    n = max(len(s) for s in shapes)
    out = []
    for k in range(n):
        dims = [s[k - n + len(s)] for s in shapes if k - n + len(s) >= 0]
        for d in dims:   # a size fixed at 1 by the exporter broadcasts: it is a 1, not a run-time dimension
            sym = S.single_sym(S.norm(d))
            if sym is not None and S.soft.get(sym) == 1:
                S.concretize(d)
        real = [d for d in dims if S.norm(d) != 1]
        if not real:
            out.append(1)
            continue
        for d in real[1:]:
            S.unify(real[0], d, f"node {node.name!r} ({node.op_type} broadcasting, dimension {k})")
        out.append(real[0])
    return out


@handler("Add")
@handler("Sub")
@handler("Mul")
@handler("Div")
@handler("Pow")
def binary(ctx, node, ins, a):
    if len(ins) != 2:
        raise ctx.err(node, "takes two inputs")
    if node.op_type == "Pow" and ins[1] in ctx.consts and np.asarray(ctx.consts[ins[1]]).dtype.kind in "iu" and \
            ins[0] not in ctx.consts and ctx.dtypes.get(ins[0], "").startswith("float"):
        # an integer exponent of a float base (ONNX allows mixed types here): the same exponent as a float
        ctx.consts[ins[1] + ".float"] = np.asarray(ctx.consts[ins[1]]).astype(np.float64)
        ins = [ins[0], ins[1] + ".float"]
    xs = [ctx.data(i, node, allow_int=True) for i in ins]
    kinds = {ctx.dtypes[x][:3] for x in xs}
    if len(kinds) > 1:
        raise ctx.err(node, f"mixes {ctx.dtypes[xs[0]]} and {ctx.dtypes[xs[1]]} operands")
    out = broadcast(ctx, node, [ctx.shapes[x] for x in xs])
    ctx.emit(node.op_type, node, xs, [node.output[0]], {}, [out], [ctx.dtypes[xs[0]]])


@handler("Relu")
@handler("Tanh")
@handler("Sigmoid")
@handler("Exp")
@handler("Neg")
@handler("Sqrt")
@handler("Abs")
def unary(ctx, node, ins, a):
    x = ctx.data(ins[0], node)
    if not ctx.dtypes[x].startswith("float"):
        raise ctx.err(node, f"needs a float input, got {ctx.dtypes[x]}")
    ctx.emit(node.op_type, node, [x], [node.output[0]], {}, [ctx.shapes[x]], [ctx.dtypes[x]])


def _matmul_shape(ctx, node, sa, sb):
    S = ctx.S
    if len(sb) == 1:
        S.unify(sa[-1], sb[0], f"node {node.name!r} (MatMul inner dimension)")
        return list(sa[:-1])
    S.unify(sa[-1], sb[-2], f"node {node.name!r} (MatMul inner dimension)")
    if len(sb) == 2:
        return list(sa[:-1]) + [sb[1]]
    if len(sa) != len(sb):
        raise ctx.err(node, f"batched MatMul of ranks {len(sa)} and {len(sb)} is not supported")
    for k in range(len(sa) - 2):
        S.unify(sa[k], sb[k], f"node {node.name!r} (MatMul batch dimension {k})")
    return list(sa[:-1]) + [sb[-1]]


@handler("MatMul")
def matmul(ctx, node, ins, a):
    xa, xb = ctx.data(ins[0], node), ctx.data(ins[1], node)
    sa, sb = ctx.shapes[xa], ctx.shapes[xb]
    if len(sa) < 1 or len(sb) < 1 or (len(sa) == 1 and len(sb) != 2):
        raise ctx.err(node, f"MatMul of ranks {len(sa)} and {len(sb)} is not supported")
    out = _matmul_shape(ctx, node, sa, sb)
    ctx.emit("MatMul", node, [xa, xb], [node.output[0]], {}, [out], [ctx.dtypes[xa]])


@handler("Gemm")
def gemm(ctx, node, ins, a):
    """Y = alpha * A' B' + beta * C with a constant B: MatMul by the pre-transposed, pre-scaled B, then Add."""
    A = ctx.value(ins[0], node)
    B = ctx.const_input(node, 1, "B")
    if B is None or B.ndim != 2:
        raise ctx.err(node, "B must be a constant matrix")
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    Bm = (B.T if a.get("transB", 0) else B) * alpha
    if len(ctx.shapes[A]) != 2:
        raise ctx.err(node, f"A must be a matrix, got rank {len(ctx.shapes[A])}")
    base = ctx.base_name(node, f"gemm{len(ctx.nodes)}")
    dtype = ctx.dtypes[A]
    if a.get("transA", 0):
        sa = ctx.shapes[A]
        ctx.emit("Transpose", Named(base + ".transA"), [A], [base + ".At"], {"perm": [1, 0]}, [[sa[1], sa[0]]],
                 [dtype])
        A = base + ".At"
    key = ctx.store(base + ".B", np.ascontiguousarray(Bm.astype(dtype)))
    out = _matmul_shape(ctx, node, ctx.shapes[A], ctx.shapes[key])
    C = ctx.const_input(node, 2, "C") if len(ins) > 2 and ins[2] else None
    y = node.output[0]
    if C is None or beta == 0.0:
        ctx.emit("MatMul", node, [A, key], [y], {}, [out], [dtype])
        return
    ctx.emit("MatMul", Named(base + ".matmul"), [A, key], [base + ".AB"], {}, [out], [dtype])
    c = np.ascontiguousarray((np.asarray(C) * beta).astype(dtype))
    c = ctx.store(base + ".C", c.reshape(1) if c.ndim == 0 else c)
    ctx.emit("Add", node, [base + ".AB", c], [y], {}, [broadcast(ctx, node, [out, ctx.shapes[c]])], [dtype])


def _softmax(ctx, node, ins, a, default_axis, flattens):
    x = ctx.value(ins[0], node)
    rank = len(ctx.shapes[x])
    axis = a.get("axis", default_axis)
    if not -rank <= axis < rank:
        raise ctx.err(node, f"axis {axis} out of range for rank {rank}")
    axis %= rank
    if flattens and axis != rank - 1:
        raise ctx.err(node, f"{node.op_type} before opset 13 flattens the axes from {axis} on; only the last "
                            f"axis is supported (re-export with opset >= 13)")
    ctx.emit(node.op_type, node, [x], [node.output[0]], {"axis": axis}, [ctx.shapes[x]], [ctx.dtypes[x]])


@handler("Softmax", since=1)
@handler("LogSoftmax", since=1)
def softmax_v1(ctx, node, ins, a):
    """Softmax-1/-11: over the input flattened to 2-D at ``axis`` (default 1) -- the same as the last axis only."""
    _softmax(ctx, node, ins, a, 1, True)


@handler("Softmax", since=13)
@handler("LogSoftmax", since=13)
def softmax_v13(ctx, node, ins, a):
    _softmax(ctx, node, ins, a, -1, False)


@handler("ReduceMean")
def reduce_mean(ctx, node, ins, a):
    """Axes from the input (opset 18 on) or the attribute; none = all, or the identity with noop_with_empty_axes."""
    x = ctx.value(ins[0], node)
    shape = ctx.shapes[x]
    rank = len(shape)
    if len(ins) > 1 and ins[1]:
        axes = [int(v) for v in np.asarray(ctx.const_input(node, 1, "axes")).reshape(-1)]
    else:
        axes = list(a.get("axes", []))
    if not axes:
        if a.get("noop_with_empty_axes", 0):
            identity(ctx, node, ins[:1], a)
            return
        axes = list(range(rank))
    if any(not -rank <= ax < rank for ax in axes):
        raise ctx.err(node, f"axes {axes} out of range for rank {rank}")
    axes = sorted({ax % rank for ax in axes})
    keep = int(a.get("keepdims", 1))
    out = [(1 if k in axes else d) for k, d in enumerate(shape)] if keep else \
        [d for k, d in enumerate(shape) if k not in axes]
    ctx.emit(node.op_type, node, [x], [node.output[0]], {"axes": axes, "keepdims": keep}, [out], [ctx.dtypes[x]])


@handler("Gather")
def gather(ctx, node, ins, a):
    """Constant indices are checked against a known size and stored flat, with their shape as an attribute."""
    data = ctx.data(ins[0], node)
    shape = ctx.shapes[data]
    rank = len(shape)
    axis = a.get("axis", 0)
    if not -rank <= axis < rank:
        raise ctx.err(node, f"axis {axis} out of range for rank {rank}")
    axis %= rank
    attrs = {"axis": axis}
    if ins[1] in ctx.consts:
        idx = np.asarray(ctx.consts[ins[1]])
        if idx.dtype.kind not in "iu":
            raise ctx.err(node, "indices must be integers")
        n = ctx.S.norm(shape[axis])
        if isinstance(n, int) and (idx.min(initial=0) < -n or idx.max(initial=0) >= n):
            raise ctx.err(node, f"an index is out of range for axis {axis} of size {n}")
        key = f"{ctx.base_name(node, 'gather')}.indices"
        while key in ctx.tensors:
            key += "_"
        index = ctx.store(key, np.ascontiguousarray(idx.astype(np.int64).reshape(-1)))
        attrs["index_shape"] = list(idx.shape)
        idims = list(idx.shape)
    else:
        index = ctx.value(ins[1], node)
        if ctx.dtypes[index] not in ("int32", "int64"):
            raise ctx.err(node, f"indices must be int32 or int64, got {ctx.dtypes[index]}")
        idims = ctx.shapes[index]
    out = list(shape[:axis]) + list(idims) + list(shape[axis + 1:])
    ctx.emit("Gather", node, [data, index], [node.output[0]], attrs, [out], [ctx.dtypes[data]])


def conv_weights(ctx, node, x, W, ins, group) -> list:
    """A Conv node's inputs [X, W, B (if any)]: X's channels unified with W's, W and B stored in X's float type."""
    ctx.S.unify(ctx.shapes[x][1], W.shape[1] * group, f"node {node.name!r} (Conv input channels)")
    base = ctx.base_name(node, f"conv{len(ctx.nodes)}")
    dtype = ctx.dtypes[x]
    inputs = [x, ctx.store(base + ".W", np.ascontiguousarray(W.astype(dtype)))]
    Bc = ctx.const_input(node, 2, "B") if len(ins) > 2 and ins[2] else None
    if Bc is not None:
        if Bc.size != W.shape[0]:
            raise ctx.err(node, f"B has {Bc.size} values for {W.shape[0]} output channels")
        inputs.append(ctx.store(base + ".B", np.ascontiguousarray(Bc.astype(dtype).reshape(-1))))
    return inputs


@handler("Conv")
def conv(ctx, node, ins, a):
    """1-D convolution with constant weights; auto_pad resolved to explicit pads. 2-D: handlers/vision.py."""
    x = ctx.value(ins[0], node)
    xs = ctx.shapes[x]
    if len(xs) == 4:
        from .vision import conv2d      # here: vision imports this module
        return conv2d(ctx, node, ins, a)
    W = ctx.const_input(node, 1, "W")
    if W is None or W.ndim != 3 or len(xs) != 3:
        raise ctx.err(node, "only 1-D and 2-D convolutions are supported (X (N, C, L) or (N, C, H, W) and a "
                            "constant W (M, C/group, K) or (M, C/group, kH, kW))")
    K = W.shape[2]
    if list(a.get("kernel_shape", [K])) != [K]:
        raise ctx.err(node, f"kernel_shape {a.get('kernel_shape')} does not match W {W.shape}")
    strides = list(a.get("strides", [1]))
    dil = list(a.get("dilations", [1]))
    pads = list(a.get("pads", [0, 0]))
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto == "VALID":
        pads = [0, 0]
    elif auto != "NOTSET":
        if strides != [1]:
            raise ctx.err(node, f"auto_pad {auto} with a stride is not supported")
        total = dil[0] * (K - 1)
        pads = [total // 2, total - total // 2] if auto == "SAME_UPPER" else [total - total // 2, total // 2]
    group = int(a.get("group", 1))
    inputs = conv_weights(ctx, node, x, W, ins, group)
    dtype = ctx.dtypes[x]
    L = ctx.S.norm(xs[2])
    Lout = ((L + pads[0] + pads[1] - dil[0] * (K - 1) - 1) // strides[0] + 1 if isinstance(L, int)
            else (xs[2] if pads[0] + pads[1] == dil[0] * (K - 1) and strides == [1] else ctx.S.new("conv_len")))
    ctx.emit("Conv", node, inputs, [node.output[0]], {"pads": pads, "strides": strides, "dilations": dil,
                                                      "group": group}, [[xs[0], W.shape[0], Lout]], [dtype])


@handler("Split")
def split(ctx, node, ins, a):
    """Sizes from the input (opset 13 on), the attribute, or an equal split into num_outputs (opset 18) or the
    number of outputs."""
    x = ctx.value(ins[0], node)
    shape = ctx.shapes[x]
    axis = a.get("axis", 0)
    if not -len(shape) <= axis < len(shape):
        raise ctx.err(node, f"axis {axis} out of range for rank {len(shape)}")
    axis %= len(shape)
    n_out = len(node.output)
    if len(ins) > 1 and ins[1]:
        sizes = [int(v) for v in np.asarray(ctx.const_input(node, 1, "split")).reshape(-1)]
    elif "split" in a:
        sizes = [int(v) for v in a["split"]]
    else:
        total = ctx.S.norm(shape[axis])
        if not isinstance(total, int):
            raise ctx.err(node, f"an equal split of the run-time dimension {total} is not supported")
        parts = int(a.get("num_outputs", n_out))
        step = -(-total // parts)
        sizes = [min(step, total - k * step) for k in range(parts)]
    if len(sizes) != n_out:
        raise ctx.err(node, f"{len(sizes)} split sizes for {n_out} outputs")
    ctx.S.unify(shape[axis], sum(sizes), f"node {node.name!r} (Split axis)")
    outs = []
    for size in sizes:
        o = list(shape)
        o[axis] = size
        outs.append(o)
    ctx.emit("Split", node, [x], list(node.output), {"axis": axis, "sizes": sizes}, outs, [ctx.dtypes[x]] * n_out)


@handler("Cast")
def cast(ctx, node, ins, a):
    """Between a float type and int32/int64 (a model computes in one float type); to the same type: the identity."""
    x = ctx.value(ins[0], node)
    if a.get("to") == 9:      # BOOL: x != 0, an int 0/1 in the engine
        ctx.emit("Bool", node, [x], [node.output[0]], {}, [ctx.shapes[x]], ["bool"])
        return
    to = (ctx.float_dtype or "float32") if a.get("to") == FLOAT16 else ELEM.get(a.get("to"))
    if to is None:
        raise ctx.err(node, f"Cast to element type {a.get('to')} is not supported (float16, float, double, int32, "
                            f"int64, bool)")
    src = ctx.dtypes[x]
    if to == src:
        identity(ctx, node, ins, a)
        return
    if to.startswith("float") and src.startswith("float"):
        raise ctx.err(node, f"Cast from {src} to {to}: a model computes in one float type")
    target = "float" if to.startswith("float") else to
    out_dtype = (ctx.float_dtype or "float32") if target == "float" else to
    ctx.emit("Cast", node, [x], [node.output[0]], {"to": target}, [ctx.shapes[x]], [out_dtype])


@handler("CastLike")
def cast_like(ctx, node, ins, a):
    """Cast to the element type of the second input (the dynamo exporter casts constants, Clip's bounds for one,
    like the value they meet): a constant stays a constant, of that type; a run-time value is a Cast."""
    like = ins[1]
    target = ctx.dtypes.get(like) or (str(ctx.consts[like].dtype) if like in ctx.consts else None)
    code = {name: code for code, name in ELEM.items()}.get(target, 9 if target == "bool" else None)
    if code is None:
        raise ctx.err(node, f"CastLike to the type of {like!r} ({target or 'unknown'}) is not supported")
    if ins[0] in ctx.consts:
        ctx.consts[node.output[0]] = np.asarray(ctx.consts[ins[0]]).astype(target)
        return
    cast(ctx, node, ins[:1], {"to": code})
