"""The elementwise binary kernel (engine/ops/layer_kernels.py ``binary_kernel``) against numpy's broadcasting: every
op, with each side contiguous, one value along the inner axis (stride 0), or strided (a transposed or sliced
operand), and NaN and inf passed through as numpy passes them."""
import itertools

import numpy as np
import pytest

from engine.ops.layer_kernels import binary_kernel
from engine.ops.layers import ADD, DIV, MUL, POW, SUB

OPS = {ADD: np.add, SUB: np.subtract, MUL: np.multiply, DIV: np.divide, POW: np.power}


def _operand(rng, shape, kind):
    """(flat buffer, element strides over the 6-D index space) of an operand broadcast to ``shape``."""
    if kind == "value":                                   # one value along the inner axis: stride 0 there
        a = rng.uniform(0.5, 2.0, shape[:-1] + (1,)).astype(np.float32)
    elif kind == "strided":                               # every other element of a wider array
        a = rng.uniform(0.5, 2.0, shape[:-1] + (2 * shape[-1],)).astype(np.float32)[..., ::2]
    else:
        a = rng.uniform(0.5, 2.0, shape).astype(np.float32)
    if kind == "broadcast-row":                           # one row for every outer index: strides 0 outside
        a = a[:1, :1, :1, :1, :1].copy()
    base = a.base if a.base is not None else a
    flat = np.ascontiguousarray(base).reshape(-1)
    strides = [0 if a.shape[k] == 1 and shape[k] != 1 else a.strides[k] // 4 for k in range(6)]
    return flat, strides, np.broadcast_to(a, shape)


KINDS = ["contiguous", "value", "strided", "broadcast-row"]


@pytest.mark.parametrize("op", list(OPS), ids=["add", "sub", "mul", "div", "pow"])
@pytest.mark.parametrize("kinds", list(itertools.product(KINDS, KINDS)), ids="-".join)
def test_binary_kernel_is_numpys_broadcast(op, kinds):
    rng = np.random.default_rng(op)
    shape = (2, 1, 3, 1, 2, 37)
    (fa, sa, a), (fb, sb, b) = (_operand(rng, shape, k) for k in kinds)
    if kinds[0] == "contiguous":
        fa[5] = np.nan
        fa[7] = np.inf
    out = np.full(int(np.prod(shape)), -7.0, np.float32)
    prog = np.array(list(shape) + sa + sb, np.int64)
    binary_kernel(op, fa, fb, out, prog, 0)
    with np.errstate(all="ignore"):
        want = OPS[op](a, b).astype(np.float32).reshape(-1)
    np.testing.assert_allclose(out, want, rtol=2e-6, equal_nan=True)


# ---------------------------------------------------------------------- softmax and exp32
def test_exp32_is_within_a_few_ulp_of_exp():
    from engine.ops.numeric import exp32
    x = np.concatenate([np.linspace(-87.3, 88.3, 200_001), [0.0, -0.0, 1e-30, -1e-30]]).astype(np.float32)
    got = np.array([exp32(v) for v in x[::97]] + [exp32(v) for v in x[-4:]], np.float32)
    want = np.exp(np.concatenate([x[::97], x[-4:]]).astype(np.float64))
    assert np.all(np.abs(got - want) <= 4e-7 * want)            # ~3 float32 ulps
    assert exp32(np.float32(-200.0)) <= 1.2e-38 and exp32(np.float32(200.0)) >= 2.4e38    # clamped, still finite
    assert np.isnan(exp32(np.float32(np.nan)))


def _softmax_reference(x, log):
    """Along the middle axis of (outer, K, inner), in float64 (NaN rows stay NaN, a row of -inf is NaN)."""
    x = x.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        m = np.max(np.where(np.isnan(x), -np.inf, x), axis=1, keepdims=True)
        e = np.exp(x - m)
        s = e.sum(axis=1, keepdims=True)
        return x - m - np.log(s) if log else e / s


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("shape", [(37, 89, 1), (1, 1, 1), (3, 1000, 1), (2, 7, 5), (4, 16, 1)])
def test_softmax_kernel_matches_float64(log, shape):
    """float32 rows along the last axis take the vectorised exp32 path; the rest (and float64) the general loop.
    Rows of large spread (exp underflows), -inf entries (probability 0, log-probability -inf), a NaN row."""
    from engine.ops.layer_kernels import softmax_kernel
    rng = np.random.default_rng(shape[1])
    for dtype in (np.float32, np.float64):
        x = (rng.standard_normal(shape) * 30).astype(dtype)
        if shape[0] >= 3 and shape[1] > 1:
            x[1, 0, 0] = -np.inf
            x[2, shape[1] // 2, 0] = np.nan
        out = np.full(shape, 7.0, dtype)
        softmax_kernel(x, out, log)
        want = _softmax_reference(x, log)
        assert np.array_equal(np.isnan(out), np.isnan(want))
        ok = ~np.isnan(want)
        if log:
            assert np.array_equal(np.isneginf(out), np.isneginf(want))
            ok &= np.isfinite(want)
            np.testing.assert_allclose(out[ok], want[ok], rtol=2e-6, atol=2e-6 if dtype == np.float32 else 1e-12)
        else:
            # float32's x - max is rounded (half an ulp of 64 is 4e-6), which e^ turns into that relative error
            # of a probability below e^-64: relative 1e-5
            np.testing.assert_allclose(out[ok], want[ok], rtol=1e-5 if dtype == np.float32 else 1e-12, atol=2e-37)
            sums = np.nansum(out, axis=1)
            rows = ~np.isnan(want).any(axis=1)
            np.testing.assert_allclose(sums[rows], 1.0, rtol=1e-5)
