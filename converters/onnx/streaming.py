"""Stream discovery: which graph input carries the time axis of the first recurrent layer, and where that axis
sits in every output (None where it is gone), so that the engine can run the model one step at a time; and the
explicit state pairs (an input the model's caller feeds back from an output: Silero's ``state`` -> ``stateN``,
``h``, ``c`` -> ``hn``, ``cn``), which a stream then keeps inside."""
from __future__ import annotations

from engine.errors import ConversionError

# an output named <input><suffix>, of the input's rank and type, is that input's next value
PAIR_SUFFIXES = ("N", "n", "_n", "_out", "_new", "_next", "out", "_1")


def state_pairs(ctx, specs_in, specs_out, declared=None):
    """[(input, output)]: the ``declared`` pairs ({input: output}, checked), or those found by name and shape."""
    ins = {s.name: s for s in specs_in}
    outs = {s.name: s for s in specs_out}

    def compatible(i, o):
        a, b = ctx.shapes[i], ctx.shapes[o]
        return (ins[i].dtype.startswith("float") and ins[i].dtype == outs[o].dtype and len(a) == len(b)
                and all(ctx.S.equal(x, y) or not (isinstance(ctx.S.norm(x), int) and isinstance(ctx.S.norm(y), int))
                        for x, y in zip(a, b)))
    if declared:
        pairs = []
        for i, o in declared.items():
            if i not in ins or o not in outs:
                raise ConversionError(f"state pair {i}={o}: the model's inputs are {list(ins)} and its outputs "
                                      f"{list(outs)}")
            if not compatible(i, o):
                raise ConversionError(f"state pair {i}={o}: the input and output differ in type or shape")
            pairs.append((i, o))
        return pairs
    pairs = []
    for name in ins:
        cands = [name + suf for suf in PAIR_SUFFIXES]
        if name.endswith("_in"):
            cands.append(name[:-3] + "_out")
        for o in cands:
            if o in outs and compatible(name, o) and o not in (p[1] for p in pairs):
                pairs.append((name, o))
                break
    return pairs


def stream_info(ctx, specs_in, specs_out, pairs=()):
    """The model's ``stream`` entry, or None if it has neither a recurrent layer with a free time axis nor state
    pairs."""
    info = _time_axis_info(ctx, specs_in, specs_out)
    if not pairs:
        return info
    states = {i for i, _ in pairs}
    if info is None or info["input"] in states:
        data = [s for s in specs_in if s.name not in states and s.dtype.startswith("float") and not s.optional]
        if not data:
            return None
        info = {"input": data[0].name, "time_axis": None, "batch_axis": None,
                "outputs": {o.name: None for o in specs_out}}
    info["state"] = [[i, o] for i, o in pairs]
    return info


def _time_axis_info(ctx, specs_in, specs_out):
    if not ctx.recurrent:
        return None
    S = ctx.S
    node, X, layout = ctx.recurrent[0]
    xs = ctx.shapes[X]
    t_sym = S.single_sym(xs[0] if layout == 0 else xs[1])
    b_sym = S.single_sym(xs[1] if layout == 0 else xs[0])
    if t_sym is None:
        return None
    for spec in specs_in:   # token ids (int) may carry the time axis too; sequence_lens has none
        dims = [S.single_sym(d) for d in ctx.shapes[spec.name]]
        if t_sym in dims:
            outputs = {}
            for o in specs_out:
                odims = [S.single_sym(d) for d in ctx.shapes[o.name]]
                outputs[o.name] = odims.index(t_sym) if t_sym in odims else None
            return {"input": spec.name, "time_axis": dims.index(t_sym),
                    "batch_axis": dims.index(b_sym) if b_sym in dims else None, "outputs": outputs}
    return None
