"""The GRU and RNN ops: the complete ONNX GRU and RNN (opsets 7-22), float32 and float64.

Canonical GRU node (what the converters write; every attribute present):
    inputs  [X, W, R, B, sequence_lens, initial_h]   ("" = absent)
        W  (D, 3H, I)   gate order z, r, h (ONNX)
        R  (D, 3H, H)
        B  (D, 6H)      Wb then Rb, each z, r, h
    outputs [Y, Y_h]
    attrs   hidden_size, direction, layout, activations [[name, alpha, beta] * 2D] (f for z and r, g for h),
            clip (null = none), linear_before_reset (0 or 1; PyTorch's GRU is 1)

Canonical RNN node: the same with W (D, H, I), R (D, H, H), B (D, 2H), activations [[name, alpha, beta] * D].

The general kernels (GRU_CODE, RNN_CODE) serve every activation and both float types: with ``fast`` (float32,
default activations) the gate loops use the vectorisable rational sigmoid/tanh of lstm_fast.py, otherwise
``activations.activate``. Their recurrent product is a blocked loop (recurrent_product) at small batch and one
product per step at larger batch; the input projection is hoisted out of the recurrence. On two threads a
bidirectional layer runs its two directions at once, one thread each (directions_parallel). Packed layouts (per
direction):

    GRU  WT (I, 3H) z, r, h;  RTzr (H, 2H) z, r;  RTh (H, H);  bias (4H,) = [Wbz+Rbz, Wbr+Rbr, Wbh, Rbh]
    RNN  WT (I, H);  RT (H, H);  bias (H,) = Wb + Rb

The fast float32 ones read the weights in column groups (the register tiles' layout, numeric.py): a GRU with
linear_before_reset on lstm_fast.py's kernels (GRU_FAST_MT, GRU_FAST), an RNN with tanh on rnn_direction_grouped
(RNN_FAST): WT (G // 64, I, 64), RT (G // 64, H, 64), bias (G,), G = H rounded up to whole groups of 64.
"""
import numpy as np
from numba import njit, prange

from ..config import JIT_OPTIONS, PARALLEL
from .activations import SIGMOID
from .numeric import (BLAS_MIN_BATCH, activate, clip_value as _clipv, grouped_add, grouped_product, grouped_row_add,
                      input_projection, matmul, max_length, recurrent_product, sigmoid32, tanh32, tanh_all)


# ---------------------------------------------------------------------- what the float and reduced kernels share
@njit(**JIT_OPTIONS)
def activate_all(g, code, alpha, beta, clip, fast):
    """g <- activation ``code`` (alpha, beta) of each element after the clip, in place. With ``fast`` (float32, the
    default activations, so code is Sigmoid or Tanh) the vectorisable rational sigmoid/tanh run instead."""
    if not fast:
        for j in range(g.shape[0]):
            g[j] = activate(code, alpha, beta, _clipv(g[j], clip))
    elif code == SIGMOID:
        for j in range(g.shape[0]):
            g[j] = sigmoid32(_clipv(g[j], clip))
    else:
        for j in range(g.shape[0]):
            g[j] = tanh32(_clipv(g[j], clip))


@njit(**JIT_OPTIONS)
def gru_update(hb, z, gh, yrow):
    """The GRU's new state, in place: h = (1 - z) * h~ + z * h, also written to the step's output row."""
    for j in range(hb.shape[0]):
        hb[j] = gh[j] + z[j] * (hb[j] - gh[j])
    for j in range(hb.shape[0]):
        yrow[j] = hb[j]


@njit(**JIT_OPTIONS)
def rnn_update(hb, g, yrow):
    """The RNN's new state (g, activated) into h and the step's output row."""
    for j in range(hb.shape[0]):
        hb[j] = g[j]
    for j in range(hb.shape[0]):
        yrow[j] = g[j]


# ---------------------------------------------------------------------- GRU
@njit(**JIT_OPTIONS)
def gru_direction(Y, d, xw, B, RTzr, RTh, bias, seq, h, reverse, codes, alphas, betas, clip, lbr, fast):
    """One GRU direction over all steps, in place: h (B, H) enters as the initial state and leaves as the final one;
    Y[:, d] gets every step's h (rows past a sequence's end are left alone: the caller zero-fills Y). xw (T*B, 3H)
    is X @ W^T without bias."""
    H = RTh.shape[0]
    cf, cg = codes[0], codes[1]
    af, ag = alphas[0], alphas[1]
    bf, bg = betas[0], betas[1]
    gzr = np.empty(2 * H, dtype=h.dtype)
    gh = np.empty(H, dtype=h.dtype)
    tmp = np.empty(H, dtype=h.dtype)
    use_blas = B >= BLAS_MIN_BATCH
    recz = np.empty((B if use_blas else 0, 2 * H), dtype=h.dtype)
    rech = np.empty((B if use_blas and lbr else 0, H), dtype=h.dtype)
    maxlen = max_length(seq, B)
    for s in range(maxlen):
        if use_blas:
            matmul(h, RTzr, recz)
            if lbr:
                matmul(h, RTh, rech)
        for b in range(B):
            L = seq[b]
            if s >= L:
                continue
            t = L - 1 - s if reverse else s
            row = t * B + b
            hb = h[b]
            # views indexed from 0: an offset index (xw[row, 2 * H + j]) stops LLVM vectorising
            xr = xw[row]
            xzr = xr[:2 * H]
            xh = xr[2 * H:3 * H]
            bzr = bias[:2 * H]
            bxh = bias[2 * H:3 * H]
            brh = bias[3 * H:4 * H]
            for j in range(2 * H):
                gzr[j] = xzr[j] + bzr[j]
            if use_blas:
                rz = recz[b]
                for j in range(2 * H):
                    gzr[j] += rz[j]
            else:
                recurrent_product(gzr, hb, RTzr)
            activate_all(gzr, cf, af, bf, clip, fast)
            z = gzr[:H]
            r = gzr[H:2 * H]
            if lbr:
                # h~ = g(x Wh + Wbh + r * (h Rh + Rbh))
                if use_blas:
                    rh = rech[b]
                    for j in range(H):
                        tmp[j] = rh[j] + brh[j]
                else:
                    for j in range(H):
                        tmp[j] = brh[j]
                    recurrent_product(tmp, hb, RTh)
                for j in range(H):
                    gh[j] = xh[j] + bxh[j] + r[j] * tmp[j]
            else:
                # h~ = g(x Wh + (r * h) Rh + Rbh + Wbh)
                for j in range(H):
                    tmp[j] = r[j] * hb[j]
                for j in range(H):
                    gh[j] = xh[j] + bxh[j] + brh[j]
                recurrent_product(gh, tmp, RTh)
            activate_all(gh, cg, ag, bg, clip, fast)
            gru_update(hb, z, gh, Y[t, d, b])


# ---------------------------------------------------------------------- RNN
@njit(**JIT_OPTIONS)
def rnn_direction(Y, d, xw, B, RT, bias, seq, h, reverse, code, alpha, beta, clip, fast):
    """One RNN direction over all steps, in place (as gru_direction): h = f(x Wi + h Ri + Wbi + Rbi)."""
    H = RT.shape[0]
    g = np.empty(H, dtype=h.dtype)
    use_blas = B >= BLAS_MIN_BATCH
    rec = np.empty((B if use_blas else 0, H), dtype=h.dtype)
    maxlen = max_length(seq, B)
    for s in range(maxlen):
        if use_blas:
            matmul(h, RT, rec)
        for b in range(B):
            L = seq[b]
            if s >= L:
                continue
            t = L - 1 - s if reverse else s
            row = t * B + b
            hb = h[b]
            xr = xw[row]
            for j in range(H):
                g[j] = xr[j] + bias[j]
            if use_blas:
                rb = rec[b]
                for j in range(H):
                    g[j] += rb[j]
            else:
                recurrent_product(g, hb, RT)
            activate_all(g, code, alpha, beta, clip, fast)
            rnn_update(hb, g, Y[t, d, b])


@njit(**JIT_OPTIONS)
def rnn_direction_grouped(Y, d, X2, B, WTq, RTq, bias, seq, h, reverse, clip, xw, back, projected):
    """One direction of a float32 RNN with tanh (RNN_FAST) on the column groups, as the LSTM's and the GRU's fast
    kernels: WTq (G // 64, I, 64), RTq (G // 64, H, 64), bias (G,) = Wb + Rb, G = H rounded up to whole groups (the
    columns past H zeros). The input projected into xw (T*B, G) first (unless ``projected``: the caller did, on
    several threads), then each step's h @ R on the register tiles: at batch 1 grouped_row_add, R's groups last to
    first every other step (and every other call, ``back``: a stream's step starts on what the step before read
    last), over a batch grouped_add; tanh of the first H sums is the new state. An entry past its length keeps its
    state (its row of Y is left alone: the caller zero-fills Y)."""
    H = h.shape[1]
    G = RTq.shape[0] * 64
    if not projected:
        grouped_product(X2, WTq, xw)
    g = np.empty((B, G), dtype=h.dtype)
    hb = np.empty((2, B, H), dtype=h.dtype)
    hb[0, :, :] = h
    maxlen = max_length(seq, B)
    for s in range(maxlen):
        cur, nxt = hb[s % 2], hb[1 - s % 2]
        for b in range(B):
            L = seq[b]
            gb = g[b]
            if s >= L:
                gb[:] = 0
                continue
            t = L - 1 - s if reverse else s
            xr = xw[t * B + b]
            for j in range(G):
                gb[j] = xr[j] + bias[j]
        if B == 1:
            grouped_row_add(g[0], cur[0], RTq, (s % 2 == 1) != back)
        else:
            grouped_add(cur, RTq, g, np.bool_(False))
        for b in range(B):
            L = seq[b]
            if s >= L:
                nxt[b, :] = cur[b]
                continue
            t = L - 1 - s if reverse else s
            gv = g[b, :H]
            tanh_all(gv, clip)
            nb = nxt[b]
            yrow = Y[t, d, b]
            for j in range(H):
                nb[j] = gv[j]
            for j in range(H):
                yrow[j] = gv[j]
    h[:, :] = hb[maxlen % 2]


@njit(parallel=PARALLEL, **JIT_OPTIONS)
def rnn_directions_grouped(Y, X2, B, WTq, RTq, bias, seq, h, reverse, clip, xw, back):
    """Both directions of a bidirectional RNN_FAST at once, one thread each (rnn_direction_grouped; as
    lstm_directions_parallel): WTq (2, G // 64, I, 64), RTq, bias likewise; h (2, B, H); reverse (2,) flags; xw
    (2, T*B, G) a buffer per direction."""
    for d in prange(2):             # d as int64, as lstm_directions_parallel's
        rnn_direction_grouped(Y, np.int64(d), X2, B, WTq[d], RTq[d], bias[d], seq, h[d], reverse[d] == 1, clip, xw[d],
                              back, np.bool_(False))


# ---------------------------------------------------------------------- the two directions on two threads
@njit(**JIT_OPTIONS)
def one_direction(gru, Y, d, X2, WT, xw, B, RT, RTh, bias, seq, h, reverse, acts, clip, lbr, fast, threads, parts):
    """One direction of a GRU (``gru``: RT is RTzr, RTh and lbr are read) or an RNN (RT): the input projected into
    xw (input_projection: its rows in ``parts`` on Numba's threads, or on ``threads``, the plan's BLAS threads; 1
    and 1 on a thread of directions_parallel), then the recurrence.
    acts: the direction's activation params as the instruction holds them (codes, alphas, betas as float64 bits; as
    many of each)."""
    input_projection(X2, WT, xw, threads, parts)
    n = acts.shape[0] // 3
    codes, alphas, betas = acts[:n], acts[n:2 * n].view(np.float64), acts[2 * n:].view(np.float64)
    if gru:
        gru_direction(Y, d, xw, B, RT, RTh, bias, seq, h, reverse, codes, alphas, betas, clip, lbr, fast)
    else:
        rnn_direction(Y, d, xw, B, RT, bias, seq, h, reverse, codes[0], alphas[0], betas[0], clip, fast)


@njit(parallel=PARALLEL, **JIT_OPTIONS)
def directions_parallel(gru, Y, X2, WT, xw, B, RT, RTh, bias, seq, h, reverse, acts, clip, lbr, fast):
    """Both directions of a bidirectional GRU or RNN at once, one thread each (one_direction; they share only X,
    which both read): WT (2, I, G), RT (2, H, .), RTh (2, H, H) (the GRU's; any for an RNN), bias (2, .); xw
    (2, T*B, G) a buffer per direction; h (2, B, H); reverse (2,) flags; acts (2, 3n). Neither waits for the other,
    so with one thread available (or inside another parallel region) the loop runs them in turn."""
    for d in prange(2):             # d and the thread count as int64, as run_recurrent passes them (config.py)
        one_direction(gru, Y, np.int64(d), X2, WT[d], xw[d], B, RT[d], RTh[d], bias[d], seq, h[d], reverse[d] == 1,
                      acts[d], clip, lbr, fast, np.int64(1), np.int64(1))
