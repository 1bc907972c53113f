"""The kernels of the layer ops (engine/ops/layers.py) and their run function, ``run_layers``."""
import numpy as np
from numba import njit

from ..config import JIT_OPTIONS
from .layers import (ADD, BATCHED_MATMUL, BINARY, CONV1D, DIV, EXP, GATHER_F, GATHER_I, MATMUL, MEAN, MUL, NEG,
                     RELU, SIGMOID, SOFTMAX, SQRT, SUB, TANH, UNARY)
from .numeric import matmul
from .program import ERR_INDEX, OK
from .program_kernels import fview, iview


@njit(**JIT_OPTIONS)
def binary_kernel(op, a, b, out, prog, at):
    """out = a (op) b with broadcasting: index space prog[at:at+6], strides of a, b at prog[at+6:], prog[at+12:]
    (0 along broadcast axes); out is contiguous."""
    n0, n1, n2, n3, n4, n5 = prog[at], prog[at + 1], prog[at + 2], prog[at + 3], prog[at + 4], prog[at + 5]
    k = 0
    for i0 in range(n0):
        for i1 in range(n1):
            for i2 in range(n2):
                for i3 in range(n3):
                    for i4 in range(n4):
                        ao = (i0 * prog[at + 6] + i1 * prog[at + 7] + i2 * prog[at + 8] + i3 * prog[at + 9]
                              + i4 * prog[at + 10])
                        bo = (i0 * prog[at + 12] + i1 * prog[at + 13] + i2 * prog[at + 14] + i3 * prog[at + 15]
                              + i4 * prog[at + 16])
                        sa = prog[at + 11]
                        sb = prog[at + 17]
                        if op == ADD:
                            for i5 in range(n5):
                                out[k + i5] = a[ao + i5 * sa] + b[bo + i5 * sb]
                        elif op == SUB:
                            for i5 in range(n5):
                                out[k + i5] = a[ao + i5 * sa] - b[bo + i5 * sb]
                        elif op == MUL:
                            for i5 in range(n5):
                                out[k + i5] = a[ao + i5 * sa] * b[bo + i5 * sb]
                        elif op == DIV:
                            for i5 in range(n5):
                                out[k + i5] = a[ao + i5 * sa] / b[bo + i5 * sb]
                        else:
                            for i5 in range(n5):
                                out[k + i5] = a[ao + i5 * sa] ** b[bo + i5 * sb]
                        k += n5


@njit(**JIT_OPTIONS)
def unary_kernel(op, x, out):
    n = x.shape[0]
    if op == RELU:
        for i in range(n):
            v = x[i]
            out[i] = v if (v > 0 or v != v) else 0      # NaN stays NaN
    elif op == SIGMOID:
        for i in range(n):
            v = x[i]
            if v >= 0:
                out[i] = 1.0 / (1.0 + np.exp(-v))
            else:
                e = np.exp(v)
                out[i] = e / (1.0 + e)
    elif op == TANH:
        for i in range(n):
            out[i] = np.tanh(x[i])
    elif op == EXP:
        for i in range(n):
            out[i] = np.exp(x[i])
    elif op == NEG:
        for i in range(n):
            out[i] = -x[i]
    elif op == SQRT:
        for i in range(n):
            out[i] = np.sqrt(x[i])
    else:
        for i in range(n):
            out[i] = np.abs(x[i])


@njit(**JIT_OPTIONS)
def softmax_kernel(x, out, log):
    """Softmax (or log-softmax) along the middle axis of x (outer, K, inner), accumulated in float64."""
    outer, K, inner = x.shape
    for o in range(outer):
        for q in range(inner):
            m = -np.inf
            for k in range(K):
                if x[o, k, q] > m:
                    m = x[o, k, q]
            s = 0.0
            for k in range(K):
                s += np.exp(np.float64(x[o, k, q]) - m)
            if log:
                ls = np.log(s)
                for k in range(K):
                    out[o, k, q] = np.float64(x[o, k, q]) - m - ls
            else:
                for k in range(K):
                    out[o, k, q] = np.exp(np.float64(x[o, k, q]) - m) / s


@njit(**JIT_OPTIONS)
def mean_kernel(x, out):
    """out (outer, inner) = mean of x (outer, K, inner) along the middle axis, accumulated in float64."""
    outer, K, inner = x.shape
    for o in range(outer):
        for q in range(inner):
            s = 0.0
            for k in range(K):
                s += x[o, k, q]
            out[o, q] = s / K


@njit(**JIT_OPTIONS)
def gather_kernel(data, idx, out):
    """out (outer, k, inner) = data (outer, n, inner) at idx (k,) along the middle axis; negative indices count
    from the end. Returns ERR_INDEX (and writes nothing) if an index is out of range."""
    outer, n, inner = data.shape
    k = idx.shape[0]
    for j in range(k):
        if idx[j] < -n or idx[j] >= n:
            return ERR_INDEX
    for o in range(outer):
        for j in range(k):
            i = idx[j] + n if idx[j] < 0 else idx[j]
            for q in range(inner):
                out[o, j, q] = data[o, i, q]
    return OK


@njit(**JIT_OPTIONS)
def conv1d_kernel(x, w, bias, use_bias, pad0, stride, dilation, group, out):
    """out (N, M, Lout) = conv1d(x (N, C, L), w (M, C/group, K)) + bias (M,), zero padding pad0 on the left."""
    N, C, L = x.shape
    M, Cg, K = w.shape
    Lout = out.shape[2]
    Mg = M // group
    acc = np.zeros(Lout, dtype=np.float64)
    for n in range(N):
        for m in range(M):
            g = m // Mg
            acc[:] = 0.0
            for c in range(Cg):
                xc = x[n, g * Cg + c]
                for k in range(K):
                    wk = w[m, c, k]
                    off = k * dilation - pad0
                    for j in range(Lout):
                        p = j * stride + off
                        if 0 <= p < L:
                            acc[j] += wk * xc[p]
            b = bias[m] if use_bias else 0.0
            for j in range(Lout):
                out[n, m, j] = acc[j] + b


@njit(**JIT_OPTIONS)
def run_layers(code, prog, pc, F, I):
    p = pc + 3
    if code == BINARY:               # [op, a ref, b ref, out ref, n_out, 18 shape/stride ints]
        n = prog[p + 7]
        out = fview(F, prog, p + 5, n)
        a = F[prog[p + 1]][prog[p + 2]:]
        b = F[prog[p + 3]][prog[p + 4]:]
        binary_kernel(prog[p], a, b, out, prog, p + 8)
    elif code == UNARY:              # [op, x ref, out ref, n]
        n = prog[p + 5]
        unary_kernel(prog[p], fview(F, prog, p + 1, n), fview(F, prog, p + 3, n))
    elif code == MATMUL:             # [a ref, b ref, out ref, R, K, N]: (R, K) @ (K, N)
        R, K, N = prog[p + 6], prog[p + 7], prog[p + 8]
        a = fview(F, prog, p, R * K).reshape((R, K))
        b = fview(F, prog, p + 2, K * N).reshape((K, N))
        out = fview(F, prog, p + 4, R * N).reshape((R, N))
        matmul(a, b, out)
    elif code == BATCHED_MATMUL:     # [a ref, b ref, out ref, batch, M, K, N, b batch stride (0: broadcast)]
        nb, M, K, N, bstep = prog[p + 6], prog[p + 7], prog[p + 8], prog[p + 9], prog[p + 10]
        a = fview(F, prog, p, nb * M * K).reshape((nb, M, K))
        out = fview(F, prog, p + 4, nb * M * N).reshape((nb, M, N))
        bs = F[prog[p + 2]]
        b0 = prog[p + 3]
        for i in range(nb):
            o = b0 + i * bstep
            matmul(a[i], bs[o:o + K * N].reshape((K, N)), out[i])
    elif code == SOFTMAX:            # [x ref, out ref, outer, K, inner, log]
        outer, K, inner = prog[p + 4], prog[p + 5], prog[p + 6]
        n = outer * K * inner
        softmax_kernel(fview(F, prog, p, n).reshape((outer, K, inner)),
                       fview(F, prog, p + 2, n).reshape((outer, K, inner)), prog[p + 7] != 0)
    elif code == MEAN:               # [x ref, out ref, outer, K, inner]
        outer, K, inner = prog[p + 4], prog[p + 5], prog[p + 6]
        mean_kernel(fview(F, prog, p, outer * K * inner).reshape((outer, K, inner)),
                    fview(F, prog, p + 2, outer * inner).reshape((outer, inner)))
    elif code == GATHER_F or code == GATHER_I:   # [data ref, idx ref (int), out ref, outer, n, inner, k]
        outer, n, inner, k = prog[p + 6], prog[p + 7], prog[p + 8], prog[p + 9]
        idx = iview(I, prog, p + 2, k)
        if code == GATHER_F:
            return gather_kernel(fview(F, prog, p, outer * n * inner).reshape((outer, n, inner)), idx,
                                 fview(F, prog, p + 4, outer * k * inner).reshape((outer, k, inner)))
        return gather_kernel(iview(I, prog, p, outer * n * inner).reshape((outer, n, inner)), idx,
                             iview(I, prog, p + 4, outer * k * inner).reshape((outer, k, inner)))
    elif code == CONV1D:             # [x ref, w ref, bias ref, out ref, N, C, L, M, Cg, K, Lout, pad0, stride,
        #                               dilation, group, use_bias]
        N, C, L, M, Cg, K, Lout = (prog[p + 8], prog[p + 9], prog[p + 10], prog[p + 11], prog[p + 12],
                                   prog[p + 13], prog[p + 14])
        use_bias = prog[p + 19] != 0
        conv1d_kernel(fview(F, prog, p, N * C * L).reshape((N, C, L)),
                      fview(F, prog, p + 2, M * Cg * K).reshape((M, Cg, K)),
                      fview(F, prog, p + 4, M) if use_bias else F[0][0:0], use_bias, prog[p + 15], prog[p + 16],
                      prog[p + 17], prog[p + 18], fview(F, prog, p + 6, N * M * Lout).reshape((N, M, Lout)))
    return OK
