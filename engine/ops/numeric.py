"""Numeric helpers shared by the recurrent kernels (LSTM, GRU, RNN): float32 tanh/sigmoid approximations that
vectorise, the clip convention, the register-blocked recurrent product, the hoisted input projection.

"No clip" is ``clip = +inf`` everywhere: ``clip_value`` then leaves every finite value (and NaN) alone.
"""
import numpy as np
from numba import njit

from ..config import JIT_OPTIONS

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
# below this batch size the hand-blocked product beats a BLAS call per step
BLAS_MIN_BATCH = 4


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
def input_projection(X2, WT, out):
    """out (N, G) <- X2 (N, I) @ WT (I, G). A BLAS call costs ~1 us of overhead, more than the whole product for the
    few rows of a streaming step, so small N uses the blocked loop instead."""
    N = X2.shape[0]
    if N > 4:
        np.dot(X2, WT, out)
        return
    out[:, :] = 0
    for r in range(N):
        recurrent_product(out[r], X2[r], WT)


