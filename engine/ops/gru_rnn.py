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

One kernel per op serves every activation and both float types: with ``fast`` (float32, default activations) the
gate loops use the vectorisable rational sigmoid/tanh of lstm_fast.py, otherwise ``activations.activate``. The
recurrent product is the register-blocked one of the LSTM kernel at small batch and one BLAS GEMM per step at larger
batch; the input projection is hoisted out of the recurrence. Packed layouts (per direction):

    GRU  WT (I, 3H) z, r, h;  RTzr (H, 2H) z, r;  RTh (H, H);  bias (4H,) = [Wbz+Rbz, Wbr+Rbr, Wbh, Rbh]
    RNN  WT (I, H);  RT (H, H);  bias (H,) = Wb + Rb
"""
import numpy as np
from numba import njit

from ..config import JIT_OPTIONS
from ..errors import ModelFileError
from .activations import activate, codes_of
from .base import dummy
from .lstm import DIRECTIONS, LSTM, _lstm_outputs, _lstm_setup
from .lstm_fast import BLAS_MIN_BATCH, input_projection, max_length, recurrent_product, sigmoid32, tanh32
from .packing import view1, view2, view3


@njit(**JIT_OPTIONS)
def _clipv(x, clip):
    # clip = +inf means none; NaN passes through (comparisons with NaN are false)
    x = clip if x > clip else x
    return -clip if x < -clip else x


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
            np.dot(h, RTzr, recz)
            if lbr:
                np.dot(h, RTh, rech)
        for b in range(B):
            L = seq[b]
            if s >= L:
                continue
            t = L - 1 - s if reverse else s
            row = t * B + b
            hb = h[b]
            for j in range(2 * H):
                gzr[j] = xw[row, j] + bias[j]
            if use_blas:
                for j in range(2 * H):
                    gzr[j] += recz[b, j]
            else:
                recurrent_product(gzr, hb, RTzr)
            if fast:
                for j in range(2 * H):
                    gzr[j] = sigmoid32(_clipv(gzr[j], clip))
            else:
                for j in range(2 * H):
                    gzr[j] = activate(cf, af, bf, _clipv(gzr[j], clip))
            if lbr:
                # h~ = g(x Wh + Wbh + r * (h Rh + Rbh))
                if use_blas:
                    for j in range(H):
                        tmp[j] = rech[b, j] + bias[3 * H + j]
                else:
                    for j in range(H):
                        tmp[j] = bias[3 * H + j]
                    recurrent_product(tmp, hb, RTh)
                for j in range(H):
                    gh[j] = xw[row, 2 * H + j] + bias[2 * H + j] + gzr[H + j] * tmp[j]
            else:
                # h~ = g(x Wh + (r * h) Rh + Rbh + Wbh)
                for j in range(H):
                    tmp[j] = gzr[H + j] * hb[j]
                for j in range(H):
                    gh[j] = xw[row, 2 * H + j] + bias[2 * H + j] + bias[3 * H + j]
                recurrent_product(gh, tmp, RTh)
            if fast:
                for j in range(H):
                    gh[j] = tanh32(_clipv(gh[j], clip))
            else:
                for j in range(H):
                    gh[j] = activate(cg, ag, bg, _clipv(gh[j], clip))
            yrow = Y[t, d, b]
            for j in range(H):
                z = gzr[j]
                hn = gh[j] + z * (hb[j] - gh[j])        # (1 - z) * h~ + z * h
                hb[j] = hn
                yrow[j] = hn


@njit(**JIT_OPTIONS)
def gru_forward(X, b, m, e, f64, seq, use_seq, h0, use_h0, clip, lbr, fast, layout):
    """Every GRU feature: validate, then run gru_direction per direction. Returns Y (T, D, B, H) and Y_h (D, B, H) in
    the node's layout. Packed at table entries e, e+7, ...: WT, RTzr, RTh, bias, reverse, codes, alphas, betas."""
    WT = view3(b, m, e, X)
    RTzr = view3(b, m, e + 7, X)
    RTh = view3(b, m, e + 14, X)
    bias = view2(b, m, e + 21, X)
    reverse_flags = view1(b, m, e + 28, m)
    codes = view2(b, m, e + 35, m)
    alphas = view2(b, m, e + 42, f64)
    betas = view2(b, m, e + 49, f64)
    D = WT.shape[0]
    H = RTh.shape[1]
    Xs, lens, hinit, _ = _lstm_setup(X, D, H, H, WT.shape[1], seq, use_seq, h0, use_h0, h0, False, layout)
    T, B, I = Xs.shape
    Y = np.zeros((T, D, B, H), dtype=Xs.dtype)
    X2 = Xs.reshape((T * B, I))
    for d in range(D):
        xw = input_projection(X2, WT[d])
        gru_direction(Y, d, xw, B, RTzr[d], RTh[d], bias[d], lens, hinit[d], reverse_flags[d] == 1, codes[d],
                      alphas[d], betas[d], clip, lbr, fast)
    Yo, Yh, _ = _lstm_outputs(Y, hinit, hinit, layout)
    return Yo, Yh


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
            np.dot(h, RT, rec)
        for b in range(B):
            L = seq[b]
            if s >= L:
                continue
            t = L - 1 - s if reverse else s
            row = t * B + b
            hb = h[b]
            for j in range(H):
                g[j] = xw[row, j] + bias[j]
            if use_blas:
                for j in range(H):
                    g[j] += rec[b, j]
            else:
                recurrent_product(g, hb, RT)
            yrow = Y[t, d, b]
            if fast:
                for j in range(H):
                    hb[j] = tanh32(_clipv(g[j], clip))
            else:
                for j in range(H):
                    hb[j] = activate(code, alpha, beta, _clipv(g[j], clip))
            for j in range(H):
                yrow[j] = hb[j]


@njit(**JIT_OPTIONS)
def rnn_forward(X, b, m, e, f64, seq, use_seq, h0, use_h0, clip, fast, layout):
    """Every RNN feature. Packed at table entries e, e+7, ...: WT, RT, bias, reverse, codes, alphas, betas."""
    WT = view3(b, m, e, X)
    RT = view3(b, m, e + 7, X)
    bias = view2(b, m, e + 14, X)
    reverse_flags = view1(b, m, e + 21, m)
    codes = view2(b, m, e + 28, m)
    alphas = view2(b, m, e + 35, f64)
    betas = view2(b, m, e + 42, f64)
    D = WT.shape[0]
    H = RT.shape[1]
    Xs, lens, hinit, _ = _lstm_setup(X, D, H, H, WT.shape[1], seq, use_seq, h0, use_h0, h0, False, layout)
    T, B, I = Xs.shape
    Y = np.zeros((T, D, B, H), dtype=Xs.dtype)
    X2 = Xs.reshape((T * B, I))
    for d in range(D):
        xw = input_projection(X2, WT[d])
        rnn_direction(Y, d, xw, B, RT[d], bias[d], lens, hinit[d], reverse_flags[d] == 1, codes[d, 0],
                      alphas[d, 0], betas[d, 0], clip, fast)
    Yo, Yh, _ = _lstm_outputs(Y, hinit, hinit, layout)
    return Yo, Yh


# ---------------------------------------------------------------------- the ops
class GRU(LSTM):
    name = "GRU"
    n_gates = 3
    output_ranks = (4, 3)
    attr_names = ("hidden_size", "direction", "layout", "activations", "clip", "linear_before_reset")
    default_acts = ("Sigmoid", "Tanh")
    imports = {"gru_forward": gru_forward}

    @classmethod
    def n_acts(cls):
        return len(cls.default_acts)

    @classmethod
    def n_inputs(cls):
        return 6

    @classmethod
    def out_size(cls, a):
        return a["hidden_size"]

    @classmethod
    def validate_extra(cls, node, a):
        if a["linear_before_reset"] not in (0, 1):
            raise ModelFileError(f"node {node.name!r}: linear_before_reset must be 0 or 1")

    @classmethod
    def validate_tensors(cls, node, model, a, D, H, Hout):
        pass

    @classmethod
    def state_names(cls):
        return ("h",)

    @classmethod
    def fast(cls, node, dtype):
        """float32 with the default activations: the vectorised sigmoid/tanh."""
        D = len(DIRECTIONS[node.attrs["direction"]])
        return (np.dtype(dtype) == np.float32
                and [act[0] for act in node.attrs["activations"]] == list(cls.default_acts) * D)

    @classmethod
    def _weights(cls, node, model, dtype):
        a = node.attrs
        D = len(DIRECTIONS[a["direction"]])
        H = a["hidden_size"]
        ins = list(node.inputs) + [""] * (6 - len(node.inputs))
        W = model.tensors[ins[1]].astype(dtype)
        R = model.tensors[ins[2]].astype(dtype)
        Bt = model.tensors[ins[3]].astype(dtype) if ins[3] else np.zeros((D, 2 * cls.n_gates * H), dtype)
        return D, H, W, R, Bt

    @classmethod
    def _activations(cls, node, D):
        codes, alphas, betas = codes_of([tuple(x) for x in node.attrs["activations"]])
        n = cls.n_acts()
        return {"codes": codes.reshape(D, n), "alphas": alphas.reshape(D, n), "betas": betas.reshape(D, n)}

    @classmethod
    def prepare(cls, node, model, dtype):
        D, H, W, R, Bt = cls._weights(node, model, dtype)
        RT = R.transpose(0, 2, 1)                                             # (D, H, 3H) z, r, h
        return {
            "WT": np.ascontiguousarray(W.transpose(0, 2, 1)),                 # (D, I, 3H)
            "RTzr": np.ascontiguousarray(RT[:, :, :2 * H]),                   # (D, H, 2H)
            "RTh": np.ascontiguousarray(RT[:, :, 2 * H:]),                    # (D, H, H)
            "bias": np.ascontiguousarray(np.concatenate(                      # (D, 4H)
                [Bt[:, :2 * H] + Bt[:, 3 * H:5 * H], Bt[:, 2 * H:3 * H], Bt[:, 5 * H:]], axis=1)),
            "reverse": np.array(DIRECTIONS[node.attrs["direction"]], dtype=np.int64),
            **cls._activations(node, D),
        }

    @classmethod
    def _clip(cls, node, dtype):
        clip = node.attrs["clip"]
        value = float(clip) if clip is not None else float("inf")
        return np.float32(value) if np.dtype(dtype) == np.float32 else value

    @classmethod
    def emit(cls, node, ctx):
        a = node.attrs
        ins = list(node.inputs) + [""] * (6 - len(node.inputs))
        e = ctx.packed_table(node)["WT"]
        seq, use_seq = ctx.optional(ins[4], dummy("int32", 1))
        h0, use_h0 = ctx.initial_state(node, 0, ins[5])
        X = ctx.value(ins[0])
        outs = ctx.outputs(node, 2)
        sc = ctx.scalar
        head = f"{X}, _b, _m, {e}, _sf, {seq}, {sc(use_seq)}, {h0}, {sc(use_h0)}, {sc(cls._clip(node, ctx.dtype))}"
        tail = f"{sc(cls.fast(node, ctx.dtype))}, {sc(int(a['layout']))}"
        if cls is GRU:
            ctx.line(f"{outs[0]}, {outs[1]} = gru_forward({head}, {sc(bool(a['linear_before_reset']))}, {tail})")
        else:
            ctx.line(f"{outs[0]}, {outs[1]} = rnn_forward({head}, {tail})")
        ctx.final_state(node, [outs[1]])


class RNN(GRU):
    name = "RNN"
    n_gates = 1
    attr_names = ("hidden_size", "direction", "layout", "activations", "clip")
    default_acts = ("Tanh",)
    imports = {"rnn_forward": rnn_forward}

    @classmethod
    def validate_extra(cls, node, a):
        pass

    @classmethod
    def prepare(cls, node, model, dtype):
        D, H, W, R, Bt = cls._weights(node, model, dtype)
        return {
            "WT": np.ascontiguousarray(W.transpose(0, 2, 1)),                 # (D, I, H)
            "RT": np.ascontiguousarray(R.transpose(0, 2, 1)),                 # (D, H, H)
            "bias": np.ascontiguousarray(Bt[:, :H] + Bt[:, H:]),              # (D, H)
            "reverse": np.array(DIRECTIONS[node.attrs["direction"]], dtype=np.int64),
            **cls._activations(node, D),
        }
