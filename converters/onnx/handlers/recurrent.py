"""Handlers of LSTM, GRU and RNN: the canonical node (engine/ops/recurrent.py), every attribute
made explicit, weights stored as tensors of the model's dtype, initial states and sequence_lens checked."""
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
    W = ctx.const_input(node, 1, "W")
    R = ctx.const_input(node, 2, "R")
    if W is None or R is None:
        raise ctx.err(node, "W and R are required")
    attrs = recurrent_spec.canonical(op, a, where=ctx.describe(node), onnx=True)
    D = recurrent_spec.num_directions(attrs["direction"])
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
        if arr is None:
            continue
        name = f"{base}.{key}"
        while name in ctx.tensors or name in ctx.shapes:
            name += "_"
        ctx.tensors[name] = np.ascontiguousarray(arr.astype(dtype))
        tensors[idx] = name
    Bt = ctx.tensors.get(tensors.get(3, ""))
    if Bt is not None and Bt.shape != (D, 2 * G * H):
        raise ctx.err(node, f"B has shape {Bt.shape}, expected {(D, 2 * G * H)}")
    Pt = ctx.tensors.get(tensors.get(7, ""))
    if Pt is not None and Pt.shape != (D, 3 * H):
        raise ctx.err(node, f"P has shape {Pt.shape}, expected {(D, 3 * H)}")
    xs = ctx.shapes[X]
    if len(xs) != 3:
        raise ctx.err(node, f"X must have rank 3, got rank {len(xs)}")
    T, Bn = (xs[0], xs[1]) if layout == 0 else (xs[1], xs[0])
    what = f"node {node.name!r} ({op})"
    ctx.S.unify(xs[2], W.shape[2], what + " input size")
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
