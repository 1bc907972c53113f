"""The LSTM op: the complete ONNX LSTM (opsets 7-22) plus PyTorch's projection (proj_size).

Canonical node (what the converters write; every attribute present):
    inputs  [X, W, R, B, sequence_lens, initial_h, initial_c, P, W_proj]   ("" = absent)
        W       (D, 4H, I)     gate order i, o, f, c (ONNX)
        R       (D, 4H, Hout)  Hout = proj_size or H
        B       (D, 8H)        Wb then Rb, each i, o, f, c
        P       (D, 3H)        peepholes i, o, f
        W_proj  (D, Hout, H)   PyTorch weight_hr (extension; no ONNX equivalent)
    outputs [Y, Y_h, Y_c]
    attrs   hidden_size, direction, layout, activations [[name, alpha, beta] * 3D], clip (null = none),
            input_forget, proj_size (0 = none)
"""
import numpy as np
from numba import njit

from ..config import JIT_OPTIONS
from ..errors import ModelFileError, UnsupportedModelError
from .activations import ACTIVATIONS, codes_of
from .base import Op, const_tensor, dummy, require_attrs
from .lstm_fast import (BLAS_MIN_BATCH, PARALLEL_MIN_HIDDEN, input_projection, lstm_direction_fast,
                        lstm_direction_parallel, pack_parts)
from .lstm_kernels import lstm_direction_generic
from .packing import view1, view2, view3, view4

DIRECTIONS = {"forward": (0,), "reverse": (1,), "bidirectional": (0, 1)}


@njit(**JIT_OPTIONS)
def _copy_state(dst, src, layout):
    """dst (D, B, H) <- src in the node's layout ((D, B, H), or (B, D, H) for layout 1). Plain loops: Numba
    compiles them in a fraction of the time that slice assignment from a transposed view takes."""
    D, B, H = dst.shape
    for d in range(D):
        for b in range(B):
            for j in range(H):
                dst[d, b, j] = src[b, d, j] if layout == 1 else src[d, b, j]


@njit(**JIT_OPTIONS)
def _lstm_setup(X, D, H, Hout, I_w, seq, use_seq, h0, use_h0, c0, use_c0, layout):
    """Validate shapes and build the time-major input and the initial state (copies the kernels may overwrite).
    Shared by LSTM, GRU and RNN; the latter two pass use_c0 False.

    X is (T, B, I) for layout 0, (B, T, I) for layout 1. Returns Xs (T, B, I), lens (B,), h (D, B, Hout),
    c (D, B, H).
    """
    if layout == 1:
        B, T, I = X.shape
        Xs = np.empty((T, B, I), dtype=X.dtype)
        for t in range(T):
            for b in range(B):
                for k in range(I):
                    Xs[t, b, k] = X[b, t, k]
    else:
        T, B, I = X.shape
        Xs = X
    if I != I_w:
        raise ValueError("the input's feature size does not match the weights W")
    if T < 1 or B < 1:
        raise ValueError("sequence length and batch size must be at least 1")
    lens = np.empty(B, dtype=np.int64)
    for b in range(B):
        lens[b] = T
    if use_seq:
        if seq.shape[0] != B:
            raise ValueError("sequence_lens must have one entry per batch element")
        for b in range(B):
            if seq[b] < 0 or seq[b] > T:
                raise ValueError("sequence_lens values must be between 0 and the sequence length")
            lens[b] = seq[b]
    hinit = np.zeros((D, B, Hout), dtype=X.dtype)
    cinit = np.zeros((D, B, H), dtype=X.dtype)
    if use_h0:
        if h0.shape[0] != (B if layout == 1 else D) or h0.shape[1] != (D if layout == 1 else B) or h0.shape[2] != Hout:
            raise ValueError("initial_h must have shape (num_directions, batch, hidden_size), or "
                             "(batch, num_directions, hidden_size) for layout 1")
        _copy_state(hinit, h0, layout)
    if use_c0:
        if c0.shape[0] != (B if layout == 1 else D) or c0.shape[1] != (D if layout == 1 else B) or c0.shape[2] != H:
            raise ValueError("initial_c must have shape (num_directions, batch, hidden_size), or "
                             "(batch, num_directions, hidden_size) for layout 1")
        _copy_state(cinit, c0, layout)
    # a sequence of length 0 ends with a zero state, not its initial state (onnxruntime's semantics); the kernels
    # leave a finished sequence's state alone, so zeroing it here is enough for all of them
    for b in range(B):
        if lens[b] == 0:
            for d in range(D):
                hinit[d, b, :] = 0.0
                cinit[d, b, :] = 0.0
    return Xs, lens, hinit, cinit


@njit(**JIT_OPTIONS)
def _batch_major(A):
    """(S, D, B, K) -> (B, S, D, K), by plain loops (fast to compile)."""
    S, D, B, K = A.shape
    out = np.empty((B, S, D, K), dtype=A.dtype)
    for s in range(S):
        for d in range(D):
            for b in range(B):
                for k in range(K):
                    out[b, s, d, k] = A[s, d, b, k]
    return out


@njit(**JIT_OPTIONS)
def _lstm_outputs(Y, Yh, Yc, layout):
    """Kernel layout (T, D, B, .) -> the node's layout: (B, T, D, .) and (B, D, .) for layout 1."""
    if layout == 1:
        Dh, Bh, Kh = Yh.shape
        Dc, Bc, Kc = Yc.shape
        return (_batch_major(Y), _batch_major(Yh.reshape((1, Dh, Bh, Kh))).reshape((Bh, Dh, Kh)),
                _batch_major(Yc.reshape((1, Dc, Bc, Kc))).reshape((Bc, Dc, Kc)))
    return Y, Yh, Yc


@njit(**JIT_OPTIONS)
def lstm_forward(X, b, m, e, f64, use_peep, use_proj, seq, use_seq, h0, use_h0, c0, use_c0, clip, input_forget,
                 layout):
    """Every LSTM feature (any activations, projection, float64): validate, then run the generic kernel per
    direction. Returns Y (T, D, B, Hout), Y_h (D, B, Hout), Y_c (D, B, H) in the node's layout.

    The weights are packed in the model buffer b with table m (engine/ops/packing.py): entries e, e+7, ... hold
    WT, RT, bias, peep, reverse, projT, codes, alphas, betas, in the order of LSTM.prepare; f64 is any float64 array
    (the dtype of alphas and betas)."""
    WT = view3(b, m, e, X)
    RT = view3(b, m, e + 7, X)
    bias = view2(b, m, e + 14, X)
    peep = view2(b, m, e + 21, X)
    reverse_flags = view1(b, m, e + 28, m)
    projT = view3(b, m, e + 35, X)
    codes = view2(b, m, e + 42, m)
    alphas = view2(b, m, e + 49, f64)
    betas = view2(b, m, e + 56, f64)
    D = WT.shape[0]
    H = RT.shape[2] // 4
    Hout = RT.shape[1]
    Xs, lens, hinit, cinit = _lstm_setup(X, D, H, Hout, WT.shape[1], seq, use_seq, h0, use_h0, c0, use_c0, layout)
    T, B, I = Xs.shape
    Y = np.zeros((T, D, B, Hout), dtype=Xs.dtype)
    Yh = np.empty((D, B, Hout), dtype=Xs.dtype)
    Yc = np.empty((D, B, H), dtype=Xs.dtype)
    X2 = Xs.reshape((T * B, I))
    for d in range(D):
        xw = np.dot(X2, WT[d])                     # hoisted input projection, all steps at once
        lstm_direction_generic(Y, Yh, Yc, d, xw, B, RT[d], bias[d], peep[d % peep.shape[0]], use_peep,
                               projT[d % projT.shape[0]], use_proj, lens, hinit[d], cinit[d],
                               reverse_flags[d] == 1, codes[d], alphas[d], betas[d], clip, input_forget)
    return _lstm_outputs(Y, Yh, Yc, layout)


@njit(**JIT_OPTIONS)
def lstm_forward_fast(X, b, m, e, use_peep, seq, use_seq, h0, use_h0, c0, use_c0, clip, input_forget, layout):
    """float32, default activations, no projection: the fast kernel (lstm_fast.py). clip = +inf for none.
    Packed weights as for lstm_forward: WT, RT, bias, peep, reverse at table entries e, e+7, ..."""
    WT = view3(b, m, e, X)
    RT = view3(b, m, e + 7, X)
    bias = view2(b, m, e + 14, X)
    peep = view2(b, m, e + 21, X)
    reverse_flags = view1(b, m, e + 28, m)
    D = WT.shape[0]
    H = RT.shape[2] // 4
    Xs, lens, hinit, cinit = _lstm_setup(X, D, H, H, WT.shape[1], seq, use_seq, h0, use_h0, c0, use_c0, layout)
    T, B, I = Xs.shape
    # without sequence_lens every step is written, so Y needs no zero fill
    Y = np.zeros((T, D, B, H), dtype=Xs.dtype) if use_seq else np.empty((T, D, B, H), dtype=Xs.dtype)
    scratch = np.empty((B + 1) * 4 * H, dtype=Xs.dtype)
    gates = scratch[:4 * H]                        # (4H,) one batch entry's gate accumulator
    rec = scratch[4 * H:].reshape((B, 4 * H))      # (B, 4H) h @ RT at large batch
    X2 = Xs.reshape((T * B, I))
    for d in range(D):
        xw = input_projection(X2, WT[d])           # hoisted input projection, all steps at once
        # hinit/cinit are the kernel's working state and end as the final state: Y_h and Y_c
        lstm_direction_fast(Y, d, xw, B, RT[d], bias[d], peep[d % peep.shape[0]], use_peep, lens, hinit[d],
                            cinit[d], reverse_flags[d] == 1, clip, input_forget, gates, rec)
    return _lstm_outputs(Y, hinit, cinit, layout)


@njit(**JIT_OPTIONS)
def lstm_forward_fast_mt(X, b, m, e, use_peep, seq, use_seq, h0, use_h0, c0, use_c0, clip, input_forget, layout):
    """lstm_forward_fast with the work split over threads by hidden unit at small batch (lstm_direction_parallel;
    WT, RT and bias split by pack_parts are at table entries e+35, e+42, e+49); at larger batch BLAS threads the
    per-step GEMM instead."""
    if X.shape[0 if layout == 1 else 1] >= BLAS_MIN_BATCH:
        return lstm_forward_fast(X, b, m, e, use_peep, seq, use_seq, h0, use_h0, c0, use_c0, clip, input_forget,
                                 layout)
    WT = view3(b, m, e, X)
    RT = view3(b, m, e + 7, X)
    peep = view2(b, m, e + 21, X)
    reverse_flags = view1(b, m, e + 28, m)
    WTp = view4(b, m, e + 35, X)
    RTp = view4(b, m, e + 42, X)
    biasp = view4(b, m, e + 49, X)
    D = WT.shape[0]
    H = RT.shape[2] // 4
    Xs, lens, hinit, cinit = _lstm_setup(X, D, H, H, WT.shape[1], seq, use_seq, h0, use_h0, c0, use_c0, layout)
    T, B, I = Xs.shape
    Y = np.zeros((T, D, B, H), dtype=Xs.dtype) if use_seq else np.empty((T, D, B, H), dtype=Xs.dtype)
    X2 = Xs.reshape((T * B, I))
    for d in range(D):
        lstm_direction_parallel(Y, d, X2, B, WTp[d], RTp[d], biasp[d], peep[d % peep.shape[0]], use_peep, lens,
                                hinit[d], cinit[d], reverse_flags[d] == 1, clip, input_forget)
    return _lstm_outputs(Y, hinit, cinit, layout)




def uses_fast_kernel(node, dtype) -> bool:
    a = node.attrs
    default = all(act[0] == ("Sigmoid" if k % 3 == 0 else "Tanh") for k, act in enumerate(a["activations"]))
    return np.dtype(dtype) == np.float32 and default and not a["proj_size"]


class LSTM(Op):
    name = "LSTM"
    recurrent = True
    n_gates = 4
    output_ranks = (4, 3, 3)
    attr_names = ("hidden_size", "direction", "layout", "activations", "clip", "input_forget", "proj_size")
    imports = {"lstm_forward": lstm_forward, "lstm_forward_fast": lstm_forward_fast,
               "lstm_forward_fast_mt": lstm_forward_fast_mt}

    @classmethod
    def validate(cls, node, model):
        a = require_attrs(node, cls.attr_names)
        H = a["hidden_size"]
        if not isinstance(H, int) or H < 1:
            raise ModelFileError(f"node {node.name!r}: hidden_size must be a positive integer, got {H!r}")
        if a["direction"] not in DIRECTIONS:
            raise UnsupportedModelError(f"node {node.name!r}: direction {a['direction']!r} is not one of "
                                        f"forward, reverse, bidirectional")
        if a["layout"] not in (0, 1):
            raise UnsupportedModelError(f"node {node.name!r}: layout must be 0 or 1, got {a['layout']!r}")
        D = len(DIRECTIONS[a["direction"]])
        acts = a["activations"]
        if not isinstance(acts, list) or len(acts) != cls.n_acts() * D:
            raise ModelFileError(f"node {node.name!r}: expected {cls.n_acts() * D} activations, got {acts!r}")
        for act in acts:
            if (not isinstance(act, list) or len(act) != 3 or not isinstance(act[0], str)
                    or act[0].lower() not in ACTIVATIONS):
                raise UnsupportedModelError(f"node {node.name!r}: unsupported activation {act!r}")
        if a["clip"] is not None and not (isinstance(a["clip"], (int, float)) and a["clip"] > 0):
            raise ModelFileError(f"node {node.name!r}: clip must be a positive number or null, got {a['clip']!r}")
        cls.validate_extra(node, a)
        ins = list(node.inputs) + [""] * (cls.n_inputs() - len(node.inputs))
        if len(node.inputs) > cls.n_inputs():
            raise ModelFileError(f"node {node.name!r}: too many inputs ({len(node.inputs)})")
        if not ins[0]:
            raise ModelFileError(f"node {node.name!r}: input X is required")
        Hout = cls.out_size(a)
        G = cls.n_gates
        W = const_tensor(node, model, 1, "W", required=True)
        if W.ndim != 3 or W.shape[0] != D or W.shape[1] != G * H:
            raise ModelFileError(f"node {node.name!r}: W has shape {W.shape}, expected ({D}, {G * H}, input_size)")
        R = const_tensor(node, model, 2, "R", required=True)
        if R.shape != (D, G * H, Hout):
            raise ModelFileError(f"node {node.name!r}: R has shape {R.shape}, expected {(D, G * H, Hout)}")
        Bt = const_tensor(node, model, 3, "B")
        if Bt is not None and Bt.shape != (D, 2 * G * H):
            raise ModelFileError(f"node {node.name!r}: B has shape {Bt.shape}, expected {(D, 2 * G * H)}")
        cls.validate_tensors(node, model, a, D, H, Hout)
        names = ("Y", "Y_h", "Y_c")[:len(cls.output_ranks)]
        if len(node.outputs) > len(names) or not any(node.outputs):
            raise ModelFileError(f"node {node.name!r}: needs one to {len(names)} outputs ({', '.join(names)})")

    @classmethod
    def n_acts(cls):
        return 3

    @classmethod
    def n_inputs(cls):
        return 9

    @classmethod
    def out_size(cls, a):
        return a["proj_size"] or a["hidden_size"]

    @classmethod
    def validate_extra(cls, node, a):
        if a["input_forget"] not in (0, 1):
            raise ModelFileError(f"node {node.name!r}: input_forget must be 0 or 1")
        if not isinstance(a["proj_size"], int) or a["proj_size"] < 0:
            raise ModelFileError(f"node {node.name!r}: proj_size must be a non-negative integer")

    @classmethod
    def validate_tensors(cls, node, model, a, D, H, Hout):
        P = const_tensor(node, model, 7, "P")
        if P is not None and P.shape != (D, 3 * H):
            raise ModelFileError(f"node {node.name!r}: P has shape {P.shape}, expected {(D, 3 * H)}")
        Wp = const_tensor(node, model, 8, "W_proj")
        if a["proj_size"]:
            if Wp is None or Wp.shape != (D, Hout, H):
                raise ModelFileError(f"node {node.name!r}: proj_size {a['proj_size']} needs W_proj of shape "
                                     f"{(D, Hout, H)}")
        elif Wp is not None:
            raise ModelFileError(f"node {node.name!r}: W_proj given but proj_size is 0")

    # ------------------------------------------------------------------ compile
    @classmethod
    def prepare(cls, node, model, dtype):
        """Pack the weights into the layouts the kernels read (see lstm_kernels.py / lstm_fast.py); only what the
        chosen kernel reads is packed, since every packed array costs a view per call."""
        a = node.attrs
        D = len(DIRECTIONS[a["direction"]])
        H = a["hidden_size"]
        ins = list(node.inputs) + [""] * (9 - len(node.inputs))
        W = model.tensors[ins[1]].astype(dtype)
        R = model.tensors[ins[2]].astype(dtype)
        B = model.tensors[ins[3]].astype(dtype) if ins[3] else np.zeros((D, 8 * H), dtype)
        packed = {
            "WT": np.ascontiguousarray(W.transpose(0, 2, 1)),                # (D, I, 4H)    i, o, f, c
            "RT": np.ascontiguousarray(R.transpose(0, 2, 1)),                # (D, Hout, 4H) i, o, f, c
            "bias": np.ascontiguousarray(B[:, :4 * H] + B[:, 4 * H:]),       # (D, 4H)       Wb + Rb
            "peep": (np.ascontiguousarray(model.tensors[ins[7]].astype(dtype)) if ins[7]
                     else np.zeros((1, 3 * H), dtype)),                       # (D, 3H)       i, o, f
            "reverse": np.array(DIRECTIONS[a["direction"]], dtype=np.int64),  # (D,) 1 = runs backwards
        }
        if uses_fast_kernel(node, dtype):
            return packed
        packed["projT"] = (np.ascontiguousarray(model.tensors[ins[8]].astype(dtype).transpose(0, 2, 1)) if ins[8]
                           else np.zeros((1, 1, 1), dtype))                  # (D, H, Hout)
        codes, alphas, betas = codes_of([tuple(x) for x in a["activations"]])
        packed["codes"] = codes.reshape(D, 3)                                # (D, 3) f, g, h
        packed["alphas"] = alphas.reshape(D, 3)
        packed["betas"] = betas.reshape(D, 3)
        return packed

    @classmethod
    def emit(cls, node, ctx):
        a = node.attrs
        ins = list(node.inputs) + [""] * (9 - len(node.inputs))
        multi = (uses_fast_kernel(node, ctx.dtype) and ctx.threads > 1 and a["hidden_size"] >= PARALLEL_MIN_HIDDEN)
        extra = None
        if multi:
            # per-thread slices of the packed layouts (D, ., 4H) i, o, f, c -> (D, parts, ., 4*chunk)
            W = ctx.model.tensors[ins[1]].astype(ctx.dtype)                            # (D, 4H, I)
            R = ctx.model.tensors[ins[2]].astype(ctx.dtype)                            # (D, 4H, H)
            Bt = (ctx.model.tensors[ins[3]].astype(ctx.dtype) if ins[3]
                  else np.zeros((W.shape[0], 8 * a["hidden_size"]), ctx.dtype))       # (D, 8H)
            H = a["hidden_size"]
            extra = {"WTp": pack_parts(np.ascontiguousarray(W.transpose(0, 2, 1)), ctx.threads),
                     "RTp": pack_parts(np.ascontiguousarray(R.transpose(0, 2, 1)), ctx.threads),
                     "biasp": pack_parts((Bt[:, :4 * H] + Bt[:, 4 * H:])[:, None, :], ctx.threads)}
        entries = ctx.packed_table(node, extra)
        e = entries["WT"]
        seq, use_seq = ctx.optional(ins[4], dummy("int32", 1))
        h0, use_h0 = ctx.initial_state(node, 0, ins[5])
        c0, use_c0 = ctx.initial_state(node, 1, ins[6])
        X = ctx.value(ins[0])
        outs = ctx.outputs(node, 3)
        sc = ctx.scalar
        common = (f"{seq}, {sc(use_seq)}, {h0}, {sc(use_h0)}, {c0}, {sc(use_c0)}")
        if uses_fast_kernel(node, ctx.dtype):
            fclip = float(a["clip"]) if a["clip"] is not None else float("inf")
            args = (f"{X}, _b, _m, {e}, {sc(bool(ins[7]))}, {common}, {sc(np.float32(fclip))}, "
                    f"{sc(bool(a['input_forget']))}, {sc(int(a['layout']))}")
            if multi:
                ctx.uses_parallel = True
                ctx.line(f"{outs[0]}, {outs[1]}, {outs[2]} = lstm_forward_fast_mt({args})")
            else:
                ctx.line(f"{outs[0]}, {outs[1]}, {outs[2]} = lstm_forward_fast({args})")
        else:
            clip = float(a["clip"]) if a["clip"] is not None else -1.0
            ctx.line(f"{outs[0]}, {outs[1]}, {outs[2]} = lstm_forward({X}, _b, _m, {e}, _sf, {sc(bool(ins[7]))}, "
                     f"{sc(bool(ins[8]))}, {common}, {sc(clip)}, {sc(int(a['input_forget']))}, "
                     f"{sc(int(a['layout']))})")
        ctx.final_state(node, [outs[1], outs[2]])

    @classmethod
    def state_shapes(cls, node, model, batch):
        """Shapes of the streaming state, in the node's layout: h (D, B, Hout) and c (D, B, H); (B, D, .) for layout 1."""
        a = node.attrs
        D = len(DIRECTIONS[a["direction"]])
        shapes = [(D, batch, cls.out_size(a)), (D, batch, a["hidden_size"])][:len(cls.state_names())]
        return [(s[1], s[0], s[2]) if a["layout"] == 1 else s for s in shapes]

    @classmethod
    def state_names(cls):
        return ("h", "c")
