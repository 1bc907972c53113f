"""The kernels of the control ops and of the new 1-D Conv paths, called directly, against float64 numpy references
(tests/naive.py, numpy itself): the strided elementwise loop (comparisons, logic, Where), Pad (its per-axis index
maps and the kernel), the FFT of a windowed-DFT-basis convolution, the im2col convolution and the four-row product.

Buffers are prepared the way the kernels' docstrings (and the planner) describe them: broadcast operands as element
strides that are 0 along broadcast axes, in a loop nest of six axes; Conv weights packed as (group, C/group * K,
M/group). Comparisons, logic, Where and Pad must be exact; products within 1e-5 + 1e-6 |ref| in float32 and 1e-12
(1 + |ref|) in float64; the FFT within 1e-6 of the output's scale in float32. NaN must propagate as in the
reference, inf as float math says (the FFT mixes every input of a frame into every output of it: there an inf
input may give NaN where the direct product gives inf, see test_stft_kernel_nan_and_inf).
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import naive
from engine.errors import InvalidInputError
from engine.ops import control
from engine.ops.control_kernels import elementwise, pad_kernel
from engine.ops.layer_kernels import conv1d_kernel, stft_kernel
from engine.ops.layers import conv1d_weights, stft_constants
from engine.ops.numeric import rows_product

F32, F64 = np.float32, np.float64
RANK = 6      # the loop nests of the elementwise and pad kernels (program.MAX_RANK)


def tolerance(dtype):
    return (1e-5, 1e-6) if dtype == F32 else (1e-12, 1e-12)


def assert_close(got, ref, dtype, what=""):
    """The same NaN and +-inf positions; finite values within the dtype's tolerance. Returns the largest diff."""
    got, ref = np.asarray(got, F64), np.asarray(ref, F64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape}, reference {ref.shape}"
    assert np.array_equal(np.isnan(got), np.isnan(ref)), f"{what}: NaN at other places"
    assert np.array_equal(np.isposinf(got), np.isposinf(ref)) and np.array_equal(np.isneginf(got),
                                                                                   np.isneginf(ref)), \
        f"{what}: infinities at other places"
    finite = np.isfinite(ref)
    err = np.abs(got[finite] - ref[finite])
    absolute, relative = tolerance(dtype)
    assert (err <= absolute + relative * np.abs(ref[finite])).all(), f"{what}: max abs diff {err.max():.3g}"
    return float(err.max(initial=0.0))


def specials(rng, shape, dtype=F32):
    """Small integers (so that equal values occur) with NaN, +-inf and -0.0 among them."""
    x = rng.integers(-2, 3, shape).astype(dtype)
    flat = x.reshape(-1)
    for k, v in zip(rng.permutation(flat.size)[:4], [np.nan, np.inf, -np.inf, -0.0]):
        flat[k] = v
    return x


# ---------------------------------------------------------------------- the elementwise loop
def broadcast_prog(out_shape, *shapes):
    """[6 dims, 6 strides per operand (3 operands)] for operands of ``shapes`` broadcast to ``out_shape``."""
    dims = [1] * (RANK - len(out_shape)) + list(out_shape)
    words = list(dims)
    for s in list(shapes) + [()] * (3 - len(shapes)):
        s = [1] * (RANK - len(s)) + list(s)
        contiguous = np.cumprod([1] + s[::-1])[:-1][::-1]
        words += [0 if d == 1 and o != 1 else int(st) for d, o, st in zip(s, dims, contiguous)]
    return np.array(words, np.int64)


SHAPES = [((2, 3, 4), (2, 3, 4), (2, 3, 4)), ((4, 1, 3), (1, 5, 1), (5, 3)), ((1,), (7,), (1, 1)),
          ((2, 1, 1, 1, 1, 3), (1, 2, 1, 1, 2, 1), (3,)), ((), (), ())]
NUMPY = {control.EQ: np.equal, control.LT: np.less, control.GT: np.greater, control.LE: np.less_equal,
         control.GE: np.greater_equal, control.NE: np.not_equal}


@pytest.mark.parametrize("dtype", [F32, F64, np.int64], ids=["f32", "f64", "i64"])
@pytest.mark.parametrize("shapes", SHAPES, ids=[str(s[:2]) for s in SHAPES])
def test_comparisons_with_nan_inf_and_broadcasting(shapes, dtype):
    """Floats with NaN and inf; int64 (the int comparisons at run time, e.g. token ids) around equal values."""
    rng = np.random.default_rng(len(shapes[0]))
    if dtype == np.int64:
        a, b = rng.integers(-2, 3, shapes[0]), rng.integers(-2, 3, shapes[1])
    else:
        a, b = specials(rng, shapes[0], dtype), specials(rng, shapes[1], dtype)
    out_shape = np.broadcast_shapes(a.shape, b.shape)
    prog = broadcast_prog(out_shape, a.shape, b.shape)
    for op, fn in NUMPY.items():
        out = np.full(int(np.prod(out_shape)), 7, np.int64)
        elementwise(op, a.reshape(-1), b.reshape(-1), b.reshape(-1), out, prog, 0)
        assert np.array_equal(out.reshape(out_shape), fn(a.astype(F64), b.astype(F64)).astype(np.int64)), op


@pytest.mark.parametrize("shapes", SHAPES, ids=[str(s[:2]) for s in SHAPES])
def test_logic(shapes):
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 2, shapes[0]), rng.integers(-1, 2, shapes[1])     # any non-zero int is true
    out_shape = np.broadcast_shapes(a.shape, b.shape)
    prog = broadcast_prog(out_shape, a.shape, b.shape)
    cases = {control.AND: np.logical_and(a, b), control.OR: np.logical_or(a, b), control.XOR: np.logical_xor(a, b),
             control.NOT: np.broadcast_to(np.logical_not(a), out_shape),
             control.BOOL: np.broadcast_to(a != 0, out_shape)}
    for op, want in cases.items():
        out = np.full(int(np.prod(out_shape)), 7, np.int64)
        elementwise(op, a.reshape(-1).astype(np.int64), b.reshape(-1).astype(np.int64),
                    b.reshape(-1).astype(np.int64), out, prog, 0)
        assert np.array_equal(out.reshape(out_shape), want.astype(np.int64)), op


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("shapes", SHAPES, ids=[str(s) for s in SHAPES])
def test_where_broadcasts_all_three(shapes, dtype):
    rng = np.random.default_rng(4)
    c = rng.integers(0, 2, shapes[0]).astype(np.int64)
    x, y = specials(rng, shapes[1], dtype), specials(rng, shapes[2], dtype)
    out_shape = np.broadcast_shapes(c.shape, x.shape, y.shape)
    out = np.full(int(np.prod(out_shape)), 99, dtype)
    elementwise(control.WHERE, c.reshape(-1), x.reshape(-1), y.reshape(-1), out,
                broadcast_prog(out_shape, c.shape, x.shape, y.shape), 0)
    want = np.where(c != 0, x, y)
    assert np.array_equal(out.reshape(out_shape), want, equal_nan=True)
    assert np.array_equal(np.signbit(out.reshape(out_shape)), np.signbit(want))      # -0.0 kept


def test_elementwise_reads_at_an_offset_in_the_program():
    a, b = np.array([1.0, np.nan, 3.0], F32), np.array([1.0, 1.0, 4.0], F32)
    prog = np.concatenate([np.full(5, -9, np.int64), broadcast_prog((3,), (3,), (3,))])
    out = np.zeros(3, np.int64)
    elementwise(control.LT, a, b, b, out, prog, 5)
    assert out.tolist() == [0, 0, 1]


# ---------------------------------------------------------------------- Pad
class _Planner:
    """What control._check_axis needs of a planner: its error constructor."""
    @staticmethod
    def error(msg):
        return InvalidInputError(msg)


def run_pad(x, pads, mode, value=0.0):
    """The maps as Pad.plan computes them (control._check_axis, _axis_map), then pad_kernel."""
    rank = x.ndim
    axes_pads = list(zip(x.shape, pads[:rank], pads[rank:]))
    for axis, (d, b, e) in enumerate(axes_pads):
        control._check_axis(_Planner, d, b, e, mode, axis)
    maps = [control._axis_map(d, b, e, mode).tolist() for d, b, e in axes_pads]
    shape = [len(m) for m in maps]
    maps = [[0]] * (RANK - rank) + maps
    strides = [0] * (RANK - rank) + [int(s) // x.itemsize for s in np.ascontiguousarray(x).strides]
    prog = np.array([len(m) for m in maps] + strides + [v for m in maps for v in m], np.int64)
    out = np.full(int(np.prod(shape)), -77, x.dtype)
    pad_kernel(np.ascontiguousarray(x).reshape(-1), out, value, prog, 0)
    return out.reshape(shape)


def pad_cases():
    rng = np.random.default_rng(5)
    for rank in (1, 2, 3, 4):
        for k in range(12):
            shape = tuple(int(d) for d in rng.integers(1, 5, rank))
            pads = [int(p) for p in rng.integers(-2, 4, 2 * rank)]
            yield shape, pads, k
    yield (5,), [-1, 3], 0
    yield (5,), [-4, 4], 1
    yield (3, 1), [0, 2, 0, 0], 2
    yield (2, 0, 3), [1, 0, 0, 0, 0, 1], 3
    yield (4, 3), [0, 0, 0, 0], 4
    yield (4,), [-6, 3], 5


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_pad_every_mode_rank_and_crop(mode, dtype):
    """Random shapes and pads from -2 to 3 on ranks 1-4: the kernel equals crop + np.pad, or both refuse."""
    rng = np.random.default_rng(6)
    checked = refused = 0
    for shape, pads, k in pad_cases():
        x = specials(rng, shape, dtype) if np.prod(shape) >= 4 else rng.standard_normal(shape).astype(dtype)
        try:
            want = naive.pad(x, pads, mode, value=-1.5)
        except ValueError:
            with pytest.raises(InvalidInputError, match="crop|reflect|empty"):
                run_pad(x, pads, mode, -1.5)
            refused += 1
            continue
        got = run_pad(x, pads, mode, -1.5)
        assert got.shape == want.shape and np.array_equal(got, want, equal_nan=True), (shape, pads)
        checked += 1
    assert checked >= 10 and (mode != "reflect" or refused > 0), (checked, refused)


# ---------------------------------------------------------------------- Conv 1-D: im2col + product
def run_conv(x, W, B, pads, stride, dilation, group, relu=False, reflect=False):
    N, C, L = x.shape
    M, Cg, K = W.shape
    Mg = M // group
    Lout = (L + pads[0] + pads[1] - dilation * (K - 1) - 1) // stride + 1
    wt = conv1d_weights(W, group)                                   # (group, K * Cg, Mg), as Conv.pack makes it
    out = np.full((N, M, Lout), np.nan, x.dtype)
    cols, acc = np.full((Lout, Cg * K), np.nan, x.dtype), np.full((Lout, Mg), np.nan, x.dtype)
    conv1d_kernel(x, wt, B if B is not None else np.zeros(0, x.dtype), B is not None, pads[0], stride, dilation,
                  out, cols, np.full((L, Cg), np.nan, x.dtype), acc, relu, reflect, 1)
    return out


CONV_CASES = list(itertools.product([1, 2, 3], [1, 2], [1, 2, 4], [(0, 0), (2, 1)], [True, False]))


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("stride,dilation,group,pads,bias", CONV_CASES)
def test_conv1d_kernel(stride, dilation, group, pads, bias, dtype):
    rng = np.random.default_rng(stride * 100 + dilation * 10 + group)
    C, M, K = 4, 8, 3
    W = rng.standard_normal((M, C // group, K)).astype(dtype)
    B = rng.standard_normal(M).astype(dtype) if bias else None
    span = dilation * (K - 1) + 1 - sum(pads)
    for n_out in range(1, 8):
        L = (n_out - 1) * stride + span + n_out % stride
        if L < 1:
            continue
        x = rng.standard_normal((1 + n_out % 3, C, L)).astype(dtype)
        got = run_conv(x, W, B, pads, stride, dilation, group)
        assert got.shape[2] == n_out
        assert_close(got, naive.conv1d(x, W, B, pads, stride, dilation, group), dtype, f"{n_out} positions")


@pytest.mark.parametrize("pads,stride,dilation,group", [((1, 1), 1, 1, 1), ((2, 0), 2, 1, 2), ((0, 3), 1, 2, 1),
                                                         ((3, 3), 3, 1, 4)])
def test_conv1d_kernel_reflect_pads_and_relu(pads, stride, dilation, group):
    """pad_mode reflect: as np.pad's reflect (ONNX Pad's) in front of an unpadded convolution; relu: max(0, .)."""
    rng = np.random.default_rng(sum(pads) + stride)
    C, M, K = 4, 8, 3
    W = rng.standard_normal((M, C // group, K)).astype(F32)
    B = rng.standard_normal(M).astype(F32)
    for L in (4, 7, 12):
        x = rng.standard_normal((2, C, L)).astype(F32)
        got = run_conv(x, W, B, pads, stride, dilation, group, relu=True, reflect=True)
        xp = np.pad(x, ((0, 0), (0, 0), pads), mode="reflect")
        ref = np.maximum(naive.conv1d(xp, W, B, (0, 0), stride, dilation, group), 0)
        assert_close(got, ref, F32)


@pytest.mark.parametrize("n_out", [1, 5])
def test_conv1d_kernel_nan_and_inf(n_out):
    """A NaN or inf input reaches the outputs whose windows hold it, in the channels of its group (one output
    position and several)."""
    rng = np.random.default_rng(7)
    W = np.abs(rng.standard_normal((4, 1, 3))).astype(F32) + 0.1      # positive: inf stays inf
    x = rng.standard_normal((1, 2, n_out + 2)).astype(F32)
    x[0, 0, 1], x[0, 1, n_out + 1] = np.nan, np.inf
    got = run_conv(x, W, None, (0, 0), 1, 1, 2)
    ref = naive.conv1d(x, W, None, (0, 0), 1, 1, 2)
    assert np.isnan(ref).any() and np.isinf(ref).any()
    assert_close(got, ref, F32)


# ---------------------------------------------------------------------- the four-row product
@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("R", [1, 3, 4, 5, 8, 9])
@pytest.mark.parametrize("K", [1, 6, 7])
def test_rows_product(R, K, dtype):
    rng = np.random.default_rng(R * 10 + K)
    X, WT = rng.standard_normal((R, K)).astype(dtype), rng.standard_normal((K, 13)).astype(dtype)
    out = np.full((R, 13), np.nan, dtype)
    rows_product(X, WT, out)
    assert_close(out, X.astype(F64) @ WT.astype(F64), dtype)
    X[R - 1, K - 1] = np.nan
    X[0, 0] = np.inf
    rows_product(X, WT, out)
    with np.errstate(invalid="ignore"):
        ref = X.astype(F64) @ WT.astype(F64)
    assert_close(out, ref, dtype)


# ---------------------------------------------------------------------- the FFT of a windowed DFT basis
def dft_basis(N, sign):
    k = np.arange(N)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * k / N)
    angle = 2 * np.pi * np.arange(N // 2 + 1)[:, None] * k / N
    return hann, np.concatenate([hann * np.cos(angle), sign * hann * np.sin(angle)])[:, None, :]


def run_stft(x, N, sign, B, pads, stride, dtype, magnitude=False, relu=False, reflect=False):
    """The kernel's constants as Conv.pack makes them; its work buffer starts as NaN (it must not read it before
    writing), and so does the output."""
    window, _ = dft_basis(N, sign)
    consts, bitrev = stft_constants(N, sign)
    L = x.shape[2]
    Lout = (L + pads[0] + pads[1] - N) // stride + 1
    out = np.full((x.shape[0], N // 2 + 1 if magnitude else N + 2, Lout), np.nan, dtype)
    stft_kernel(x.astype(dtype), window.astype(dtype), consts.astype(dtype), bitrev.astype(dtype),
                B.astype(dtype) if B is not None else np.zeros(0, dtype), B is not None, pads[0], stride, out,
                np.full(N, np.nan, dtype), magnitude, relu, reflect)
    return out


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("N,stride,sign,bias,pads", [(4, 1, -1.0, False, (0, 0)), (64, 32, -1.0, True, (16, 16)),
                                                     (128, 64, 1.0, False, (0, 64)), (256, 128, -1.0, True, (0, 0)),
                                                     (16, 3, 1.0, True, (5, 2))])
def test_stft_kernel_equals_the_direct_product(N, stride, sign, bias, pads, dtype):
    rng = np.random.default_rng(N)
    _, W = dft_basis(N, sign)
    B = rng.standard_normal(N + 2) if bias else None
    x = rng.standard_normal((2, 1, 3 * N + 7)).astype(dtype)
    got = run_stft(x, N, sign, B, pads, stride, dtype)
    ref = naive.conv1d(x, W, B, pads, stride)
    scale = np.abs(ref).max()
    err = np.abs(got - ref).max()
    assert err <= (1e-6 if dtype == F32 else 1e-13) * scale, f"max abs diff {err:.3g}, output scale {scale:.3g}"


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("N,stride,sign,bias,pads", [(4, 1, -1.0, True, (0, 0)), (256, 128, -1.0, False, (0, 0)),
                                                     (128, 64, 1.0, True, (3, 64))])
def test_stft_kernel_magnitude(N, stride, sign, bias, pads, dtype):
    """With magnitude: sqrt(re^2 + im^2) of the direct product's halves, the bias added first."""
    rng = np.random.default_rng(N + 1)
    _, W = dft_basis(N, sign)
    B = rng.standard_normal(N + 2) if bias else None
    x = rng.standard_normal((2, 1, 2 * N + 5)).astype(dtype)
    got = run_stft(x, N, sign, B, pads, stride, dtype, magnitude=True)
    y = naive.conv1d(x, W, B, pads, stride)
    ref = np.sqrt(y[:, :N // 2 + 1] ** 2 + y[:, N // 2 + 1:] ** 2)
    scale = np.abs(ref).max()
    err = np.abs(got - ref).max()
    assert err <= (1e-6 if dtype == F32 else 1e-13) * scale, f"max abs diff {err:.3g}, output scale {scale:.3g}"


@pytest.mark.parametrize("magnitude", [False, True])
def test_stft_kernel_reflect_pads_and_relu(magnitude):
    """Silero's reflect Pad folded into the FFT's frames (pads on both sides, or the right only), Relu after."""
    N, stride = 64, 32
    rng = np.random.default_rng(3)
    _, W = dft_basis(N, -1.0)
    for pads in ((32, 32), (0, 16), (63, 0)):
        x = rng.standard_normal((2, 1, 3 * N + 5)).astype(F32)
        got = run_stft(x, N, -1.0, None, pads, stride, F32, magnitude=magnitude, relu=True, reflect=True)
        y = naive.conv1d(np.pad(x, ((0, 0), (0, 0), pads), mode="reflect"), W, None, (0, 0), stride)
        ref = np.sqrt(y[:, :N // 2 + 1] ** 2 + y[:, N // 2 + 1:] ** 2) if magnitude else np.maximum(y, 0)
        assert np.abs(got - ref).max() <= 1e-6 * np.abs(ref).max()


def test_stft_kernel_nan_and_inf():
    """A NaN input makes every output of the frames that hold it NaN (as the direct product does: the window's zero
    times NaN is NaN); an inf input makes them non-finite (the FFT's butterflies give NaN where the direct product
    may give inf); the other frames are untouched."""
    N, stride = 16, 8
    _, W = dft_basis(N, -1.0)
    x = np.random.default_rng(8).standard_normal((2, 1, 64)).astype(F32)
    x[0, 0, 20], x[1, 0, 41] = np.nan, np.inf
    got = run_stft(x, N, -1.0, None, (0, 0), stride, F32)
    ref = naive.conv1d(x, W, None, (0, 0), stride)
    assert np.array_equal(np.isnan(got[0]), np.isnan(ref[0]))
    assert np.array_equal(np.isfinite(got[1]), np.isfinite(ref[1]))
    for n, q in ((0, 20), (1, 41)):
        hit = [j for j in range(got.shape[2]) if j * stride <= q < j * stride + N]
        assert not np.isfinite(got[n][:, hit]).any()
        rest = [j for j in range(got.shape[2]) if j not in hit]
        assert np.abs(got[n][:, rest] - ref[n][:, rest]).max() <= 1e-6 * np.abs(ref[n][:, rest]).max()
