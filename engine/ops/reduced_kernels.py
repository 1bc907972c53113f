"""Kernels that read reduced-precision recurrent weights (bfloat16, int8) directly and compute in float32.

Chosen by measurement on a Zen 5 core (AVX-512, AVX512_BF16, VNNI), per step of one LSTM direction at B=1
(recurrent product h @ RT, RT (H, 4H)):

              float32   bf16 (widened in registers)   int8 widened in registers   int8 x int8 (VNNI)
    H=256     12.0 us   9.1 us                        8.8 us                      3.0 us
    H=512     58.8 us   36.4 us                       35.9 us                     34.3 us (bound by L3: 1 MiB)

so bfloat16 is widened in registers (a 16-bit left shift: the loops vectorise), and int8 quantizes the activation
vector of each step (symmetric, max |h| / 127, kept as u8 with zero point 128) and multiplies it with the int8
weights in integers (vpdpbusd where the CPU has AVX512-VNNI; the same exact integer sums in portable vector code
elsewhere), then scales each column once. The input projection (all steps at once, outside the recurrence): int8
the same way, each input row quantized by itself, four rows per pass over the weights; bfloat16 widens the weights
256 columns at a time into a float32 buffer for one BLAS product per block.

Packed layouts (per direction; engine/ops/recurrent.py packs them, the op's module holds no Numba):

    bfloat16   WT (I, G) uint16;  RT (K, G) uint16                       (G = gates * H, K = Hout)
    int8       WT and RT each in VNNI blocks (recurrent.vnni_pack), with its scale (G,) and neg (Gp,) int32 =
               -128 * column sums (the zero point's correction), Gp = G rounded up to 16

Gate orders are the float kernels' (LSTM i, o, f, c; GRU z, r | h).
"""
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

from ..config import AOT_BUILD, JIT_OPTIONS
from .numeric import F32, _ONE, activate, clip_value, matmul, max_length, sigmoid32, tanh32
from .program_kernels import fparam
from .recurrent import GRU_REDUCED as GRU_REDUCED_CODE, INT8, LSTM_REDUCED as LSTM_REDUCED_CODE

try:                                            # the integer dot product in one instruction, where the CPU has it
    import llvmlite.binding as _llb
    from numba.core import config as _numba_config
    VNNI = (not AOT_BUILD and _numba_config.CPU_NAME is None
            and bool(_llb.get_host_cpu_features().get("avx512vnni", False)))
except Exception:                               # noqa: BLE001  (any doubt: the portable code)
    VNNI = False

_I32x16 = ir.VectorType(ir.IntType(32), 16)


@intrinsic
def widen(typingctx, x):
    """A stored weight as float32: bfloat16 bits (uint16) shifted into the upper half of a float32, or int8
    converted. Inlined, so that loops over arrays of either vectorise."""
    if x == types.uint16:
        def codegen(context, builder, sig, args):
            v = builder.shl(builder.zext(args[0], ir.IntType(32)), ir.Constant(ir.IntType(32), 16))
            return builder.bitcast(v, ir.FloatType())
        return types.float32(x), codegen
    if x == types.int8:
        def codegen(context, builder, sig, args):
            return builder.sitofp(args[0], ir.FloatType())
        return types.float32(x), codegen
    return None


@intrinsic
def _dot4x16(typingctx, acc, j, Q, off, x0, x1, x2, x3):
    """acc[j:j+16] (int32) += for q in 0..3, lane c: sum over e of u8 byte e of x_q * s8 Q[off + 64q + 4c + e]:
    four rows of four int8 weights per column, against four quads of u8 activations (x_q: 4 bytes in an int32)."""
    sig = types.void(acc, j, Q, off, x0, x1, x2, x3)

    def codegen(context, builder, sig, args):
        i32, i64 = ir.IntType(32), ir.IntType(64)
        acc_a = context.make_array(sig.args[0])(context, builder, args[0])
        q_a = context.make_array(sig.args[2])(context, builder, args[2])
        pa = builder.bitcast(builder.gep(acc_a.data, [args[1]]), _I32x16.as_pointer())
        a = builder.load(pa, align=4)
        base = builder.add(builder.ptrtoint(q_a.data, i64), args[3])
        if VNNI:
            dp = builder.module.declare_intrinsic("llvm.x86.avx512.vpdpbusd.512",
                                                  fnty=ir.FunctionType(_I32x16, [_I32x16, _I32x16, _I32x16]))
        for q, x in enumerate(args[4:]):
            w = builder.load(builder.inttoptr(builder.add(base, ir.Constant(i64, 64 * q)), _I32x16.as_pointer()),
                             align=1)
            xs = builder.insert_element(ir.Constant(_I32x16, ir.Undefined), x, ir.Constant(i32, 0))
            xs = builder.shuffle_vector(xs, ir.Constant(_I32x16, ir.Undefined), ir.Constant(_I32x16, [0] * 16))
            if VNNI:
                a = builder.call(dp, [a, xs, w])
                continue
            v64 = ir.VectorType(ir.IntType(8), 64)
            w32 = builder.sext(builder.bitcast(w, v64), ir.VectorType(i32, 64))
            x32 = builder.zext(builder.bitcast(xs, v64), ir.VectorType(i32, 64))
            prod = builder.mul(w32, x32)
            for e in range(4):
                part = builder.shuffle_vector(prod, ir.Constant(ir.VectorType(i32, 64), ir.Undefined),
                                              ir.Constant(_I32x16, [4 * c + e for c in range(16)]))
                a = builder.add(a, part)
        builder.store(a, pa, align=4)
        return context.get_dummy_value()
    return sig, codegen


@intrinsic
def _dot4x16x4(typingctx, acc, j, stride, Q, off, x4, xo, kq):
    """_dot4x16 for four rows at once, each 256-byte block of Q loaded once: acc[i * stride + j : ... + 16] (int32)
    += the block against row i's four activation quads x4[xo + i * kq : ... + 4] (int32, 4 u8 each)."""
    sig = types.void(acc, j, stride, Q, off, x4, xo, kq)

    def codegen(context, builder, sig, args):
        i32, i64 = ir.IntType(32), ir.IntType(64)
        acc_a = context.make_array(sig.args[0])(context, builder, args[0])
        q_a = context.make_array(sig.args[3])(context, builder, args[3])
        x_a = context.make_array(sig.args[5])(context, builder, args[5])
        j, stride, xo, kq = args[1], args[2], args[6], args[7]
        ptrs = [builder.bitcast(builder.gep(acc_a.data, [builder.add(builder.mul(ir.Constant(i64, i), stride), j)]),
                                _I32x16.as_pointer()) for i in range(4)]
        accs = [builder.load(pt, align=4) for pt in ptrs]
        base = builder.add(builder.ptrtoint(q_a.data, i64), args[4])
        if VNNI:
            dp = builder.module.declare_intrinsic("llvm.x86.avx512.vpdpbusd.512",
                                                  fnty=ir.FunctionType(_I32x16, [_I32x16, _I32x16, _I32x16]))
        v64 = ir.VectorType(ir.IntType(8), 64)
        for q in range(4):
            w = builder.load(builder.inttoptr(builder.add(base, ir.Constant(i64, 64 * q)), _I32x16.as_pointer()),
                             align=1)
            w32 = None if VNNI else builder.sext(builder.bitcast(w, v64), ir.VectorType(i32, 64))
            for i in range(4):
                at = builder.add(builder.add(xo, builder.mul(ir.Constant(i64, i), kq)), ir.Constant(i64, q))
                x = builder.load(builder.gep(x_a.data, [at]))
                xs = builder.insert_element(ir.Constant(_I32x16, ir.Undefined), x, ir.Constant(i32, 0))
                xs = builder.shuffle_vector(xs, ir.Constant(_I32x16, ir.Undefined), ir.Constant(_I32x16, [0] * 16))
                if VNNI:
                    accs[i] = builder.call(dp, [accs[i], xs, w])
                    continue
                prod = builder.mul(w32, builder.zext(builder.bitcast(xs, v64), ir.VectorType(i32, 64)))
                for e in range(4):
                    part = builder.shuffle_vector(prod, ir.Constant(ir.VectorType(i32, 64), ir.Undefined),
                                                  ir.Constant(_I32x16, [4 * c + e for c in range(16)]))
                    accs[i] = builder.add(accs[i], part)
        for a, pt in zip(accs, ptrs):
            builder.store(a, pt, align=4)
        return context.get_dummy_value()
    return sig, codegen


# ---------------------------------------------------------------------- products
@njit(**JIT_OPTIONS)
def widened_product(g, x, RT):
    """g (G,) += x (K,) @ RT (K, G) widened to float32 (bfloat16 bits, or int8 without its scale), four rows of RT
    per pass over g."""
    K, G = RT.shape
    k = 0
    while k + 4 <= K:
        x0, x1, x2, x3 = x[k], x[k + 1], x[k + 2], x[k + 3]
        for j in range(G):
            g[j] += x0 * widen(RT[k, j]) + x1 * widen(RT[k + 1, j]) + x2 * widen(RT[k + 2, j]) + \
                x3 * widen(RT[k + 3, j])
        k += 4
    while k < K:
        xk = x[k]
        for j in range(G):
            g[j] += xk * widen(RT[k, j])
        k += 1


@njit(**JIT_OPTIONS)
def _quantize(x, xq):
    """xq (Kp,) <- x (K,) quantized symmetric as u8 with zero point 128 (padding: 128, i.e. 0); returns the scale
    max |x| / 127, 0 when x is all zeros, -1 when x has NaN or inf (it cannot be quantized)."""
    K = x.shape[0]
    amax = F32(0.0)
    bad = False
    for k in range(K):
        a = abs(x[k])
        bad = bad or not (a <= F32(3.0e38))
        amax = a if a > amax else amax
    if bad:
        return F32(-1.0)
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
def _int8_sums(acc, xq, Q, neg):
    """acc (Gp,) int32 <- neg + xq (Kp,) u8 . Q (the VNNI blocks of (Kp, Gp) int8): exact."""
    Gp = acc.shape[0]
    for j in range(Gp):
        acc[j] = neg[j]
    x4 = xq.view(np.int32)
    nb = Gp // 16
    for m in range(xq.shape[0] // 16):
        x0, x1, x2, x3 = x4[4 * m], x4[4 * m + 1], x4[4 * m + 2], x4[4 * m + 3]
        base = m * nb * 256
        for jb in range(nb):
            _dot4x16(acc, jb * 16, Q, base + jb * 256, x0, x1, x2, x3)


@njit(**JIT_OPTIONS)
def int8_product(g, x, RQ, scale, rneg, acc, xq):
    """g (G,) += x (K,) @ (RT * scale), RT int8 in RQ's VNNI blocks: x quantized symmetric (max |x| / 127, as u8
    with zero point 128 in xq (Kp,)), exact int32 sums in acc (Gp,) started at rneg (the zero point's share), one
    float scale per column. A non-finite x makes g NaN."""
    G = g.shape[0]
    sa = _quantize(x, xq)
    if sa < 0:
        for j in range(G):
            g[j] += np.float32(np.nan)
        return
    if sa == 0:
        return
    _int8_sums(acc, xq, RQ, rneg)
    for j in range(G):
        g[j] += (sa * scale[j]) * np.float32(acc[j])


@njit(**JIT_OPTIONS)
def int8_rows(X, WQ, scale, wneg, out):
    """out (N, G) <- X (N, I) @ (WT * scale), WT int8 in WQ's VNNI blocks: the input projection of every step, each
    row of X quantized by itself, four rows per pass over the weights (each 256-byte block read once for four)."""
    N, K = X.shape
    G = out.shape[1]
    Gp = wneg.shape[0]
    Kp = -(-K // 16) * 16
    kq = Kp // 4
    xq = np.empty(4 * Kp, np.uint8)
    acc = np.empty(4 * Gp, np.int32)
    sa = np.empty(4, np.float32)
    nb = Gp // 16
    for r0 in range(0, N, 4):
        n = min(4, N - r0)
        for i in range(4):
            if i < n:
                sa[i] = _quantize(X[r0 + i], xq[i * Kp:(i + 1) * Kp])
            else:
                xq[i * Kp:(i + 1) * Kp] = 128        # a row of zeros past the end
            a = acc[i * Gp:(i + 1) * Gp]
            for j in range(Gp):
                a[j] = wneg[j]
        x4 = xq.view(np.int32)
        for m in range(Kp // 16):
            base = m * nb * 256
            for jb in range(nb):
                _dot4x16x4(acc, jb * 16, Gp, WQ, base + jb * 256, x4, 4 * m, kq)
        for i in range(n):
            o = out[r0 + i]
            a = acc[i * Gp:(i + 1) * Gp]
            s = sa[i]
            if s < 0:
                o[:] = np.float32(np.nan)
            else:
                for j in range(G):
                    o[j] = (s * scale[j]) * np.float32(a[j])


def _recurrent_product(g, x, R, scale, rneg, acc, xq):
    """g += x @ R for either encoding (bf16: R (K, G) uint16, the rest unused; int8: R the VNNI blocks)."""


@overload(_recurrent_product, jit_options={"fastmath": JIT_OPTIONS["fastmath"], "error_model": "numpy"})
def _recurrent_product_impl(g, x, R, scale, rneg, acc, xq):
    if R.dtype == types.uint16:
        def impl(g, x, R, scale, rneg, acc, xq):
            widened_product(g, x, R)
        return impl

    def impl_int8(g, x, R, scale, rneg, acc, xq):
        int8_product(g, x, R, scale, rneg, acc, xq)
    return impl_int8


@njit(**JIT_OPTIONS)
def bf16_rows(X, WT, out):
    """out (N, G) <- X (N, I) @ WT (I, G) bfloat16 widened to float32: the input projection of every step. A few rows (a streaming step): one widened product per row. More: WT widened one block
    of 256 columns at a time into a float32 buffer and multiplied by BLAS (a loop over the stored weights runs at a
    tenth of its speed at T=100), so the extra memory is I x 256 floats and N x 256 for the product."""
    N, K = X.shape
    G = WT.shape[1]
    if N <= 4:
        for r in range(N):
            o = out[r]
            o[:] = 0
            widened_product(o, X[r], WT)
    else:
        for j0 in range(0, G, 256):
            n = min(256, G - j0)
            tmp = np.empty((K, n), dtype=out.dtype)
            for k in range(K):
                w = WT[k, j0:j0 + n]          # views indexed from 0: an offset index does not vectorise
                t = tmp[k]
                for j in range(n):
                    t[j] = widen(w[j])
            part = np.empty((N, n), dtype=out.dtype)
            matmul(X, tmp, part)
            for r in range(N):
                o = out[r, j0:j0 + n]
                pr = part[r]
                for j in range(n):
                    o[j] = pr[j]


@njit(**JIT_OPTIONS)
def _scratch(rneg, K):
    """The int8 product's int32 sums (Gp,) and quantized activations (Kp,); empty for bfloat16 (rneg empty)."""
    if rneg.shape[0] > 0:
        return np.empty(rneg.shape[0], np.int32), np.empty(-(-K // 16) * 16, np.uint8)
    return np.empty(0, np.int32), np.empty(0, np.uint8)


# ---------------------------------------------------------------------- LSTM, GRU, RNN over one direction
@njit(**JIT_OPTIONS)
def lstm_direction_reduced(Y, d, xw, B, R, rscale, rneg, bias, peep, use_peep, seq, h, c, reverse, clip,
                           input_forget):
    """lstm_direction_fast (lstm_fast.py) with the recurrent product on reduced weights, every batch entry by
    itself (no BLAS): h (B, Hout) and c (B, H) in place, Y[:, d] every step's h, xw (T*B, 4H) X @ W^T."""
    H = bias.shape[0] // 4
    gates = np.empty(4 * H, dtype=h.dtype)
    acc, xq = _scratch(rneg, h.shape[1])
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
            _recurrent_product(gates, h[b], R, rscale, rneg, acc, xq)
            hb = h[b]
            cb = c[b]
            yrow = Y[t, d, b]
            if use_peep:
                for j in range(H):
                    cp = cb[j]
                    i = sigmoid32(clip_value(gates[j] + peep[j] * cp, clip))
                    f = sigmoid32(clip_value(gates[2 * H + j] + peep[2 * H + j] * cp, clip))
                    f = (_ONE - i) if input_forget else f
                    g = tanh32(clip_value(gates[3 * H + j], clip))
                    cn = f * cp + i * g
                    o = sigmoid32(clip_value(gates[H + j] + peep[H + j] * cn, clip))
                    cb[j] = cn
                    hb[j] = o * tanh32(cn)
            else:
                for j in range(3 * H):                      # i, o, f
                    gates[j] = sigmoid32(clip_value(gates[j], clip))
                for j in range(3 * H, 4 * H):               # c (candidate)
                    gates[j] = tanh32(clip_value(gates[j], clip))
                for j in range(H):
                    i = gates[j]
                    f = (_ONE - i) if input_forget else gates[2 * H + j]
                    cn = f * cb[j] + i * gates[3 * H + j]
                    cb[j] = cn
                    hb[j] = gates[H + j] * tanh32(cn)
            for j in range(H):
                yrow[j] = hb[j]


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
    acc_zr, xq = _scratch(zr_neg, H)
    acc_h, xq_h = _scratch(h_neg, H)
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
            _recurrent_product(gzr, hb, Rzr, zr_scale, zr_neg, acc_zr, xq)
            if fast:
                for j in range(2 * H):
                    gzr[j] = sigmoid32(clip_value(gzr[j], clip))
            else:
                for j in range(2 * H):
                    gzr[j] = activate(cf, af, bf, clip_value(gzr[j], clip))
            if lbr:
                # h~ = g(x Wh + Wbh + r * (h Rh + Rbh))
                for j in range(H):
                    tmp[j] = bias[3 * H + j]
                _recurrent_product(tmp, hb, Rh, h_scale, h_neg, acc_h, xq_h)
                for j in range(H):
                    gh[j] = xw[row, 2 * H + j] + bias[2 * H + j] + gzr[H + j] * tmp[j]
            else:
                # h~ = g(x Wh + (r * h) Rh + Rbh + Wbh)
                for j in range(H):
                    tmp[j] = gzr[H + j] * hb[j]
                for j in range(H):
                    gh[j] = xw[row, 2 * H + j] + bias[2 * H + j] + bias[3 * H + j]
                _recurrent_product(gh, tmp, Rh, h_scale, h_neg, acc_h, xq_h)
            if fast:
                for j in range(H):
                    gh[j] = tanh32(clip_value(gh[j], clip))
            else:
                for j in range(H):
                    gh[j] = activate(cg, ag, bg, clip_value(gh[j], clip))
            yrow = Y[t, d, b]
            for j in range(H):
                z = gzr[j]
                hn = gh[j] + z * (hb[j] - gh[j])        # (1 - z) * h~ + z * h
                hb[j] = hn
                yrow[j] = hn


@njit(**JIT_OPTIONS)
def rnn_direction_reduced(Y, d, xw, B, R, rscale, rneg, bias, seq, h, reverse, code, alpha, beta, clip, fast):
    """rnn_direction (gru_rnn.py) with the recurrent product on reduced weights."""
    H = bias.shape[0]
    g = np.empty(H, dtype=h.dtype)
    acc, xq = _scratch(rneg, H)
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
            _recurrent_product(g, hb, R, rscale, rneg, acc, xq)
            yrow = Y[t, d, b]
            if fast:
                for j in range(H):
                    hb[j] = tanh32(clip_value(g[j], clip))
            else:
                for j in range(H):
                    hb[j] = activate(code, alpha, beta, clip_value(g[j], clip))
            for j in range(H):
                yrow[j] = hb[j]


# ---------------------------------------------------------------------- the run function of the reduced variants
@njit(**JIT_OPTIONS)
def _bf16(wts, off, shape):
    """The uint16 array of ``shape`` stored as raw bytes at float32 offset ``off`` of the weight buffer."""
    n = 1
    for v in shape:
        n *= v
    return wts[off:off + (n + 1) // 2].view(np.uint16)[:n].reshape(shape)


@njit(**JIT_OPTIONS)
def _int8(wts, off, shape):
    n = 1
    for v in shape:
        n *= v
    return wts[off:off + (n + 3) // 4].view(np.int8)[:n].reshape(shape)


@njit(**JIT_OPTIONS)
def _up16(n):
    return -(-n // 16) * 16


@njit(**JIT_OPTIONS)
def run_reduced(code, prog, q, X2, lens, h, c, Y, wts, clip, reverse, xw):
    """One reduced-weight instruction (LSTM_REDUCED, GRU_REDUCED, RNN_REDUCED), its common params already read by
    run_recurrent (recurrent_kernels.py): ``q`` is where the op's own params start (see Recurrent.own_params in
    recurrent.py). xw (T*B, G) is the input projection's buffer; ``reverse`` (D,) the directions."""
    enc, o_wt, o_ws, o_wn = prog[q], prog[q + 1], prog[q + 2], prog[q + 3]
    D, B, Hout = h.shape
    In = X2.shape[1]
    G = xw.shape[1]
    int8 = enc == INT8
    wscale = wts[o_ws:o_ws + D * G].reshape((D, G)) if int8 else wts[0:0].reshape((1, 0))
    wneg = wts[o_wn:o_wn + D * _up16(G)].view(np.int32).reshape((D, _up16(G))) if int8 else \
        wts[0:0].view(np.int32).reshape((1, 0))
    WQ = _int8(wts, o_wt, (D, _up16(In) * _up16(G))) if int8 else wts[0:0].view(np.int8).reshape((1, 0))
    if code == LSTM_REDUCED_CODE:
        H = G // 4
        o_r, o_rs, o_rn, o_bias, o_peep = prog[q + 4], prog[q + 5], prog[q + 6], prog[q + 7], prog[q + 8]
        use_peep, input_forget, Dp = prog[q + 9] != 0, prog[q + 10] != 0, prog[q + 11]
        bias = wts[o_bias:o_bias + D * G].reshape((D, G))
        peep = wts[o_peep:o_peep + Dp * 3 * H].reshape((Dp, 3 * H))
        if int8:
            Gp, Kp = _up16(G), _up16(Hout)
            R = _int8(wts, o_r, (D, Kp * Gp))
            rscale = wts[o_rs:o_rs + D * G].reshape((D, G))
            rneg = wts[o_rn:o_rn + D * Gp].view(np.int32).reshape((D, Gp))
            for d in range(D):
                int8_rows(X2, WQ[d], wscale[d], wneg[d], xw)
                lstm_direction_reduced(Y, d, xw, B, R[d], rscale[d], rneg[d], bias[d], peep[d % Dp], use_peep, lens,
                                       h[d], c[d], reverse[d] == 1, clip, input_forget)
        else:
            WT16 = _bf16(wts, o_wt, (D, In, G))
            R16 = _bf16(wts, o_r, (D, Hout, G))
            none_f = wts[0:0]
            none_i = wts[0:0].view(np.int32)
            for d in range(D):
                bf16_rows(X2, WT16[d], xw)
                lstm_direction_reduced(Y, d, xw, B, R16[d], none_f, none_i, bias[d], peep[d % Dp], use_peep, lens,
                                       h[d], c[d], reverse[d] == 1, clip, input_forget)
        return
    if code == GRU_REDUCED_CODE:
        H = G // 3
        o_rzr, o_zs, o_zn, o_rh, o_hs, o_hn, o_bias = (prog[q + 4], prog[q + 5], prog[q + 6], prog[q + 7],
                                                        prog[q + 8], prog[q + 9], prog[q + 10])
        lbr, fast = prog[q + 11] != 0, prog[q + 12] != 0
        bias = wts[o_bias:o_bias + D * 4 * H].reshape((D, 4 * H))
        acts = q + 13
        if int8:
            Kp = _up16(H)
            Rzr = _int8(wts, o_rzr, (D, Kp * _up16(2 * H)))
            Rh = _int8(wts, o_rh, (D, Kp * _up16(H)))
            zs = wts[o_zs:o_zs + D * 2 * H].reshape((D, 2 * H))
            hs = wts[o_hs:o_hs + D * H].reshape((D, H))
            zn = wts[o_zn:o_zn + D * _up16(2 * H)].view(np.int32).reshape((D, _up16(2 * H)))
            hn = wts[o_hn:o_hn + D * _up16(H)].view(np.int32).reshape((D, _up16(H)))
            for d in range(D):
                a = acts + 6 * d
                int8_rows(X2, WQ[d], wscale[d], wneg[d], xw)
                gru_direction_reduced(Y, d, xw, B, Rzr[d], zs[d], zn[d], Rh[d], hs[d], hn[d], bias[d], lens, h[d],
                                      reverse[d] == 1, prog[a:a + 2], prog[a + 2:a + 4].view(np.float64),
                                      prog[a + 4:a + 6].view(np.float64), clip, lbr, fast)
        else:
            WT16 = _bf16(wts, o_wt, (D, In, G))
            Rzr16 = _bf16(wts, o_rzr, (D, H, 2 * H))
            Rh16 = _bf16(wts, o_rh, (D, H, H))
            none_f = wts[0:0]
            none_i = wts[0:0].view(np.int32)
            for d in range(D):
                a = acts + 6 * d
                bf16_rows(X2, WT16[d], xw)
                gru_direction_reduced(Y, d, xw, B, Rzr16[d], none_f, none_i, Rh16[d], none_f, none_i, bias[d], lens,
                                      h[d], reverse[d] == 1, prog[a:a + 2], prog[a + 2:a + 4].view(np.float64),
                                      prog[a + 4:a + 6].view(np.float64), clip, lbr, fast)
        return
    # RNN
    H = G
    o_r, o_rs, o_rn, o_bias, fast = prog[q + 4], prog[q + 5], prog[q + 6], prog[q + 7], prog[q + 8] != 0
    bias = wts[o_bias:o_bias + D * H].reshape((D, H))
    acts = q + 9
    if int8:
        Gp = _up16(H)
        R = _int8(wts, o_r, (D, _up16(H) * Gp))
        rscale = wts[o_rs:o_rs + D * G].reshape((D, G))
        rneg = wts[o_rn:o_rn + D * Gp].view(np.int32).reshape((D, Gp))
        for d in range(D):
            a = acts + 3 * d
            int8_rows(X2, WQ[d], wscale[d], wneg[d], xw)
            rnn_direction_reduced(Y, d, xw, B, R[d], rscale[d], rneg[d], bias[d], lens, h[d], reverse[d] == 1,
                                  prog[a], fparam(prog, a + 1),
                                  fparam(prog, a + 2), clip, fast)
    else:
        WT16 = _bf16(wts, o_wt, (D, In, G))
        R16 = _bf16(wts, o_r, (D, H, H))
        none_f = wts[0:0]
        none_i = wts[0:0].view(np.int32)
        for d in range(D):
            a = acts + 3 * d
            bf16_rows(X2, WT16[d], xw)
            rnn_direction_reduced(Y, d, xw, B, R16[d], none_f, none_i, bias[d], lens, h[d], reverse[d] == 1,
                                  prog[a], fparam(prog, a + 1),
                                  fparam(prog, a + 2), clip, fast)
