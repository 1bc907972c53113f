"""A slow, obvious numpy LSTM: the reference the engine is tested against where onnxruntime cannot be (float64,
the generic kernel on its own), and a second opinion where it can.

One batch entry, one time step, one gate at a time, in plain numpy; nothing is fused, hoisted or packed. The
semantics are ONNX's LSTM as onnxruntime runs it (each point was checked against onnxruntime by experiment, see
tests/test_lstm_onnxruntime.py):

* gate order i, o, f, c (input, output, forget, cell) in W, R, B; peepholes P in order i, o, f;
* ``clip`` clamps the input of every gate activation (i, f, c and o) to [-clip, clip]; the cell state itself and the
  input of h are not clipped;
* ``input_forget`` couples the forget gate to the input gate: f = 1 - i;
* ``activation_alpha`` / ``activation_beta`` are consumed in order by the activations that take them
  (see ``resolve_activations``);
* with ``sequence_lens``, batch entry b runs its first ``sequence_lens[b]`` steps (reverse: the same steps,
  last first); Y is zero past its end and Y_h / Y_c hold its last valid step (the initial state if it has none).
"""
from __future__ import annotations

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
DEFAULT_ACTIVATIONS = ("Sigmoid", "Tanh", "Tanh")   # f, g, h


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


def lstm_direction(x, W, R, Wb, Rb, P, h0, c0, lens, reverse, acts, clip=None, input_forget=0):
    """One direction, one batch entry and one step at a time.

    x (T, B, I); W (4H, I) and R (4H, H) gates i, o, f, c; Wb, Rb (4H,) i, o, f, c; P (3H,) i, o, f or None;
    h0, c0 (B, H); lens (B,); acts [(name, alpha, beta)] for f, g, h.
    Returns Y (T, B, H), h (B, H), c (B, H).
    """
    T, B, _ = x.shape
    H = R.shape[1]
    (f_name, f_a, f_b), (g_name, g_a, g_b), (h_name, h_a, h_b) = acts
    Y = np.zeros((T, B, H), dtype=x.dtype)
    h_final = np.array(h0, dtype=x.dtype, copy=True)
    c_final = np.array(c0, dtype=x.dtype, copy=True)
    for b in range(B):
        h = h_final[b].copy()
        c = c_final[b].copy()
        steps = range(lens[b] - 1, -1, -1) if reverse else range(lens[b])
        for t in steps:
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
            Y[t, b] = h
        h_final[b] = h
        c_final[b] = c
    return Y, h_final, c_final


def lstm(X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None, *, direction="forward",
         layout=0, activations=None, activation_alpha=None, activation_beta=None, clip=None, input_forget=0,
         dtype=np.float64):
    """The ONNX LSTM node: inputs and attributes as in the ONNX spec, computed in ``dtype``.

    X (T, B, I), or (B, T, I) for layout 1; W (D, 4H, I), R (D, 4H, H) gates i, o, f, c; B (D, 8H) Wb then Rb,
    each i, o, f, c; P (D, 3H) i, o, f; initial_h / initial_c (D, B, H), or (B, D, H) for layout 1.
    Returns Y (T, D, B, H), Y_h (D, B, H), Y_c (D, B, H); for layout 1 (B, T, D, H), (B, D, H), (B, D, H).
    """
    X = np.asarray(X, dtype=dtype)
    if layout == 1:
        X = X.transpose(1, 0, 2)
        initial_h = None if initial_h is None else np.asarray(initial_h).transpose(1, 0, 2)
        initial_c = None if initial_c is None else np.asarray(initial_c).transpose(1, 0, 2)
    T, Bn, _ = X.shape
    D = 2 if direction == "bidirectional" else 1
    H = np.asarray(R).shape[-1]
    W = np.asarray(W, dtype=dtype)
    R = np.asarray(R, dtype=dtype)
    Bias = np.zeros((D, 8 * H), dtype) if B is None else np.asarray(B, dtype=dtype)
    h0 = np.zeros((D, Bn, H), dtype) if initial_h is None else np.asarray(initial_h, dtype=dtype)
    c0 = np.zeros((D, Bn, H), dtype) if initial_c is None else np.asarray(initial_c, dtype=dtype)
    lens = np.full(Bn, T, dtype=np.int64) if sequence_lens is None else np.asarray(sequence_lens, dtype=np.int64)
    names = list(activations or DEFAULT_ACTIVATIONS * D)
    acts = resolve_activations(names, activation_alpha, activation_beta)
    Y = np.zeros((T, D, Bn, H), dtype)
    Y_h = np.zeros((D, Bn, H), dtype)
    Y_c = np.zeros((D, Bn, H), dtype)
    for d in range(D):
        reverse = direction == "reverse" or d == 1
        Wb, Rb = np.split(Bias[d], 2)
        p = None if P is None else np.asarray(P[d], dtype=dtype)
        Y[:, d], Y_h[d], Y_c[d] = lstm_direction(X, W[d], R[d], Wb, Rb, p, h0[d], c0[d], lens, reverse,
                                                 acts[3 * d:3 * d + 3], clip, input_forget)
    if layout == 1:
        return Y.transpose(2, 0, 1, 3), Y_h.transpose(1, 0, 2), Y_c.transpose(1, 0, 2)
    return Y, Y_h, Y_c
