"""Stream-axis discovery: which graph input carries the time axis of the first recurrent layer, and where that axis
sits in every output (None where it is gone), so that the engine can run the model one step at a time."""
from __future__ import annotations


def stream_info(ctx, specs_in, specs_out):
    """The model's ``stream`` entry, or None if it has no recurrent layer or its time axis is fixed."""
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
