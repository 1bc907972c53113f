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
from .sync import compare_exchange, cpu_relax, fetch_add, load_acquire, store_release, yield_cpu


@njit(**JIT_OPTIONS)
def lstm_direction_fast(Y, d, xw, B, RT, bias, peep, use_peep, seq, h, c, reverse, clip, input_forget, gates, rec):
    """One direction over all steps, in place: h (B, H) and c (B, H) enter as the initial state and leave as the
    final one; Y[:, d] gets every step's h. The weights are in parts (``pack_parts``; one part is the plain layout):
    RT (parts, H, 4*chunk), bias (parts, 1, 4*chunk); xw (parts, T*B, 4*chunk) is X @ W^T without bias, part by
    part; peep (3H,) is read only with use_peep; gates (parts*4*chunk,) and rec (parts, B, 4*chunk) are scratch.
    The parts are run in sequence: the threaded kernel's layout serves one thread too.
    """
    parts = RT.shape[0]
    G = RT.shape[2]                  # 4 * chunk
    chunk = G // 4
    H = h.shape[1]
    maxlen = max_length(seq, B)
    use_blas = B >= BLAS_MIN_BATCH
    for s in range(maxlen):
        if use_blas:
            for p in range(parts):
                matmul(h, RT[p], rec[p])
        for b in range(B):
            L = seq[b]
            if s >= L:
                continue
            t = L - 1 - s if reverse else s
            row = t * B + b
            for p in range(parts):       # every part's gates before any h changes: each product reads all of h[b]
                g = gates[p * G:(p + 1) * G]
                xr = xw[p, row]
                bp = bias[p, 0]
                if use_blas:
                    rp = rec[p, b]
                    for u in range(G):
                        g[u] = xr[u] + bp[u] + rp[u]
                else:
                    for u in range(G):
                        g[u] = xr[u] + bp[u]
                    recurrent_product(g, h[b], RT[p])
            for p in range(parts):
                j0 = p * chunk
                n = min(chunk, H - j0)
                if n <= 0:
                    continue
                g = gates[p * G:(p + 1) * G]
                cb = c[b, j0:j0 + n]     # views indexed from 0 (an offset index stops LLVM vectorising)
                hb = h[b, j0:j0 + n]
                yrow = Y[t, d, b, j0:j0 + n]
                if use_peep:
                    pi = peep[j0:j0 + n]
                    po = peep[H + j0:H + j0 + n]
                    pf = peep[2 * H + j0:2 * H + j0 + n]
                    # peepholes need c before the i/f activations and the new c before o: one fused loop
                    for u in range(n):
                        cp = cb[u]
                        i = sigmoid32(clip_value(g[u] + pi[u] * cp, clip))
                        f = sigmoid32(clip_value(g[2 * chunk + u] + pf[u] * cp, clip))
                        f = (_ONE - i) if input_forget else f
                        gc = tanh32(clip_value(g[3 * chunk + u], clip))
                        cn = f * cp + i * gc
                        o = sigmoid32(clip_value(g[chunk + u] + po[u] * cn, clip))
                        cb[u] = cn
                        hv = o * tanh32(cn)
                        hb[u] = hv
                        yrow[u] = hv
                else:
                    # loops over one array each vectorise; a loop over six arrays exceeds LLVM's alias-check budget
                    for u in range(3 * chunk):                  # i, o, f
                        g[u] = sigmoid32(clip_value(g[u], clip))
                    for u in range(3 * chunk, 4 * chunk):       # c (candidate)
                        g[u] = tanh32(clip_value(g[u], clip))
                    for u in range(n):
                        i = g[u]
                        f = (_ONE - i) if input_forget else g[2 * chunk + u]
                        cn = f * cb[u] + i * g[3 * chunk + u]
                        cb[u] = cn
                        hb[u] = g[chunk + u] * tanh32(cn)
                    for u in range(n):
                        yrow[u] = hb[u]


# ---------------------------------------------------------------------- several threads at batch 1
# DeepCPU's layout (USENIX ATC 2018): thread p owns hidden units [j0, j1) and therefore the columns of WT and RT that
# feed them (in each of the four gate blocks); that slice of the weights stays in the thread's own cache for every
# step. The threads are persistent: one parallel region for the whole sequence, each thread projecting the input for
# its own units and then running every step, the steps separated by a barrier of per-thread progress flags
# (engine/ops/sync.py; ~0.06 us, where launching a parallel region per step costs ~1.2 us). h is double-buffered,
# so no thread reads a value another is writing.
_SPIN = 1000          # pause-spins before a waiting thread starts to yield its core (the other may have lost its own)
_GIVE_UP = 50000      # waiting spins at the start after which the region is taken to run its parts one by one
_LINE = 16            # int64 flags 128 bytes apart: each on its own cache line

if PARALLEL:
    # numba.get_num_threads calls through a ctypes pointer, which Numba cannot cache; its intrinsic calls the
    # threading layer's symbol
    from numba.np.ufunc.parallel import _iget_num_threads

    @njit(**JIT_OPTIONS)
    def _threads_available():
        return _iget_num_threads()
else:
    @njit(**JIT_OPTIONS)
    def _threads_available():
        return 1      # the ahead-of-time build has no threading layer: its prange is a plain loop


@njit(**JIT_OPTIONS)
def _all_started(flags, nparts):
    """Whether all nparts iterations of the region run at the same time; False (for all of them) if one has not
    started after a while: the threading layer runs them one after the other (nested parallelism, a thread limit),
    and a barrier would wait forever. flags[0] counts arrivals; flags[_LINE] is 0 (undecided), 1 (go) or 2 (not)."""
    if fetch_add(flags, 0, 1) + 1 == nparts:
        compare_exchange(flags, _LINE, 0, 1)
    n = 0
    while load_acquire(flags, _LINE) == 0:
        cpu_relax()
        n += 1
        if n > _SPIN:
            yield_cpu()
        if n > _GIVE_UP:
            compare_exchange(flags, _LINE, 0, 2)
    return load_acquire(flags, _LINE) == 1


@njit(**JIT_OPTIONS)
def _wait_for_step(flags, nparts, done):
    """Until every part has finished ``done`` steps (its flag, flags[_LINE * (p + 2)])."""
    n = 0
    for q in range(nparts):
        while load_acquire(flags, _LINE * (q + 2)) < done:
            cpu_relax()
            n += 1
            if n > _SPIN:
                yield_cpu()


@njit(**JIT_OPTIONS)
def _units_step(Y, d, t, b, xw_row, bias, RTp, peep, use_peep, h, hnext, c, clip, input_forget, g, j0, n):
    """One step of hidden units [j0, j0+n) of batch entry b: gates (blocks i, o, f, c of width chunk in g, starting
    from this part's projected input xw_row plus its bias), then c, h and Y. RTp (Hout, 4*chunk) is this part's
    slice of RT."""
    H = peep.shape[0] // 3
    chunk = g.shape[0] // 4
    for u in range(4 * chunk):
        g[u] = xw_row[u] + bias[u]
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


@njit(**JIT_OPTIONS)
def _part_step(Y, d, s, B, seq, reverse, xw, bias, RTp, peep, use_peep, cur, nxt, c, clip, input_forget, g, j0, n):
    """Step s of one part (units [j0, j0+n)) for every batch entry: cur -> nxt; xw (T*B, 4*chunk) is the part's
    projected input."""
    for b in range(B):
        L = seq[b]
        if s >= L:
            for u in range(n):               # a finished sequence keeps its state
                nxt[b, j0 + u] = cur[b, j0 + u]
            continue
        t = L - 1 - s if reverse else s
        _units_step(Y, d, t, b, xw[t * B + b], bias, RTp, peep, use_peep, cur, nxt, c, clip, input_forget, g, j0, n)


@njit(parallel=PARALLEL, **JIT_OPTIONS)
def lstm_direction_parallel(Y, d, X2, B, WTp, RTp, biasp, peep, use_peep, seq, h, c, reverse, clip,
                            input_forget):
    """lstm_direction_fast split by hidden unit over the parts of WTp (nparts, I, 4*chunk), RTp (nparts, Hout,
    4*chunk) and biasp (nparts, 1, 4*chunk) (see pack_parts), one thread per part for the whole sequence; each
    thread also projects the input for its own units (one BLAS call; the plan sets the BLAS to one thread), so no
    BLAS thread pool competes for the cores. peep is (3H,)
    (zeros unless use_peep). With fewer threads than parts, or a threading layer that runs the region's iterations
    one by one, the parts run in sequence on the calling thread: same results, never a wait without end. Returns
    whether the parts ran on threads of their own."""
    nparts = RTp.shape[0]
    H = h.shape[1]
    chunk = RTp.shape[2] // 4
    N = X2.shape[0]
    xw = np.empty((nparts, N, 4 * chunk), dtype=h.dtype)
    g = np.empty((nparts, 4 * chunk), dtype=h.dtype)
    hb = np.empty((2, B, H), dtype=h.dtype)
    hb[0, :, :] = h
    maxlen = max_length(seq, B)
    flags = np.zeros(_LINE * (nparts + 2), dtype=np.int64)
    if _threads_available() >= nparts:
        for p in prange(nparts):
            if _all_started(flags, nparts):
                j0 = p * chunk
                n = max(0, min(chunk, H - j0))
                input_projection(X2, WTp[p], xw[p])    # a one-thread BLAS call per part (plan.blas_threads)
                for s in range(maxlen):
                    if s > 0:
                        _wait_for_step(flags, nparts, s)
                    _part_step(Y, d, s, B, seq, reverse, xw[p], biasp[p, 0], RTp[p], peep, use_peep, hb[s % 2],
                               hb[1 - s % 2], c, clip, input_forget, g[p], j0, n)
                    store_release(flags, _LINE * (p + 2), s + 1)
    if flags[_LINE] != 1:                            # not run above: the parts one by one
        for p in range(nparts):
            input_projection(X2, WTp[p], xw[p])
        for s in range(maxlen):
            for p in range(nparts):
                j0 = p * chunk
                _part_step(Y, d, s, B, seq, reverse, xw[p], biasp[p, 0], RTp[p], peep, use_peep, hb[s % 2],
                           hb[1 - s % 2], c, clip, input_forget, g[p], j0, max(0, min(chunk, H - j0)))
    h[:, :] = hb[maxlen % 2]
    return flags[_LINE] == 1                         # whether the parts ran on threads of their own
