"""The run function of the recurrent ops (LSTM, GRU, RNN): one instruction laid out by ``Recurrent.plan``
(engine/ops/recurrent.py) -> sequence lengths, initial state, then the kernel of the variant, per direction."""
import numpy as np
from numba import njit

from ..config import JIT_OPTIONS
from .gru_rnn import directions_parallel, one_direction, rnn_direction_grouped, rnn_directions_grouped
from .lstm_fast import (direction_in_turn, gru_directions_parallel, lstm_batches_parallel, lstm_direction_one,
                        lstm_direction_parallel, lstm_directions_parallel, same_steps)
from .lstm_kernels import lstm_direction_generic
from .numeric import grouped_rows_parallel, input_projection
from .program import ABSENT, ERR_SEQ_LENS, KEEP, OK, THREADS_AT
from .program_kernels import fparam, fview, iview, shaped, typed_like
from .reduced_kernels import run_reduced
from .recurrent import (GRU_CODE, GRU_FAST, GRU_FAST_MT, GRU_REDUCED, LSTM_FAST, LSTM_FAST_MT, LSTM_GENERIC,
                        LSTM_REDUCED, P_C, P_C0, P_CLIP, P_DIMS, P_H, P_H0, P_LENS, P_OWN, P_PROJ_PARTS, P_REV,
                        P_SCRATCH, P_SEQ, P_WEIGHTS, P_X, P_XW, P_Y, RNN_FAST, RNN_REDUCED)


@njit(**JIT_OPTIONS)
def _call_parity(lens1, B):
    """The call's parity, flipped for the next call: a single step at batch 1 reads its column groups last to first
    every other call (grouped_step, grouped_row_add), so that a stream's step starts on what the step before read
    last. It lives in the plan's int work after the lengths (lens1[B]), which a stream keeps from step to step
    (uninitialised at first, and shared by concurrent calls: either order gives the same sums)."""
    back = (lens1[B] & 1) == 1
    lens1[B] = 0 if back else 1
    return back


@njit(**JIT_OPTIONS)
def _lengths(lens, I, prog, at, T, B):
    """lens (B,) <- sequence_lens, checked, or T for every entry when there are none."""
    if prog[at] == ABSENT:
        for b in range(B):
            lens[b] = T
        return OK
    seq = iview(I, prog, at, B)
    for b in range(B):
        if seq[b] < 0 or seq[b] > T:
            return ERR_SEQ_LENS
        lens[b] = seq[b]
    return OK


@njit(**JIT_OPTIONS)
def _init_state(s, F, prog, at, lens):
    """s (D, B, K) <- the initial state (zeros when absent; left alone in a stream, KEEP). A batch entry with
    sequence length 0 ends with a zero state (onnxruntime's semantics); the kernels leave it alone."""
    D, B, K = s.shape
    space = prog[at]
    if space == ABSENT:
        s[:, :, :] = 0
    elif space != KEEP:
        src = fview(F, prog, at, D * B * K)
        s1 = shaped(s, (D * B * K,))     # (reshape runs Numba's C helper: ~25 ns a call)
        for i in range(D * B * K):
            s1[i] = src[i]
    for b in range(B):
        if lens[b] == 0:
            s[:, b, :] = 0


@njit(**JIT_OPTIONS)
def run_recurrent(code, prog, pc, F, I):
    p = pc + 3
    T, B, In, H, Hout, D = (prog[p + P_DIMS], prog[p + P_DIMS + 1], prog[p + P_DIMS + 2], prog[p + P_DIMS + 3],
                            prog[p + P_DIMS + 4], prog[p + P_DIMS + 5])
    X2 = shaped(fview(F, prog, p + P_X, T * B * In), (T * B, In))
    lens1 = iview(I, prog, p + P_LENS, B + 1)   # the lengths, then the parity of the instruction's calls
    lens = lens1[:B]
    status = _lengths(lens, I, prog, p + P_SEQ, T, B)
    if status != OK:
        return status
    h = shaped(fview(F, prog, p + P_H, D * B * Hout), (D, B, Hout))
    _init_state(h, F, prog, p + P_H0, lens)
    Y = shaped(fview(F, prog, p + P_Y, T * D * B * Hout), (T, D, B, Hout))
    if prog[p + P_SEQ] != ABSENT:
        Y[:, :, :, :] = 0            # rows past a sequence's end are zeros; the kernels skip them
    wts = F[prog[p + P_WEIGHTS]]  # the packed weights: the model's (F_CONST) or the call's (F_CALL)
    clip = typed_like(wts, fparam(prog, p + P_CLIP))   # +inf: no clip; typed as the compute dtype
    q = p + P_OWN
    if LSTM_REDUCED <= code <= RNN_REDUCED:  # weights stored as bfloat16 or int8 (reduced_kernels.py)
        c = h
        if code == LSTM_REDUCED:
            c = shaped(fview(F, prog, p + P_C, D * B * H), (D, B, H))
            _init_state(c, F, prog, p + P_C0, lens)
        G = H * (4 if code == LSTM_REDUCED else 3 if code == GRU_REDUCED else 1)
        xw = shaped(fview(F, prog, p + P_XW, T * B * G), (T * B, G))
        run_reduced(code, prog, q, X2, lens, h, c, Y, wts, clip, prog[p + P_REV:p + P_REV + 2], xw)
        return OK
    if code == LSTM_FAST or code == LSTM_FAST_MT or code == LSTM_GENERIC:
        c = shaped(fview(F, prog, p + P_C, D * B * H), (D, B, H))
        _init_state(c, F, prog, p + P_C0, lens)
        o_wt, o_rt, o_bias, o_peep, use_peep, input_forget = (prog[q], prog[q + 1], prog[q + 2], prog[q + 3],
                                                              prog[q + 4] != 0, prog[q + 5] != 0)
        Dp = prog[q + 6]             # peepholes stored per direction, or one zero row
        peep = shaped(wts[o_peep:o_peep + Dp * 3 * H], (Dp, 3 * H))
        if code == LSTM_FAST_MT or code == LSTM_FAST:
            # the weights in parts (pack_parts): one per thread, or one; in column groups of 64
            # fuse, by_batch, both directions at once: the plan's choices (LSTM.fused, LSTM.by_batch,
            # LSTM.directions_on_threads)
            parts, chunk, fuse, by_batch = prog[q + 7], prog[q + 8], prog[q + 9] != 0, prog[q + 10]
            G = 4 * chunk
            WTp = shaped(wts[o_wt:o_wt + D * parts * In * G], (D, parts, G // 64, In, 64))
            RTp = shaped(wts[o_rt:o_rt + D * parts * H * G], (D, parts, G // 64, H, 64))
            biasp = shaped(wts[o_bias:o_bias + D * parts * G], (D, parts, 1, G))
            back = _call_parity(lens1, B)
            if code == LSTM_FAST:
                # a direction projects step by step (fused) when the plan chose it and every entry runs the same
                # steps; else into its part of xw, which the plan then sized T * B * parts * G a direction
                f0 = fuse and same_steps(lens, B, prog[p + P_REV] == 1)
                f1 = fuse and same_steps(lens, B, prog[p + P_REV + 1] == 1)      # (reverse is 0 past D)
                n_xw = 0 if f0 and f1 else parts * T * B * G
                n_scratch = (B + 1) * parts * G
                xw = fview(F, prog, p + P_XW, D * n_xw)
                scratch = fview(F, prog, p + P_SCRATCH, D * n_scratch)
                if prog[q + 11] != 0:        # the two directions on two threads, each with its own buffers
                    lstm_directions_parallel(Y, X2, B, WTp, RTp, biasp, peep, use_peep, lens, h, c,
                                             prog[p + P_REV:p + P_REV + 2], clip, input_forget, f0, f1,
                                             xw, scratch, back)
                    return OK
                for d in range(D):           # one after the other, in the same buffers
                    lstm_direction_one(Y, d, X2, B, WTp[d], RTp[d], biasp[d], peep[d % Dp], use_peep, lens, h[d],
                                       c[d], prog[p + P_REV + d] == 1, clip, input_forget, f1 if d else f0, xw[:n_xw],
                                       scratch[:n_scratch], back)
                return OK
            X3 = shaped(X2, (T, B, In))
            for d in range(D):
                rev = prog[p + P_REV + d] == 1
                fused = fuse and same_steps(lens, B, rev)    # else the plan made room for the hoisted projection
                rows = 0 if fused else T * B
                xw = shaped(fview(F, prog, p + P_XW, parts * rows * G), (parts, rows, G))
                if by_batch:                 # the batch split between this many threads
                    lstm_batches_parallel(Y, d, X3, B, WTp[d], RTp[d], biasp[d], peep[d % Dp], use_peep, lens, h[d],
                                          c[d], rev, clip, input_forget, xw, fused, by_batch)
                else:
                    lstm_direction_parallel(Y, d, X2, B, WTp[d], RTp[d], biasp[d], peep[d % Dp], use_peep, lens,
                                            h[d], c[d], rev, clip, input_forget, xw, False, fused, back)
            return OK
        WT = shaped(wts[o_wt:o_wt + D * In * 4 * H], (D, In, 4 * H))
        bias = shaped(wts[o_bias:o_bias + D * 4 * H], (D, 4 * H))
        xw = shaped(fview(F, prog, p + P_XW, T * B * 4 * H), (T * B, 4 * H))
        RT = shaped(wts[o_rt:o_rt + D * Hout * 4 * H], (D, Hout, 4 * H))
        o_proj, use_proj = prog[q + 7], prog[q + 8] != 0
        projT = shaped(wts[o_proj:o_proj + D * H * Hout], (D, H, Hout)) if use_proj else \
            shaped(wts[0:0], (1, 0, 0))
        for d in range(D):
            acts = q + 9 + 9 * d         # codes f, g, h; alphas; betas (float64 bits)
            input_projection(X2, WT[d], xw, prog[THREADS_AT], prog[p + P_PROJ_PARTS])
            lstm_direction_generic(Y, h, c, d, xw, B, RT[d], bias[d], peep[d % Dp], use_peep,
                                   projT[d % projT.shape[0]], use_proj, lens, h[d], c[d], prog[p + P_REV + d] == 1,
                                   prog[acts:acts + 3], prog[acts + 3:acts + 6].view(np.float64),
                                   prog[acts + 6:acts + 9].view(np.float64), clip, input_forget)
        return OK
    if code == GRU_FAST_MT or code == GRU_FAST:
        # the LSTM's threaded kernel with the GRU's part step (lstm_fast.py), or its tasks in turn on one thread
        o_wt, o_rt, o_bias = prog[q], prog[q + 1], prog[q + 2]
        parts, chunk, G = prog[q + 3], prog[q + 4], prog[q + 5]     # G: a part's columns (recurrent.part_width)
        WTp = shaped(wts[o_wt:o_wt + D * parts * In * G], (D, parts, G // 64, In, 64))
        RTp = shaped(wts[o_rt:o_rt + D * parts * H * G], (D, parts, G // 64, H, 64))
        biasp = shaped(wts[o_bias:o_bias + D * parts * 4 * chunk], (D, parts, 1, 4 * chunk))
        if code == GRU_FAST:
            back = _call_parity(lens1, B)      # one part
            if D == 2 and prog[q + 6] != 0:     # the two directions on two threads, each with its own xw
                xw2 = shaped(fview(F, prog, p + P_XW, 2 * T * B * G), (2, 1, T * B, G))
                gru_directions_parallel(Y, X2, B, WTp, RTp, biasp, lens, h, prog[p + P_REV:p + P_REV + 2], clip,
                                        xw2, back)
                return OK
            xw = shaped(fview(F, prog, p + P_XW, T * B * G), (1, T * B, G))
            proj = prog[p + P_PROJ_PARTS]
            for d in range(D):
                hd = h[d]
                if proj > 1:     # the projection's rows on Numba's threads first; the kernel then skips its own
                    grouped_rows_parallel(X2, WTp[d, 0], xw[0], proj)
                direction_in_turn(Y, d, X2, B, WTp[d], RTp[d], biasp[d], hd[0], np.bool_(False), lens, hd, hd,
                                  prog[p + P_REV + d] == 1, clip, np.bool_(False), xw, np.bool_(True),
                                  proj > 1, back)
            return OK
        xw = shaped(fview(F, prog, p + P_XW, parts * T * B * G), (parts, T * B, G))
        for d in range(D):
            # h stands in for the LSTM's c and peepholes, which the GRU's step never reads
            lstm_direction_parallel(Y, d, X2, B, WTp[d], RTp[d], biasp[d], h[d, 0], np.bool_(False), lens, h[d], h[d],
                                    prog[p + P_REV + d] == 1, clip, np.bool_(False), xw, True, np.bool_(False),
                                    np.bool_(False))
        return OK
    if code == GRU_CODE:
        o_wt, o_rz, o_rh, o_bias, lbr, fast = (prog[q], prog[q + 1], prog[q + 2], prog[q + 3], prog[q + 4] != 0,
                                               prog[q + 5] != 0)
        WT = shaped(wts[o_wt:o_wt + D * In * 3 * H], (D, In, 3 * H))
        RTzr = shaped(wts[o_rz:o_rz + D * H * 2 * H], (D, H, 2 * H))
        RTh = shaped(wts[o_rh:o_rh + D * H * H], (D, H, H))
        bias = shaped(wts[o_bias:o_bias + D * 4 * H], (D, 4 * H))
        at_once = q + 6 + 6 * D              # after the activations: the two directions at once (GRU.own_params)
        if D == 2 and prog[at_once] != 0:   # on two threads, each with its own xw
            xw2 = shaped(fview(F, prog, p + P_XW, 2 * T * B * 3 * H), (2, T * B, 3 * H))
            directions_parallel(True, Y, X2, WT, xw2, B, RTzr, RTh, bias, lens, h, prog[p + P_REV:p + P_REV + 2],
                                shaped(prog[q + 6:at_once], (2, 6)), clip, lbr, fast)
            return OK
        xw = shaped(fview(F, prog, p + P_XW, T * B * 3 * H), (T * B, 3 * H))
        for d in range(D):
            acts = q + 6 + 6 * d         # codes f, g; alphas; betas
            one_direction(True, Y, d, X2, WT[d], xw, B, RTzr[d], RTh[d], bias[d], lens, h[d],
                          prog[p + P_REV + d] == 1, prog[acts:acts + 6], clip, lbr, fast, prog[THREADS_AT],
                          prog[p + P_PROJ_PARTS])
        return OK
    if code == RNN_FAST:             # tanh, on the column groups (gru_rnn.rnn_direction_grouped)
        o_wt, o_rt, o_bias, G = prog[q], prog[q + 1], prog[q + 2], prog[q + 3]
        WTq = shaped(wts[o_wt:o_wt + D * In * G], (D, G // 64, In, 64))
        RTq = shaped(wts[o_rt:o_rt + D * H * G], (D, G // 64, H, 64))
        bias = shaped(wts[o_bias:o_bias + D * G], (D, G))
        back = _call_parity(lens1, B)
        if D == 2 and prog[q + 4] != 0:     # the two directions on two threads, each with its own xw
            xw2 = shaped(fview(F, prog, p + P_XW, 2 * T * B * G), (2, T * B, G))
            rnn_directions_grouped(Y, X2, B, WTq, RTq, bias, lens, h, prog[p + P_REV:p + P_REV + 2], clip, xw2, back)
            return OK
        xw = shaped(fview(F, prog, p + P_XW, T * B * G), (T * B, G))
        proj = prog[p + P_PROJ_PARTS]
        for d in range(D):
            if proj > 1:     # the projection's rows on Numba's threads first
                grouped_rows_parallel(X2, WTq[d], xw, proj)
            rnn_direction_grouped(Y, d, X2, B, WTq[d], RTq[d], bias[d], lens, h[d], prog[p + P_REV + d] == 1, clip,
                                  xw, back, proj > 1)
        return OK
    # RNN
    o_wt, o_rt, o_bias, fast = prog[q], prog[q + 1], prog[q + 2], prog[q + 3] != 0
    WT = shaped(wts[o_wt:o_wt + D * In * H], (D, In, H))
    RT = shaped(wts[o_rt:o_rt + D * H * H], (D, H, H))
    bias = shaped(wts[o_bias:o_bias + D * H], (D, H))
    at_once = q + 4 + 3 * D                  # after the activations: the two directions at once (RNN.own_params)
    if D == 2 and prog[at_once] != 0:       # on two threads, each with its own xw
        xw2 = shaped(fview(F, prog, p + P_XW, 2 * T * B * H), (2, T * B, H))
        directions_parallel(False, Y, X2, WT, xw2, B, RT, RT, bias, lens, h, prog[p + P_REV:p + P_REV + 2],
                            shaped(prog[q + 4:at_once], (2, 3)), clip, np.bool_(False), fast)
        return OK
    xw = shaped(fview(F, prog, p + P_XW, T * B * H), (T * B, H))
    for d in range(D):
        acts = q + 4 + 3 * d             # code, alpha, beta
        one_direction(False, Y, d, X2, WT[d], xw, B, RT[d], RT[d], bias[d], lens, h[d], prog[p + P_REV + d] == 1,
                      prog[acts:acts + 3], clip, np.bool_(False), fast, prog[THREADS_AT], prog[p + P_PROJ_PARTS])
    return OK
