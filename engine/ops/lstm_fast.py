"""The fast LSTM kernel: float32, default activations (f = Sigmoid, g = h = Tanh), every other attribute.

It must match ``lstm_kernels.lstm_direction_generic`` (the reference-complete kernel) to the fp32 tolerance; the
tests run both on the same inputs. What makes it fast:

* sigmoid and tanh are branch-free rational approximations in float32 (the coefficients onnxruntime's MLAS and
  Eigen use; max error ~1e-7), so LLVM vectorises the gate loop: Numba has no vector exp/tanh without Intel SVML.
* every product runs on register tiles (engine/ops/tiles.py) over weights packed in column groups of 64
  (recurrent.pack_parts, grouped): 64 gate sums per row stay in registers for all of K. At small batch the
  recurrence is one row per step at batch 1; from batch 2 one product per step over the whole batch
  (six rows of h per pass over RT) adds into the gates, which start as the projected input plus the bias; from
  four rows on AMD Zen, 16 elsewhere while W and R are at most 48 KiB a row (FUSE_MIN_ROWS, FUSE_ROW_BYTES,
  config.ZEN), the input is projected step by step too
  (lstm_direction_fused), into gates still in the cache.
* at batch 1 on AMD Zen, while W and R fit the L3 (PIPELINE_MAX_BYTES; elsewhere never), the input is projected
  inside the recurrence (lstm_direction_pipelined; each thread for its part in lstm_direction_parallel): the one-row
  product waits on R's bytes, and the projection's multiply-adds fill those waits.
* several threads split the hidden units (lstm_direction_parallel, one barrier a step; it also runs a GRU with
  linear_before_reset; off AMD Zen, from 16 rows each step projects its own input, ``fused``) or, from eight rows a
  thread, the batch (lstm_batches_parallel, no barrier; off AMD Zen only while a thread's part of the units would be
  under 128, SPLIT_MAX_UNITS); two threads run a bidirectional LSTM's two directions at once, one each
  (lstm_directions_parallel, no barrier).
* all buffers come from the caller; nothing is allocated per step.

Gate order is ONNX's, i, o, f, c, everywhere here (the GRU's z, r, h). Layouts as in lstm_kernels.py.
"""
import numpy as np
from numba import njit, prange

from ..config import JIT_OPTIONS, PARALLEL
from .numeric import (grouped_add, grouped_product, grouped_row_add, grouped_step, lstm_cell_at, lstm_cell_rows,
                      max_length, sigmoid_all, tanh_all)
from .program import PIPELINE_MAX_BYTES, PIPELINE_MIN_STEPS
from .sync import compare_exchange, cpu_relax, cycles, fetch_add, load_acquire, yield_cpu
from .tiles import dual_tile

_DUAL = dual_tile()
# the pipelined kernel projects a block of four rows in this many steps, 1 / PHASES of K a step: T=100 one thread,
# against the fast kernel, 2 phases 1.11x at H=128 and 1.05-1.07x at H=512, 4 phases 1.05-1.06x and 1.05-1.07x
PHASES = 2


@njit(**JIT_OPTIONS)
def lstm_direction_fast(Y, d, b0, xw, B, RT, bias, peep, use_peep, seq, h, c, reverse, clip, input_forget, gates,
                        rec):
    """One direction over all steps, in place: h (B, H) and c (B, H) enter as the initial state and leave as the
    final one; Y[:, d, b0:b0 + B] gets every step's h (b0: where these B rows start in Y's batch; an offset rather
    than a slice of Y, so that every caller passes the same array types and the kernel is compiled once). The
    weights are in parts (``pack_parts``, grouped; one part for one thread): RT (parts, 4*chunk // 64, H, 64), bias
    (parts, 1, 4*chunk); xw (parts, T*B, 4*chunk) is X @ W^T without bias, part by part; peep (3H,) is read only
    with use_peep; gates (parts*4*chunk,) and rec (parts, B, 4*chunk) are scratch. The parts are run in sequence:
    the threaded kernel's layout serves one thread too.
    """
    parts = RT.shape[0]
    G = RT.shape[1] * 64             # 4 * chunk
    chunk = G // 4
    H = h.shape[1]
    maxlen = max_length(seq, B)
    batched = B > 1                  # the tiles read RT once for up to six rows
    for s in range(maxlen):
        if batched:                  # every part's gates before any h changes: each product reads all of h
            for p in range(parts):
                _start_gates(rec[p], xw[p], bias[p, 0], s, B, seq, reverse)
                grouped_add(h, RT[p], rec[p], s % 2 == 1)      # alternating, as grouped_row_add
        for b in range(B):
            L = seq[b]
            if s >= L:
                continue
            t = L - 1 - s if reverse else s
            row = t * B + b
            if not batched:          # every other step last part and group first (grouped_row_add)
                back = s % 2 == 1
                for k in range(parts):
                    p = parts - 1 - k if back else k
                    g = gates[p * G:(p + 1) * G]
                    xr = xw[p, row]
                    bp = bias[p, 0]
                    for u in range(G):
                        g[u] = xr[u] + bp[u]
                    grouped_row_add(g, h[b], RT[p], back)
            for p in range(parts):
                j0 = p * chunk
                n = min(chunk, H - j0)
                if n <= 0:
                    continue
                lstm_cell_at(rec[p, b] if batched else gates[p * G:(p + 1) * G], j0, n, c[b], h[b],
                             Y[t, d, b0 + b], peep, use_peep, clip, input_forget)


@njit(**JIT_OPTIONS)
def ahead_rows(L, reverse):
    """The rows of X (and xw) a pipelined batch-1 direction of length L projects before its first step: those of
    its first four steps, [a0, a1), and of its last L % 4, [b0, b1) (empty below four steps)."""
    n = min(L, 4)
    a0, a1 = (L - n, L) if reverse else (0, n)
    tail = L % 4 if L >= 4 else 0
    b0, b1 = (0, tail) if reverse else (L - tail, L)
    return a0, a1, b0, b1


@njit(**JIT_OPTIONS)
def pipeline_slice(s, L, reverse, nk):
    """Step s's share of a pipelined projection over nk steps of K: (lo, k0, nb, phase), the slice [k0, k0 + nb)
    of K for the block of four rows starting at lo (block b during steps PHASES * (b - 1) .. PHASES * b - 1, before
    step 4b reads it); lo = -1 once every block is projected (the last steps, and a direction shorter than two
    blocks)."""
    block, phase = s // PHASES + 1, s % PHASES
    if block >= L // 4:
        return -1, 0, 0, phase
    k0 = phase * nk // PHASES
    return (L - 4 * block - 4 if reverse else 4 * block), k0, (phase + 1) * nk // PHASES - k0, phase


@njit(**JIT_OPTIONS)
def pipelines(B, L, I, H, G, itemsize):
    """Whether a batch-1 direction of length L projects its input inside the recurrence (PIPELINE_MIN_STEPS,
    PIPELINE_MAX_BYTES: W and R, (I + H) x G)."""
    return B == 1 and L >= PIPELINE_MIN_STEPS and (I + H) * G * itemsize <= PIPELINE_MAX_BYTES


@njit(**JIT_OPTIONS)
def project_ahead(X2, WT, xw, L, reverse):
    """The projection a pipelined direction needs before its first step: the rows of the first four steps and of
    the last L % 4 (pipelined_gates projects the rest)."""
    a0, a1, b0, b1 = ahead_rows(L, reverse)
    grouped_product(X2[a0:a1], WT, xw[a0:a1])
    if b0 < b1:
        grouped_product(X2[b0:b1], WT, xw[b0:b1])


@njit(**JIT_OPTIONS)
def pipelined_gates(g, xw, bias, X2, WT, RT, h, s, L, reverse):
    """Step s's gates of a batch-1 direction of length L (or of one part of it: WT, RT, xw, bias and g that
    part's), into g (G,): its projected input plus the bias plus h @ R, the product in one loop with 1 / PHASES of
    K of a later block of four steps' projection (tiles.dual_tile): block b during steps PHASES * (b - 1) ..
    PHASES * b - 1, before step 4b reads it. After project_ahead; X2 (T, I) contiguous rows, WT (G // 64, I, 64)
    and RT (G // 64, H, 64) column groups, xw (T, G)."""
    ng = RT.shape[0]
    G = ng * 64
    H = h.shape[0]
    I = X2.shape[1]
    isz = xw.itemsize
    xs, ws = X2.strides[0] // X2.itemsize, xw.strides[0] // isz
    t = L - 1 - s if reverse else s
    back = s % 2 == 1                # every other step the groups last first (grouped_row_add)
    xr = xw[t]
    for u in range(G):
        g[u] = xr[u] + bias[u]
    lo, k0, nb, phase = pipeline_slice(s, L, reverse, I)     # the block's rows of X and xw, its slice of K
    if lo < 0:
        grouped_row_add(g, h, RT, back)
        return
    if phase == 0:
        for r in range(lo, lo + 4):
            xw[r, :] = 0
    for k in range(ng):
        jg = ng - 1 - k if back else k
        _DUAL(g, jg * 64, RT, jg * H * 64 * isz, h, H, xw, lo * ws + jg * 64, ws, WT, jg * I * 64 * isz, X2,
              lo * xs, xs, k0, nb, 64 * isz)


@njit(**JIT_OPTIONS)
def lstm_direction_pipelined(Y, d, X2, WT, RT, bias, peep, use_peep, L, h, c, reverse, clip, input_forget, gates,
                             xw):
    """lstm_direction_fast at batch 1 with one part, the input projected inside the recurrence (project_ahead, then
    pipelined_gates every step). The sums are lstm_direction_fast's, in its order, except a row projected alone (a
    tail of one step), summed in two streams as one row is: the results agree to float32 rounding. X2 (T, I)
    contiguous rows; WT (G // 64, I, 64) and RT (G // 64, H, 64) the part's column groups; bias (1, G); xw (T, G)
    scratch for the projection; gates (G,) scratch; L the sequence's length; h, c (1, H) the state, in place.

    Measured on a Zen 5 core (1 MiB L2, 32 MiB L3), T=100 one thread, against the fast kernel with its projection
    in one product first, in one process, three processes each: H=16 1.02-1.12x, 32 1.06-1.09x, 64 1.08x, 128
    1.11x, 192 1.05x, 256 1.02-1.06x, 384 1.06-1.07x, 512 1.05-1.07x, 640 1.06x; 768 0.93x and 1024 0.71x, where
    W and R (18 and 32 MiB) no longer fit the L3 together and W's reads evict R (PIPELINE_MAX_BYTES)."""
    G = RT.shape[0] * 64
    H = h.shape[1]
    n = min(G // 4, H)
    project_ahead(X2, WT, xw, L, reverse)
    hb, cb = h[0], c[0]
    for s in range(L):
        t = L - 1 - s if reverse else s
        pipelined_gates(gates, xw, bias[0], X2, WT, RT, hb, s, L, reverse)
        lstm_cell_at(gates, 0, n, cb, hb, Y[t, d, 0], peep, use_peep, clip, input_forget)


@njit(**JIT_OPTIONS)
def lstm_direction_fused(Y, d, b0, X3, B, WT, RT, bias, peep, use_peep, seq, h, c, reverse, clip, input_forget,
                         rec):
    """lstm_direction_fast with the input projected step by step: each step's gates start as the bias, and one
    product over the batch adds x_t @ W, another h @ R, into them while they are in the cache (the hoisted
    projection writes (T*B, 4H) to memory and reads it back: at B=32 H=256 ~1.4 ms of ~35). Every running batch
    entry must be at the same time step: forward, or reverse with every sequence as long as the longest
    (``same_steps``). X3 (T, B', I), of which batch rows b0:b0 + B are this call's (as Y's, see
    lstm_direction_fast); WT (parts, 4*chunk // 64, I, 64) as RT. Run from FUSE_MIN_ROWS rows while W and R are at
    most FUSE_ROW_BYTES a row (program.py), where each column group of W serves enough rows to be read once a step."""
    parts = RT.shape[0]
    G = RT.shape[1] * 64
    chunk = G // 4
    H = h.shape[1]
    maxlen = max_length(seq, B)
    for s in range(maxlen):
        t = maxlen - 1 - s if reverse else s
        for p in range(parts):
            fused_gates(rec[p], bias[p, 0], X3[t, b0:b0 + B], WT[p], h, RT[p])
        for p in range(parts):
            j0 = p * chunk
            n = min(chunk, H - j0)
            if n <= 0:
                continue
            lstm_cell_rows(rec[p], B, n, c, h, Y, t, d, b0, j0, seq, s, peep, use_peep, clip, input_forget)


@njit(**JIT_OPTIONS)
def fused_gates(rec, bias, x, WT, h, RT):
    """rec (B, G) <- bias (G,) + x (B, I) @ W + h (B, H) @ R, in that order, W and R in column groups (WT, RT): a
    step's gates with its own input projected into them while they are in the cache (lstm_direction_fused, and
    each thread's part in lstm_direction_parallel's ``fused``)."""
    for b in range(rec.shape[0]):
        g = rec[b]
        for u in range(g.shape[0]):
            g[u] = bias[u]
    grouped_add(x, WT, rec, np.bool_(False))
    grouped_add(h, RT, rec, np.bool_(False))


@njit(**JIT_OPTIONS)
def same_steps(seq, B, reverse):
    """Whether every batch entry still running is at the same time step at every step: forward, or every length
    the same (lstm_direction_fused)."""
    if not reverse:
        return True
    for b in range(1, B):
        if seq[b] != seq[0]:
            return False
    return True


@njit(**JIT_OPTIONS)
def _start_gates(rec, xw, bias, s, B, seq, reverse):
    """rec (B, G) <- step s's projected input (xw (T*B, G)) plus bias (G,), for every batch entry still running:
    the product over the batch then adds h @ RT into it."""
    G = rec.shape[1]
    for b in range(B):
        L = seq[b]
        if s >= L:
            continue
        t = L - 1 - s if reverse else s
        xr = xw[t * B + b]
        g = rec[b]
        for u in range(G):
            g[u] = xr[u] + bias[u]


# ---------------------------------------------------------------------- several threads at batch 1
# DeepCPU's layout (USENIX ATC 2018): thread p owns hidden units [j0, j1) and therefore the columns of WT and RT that
# feed them (in each of the four gate blocks); that slice of the weights stays in the thread's own cache for every
# step. The threads are persistent: one parallel region for the whole sequence, each thread projecting the input for
# its own units and then running every step, a step starting when all parts of the one before are done (atomic
# counters, engine/ops/sync.py; ~0.06 us, where launching a parallel region per step costs ~1.2 us). h is
# double-buffered, so no thread reads a value another is writing.
# A waiting thread spins (pause) and keeps its core: on a machine that other processes share, yielding it would hand
# it to them for a whole time slice at every step (measured: 36 ms instead of 1.1 ms for T=100 H=256, yielding after
# 1000 spins, beside one busy process). Only after ~1 ms of waiting does it yield between checks, for when the
# thread it waits for needs this very core (more threads than cores: several calls at once).
# No thread is ever needed for progress: each part of each step is a task a thread claims (compare-and-swap) before
# running it; its owner claims it first, and a thread that has waited ~25 us for a step's parts takes the ones
# nobody has started (the other thread lost its core, or the threading layer runs the region's iterations one after
# the other). A lockstep barrier without this ran 100x slower beside a busy process.
_STEAL_CYCLES = 1 << 16        # ~25 us at 2.6 GHz
_SPIN_CYCLES = 1 << 21         # ~0.8 ms of spinning before yielding
_SPINS = 1 << 12               # the same two in spins, where the cycle counter reads 0: steal, then yield
_LINE = 16                     # int64 flags 128 bytes apart: each on its own cache line

if PARALLEL:
    # numba.get_num_threads calls through a ctypes pointer, which Numba cannot cache; its intrinsic calls the
    # threading layer's symbol, which exists once the layer is loaded: a kernel loaded from the cache is linked
    # before anything else would load it
    from numba.np.ufunc.parallel import _iget_num_threads, _launch_threads
    _launch_threads()

    @njit(**JIT_OPTIONS)
    def _threads_available():
        return _iget_num_threads()
else:
    @njit(**JIT_OPTIONS)
    def _threads_available():
        return 1      # the ahead-of-time build has no threading layer: its prange is a plain loop


@njit(**JIT_OPTIONS)
def _part_step(Y, d, s, B, seq, reverse, xw, bias, RTp, rec, peep, use_peep, cur, nxt, c, clip, input_forget, g, j0,
               n, gru, X2, WT, pipelined, fused, back):
    """Step s of one part (units [j0, j0+n)) for every batch entry: cur -> nxt. The gates (blocks of width chunk:
    LSTM i, o, f, c, or GRU z, r, h) start from the part's projected input (xw (T*B, width)); RTp (width // 64, Hout,
    64) is the part's slice of RT in column groups. LSTM: the bias is added and h @ RTp multiplied into g (width,)
    at batch 1, else once for the whole batch into rec (B, width). GRU (``gru``, linear_before_reset): h @ RTp goes
    to rec by itself, since r multiplies its h block only (_gru_part_cell). ``pipelined`` (an LSTM at batch 1):
    the product also adds a slice of a later block's projection (pipelined_gates), X2 (T, I) and WT (width // 64,
    I, 64) the part's. ``fused`` (an LSTM): the step projects its own input, X2 (T*B, I), into gates that start
    as the bias, then adds h @ RTp (lstm_direction_fused's order); xw is not read. An LSTM's single step of one row
    (T = B = 1, a stream's step) projects its input here too, each group's W and R together (grouped_step, as
    lstm_direction_one: the same sums as the projection into xw). At batch 1 the column groups run last to first every
    other step, and every other call (``back``, the call's parity): a stream's step starts on the weights the step
    before read last."""
    alternate = (s % 2 == 1) != back
    if gru:
        rec[:, :] = 0
        if B == 1:       # one row: two streams of sums, R's groups in alternating order (as the LSTM's step)
            grouped_row_add(rec[0], cur[0], RTp, alternate)
        else:
            grouped_add(cur, RTp, rec, np.bool_(False))
    elif fused:          # every entry at one time step (same_steps)
        t = seq[0] - 1 - s if reverse else s
        fused_gates(rec, bias, X2[t * B:(t + 1) * B], WT, cur, RTp)
    elif B > 1:
        _start_gates(rec, xw, bias, s, B, seq, reverse)
        grouped_add(cur, RTp, rec, np.bool_(False))
    for b in range(B):
        L = seq[b]
        if s >= L:
            for u in range(n):               # a finished sequence keeps its state
                nxt[b, j0 + u] = cur[b, j0 + u]
            continue
        t = L - 1 - s if reverse else s
        if gru:
            _gru_part_cell(xw[t * B + b], rec[b], bias, n, cur[b, j0:j0 + n], nxt[b, j0:j0 + n],
                           Y[t, d, b, j0:j0 + n], clip)
            continue
        gb = rec[b] if B > 1 or fused else g
        if pipelined:
            pipelined_gates(g, xw, bias, X2, WT, RTp, cur[0], s, L, reverse)
        elif B == 1 and not fused and X2.shape[0] == 1:
            grouped_step(g, X2[0], WT, bias, cur[0], RTp, alternate)
        elif B == 1 and not fused:
            xr = xw[t * B + b]
            for u in range(g.shape[0]):
                g[u] = xr[u] + bias[u]
            grouped_row_add(g, cur[b], RTp, alternate)
        lstm_cell_at(gb, j0, n, c[b], nxt[b], Y[t, d, b], peep, use_peep, clip, input_forget)


@njit(**JIT_OPTIONS)
def _gru_part_cell(x, r, bias, n, hold, hnew, y, clip):
    """A GRU cell (linear_before_reset, default activations) of n units: x and r (width,) the part's projected
    input and h @ R, blocks z, r, h of chunk units; bias (4*chunk,) z, r, Wbh, Rbh. z = sigmoid(xz + rz + bz),
    r = sigmoid(xr + rr + br), h~ = tanh(xh + Wbh + r * (rh + Rbh)), h = h~ + z * (h_old - h~), into hnew and y;
    r is overwritten. Every loop over slices from 0 (they vectorise; see numeric.lstm_cell)."""
    chunk = bias.shape[0] // 4
    gz = r[:n]
    gr = r[chunk:chunk + n]
    gh = r[2 * chunk:2 * chunk + n]
    xz = x[:n]
    xr = x[chunk:chunk + n]
    xh = x[2 * chunk:2 * chunk + n]
    bz = bias[:n]
    br = bias[chunk:chunk + n]
    bwh = bias[2 * chunk:2 * chunk + n]
    brh = bias[3 * chunk:3 * chunk + n]
    for u in range(n):
        gz[u] += xz[u] + bz[u]
    for u in range(n):
        gr[u] += xr[u] + br[u]
    sigmoid_all(gz, clip)
    sigmoid_all(gr, clip)
    for u in range(n):
        gh[u] = (gh[u] + brh[u]) * gr[u]
    for u in range(n):
        gh[u] += xh[u] + bwh[u]
    tanh_all(gh, clip)
    for u in range(n):
        hnew[u] = gh[u] + gz[u] * (hold[u] - gh[u])
    for u in range(n):
        y[u] = hnew[u]


@njit(**JIT_OPTIONS)
def _task(k, Y, d, X2, B, WTp, RTp, biasp, peep, use_peep, seq, reverse, clip, input_forget, xw, g, rec, hb, c,
          gru, fused, back):
    """Task k of a threaded direction: k < nparts projects part k's input (nothing when ``fused`` or for an LSTM's
    single step of one row: each step projects its own); else part k % nparts of step k // nparts - 1."""
    nparts = RTp.shape[0]
    q = k % nparts
    H = hb.shape[2]
    one = not gru and X2.shape[0] == 1           # one step of one row (_part_step projects it)
    # W and R of all parts: the L3 holds them for all cores
    pipelined = not gru and not fused and not one and pipelines(B, seq[0], X2.shape[1], H,
                                                                nparts * RTp.shape[1] * 64, xw.itemsize)
    if k < nparts:                               # on this thread
        if fused or one:
            return
        if pipelined:
            project_ahead(X2, WTp[q], xw[q], seq[0], reverse)
        else:
            grouped_product(X2, WTp[q], xw[q])
        return
    s = k // nparts - 1
    chunk = biasp.shape[2] // 4                  # LSTM i, o, f, c; GRU z, r, Wbh, Rbh
    j0 = q * chunk
    _part_step(Y, d, s, B, seq, reverse, xw[q], biasp[q, 0], RTp[q], rec[q], peep, use_peep, hb[s % 2],
               hb[1 - s % 2], c, clip, input_forget, g[q], j0, max(0, min(chunk, H - j0)), gru, X2, WTp[q],
               pipelined, fused, back)


@njit(**JIT_OPTIONS)
def _finish_phase(ph, flags, Y, d, X2, B, WTp, RTp, biasp, peep, use_peep, seq, reverse, clip, input_forget, xw, g,
                  rec, hb, c, gru, fused, back):
    """Until every task of phase ph (the projections, or step ph - 1) is done; after a while, running those that
    nobody has claimed. flags: [claimed per task..., done per phase at _LINE * (ph + 1) from the end]."""
    nparts = RTp.shape[0]
    at = flags.shape[0] - _LINE * (ph + 1)
    # the projections (phase 0) wait longer: a pool thread may take tens of us to wake up for the region, and
    # taking its projection (~330 us at H=256) then costs more than waiting for it
    grace = _STEAL_CYCLES if ph > 0 else _SPIN_CYCLES
    n = 0
    t0 = cycles()
    while load_acquire(flags, at) < nparts:
        cpu_relax()
        n += 1
        if n % 64 == 0:
            waited = cycles() - t0
            if waited > grace or n > _SPINS * (1 if ph > 0 else 32):
                for q in range(nparts):
                    k = ph * nparts + q
                    if load_acquire(flags, k) == 0 and compare_exchange(flags, k, 0, 1) == 0:
                        _task(k, Y, d, X2, B, WTp, RTp, biasp, peep, use_peep, seq, reverse, clip, input_forget, xw,
                              g, rec, hb, c, gru, fused, back)
                        fetch_add(flags, at, 1)
            if waited > _SPIN_CYCLES or n > 64 * _SPINS:
                yield_cpu()


@njit(**JIT_OPTIONS)
def _task_buffers(h, B, seq, nparts, G):
    """The buffers of a direction's tasks (_task): each part's gates g (nparts, G) and products over the batch rec
    (nparts, B, G), the state hb (2, B, H) of a step and the next (hb[0] <- h); and the number of steps."""
    g = np.empty((nparts, G), dtype=h.dtype)
    rec = np.empty((nparts, B, G), dtype=h.dtype)
    hb = np.empty((2, B, h.shape[1]), dtype=h.dtype)
    hb[0, :, :] = h
    return g, rec, hb, max_length(seq, B)


@njit(parallel=PARALLEL, **JIT_OPTIONS)
def lstm_direction_parallel(Y, d, X2, B, WTp, RTp, biasp, peep, use_peep, seq, h, c, reverse, clip,
                            input_forget, xw, gru, fused, back):
    """lstm_direction_fast split by hidden unit over the parts of WTp (nparts, width // 64, I, 64), RTp (nparts,
    width // 64, Hout, 64) (column groups) and biasp (nparts, 1, 4*chunk) (see pack_parts), one thread per part for
    the whole sequence; each thread also projects the input for its own units, on its own register tiles (no BLAS
    thread pool competes for the cores), and at any batch runs its part's product over the batch. peep is (3H,)
    (zeros unless use_peep). Each part of each step is a task claimed once (see _STEAL_CYCLES): its owner runs it
    unless it is late, so the result never waits for a thread that does not run. With fewer threads than parts the
    tasks run in order on the calling thread. xw (nparts, T*B, width) receives the projected input; with ``fused``
    (an LSTM whose running entries are all at the same step, same_steps) there is no projection task, each step
    projects its own rows into the gates (_part_step), and xw is not read. ``gru``: the same for a GRU with
    linear_before_reset (blocks z, r, h; bias z, r, Wbh, Rbh; c, peep, use_peep and input_forget unread): every
    gate of a unit needs h only, so one barrier a step serves it too. ``back``: the call's parity, which a stream
    alternates (run_recurrent): at batch 1 the steps' column groups start last to first (_part_step)."""
    nparts = RTp.shape[0]
    if _threads_available() < nparts:
        direction_in_turn(Y, d, X2, B, WTp, RTp, biasp, peep, use_peep, seq, h, c, reverse, clip, input_forget, xw,
                          gru, fused, back)
        return
    g, rec, hb, maxlen = _task_buffers(h, B, seq, nparts, RTp.shape[1] * 64)
    phases = maxlen + 1                              # the projections, then the steps
    flags = np.zeros(phases * nparts + _LINE * (phases + 1), dtype=np.int64)
    for p in prange(nparts):
        for ph in range(phases):
            if ph > 0:
                _finish_phase(ph - 1, flags, Y, d, X2, B, WTp, RTp, biasp, peep, use_peep, seq, reverse, clip,
                              input_forget, xw, g, rec, hb, c, gru, fused, back)
            k = ph * nparts + p
            if compare_exchange(flags, k, 0, 1) == 0:
                _task(k, Y, d, X2, B, WTp, RTp, biasp, peep, use_peep, seq, reverse, clip, input_forget, xw, g,
                      rec, hb, c, gru, fused, back)
                fetch_add(flags, flags.shape[0] - _LINE * (ph + 1), 1)
        _finish_phase(phases - 1, flags, Y, d, X2, B, WTp, RTp, biasp, peep, use_peep, seq, reverse, clip,
                      input_forget, xw, g, rec, hb, c, gru, fused, back)
    h[:, :] = hb[maxlen % 2]


@njit(**JIT_OPTIONS)
def direction_in_turn(Y, d, X2, B, WTp, RTp, biasp, peep, use_peep, seq, h, c, reverse, clip, input_forget, xw, gru,
                      fused, back):
    """lstm_direction_parallel's tasks in order on the calling thread, no parallel region: with fewer threads than
    parts, and the one-part GRU (GRU_FAST: the hoisted projection, then each step's h @ R on the column groups,
    grouped_row_add at batch 1 alternating with ``back``, grouped_add over a batch, and _gru_part_cell). A GRU's
    ``fused`` means that the caller has projected its input into xw already (on several threads): no projection
    task (a GRU's step reads xw either way)."""
    nparts = RTp.shape[0]
    g, rec, hb, maxlen = _task_buffers(h, B, seq, nparts, RTp.shape[1] * 64)
    for k in range((maxlen + 1) * nparts):
        _task(k, Y, d, X2, B, WTp, RTp, biasp, peep, use_peep, seq, reverse, clip, input_forget, xw, g, rec, hb, c,
              gru, fused, back)
    h[:, :] = hb[maxlen % 2]


@njit(parallel=PARALLEL, **JIT_OPTIONS)
def gru_directions_parallel(Y, X2, B, WTp, RTp, biasp, seq, h, reverse, clip, xw, back):
    """Both directions of a bidirectional one-part GRU (GRU_FAST) at once, one thread each (direction_in_turn),
    as lstm_directions_parallel: WTp (2, 1, G // 64, I, 64), RTp, biasp likewise; h (2, B, H); reverse (2,) flags;
    xw (2, 1, T*B, G) a buffer per direction."""
    for d in prange(2):             # d as int64, as lstm_directions_parallel's
        hd = h[d]
        direction_in_turn(Y, np.int64(d), X2, B, WTp[d], RTp[d], biasp[d], hd[0], np.bool_(False), seq, hd, hd,
                          reverse[d] == 1, clip, np.bool_(False), xw[d], np.bool_(True), np.bool_(False), back)


# ---------------------------------------------------------------------- the two directions on two threads
@njit(**JIT_OPTIONS)
def lstm_direction_one(Y, d, X2, B, WTp, RTp, biasp, peep, use_peep, seq, h, c, reverse, clip, input_forget, fused,
                       xw, scratch, back):
    """One direction on one thread: the input projected step by step (``fused``, lstm_direction_fused), inside the
    recurrence at batch 1 (lstm_direction_pipelined), straight into the gates for a single step of one row (its
    column groups last to first with ``back``, numeric.grouped_step), or first, into xw, then lstm_direction_fast. WTp
    (parts, G // 64, I, 64), RTp (parts, G // 64, Hout, 64), biasp (parts, 1, G); xw (parts * T * B * G,) unless
    fused; scratch ((B + 1) * parts * G,)."""
    parts = RTp.shape[0]
    G = RTp.shape[1] * 64
    T = X2.shape[0] // B
    In = X2.shape[1]
    H = h.shape[1]
    rec = scratch[parts * G:(B + 1) * parts * G].reshape((parts, B, G))
    if fused:
        lstm_direction_fused(Y, d, np.int64(0), X2.reshape((T, B, In)), B, WTp, RTp, biasp, peep, use_peep, seq, h, c,
                             reverse, clip, input_forget, rec)
        return
    if B == 1 and T == 1 and seq[0] == 1:
        # one step of one row (a stream's step): the projection straight into the gates, no xw pass
        # (grouped_step). H=128 5.7 -> 5.15 us, H=64 1.86 -> 1.51 us (Zen 5, one thread, the kernel alone). In
        # parts too (weights packed for several threads, run here in sequence: a session of two threads at H=128,
        # 8.0-8.4 -> 7.75-8.1 us a stream step), every part's gates before any cell changes h
        chunk = G // 4
        for k in range(parts):
            p = parts - 1 - k if back else k     # alternating too: the parts last to first
            grouped_step(scratch[p * G:(p + 1) * G], X2[0], WTp[p], biasp[p, 0], h[0], RTp[p], back)
        for p in range(parts):
            j0 = p * chunk
            n = min(chunk, H - j0)
            if n > 0:
                lstm_cell_at(scratch[p * G:(p + 1) * G], j0, n, c[0], h[0], Y[0, d, 0], peep, use_peep, clip,
                             input_forget)
        return
    xwp = xw[:parts * T * B * G].reshape((parts, T * B, G))
    if parts == 1 and pipelines(B, seq[0], In, H, G, WTp.itemsize):
        lstm_direction_pipelined(Y, d, X2, WTp[0], RTp[0], biasp[0], peep, use_peep, seq[0], h, c, reverse, clip,
                                 input_forget, scratch[:G], xwp[0])
        return
    for k in range(parts):
        grouped_product(X2, WTp[k], xwp[k])
    lstm_direction_fast(Y, d, np.int64(0), xwp, B, RTp, biasp, peep, use_peep, seq, h, c, reverse, clip, input_forget,
                        scratch[:parts * G], rec)


@njit(parallel=PARALLEL, **JIT_OPTIONS)
def lstm_directions_parallel(Y, X2, B, WTp, RTp, biasp, peep, use_peep, seq, h, c, reverse, clip, input_forget,
                             fused0, fused1, xw, scratch, back):
    """Both directions of a bidirectional LSTM at once, one thread each (lstm_direction_one): they share only X,
    which both read, so no thread waits for the other until the end. WTp (2, parts, G // 64, I, 64), RTp, biasp
    likewise; peep (1 or 2, 3H); h (2, B, Hout), c (2, B, H); reverse (2,) flags; fused0, fused1 each direction's
    choice; xw (2 * n,) and scratch (2 * m,) hold each direction's buffers one after the other; ``back`` as
    lstm_direction_one's. Neither waits for the other, so with one thread available (or inside another parallel
    region) the loop runs them in turn."""
    n, m = xw.shape[0] // 2, scratch.shape[0] // 2
    Dp = peep.shape[0]
    for d in prange(2):             # d as int64: prange's index is uint64, a second compile (config.py)
        lstm_direction_one(Y, np.int64(d), X2, B, WTp[d], RTp[d], biasp[d], peep[d % Dp], use_peep, seq, h[d], c[d],
                           reverse[d] == 1, clip, input_forget, fused1 if d else fused0, xw[d * n:(d + 1) * n],
                           scratch[d * m:(d + 1) * m], back)


# ---------------------------------------------------------------------- several threads over a batch
@njit(parallel=PARALLEL, **JIT_OPTIONS)
def lstm_batches_parallel(Y, d, X3, B, WTp, RTp, biasp, peep, use_peep, seq, h, c, reverse, clip, input_forget,
                          xw, fused, threads):
    """lstm_direction_parallel's work split by batch entry instead of hidden unit: each of ``threads`` threads runs
    the one-thread kernel on its share of the batch, with every part of the weights (run part after part),
    from the projection of its rows of X (step by step with ``fused``, lstm_direction_fused; else hoisted into xw,
    (nparts, T*B, 4*chunk) as lstm_direction_parallel's, used thread by thread) to its last step. No thread ever
    waits for another: at a batch wide enough that a step is bound by the product's FLOPs rather than by streaming
    RT, this beats one barrier per step (see SPLIT_MIN_ROWS). X3 (T, B, I)."""
    nparts = RTp.shape[0]
    G = RTp.shape[1] * 64
    T = X3.shape[0]
    flat = xw.reshape(-1)
    for q in prange(threads):
        b0 = q * B // threads
        b1 = (q + 1) * B // threads
        Bq = b1 - b0
        if Bq == 0:
            continue
        rec = np.empty((nparts, Bq, G), dtype=h.dtype)
        if fused:
            lstm_direction_fused(Y, d, b0, X3, Bq, WTp, RTp, biasp, peep, use_peep, seq[b0:b1], h[b0:b1],
                                 c[b0:b1], reverse, clip, input_forget, rec)
            continue
        start = nparts * T * b0 * G
        xq = flat[start:start + nparts * T * Bq * G].reshape((nparts, T * Bq, G))
        for k in range(nparts):
            for t in range(T):
                grouped_product(X3[t, b0:b1], WTp[k], xq[k, t * Bq:(t + 1) * Bq])
        gates = np.empty(nparts * G, dtype=h.dtype)
        lstm_direction_fast(Y, d, b0, xq, Bq, RTp, biasp, peep, use_peep, seq[b0:b1], h[b0:b1], c[b0:b1], reverse,
                            clip, input_forget, gates, rec)
