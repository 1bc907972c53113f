"""LSTM kernels: pure functions over arrays, no error branches (validation lives in ``lstm.py``).

Gate order everywhere in this file is ONNX's: i, o, f, c (input, output, forget, cell). Packed layouts:

    WT    (I, 4H)      input weights, transposed so that X (T*B, I) @ WT is one GEMM over all steps
    RT    (Hout, 4H)   recurrent weights, transposed: row k is what h[k] adds to all four gates
    bias  (4H,)        Wb + Rb, pre-added
    peep  (3H,)        peepholes i, o, f (ONNX P order)
    projT (H, Hout)    projection (PyTorch proj_size), transposed; Hout == H without projection
    codes/alphas/betas (3,)  activations f, g, h of this direction
"""
import numpy as np
from numba import njit

from ..config import JIT_OPTIONS
from .numeric import activate, clip_value as _clip, matmul, max_length


@njit(**JIT_OPTIONS)
def lstm_direction_generic(Y, Yh, Yc, d, xw, B, RT, bias, peep, use_peep, projT, use_proj, seq, h0, c0,
                           reverse, codes, alphas, betas, clip, input_forget):
    """Run one direction over all steps. Writes Y[:, d] (T, B, Hout), Yh[d] (B, Hout), Yc[d] (B, H).

    xw (T*B, 4H) is the hoisted input projection X @ W^T (bias not yet added).
    Batch entry b runs steps 0..seq[b]-1 (reverse: seq[b]-1 down to 0); past its end Y stays zero (the caller
    passes Y zero-filled) and its state stays frozen, so Yh/Yc hold its last valid step; with seq[b] == 0 they are
    zero (the caller zeroes that entry's initial state).
    """
    H = RT.shape[1] // 4
    Hout = RT.shape[0]
    h = h0.copy()                                 # (B, Hout)
    c = c0.copy()                                 # (B, H)
    hfull = np.empty((B, H), dtype=h.dtype)       # o * h(c) before projection
    rec = np.empty((B, 4 * H), dtype=h.dtype)     # h @ RT
    cf, cg, ch = codes[0], codes[1], codes[2]
    af, ag, ah = alphas[0], alphas[1], alphas[2]
    bf, bg, bh = betas[0], betas[1], betas[2]
    maxlen = max_length(seq, B)
    for s in range(maxlen):
        matmul(h, RT, rec)
        for b in range(B):
            L = seq[b]
            if s >= L:
                continue
            t = L - 1 - s if reverse else s
            row = t * B + b
            for j in range(H):
                gi = xw[row, j] + rec[b, j] + bias[j]
                go = xw[row, H + j] + rec[b, H + j] + bias[H + j]
                gf = xw[row, 2 * H + j] + rec[b, 2 * H + j] + bias[2 * H + j]
                gc = xw[row, 3 * H + j] + rec[b, 3 * H + j] + bias[3 * H + j]
                cp = c[b, j]
                if use_peep:
                    gi += peep[j] * cp
                    gf += peep[2 * H + j] * cp
                i = activate(cf, af, bf, _clip(gi, clip))
                if input_forget:
                    f = 1.0 - i
                else:
                    f = activate(cf, af, bf, _clip(gf, clip))
                g = activate(cg, ag, bg, _clip(gc, clip))
                cn = f * cp + i * g
                if use_peep:
                    go += peep[H + j] * cn
                o = activate(cf, af, bf, _clip(go, clip))
                c[b, j] = cn
                hv = o * activate(ch, ah, bh, cn)
                if use_proj:
                    hfull[b, j] = hv
                else:
                    h[b, j] = hv
            if use_proj:
                for k in range(Hout):
                    acc = 0.0
                    for j in range(H):
                        acc += hfull[b, j] * projT[j, k]
                    h[b, k] = acc
            for k in range(Hout):
                Y[t, d, b, k] = h[b, k]
    for b in range(B):
        for k in range(Hout):
            Yh[d, b, k] = h[b, k]
        for j in range(H):
            Yc[d, b, j] = c[b, j]
