"""Slow, obvious numpy LSTM, GRU and RNN: the reference the engine's kernels are tested against
(tests/test_kernels.py), in float64 where onnxruntime has nothing to offer, and a second opinion where it has.

One batch entry, one time step, one gate at a time, in plain numpy; nothing is fused, hoisted or packed. The
semantics are ONNX's recurrent ops as onnxruntime runs them (each point was checked against onnxruntime by
experiment, see tests/test_lstm_vs_onnxruntime.py and tests/test_gru_rnn_vs_onnxruntime.py):

* gate order i, o, f, c (input, output, forget, cell) in the LSTM's W, R, B; peepholes P in order i, o, f;
  z, r, h (update, reset, hidden) in the GRU's; the RNN has one gate;
* ``clip`` clamps the input of every gate activation to [-clip, clip]; the LSTM's cell state itself and the
  input of its h are not clipped;
* ``input_forget`` couples the LSTM's forget gate to its input gate: f = 1 - i;
* ``linear_before_reset`` (GRU) applies the reset gate after the recurrent product: r * (h Rh + Rbh);
* ``activation_alpha`` / ``activation_beta`` are consumed in order by the activations that take them
  (see ``resolve_activations``);
* with ``sequence_lens``, batch entry b runs its first ``sequence_lens[b]`` steps (reverse: the same steps,
  last first); Y is zero past its end and the final state holds its last valid step, or zeros if it has none
  (onnxruntime ignores the initial state of an empty sequence).

The LSTM also takes PyTorch's projection (``W_proj``, proj_size), an extension the engine supports.

Below the recurrent ops: a 1-D convolution (``conv1d``, one output at a time) and Pad (``pad``: crop, then numpy's
np.pad, the order onnxruntime uses), the references of the layer and control kernels (tests/test_control_kernels.py).
"""
from __future__ import annotations

import functools

import numpy as np

# name (lower case) -> (takes alpha, takes beta, alpha if the list runs out, beta if the list runs out)
ACTIVATION_PARAMS = {
    "sigmoid": (False, False, 0.0, 0.0),
    "tanh": (False, False, 0.0, 0.0),
    "relu": (False, False, 0.0, 0.0),
    "affine": (True, True, 0.0, 0.0),
    "leakyrelu": (True, False, 0.01, 0.0),
    "thresholdedrelu": (True, False, 0.0, 0.0),
    "scaledtanh": (True, True, 0.0, 0.0),
    "hardsigmoid": (True, True, 0.2, 0.5),
    "elu": (True, False, 1.0, 0.0),
    "softsign": (False, False, 0.0, 0.0),
    "softplus": (False, False, 0.0, 0.0),
}


def activation(name: str, alpha: float, beta: float, x: np.ndarray) -> np.ndarray:
    """The ONNX recurrent-op activation ``name`` applied elementwise; NaN in, NaN out."""
    x = np.asarray(x)
    one = x.dtype.type(1)
    zero = x.dtype.type(0)
    key = name.lower()
    with np.errstate(over="ignore", invalid="ignore"):
        if key == "sigmoid":
            return one / (one + np.exp(-x))
        if key == "tanh":
            return np.tanh(x)
        if key == "relu":
            return np.maximum(x, zero)        # NaN stays NaN
        if key == "affine":
            return alpha * x + beta
        if key == "leakyrelu":
            return np.where(x >= 0, x, alpha * x)
        if key == "thresholdedrelu":
            return np.where((x > alpha) | np.isnan(x), x, zero)
        if key == "scaledtanh":
            return alpha * np.tanh(beta * x)
        if key == "hardsigmoid":
            v = alpha * x + beta
            return np.where(np.isnan(v), v, np.clip(v, 0, 1))
        if key == "elu":
            return np.where(x >= 0, x, alpha * (np.exp(x) - one))
        if key == "softsign":
            return np.where(np.isinf(x), np.sign(x), x / (one + np.abs(x)))
        if key == "softplus":
            return np.logaddexp(zero, x)      # log(1 + e^x), without overflowing to inf for large x
    raise ValueError(f"unknown activation {name!r}")


def resolve_activations(names, alphas=None, betas=None) -> list:
    """ONNX ``activations`` + ``activation_alpha`` / ``activation_beta`` -> [(name, alpha, beta)] per function.

    The alpha list is consumed in order by the functions that take an alpha, and likewise the beta list; a function
    whose list has run out gets its default (onnxruntime's convention)."""
    alphas = list(alphas or [])
    betas = list(betas or [])
    out = []
    for name in names:
        takes_a, takes_b, default_a, default_b = ACTIVATION_PARAMS[name.lower()]
        a = alphas.pop(0) if takes_a and alphas else default_a
        b = betas.pop(0) if takes_b and betas else default_b
        out.append((name, float(a), float(b)))
    return out


def _clip(x, clip):
    return x if clip is None else np.clip(x, -clip, clip)


def _float_math(fn):
    """NaN and inf inputs are test cases here: their invalid operations are expected, not worth a warning."""
    @functools.wraps(fn)
    def quiet(*args, **kwargs):
        with np.errstate(invalid="ignore", over="ignore"):
            return fn(*args, **kwargs)
    return quiet


def _steps(length, reverse):
    return range(length - 1, -1, -1) if reverse else range(length)


@_float_math
def lstm_direction(x, W, R, Wb, Rb, P, h0, c0, lens, reverse, acts, clip=None, input_forget=0, W_proj=None):
    """One direction, one batch entry and one step at a time.

    x (T, B, I); W (4H, I) and R (4H, Hout) gates i, o, f, c; Wb, Rb (4H,) i, o, f, c; P (3H,) i, o, f or None;
    W_proj (Hout, H) or None (then Hout = H); h0 (B, Hout), c0 (B, H); lens (B,); acts [(name, alpha, beta)] for
    f, g, h. Returns Y (T, B, Hout), h (B, Hout), c (B, H).
    """
    T, B, _ = x.shape
    H = W.shape[0] // 4
    Hout = R.shape[1]
    (f_name, f_a, f_b), (g_name, g_a, g_b), (h_name, h_a, h_b) = acts
    Y = np.zeros((T, B, Hout), dtype=x.dtype)
    h_final = np.zeros((B, Hout), dtype=x.dtype)
    c_final = np.zeros((B, H), dtype=x.dtype)
    for b in range(B):
        if lens[b] == 0:
            continue                                     # no step: the final state is zero
        h = np.array(h0[b], dtype=x.dtype)
        c = np.array(c0[b], dtype=x.dtype)
        for t in _steps(lens[b], reverse):
            gates = W @ x[t, b] + R @ h + Wb + Rb
            gi, go, gf, gc = np.split(gates, 4)          # i, o, f, c
            if P is not None:
                pi, po, pf = np.split(P, 3)              # i, o, f
                gi = gi + pi * c
                gf = gf + pf * c
            i = activation(f_name, f_a, f_b, _clip(gi, clip))
            if input_forget:
                f = 1 - i
            else:
                f = activation(f_name, f_a, f_b, _clip(gf, clip))
            g = activation(g_name, g_a, g_b, _clip(gc, clip))
            c = f * c + i * g
            if P is not None:
                go = go + po * c                         # the output gate looks at the new cell state
            o = activation(f_name, f_a, f_b, _clip(go, clip))
            h = o * activation(h_name, h_a, h_b, c)
            if W_proj is not None:
                h = W_proj @ h
            Y[t, b] = h
        h_final[b] = h
        c_final[b] = c
    return Y, h_final, c_final


@_float_math
def gru_direction(x, W, R, Wb, Rb, h0, lens, reverse, acts, clip=None, linear_before_reset=0):
    """One GRU direction, one batch entry and one step at a time.

    x (T, B, I); W (3H, I) and R (3H, H) gates z, r, h; Wb, Rb (3H,) z, r, h; h0 (B, H); lens (B,);
    acts [(name, alpha, beta)] for f (z and r) and g (the candidate h). Returns Y (T, B, H), h (B, H).
    """
    T, B, _ = x.shape
    H = R.shape[1]
    (f_name, f_a, f_b), (g_name, g_a, g_b) = acts
    Wz, Wr, Wh = np.split(W, 3)                          # z, r, h
    Rz, Rr, Rh = np.split(R, 3)
    Wbz, Wbr, Wbh = np.split(Wb, 3)
    Rbz, Rbr, Rbh = np.split(Rb, 3)
    Y = np.zeros((T, B, H), dtype=x.dtype)
    h_final = np.zeros((B, H), dtype=x.dtype)
    for b in range(B):
        if lens[b] == 0:
            continue
        h = np.array(h0[b], dtype=x.dtype)
        for t in _steps(lens[b], reverse):
            xt = x[t, b]
            z = activation(f_name, f_a, f_b, _clip(Wz @ xt + Rz @ h + Wbz + Rbz, clip))
            r = activation(f_name, f_a, f_b, _clip(Wr @ xt + Rr @ h + Wbr + Rbr, clip))
            if linear_before_reset:
                gh = Wh @ xt + r * (Rh @ h + Rbh) + Wbh
            else:
                gh = Wh @ xt + Rh @ (r * h) + Rbh + Wbh
            hc = activation(g_name, g_a, g_b, _clip(gh, clip))
            h = (1 - z) * hc + z * h
            Y[t, b] = h
        h_final[b] = h
    return Y, h_final


@_float_math
def rnn_direction(x, W, R, Wb, Rb, h0, lens, reverse, acts, clip=None):
    """One RNN direction: h = f(W x + R h + Wb + Rb). x (T, B, I); W (H, I); R (H, H); Wb, Rb (H,); h0 (B, H);
    acts [(name, alpha, beta)] for f. Returns Y (T, B, H), h (B, H)."""
    T, B, _ = x.shape
    H = R.shape[1]
    ((f_name, f_a, f_b),) = acts
    Y = np.zeros((T, B, H), dtype=x.dtype)
    h_final = np.zeros((B, H), dtype=x.dtype)
    for b in range(B):
        if lens[b] == 0:
            continue
        h = np.array(h0[b], dtype=x.dtype)
        for t in _steps(lens[b], reverse):
            h = activation(f_name, f_a, f_b, _clip(W @ x[t, b] + R @ h + Wb + Rb, clip))
            Y[t, b] = h
        h_final[b] = h
    return Y, h_final


DEFAULTS = {"LSTM": ("Sigmoid", "Tanh", "Tanh"), "GRU": ("Sigmoid", "Tanh"), "RNN": ("Tanh",)}
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def recurrent(op, X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None, W_proj=None, *,
              direction="forward", layout=0, activations=None, activation_alpha=None, activation_beta=None,
              clip=None, input_forget=0, linear_before_reset=0, dtype=np.float64):
    """The ONNX LSTM, GRU or RNN node ``op``: inputs and attributes as in the ONNX spec, computed in ``dtype``.

    X (T, B, I), or (B, T, I) for layout 1; W (D, G*H, I), R (D, G*H, Hout) with G = 4 (i, o, f, c), 3 (z, r, h)
    or 1; B (D, 2*G*H) Wb then Rb; P (D, 3H) i, o, f and W_proj (D, Hout, H), LSTM only; initial_h (D, B, Hout)
    and initial_c (D, B, H), or (B, D, .) for layout 1.
    Returns [Y (T, D, B, Hout), Y_h (D, B, Hout)] and, for the LSTM, Y_c (D, B, H); for layout 1 (B, T, D, Hout)
    and (B, D, .).
    """
    X = np.asarray(X, dtype=dtype)
    if layout == 1:
        X = X.transpose(1, 0, 2)
        initial_h = None if initial_h is None else np.asarray(initial_h).transpose(1, 0, 2)
        initial_c = None if initial_c is None else np.asarray(initial_c).transpose(1, 0, 2)
    T, Bn, _ = X.shape
    D = 2 if direction == "bidirectional" else 1
    W = np.asarray(W, dtype=dtype)
    R = np.asarray(R, dtype=dtype)
    H = W.shape[1] // GATES[op]
    Hout = R.shape[2]
    Bias = np.zeros((D, 2 * GATES[op] * H), dtype) if B is None else np.asarray(B, dtype=dtype)
    h0 = np.zeros((D, Bn, Hout), dtype) if initial_h is None else np.asarray(initial_h, dtype=dtype)
    c0 = np.zeros((D, Bn, H), dtype) if initial_c is None else np.asarray(initial_c, dtype=dtype)
    lens = np.full(Bn, T, dtype=np.int64) if sequence_lens is None else np.asarray(sequence_lens, dtype=np.int64)
    n = len(DEFAULTS[op])
    acts = resolve_activations(list(activations or DEFAULTS[op] * D), activation_alpha, activation_beta)
    outs = [np.zeros((T, D, Bn, Hout), dtype), np.zeros((D, Bn, Hout), dtype)]
    if op == "LSTM":
        outs.append(np.zeros((D, Bn, H), dtype))
    for d in range(D):
        reverse = direction == "reverse" or d == 1
        Wb, Rb = np.split(Bias[d], 2)
        common = dict(lens=lens, reverse=reverse, acts=acts[n * d:n * d + n], clip=clip)
        if op == "LSTM":
            p = None if P is None else np.asarray(P[d], dtype=dtype)
            proj = None if W_proj is None else np.asarray(W_proj[d], dtype=dtype)
            res = lstm_direction(X, W[d], R[d], Wb, Rb, p, h0[d], c0[d], input_forget=input_forget, W_proj=proj,
                                 **common)
        elif op == "GRU":
            res = gru_direction(X, W[d], R[d], Wb, Rb, h0[d], linear_before_reset=linear_before_reset, **common)
        else:
            res = rnn_direction(X, W[d], R[d], Wb, Rb, h0[d], **common)
        outs[0][:, d] = res[0]
        for k in range(1, len(outs)):
            outs[k][d] = res[k]
    if layout == 1:
        return [outs[0].transpose(2, 0, 1, 3)] + [o.transpose(1, 0, 2) for o in outs[1:]]
    return outs


def lstm(X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None, **attrs):
    """The ONNX LSTM node (see ``recurrent``): Y, Y_h, Y_c."""
    return recurrent("LSTM", X, W, R, B, sequence_lens, initial_h, initial_c, P, **attrs)


def gru(X, W, R, B=None, sequence_lens=None, initial_h=None, **attrs):
    """The ONNX GRU node (see ``recurrent``): Y, Y_h."""
    return recurrent("GRU", X, W, R, B, sequence_lens, initial_h, **attrs)


def rnn(X, W, R, B=None, sequence_lens=None, initial_h=None, **attrs):
    """The ONNX RNN node (see ``recurrent``): Y, Y_h."""
    return recurrent("RNN", X, W, R, B, sequence_lens, initial_h, **attrs)


# ---------------------------------------------------------------------- layers and control
@_float_math
def conv1d(x, W, B=None, pads=(0, 0), stride=1, dilation=1, group=1):
    """The ONNX Conv node in one dimension: x (N, C, L), W (M, C / group, K), B (M,) -> (N, M, Lout), one output
    element at a time, in float64."""
    x, W = np.asarray(x, np.float64), np.asarray(W, np.float64)
    N, C, L = x.shape
    M, Cg, K = W.shape
    xp = np.concatenate([np.zeros((N, C, pads[0])), x, np.zeros((N, C, pads[1]))], axis=2)
    Lout = (L + pads[0] + pads[1] - dilation * (K - 1) - 1) // stride + 1
    Mg = M // group
    out = np.zeros((N, M, Lout))
    for n in range(N):
        for m in range(M):
            g = m // Mg
            for j in range(Lout):
                patch = xp[n, g * Cg:(g + 1) * Cg, j * stride:j * stride + dilation * (K - 1) + 1:dilation]
                out[n, m, j] = np.sum(patch * W[m]) + (0.0 if B is None else B[m])
    return out


def pad(x, pads, mode, value=0.0):
    """The ONNX Pad node (every axis; pads: all begins, then all ends): negative pads crop first, then numpy pads
    what is left (constant, reflect, edge, wrap). ValueError where onnxruntime refuses: reflect pads that are not
    smaller than what is left of the axis, edge or wrap of an empty axis."""
    x = np.asarray(x)
    rank = x.ndim
    begin, end = pads[:rank], pads[rank:]
    crop, width = [], []
    for d, b, e in zip(x.shape, begin, end):
        if d + b + e < 0 or (d + min(b, 0) + min(e, 0) < 0 and mode != "constant"):
            raise ValueError("crops more than the axis")
        if d + min(b, 0) + min(e, 0) < 0:        # constant: crops it all, then d + b + e of the fill value
            crop.append(slice(0, 0))
            width.append((d + b + e, 0))
        else:
            crop.append(slice(max(-b, 0), d - max(-e, 0)))
            width.append((max(b, 0), max(e, 0)))
    x = x[tuple(crop)]
    for d, (b, e) in zip(x.shape, width):
        if mode == "reflect" and max(b, e) > max(d - 1, 0):
            raise ValueError("reflect pads too large")
        if mode in ("edge", "wrap") and d == 0 and b + e > 0:
            raise ValueError(f"{mode} of an empty axis")
    if mode == "constant":
        return np.pad(x, width, mode="constant", constant_values=value)
    return np.pad(x, width, mode=mode)
