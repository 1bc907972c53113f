"""The ops of whole models around the recurrent layers: embedding lookup, linear layers, activations, softmax,
1-D convolution, reductions, elementwise arithmetic, splitting and casting.

As for the glue ops, the converters resolve everything that depends on weights or static shapes (Gemm becomes a
MatMul of a pre-transposed, pre-scaled constant plus an Add; Flatten becomes a Reshape; axes are non-negative), and
every value in generated code is a C-contiguous array. Kernels keep the dtype of their input (no float64 detours:
Numba types a float32 array plus a float64 scalar as float64).
"""
import numpy as np
from numba import njit

from ..config import JIT_OPTIONS
from ..errors import ModelFileError
from .base import Op
from .glue import _int_list, _shape_tuple


def _n_in_one_out(node, n):
    if len(node.inputs) != n or not all(node.inputs) or len(node.outputs) != 1 or not node.outputs[0]:
        raise ModelFileError(f"node {node.name!r} ({node.op}) takes {n} input(s) and gives one output")


def _check_axis_attr(node):
    if not isinstance(node.attrs.get("axis"), int) or node.attrs["axis"] < 0:
        raise ModelFileError(f"node {node.name!r} ({node.op}): axis must be a non-negative integer")


# ---------------------------------------------------------------------- kernels
@njit(**JIT_OPTIONS)
def relu_kernel(x):
    out = np.empty_like(x)
    a = x.reshape(-1)
    o = out.reshape(-1)
    for i in range(a.size):
        v = a[i]
        o[i] = v if (v > 0 or v != v) else 0      # NaN stays NaN
    return out


@njit(**JIT_OPTIONS)
def sigmoid_kernel(x):
    out = np.empty_like(x)
    a = x.reshape(-1)
    o = out.reshape(-1)
    for i in range(a.size):
        v = a[i]
        if v >= 0:
            o[i] = 1.0 / (1.0 + np.exp(-v))
        else:
            e = np.exp(v)
            o[i] = e / (1.0 + e)
    return out


@njit(**JIT_OPTIONS)
def softmax_rows(x2, log):
    """Softmax (or log-softmax) of each row of x2 (N, K), computed in float64 and stored in x2's dtype."""
    N, K = x2.shape
    out = np.empty_like(x2)
    for r in range(N):
        m = -np.inf
        for k in range(K):
            if x2[r, k] > m:
                m = x2[r, k]
        s = 0.0
        for k in range(K):
            s += np.exp(np.float64(x2[r, k]) - m)
        if log:
            ls = np.log(s)
            for k in range(K):
                out[r, k] = np.float64(x2[r, k]) - m - ls
        else:
            for k in range(K):
                out[r, k] = np.exp(np.float64(x2[r, k]) - m) / s
    return out


@njit(**JIT_OPTIONS)
def mean_rows(x2):
    N, K = x2.shape
    out = np.empty(N, dtype=x2.dtype)
    for r in range(N):
        s = 0.0
        for k in range(K):
            s += x2[r, k]
        out[r] = s / K
    return out


@njit(**JIT_OPTIONS)
def gather3(data3, idx):
    """data3 (outer, n, inner), idx (k,) int -> (outer, k, inner); negative indices count from the end."""
    outer, n, inner = data3.shape
    k = idx.shape[0]
    for j in range(k):
        if idx[j] < -n or idx[j] >= n:
            raise ValueError("Gather: an index is out of range for the gathered axis")
    out = np.empty((outer, k, inner), dtype=data3.dtype)
    for o in range(outer):
        for j in range(k):
            i = idx[j] + n if idx[j] < 0 else idx[j]
            for q in range(inner):
                out[o, j, q] = data3[o, i, q]
    return out


@njit(**JIT_OPTIONS)
def batched_matmul(a3, b3):
    """(batch, M, K) @ (batch, K, N), or b3 with batch 1 broadcast."""
    batch, M, K = a3.shape
    N = b3.shape[2]
    out = np.empty((batch, M, N), dtype=a3.dtype)
    for i in range(batch):
        out[i] = np.dot(a3[i], b3[i if b3.shape[0] > 1 else 0])
    return out


@njit(**JIT_OPTIONS)
def conv1d(x, w, bias, use_bias, pad0, pad1, stride, dilation, group):
    """x (N, C, L), w (M, C/group, K), bias (M,) -> (N, M, Lout), zero padding pad0 / pad1."""
    N, C, L = x.shape
    M, Cg, K = w.shape
    Lout = (L + pad0 + pad1 - dilation * (K - 1) - 1) // stride + 1
    if Lout < 1 or Cg * group != C or M % group != 0:
        raise ValueError("Conv: the input is too short for the kernel, or its channels do not match the weights")
    Mg = M // group
    out = np.zeros((N, M, Lout), dtype=x.dtype)
    for n in range(N):
        for m in range(M):
            g = m // Mg
            acc = np.zeros(Lout, dtype=np.float64)
            for c in range(Cg):
                xc = x[n, g * Cg + c]
                for k in range(K):
                    wk = w[m, c, k]
                    off = k * dilation - pad0
                    for j in range(Lout):
                        p = j * stride + off
                        if 0 <= p < L:
                            acc[j] += wk * xc[p]
            b = bias[m] if use_bias else 0.0
            for j in range(Lout):
                out[n, m, j] = acc[j] + b
    return out


# ---------------------------------------------------------------------- ops
class Binary(Op):
    """Add, Sub, Mul, Div with numpy broadcasting (checked at run time by the generated code)."""
    symbols = {"Add": "+", "Sub": "-", "Mul": "*", "Div": "/"}

    @classmethod
    def validate(cls, node, model):
        _n_in_one_out(node, 2)
        for i in node.inputs:
            if i in model.tensors and model.tensors[i].ndim == 0:
                raise ModelFileError(f"node {node.name!r} ({node.op}): constant operands must have rank >= 1")

    @classmethod
    def emit(cls, node, ctx):
        a, b = (ctx.value(i) for i in node.inputs)
        ra, rb = (ctx.rank(i) for i in node.inputs)
        out = ctx.define(node.outputs[0], max(ra, rb))
        ctx.line(f"{out} = np.ascontiguousarray({a} {cls.symbols[node.op]} {b})")


def _binary(op_name):
    return type(op_name, (Binary,), {"name": op_name})


class Unary(Op):
    exprs = {"Relu": "relu_kernel({x})", "Sigmoid": "sigmoid_kernel({x})", "Tanh": "np.tanh({x})",
             "Exp": "np.exp({x})", "Neg": "-{x}", "Sqrt": "np.sqrt({x})", "Abs": "np.abs({x})"}
    imports = {"relu_kernel": relu_kernel, "sigmoid_kernel": sigmoid_kernel}

    @classmethod
    def validate(cls, node, model):
        _n_in_one_out(node, 1)

    @classmethod
    def emit(cls, node, ctx):
        x = ctx.value(node.inputs[0])
        out = ctx.define(node.outputs[0], ctx.rank(node.inputs[0]))
        ctx.line(f"{out} = np.ascontiguousarray({cls.exprs[node.op].format(x=x)})")


def _unary(op_name):
    return type(op_name, (Unary,), {"name": op_name})


class MatMul(Op):
    """numpy matmul of an (..., M, K) value by a (K, N) matrix, or of (batch..., M, K) by (batch..., K, N)."""
    name = "MatMul"
    imports = {"batched_matmul": batched_matmul}

    @classmethod
    def validate(cls, node, model):
        _n_in_one_out(node, 2)

    @classmethod
    def emit(cls, node, ctx):
        a, b = (ctx.value(i) for i in node.inputs)
        ra, rb = (ctx.rank(i) for i in node.inputs)
        if ra < 1 or rb < 1:
            raise ModelFileError(f"node {node.name!r} (MatMul): operands must have rank >= 1")
        if rb <= 2:
            if ra == 1 and rb == 2:
                out = ctx.define(node.outputs[0], 1)
                ctx.line(f"if {a}.shape[0] != {b}.shape[0]:")
                ctx.line(f"    raise ValueError({ctx.msg(node, 'the operands inner dimensions differ')})")
                ctx.line(f"{out} = np.dot({a}, {b})")
                return
            k = f"{a}.shape[{ra - 1}]"
            lead = [f"{a}.shape[{i}]" for i in range(ra - 1)]
            ctx.line(f"if {k} != {b}.shape[0]:")
            ctx.line(f"    raise ValueError({ctx.msg(node, 'the operands inner dimensions differ')})")
            if rb == 2:
                out = ctx.define(node.outputs[0], ra)
                ctx.line(f"{out} = np.dot({a}.reshape((-1, {k})), {b}).reshape("
                         f"{_shape_tuple(lead + [f'{b}.shape[1]'])})")
            else:   # (..., K) @ (K,) -> (...)
                out = ctx.define(node.outputs[0], ra - 1)
                ctx.line(f"{out} = np.dot({a}.reshape((-1, {k})), {b}).reshape({_shape_tuple(lead) if lead else '()'})")
            return
        if ra != rb or ra < 3:
            raise ModelFileError(f"node {node.name!r} (MatMul): batched operands must have the same rank")
        batch = " * ".join(f"{a}.shape[{i}]" for i in range(ra - 2))
        for i in range(ra - 2):
            ctx.line(f"if {a}.shape[{i}] != {b}.shape[{i}]:")
            ctx.line(f"    raise ValueError({ctx.msg(node, 'batch dimensions differ')})")
        ctx.line(f"if {a}.shape[{ra - 1}] != {b}.shape[{rb - 2}]:")
        ctx.line(f"    raise ValueError({ctx.msg(node, 'the operands inner dimensions differ')})")
        out = ctx.define(node.outputs[0], ra)
        dims = [f"{a}.shape[{i}]" for i in range(ra - 1)] + [f"{b}.shape[{rb - 1}]"]
        ctx.line(f"{out} = batched_matmul({a}.reshape(({batch}, {a}.shape[{ra - 2}], {a}.shape[{ra - 1}])), "
                 f"{b}.reshape(({batch}, {b}.shape[{rb - 2}], {b}.shape[{rb - 1}]))).reshape({_shape_tuple(dims)})")


def _move_last(x, rank, axis):
    """(source of x with axis moved last, the permutation that undoes it) for rank > 1."""
    perm = [i for i in range(rank) if i != axis] + [axis]
    inverse = [perm.index(i) for i in range(rank)]
    return f"np.ascontiguousarray(np.transpose({x}, {_shape_tuple([str(p) for p in perm])}))", inverse


class Softmax(Op):
    """Softmax / LogSoftmax along one axis (opset 13 semantics; the converter maps older opsets)."""
    name = "Softmax"
    imports = {"softmax_rows": softmax_rows}

    @classmethod
    def validate(cls, node, model):
        _n_in_one_out(node, 1)
        _check_axis_attr(node)

    @classmethod
    def emit(cls, node, ctx):
        x = ctx.value(node.inputs[0])
        rank = ctx.rank(node.inputs[0])
        axis = node.attrs["axis"]
        if axis >= rank:
            raise ModelFileError(f"node {node.name!r}: axis {axis} out of range for rank {rank}")
        log = "True" if node.op == "LogSoftmax" else "False"
        out = ctx.define(node.outputs[0], rank)
        if axis == rank - 1:
            ctx.line(f"{out} = softmax_rows({x}.reshape((-1, {x}.shape[{rank - 1}])), {log}).reshape({x}.shape)")
            return
        moved, inverse = _move_last(x, rank, axis)
        tmp = ctx._fresh("t")
        ctx.line(f"{tmp} = {moved}")
        ctx.line(f"{tmp} = softmax_rows({tmp}.reshape((-1, {tmp}.shape[{rank - 1}])), {log}).reshape({tmp}.shape)")
        ctx.line(f"{out} = np.ascontiguousarray(np.transpose({tmp}, {_shape_tuple([str(p) for p in inverse])}))")


class LogSoftmax(Softmax):
    name = "LogSoftmax"


class ReduceMean(Op):
    name = "ReduceMean"
    imports = {"mean_rows": mean_rows}

    @classmethod
    def validate(cls, node, model):
        _n_in_one_out(node, 1)
        axes = _int_list(node, "axes")
        if not axes or any(a < 0 for a in axes) or len(set(axes)) != len(axes):
            raise ModelFileError(f"node {node.name!r}: ReduceMean axes {axes} must be distinct and non-negative")
        if node.attrs.get("keepdims") not in (0, 1):
            raise ModelFileError(f"node {node.name!r}: keepdims must be 0 or 1")

    @classmethod
    def emit(cls, node, ctx):
        x = ctx.value(node.inputs[0])
        rank = ctx.rank(node.inputs[0])
        axes = sorted(node.attrs["axes"])
        if axes[-1] >= rank:
            raise ModelFileError(f"node {node.name!r}: ReduceMean axes {axes} out of range for rank {rank}")
        keep = [i for i in range(rank) if i not in axes]
        perm = keep + axes
        count = " * ".join(f"{x}.shape[{i}]" for i in axes)
        tmp = ctx._fresh("t")
        ctx.line(f"{tmp} = np.ascontiguousarray(np.transpose({x}, {_shape_tuple([str(p) for p in perm])}))")
        dims = [("1" if i in axes else f"{x}.shape[{i}]") for i in range(rank)] if node.attrs["keepdims"] else \
            [f"{x}.shape[{i}]" for i in keep]
        out = ctx.define(node.outputs[0], len(dims))
        ctx.line(f"{out} = mean_rows({tmp}.reshape((-1, {count}))).reshape({_shape_tuple(dims) if dims else '()'})")


class Gather(Op):
    """Gather along ``axis``: embedding lookups (constant table, run-time token ids) and picking time steps.
    ``index_shape`` gives the shape of constant indices (stored flattened), [] for a scalar index."""
    name = "Gather"
    imports = {"gather3": gather3}

    @classmethod
    def validate(cls, node, model):
        _n_in_one_out(node, 2)
        _check_axis_attr(node)

    @classmethod
    def emit(cls, node, ctx):
        data, idx = node.inputs
        x = ctx.value(data)
        rank = ctx.rank(data)
        axis = node.attrs["axis"]
        if axis >= rank:
            raise ModelFileError(f"node {node.name!r}: Gather axis {axis} out of range for rank {rank}")
        i = ctx.value(idx)
        index_shape = node.attrs.get("index_shape")
        if index_shape is None:
            irank = ctx.rank(idx)
            idims = [f"{i}.shape[{k}]" for k in range(irank)]
        else:
            idims = [str(int(d)) for d in index_shape]
        outer = " * ".join([f"{x}.shape[{k}]" for k in range(axis)]) or "1"
        inner = " * ".join([f"{x}.shape[{k}]" for k in range(axis + 1, rank)]) or "1"
        dims = [f"{x}.shape[{k}]" for k in range(axis)] + idims + [f"{x}.shape[{k}]" for k in range(axis + 1, rank)]
        out = ctx.define(node.outputs[0], len(dims))
        ctx.line(f"{out} = gather3({x}.reshape(({outer}, {x}.shape[{axis}], {inner})), "
                 f"{i}.reshape(-1).astype(np.int64)).reshape({_shape_tuple(dims) if dims else '()'})")


class Conv(Op):
    """1-D convolution: X (N, C, L), W (M, C/group, K) constant, B (M,) optional; explicit pads."""
    name = "Conv"
    imports = {"conv1d": conv1d}

    @classmethod
    def validate(cls, node, model):
        if len(node.inputs) not in (2, 3) or len(node.outputs) != 1:
            raise ModelFileError(f"node {node.name!r} (Conv) takes X, W[, B] and gives one output")
        for key in ("pads", "strides", "dilations"):
            v = _int_list(node, key)
            if len(v) != (2 if key == "pads" else 1) or any(d < (0 if key == "pads" else 1) for d in v):
                raise ModelFileError(f"node {node.name!r} (Conv): invalid {key} {v}")
        if not isinstance(node.attrs.get("group"), int) or node.attrs["group"] < 1:
            raise ModelFileError(f"node {node.name!r} (Conv): group must be a positive integer")
        if node.inputs[1] not in model.tensors or model.tensors[node.inputs[1]].ndim != 3:
            raise ModelFileError(f"node {node.name!r} (Conv): W must be a constant of rank 3 (1-D convolution)")

    @classmethod
    def emit(cls, node, ctx):
        a = node.attrs
        x = ctx.value(node.inputs[0])
        if ctx.rank(node.inputs[0]) != 3:
            raise ModelFileError(f"node {node.name!r} (Conv): X must have rank 3 (N, C, L)")
        w = ctx.value(node.inputs[1])
        has_b = len(node.inputs) > 2 and bool(node.inputs[2])
        b = ctx.value(node.inputs[2]) if has_b else ctx.const(np.zeros(1, ctx.dtype))
        sc = ctx.scalar
        out = ctx.define(node.outputs[0], 3)
        ctx.line(f"{out} = conv1d({x}, {w}, {b}, {sc(has_b)}, {sc(a['pads'][0])}, {sc(a['pads'][1])}, "
                 f"{sc(a['strides'][0])}, {sc(a['dilations'][0])}, {sc(a['group'])})")


class Split(Op):
    """Split along ``axis`` into pieces of the given ``sizes``."""
    name = "Split"

    @classmethod
    def validate(cls, node, model):
        sizes = _int_list(node, "sizes")
        if len(node.inputs) != 1 or len(node.outputs) != len(sizes) or any(s < 0 for s in sizes):
            raise ModelFileError(f"node {node.name!r} (Split): one input, and one output per size")
        _check_axis_attr(node)

    @classmethod
    def emit(cls, node, ctx):
        x = ctx.value(node.inputs[0])
        rank = ctx.rank(node.inputs[0])
        axis = node.attrs["axis"]
        sizes = node.attrs["sizes"]
        if axis >= rank:
            raise ModelFileError(f"node {node.name!r}: Split axis {axis} out of range for rank {rank}")
        ctx.line(f"if {x}.shape[{axis}] != {sum(sizes)}:")
        ctx.line(f"    raise ValueError({ctx.msg(node, f'the split axis must have size {sum(sizes)}')})")
        start = 0
        for name, size in zip(node.outputs, sizes):
            if name:
                idx = [":"] * rank
                idx[axis] = f"{start}:{start + size}"
                out = ctx.define(name, rank)
                ctx.line(f"{out} = np.ascontiguousarray({x}[{', '.join(idx)}])")
            start += size


class Cast(Op):
    """To the model's float type ("float") or to int64 / int32."""
    name = "Cast"

    @classmethod
    def validate(cls, node, model):
        _n_in_one_out(node, 1)
        if node.attrs.get("to") not in ("float", "int64", "int32"):
            raise ModelFileError(f"node {node.name!r} (Cast): 'to' must be float, int64 or int32")

    @classmethod
    def emit(cls, node, ctx):
        x = ctx.value(node.inputs[0])
        to = node.attrs["to"]
        target = ctx.dtype.name if to == "float" else to
        out = ctx.define(node.outputs[0], ctx.rank(node.inputs[0]))
        ctx.line(f"{out} = {x}.astype(np.{target})")


LAYER_OPS = [*(_binary(n) for n in Binary.symbols), *(_unary(n) for n in Unary.exprs), MatMul, Softmax, LogSoftmax,
             ReduceMean, Gather, Conv, Split, Cast]
