"""Shape glue between layers: Identity, Transpose, Reshape, Squeeze, Unsqueeze, Concat, Slice, ConstantOfShape.

The converters resolve what depends on weights or static shapes, so these arrive with static attributes (axes are
non-negative, Reshape targets use 0 = copy and -1 = infer). Reshape, Squeeze, Unsqueeze and Identity cost nothing
at run time (the output is the input's buffer under another shape); the others are strided copies (program.COPY).
When the input is known at plan time (int shape arithmetic), each is folded in numpy instead.
"""
import math

import numpy as np

from ..errors import ModelFileError
from .base import (Op, check_arity, check_axis_attr, contiguous_strides as _strides, distinct_axes, int_list, is_int,
                   is_number)
from .program import FILL


def _rank_error(p, what, axes, rank):
    return ModelFileError(f"node {p.node.name!r} ({p.node.op}): {what} {axes} out of range for rank {rank}")


class Identity(Op):
    name = "Identity"

    @classmethod
    def validate(cls, node, model):
        check_arity(node, 1)

    @classmethod
    def plan(cls, node, p):
        x = p.input(0)
        p.alias(0, x, x.shape)


class Transpose(Op):
    name = "Transpose"
    attrs = frozenset({"perm"})

    @classmethod
    def validate(cls, node, model):
        check_arity(node, 1)
        perm = int_list(node, "perm")
        if sorted(perm) != list(range(len(perm))):
            raise ModelFileError(f"node {node.name!r}: perm {perm} is not a permutation")

    @classmethod
    def plan(cls, node, p):
        perm = node.attrs["perm"]
        x = p.input(0)
        if x.rank != len(perm):
            raise ModelFileError(f"node {node.name!r}: perm {perm} does not fit a rank-{x.rank} input")
        if p.known(x):
            p.fold(0, np.transpose(x.const, perm))
            return
        shape = [x.shape[k] for k in perm]
        if [k for k in perm if x.shape[k] != 1] == [k for k in range(x.rank) if x.shape[k] != 1]:
            p.alias(0, x, shape)       # only axes of size 1 move (an LSTM's Y with one direction): the same memory
            return
        strides = _strides(x.shape)
        out = p.output(0, shape, x.kind)
        p.copy(x, out, shape=shape, sstrides=[strides[k] for k in perm])


class Reshape(Op):
    name = "Reshape"
    attrs = frozenset({"shape"})

    @classmethod
    def validate(cls, node, model):
        check_arity(node, 1)
        shape = int_list(node, "shape")
        if any(d < -1 for d in shape) or shape.count(-1) > 1:
            raise ModelFileError(f"node {node.name!r}: invalid Reshape target {shape}")

    @classmethod
    def plan(cls, node, p):
        target = node.attrs["shape"]
        x = p.input(0)
        dims = []
        for i, d in enumerate(target):
            if d == 0:
                if i >= x.rank:
                    raise ModelFileError(f"node {node.name!r}: Reshape copies dimension {i} of a rank-{x.rank} input")
                d = x.shape[i]
            dims.append(d)
        known = math.prod(d for d in dims if d != -1)      # Python ints: a huge target cannot overflow
        if -1 in dims:
            if known == 0 or x.size % known:
                raise p.error(f"the input cannot be reshaped to {target} (0 = copied, -1 = inferred)")
            dims[dims.index(-1)] = x.size // known
        elif known != x.size:
            raise p.error(f"the input cannot be reshaped to {target} (0 = copied, -1 = inferred)")
        p.alias(0, x, dims)


class Squeeze(Op):
    name = "Squeeze"
    attrs = frozenset({"axes"})

    @classmethod
    def validate(cls, node, model):
        check_arity(node, 1)
        distinct_axes(node)

    @classmethod
    def plan(cls, node, p):
        axes = node.attrs["axes"]
        x = p.input(0)
        if any(a >= x.rank for a in axes):
            raise _rank_error(p, "Squeeze axes", axes, x.rank)
        for a in axes:
            if x.shape[a] != 1:
                raise p.error(f"cannot squeeze axis {a}: its size is {x.shape[a]}, not 1")
        p.alias(0, x, [d for i, d in enumerate(x.shape) if i not in axes])


class Unsqueeze(Op):
    name = "Unsqueeze"
    attrs = frozenset({"axes"})

    @classmethod
    def validate(cls, node, model):
        check_arity(node, 1)
        distinct_axes(node)

    @classmethod
    def plan(cls, node, p):
        axes = node.attrs["axes"]
        x = p.input(0)
        rank = x.rank + len(axes)
        if any(a >= rank for a in axes):
            raise _rank_error(p, "Unsqueeze axes", axes, rank)
        rest = iter(x.shape)
        p.alias(0, x, [1 if i in axes else next(rest) for i in range(rank)])


class Concat(Op):
    name = "Concat"
    attrs = frozenset({"axis"})

    @classmethod
    def validate(cls, node, model):
        if not node.inputs or not all(node.inputs) or len(node.outputs) != 1:
            raise ModelFileError(f"node {node.name!r}: Concat takes one or more inputs and gives one output")
        check_axis_attr(node)

    @classmethod
    def plan(cls, node, p):
        xs = [p.input(i) for i in range(len(node.inputs))]
        axis = node.attrs["axis"]
        rank = xs[0].rank
        if any(x.rank != rank for x in xs):
            raise ModelFileError(f"node {node.name!r}: Concat inputs have different ranks")
        if axis >= rank:
            raise _rank_error(p, "Concat axis", axis, rank)
        kinds = {x.kind for x in xs}
        if len(kinds) > 1:
            raise p.unsupported("inputs of different types (int and float)")
        for x in xs[1:]:
            if any(x.shape[i] != xs[0].shape[i] for i in range(rank) if i != axis):
                raise p.error(f"inputs differ in a dimension other than the axis ({xs[0].shape} and {x.shape})")
        if all(p.known(x) for x in xs):
            p.fold(0, np.concatenate([x.const for x in xs], axis=axis))
            return
        shape = list(xs[0].shape)
        shape[axis] = sum(x.shape[axis] for x in xs)
        out = p.output(0, shape, xs[0].kind)
        dstrides = _strides(shape)
        start = 0
        for x in xs:
            if x.size:
                p.copy(x, out, shape=x.shape, dbase=start * dstrides[axis], dstrides=dstrides)
            start += x.shape[axis]


class Slice(Op):
    name = "Slice"
    attrs = frozenset({"slices"})

    @classmethod
    def validate(cls, node, model):
        check_arity(node, 1)
        slices = node.attrs.get("slices")
        if not isinstance(slices, list):
            raise ModelFileError(f"node {node.name!r}: Slice needs a list of [axis, start, end, step]")
        axes = set()
        for s in slices:
            if (not isinstance(s, list) or len(s) != 4 or not is_int(s[0], 0) or s[0] in axes
                    or not all(v is None or is_int(v) for v in s[1:]) or not is_int(s[3]) or s[3] == 0):
                raise ModelFileError(f"node {node.name!r}: invalid slice {s!r}")
            axes.add(s[0])

    @classmethod
    def plan(cls, node, p):
        x = p.input(0)
        index = [slice(None)] * x.rank
        for axis, start, end, step in node.attrs["slices"]:
            if axis >= x.rank:
                raise _rank_error(p, "Slice axis", axis, x.rank)
            index[axis] = slice(start, end, step)
        if p.known(x):
            p.fold(0, x.const[tuple(index)])
            return
        if all(sl.indices(d) == (0, d, 1) for d, sl in zip(x.shape, index)):
            p.alias(0, x, x.shape)        # the whole tensor (exporters slice 0:INT64_MAX): no copy
            return
        contiguous = _contiguous_part(x.shape, index)
        if contiguous is not None:        # one range of the flat data (the axes before it of size 1): no copy
            shape, offset = contiguous
            p.alias(0, x, shape, offset=offset)
            return
        shape, sstrides, base = [], [], 0
        for d, sl, stride in zip(x.shape, index, _strides(x.shape)):
            start, stop, step = sl.indices(d)
            n = len(range(start, stop, step))
            shape.append(n)
            sstrides.append(step * stride if n > 1 else stride)   # a step beyond the axis takes one element
            base += start * stride
        out = p.output(0, shape, x.kind)
        if out.size:
            p.copy(x, out, shape=shape, sbase=base, sstrides=sstrides)


def _contiguous_part(shape, index):
    """(shape, offset) when slicing ``shape`` by ``index`` (one slice per axis) keeps one contiguous range of the
    flat data: step 1 on the one partial axis, every axis before it of size 1, every axis after it whole."""
    out, partial = [], None
    for axis, (d, sl) in enumerate(zip(shape, index)):
        start, stop, step = sl.indices(d)
        n = len(range(start, stop, step))
        out.append(n)
        if (start, n) != (0, d):
            if partial is not None or (step != 1 and n > 1):
                return None
            partial = (axis, start)
    if partial is None or any(d != 1 for d in shape[:partial[0]]):
        return None
    axis, start = partial
    return tuple(out), start * int(np.prod(shape[axis + 1:], dtype=np.int64))


class ConstantOfShape(Op):
    """A tensor filled with one value, whose shape may depend on run-time values: each entry of ``shape`` is an
    int or [k, axis] = dimension ``axis`` of input k (exporters build zero initial states this way)."""
    name = "ConstantOfShape"
    attrs = frozenset({"shape", "value"})

    @classmethod
    def validate(cls, node, model):
        shape = node.attrs.get("shape")
        if not isinstance(shape, list) or len(node.outputs) != 1 or not node.outputs[0] or \
                not is_number(node.attrs.get("value")):
            raise ModelFileError(f"node {node.name!r}: ConstantOfShape needs a shape list and a numeric value")
        for d in shape:
            ok = is_int(d, 0) or (isinstance(d, list) and len(d) == 2 and all(is_int(v, 0) for v in d)
                                  and d[0] < len(node.inputs) and node.inputs[d[0]])
            if not ok:
                raise ModelFileError(f"node {node.name!r}: invalid ConstantOfShape dimension {d!r}")

    @classmethod
    def plan(cls, node, p):
        shape = []
        for d in node.attrs["shape"]:
            if isinstance(d, list):
                src = p.input(d[0])
                if d[1] >= src.rank:
                    raise ModelFileError(f"node {node.name!r}: dimension {d[1]} of rank-{src.rank} "
                                         f"{node.inputs[d[0]]!r}")
                d = src.shape[d[1]]
            shape.append(d)
        out = p.output(0, shape)
        p.emit(FILL, f"fill {tuple(shape)}", *p.ref(out), out.size, p.f64(float(node.attrs["value"])))


GLUE_OPS = [Identity, Transpose, Reshape, Squeeze, Unsqueeze, Concat, Slice, ConstantOfShape]
