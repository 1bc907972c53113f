"""Numeric helpers shared by the kernels: float32 tanh/sigmoid approximations that vectorise, the ONNX
activations by code, the clip convention, the register-blocked recurrent product, matrix products, the hoisted input
projection.

"No clip" is ``clip = +inf`` everywhere: ``clip_value`` then leaves every finite value (and NaN) alone.
"""
import math

import numpy as np
from numba import njit

from ..config import BLAS, JIT_OPTIONS
from .activations import (AFFINE, ELU, HARD_SIGMOID, LEAKY_RELU, RELU, SCALED_TANH, SIGMOID, SOFTSIGN, TANH,
                          THRESHOLDED_RELU)
from .program import BLAS_MIN_BATCH  # noqa: F401  (re-exported)

F32 = np.float32
# tanh(x) = x * P(x^2) / Q(x^2) on [-C, C], +-1 beyond (MLAS / Eigen coefficients)
_C = F32(7.90531110763549805)
_A1 = F32(4.89352455891786e-03)
_A3 = F32(6.37261928875436e-04)
_A5 = F32(1.48572235717979e-05)
_A7 = F32(5.12229709037114e-08)
_A9 = F32(-8.60467152213735e-11)
_A11 = F32(2.00018790482477e-13)
_A13 = F32(-2.76076847742355e-16)
_B0 = F32(4.89352518554385e-03)
_B2 = F32(2.26843463243900e-03)
_B4 = F32(1.18534705686654e-04)
_B6 = F32(1.19825839466702e-06)
_SAT = F32(9.0)
_HALF = F32(0.5)
_ONE = F32(1.0)


@njit(**JIT_OPTIONS)
def max_length(seq, B):
    """The longest of the first B sequence lengths: how many steps a direction runs."""
    maxlen = 0
    for b in range(B):
        if seq[b] > maxlen:
            maxlen = seq[b]
    return maxlen


@njit(**JIT_OPTIONS)
def tanh32(x):
    # NaN-preserving clamp: comparisons with NaN are false, so NaN passes through to the result
    big = x > _SAT
    small = x < -_SAT
    x = _C if x > _C else x
    x = -_C if x < -_C else x
    x2 = x * x
    p = x2 * _A13 + _A11
    p = x2 * p + _A9
    p = x2 * p + _A7
    p = x2 * p + _A5
    p = x2 * p + _A3
    p = x2 * p + _A1
    p = x * p
    q = x2 * _B6 + _B4
    q = x2 * q + _B2
    q = x2 * q + _B0
    r = p / q
    # the rational tops out at 1 - 2.4e-7 at the clamp; beyond 9, where float32 tanh rounds to exactly +-1, return
    # that, so that saturated gates are exact (a GRU's z = 1 keeps the old state bit for bit)
    r = _ONE if big else r
    return -_ONE if small else r


@njit(**JIT_OPTIONS)
def sigmoid32(x):
    return _HALF + _HALF * tanh32(_HALF * x)


@njit(**JIT_OPTIONS)
def clip_value(x, clip):
    """x limited to [-clip, clip]; clip = +inf means no clip; NaN passes through (comparisons with NaN are false)."""
    x = clip if x > clip else x
    return -clip if x < -clip else x


@njit(**JIT_OPTIONS)
def _sigmoid_all(a, clip):
    for u in range(a.shape[0]):
        a[u] = sigmoid32(clip_value(a[u], clip))


@njit(**JIT_OPTIONS)
def _tanh_all(a, clip):
    for u in range(a.shape[0]):
        a[u] = tanh32(clip_value(a[u], clip))


@njit(**JIT_OPTIONS)
def lstm_cell(g, n, c, h, y, pi, po, pf, use_peep, clip, input_forget):
    """The LSTM cell (default activations) of n hidden units, every float kernel's: g (4 * chunk,) holds the gate
    pre-activations i, o, f, c in blocks of chunk >= n (x @ W^T + h @ R^T + bias) and is overwritten; c (n,) is the
    cell state, updated in place; h (n,) and y (n,) receive the new hidden state; pi, po, pf (n,) the peepholes
    (read only with use_peep). Every loop reads and writes whole slices of one or two arrays, so LLVM vectorises
    each (a loop over six arrays exceeds its alias-check budget and runs scalar: twice the time at H=64)."""
    chunk = g.shape[0] // 4
    gi = g[:n]
    go = g[chunk:chunk + n]
    gf = g[2 * chunk:2 * chunk + n]
    gc = g[3 * chunk:3 * chunk + n]
    if use_peep:                     # i and f see the old c, o the new one
        for u in range(n):
            gi[u] += pi[u] * c[u]
        for u in range(n):
            gf[u] += pf[u] * c[u]
        _sigmoid_all(gi, clip)
        _sigmoid_all(gf, clip)
    else:
        _sigmoid_all(g[:3 * chunk], clip)
    _tanh_all(gc, clip)
    if input_forget:
        for u in range(n):
            gf[u] = _ONE - gi[u]
    for u in range(n):               # the new c, kept in the candidate's block
        gc[u] = gf[u] * c[u] + gi[u] * gc[u]
    for u in range(n):
        c[u] = gc[u]
    if use_peep:
        for u in range(n):
            go[u] += po[u] * gc[u]
        _sigmoid_all(go, clip)
    for u in range(n):               # the new h, kept in i's block
        gi[u] = go[u] * tanh32(gc[u])
    for u in range(n):
        h[u] = gi[u]
    for u in range(n):
        y[u] = gi[u]


@njit(**JIT_OPTIONS)
def recurrent_product(g, hrow, RT):
    """g (4H,) += hrow (Hout,) @ RT (Hout, 4H), four rows of RT per pass over g."""
    Hout, G = RT.shape
    k = 0
    while k + 4 <= Hout:
        h0 = hrow[k]
        h1 = hrow[k + 1]
        h2 = hrow[k + 2]
        h3 = hrow[k + 3]
        for j in range(G):
            g[j] += h0 * RT[k, j] + h1 * RT[k + 1, j] + h2 * RT[k + 2, j] + h3 * RT[k + 3, j]
        k += 4
    while k < Hout:
        hk = hrow[k]
        for j in range(G):
            g[j] += hk * RT[k, j]
        k += 1


@njit(**JIT_OPTIONS)
def rows_product(X, WT, out):
    """out (R, G) <- X (R, K) @ WT (K, G) for a few rows: four rows per pass over WT, so that a matrix too big
    for the caches is streamed once for every four rows (a convolution's output positions)."""
    R, K = X.shape
    G = WT.shape[1]
    out[:, :] = 0
    r = 0
    while r + 4 <= R:
        o0, o1, o2, o3 = out[r], out[r + 1], out[r + 2], out[r + 3]
        k = 0
        while k + 2 <= K:
            a0, a1, b0, b1 = X[r, k], X[r, k + 1], X[r + 1, k], X[r + 1, k + 1]
            c0, c1, d0, d1 = X[r + 2, k], X[r + 2, k + 1], X[r + 3, k], X[r + 3, k + 1]
            w0, w1 = WT[k], WT[k + 1]
            for j in range(G):
                u = w0[j]
                v = w1[j]
                o0[j] += a0 * u + a1 * v
                o1[j] += b0 * u + b1 * v
                o2[j] += c0 * u + c1 * v
                o3[j] += d0 * u + d1 * v
            k += 2
        if k < K:
            a0, b0, c0, d0 = X[r, k], X[r + 1, k], X[r + 2, k], X[r + 3, k]
            w0 = WT[k]
            for j in range(G):
                u = w0[j]
                o0[j] += a0 * u
                o1[j] += b0 * u
                o2[j] += c0 * u
                o3[j] += d0 * u
        r += 4
    while r < R:
        recurrent_product(out[r], X[r], WT)
        r += 1


if BLAS:
    @njit(**JIT_OPTIONS)
    def matmul(a, b, out):
        """out (M, N) <- a (M, K) @ b (K, N): BLAS (SciPy's OpenBLAS, which Numba's np.dot calls)."""
        np.dot(a, b, out)
else:
    @njit(**JIT_OPTIONS)
    def matmul(a, b, out):
        """out (M, N) <- a (M, K) @ b (K, N) without BLAS: an ahead-of-time runtime built with --no-blas, for a
        device without SciPy (engine/aot.py)."""
        out[:, :] = 0
        for r in range(a.shape[0]):
            recurrent_product(out[r], a[r], b)


@njit(**JIT_OPTIONS)
def input_projection(X2, WT, out):
    """out (N, G) <- X2 (N, I) @ WT (I, G). A BLAS call costs ~1 us of overhead, more than the whole product for the
    few rows of a streaming step, so small N uses the blocked loop instead."""
    N = X2.shape[0]
    if N > 4:
        matmul(X2, WT, out)
        return
    rows_product(X2, WT, out)


@njit(**JIT_OPTIONS)
def activate(code, alpha, beta, x):
    """Apply activation ``code`` to the scalar x (any float type; the result has x's type)."""
    if code == SIGMOID:
        if x >= 0:
            return 1.0 / (1.0 + math.exp(-x))
        e = math.exp(x)
        return e / (1.0 + e)
    if code == TANH:
        return math.tanh(x)
    # NaN must come out as NaN, and -inf as 0: hence no "0.0 * x" (NaN for -inf) and no max() (drops NaN)
    if code == RELU:
        return x if (x > 0 or x != x) else 0.0
    if code == AFFINE:
        return alpha * x + beta
    if code == LEAKY_RELU:
        return x if x >= 0 else alpha * x
    if code == THRESHOLDED_RELU:
        return x if (x > alpha or x != x) else 0.0
    if code == SCALED_TANH:
        return alpha * math.tanh(beta * x)
    if code == HARD_SIGMOID:
        v = alpha * x + beta
        return min(1.0, max(0.0, v)) if v == v else v
    if code == ELU:
        return x if x >= 0 else alpha * (math.exp(x) - 1.0)
    if code == SOFTSIGN:
        if math.isinf(x):              # inf / inf would be NaN; the limit is +-1
            return 1.0 if x > 0 else -1.0
        return x / (1.0 + abs(x))
    # SOFTPLUS: log(1 + e^x), computed without overflow for large x
    if x > 0:
        return x + math.log1p(math.exp(-x))
    return math.log1p(math.exp(x))
