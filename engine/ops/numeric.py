"""Numeric helpers shared by the kernels: float32 tanh/sigmoid approximations that vectorise, the ONNX
activations by code, the clip convention, the register-blocked recurrent product, matrix products, the hoisted input
projection.

"No clip" is ``clip = +inf`` everywhere: ``clip_value`` then leaves every finite value (and NaN) alone.
"""
import math

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import config as numba_config
from numba.extending import intrinsic

from ..config import BLAS, JIT_OPTIONS, PARALLEL, ZEN
from .activations import (AFFINE, ELU, HARD_SIGMOID, LEAKY_RELU, RELU, SCALED_TANH, SIGMOID, SOFTSIGN, TANH,
                          THRESHOLDED_RELU)
from .cell_vectors import TANH_C, TANH_P, TANH_Q, TANH_SAT, VECTORS, lstm_cell_vector
from .program import BLAS_MIN_BATCH  # noqa: F401  (re-exported)
from .tiles import tile_product, transpose16

F32 = np.float32
_CELL = lstm_cell_vector()
CELL_UNITS = 16 * VECTORS        # units per call of the vector cell
VECTOR_CELL = not numba_config.DISABLE_JIT      # plain Python (NUMBA_DISABLE_JIT=1) cannot run an intrinsic
# tanh(x) = x * P(x^2) / Q(x^2) on [-C, C], +-1 beyond (MLAS / Eigen coefficients, the vector cell's)
_C = F32(TANH_C)
_A13, _A11, _A9, _A7, _A5, _A3, _A1 = (F32(a) for a in TANH_P)
_B6, _B4, _B2, _B0 = (F32(b) for b in TANH_Q)
_SAT = F32(TANH_SAT)
_HALF = F32(0.5)
_ONE = F32(1.0)


# exp(x) in float32 (Cephes' expf): x = n ln 2 + r, |r| <= ln 2 / 2, e^r by a degree-7 polynomial, 2^n from its
# exponent bits; within 3e-7 of e^x relative (~3 float32 ulps, over [-87.3, 88.3]), and without branches, so that
# a loop of it vectorises (Numba has no vector exp)
_EXP_HI = F32(88.3762626647949)
_EXP_LO = F32(-87.3365447505531)      # 2^n stays a normal number
_LOG2E = F32(1.44269504088896341)
_LN2_HI = F32(0.693359375)
_LN2_LO = F32(-2.12194440e-4)
_P0, _P1, _P2, _P3, _P4, _P5 = (F32(1.9875691500e-4), F32(1.3981999507e-3), F32(8.3334519073e-3),
                                F32(4.1665795894e-2), F32(1.6666665459e-1), F32(5.0000001201e-1))


if numba_config.DISABLE_JIT:     # plain Python (NUMBA_DISABLE_JIT=1): intrinsics do not run there
    def _f32_from_bits(bits):
        return np.int32(bits).view(np.float32)
else:
    @intrinsic
    def _f32_from_bits(typingctx, bits):
        """The float32 whose bit pattern is the int32 ``bits``."""
        if bits != types.int32:
            return None

        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], ir.FloatType())
        return types.float32(types.int32), codegen


@njit(**JIT_OPTIONS)
def exp32(x):
    """e^x for float32 x, x clamped to [-87.3, 88.4] first (the results stay normal numbers: e^-87.3 is the smallest
    normal float32); NaN stays NaN (the clamps' comparisons are false for it)."""
    x = _EXP_HI if x > _EXP_HI else x
    x = _EXP_LO if x < _EXP_LO else x
    n = np.floor(x * _LOG2E + _HALF)
    r = x - n * _LN2_HI - n * _LN2_LO
    p = _P0 * r + _P1
    p = p * r + _P2
    p = p * r + _P3
    p = p * r + _P4
    p = p * r + _P5
    p = p * r * r + r + _ONE
    return p * _f32_from_bits(np.int32((np.int32(n) + np.int32(127)) << np.int32(23)))


@njit(**JIT_OPTIONS)
def relu(v):
    """Relu's rule, every kernel's: v above 0, NaN stays NaN, else 0 (-0.0 included)."""
    return v if (v > 0 or v != v) else 0


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
def sigmoid_all(a, clip):
    for u in range(a.shape[0]):
        a[u] = sigmoid32(clip_value(a[u], clip))


@njit(**JIT_OPTIONS)
def tanh_all(a, clip):
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
        sigmoid_all(gi, clip)
        sigmoid_all(gf, clip)
    else:
        sigmoid_all(g[:3 * chunk], clip)
    tanh_all(gc, clip)
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
        sigmoid_all(go, clip)
    for u in range(n):               # the new h, kept in i's block
        gi[u] = go[u] * tanh32(gc[u])
    for u in range(n):
        h[u] = gi[u]
    for u in range(n):
        y[u] = gi[u]


@njit(**JIT_OPTIONS)
def unit_stride(a):
    """Whether a 1-D array's elements are contiguous (what the vector cell reads from its data pointer)."""
    return a.shape[0] <= 1 or a.strides[0] == a.itemsize


@njit(**JIT_OPTIONS)
def lstm_cell_at(g, j0, n, c, h, y, peep, use_peep, clip, input_forget):
    """The LSTM cell on units [j0, j0 + n) of one row, as lstm_cell: g (4 * chunk,) the row's gates (not
    overwritten here), c, h and y (H,) the row's cell state, hidden state and output row, peep (3H,) the
    peepholes i, o, f. The kernels' one call of the cell: 32 units a call of the vector cell (cell_vectors.py; H=256
    0.42 against lstm_cell's 0.70 us on a Xeon), lstm_cell where an array is strided (no kernel passes one) and in
    plain Python."""
    H = c.shape[0]
    if VECTOR_CELL and unit_stride(g) and unit_stride(c) and unit_stride(h) and unit_stride(y) and \
            unit_stride(peep):
        chunk = g.shape[0] // 4
        for u in range(0, n, CELL_UNITS):
            _CELL(g, u, chunk, c, j0 + u, h, j0 + u, y, j0 + u, peep, j0 + u, H, use_peep, clip, input_forget,
                  min(CELL_UNITS, n - u))
        return
    lstm_cell(g, n, c[j0:j0 + n], h[j0:j0 + n], y[j0:j0 + n], peep[j0:j0 + n], peep[H + j0:H + j0 + n],
              peep[2 * H + j0:2 * H + j0 + n], use_peep, clip, input_forget)


@njit(**JIT_OPTIONS)
def lstm_cell_rows(r, B, n, c, h, Y, t, d, yb, j0, seq, s, peep, use_peep, clip, input_forget):
    """lstm_cell_at for every row b < B of r (B', 4 * chunk) still running at step s (s < seq[b]): units
    j0:j0 + n of c and h (B', H), row b; Y[t, d, yb + b]; peep (3H,). Nothing is sliced: a row's views cost ~100 ns
    (each slice two atomic reference counts), a quarter of the vector cell of 256 units."""
    rows = r.strides[1] == r.itemsize and c.strides[1] == c.itemsize and h.strides[1] == h.itemsize
    if not (VECTOR_CELL and rows and Y.strides[3] == Y.itemsize and unit_stride(peep)):
        for b in range(B):
            if s < seq[b]:
                lstm_cell_at(r[b], j0, n, c[b], h[b], Y[t, d, yb + b], peep, use_peep, clip, input_forget)
        return
    chunk = r.shape[1] // 4
    H = c.shape[1]
    rs, cs, hs = r.strides[0] // r.itemsize, c.strides[0] // c.itemsize, h.strides[0] // h.itemsize
    ysz = Y.itemsize
    yo = t * (Y.strides[0] // ysz) + d * (Y.strides[1] // ysz) + j0
    ys = Y.strides[2] // ysz
    for b in range(B):
        if s >= seq[b]:
            continue
        for u in range(0, n, CELL_UNITS):
            _CELL(r, b * rs + u, chunk, c, b * cs + j0 + u, h, b * hs + j0 + u, Y, yo + (yb + b) * ys + u, peep,
                  j0 + u, H, use_peep, clip, input_forget, min(CELL_UNITS, n - u))


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


_A_BLOCK_BYTES = 256 * 1024
# a product in column groups (grouped_add, grouped_set) whose a (M, K) is larger than the L1 (_A_L1_BYTES) while all
# of W is at most _SMALL_BLOCK_W_BYTES takes a in blocks of _SMALL_BLOCK_ROWS rows instead (_grouped_block)
_A_L1_BYTES = 32 * 1024
_SMALL_BLOCK_W_BYTES = 0 if ZEN else 1 << 20
_SMALL_BLOCK_ROWS = 12
_TILE6, _TILE5, _TILE4, _TILE3, _TILE2, _TILE1 = (tile_product("float", r) for r in (6, 5, 4, 3, 2, 1))  # 64 cols
_TILE6N, _TILE2N, _TILE1N = (tile_product("float", r, 1) for r in (6, 2, 1))    # 16 columns
_TILE6M, _TILE2M, _TILE1M = (tile_product("float", r, 1, masked=True) for r in (6, 2, 1))    # 1-15 columns
_ZERO6, _ZERO5, _ZERO4, _ZERO3, _ZERO2, _ZERO1 = (tile_product("float", r, zero=True) for r in (6, 5, 4, 3, 2, 1))


@njit(**JIT_OPTIONS)
def _row_tiles(blocks, a, W, out, j, woff, wstride, sa, so, ncols, zero, r0, r1):
    """out[r0:r1, j:j + 16 * blocks] += a[r0:r1] @ (the 16 * blocks columns of W from byte woff, rows wstride bytes
    apart; rows by offset, not by slices of a and out, which cost ~100 ns a call at a block of 12 rows), six
    rows of a per tile, the last 1-5 rows in one tile (the 16-column tiles: six, two, one); sa and so are a's and
    out's row pitches in elements. With one block, ncols < 16: its first ncols columns only (the masked tiles). One
    tile for a small batch reads W once per step (batch 3 on a 2 + 1 split: 4.0 against ~2.8 ms at T=100 H=256).
    ``zero`` (four blocks): out[...] = the product instead, its tiles never reading out."""
    K = a.shape[1]
    r = r0
    while r < r1:
        n = min(6, r1 - r)
        if blocks != 4 and n < 6:
            n = 2 if n >= 2 else 1
        at = r * so + j
        if blocks == 4 and zero:
            if n == 6:
                _ZERO6(out, at, so, W, woff, a, r * sa, sa, K, wstride)
            elif n == 5:
                _ZERO5(out, at, so, W, woff, a, r * sa, sa, K, wstride)
            elif n == 4:
                _ZERO4(out, at, so, W, woff, a, r * sa, sa, K, wstride)
            elif n == 3:
                _ZERO3(out, at, so, W, woff, a, r * sa, sa, K, wstride)
            elif n == 2:
                _ZERO2(out, at, so, W, woff, a, r * sa, sa, K, wstride)
            else:
                _ZERO1(out, at, so, W, woff, a, r * sa, sa, K, wstride)
        elif blocks == 4:
            if n == 6:
                _TILE6(out, at, so, W, woff, a, r * sa, sa, K, wstride)
            elif n == 5:
                _TILE5(out, at, so, W, woff, a, r * sa, sa, K, wstride)
            elif n == 4:
                _TILE4(out, at, so, W, woff, a, r * sa, sa, K, wstride)
            elif n == 3:
                _TILE3(out, at, so, W, woff, a, r * sa, sa, K, wstride)
            elif n == 2:
                _TILE2(out, at, so, W, woff, a, r * sa, sa, K, wstride)
            else:
                _TILE1(out, at, so, W, woff, a, r * sa, sa, K, wstride)
        elif ncols < 16:
            if n == 6:
                _TILE6M(out, at, so, W, woff, a, r * sa, sa, K, wstride, ncols)
            elif n == 2:
                _TILE2M(out, at, so, W, woff, a, r * sa, sa, K, wstride, ncols)
            else:
                _TILE1M(out, at, so, W, woff, a, r * sa, sa, K, wstride, ncols)
        elif n == 6:
            _TILE6N(out, at, so, W, woff, a, r * sa, sa, K, wstride)
        elif n == 2:
            _TILE2N(out, at, so, W, woff, a, r * sa, sa, K, wstride)
        else:
            _TILE1N(out, at, so, W, woff, a, r * sa, sa, K, wstride)
        r += n


_NARROW = {r: tile_product("float", r, 2) for r in (12, 6, 3, 1)}      # 32 columns
_NARROW_ZERO = {r: tile_product("float", r, 2, zero=True) for r in (12, 6, 3, 1)}
_TILE12W, _TILE6W, _TILE3W, _TILE1W = _NARROW[12], _NARROW[6], _NARROW[3], _NARROW[1]
_ZERO12W, _ZERO6W, _ZERO3W, _ZERO1W = (_NARROW_ZERO[12], _NARROW_ZERO[6], _NARROW_ZERO[3], _NARROW_ZERO[1])


@njit(**JIT_OPTIONS)
def _window_tile(width, n, zero, out, at, so, Q, woff, x, xo, kstride, nk):
    """One tile of _window_tiles: n rows (width 64: n <= 6; width 32: n in 12, 6, 3, 1)."""
    wstride = width * out.itemsize
    if width == 32:
        if zero:
            if n == 12:
                _ZERO12W(out, at, so, Q, woff, x, xo, kstride, nk, wstride)
            elif n == 6:
                _ZERO6W(out, at, so, Q, woff, x, xo, kstride, nk, wstride)
            elif n == 3:
                _ZERO3W(out, at, so, Q, woff, x, xo, kstride, nk, wstride)
            else:
                _ZERO1W(out, at, so, Q, woff, x, xo, kstride, nk, wstride)
        elif n == 12:
            _TILE12W(out, at, so, Q, woff, x, xo, kstride, nk, wstride)
        elif n == 6:
            _TILE6W(out, at, so, Q, woff, x, xo, kstride, nk, wstride)
        elif n == 3:
            _TILE3W(out, at, so, Q, woff, x, xo, kstride, nk, wstride)
        else:
            _TILE1W(out, at, so, Q, woff, x, xo, kstride, nk, wstride)
    elif zero:
        if n == 6:
            _ZERO6(out, at, so, Q, woff, x, xo, kstride, nk, wstride)
        elif n == 5:
            _ZERO5(out, at, so, Q, woff, x, xo, kstride, nk, wstride)
        elif n == 4:
            _ZERO4(out, at, so, Q, woff, x, xo, kstride, nk, wstride)
        elif n == 3:
            _ZERO3(out, at, so, Q, woff, x, xo, kstride, nk, wstride)
        elif n == 2:
            _ZERO2(out, at, so, Q, woff, x, xo, kstride, nk, wstride)
        else:
            _ZERO1(out, at, so, Q, woff, x, xo, kstride, nk, wstride)
    elif n == 6:
        _TILE6(out, at, so, Q, woff, x, xo, kstride, nk, wstride)
    elif n == 5:
        _TILE5(out, at, so, Q, woff, x, xo, kstride, nk, wstride)
    elif n == 4:
        _TILE4(out, at, so, Q, woff, x, xo, kstride, nk, wstride)
    elif n == 3:
        _TILE3(out, at, so, Q, woff, x, xo, kstride, nk, wstride)
    elif n == 2:
        _TILE2(out, at, so, Q, woff, x, xo, kstride, nk, wstride)
    else:
        _TILE1(out, at, so, Q, woff, x, xo, kstride, nk, wstride)


@njit(**JIT_OPTIONS)
def _window_tiles(width, n, zero, out, at, so, Q, woff, x, xo, kstride, nk):
    """out[at + r so + c] (+)= sum over kk < nk of x[xo + r kstride + kk] . Q's row kk of ``width`` (64 or 32)
    columns from byte woff (rows ``width`` floats apart), for the rows r < n: a convolution's output pixels (rows of
    x kstride apart, which may overlap) against one column group of its weights; ``zero``: = instead of +=. Tiles of
    6 rows x 64 columns, or 12 x 32 (the same 24 sums in registers, for 32 or fewer output channels)."""
    step = 6 if width == 64 else 12
    r = 0
    while r < n:
        m = min(step, n - r)
        if width == 32 and m < 12:
            m = 6 if m >= 6 else 3 if m >= 3 else 1
        _window_tile(width, m, zero, out, at + r * so, so, Q, woff, x, xo + r * kstride, kstride, nk)
        r += m


@njit(**JIT_OPTIONS)
def _row_block(K, isz):
    """Rows of a per block: ~256 KiB of a, which stays in L2 while every column group passes over it (a projection
    of 6400 rows: ~100 against ~85 GFLOP/s unblocked); a multiple of six, the tiles' height."""
    return max(48, (_A_BLOCK_BYTES // max(1, K * isz)) // 6 * 6)


@njit(**JIT_OPTIONS)
def _grouped_block(M, K, N, isz):
    """Rows of a per block for a product in column groups (_grouped_tiles): _row_block's ~256 KiB, or, while all of
    W (K x N) fits half the L2 and a does not fit the L1, two tiles of rows, whose block of a stays in the L1 while
    W streams from the L2 (rather than a's rows from the L2 into every tile). The Xeon (2 MiB of L2), one thread, an
    LSTM's projection of 3200 rows (T=100 B=32), W 64-byte aligned as the plan's (2026-11-28): grouped_set itself
    at I=H=256 (W 1 MiB) 10.3-11.5 -> 9.4-10.5 ms; a prototype of this loop (adding tiles), blocks of 12 rows
    against ~256 KiB: I=H=256 10.2 -> 8.5-9.2 ms (blocks of 18 rows 8.6-9.2, 24 8.9-9.3, 36 9.5), I=128 H=256
    5.6-5.8 -> 5.0-5.2, I=64 H=256 2.6-2.7 -> 2.4-2.5, I=256 H=128 5.0-5.2 -> 4.9-5.0, I=H=192 even; W of 2.25 MiB
    (I=H=384) 23.5 against 29.4 ms: W then streams from the L3 for every block. Not on AMD Zen (1 MiB of L2), where
    it was not measured."""
    if M * K * isz > _A_L1_BYTES and K * N * isz <= _SMALL_BLOCK_W_BYTES:
        return _SMALL_BLOCK_ROWS
    return _row_block(K, isz)


@njit(**JIT_OPTIONS)
def _product_block(M, K, N, isz):
    """Rows of a per block in product_add: _row_block's ~256 KiB of a, which every 64 columns of b then pass over
    (a projection of many rows through small weights), while b is at most as wide as a is tall; a wider b (a
    convolution: its weights (M, kh Cg kw) times im2col's (kh Cg kw, Ho Wo)) would stream from the L3 once per
    block, so all rows in one block. The Xeon, one thread, 64-byte aligned arrays, the product alone (2026-11-28;
    (M, K) @ (K, N), GFLOP/s): 256 x 2304 @ 2304 x 400 133-136 -> 155-171, 256 x 1152 @ 1152 x 800 141-142 ->
    158-160, 128 x 576 @ 576 x 3200 137-144 -> 147-159, 128 x 1152 @ 1152 x 3200 125 -> 121-131; a whole
    convolution (im2col, the banded products, bias and Relu), 128 -> 256 channels over 8 x 100, 3.92-3.94 -> 3.65-3.70
    ms, 64 -> 128 over 16 x 200 and 256 -> 256 over 4 x 100 even."""
    if N > M:
        return max(M, 1)
    return _row_block(K, isz)


@njit(**JIT_OPTIONS)
def _tiled_product_add(a, b, out):
    M, K = a.shape
    N = b.shape[1]
    isz = out.itemsize
    sa, so, sb = a.strides[0] // isz, out.strides[0] // isz, b.strides[0]     # b's in bytes
    MB = _product_block(M, K, N, isz)
    for r0 in range(0, M, MB):
        r1 = min(M, r0 + MB)
        j = 0
        while j + 64 <= N:
            _row_tiles(4, a, b, out, j, j * isz, sb, sa, so, 64, False, r0, r1)
            j += 64
        while j + 16 <= N:
            _row_tiles(1, a, b, out, j, j * isz, sb, sa, so, 16, False, r0, r1)
            j += 16
        if j < N:
            _row_tiles(1, a, b, out, j, j * isz, sb, sa, so, N - j, False, r0, r1)


@njit(**JIT_OPTIONS)
def _grouped_tiles(a, Q, out, backward, zero):
    M, K = a.shape
    isz = out.itemsize
    sa, so = a.strides[0] // isz, out.strides[0] // isz
    gbytes = K * 64 * isz
    n = Q.shape[0]
    MB = _grouped_block(M, K, n * 64, isz)
    for r0 in range(0, M, MB):
        r1 = min(M, r0 + MB)
        for k in range(n):
            jg = n - 1 - k if backward else k
            _row_tiles(4, a, Q, out, jg * 64, jg * gbytes, 64 * isz, sa, so, 64, zero, r0, r1)


@njit(**JIT_OPTIONS)
def _tiled_grouped_add(a, Q, out, backward):
    _grouped_tiles(a, Q, out, backward, False)


@njit(**JIT_OPTIONS)
def _tiled_grouped_set(a, Q, out):
    _grouped_tiles(a, Q, out, np.bool_(False), True)


@njit(**JIT_OPTIONS)
def _tiled_grouped_row_add(g, x, Q, backward):
    K = x.shape[0]
    gbytes = K * 64 * g.itemsize
    n = Q.shape[0]
    for k in range(n):
        jg = n - 1 - k if backward else k
        _TILE1(g, jg * 64, 0, Q, jg * gbytes, x, 0, 0, K, 64 * g.itemsize)


@njit(**JIT_OPTIONS)
def _tiled_grouped_step(g, x, WT, b, h, RT, backward):
    I, H = x.shape[0], h.shape[0]
    isz = g.itemsize
    n = RT.shape[0]
    for k in range(n):
        jg = n - 1 - k if backward else k
        j = jg * 64
        _ZERO1(g, j, 0, WT, jg * I * 64 * isz, x, 0, 0, I, 64 * isz)
        for u in range(j, j + 64):
            g[u] += b[u]
        _TILE1(g, j, 0, RT, jg * H * 64 * isz, h, 0, 0, H, 64 * isz)


def _plain(Q):
    """Q (N // 64, K, 64) column groups -> the (K, N) matrix they hold (plain Python)."""
    return Q.transpose(1, 0, 2).reshape(Q.shape[1], -1)


if numba_config.DISABLE_JIT:     # plain Python (NUMBA_DISABLE_JIT=1, for debugging): intrinsics do not run there
    def transpose_block(src, soff, sstride, dst, doff, dstride):
        for r in range(16):
            dst[doff + r:doff + r + 16 * dstride:dstride] = src[soff + r * sstride:soff + r * sstride + 16]

    def window_tiles(width, n, zero, out, at, so, Q, woff, x, xo, kstride, nk):
        w = Q[woff // out.itemsize:woff // out.itemsize + nk * width].reshape(nk, width)
        for r in range(n):
            v = x[xo + r * kstride:xo + r * kstride + nk] @ w
            o = out[at + r * so:at + r * so + width]
            o[:] = v if zero else o + v

    def product_add(a, b, out):
        out += a @ b

    def grouped_add(a, Q, out, backward):
        out += a @ _plain(Q)

    def grouped_row_add(g, x, Q, backward):
        g += x @ _plain(Q)

    def grouped_set(a, Q, out):
        out[:, :] = a @ _plain(Q)

    def grouped_step(g, x, WT, b, h, RT, backward):
        g[:] = x @ _plain(WT) + b
        g += h @ _plain(RT)
else:
    transpose_block = transpose16
    window_tiles = _window_tiles
    product_add = _tiled_product_add
    grouped_add = _tiled_grouped_add
    grouped_row_add = _tiled_grouped_row_add
    grouped_set = _tiled_grouped_set
    grouped_step = _tiled_grouped_step
# transpose_block: dst[doff + c dstride + r] = src[soff + r sstride + c] for r, c < 16 (tiles.transpose16)
# product_add: out (M, N) += a (M, K) @ b (K, N), register tiles (engine/ops/tiles.py) over b as it is stored, 64
#   columns at a time (then 16, then the last 1-15 in masked tiles), each tile over all of K; rows may be strided,
#   their elements must be contiguous (``contiguous_rows``).
# grouped_add: out (M, N) += a (M, K) @ W, W (K, N) in column groups Q (N // 64, K, 64) (recurrent.pack_parts,
#   grouped): each tile streams one group's contiguous block, which no cache-set aliasing or page walk slows (W as
#   stored, rows 4 KiB apart: ~8% slower at an LSTM's recurrent product). ``backward``: the groups last to first,
#   as grouped_row_add's (two rows at H=256: 12.9 -> 11.4 us a step alternating; three 14.8 -> 14.4; from eight,
#   or with x @ W in the same step, no gain).
# grouped_set: out (M, N) <- a (M, K) @ W in column groups, as grouped_add into zeros (the same sums), with no pass
#   to clear out and no read of it (zero-start tiles): an LSTM's hoisted projection, T*B rows
# grouped_row_add: g (N,) += x (K,) @ W in column groups: one row, as a batch-1 step's recurrence (two streams of
#   sums over the two halves of K); ``backward`` takes the groups last to first, the same sums. A recurrence that
#   alternates the direction every step starts each step on the groups the step before read last, still in the
#   cache: at H=256 (R 1 MiB, the L2's size) 11.5 -> 10.3 us a step, at H=64 (64 KiB, L1 48 KiB) 0.58 -> 0.48;
#   at 256 KiB and 4 MiB no change.
# grouped_step: g (G,) <- x (I,) @ W + b + h (H,) @ R, W and R in column groups (WT (G // 64, I, 64), RT (G // 64, H,
#   64)): a batch-1 step's gates in the sums of grouped_row_add into zeros, plus b, plus grouped_row_add, group by
#   group (a column's sums read only its own group's W and R). A group's W and R are read one after the other, and
#   ``backward`` takes the groups last to first: a step that alternates starts on the W and R the step before read
#   last, where reading all of W, then all of R, starts on W, which R has evicted from the L2. The sums are the
#   general path's in its order (x @ W from 0 as grouped_product, plus the bias, plus h @ R), so that a stream's
#   step (lstm_direction_one, a thread's part in _part_step) is bit for bit a one-step run's, either way round. The
#   Xeon (2 MiB L2), one thread, the products alone (H=I): H=512 (8 MiB) 294 -> 240 us, 384 167 -> 114, 256 32.4
#   -> 22.4; with the cell H=512 311 -> 252 us, H=256 29.0 -> 24.1, H=128 4.0 -> 4.1 (before, all of W then all of
#   R, alternating against not: H=256 33.4 -> 26.9 us a step, H=320 106.7 -> 87.3, H=128 3.7 -> 3.6).


@njit(**JIT_OPTIONS)
def grouped_product(a, Q, out):
    """out (M, N) <- a (M, K) @ W, W in column groups Q (N // 64, K, 64) (``grouped_add``). One row (a stream's
    step) as grouped_row_add: H=128, 2.70 -> 2.39 us."""
    if a.shape[0] == 1:
        o = out[0]
        o[:] = 0
        grouped_row_add(o, a[0], Q, np.bool_(False))
        return
    grouped_set(a, Q, out)


@njit(**JIT_OPTIONS)
def contiguous_rows(a):
    """Whether a 2-D array's elements are contiguous within each row (its rows may be strided)."""
    return a.shape[1] <= 1 or a.strides[1] == a.itemsize


@njit(**JIT_OPTIONS)
def _loop_product(a, b, out):
    out[:, :] = 0
    for r in range(a.shape[0]):
        recurrent_product(out[r], a[r], b)


if BLAS:
    @njit(**JIT_OPTIONS)
    def matmul(a, b, out):
        """out (M, N) <- a (M, K) @ b (K, N): float32 by register tiles (product_add: ~1.6x one-thread OpenBLAS
        0.3.30 on Zen 5 at an LSTM's shapes, and independent of the kernel OpenBLAS picks) unless the masked tile of
        the last N % 16 columns would waste more than an eighth of the work (its 16 lanes cost the same for any
        width): one thread, 64 x 576 @ 576 x N (a convolution's output positions) tiles against OpenBLAS 0.3.30,
        N = 148 105 against 84 GFLOP/s, 100 100 against 83, 37 82 against 69; 37 x 128 @ 128 x N (a linear layer
        after an LSTM) N = 100 97 against 109, 37 84 against 105; N = 8 55 against 102, 20 68 against 107. float64,
        those widths and arrays whose rows are not contiguous by the BLAS (SciPy's OpenBLAS, which Numba's np.dot
        calls)."""
        N = out.shape[1]
        if (out.itemsize == 4 and (16 - N % 16) % 16 * 8 <= N and contiguous_rows(a) and contiguous_rows(b)
                and contiguous_rows(out)):
            out[:, :] = 0
            product_add(a, b, out)
        else:
            np.dot(a, b, out)
else:
    @njit(**JIT_OPTIONS)
    def matmul(a, b, out):
        """out (M, N) <- a (M, K) @ b (K, N) without BLAS: an ahead-of-time runtime built with --no-blas, for a
        device without SciPy (engine/aot.py)."""
        if contiguous_rows(a) and contiguous_rows(b) and contiguous_rows(out):
            out[:, :] = 0
            product_add(a, b, out)
        else:
            _loop_product(a, b, out)


if BLAS:
    @njit(**JIT_OPTIONS)
    def product(a, b, out, threads):
        """out (M, N) <- a (M, K) @ b (K, N) for an instruction whose plan allows ``threads`` threads
        (prog[THREADS_AT]): the BLAS on them (Session sets its thread count) when there are several, else ``matmul``.
        Kernels that run on threads of their own call ``matmul``."""
        if threads > 1:
            np.dot(a, b, out)
        else:
            matmul(a, b, out)
else:
    @njit(**JIT_OPTIONS)
    def product(a, b, out, threads):
        """out (M, N) <- a (M, K) @ b (K, N): one thread without BLAS."""
        matmul(a, b, out)


@njit(parallel=PARALLEL, **JIT_OPTIONS)
def matmul_rows_parallel(a, b, out, parts):
    """out (R, N) <- a (R, K) @ b (K, N), float32, the rows split into ``parts`` on Numba's threads, each part on
    the register tiles (product_add) at any width: a product in a plan whose BLAS keeps to one thread
    (layers.matmul_parts). Never the BLAS from these threads: two OpenBLAS calls at once, its pool not limited to
    one thread, took 9.6 ms for a 60 us product."""
    R = a.shape[0]
    for t in prange(parts):
        r0, r1 = t * R // parts, (t + 1) * R // parts
        part = out[r0:r1]
        part[:, :] = 0
        product_add(a[r0:r1], b, part)


@njit(parallel=PARALLEL, **JIT_OPTIONS)
def grouped_rows_parallel(a, Q, out, parts):
    """out (R, N) <- a (R, K) @ W, W in column groups Q (N // 64, K, 64) (grouped_product), the rows split into
    ``parts`` on Numba's threads: the one-part GRU's hoisted input projection in a plan of several threads
    (Recurrent.proj_parts)."""
    R = a.shape[0]
    for t in prange(parts):
        r0, r1 = t * R // parts, (t + 1) * R // parts
        grouped_product(a[r0:r1], Q, out[r0:r1])


@njit(**JIT_OPTIONS)
def input_projection(X2, WT, out, threads, parts):
    """out (N, G) <- X2 (N, I) @ WT (I, G): its rows split into ``parts`` on Numba's threads when there are several
    (matmul_rows_parallel; the recurrent instruction's P_PROJ_PARTS), else on ``threads`` threads (``product``:
    the plan's BLAS threads). A product call costs ~1 us of overhead, more than the whole product for the few rows
    of a streaming step, so small N uses the blocked loop instead."""
    N = X2.shape[0]
    if N > 4:
        if parts > 1:
            matmul_rows_parallel(X2, WT, out, parts)
        else:
            product(X2, WT, out, threads)
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
