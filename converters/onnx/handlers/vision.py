"""Handlers of the ops of convolutional front ends (engine/ops/vision.py): Conv 2-D (reached through the Conv handler
in layers.py), MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool, BatchNormalization, LeakyRelu, Clip,
ReduceMax.

auto_pad becomes explicit pads wherever they do not depend on a run-time size (VALID always; SAME_UPPER/SAME_LOWER at
stride 1 or over a fixed size); otherwise the engine computes them per call. A BatchNormalization (inference) whose
input is a convolution's output read by nothing else is folded into that convolution's weights and bias; any other
becomes a ChannelAffine (x * scale[c] + shift[c]). The global pools are reductions over the spatial axes.
"""
from __future__ import annotations

import numpy as np

from engine.ops.vision import conv_out, pool_out, same_pads

from ..registry import handler
from .layers import conv_weights, reduce_mean


def _auto_pad(ctx, node, a):
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
        raise ctx.err(node, f"auto_pad {auto!r} is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER")
    return auto


def _ints_attr(ctx, node, a, key, n, default, lo):
    v = [int(d) for d in a.get(key, [default] * n)]
    if len(v) != n or any(d < lo for d in v):
        raise ctx.err(node, f"{key} {v} must be {n} integers >= {lo}")
    return v


def _window(ctx, node, a, xs, kernel, ceil_mode=0):
    """(strides, dilations, pads, auto_pad for the engine, output dims) of a convolution or pooling with ``kernel``
    over the spatial dims of ``xs``. The pads are explicit unless SAME padding depends on a run-time size."""
    S = ctx.S
    n = len(kernel)
    strides = _ints_attr(ctx, node, a, "strides", n, 1, 1)
    dil = _ints_attr(ctx, node, a, "dilations", n, 1, 1)
    pads = _ints_attr(ctx, node, a, "pads", 2 * n, 0, 0)
    auto = _auto_pad(ctx, node, a)
    sizes = [S.norm(d) for d in xs[2:]]
    engine_auto = "NOTSET"
    if auto == "VALID":
        pads = [0] * (2 * n)
    elif auto != "NOTSET":
        if any(d > 1 for d in dil):
            raise ctx.err(node, f"auto_pad {auto} with dilations {dil} is not supported (onnxruntime refuses it too; "
                                f"give explicit pads)")
        if all(isinstance(d, int) or s == 1 for d, s in zip(sizes, strides)):
            pairs = [same_pads(d if isinstance(d, int) else 0, k, s, dl, auto)
                     for d, k, s, dl in zip(sizes, kernel, strides, dil)]
            pads = [b for b, _ in pairs] + [e for _, e in pairs]
        else:
            engine_auto, pads = auto, [0] * (2 * n)
    out = []
    for k in range(n):
        d, kk, s, dl, p0, p1 = sizes[k], kernel[k], strides[k], dil[k], pads[k], pads[k + n]
        if engine_auto != "NOTSET":
            out.append(-(-d // s) if isinstance(d, int) else (xs[2 + k] if s == 1 else S.new("same")))
        elif isinstance(d, int):
            m = pool_out(d, kk, s, dl, p0, p1, ceil_mode) if ceil_mode else conv_out(d, kk, s, dl, p0, p1)
            if m < 1:
                raise ctx.err(node, f"the input's spatial size {d} is smaller than the window {kk} "
                                    f"(dilation {dl}, pads {p0} + {p1})")
            out.append(m)
        elif s == 1 and p0 + p1 == dl * (kk - 1):
            out.append(xs[2 + k])     # the same size: a free dimension stays free
        else:
            out.append(S.new("win"))
    return strides, dil, pads, engine_auto, out


def conv2d(ctx, node, ins, a):
    """Conv on (N, C, H, W) with a constant W (M, C/group, kH, kW) and an optional constant B (M,)."""
    x = ctx.value(ins[0], node)
    xs = ctx.shapes[x]
    W = ctx.const_input(node, 1, "W")
    if W is None or W.ndim != 4:
        raise ctx.err(node, "a 2-D convolution needs a constant W of rank 4 (M, C/group, kH, kW)")
    if not ctx.dtypes[x].startswith("float") or W.dtype.kind != "f":
        raise ctx.err(node, "X and W must be float tensors")
    kernel = list(W.shape[2:])
    if list(a.get("kernel_shape", kernel)) != kernel:
        raise ctx.err(node, f"kernel_shape {a.get('kernel_shape')} does not match W {W.shape}")
    group = int(a.get("group", 1))
    if group < 1 or W.shape[0] % group:
        raise ctx.err(node, f"group {group} does not divide the {W.shape[0]} output channels")
    strides, dil, pads, auto, spatial = _window(ctx, node, a, xs, kernel)
    inputs = conv_weights(ctx, node, x, W, ins, group)
    dtype = ctx.dtypes[x]
    ctx.emit("Conv2D", node, inputs, [node.output[0]],
             {"pads": pads, "strides": strides, "dilations": dil, "group": group, "auto_pad": auto},
             [[xs[0], W.shape[0], *spatial]], [dtype])


@handler("MaxPool")
@handler("AveragePool")
def pool(ctx, node, ins, a):
    """1-D and 2-D pooling; MaxPool's Indices output is not supported."""
    x = ctx.value(ins[0], node)
    xs = ctx.shapes[x]
    if len(node.output) > 1 and node.output[1]:
        raise ctx.err(node, "the Indices output of MaxPool is not supported")
    kernel = [int(k) for k in a.get("kernel_shape", [])]
    if len(xs) not in (3, 4) or len(kernel) != len(xs) - 2:
        raise ctx.err(node, f"only 1-D and 2-D pooling is supported (input rank 3 or 4 and a kernel_shape for each "
                            f"spatial axis); got input rank {len(xs)} and kernel_shape {kernel}")
    if any(k < 1 for k in kernel):
        raise ctx.err(node, f"kernel_shape {kernel} must be positive")
    if not ctx.dtypes[x].startswith("float"):
        raise ctx.err(node, f"needs a float input, got {ctx.dtypes[x]}")
    ceil_mode = int(a.get("ceil_mode", 0))
    strides, dil, pads, auto, spatial = _window(ctx, node, a, xs, kernel, ceil_mode)
    attrs = {"kernel_shape": kernel, "strides": strides, "dilations": dil, "pads": pads, "auto_pad": auto,
             "ceil_mode": ceil_mode}
    if node.op_type == "AveragePool":
        attrs["count_include_pad"] = int(a.get("count_include_pad", 0))
    ctx.emit(node.op_type, node, [x], [node.output[0]], attrs, [[xs[0], xs[1], *spatial]], [ctx.dtypes[x]])


@handler("GlobalAveragePool")
@handler("GlobalMaxPool")
def global_pool(ctx, node, ins, a):
    """The mean or maximum over every spatial axis, which stay as 1s."""
    x = ctx.value(ins[0], node)
    xs = ctx.shapes[x]
    if len(xs) < 3:
        raise ctx.err(node, f"needs an input of rank >= 3 (N, C, spatial...), got rank {len(xs)}")
    op = "ReduceMean" if node.op_type == "GlobalAveragePool" else "ReduceMax"
    ctx.emit(op, node, [x], [node.output[0]], {"axes": list(range(2, len(xs))), "keepdims": 1},
             [[xs[0], xs[1]] + [1] * (len(xs) - 2)], [ctx.dtypes[x]])


handler("ReduceMax")(reduce_mean)     # the same axes handling; it emits the node's own op


def _readers(ctx, name) -> int:
    """How many times the ONNX graph reads ``name``: node inputs (nested graphs included) and graph outputs."""
    def count(graph):
        n = sum(1 for o in graph.output if o.name == name)
        for nd in graph.node:
            n += sum(1 for i in nd.input if i == name)
            for at in nd.attribute:
                for g in ([at.g] if at.HasField("g") else []) + list(at.graphs):
                    n += count(g)
        return n
    return count(ctx.graph)


@handler("BatchNormalization")
def batch_norm(ctx, node, ins, a):
    """Inference: y = (x - mean) / sqrt(var + epsilon) * scale + bias, per channel (axis 1), i.e.
    x * s + t with s = scale / sqrt(var + epsilon), t = bias - mean * s."""
    if int(a.get("training_mode", 0)) or any(node.output[1:]):
        raise ctx.err(node, "training mode (running statistics as outputs) is not supported: inference only")
    if int(a.get("spatial", 1)) != 1:
        raise ctx.err(node, "spatial=0 (statistics per position, not per channel) is not supported")
    x = ctx.value(ins[0], node)
    xs = ctx.shapes[x]
    if len(xs) < 2 or not ctx.dtypes[x].startswith("float"):
        raise ctx.err(node, "needs a float input of rank >= 2 (N, C, ...)")
    params = []
    for i, what in enumerate(("scale", "B", "input_mean", "input_var"), start=1):
        v = ctx.const_input(node, i, what)
        if v is None or v.dtype.kind != "f" or v.ndim != 1:
            raise ctx.err(node, f"{what} must be a constant float vector (one value per channel)")
        params.append(np.asarray(v, np.float64))
    scale, bias, mean, var = params
    C = scale.shape[0]
    if any(p.shape != (C,) for p in params):
        raise ctx.err(node, f"scale, B, mean and var must all have shape ({C},)")
    ctx.S.unify(xs[1], C, f"node {node.name!r} (BatchNormalization channels)")
    s = scale / np.sqrt(var + float(a.get("epsilon", 1e-5)))
    t = bias - mean * s
    dtype = ctx.dtypes[x]
    y = node.output[0]
    conv = next((n for n in reversed(ctx.nodes) if x in n.outputs), None)
    if conv is not None and conv.op in ("Conv2D", "Conv") and _readers(ctx, x) == 1 and \
            sum(conv.inputs[1] in n.inputs for n in ctx.nodes) == 1:
        # fold: conv(x, W) + B, then * s + t  ==  conv(x, W * s) + (B * s + t), per output channel
        W = ctx.tensors[conv.inputs[1]].astype(np.float64)
        B = ctx.tensors[conv.inputs[2]].astype(np.float64) if len(conv.inputs) > 2 and conv.inputs[2] else 0.0
        ctx.store(conv.inputs[1], np.ascontiguousarray((W * s.reshape((-1,) + (1,) * (W.ndim - 1))).astype(dtype)))
        b_key = conv.inputs[2] if len(conv.inputs) > 2 and conv.inputs[2] else conv.inputs[1] + ".bias"
        while len(conv.inputs) < 3 and b_key in ctx.tensors:
            b_key += "_"
        ctx.store(b_key, np.ascontiguousarray((B * s + t).astype(dtype)))
        conv.inputs[2:] = [b_key]
        conv.outputs[0] = y
        ctx.shapes[y], ctx.dtypes[y] = ctx.shapes.pop(x), ctx.dtypes.pop(x)
        return
    base = ctx.base_name(node, f"batchnorm{len(ctx.nodes)}")
    ctx.emit("ChannelAffine", node, [x, ctx.store(base + ".scale", s.astype(dtype)),
                                     ctx.store(base + ".shift", t.astype(dtype))], [y], {}, [xs], [dtype])


@handler("LeakyRelu")
def leaky_relu(ctx, node, ins, a):
    x = ctx.value(ins[0], node)
    if not ctx.dtypes[x].startswith("float"):
        raise ctx.err(node, f"needs a float input, got {ctx.dtypes[x]}")
    ctx.emit("LeakyRelu", node, [x], [node.output[0]], {"alpha": float(a.get("alpha", 0.01))}, [ctx.shapes[x]],
             [ctx.dtypes[x]])


def _clip(ctx, node, x, lo, hi):
    if not ctx.dtypes[x].startswith("float"):
        raise ctx.err(node, f"needs a float input, got {ctx.dtypes[x]}")
    for v in (lo, hi):
        if v is not None and np.isnan(v):
            raise ctx.err(node, "a NaN bound is not supported")
    ctx.emit("Clip", node, [x], [node.output[0]], {"min": lo, "max": hi}, [ctx.shapes[x]], [ctx.dtypes[x]])


@handler("Clip", since=1)
def clip_v1(ctx, node, ins, a):
    """Clip-1 and -6: bounds as attributes, whose defaults are the float32 extremes (not infinities)."""
    big = float(np.finfo(np.float32).max)
    _clip(ctx, node, ctx.value(ins[0], node), float(a.get("min", -big)), float(a.get("max", big)))


@handler("Clip", since=11)
def clip_v11(ctx, node, ins, a):
    """Clip-11 on: bounds as optional constant scalar inputs."""
    bounds = []
    for i, what in ((1, "min"), (2, "max")):
        v = ctx.const_input(node, i, what) if len(ins) > i else None
        if v is not None and np.asarray(v).size != 1:
            raise ctx.err(node, f"{what} must be a scalar")
        bounds.append(None if v is None else float(np.asarray(v).reshape(-1)[0]))
    _clip(ctx, node, ctx.value(ins[0], node), *bounds)
