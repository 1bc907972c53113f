"""Shape glue between recurrent layers: Transpose, Reshape, Squeeze, Unsqueeze, Concat, Slice, Identity.

The converters resolve everything that depends on weights or static shapes, so each of these arrives with static
attributes (axes are non-negative, Reshape targets use 0 = copy and -1 = infer). Every value in generated code is a
C-contiguous array, so each op that could produce a view copies it.
"""
from ..errors import ModelFileError
from .base import Op, require_attrs


def _int_list(node, key, allow_none=False):
    v = node.attrs.get(key)
    if not isinstance(v, list) or not all(isinstance(x, int) or (allow_none and x is None) for x in v):
        raise ModelFileError(f"node {node.name!r} ({node.op}): attribute {key!r} must be a list of integers")
    return v


def _one_in_one_out(node):
    if len(node.inputs) != 1 or not node.inputs[0] or len(node.outputs) != 1 or not node.outputs[0]:
        raise ModelFileError(f"node {node.name!r} ({node.op}) takes one input and gives one output")


def _check_rank(node, ctx, rank):
    if ctx.rank(node.inputs[0]) != rank:
        raise ModelFileError(f"node {node.name!r} ({node.op}): expects a rank-{rank} input, "
                             f"got rank {ctx.rank(node.inputs[0])}")


def _shape_tuple(items):
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


class Identity(Op):
    name = "Identity"

    @classmethod
    def validate(cls, node, model):
        _one_in_one_out(node)

    @classmethod
    def emit(cls, node, ctx):
        ctx.line(f"{ctx.define(node.outputs[0], ctx.rank(node.inputs[0]))} = {ctx.value(node.inputs[0])}")


class Transpose(Op):
    name = "Transpose"

    @classmethod
    def validate(cls, node, model):
        _one_in_one_out(node)
        perm = _int_list(node, "perm")
        if sorted(perm) != list(range(len(perm))):
            raise ModelFileError(f"node {node.name!r}: perm {perm} is not a permutation")

    @classmethod
    def emit(cls, node, ctx):
        perm = node.attrs["perm"]
        _check_rank(node, ctx, len(perm))
        x = ctx.value(node.inputs[0])
        out = ctx.define(node.outputs[0], len(perm))
        ctx.line(f"{out} = np.ascontiguousarray(np.transpose({x}, {_shape_tuple([str(p) for p in perm])}))")


class Reshape(Op):
    name = "Reshape"

    @classmethod
    def validate(cls, node, model):
        _one_in_one_out(node)
        shape = _int_list(node, "shape")
        if any(d < -1 for d in shape) or shape.count(-1) > 1:
            raise ModelFileError(f"node {node.name!r}: invalid Reshape target {shape}")

    @classmethod
    def emit(cls, node, ctx):
        shape = node.attrs["shape"]
        x = ctx.value(node.inputs[0])
        rank_in = ctx.rank(node.inputs[0])
        items = []
        for i, d in enumerate(shape):
            if d == 0:
                if i >= rank_in:
                    raise ModelFileError(f"node {node.name!r}: Reshape copies dimension {i} of a rank-{rank_in} input")
                items.append(f"{x}.shape[{i}]")
            else:
                items.append(str(d))
        out = ctx.define(node.outputs[0], len(shape))
        known = " * ".join(i for i, d in zip(items, shape) if d != -1) or "1"
        if -1 not in shape:
            ctx.line(f"if {x}.size != {known}:")
        else:
            ctx.line(f"if {known} == 0 or {x}.size % ({known}) != 0:")
        ctx.line(f"    raise ValueError({ctx.msg(node, f'the input cannot be reshaped to {shape} (0 = copied, -1 = inferred)')})")
        ctx.line(f"{out} = {x}.reshape({_shape_tuple(items)})")


class Squeeze(Op):
    name = "Squeeze"

    @classmethod
    def validate(cls, node, model):
        _one_in_one_out(node)
        axes = _int_list(node, "axes")
        if any(a < 0 for a in axes) or len(set(axes)) != len(axes):
            raise ModelFileError(f"node {node.name!r}: Squeeze axes {axes} must be distinct and non-negative")

    @classmethod
    def emit(cls, node, ctx):
        axes = node.attrs["axes"]
        x = ctx.value(node.inputs[0])
        rank = ctx.rank(node.inputs[0])
        if any(a >= rank for a in axes):
            raise ModelFileError(f"node {node.name!r}: Squeeze axes {axes} out of range for rank {rank}")
        for a in axes:
            ctx.line(f"if {x}.shape[{a}] != 1:")
            ctx.line(f"    raise ValueError({ctx.msg(node, f'cannot squeeze axis {a}: its size is not 1')})")
        keep = [f"{x}.shape[{i}]" for i in range(rank) if i not in axes]
        out = ctx.define(node.outputs[0], len(keep))
        ctx.line(f"{out} = {x}.reshape({_shape_tuple(keep)})")


class Unsqueeze(Op):
    name = "Unsqueeze"

    @classmethod
    def validate(cls, node, model):
        _one_in_one_out(node)
        axes = _int_list(node, "axes")
        if any(a < 0 for a in axes) or len(set(axes)) != len(axes):
            raise ModelFileError(f"node {node.name!r}: Unsqueeze axes {axes} must be distinct and non-negative")

    @classmethod
    def emit(cls, node, ctx):
        axes = node.attrs["axes"]
        x = ctx.value(node.inputs[0])
        rank = ctx.rank(node.inputs[0]) + len(axes)
        if any(a >= rank for a in axes):
            raise ModelFileError(f"node {node.name!r}: Unsqueeze axes {axes} out of range for rank {rank}")
        items = []
        k = 0
        for i in range(rank):
            if i in axes:
                items.append("1")
            else:
                items.append(f"{x}.shape[{k}]")
                k += 1
        out = ctx.define(node.outputs[0], rank)
        ctx.line(f"{out} = {x}.reshape({_shape_tuple(items)})")


class Concat(Op):
    name = "Concat"

    @classmethod
    def validate(cls, node, model):
        if not node.inputs or not all(node.inputs) or len(node.outputs) != 1:
            raise ModelFileError(f"node {node.name!r}: Concat takes one or more inputs and gives one output")
        axis = node.attrs.get("axis")
        if not isinstance(axis, int) or axis < 0:
            raise ModelFileError(f"node {node.name!r}: Concat axis must be a non-negative integer")

    @classmethod
    def emit(cls, node, ctx):
        ranks = {ctx.rank(n) for n in node.inputs}
        if len(ranks) != 1:
            raise ModelFileError(f"node {node.name!r}: Concat inputs have different ranks")
        rank = ranks.pop()
        axis = node.attrs["axis"]
        if axis >= rank:
            raise ModelFileError(f"node {node.name!r}: Concat axis {axis} out of range for rank {rank}")
        xs = [ctx.value(n) for n in node.inputs]
        out = ctx.define(node.outputs[0], rank)
        for i in range(rank):
            if i == axis:
                continue
            for x in xs[1:]:
                ctx.line(f"if {x}.shape[{i}] != {xs[0]}.shape[{i}]:")
                ctx.line(f"    raise ValueError({ctx.msg(node, 'inputs differ in a dimension other than the axis')})")
        if len(xs) == 1:
            ctx.line(f"{out} = {xs[0]}.copy()")
        else:
            ctx.line(f"{out} = np.concatenate({_shape_tuple(xs)}, axis={axis})")


class Slice(Op):
    name = "Slice"

    @classmethod
    def validate(cls, node, model):
        _one_in_one_out(node)
        slices = node.attrs.get("slices")
        if not isinstance(slices, list):
            raise ModelFileError(f"node {node.name!r}: Slice needs a list of [axis, start, end, step]")
        axes = set()
        for s in slices:
            if (not isinstance(s, list) or len(s) != 4 or not isinstance(s[0], int) or s[0] < 0 or s[0] in axes
                    or not all(v is None or isinstance(v, int) for v in s[1:]) or not isinstance(s[3], int)
                    or s[3] == 0):
                raise ModelFileError(f"node {node.name!r}: invalid slice {s!r}")
            axes.add(s[0])

    @classmethod
    def emit(cls, node, ctx):
        x = ctx.value(node.inputs[0])
        rank = ctx.rank(node.inputs[0])
        idx = [":"] * rank
        for axis, start, end, step in node.attrs["slices"]:
            if axis >= rank:
                raise ModelFileError(f"node {node.name!r}: Slice axis {axis} out of range for rank {rank}")
            idx[axis] = ("" if start is None else str(start)) + ":" + ("" if end is None else str(end)) + \
                ("" if step == 1 else f":{step}")
        out = ctx.define(node.outputs[0], rank)
        ctx.line(f"{out} = np.ascontiguousarray({x}[{', '.join(idx)}])")


class ConstantOfShape(Op):
    """A tensor filled with one value, whose shape may depend on run-time values: each entry of ``shape`` is an
    int or [k, axis] = dimension ``axis`` of input k (exporters build zero initial states this way)."""
    name = "ConstantOfShape"

    @classmethod
    def validate(cls, node, model):
        shape = node.attrs.get("shape")
        if not isinstance(shape, list) or len(node.outputs) != 1 or not isinstance(node.attrs.get("value"), (int, float)):
            raise ModelFileError(f"node {node.name!r}: ConstantOfShape needs a shape list and a numeric value")
        for d in shape:
            ok = (isinstance(d, int) and d >= 0) or (isinstance(d, list) and len(d) == 2 and all(isinstance(v, int) for v in d)
                                                    and 0 <= d[0] < len(node.inputs) and d[1] >= 0)
            if not ok:
                raise ModelFileError(f"node {node.name!r}: invalid ConstantOfShape dimension {d!r}")

    @classmethod
    def emit(cls, node, ctx):
        items = []
        for d in node.attrs["shape"]:
            if isinstance(d, int):
                items.append(ctx.scalar(int(d)))
            else:
                src = node.inputs[d[0]]
                if d[1] >= ctx.rank(src):
                    raise ModelFileError(f"node {node.name!r}: dimension {d[1]} of rank-{ctx.rank(src)} {src!r}")
                items.append(f"{ctx.value(src)}.shape[{d[1]}]")
        out = ctx.define(node.outputs[0], len(items))
        value = ctx.scalar(float(node.attrs["value"]))
        ctx.line(f"{out} = np.full({_shape_tuple(items)}, {value}, dtype=np.{ctx.dtype.name})")


GLUE_OPS = [Identity, Transpose, Reshape, Squeeze, Unsqueeze, Concat, Slice, ConstantOfShape]
