"""Kernels that read reduced-precision recurrent weights (bfloat16, int8) directly and compute in float32.

Measured on a Zen 5 core (AVX-512, AVX512_BF16, VNNI), one step of one LSTM direction at B=1 (recurrent product
h @ RT, RT (H, 4H)), in microseconds:

              float32   bf16 widened,   int8 widened,   int8 x int8 (VNNI),   the same, one column group of 64
                        4 rows a pass   4 rows a pass   16 columns a pass     for all of K, sums in registers
    H=256     12.0      9.1             8.8             3.0                   2.6
    H=512     58.8      36.4            35.9            14.5                  12.2   (1 MiB of weights: from L3)

so int8 quantizes the activation vector of each step (symmetric, max |h| / 127, kept as u8 with zero point 128) and
multiplies it with the int8 weights in integers: vpdpbusd where the CPU has AVX512-VNNI, the same exact integer sums
in portable vector code elsewhere; each column is scaled once at the end, in registers where the gates are whole
column groups of 64. An LSTM at batch 1 projects its input inside the recurrence while W and R fit the L2
(lstm_int8_pipelined, as the float32 kernel lstm_fast.lstm_direction_pipelined). bfloat16 keeps the activations in
float32 and widens the weights in registers (a shift for the low half of a 32-bit lane, a mask for the high half).
Both run one column group of 64 at a time over all of K with the accumulators in registers (engine/ops/tiles.py),
and the input projection (all steps at once) several rows of X per pass over the weights, each row of X quantized
by itself for int8: bfloat16 four rows per pass over all the weights, int8 chunks of ROWS_CHUNK rows per column
group (int8_rows).

Packed layout (per direction; engine/ops/recurrent.py packs it, the op's module holds no Numba): a (K, G) matrix
in column groups (``recurrent.group_pack``), and for int8 its scale (G,) and neg (Gp,) int32 = -128 * column sums
(the zero point's correction), Gp = G rounded up to 64.

Gate orders are the float kernels' (LSTM i, o, f, c; GRU z, r | h).
"""
import numpy as np
from numba import njit, types
from numba.extending import overload

from ..config import JIT_OPTIONS, ZEN
from .gru_rnn import activate_all, gru_update, rnn_update
from .lstm_fast import PHASES, ahead_rows, pipeline_slice
from .numeric import F32, lstm_cell_at, max_length
from .program import PIPELINE_MIN_STEPS
from .program_kernels import fparam
from .recurrent import GRU_REDUCED as GRU_REDUCED_CODE, INT8, LSTM_REDUCED as LSTM_REDUCED_CODE
from .tiles import dual_tile, tile_product

_int8_dot1, _int8_dot4 = tile_product("int8", 1), tile_product("int8", 4)
# the same with the sums started at neg and scaled to float32 in registers, for G a multiple of 64 (whole column
# groups: nothing read or written past G). One step at batch 1 H=256 2.59 -> 2.42 us, the projection of 100 rows
# 139 -> 124 us; H=512 11.4-12.1 -> 11.1-11.8 us and 518 -> 483 us (Zen 5, one thread)
_int8_add1, _int8_set1, _int8_set4 = (tile_product("int8", 1, dequant="add"), tile_product("int8", 1, dequant="set"),
                                      tile_product("int8", 4, dequant="set"))
_bf16_dot1, _bf16_dot4 = tile_product("bf16", 1), tile_product("bf16", 4)
_int8_dual = dual_tile("int8")
# the int8 LSTM at batch 1 projects its input inside the recurrence (lstm_int8_pipelined) while W and R, int8, fit
# this many bytes together. Kernel against int8_rows then lstm_direction_reduced, T=100 one thread, one process, on
# the Zen 5 (config.ZEN): H=128 1.05x, H=256 (W and R 512 KiB) 1.06x; H=512 (2 MiB, twice the L2) 1.01x. The
# float32 kernel's schedule (lstm_fast.pipeline_slice: a block over two steps); over four steps or over one: no gain
# at H=128 and H=256
# On the Xeon (config.ZEN false), the same with int8_rows in chunks (ROWS_CHUNK), I=H: T=100 H=64 1.05-1.08x, H=128
# 0.99-1.0x, H=256 0.94-0.97x; T=1000 H=128 0.99-1.01x, H=256 0.93-0.97x: pipelined up to H=64 there
INT8_PIPELINE_MAX_BYTES = 1 << 20 if ZEN else 32 << 10
# int8_rows' chunk of rows per pass over the column groups. The Xeon, T=100 / 1000 / 7 rows, one thread, against
# four rows per pass over all the weights: K=512 G=2048 1.10x / 1.09x / 1.35x, K=256 G=1024 1.08x / 1.03x / 1.28x,
# K=128 G=512 1.03x / 1.08x / 1.13x (16 or 128 rows: within 5% of it, 128 slower at K=512 T=1000)
ROWS_CHUNK = 32


# ---------------------------------------------------------------------- products
@njit(**JIT_OPTIONS)
def _up(n, m):
    return -(-n // m) * m


@njit(**JIT_OPTIONS)
def bf16_product(g, x, Q, acc, xs, backward):
    """g (G,) += x (K,) @ W, W (K, G) bfloat16 in Q's column groups (recurrent.group_pack, pairs of k); acc (Gp,) and
    xs (Kp,) float32 scratch (Gp = G rounded up to 64, Kp = K rounded up to 2). ``backward``: the groups last to
    first, the same sums (a recurrence alternating it reads first what the step before read last: numeric.py,
    grouped_row_add)."""
    K = x.shape[0]
    G = g.shape[0]
    Gp = acc.shape[0]
    nk = xs.shape[0] // 2
    for k in range(K):
        xs[k] = x[k]
    for k in range(K, xs.shape[0]):
        xs[k] = 0
    for j in range(G):
        acc[j] = g[j]
    for j in range(G, Gp):
        acc[j] = 0
    ng = Gp // 64
    for k in range(ng):
        jg = ng - 1 - k if backward else k
        _bf16_dot1(acc, jg * 64, 0, Q, jg * nk * 256, xs, 0, 0, nk, 256)
    for j in range(G):
        g[j] = acc[j]


@njit(**JIT_OPTIONS)
def bf16_rows(X, Q, out):
    """out (N, G) <- X (N, K) @ W, W bfloat16 in Q's column groups: the input projection of every step, four rows
    of X per pass over the weights (the last N % 4 rows one at a time)."""
    N, K = X.shape
    G = out.shape[1]
    Gp = _up(G, 64)
    Kp = _up(K, 2)
    nk = Kp // 2
    xs = np.zeros(4 * Kp, dtype=out.dtype)
    acc = np.empty(4 * Gp, dtype=out.dtype)
    r0 = 0
    while r0 < N:
        n = 4 if r0 + 4 <= N else 1
        for i in range(n):
            row = xs[i * Kp:(i + 1) * Kp]
            src = X[r0 + i]
            for k in range(K):
                row[k] = src[k]
        acc[:] = 0
        for jg in range(Gp // 64):
            if n == 4:
                _bf16_dot4(acc, jg * 64, Gp, Q, jg * nk * 256, xs, 0, Kp, nk, 256)
            else:
                _bf16_dot1(acc, jg * 64, 0, Q, jg * nk * 256, xs, 0, 0, nk, 256)
        for i in range(n):
            o = out[r0 + i]
            a = acc[i * Gp:(i + 1) * Gp]
            for j in range(G):
                o[j] = a[j]
        r0 += n


@njit(**JIT_OPTIONS)
def _quantize(x, xq):
    """xq (Kp,) <- x (K,) quantized symmetric as u8 with zero point 128 (padding: 128, i.e. 0); returns the scale
    max |x| / 127, 0 when x is all zeros, -1 when x has NaN or inf (it cannot be quantized). max |x| is taken on the
    bits (an integer max vectorises; a float max that must keep NaN does not)."""
    K = x.shape[0]
    bits = x.view(np.int32)
    top = np.int32(0)
    for k in range(K):
        b = bits[k] & np.int32(0x7FFFFFFF)
        top = b if b > top else top
    if top >= np.int32(0x7F800000):
        return F32(-1.0)
    amax = np.array([top], np.int32).view(np.float32)[0]
    inv = F32(127.0) / amax if amax > 0 else F32(0.0)
    for k in range(K):
        v = np.rint(x[k] * inv)
        v = F32(127.0) if v > F32(127.0) else v
        v = F32(-127.0) if v < F32(-127.0) else v
        xq[k] = np.uint8(np.int32(v) + 128)
    for k in range(K, xq.shape[0]):
        xq[k] = np.uint8(128)
    return amax / F32(127.0)


@njit(**JIT_OPTIONS)
def int8_product(g, x, Q, scale, neg, acc, xq, backward):
    """g (G,) += x (K,) @ (W * scale), W (K, G) int8 in Q's column groups (quads of k): x quantized symmetric (max
    |x| / 127, as u8 with zero point 128 in xq (Kp,), Kp = K rounded up to 4), exact int32 sums in acc (Gp,) started
    at neg (-128 * the column sums: the zero point's share), one float scale per column. A non-finite x makes g
    NaN. ``backward``: the groups last to first, as bf16_product (at H=512, R 1 MiB: 11.8 -> 10.4-11.0 us a step
    when a recurrence alternates it). When G is whole column groups (a multiple of 64) and g float32, the sums
    stay in registers and are scaled there (_int8_add1); else they go through acc."""
    G = g.shape[0]
    Gp = acc.shape[0]
    sa = _quantize(x, xq)
    if sa < 0:
        for j in range(G):
            g[j] += np.float32(np.nan)
        return
    if sa == 0:
        return
    nk = xq.shape[0] // 4
    x4 = xq.view(np.int32)
    ng = Gp // 64
    if G == Gp and g.itemsize == 4:     # whole column groups of a float32 g: scaled in registers
        sab = acc[:1].view(np.float32)    # the row's scale, as the tile reads it (acc is not needed here)
        sab[0] = sa
        for k in range(ng):
            jg = ng - 1 - k if backward else k
            _int8_add1(g, jg * 64, 0, Q, jg * nk * 256, x4, 0, 0, nk, 256, neg, scale, sab)
        return
    for j in range(Gp):
        acc[j] = neg[j]
    for k in range(ng):
        jg = ng - 1 - k if backward else k
        _int8_dot1(acc, jg * 64, 0, Q, jg * nk * 256, x4, 0, 0, nk, 256)
    for j in range(G):
        g[j] += (sa * scale[j]) * np.float32(acc[j])


@njit(**JIT_OPTIONS)
def int8_rows(X, Q, scale, neg, out):
    """out (N, G) <- X (N, K) @ (W * scale), W int8 in Q's column groups: the input projection of every step, each
    row of X quantized by itself, a row with NaN or inf giving a NaN row. When G is whole column groups and out's
    rows float32, the sums stay in registers and are scaled there (as int8_product), and the rows go in chunks of
    ROWS_CHUNK: each column group (K x 64 weights, 32 KiB at K=512) serves all of a chunk's rows, four at a time
    (the last n % 4 one at a time), while it is in L1. Else four rows per pass over all the weights, the sums
    through acc."""
    N, K = X.shape
    G = out.shape[1]
    Gp = neg.shape[0]
    Kp = _up(K, 4)
    nk = Kp // 4
    if G == Gp and N > 0 and out.strides[1] == 4:      # whole column groups: scaled in registers
        ch = min(N, ROWS_CHUNK)
        xq = np.empty(ch * Kp, np.uint8)
        sa = np.empty(ch, np.float32)
        x4 = xq.view(np.int32)
        ostride = out.strides[0] // 4
        for c0 in range(0, N, ch):
            n = min(ch, N - c0)
            for i in range(n):
                sa[i] = _quantize(X[c0 + i], xq[i * Kp:(i + 1) * Kp])
            n4 = n // 4 * 4
            for jg in range(Gp // 64):
                for r in range(0, n4, 4):
                    _int8_set4(out[c0 + r], jg * 64, ostride, Q, jg * nk * 256, x4, r * nk, nk, nk, 256, neg,
                               scale, sa[r:r + 4])
                for r in range(n4, n):
                    _int8_set1(out[c0 + r], jg * 64, 0, Q, jg * nk * 256, x4, r * nk, 0, nk, 256, neg, scale,
                               sa[r:r + 1])
            for i in range(n):
                if sa[i] < 0:
                    out[c0 + i, :] = np.float32(np.nan)
        return
    xq = np.empty(4 * Kp, np.uint8)
    acc = np.empty(4 * Gp, np.int32)
    sa = np.empty(4, np.float32)
    x4 = xq.view(np.int32)
    r0 = 0
    while r0 < N:
        n = 4 if r0 + 4 <= N else 1
        for i in range(n):
            sa[i] = _quantize(X[r0 + i], xq[i * Kp:(i + 1) * Kp])
            a = acc[i * Gp:(i + 1) * Gp]
            for j in range(Gp):
                a[j] = neg[j]
        for jg in range(Gp // 64):
            if n == 4:
                _int8_dot4(acc, jg * 64, Gp, Q, jg * nk * 256, x4, 0, nk, nk, 256)
            else:
                _int8_dot1(acc, jg * 64, 0, Q, jg * nk * 256, x4, 0, 0, nk, 256)
        for i in range(n):
            o = out[r0 + i]
            a = acc[i * Gp:(i + 1) * Gp]
            s = sa[i]
            if s < 0:
                o[:] = np.float32(np.nan)
            else:
                for j in range(G):
                    o[j] = (s * scale[j]) * np.float32(a[j])
        r0 += n


def _recurrent_product(g, x, R, scale, rneg, acc, xq, backward):
    """g += x @ R for either encoding (bf16: acc and xq float32 scratch, scale and rneg unused); ``backward`` on
    odd steps (bf16_product)."""


def _scratch(R, G, K):
    """The scratch of _recurrent_product for R: (acc (Gp,), activations (Kp,))."""


_OVERLOAD = {"jit_options": {"fastmath": JIT_OPTIONS["fastmath"], "error_model": "numpy"}}


@overload(_recurrent_product, **_OVERLOAD)
def _recurrent_product_impl(g, x, R, scale, rneg, acc, xq, backward):
    if R.dtype == types.uint16:
        def impl(g, x, R, scale, rneg, acc, xq, backward):
            bf16_product(g, x, R, acc, xq, backward)
        return impl

    def impl_int8(g, x, R, scale, rneg, acc, xq, backward):
        int8_product(g, x, R, scale, rneg, acc, xq, backward)
    return impl_int8


@overload(_scratch, **_OVERLOAD)
def _scratch_impl(R, G, K):
    if R.dtype == types.uint16:
        def impl(R, G, K):
            return np.empty(_up(G, 64), np.float32), np.empty(_up(K, 2), np.float32)
        return impl

    def impl_int8(R, G, K):
        return np.empty(_up(G, 64), np.int32), np.empty(_up(K, 4), np.uint8)
    return impl_int8


# ---------------------------------------------------------------------- LSTM, GRU, RNN over one direction
@njit(**JIT_OPTIONS)
def lstm_direction_reduced(Y, d, xw, B, R, rscale, rneg, bias, peep, use_peep, seq, h, c, reverse, clip,
                           input_forget):
    """lstm_direction_fast (lstm_fast.py) with the recurrent product on reduced weights, every batch entry by
    itself (no BLAS): h (B, Hout) and c (B, H) in place, Y[:, d] every step's h, xw (T*B, 4H) X @ W^T."""
    H = bias.shape[0] // 4
    gates = np.empty(4 * H, dtype=h.dtype)
    acc, xq = _scratch(R, 4 * H, h.shape[1])
    maxlen = max_length(seq, B)
    for s in range(maxlen):
        for b in range(B):
            L = seq[b]
            if s >= L:
                continue
            t = L - 1 - s if reverse else s
            row = t * B + b
            for j in range(4 * H):
                gates[j] = xw[row, j] + bias[j]
            _recurrent_product(gates, h[b], R, rscale, rneg, acc, xq, s % 2 == 1)
            lstm_cell_at(gates, 0, H, c[b], h[b], Y[t, d, b], peep, use_peep, clip, input_forget)


@njit(**JIT_OPTIONS)
def int8_pipelines(B, L, In, Hout, G):
    """Whether an int8 LSTM direction projects its input inside the recurrence (lstm_int8_pipelined)."""
    return (B == 1 and L >= PIPELINE_MIN_STEPS and G % 64 == 0
            and (_up(In, 4) + _up(Hout, 4)) * G <= INT8_PIPELINE_MAX_BYTES)


@njit(**JIT_OPTIONS)
def lstm_int8_pipelined(Y, d, X2, WQ, wscale, wneg, R, rscale, rneg, bias, peep, use_peep, L, h, c, reverse, clip,
                        input_forget, xw):
    """lstm_direction_reduced with int8 weights at batch 1 (h (Hout,), c (H,) in place, L steps), the input
    projected inside the recurrence as lstm_fast.lstm_direction_pipelined does in float32: the rows of the first
    four steps and of the last L % 4 first (int8_rows), then each step's one-row product over R runs in one loop
    (tiles.dual_tile("int8")) with 1 / PHASES of K of a later block of four rows, whose exact int32 sums wait
    in acc4 until the block's last phase scales them into xw. Integer sums are exact in any order, and both
    scalings are int8_rows' and int8_product's: the results are bit for bit the unpipelined kernel's. G a multiple
    of 64 (int8_pipelines)."""
    G = bias.shape[0]
    H = G // 4
    Kw, Kr = _up(X2.shape[1], 4), _up(h.shape[0], 4)
    nkw, nkr = Kw // 4, Kr // 4
    ng = G // 64
    a0, a1, b0, b1 = ahead_rows(L, reverse)
    int8_rows(X2[a0:a1], WQ, wscale, wneg, xw[a0:a1])
    if b0 < b1:
        int8_rows(X2[b0:b1], WQ, wscale, wneg, xw[b0:b1])
    gates = np.empty(G, np.float32)
    xq4 = np.empty(4 * Kw, np.uint8)
    sa4 = np.empty(4, np.float32)
    acc4 = np.empty(4 * G, np.int32)
    hq = np.empty(Kr, np.uint8)
    acc = np.empty(G, np.int32)        # int8_product's scratch (its first element also holds the step's scale)
    x4, h4 = xq4.view(np.int32), hq.view(np.int32)
    sab = acc[:1].view(np.float32)
    for s in range(L):
        t = L - 1 - s if reverse else s
        xr = xw[t]
        for u in range(G):
            gates[u] = xr[u] + bias[u]
        back = s % 2 == 1
        lo, k0, nb, phase = pipeline_slice(s, L, reverse, nkw)     # the block's rows of X2 and xw, its slice of K
        if lo < 0:                     # every block projected: the recurrent product alone
            int8_product(gates, h, R, rscale, rneg, acc, hq, back)
        else:
            if phase == 0:
                for i in range(4):
                    sa4[i] = _quantize(X2[lo + i], xq4[i * Kw:(i + 1) * Kw])
                    a = acc4[i * G:(i + 1) * G]
                    for j in range(G):
                        a[j] = wneg[j]
            sa = _quantize(h, hq)      # 0 for a zero h: its sums are exactly 0, as int8_product's early return
            sab[0] = sa
            for k in range(ng):
                jg = ng - 1 - k if back else k
                _int8_dual(gates, jg * 64, R, jg * nkr * 256, h4, nkr, acc4, jg * 64, G, WQ, jg * nkw * 256, x4,
                           0, nkw, k0, nb, 256, rneg, rscale, sab)
            if sa < 0:                 # h has NaN or inf
                for u in range(G):
                    gates[u] = np.float32(np.nan)
            if phase == PHASES - 1:               # the block's sums into xw, scaled as int8_rows scales them:
                for i in range(4):                     # its tile with no step, the sums started at acc4's row
                    o = xw[lo + i]
                    if sa4[i] < 0:
                        o[:] = np.float32(np.nan)
                        continue
                    for jg in range(ng):
                        _int8_set1(o, jg * 64, 0, WQ, 0, x4, 0, 0, 0, 256, acc4[i * G:(i + 1) * G], wscale,
                                   sa4[i:i + 1])
        lstm_cell_at(gates, 0, H, c, h, Y[t, d, 0], peep, use_peep, clip, input_forget)


@njit(**JIT_OPTIONS)
def gru_direction_reduced(Y, d, xw, B, Rzr, zr_scale, zr_neg, Rh, h_scale, h_neg, bias, seq, h, reverse, codes,
                          alphas, betas, clip, lbr, fast):
    """gru_direction (gru_rnn.py) with both recurrent products (z, r and h) on reduced weights."""
    H = bias.shape[0] // 4
    cf, cg = codes[0], codes[1]
    af, ag = alphas[0], alphas[1]
    bf, bg = betas[0], betas[1]
    gzr = np.empty(2 * H, dtype=h.dtype)
    gh = np.empty(H, dtype=h.dtype)
    tmp = np.empty(H, dtype=h.dtype)
    acc_zr, xq = _scratch(Rzr, 2 * H, H)
    acc_h, xq_h = _scratch(Rh, H, H)
    maxlen = max_length(seq, B)
    for s in range(maxlen):
        for b in range(B):
            L = seq[b]
            if s >= L:
                continue
            t = L - 1 - s if reverse else s
            row = t * B + b
            hb = h[b]
            for j in range(2 * H):
                gzr[j] = xw[row, j] + bias[j]
            _recurrent_product(gzr, hb, Rzr, zr_scale, zr_neg, acc_zr, xq, s % 2 == 1)
            activate_all(gzr, cf, af, bf, clip, fast)
            if lbr:
                # h~ = g(x Wh + Wbh + r * (h Rh + Rbh))
                for j in range(H):
                    tmp[j] = bias[3 * H + j]
                _recurrent_product(tmp, hb, Rh, h_scale, h_neg, acc_h, xq_h, s % 2 == 1)
                for j in range(H):
                    gh[j] = xw[row, 2 * H + j] + bias[2 * H + j] + gzr[H + j] * tmp[j]
            else:
                # h~ = g(x Wh + (r * h) Rh + Rbh + Wbh)
                for j in range(H):
                    tmp[j] = gzr[H + j] * hb[j]
                for j in range(H):
                    gh[j] = xw[row, 2 * H + j] + bias[2 * H + j] + bias[3 * H + j]
                _recurrent_product(gh, tmp, Rh, h_scale, h_neg, acc_h, xq_h, s % 2 == 1)
            activate_all(gh, cg, ag, bg, clip, fast)
            gru_update(hb, gzr[:H], gh, Y[t, d, b])


@njit(**JIT_OPTIONS)
def rnn_direction_reduced(Y, d, xw, B, R, rscale, rneg, bias, seq, h, reverse, code, alpha, beta, clip, fast):
    """rnn_direction (gru_rnn.py) with the recurrent product on reduced weights."""
    H = bias.shape[0]
    g = np.empty(H, dtype=h.dtype)
    acc, xq = _scratch(R, H, H)
    maxlen = max_length(seq, B)
    for s in range(maxlen):
        for b in range(B):
            L = seq[b]
            if s >= L:
                continue
            t = L - 1 - s if reverse else s
            row = t * B + b
            hb = h[b]
            for j in range(H):
                g[j] = xw[row, j] + bias[j]
            _recurrent_product(g, hb, R, rscale, rneg, acc, xq, s % 2 == 1)
            activate_all(g, code, alpha, beta, clip, fast)
            rnn_update(hb, g, Y[t, d, b])


# ---------------------------------------------------------------------- the run function of the reduced variants
@njit(**JIT_OPTIONS)
def _groups16(wts, off, D, K, G):
    """Direction-major bfloat16 column groups of a (K, G) matrix, as uint16 (D, Kp * Gp), stored as raw bytes at
    float32 offset ``off`` of the weight buffer."""
    n = _up(K, 2) * _up(G, 64)
    return wts[off:off + D * n // 2].view(np.uint16).reshape((D, n))


@njit(**JIT_OPTIONS)
def _groups8(wts, off, D, K, G):
    n = _up(K, 4) * _up(G, 64)
    return wts[off:off + D * n // 4].view(np.int8).reshape((D, n))


def _groups(wts, off, D, K, G, like):
    """_groups8 or _groups16, by the dtype of ``like``."""


@overload(_groups, **_OVERLOAD)
def _groups_impl(wts, off, D, K, G, like):
    if like.dtype == types.uint16:
        return lambda wts, off, D, K, G, like: _groups16(wts, off, D, K, G)
    return lambda wts, off, D, K, G, like: _groups8(wts, off, D, K, G)


@njit(**JIT_OPTIONS)
def _int32s(wts, off, D, G):
    """The int32 zero-point corrections (D, Gp) at ``off``."""
    return wts[off:off + D * _up(G, 64)].view(np.int32).reshape((D, _up(G, 64)))


@njit(**JIT_OPTIONS)
def run_reduced(code, prog, q, X2, lens, h, c, Y, wts, clip, reverse, xw):
    """One reduced-weight instruction (LSTM_REDUCED, GRU_REDUCED, RNN_REDUCED), its common params already read by
    run_recurrent (recurrent_kernels.py): ``q`` is where the op's own params start (see Recurrent.own_params in
    recurrent.py): encoding, WT, its int8 scale and correction, then the op's. xw (T*B, G) is the input
    projection's buffer; ``reverse`` (D,) the directions. Unused int8 arrays are empty for bfloat16."""
    enc, o_wt, o_ws, o_wn = prog[q], prog[q + 1], prog[q + 2], prog[q + 3]
    D, B, Hout = h.shape
    In = X2.shape[1]
    G = xw.shape[1]
    if enc == INT8:
        WQ = _groups8(wts, o_wt, D, In, G)
        wscale = wts[o_ws:o_ws + D * G].reshape((D, G))
        wneg = _int32s(wts, o_wn, D, G)
        for d in range(D):
            if code == LSTM_REDUCED_CODE and int8_pipelines(B, lens[0], In, Hout, G):
                R, rscale, rneg, bias, peep, use_peep, input_forget = _lstm_params(prog, q, wts, D, Hout, G, WQ, d)
                lstm_int8_pipelined(Y, d, X2, WQ[d], wscale[d], wneg[d], R, rscale, rneg, bias, peep, use_peep,
                                    lens[0], h[d, 0], c[d, 0], reverse[d] == 1, clip, input_forget, xw)
                continue
            int8_rows(X2, WQ[d], wscale[d], wneg[d], xw)
            _reduced_direction(code, prog, q, X2, lens, h, c, Y, wts, clip, reverse, xw, d, WQ)
    else:
        WT16 = _groups16(wts, o_wt, D, In, G)
        for d in range(D):
            bf16_rows(X2, WT16[d], xw)
            _reduced_direction(code, prog, q, X2, lens, h, c, Y, wts, clip, reverse, xw, d, WT16)


@njit(**JIT_OPTIONS)
def _lstm_params(prog, q, wts, D, Hout, G, like, d):
    """Direction d's recurrent matrix (its scale and correction: empty for bfloat16), bias, peepholes and flags of
    an LSTM_REDUCED instruction."""
    H = G // 4
    o_r, o_rs, o_rn, o_bias, o_peep = prog[q + 4], prog[q + 5], prog[q + 6], prog[q + 7], prog[q + 8]
    use_peep, input_forget, Dp = prog[q + 9] != 0, prog[q + 10] != 0, prog[q + 11]
    bias = wts[o_bias:o_bias + D * G].reshape((D, G))
    peep = wts[o_peep:o_peep + Dp * 3 * H].reshape((Dp, 3 * H))
    R = _groups(wts, o_r, D, Hout, G, like)
    rscale = wts[o_rs:o_rs + D * G].reshape((D, G))
    rneg = _int32s(wts, o_rn, D, G)
    return (R[d], rscale[d % rscale.shape[0]], rneg[d % rneg.shape[0]], bias[d], peep[d % Dp], use_peep,
            input_forget)


@njit(**JIT_OPTIONS)
def _reduced_direction(code, prog, q, X2, lens, h, c, Y, wts, clip, reverse, xw, d, like):
    """Direction d of a reduced instruction, its input projection in xw; the stored matrices have the dtype of
    ``like`` (compiled once per encoding; a function passed as an argument would stop Numba caching the
    executor)."""
    D, B, Hout = h.shape
    G = xw.shape[1]
    rev = reverse[d] == 1
    if code == LSTM_REDUCED_CODE:
        R, rscale, rneg, bias, peep, use_peep, input_forget = _lstm_params(prog, q, wts, D, Hout, G, like, d)
        lstm_direction_reduced(Y, d, xw, B, R, rscale, rneg, bias, peep, use_peep, lens, h[d], c[d], rev, clip,
                               input_forget)
        return
    if code == GRU_REDUCED_CODE:
        H = G // 3
        o_rzr, o_zs, o_zn, o_rh, o_hs, o_hn, o_bias = (prog[q + 4], prog[q + 5], prog[q + 6], prog[q + 7],
                                                        prog[q + 8], prog[q + 9], prog[q + 10])
        lbr, fast = prog[q + 11] != 0, prog[q + 12] != 0
        bias = wts[o_bias:o_bias + D * 4 * H].reshape((D, 4 * H))
        Rzr = _groups(wts, o_rzr, D, H, 2 * H, like)
        Rh = _groups(wts, o_rh, D, H, H, like)
        zs = wts[o_zs:o_zs + D * 2 * H].reshape((D, 2 * H))
        hs = wts[o_hs:o_hs + D * H].reshape((D, H))
        zn = _int32s(wts, o_zn, D, 2 * H)
        hn = _int32s(wts, o_hn, D, H)
        a = q + 13 + 6 * d
        gru_direction_reduced(Y, d, xw, B, Rzr[d], zs[d], zn[d], Rh[d], hs[d], hn[d], bias[d], lens, h[d], rev,
                              prog[a:a + 2], prog[a + 2:a + 4].view(np.float64), prog[a + 4:a + 6].view(np.float64),
                              clip, lbr, fast)
        return
    # RNN
    H = G
    o_r, o_rs, o_rn, o_bias, fast = prog[q + 4], prog[q + 5], prog[q + 6], prog[q + 7], prog[q + 8] != 0
    bias = wts[o_bias:o_bias + D * H].reshape((D, H))
    R = _groups(wts, o_r, D, H, H, like)
    rscale = wts[o_rs:o_rs + D * G].reshape((D, G))
    rneg = _int32s(wts, o_rn, D, G)
    a = q + 9 + 3 * d
    rnn_direction_reduced(Y, d, xw, B, R[d], rscale[d], rneg[d], bias[d], lens, h[d], rev, prog[a],
                          fparam(prog, a + 1), fparam(prog, a + 2), clip, fast)
