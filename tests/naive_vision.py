"""Slow, obvious numpy versions of the vision ops (engine/ops/vision.py): the reference their kernels are tested
against (tests/test_vision_kernels.py), in float64.

Each one is written the way the ONNX spec reads, not the way the kernels compute: a convolution is a sum over kernel
taps of shifted, strided slices of the zero-padded image (no im2col, no matrix product); a pooling window gathers
its values one by one and reduces them with numpy. Layout NCHW; a 1-D pooling's input is (N, C, L).
"""
from __future__ import annotations

import math

import numpy as np


def conv2d(x, w, b=None, pads=(0, 0, 0, 0), strides=(1, 1), dilations=(1, 1), group=1):
    """x (N, C, H, W), w (M, C/group, kH, kW), b (M,), pads (top, left, bottom, right) -> (N, M, Ho, Wo)."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    N, C, H, W = x.shape
    M, Cg, kh, kw = w.shape
    pt, pl, pb, pr = pads
    sh, sw = strides
    dh, dw = dilations
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    Ho = (H + pt + pb - dh * (kh - 1) - 1) // sh + 1
    Wo = (W + pl + pr - dw * (kw - 1) - 1) // sw + 1
    Mg = M // group
    out = np.zeros((N, M, Ho, Wo))
    with np.errstate(invalid="ignore", over="ignore"):
        for g in range(group):
            for i in range(kh):
                for j in range(kw):
                    patch = xp[:, g * Cg:(g + 1) * Cg, i * dh:i * dh + sh * (Ho - 1) + 1:sh,
                               j * dw:j * dw + sw * (Wo - 1) + 1:sw]                     # (N, Cg, Ho, Wo)
                    out[:, g * Mg:(g + 1) * Mg] += np.einsum("nchw,mc->nmhw", patch, w[g * Mg:(g + 1) * Mg, :, i, j])
        if b is not None:
            out += np.asarray(b, np.float64)[None, :, None, None]
    return out


def _pool_len(n, k, s, d, p0, p1, ceil_mode):
    """ONNX: floor or ceil of (n + p0 + p1 - d (k - 1) - 1) / s, plus 1; in ceil mode a window that would start
    in the end padding is dropped."""
    span = (n + p0 + p1 - d * (k - 1) - 1) / s
    out = (math.ceil(span) if ceil_mode else math.floor(span)) + 1
    if ceil_mode and (out - 1) * s >= n + p0:
        out -= 1
    return out


def pool(x, mode, kernel, strides=None, pads=None, dilations=None, ceil_mode=0, count_include_pad=0):
    """MaxPool ("max") or AveragePool ("avg") over the last 1 or 2 axes of x, window by window."""
    x = np.asarray(x, np.float64)
    n = len(kernel)
    strides = strides or [1] * n
    dilations = dilations or [1] * n
    pads = pads or [0] * (2 * n)
    spatial = x.shape[2:]
    outs = [_pool_len(spatial[a], kernel[a], strides[a], dilations[a], pads[a], pads[a + n], ceil_mode)
            for a in range(n)]
    out = np.empty(x.shape[:2] + tuple(outs))
    for idx in np.ndindex(*outs):
        values, positions = [], 1
        starts = [idx[a] * strides[a] - pads[a] for a in range(n)]
        for taps in np.ndindex(*kernel):
            where = [starts[a] + taps[a] * dilations[a] for a in range(n)]
            if all(0 <= where[a] < spatial[a] for a in range(n)):
                values.append(x[(slice(None), slice(None)) + tuple(where)])
        if count_include_pad:
            positions = 1
            for a in range(n):   # the taps inside the padded input, along each axis
                positions *= sum(1 for t in range(kernel[a])
                                 if starts[a] + t * dilations[a] < spatial[a] + pads[a + n])
        at = (slice(None), slice(None)) + idx
        if mode == "max":
            out[at] = np.max(values, axis=0) if values else -np.inf
        else:
            total = np.sum(values, axis=0) if values else np.zeros(x.shape[:2])
            with np.errstate(invalid="ignore"):
                out[at] = total / (positions if count_include_pad else len(values))
    return out


def channel_affine(x, scale, bias):
    x = np.asarray(x, np.float64)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return x * np.asarray(scale, np.float64).reshape(shape) + np.asarray(bias, np.float64).reshape(shape)


def batch_norm(x, scale, bias, mean, var, epsilon):
    """ONNX BatchNormalization in inference mode: (x - mean) / sqrt(var + epsilon) * scale + bias, per channel."""
    x = np.asarray(x, np.float64)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    f = lambda v: np.asarray(v, np.float64).reshape(shape)   # noqa: E731
    return (x - f(mean)) / np.sqrt(f(var) + epsilon) * f(scale) + f(bias)


def leaky_relu(x, alpha):
    x = np.asarray(x, np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(x >= 0, x, alpha * x)


def clip(x, lo=None, hi=None):
    """np.minimum(np.maximum(x, lo), hi): a min above the max gives the max; NaN stays NaN."""
    x = np.asarray(x, np.float64)
    if lo is not None:
        x = np.where(np.isnan(x), x, np.maximum(x, lo))
    if hi is not None:
        x = np.where(np.isnan(x), x, np.minimum(x, hi))
    return x


def reduce(x, mode, axes, keepdims):
    x = np.asarray(x, np.float64)
    fn = np.max if mode == "max" else np.mean
    return fn(x, axis=tuple(axes), keepdims=bool(keepdims))
