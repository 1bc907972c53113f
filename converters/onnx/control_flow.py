"""ONNX If: inlined when its condition is known at conversion time, else an engine If node holding both branches.

Exporters write If for things PyTorch decides in Python (is the input batched? did the encoder give one frame? which
sample rate?). Most conditions test ranks or constants and are known here: the taken branch is converted in place
and the If disappears. The others (a shape only the call knows, a value such as Silero's ``sr``) become an engine If
whose taken branch the planner picks once per plan (engine/ops/control.py), so it costs nothing per call.

Each branch is converted on its own copy of the symbol table: binding a dimension while converting one branch (a
Squeeze of an axis the other branch never squeezes) must not constrain the model. An output whose shapes differ
between the branches gets a fresh symbol; one whose rank differs follows the then branch, and the planner refuses a
call that takes the other branch with a clear error (its rank cannot match what later nodes were converted for).
"""
from __future__ import annotations

import numpy as np

from .context import Named


def convert_if(ctx, node, convert_node):
    a = ctx.attrs(node)
    then_g, else_g = a.get("then_branch"), a.get("else_branch")
    if then_g is None or else_g is None or len(node.input) != 1:
        raise ctx.err(node, "needs a condition and two branches")
    cond = node.input[0]
    for g, key in ((then_g, "then"), (else_g, "else")):
        if len(g.output) != len(node.output):
            raise ctx.err(node, f"the {key} branch gives {len(g.output)} outputs for {len(node.output)}")
    if cond in ctx.consts:
        c = np.asarray(ctx.consts[cond])
        if c.size != 1:
            raise ctx.err(node, f"the condition must have one element, it has {c.size}")
        _inline(ctx, node, then_g if c.reshape(-1)[0] else else_g, convert_node)
        return
    cond_name = ctx.value(cond, node)
    if ctx.dtypes[cond_name].startswith("float") or ctx.shapes[cond_name] not in ([], [1]):
        raise ctx.err(node, "the condition must be a boolean tensor of one element")
    branches, shapes = {}, []
    for key, g in (("then", then_g), ("else", else_g)):
        nodes, outs, out_shapes, out_dtypes = _branch(ctx, node, key, g, convert_node)
        branches[key] = {"nodes": nodes, "outputs": outs}
        shapes.append((out_shapes, out_dtypes))
    (st, dt), (se, de) = shapes
    out_shapes = []
    for k, (a_shape, b_shape) in enumerate(zip(st, se)):
        if dt[k] != de[k]:
            raise ctx.err(node, f"output {k} is {dt[k]} in the then branch and {de[k]} in the else branch")
        if len(a_shape) != len(b_shape):
            out_shapes.append(list(a_shape))          # see the module's docstring
            continue
        out_shapes.append([x if ctx.S.equal(x, y) else ctx.S.new("if") for x, y in zip(a_shape, b_shape)])
    reads = []
    for key in ("then", "else"):
        for name in _outer_reads(branches[key]["nodes"], branches[key]["outputs"]):
            if name not in reads:
                reads.append(name)
    # the ranks later nodes were converted for: a call whose branch gives another rank is refused (engine If)
    branches["ranks"] = [len(s) for s in out_shapes]
    ctx.emit("If", node, [cond_name] + reads, list(node.output), branches, out_shapes, dt)


def _outer_reads(nodes, outputs):
    """The names a branch reads that it does not define (recursing into nested Ifs)."""
    defined, reads = set(), []

    def walk(ns):
        for n in ns:
            for name in n.inputs:
                if name and name not in defined and name not in reads:
                    reads.append(name)
            for key in ("then", "else") if n.op == "If" else ():
                walk(n.attrs[key]["nodes"])
            defined.update(o for o in n.outputs if o)
    walk(nodes)
    return reads + [o for o in outputs if o not in defined and o not in reads]


def _load_initializers(ctx, g):
    for init in g.initializer:
        ctx.consts[init.name] = ctx.to_array(init)
    if len(getattr(g, "sparse_initializer", [])):
        raise ctx.err(Named(g.name), "sparse initializers are not supported")


def _inline(ctx, node, g, convert_node):
    """The taken branch converted in place; the If's outputs become its outputs."""
    _load_initializers(ctx, g)
    for n in g.node:
        convert_node(ctx, n)
    for vi, out in zip(g.output, node.output):
        src = vi.name
        if not out:
            continue
        if src in ctx.consts:
            ctx.consts[out] = ctx.consts[src]
        elif src in ctx.symvals:
            ctx.symvals[out] = ctx.symvals[src]
        else:
            x = ctx.value(src, node)
            ctx.emit("Identity", Named(f"{node.name or 'If'}/{out}"), [x], [out], {}, [ctx.shapes[x]],
                     [ctx.dtypes[x]])


def _branch(ctx, node, key, g, convert_node):
    """Convert one branch into its own node list, on a copy of the symbol table (restored afterwards)."""
    S = ctx.S
    saved_nodes, saved_recurrent = ctx.nodes, len(ctx.recurrent)
    bound, soft = dict(S.bound), dict(S.soft)
    ctx.nodes = []
    ctx.scopes.append(set())
    base = f"{node.name or 'If'}/{key}"
    try:
        _load_initializers(ctx, g)
        for n in g.node:
            convert_node(ctx, n)
        outs, shapes, dtypes = [], [], []
        for k, vi in enumerate(g.output):
            src = vi.name
            if src in ctx.consts:
                c = np.asarray(ctx.consts[src], order="C")     # (rank 0 stays rank 0)
                if c.dtype.kind == "b":
                    c = c.astype(np.int64)
                elif c.dtype.kind == "f" and ctx.float_dtype:
                    c = c.astype(ctx.float_dtype)
                elif c.dtype.kind in "iu":
                    c = c.astype(np.int64)
                src = ctx.store(f"{base}/const{k}", c)
            else:
                src = ctx.value(src, node)        # a shape value becomes a ShapeValue node here
            if src not in ctx.scopes[-1]:         # an outer value or a tensor: give the branch its own name
                name = f"{base}/out{k}"
                ctx.emit("Identity", Named(name), [src], [name], {}, [ctx.shapes[src]], [ctx.dtypes[src]])
                src = name
            outs.append(src)
            shapes.append([S.norm(d) for d in ctx.shapes[src]])
            dtypes.append(ctx.dtypes[src])
        return ctx.nodes, outs, shapes, dtypes
    finally:
        ctx.nodes = saved_nodes
        ctx.scopes.pop()
        del ctx.recurrent[saved_recurrent:]     # layers inside a branch do not define the model's stream
        S.bound.clear()
        S.bound.update(bound)
        S.soft.clear()
        S.soft.update(soft)
