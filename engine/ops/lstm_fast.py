"""The fast LSTM kernel: float32, default activations (f = Sigmoid, g = h = Tanh), every other attribute.

It must match ``lstm_kernels.lstm_direction_generic`` (the reference-complete kernel) to the fp32 tolerance; the
tests run both on the same inputs. What makes it fast:

* sigmoid and tanh are branch-free rational approximations in float32 (the coefficients onnxruntime's MLAS and
  Eigen use; max error ~1e-7), so LLVM vectorises the gate loop: Numba has no vector exp/tanh without Intel SVML.
* the recurrence at small batch is a register-blocked product: four rows of RT (four h[k]) per pass over the 4H gate
  accumulator, so each accumulator element is loaded and stored once per four multiply-adds; at larger batch one
  BLAS GEMM per step (h (B, Hout) @ RT (Hout, 4H)) wins.
* all buffers come from the caller; nothing is allocated per step.

Gate order is ONNX's, i, o, f, c, everywhere here. Layouts as in lstm_kernels.py.
"""
import numpy as np
from numba import njit, prange

from ..config import JIT_OPTIONS, PARALLEL
from .numeric import (F32, _ONE, clip_value, input_projection,  # noqa: F401  (re-exported)
                      matmul, max_length, recurrent_product, sigmoid32, tanh32)
from .program import BLAS_MIN_BATCH, PARALLEL_MIN_HIDDEN  # noqa: F401  (re-exported)
from .recurrent import pack_parts  # noqa: F401  (re-exported: packing is the op's, engine/ops/recurrent.py)


@njit(**JIT_OPTIONS)
def lstm_direction_fast(Y, d, xw, B, RT, bias, peep, use_peep, seq, h, c, reverse, clip, input_forget, gates, rec):
    """One direction over all steps, in place: h (B, H) and c (B, H) enter as the initial state and leave as the
    final one; Y[:, d] gets every step's h. xw (T*B, 4H) is X @ W^T without bias; peep (3H,) is read only with
    use_peep; gates (4H,) and rec (B, 4H) are scratch.
    """
    H = RT.shape[1] // 4
    maxlen = max_length(seq, B)
    use_blas = B >= BLAS_MIN_BATCH
    for s in range(maxlen):
        if use_blas:
            matmul(h, RT, rec)
        for b in range(B):
            L = seq[b]
            if s >= L:
                continue
            t = L - 1 - s if reverse else s
            row = t * B + b
            if use_blas:
                for j in range(4 * H):
                    gates[j] = xw[row, j] + bias[j] + rec[b, j]
            else:
                for j in range(4 * H):
                    gates[j] = xw[row, j] + bias[j]
                recurrent_product(gates, h[b], RT)
            hb = h[b]
            cb = c[b]
            yrow = Y[t, d, b]
            if use_peep:
                # peepholes need c before the i/f activations and the new c before o: one fused loop
                for j in range(H):
                    cp = cb[j]
                    i = sigmoid32(clip_value(gates[j] + peep[j] * cp, clip))
                    f = sigmoid32(clip_value(gates[2 * H + j] + peep[2 * H + j] * cp, clip))
                    f = (_ONE - i) if input_forget else f
                    g = tanh32(clip_value(gates[3 * H + j], clip))
                    cn = f * cp + i * g
                    o = sigmoid32(clip_value(gates[H + j] + peep[H + j] * cn, clip))
                    cb[j] = cn
                    hv = o * tanh32(cn)
                    hb[j] = hv
                    yrow[j] = hv
            else:
                # loops over one array each vectorise; a loop over six arrays exceeds LLVM's alias-check budget
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


# ---------------------------------------------------------------------- several threads at batch 1
# DeepCPU's layout (USENIX ATC 2018): thread p owns hidden units [j0, j1) and therefore the columns of RT that feed
# them (in each of the four gate blocks); that slice of the weights stays in the thread's own cache for every step.
# Each step is one parallel region; h is double-buffered so that no thread reads a value another is writing.
@njit(**JIT_OPTIONS)
def _units_step(Y, d, t, b, xw_row, RTp, peep, use_peep, h, hnext, c, clip, input_forget, g, j0, n):
    """One step of hidden units [j0, j0+n) of batch entry b: gates (blocks i, o, f, c of width chunk in g, starting
    from this part's projected input plus bias, xw_row), then c, h and Y. RTp (Hout, 4*chunk) is this part's slice
    of RT."""
    H = peep.shape[0] // 3
    chunk = g.shape[0] // 4
    for u in range(4 * chunk):
        g[u] = xw_row[u]
    recurrent_product(g, h[b], RTp)
    for u in range(n):
        j = j0 + u
        cp = c[b, j]
        pi = peep[j] * cp if use_peep else F32(0.0)
        pf = peep[2 * H + j] * cp if use_peep else F32(0.0)
        i = sigmoid32(clip_value(g[u] + pi, clip))
        f = sigmoid32(clip_value(g[2 * chunk + u] + pf, clip))
        f = (_ONE - i) if input_forget else f
        cn = f * cp + i * tanh32(clip_value(g[3 * chunk + u], clip))
        po = peep[H + j] * cn if use_peep else F32(0.0)
        o = sigmoid32(clip_value(g[chunk + u] + po, clip))
        c[b, j] = cn
        hv = o * tanh32(cn)
        hnext[b, j] = hv
        Y[t, d, b, j] = hv


@njit(parallel=PARALLEL, **JIT_OPTIONS)
def lstm_direction_parallel(Y, d, X2, B, WTp, RTp, biasp, peep, use_peep, seq, h, c, reverse, clip,
                            input_forget):
    """lstm_direction_fast split by hidden unit over the parts of WTp (nparts, I, 4*chunk), RTp (nparts, Hout,
    4*chunk) and biasp (nparts, 1, 4*chunk) (see pack_parts); each thread also projects the input for its own
    units, so no BLAS thread pool competes for the cores. peep is (3H,) (zeros unless use_peep)."""
    nparts = RTp.shape[0]
    H = peep.shape[0] // 3
    chunk = RTp.shape[2] // 4
    N = X2.shape[0]
    xw = np.empty((nparts, N, 4 * chunk), dtype=h.dtype)
    for p in prange(nparts):
        for r in range(N):
            for u in range(4 * chunk):
                xw[p, r, u] = biasp[p, 0, u]
            recurrent_product(xw[p, r], X2[r], WTp[p])
    g = np.empty((nparts, 4 * chunk), dtype=h.dtype)
    hnext = h.copy()
    maxlen = max_length(seq, B)
    cur = h
    nxt = hnext
    for s in range(maxlen):
        for p in prange(nparts):
            j0 = p * chunk
            n = min(chunk, H - j0)
            for b in range(B):
                L = seq[b]
                if s >= L:
                    for u in range(n):               # a finished sequence keeps its state
                        nxt[b, j0 + u] = cur[b, j0 + u]
                    continue
                t = L - 1 - s if reverse else s
                _units_step(Y, d, t, b, xw[p, t * B + b], RTp[p], peep, use_peep, cur, nxt, c, clip,
                            input_forget, g[p], j0, n)
        cur, nxt = nxt, cur
    if maxlen % 2 == 1:                              # the final state is in the other buffer
        h[:, :] = cur
