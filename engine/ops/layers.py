"""The ops of whole models around the recurrent layers: embedding lookup, linear layers, activations, softmax,
1-D convolution, reductions, elementwise arithmetic, splitting and casting.

The converters resolve what depends on weights or static shapes (Gemm becomes a MatMul of a pre-transposed,
pre-scaled constant plus an Add; Flatten becomes a Reshape; axes are non-negative). Each op's plan checks the
shapes of the call and emits one instruction (or strided copies); ``run_layers`` runs them. Kernels write into the
buffers the planner gives them and keep the compute dtype (no float64 detours, except accumulators). The op classes
plan without Numba; the kernels and ``run_layers`` are in layer_kernels.py.
"""
import math

import numpy as np

from ..errors import ModelFileError
from .base import (Op, broadcast_loop, broadcast_shapes, check_arity, check_axis_attr,
                   contiguous_strides as _strides, distinct_axes, int_list, is_int, release_pages)
from .program import F_CONST, FLOAT_TO_INT, INT_TO_FLOAT, LAYER_BASE

(BINARY, UNARY, MATMUL, BATCHED_MATMUL, SOFTMAX, MEAN, GATHER_F, GATHER_I, CONV1D, STFT) = range(LAYER_BASE,
                                                                                              LAYER_BASE + 10)
ADD, SUB, MUL, DIV, POW = range(5)
RELU, SIGMOID, TANH, EXP, NEG, SQRT, ABS = range(7)


# ---------------------------------------------------------------------- ops

class Binary(Op):
    """Add, Sub, Mul, Div, Pow with numpy broadcasting; on int values only at plan time (shape arithmetic)."""
    codes = {"Add": ADD, "Sub": SUB, "Mul": MUL, "Div": DIV, "Pow": POW}
    folds = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": None, "Pow": np.power}

    @classmethod
    def validate(cls, node, model):
        check_arity(node, 2)

    @classmethod
    def plan(cls, node, p):
        a, b = p.input(0), p.input(1)
        code = cls.codes[node.op]
        if p.known(a) and p.known(b) and cls.folds[node.op] is not None:
            p.fold(0, cls.folds[node.op](a.const, b.const))
            return
        if a.kind != "f" or b.kind != "f":
            if a.kind == "i" and b.kind == "i" and cls.folds[node.op] is not None:
                ka, kb = p.require_known(a, "integer arithmetic"), p.require_known(b, "integer arithmetic")
                p.fold(0, cls.folds[node.op](ka, kb))
                return
            raise p.unsupported("arithmetic on integer values computed at run time")
        what = f"{node.op.lower()} {a.shape} {b.shape}"
        if node.op == "Pow":
            e = p.float_value(b)
            if e is not None and e.size == 1 and float(e.reshape(-1)[0]) == 2.0 and b.rank <= a.rank:
                b = a          # x ** 2 as x * x: exact, and a multiply instead of a call to pow
                code = MUL
                what = f"pow {a.shape} 2 (as x * x)"
        shape, _ = broadcast_shapes(p, [a, b])
        out = p.output(0, shape)
        if out.size:
            loop, (stra, strb) = broadcast_loop(p, [a, b])
            p.emit(BINARY, what, code, *p.ref(a), *p.ref(b), *p.ref(out), out.size, *loop, *stra, *strb)


class Unary(Op):
    codes = {"Relu": RELU, "Sigmoid": SIGMOID, "Tanh": TANH, "Exp": EXP, "Neg": NEG, "Sqrt": SQRT, "Abs": ABS}

    @classmethod
    def validate(cls, node, model):
        check_arity(node, 1)

    @classmethod
    def plan(cls, node, p):
        x = p.input(0)
        if x.kind != "f":
            raise p.unsupported("integer input")
        out = p.output(0, x.shape)
        if out.size:
            p.emit(UNARY, f"{node.op.lower()} {x.shape}", cls.codes[node.op], *p.ref(x), *p.ref(out), out.size)


# a plan with a kernel on Numba's threads keeps the BLAS on one thread (an OpenBLAS pool spinning after its product
# takes a core from them, Planner.blas_threads); a MatMul there of at least MATMUL_THREADS_MIN_MACS multiply-adds and
# MATMUL_THREADS_MIN_ROWS rows a thread splits its rows over Numba's threads instead, on the register tiles
# (numeric.matmul_rows_parallel). Two threads against one (tiles, or the BLAS where matmul picks it), on the
# 2-core Zen 5: 0.13 M multiply-adds 0.79x, 0.26 M 1.03-1.09x, 0.52 M 1.40x, 0.77-0.88 M 1.24-1.48x, 1.8 M 1.58x,
# 13 M 1.86x, 52 M 1.89x; a CRNN's output layer, 400 x 192 @ 192 x 40, 1.04x (the BLAS's 82 us on one thread; the
# tiles' masked columns)
MATMUL_THREADS_MIN_MACS = 1 << 19
MATMUL_THREADS_MIN_ROWS = 8


def matmul_parts(threads, R, K, N):
    """How many parts a MatMul's rows split into when its plan's BLAS keeps to one thread: ``threads`` for a big
    enough product, else 1."""
    if threads > 1 and R >= MATMUL_THREADS_MIN_ROWS * threads and R * K * N >= MATMUL_THREADS_MIN_MACS:
        return threads
    return 1


class MatMul(Op):
    """numpy matmul of an (..., M, K) value by a (K, N) matrix or a (K,) vector, or of (batch..., M, K) by
    (batch..., K, N)."""
    name = "MatMul"

    @classmethod
    def validate(cls, node, model):
        check_arity(node, 2)

    @classmethod
    def plan(cls, node, p):
        a, b = p.input(0), p.input(1)
        if a.kind != "f" or b.kind != "f":
            raise p.unsupported("integer operands")
        if a.rank < 1 or b.rank < 1:
            raise ModelFileError(f"node {node.name!r} (MatMul): operands must have rank >= 1")
        if b.rank <= 2:
            K = a.shape[-1]
            if K != b.shape[0]:
                raise p.error(f"the operands' inner dimensions differ ({a.shape} @ {b.shape})")
            N = b.shape[1] if b.rank == 2 else 1
            R = a.size // K if K else 0
            shape = list(a.shape[:-1]) + ([N] if b.rank == 2 else [])
            out = p.output(0, shape)
            if out.size:
                parts = matmul_parts(p.threads, R, K, N)
                # on ``parts`` threads: the BLAS's, or Numba's by rows where the plan keeps the BLAS on one
                p.emit(MATMUL, f"matmul ({R}, {K}) @ ({K}, {N})" + (f", on {parts} threads" if parts > 1 else ""),
                       *p.ref(a), *p.ref(b), *p.ref(out), R, K, N, parts)
            return
        if a.rank != b.rank:
            raise ModelFileError(f"node {node.name!r} (MatMul): batched operands must have the same rank")
        if a.shape[:-2] != b.shape[:-2]:
            raise p.error(f"batch dimensions differ ({a.shape} @ {b.shape})")
        M, K, N = a.shape[-2], a.shape[-1], b.shape[-1]
        if K != b.shape[-2]:
            raise p.error(f"the operands' inner dimensions differ ({a.shape} @ {b.shape})")
        nb = a.size // (M * K) if M * K else 0
        out = p.output(0, list(a.shape[:-1]) + [N])
        if out.size:
            p.emit(BATCHED_MATMUL, f"matmul {nb} x ({M}, {K}) @ ({K}, {N})", *p.ref(a), *p.ref(b), *p.ref(out),
                   nb, M, K, N, K * N)


def _around(shape, axis):
    outer = int(np.prod(shape[:axis], dtype=np.int64))
    inner = int(np.prod(shape[axis + 1:], dtype=np.int64))
    return outer, shape[axis], inner


class Softmax(Op):
    """Softmax / LogSoftmax along one axis (opset 13 semantics; the converter maps older opsets)."""
    name = "Softmax"
    attrs = frozenset({"axis"})

    @classmethod
    def validate(cls, node, model):
        check_arity(node, 1)
        check_axis_attr(node)

    @classmethod
    def plan(cls, node, p):
        x = p.input(0)
        axis = node.attrs["axis"]
        if x.kind != "f":
            raise p.unsupported("integer input")
        if axis >= x.rank:
            raise ModelFileError(f"node {node.name!r}: axis {axis} out of range for rank {x.rank}")
        out = p.output(0, x.shape)
        if out.size:
            p.emit(SOFTMAX, f"{node.op.lower()} {x.shape} axis {axis}", *p.ref(x), *p.ref(out),
                   *_around(x.shape, axis), int(node.op == "LogSoftmax"))


class LogSoftmax(Softmax):
    name = "LogSoftmax"


class ReduceMean(Op):
    """The mean over ``axes``; ReduceMax (engine/ops/vision.py) plans the same way with its own opcode."""
    name = "ReduceMean"
    attrs = frozenset({"axes", "keepdims"})
    opcode = MEAN

    @classmethod
    def validate(cls, node, model):
        check_arity(node, 1)
        if not distinct_axes(node):
            raise ModelFileError(f"node {node.name!r}: {node.op} needs at least one axis")
        if node.attrs.get("keepdims") not in (0, 1):
            raise ModelFileError(f"node {node.name!r}: keepdims must be 0 or 1")

    @classmethod
    def plan(cls, node, p):
        x = p.input(0)
        axes = sorted(node.attrs["axes"])
        if x.kind != "f":
            raise p.unsupported("integer input")
        if axes[-1] >= x.rank:
            raise ModelFileError(f"node {node.name!r}: {node.op} axes {axes} out of range for rank {x.rank}")
        keep = [i for i in range(x.rank) if i not in axes]
        shape = [1 if i in axes else d for i, d in enumerate(x.shape)] if node.attrs["keepdims"] else \
            [x.shape[i] for i in keep]
        out = p.output(0, shape)
        K = int(np.prod([x.shape[i] for i in axes], dtype=np.int64))
        if axes == list(range(axes[0], axes[-1] + 1)):    # one block of axes: no copy needed
            outer = int(np.prod(x.shape[:axes[0]], dtype=np.int64))
            inner = int(np.prod(x.shape[axes[-1] + 1:], dtype=np.int64))
            src = x
        else:                                             # move the reduced axes last, then reduce
            perm = keep + axes
            strides = _strides(x.shape)
            src = p.new_temp_like(x)
            p.copy(x, src, shape=[x.shape[i] for i in perm], sstrides=[strides[i] for i in perm])
            outer, inner = out.size, 1
        if out.size:
            p.emit(cls.opcode, f"{node.op[6:].lower()} {x.shape} over {axes}", *p.ref(src), *p.ref(out), outer, K,
                   inner)


class Gather(Op):
    """Gather along ``axis``: embedding lookups (constant table, run-time token ids) and picking time steps.
    ``index_shape`` gives the shape of constant indices (stored flattened), [] for a scalar index."""
    name = "Gather"
    attrs = frozenset({"axis", "index_shape"})

    @classmethod
    def validate(cls, node, model):
        check_arity(node, 2)
        check_axis_attr(node)
        if node.attrs.get("index_shape") is not None:
            if any(d < 0 for d in int_list(node, "index_shape")):
                raise ModelFileError(f"node {node.name!r} (Gather): index_shape must not be negative")

    @classmethod
    def plan(cls, node, p):
        data, idx = p.input(0), p.input(1)
        axis = node.attrs["axis"]
        if axis >= data.rank:
            raise ModelFileError(f"node {node.name!r}: Gather axis {axis} out of range for rank {data.rank}")
        if idx.kind != "i":
            raise p.error("indices must be integers")
        index_shape = node.attrs.get("index_shape")
        ishape = list(idx.shape) if index_shape is None else list(index_shape)
        if math.prod(ishape) != idx.size:
            raise ModelFileError(f"node {node.name!r} (Gather): index_shape {index_shape} does not describe "
                                 f"{idx.size} indices")
        shape = list(data.shape[:axis]) + ishape + list(data.shape[axis + 1:])
        if p.known(data) and p.known(idx):
            n = data.shape[axis]
            flat = idx.const.reshape(-1)
            if np.any((flat < -n) | (flat >= n)):
                raise p.error("an index is out of range for the gathered axis")
            p.fold(0, np.take(data.const, flat, axis=axis).reshape(shape))
            return
        outer, n, inner = _around(data.shape, axis)
        if p.known(idx) and idx.size == 1 and outer == 1:
            # one index into the outermost axis that is not 1 (Silero's h, c = state[0], state[1]): a contiguous
            # part of the data, taken as it is
            i = int(idx.const.reshape(-1)[0])
            if not -n <= i < n:
                raise p.error("an index is out of range for the gathered axis")
            p.alias(0, data, tuple(shape), offset=(i % n) * inner)
            return
        out = p.output(0, shape, data.kind)
        if out.size:
            p.emit(GATHER_F if data.kind == "f" else GATHER_I, f"gather {data.shape} axis {axis}", *p.ref(data),
                   *p.ref(idx), *p.ref(out), outer, n, inner, idx.size)


class Conv(Op):
    """1-D convolution: X (N, C, L), W (M, C/group, K) constant, B (M,) optional; explicit pads. W is packed as
    (group, C/group * K, M/group): each output position is then one row of patches times a matrix whose rows are
    contiguous over the output channels, the layout the LSTM's product reads fastest (im2col).

    A W that is a windowed DFT basis (a short-time Fourier transform written as a convolution) runs as an FFT. With
    the attribute ``magnitude`` (true; only for such a W: the converters set it when the spectrum's magnitude
    follows, converters/fusion.py) the output is (N, M / 2, Lout): sqrt(y[:, m]^2 + y[:, M / 2 + m]^2) of the
    convolution y. With ``first_output`` (k > 0) the output starts at position k: the convolution's [:, :, k:]
    (the frames Silero's sequence model drops), the positions before it never computed. ``pad_mode`` "reflect":
    the pads mirror the input (ONNX Pad's reflect mode, fused in by the converters) instead of zeros. ``relu``: the
    output passed through Relu."""
    name = "Conv"
    attrs = frozenset({"group", "pads", "strides", "dilations", "relu", "pad_mode", "magnitude", "first_output"})
    packed_inputs = (1,)

    @classmethod
    def validate(cls, node, model):
        check_arity(node, (2, 3))
        for key in ("pads", "strides", "dilations"):
            v = int_list(node, key)
            if len(v) != (2 if key == "pads" else 1) or any(not 0 <= d < 2 ** 31 for d in v) or \
                    (key != "pads" and v[0] < 1):
                raise ModelFileError(f"node {node.name!r} (Conv): invalid {key} {v}")
        if not is_int(node.attrs.get("group"), 1):
            raise ModelFileError(f"node {node.name!r} (Conv): group must be a positive integer")
        if not isinstance(node.attrs.get("magnitude", False), bool):
            raise ModelFileError(f"node {node.name!r} (Conv): magnitude must be true or false")
        if not isinstance(node.attrs.get("relu", False), bool):
            raise ModelFileError(f"node {node.name!r} (Conv): relu must be true or false")
        if node.attrs.get("pad_mode", "constant") not in ("constant", "reflect"):
            raise ModelFileError(f"node {node.name!r} (Conv): pad_mode must be 'constant' or 'reflect'")
        if not is_int(node.attrs.get("first_output", 0), 0) or node.attrs.get("first_output", 0) >= 2 ** 31:
            raise ModelFileError(f"node {node.name!r} (Conv): first_output must be a non-negative integer")
        W = model.tensors.get(node.inputs[1])
        if W is None or W.ndim != 3 or W.dtype.kind != "f":
            raise ModelFileError(f"node {node.name!r} (Conv): W must be a float constant of rank 3 (1-D convolution)")
        if W.shape[0] % node.attrs["group"]:
            raise ModelFileError(f"node {node.name!r} (Conv): {W.shape[0]} output channels do not split into "
                                 f"{node.attrs['group']} groups")

    @classmethod
    def pack(cls, node, model, dtype, threads):
        W = model.tensors[node.inputs[1]]
        M, Cg, K = W.shape
        group = node.attrs["group"]
        dft = dft_basis(W) if group == 1 and node.attrs["dilations"] == [1] else None
        if node.attrs.get("magnitude") and dft is None:
            raise ModelFileError(f"node {node.name!r} (Conv): magnitude needs W to be a windowed DFT basis "
                                 f"(one input channel, cos rows for bins 0 .. K/2, then sin rows, K a power of two)")
        if dft is not None:
            # a short-time Fourier transform written as a convolution (Silero VAD's first layer): an FFT per
            # frame instead of the (N + 2) x N product
            window, sign = dft
            yield "window", window.astype(dtype)
            consts, bitrev = stft_constants(K, sign)
            yield "twiddles", consts
            yield "bitrev", bitrev
            return
        yield "WT", conv1d_weights(np.asarray(W, dtype=dtype), group)
        release_pages(model, W)

    @classmethod
    def plan(cls, node, p):
        a = node.attrs
        x = p.input(0)
        bias = p.input(2)
        if x.rank != 3 or x.kind != "f":
            raise ModelFileError(f"node {node.name!r} (Conv): X must have rank 3 (N, C, L)")
        N, C, L = x.shape
        M, Cg, K = p.model.tensors[node.inputs[1]].shape
        group = a["group"]
        Mg = M // group
        pad0, pad1 = a["pads"]
        stride, dilation = a["strides"][0], a["dilations"][0]
        Lout = (L + pad0 + pad1 - dilation * (K - 1) - 1) // stride + 1
        relu, reflect = int(a.get("relu", False)), int(a.get("pad_mode", "constant") == "reflect")
        if reflect and max(pad0, pad1) >= L:      # as the Pad it replaces (and onnxruntime's) refuses
            raise p.error(f"reflect padding of {max(pad0, pad1)} needs an input longer than that, got length {L}")
        if Lout < 1 or Cg * group != C:
            raise p.error("the input is too short for the kernel, or its channels do not match the weights")
        if bias is not None and (bias.shape != (M,) or bias.kind != "f"):
            raise ModelFileError(f"node {node.name!r} (Conv): B must be a float tensor of shape ({M},)")
        magnitude = bool(a.get("magnitude", False))
        first = a.get("first_output", 0)
        Lout = max(Lout - first, 0)
        pad0 -= first * stride           # the kernels start at output position ``first``
        out = p.output(0, (N, M // 2 if magnitude else M, Lout))
        if not out.size:
            return
        extra = (" reflect pads" if reflect else "") + (" + relu" if relu else "") + \
            (f" from output {first}" if first else "")
        if p.has_weight("window"):
            frame = p.temp(K)
            p.emit(STFT, f"stft ({N}, 1, {L}) frame {K} hop {stride} (FFT{', magnitude' if magnitude else ''}){extra}",
                   *p.ref(x), F_CONST, p.weight("window")[0], F_CONST, p.weight("twiddles")[0], F_CONST,
                   p.weight("bitrev")[0], *p.ref(bias), *p.ref(out), *p.ref(frame), N, L, K, Lout, pad0, stride,
                   int(bias is not None), int(magnitude), relu, reflect)
            return
        wt_off = p.weight("WT")[0]
        CgK = Cg * K
        cols, acc = p.temp(Lout * CgK + L * Cg), p.temp(Lout * Mg)     # the patches, then the input transposed
        p.emit(CONV1D, f"conv1d ({N}, {C}, {L}) * ({M}, {Cg}, {K}) stride {stride}{extra}", *p.ref(x), F_CONST, wt_off,
               *p.ref(bias), *p.ref(out), *p.ref(cols), *p.ref(acc), N, C, L, M, Cg, K, Lout, pad0, stride, dilation,
               group, int(bias is not None), relu, reflect)


def conv1d_weights(W, group):
    """W (M, Cg, K) -> (group, K * Cg, Mg), tap-major: row k * Cg + c of group g holds W[g * Mg + m, c, k] over m
    (what conv1d_kernel's patches multiply)."""
    M, Cg, K = W.shape
    Mg = M // group
    return np.ascontiguousarray(W.reshape(group, Mg, Cg, K).transpose(0, 3, 2, 1).reshape(group, K * Cg, Mg))


def stft_constants(K, sign):
    """What stft_kernel reads besides the window, for frames of K points (a power of two >= 4): the stage twiddles
    of the complex FFT of n = K / 2 points (cos, then -sin, of 2 pi k / 2h for stage h at [h, 2h)), the twiddles
    that split its result into the K / 2 + 1 bins of the real input (cos, then -sin, of 2 pi k / K), the sign of
    the basis' sine rows; and the bit-reversal permutation of n (float64: it is stored in the float buffer)."""
    n = K // 2
    stage = np.zeros(n)
    h = 1
    while h < n:
        stage[h:2 * h] = 2 * np.pi * np.arange(h) / (2 * h)
        h *= 2
    split = 2 * np.pi * np.arange(n + 1) / K
    consts = np.concatenate([np.cos(stage), -np.sin(stage), np.cos(split), -np.sin(split), [sign]])
    bits = max(n.bit_length() - 1, 0)
    bitrev = np.array([int(format(i, f"0{bits}b")[::-1], 2) if bits else 0 for i in range(n)], dtype=np.float64)
    return consts, bitrev


def dft_basis(W):
    """(window, sign) when W (2 * (N / 2 + 1), 1, N), N a power of two, is a windowed DFT basis: rows m <= N / 2
    window * cos(2 pi m k / N), the others sign * window * sin(2 pi m k / N), to float32 rounding; else None."""
    M, C, N = W.shape
    nb = N // 2 + 1
    if C != 1 or N < 4 or N & (N - 1) or M != 2 * nb:
        return None
    W = np.asarray(W[:, 0], dtype=np.float64)
    window = W[0]
    scale = np.abs(W).max()
    if not np.isfinite(scale) or scale == 0:
        return None
    k = np.arange(N)
    angle = 2 * np.pi * np.arange(nb)[:, None] * k / N
    if np.abs(W[:nb] - window * np.cos(angle)).max() > 1e-6 * scale:
        return None
    for sign in (-1.0, 1.0):
        if np.abs(W[nb:] - sign * window * np.sin(angle)).max() <= 1e-6 * scale:
            return window, sign
    return None


class Split(Op):
    """Split along ``axis`` into pieces of the given ``sizes``."""
    name = "Split"
    attrs = frozenset({"axis", "sizes"})

    @classmethod
    def validate(cls, node, model):
        sizes = int_list(node, "sizes")
        if len(node.inputs) != 1 or len(node.outputs) != len(sizes) or any(s < 0 for s in sizes):
            raise ModelFileError(f"node {node.name!r} (Split): one input, and one output per size")
        check_axis_attr(node)

    @classmethod
    def plan(cls, node, p):
        x = p.input(0)
        axis, sizes = node.attrs["axis"], node.attrs["sizes"]
        if axis >= x.rank:
            raise ModelFileError(f"node {node.name!r}: Split axis {axis} out of range for rank {x.rank}")
        if x.shape[axis] != sum(sizes):
            raise p.error(f"the split axis must have size {sum(sizes)}, got {x.shape[axis]}")
        strides = _strides(x.shape)
        start = 0
        for k, size in enumerate(sizes):
            if node.outputs[k]:
                shape = list(x.shape)
                shape[axis] = size
                out = p.output(k, shape, x.kind)
                if out.size:
                    p.copy(x, out, shape=shape, sbase=start * strides[axis], sstrides=strides)
            start += size


class Cast(Op):
    """To the model's float type ("float") or to int64 / int32 (integers are computed in int64)."""
    name = "Cast"
    attrs = frozenset({"to"})

    @classmethod
    def validate(cls, node, model):
        check_arity(node, 1)
        if node.attrs.get("to") not in ("float", "int64", "int32"):
            raise ModelFileError(f"node {node.name!r} (Cast): 'to' must be float, int64 or int32")

    @classmethod
    def plan(cls, node, p):
        x = p.input(0)
        kind = "f" if node.attrs["to"] == "float" else "i"
        if x.kind == kind:
            p.alias(0, x, x.shape)
            return
        if p.known(x) or (x.const is not None and x.space is None):
            p.fold(0, x.const.astype(np.float64 if kind == "f" else np.int64))
            return
        out = p.output(0, x.shape, kind)
        if out.size:
            p.emit(INT_TO_FLOAT if kind == "f" else FLOAT_TO_INT, f"cast to {node.attrs['to']}", *p.ref(x),
                   *p.ref(out), out.size)


def _named(base, op_name):
    return type(op_name, (base,), {"name": op_name})


LAYER_OPS = [*(_named(Binary, n) for n in Binary.codes), *(_named(Unary, n) for n in Unary.codes), MatMul, Softmax,
             LogSoftmax, ReduceMean, Gather, Conv, Split, Cast]
