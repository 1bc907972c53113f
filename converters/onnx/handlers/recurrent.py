"""Handlers of LSTM, GRU and RNN: the canonical node (engine/ops/recurrent.py), every attribute
made explicit, weights stored as tensors of the model's dtype, initial states and sequence_lens checked.

W, R, B and P are constants (initializers, or computed from them: folded), or graph inputs fed at run time, as
onnxruntime allows: a graph input stays an input of the canonical node, its declared dimensions bound to the ones
the node needs, and the engine packs it on the call (engine/call_weights.py). Weights computed from run-time
values are refused."""
from __future__ import annotations

import numpy as np

from engine import recurrent_spec

from ..registry import handler

N_INPUTS = {"LSTM": 8, "GRU": 6, "RNN": 6}   # X, W, R, B, sequence_lens, initial_h [, initial_c, P]


@handler("LSTM", since=7)
@handler("GRU", since=7)
@handler("RNN", since=7)
def recurrent(ctx, node, ins, a):
    """Attributes canonicalised by engine/recurrent_spec.py; hidden_size, if absent, read off R."""
    op = node.op_type
    G = recurrent_spec.SPECS[op].n_gates
    n_in = N_INPUTS[op]
    ins = ins + [""] * (n_in - len(ins))
    if len(ins) > n_in:
        raise ctx.err(node, f"too many inputs ({len(ins)}; {op} takes at most {n_in})")
    X = ctx.value(ins[0], node)
    if not ins[1] or not ins[2]:
        raise ctx.err(node, "W and R are required")
    attrs = recurrent_spec.canonical(op, a, where=ctx.describe(node), onnx=True)
    D = recurrent_spec.num_directions(attrs["direction"])
    if any(_fed(ctx, node, ins, i, what, X) for i, what in _WEIGHTS[op].items()):
        _emit_fed(ctx, node, ins, attrs, X, G, D)
        return
    W = ctx.const_input(node, 1, "W")
    R = ctx.const_input(node, 2, "R")
    if (W.ndim != 3 or R.ndim != 3 or W.shape[0] != D or R.shape[0] != D or W.shape[1] % G
            or W.shape[1] != R.shape[1]):
        raise ctx.err(node, f"W {W.shape} and R {R.shape} do not fit an {op} with {D} direction(s)")
    H = R.shape[2] if attrs["hidden_size"] is None else attrs["hidden_size"]
    if W.shape[1] != G * H or R.shape[2] != H:
        raise ctx.err(node, f"hidden_size {H} does not match W {W.shape} / R {R.shape}")
    attrs["hidden_size"] = H
    _emit_recurrent(ctx, node, ins, attrs, X, W, R, G, D, H, attrs["layout"])


def _emit_recurrent(ctx, node, ins, attrs, X, W, R, G, D, H, layout):
    op = node.op_type
    lstm = op == "LSTM"
    dtype = ctx.dtypes[X]
    base = ctx.base_name(node, f"{op.lower()}{len(ctx.nodes)}")
    tensors = {}
    weights = [("W", 1, W), ("R", 2, R), ("B", 3, ctx.const_input(node, 3, "B"))]
    if lstm:
        weights.append(("P", 7, ctx.const_input(node, 7, "P")))
    for key, idx, arr in weights:
        if arr is not None:
            tensors[idx] = _store(ctx, base, key, arr, dtype)
    Bt = ctx.tensors.get(tensors.get(3, ""))
    if Bt is not None and Bt.shape != (D, 2 * G * H):
        raise ctx.err(node, f"B has shape {Bt.shape}, expected {(D, 2 * G * H)}")
    Pt = ctx.tensors.get(tensors.get(7, ""))
    if Pt is not None and Pt.shape != (D, 3 * H):
        raise ctx.err(node, f"P has shape {Pt.shape}, expected {(D, 3 * H)}")
    _emit_node(ctx, node, ins, attrs, X, tensors, W.shape[2], D, H, layout)


def _emit_node(ctx, node, ins, attrs, X, tensors, input_size, D, H, layout):
    """The canonical node, its weights the names in ``tensors`` ({input index: name}): model tensors, or graph
    inputs fed at run time."""
    op = node.op_type
    lstm = op == "LSTM"
    dtype = ctx.dtypes[X]
    xs = ctx.shapes[X]
    if len(xs) != 3:
        raise ctx.err(node, f"X must have rank 3, got rank {len(xs)}")
    T, Bn = (xs[0], xs[1]) if layout == 0 else (xs[1], xs[0])
    what = f"node {node.name!r} ({op})"
    ctx.S.unify(xs[2], input_size, what + " input size")
    seq = _sequence_lens(ctx, node, ins[4], Bn, what)
    state = []
    for i in ((5, 6) if lstm else (5,)):
        if ins[i]:
            v = ctx.value(ins[i], node)
            s = ctx.shapes[v]
            want = [D, Bn, H] if layout == 0 else [Bn, D, H]
            if len(s) != 3:
                raise ctx.err(node, "initial state must have rank 3")
            for k in range(3):
                ctx.S.unify(s[k], want[k], what + (" initial_h" if i == 5 else " initial_c"))
            state.append(v)
        else:
            state.append("")
    inputs = [X, tensors[1], tensors[2], tensors.get(3, ""), seq, *state]
    if lstm:
        inputs += [tensors.get(7, ""), ""]
    while inputs and not inputs[-1]:
        inputs.pop()
    n_out = 3 if lstm else 2
    if len(node.output) > n_out:
        raise ctx.err(node, f"too many outputs ({len(node.output)}; {op} has at most {n_out})")
    outs = list(node.output) + [""] * (n_out - len(node.output))
    if layout == 0:
        shapes = [[T, D, Bn, H], [D, Bn, H], [D, Bn, H]][:n_out]
    else:
        shapes = [[Bn, T, D, H], [Bn, D, H], [Bn, D, H]][:n_out]
    ctx.emit(op, node, inputs, outs, attrs, shapes, [dtype] * n_out)
    ctx.recurrent.append((ctx.nodes[-1], X, layout))


_WEIGHTS = {"LSTM": {1: "W", 2: "R", 3: "B", 7: "P"}, "GRU": {1: "W", 2: "R", 3: "B"},
            "RNN": {1: "W", 2: "R", 3: "B"}}


def _fed(ctx, node, ins, i, what, X) -> bool:
    """Whether weight input ``i`` is a graph input fed at run time (False for a constant or an absent one)."""
    name = ins[i]
    if not name or name in ctx.consts:
        return False
    if name not in ctx.input_names:
        raise ctx.err(node, f"{what} ({name!r}) is computed by the graph at run time: weights must be constants "
                            f"(initializers, or computed from initializers only) or graph inputs")
    if ctx.dtypes[name] != ctx.dtypes[X]:
        raise ctx.err(node, f"{what} (graph input {name!r}) is {ctx.dtypes[name]}, but X is {ctx.dtypes[X]}")
    return True


def _emit_fed(ctx, node, ins, attrs, X, G, D):
    """A node with some weights fed at run time: their declared dimensions are bound to the node's (a fixed size
    that does not fit is an error here; a symbolic one becomes the node's), constants are stored as tensors."""
    op = node.op_type
    what = f"node {node.name!r} ({op})"
    shapes = {}
    for i in _WEIGHTS[op]:
        name = ins[i]
        if name:
            shapes[i] = list(ctx.consts[name].shape) if name in ctx.consts else ctx.shapes[name]
    for i, rank in ((1, 3), (2, 3), (3, 2), (7, 2)):
        if i in shapes and len(shapes[i]) != rank:
            raise ctx.err(node, f"{_WEIGHTS[op][i]} must have rank {rank}, got shape {_dims(ctx, shapes[i])}")
    H = attrs["hidden_size"]
    if H is None:   # read off R, whose last dimension must then be a size the file states
        H = ctx.S.norm(shapes[2][2])
        if not isinstance(H, int):
            H = ctx.S.soft.get(ctx.S.single_sym(H))
        if H is None:
            raise ctx.err(node, f"hidden_size is not given and R ({ins[2]!r}) does not state its size")
        attrs["hidden_size"] = H
    want = {1: [D, G * H, ctx.shapes[X][2] if len(ctx.shapes[X]) == 3 else None], 2: [D, G * H, H],
            3: [D, 2 * G * H], 7: [D, 3 * H]}
    for i, dims in shapes.items():
        for k, (got, need) in enumerate(zip(dims, want[i])):
            if need is not None:
                ctx.S.unify(got, need, f"{what} {_WEIGHTS[op][i]} dimension {k}")
    base = ctx.base_name(node, f"{op.lower()}{len(ctx.nodes)}")
    tensors = {i: _store(ctx, base, key, ctx.consts[ins[i]], ctx.dtypes[X]) if ins[i] in ctx.consts else ins[i]
               for i, key in _WEIGHTS[op].items() if ins[i]}
    _emit_node(ctx, node, ins, attrs, X, tensors, shapes[1][2], D, H, attrs["layout"])


def _store(ctx, base, key, arr, dtype):
    """Keep a constant weight in the model, as a tensor of the model's dtype named after the node."""
    name = f"{base}.{key}"
    while name in ctx.tensors or name in ctx.shapes:
        name += "_"
    ctx.tensors[name] = np.ascontiguousarray(arr.astype(dtype))
    return name


def _dims(ctx, dims):
    """Dimensions for a message, as the file declares them (a fixed size rather than the symbol standing for it)."""
    return tuple(ctx.S.soft.get(ctx.S.single_sym(d), ctx.export_dim(d)) for d in dims)


def _sequence_lens(ctx, node, name, Bn, what):
    """The sequence_lens input's name ("" if absent): a constant is stored as int32."""
    if not name:
        return ""
    if name in ctx.consts:
        c = ctx.consts[name]
        ctx.tensors.setdefault(name, np.ascontiguousarray(c.astype(np.int32)))
        ctx.shapes[name] = list(c.shape)
        ctx.dtypes[name] = "int32"
    elif ctx.dtypes.get(name) not in ("int32", "int64"):
        raise ctx.err(node, "sequence_lens must be an int32 tensor")
    ctx.S.unify(ctx.shapes[name][0] if ctx.shapes[name] else 1, Bn, what + " sequence_lens")
    return name
