"""The kernels of the layer ops (engine/ops/layers.py) and their run function, ``run_layers``."""
import numpy as np
from numba import njit

from ..config import JIT_OPTIONS
from .layers import (ADD, BATCHED_MATMUL, BINARY, CONV1D, DIV, EXP, GATHER_F, GATHER_I, MATMUL, MEAN, MUL, NEG,
                     RELU, SIGMOID, SOFTMAX, SQRT, STFT, SUB, TANH, UNARY)
from .numeric import F32, exp32, matmul_rows_parallel, product, relu as relu_value
from .program import ERR_INDEX, OK, THREADS_AT
from .program_kernels import fview, iview, shaped


@njit(**JIT_OPTIONS)
def binary_kernel(op, a, b, out, prog, at):
    """out = a (op) b with broadcasting: index space prog[at:at+6], strides of a, b at prog[at+6:], prog[at+12:]
    (0 along broadcast axes); out is contiguous. Inner runs where each side is contiguous or one value go through
    views indexed from 0, which vectorise (a[ao + i5 * sa] pays the wraparound check of every index and runs
    scalar: 64 floats 89 against ~10 ns); other strides take the general loop."""
    n0, n1, n2, n3, n4, n5 = prog[at], prog[at + 1], prog[at + 2], prog[at + 3], prog[at + 4], prog[at + 5]
    sa = prog[at + 11]
    sb = prog[at + 17]
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
                        o = out[k:k + n5]
                        if sa == 1 and sb == 1:
                            _vector_vector(op, o, a[ao:ao + n5], b[bo:bo + n5])
                        elif sa == 1 and sb == 0:
                            _vector_value(op, o, a[ao:ao + n5], b[bo])
                        elif sa == 0 and sb == 1:
                            _value_vector(op, o, a[ao], b[bo:bo + n5])
                        else:
                            for i5 in range(n5):
                                o[i5] = _apply(op, a[ao + i5 * sa], b[bo + i5 * sb])
                        k += n5


@njit(**JIT_OPTIONS)
def _apply(op, x, y):
    if op == ADD:
        return x + y
    if op == SUB:
        return x - y
    if op == MUL:
        return x * y
    if op == DIV:
        return x / y
    return x ** y


# the inner runs over views from 0: LLVM inlines _apply and takes the test of op out of the loop, which then
# vectorises as five loops written out would (1024 floats: Add 107 ns, Div by one value 88 ns, either way)
@njit(**JIT_OPTIONS)
def _vector_vector(op, o, x, y):
    for i in range(o.shape[0]):
        o[i] = _apply(op, x[i], y[i])


@njit(**JIT_OPTIONS)
def _vector_value(op, o, x, v):
    for i in range(o.shape[0]):
        o[i] = _apply(op, x[i], v)


@njit(**JIT_OPTIONS)
def _value_vector(op, o, v, y):
    for i in range(o.shape[0]):
        o[i] = _apply(op, v, y[i])


@njit(**JIT_OPTIONS)
def unary_kernel(op, x, out):
    n = x.shape[0]
    if op == RELU:
        for i in range(n):
            out[i] = relu_value(x[i])
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
def _softmax_row32(x, out, log):
    """Softmax (or log-softmax) of one contiguous float32 row: e^(x - max) by exp32, which vectorises (the float64
    exp of the general loop runs one element at a time: 37 rows of 89, a CRNN's CTC head, 17 -> 4.6 us), summed in
    float64."""
    K = x.shape[0]
    m = F32(-np.inf)
    for k in range(K):
        if x[k] > m:
            m = x[k]
    s = 0.0
    if log:
        for k in range(K):
            s += exp32(x[k] - m)
        ls = np.log(s)
        for k in range(K):
            out[k] = np.float64(x[k]) - m - ls
    else:
        for k in range(K):
            e = exp32(x[k] - m)
            out[k] = e
            s += e
        inv = 1.0 / s
        for k in range(K):
            out[k] = out[k] * inv


@njit(**JIT_OPTIONS)
def softmax_kernel(x, out, log):
    """Softmax (or log-softmax) along the middle axis of x (outer, K, inner), accumulated in float64; float32 rows
    along the last axis by _softmax_row32."""
    outer, K, inner = x.shape
    if inner == 1 and x.itemsize == 4:
        rows, orows = x.reshape((outer, K)), out.reshape((outer, K))      # rows typed contiguous: they vectorise
        for o in range(outer):
            _softmax_row32(rows[o], orows[o], log)
        return
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
def reflected(q, L):
    """Position q of a signal of length L mirrored at its ends (reflect padding, pads < L): -1 -> 1, L -> L - 2."""
    if q < 0:
        return -q
    if q >= L:
        return 2 * (L - 1) - q
    return q


@njit(**JIT_OPTIONS)
def conv1d_kernel(x, wt, bias, use_bias, pad0, stride, dilation, out, cols, xT, acc, relu, reflect, threads):
    """out (N, M, Lout) = conv1d(x (N, C, L), W) + bias (M,), padding pad0 on the left (zeros, or with ``reflect``
    the input mirrored at its ends: pads < L), then Relu if ``relu``; ``wt`` is W packed tap-major as
    (group, K * Cg, Mg) (conv1d_weights). Per batch entry and group: the group's input transposed (xT, (L, Cg)), so
    that the patch of every output position (cols, (Lout, K * Cg)) is K contiguous copies of its rows; one product
    with wt[g] (acc, (Lout, Mg)); then bias and the transpose into out."""
    N, C, L = x.shape
    group, KCg, Mg = wt.shape
    Lout = out.shape[2]
    Cg = C // group
    K = KCg // Cg
    for n in range(N):
        for g in range(group):
            for c in range(Cg):
                xc = x[n, g * Cg + c]
                for q in range(L):
                    xT[q, c] = xc[q]
            for j in range(Lout):
                row = cols[j]
                base = j * stride - pad0
                for k in range(K):
                    q = base + k * dilation
                    if reflect:
                        q = reflected(q, L)
                    seg = row[k * Cg:(k + 1) * Cg]
                    if 0 <= q < L:
                        src = xT[q]
                        for c in range(Cg):
                            seg[c] = src[c]
                    else:
                        for c in range(Cg):
                            seg[c] = 0.0
            product(cols, wt[g], acc, threads)   # register tiles or the BLAS: faster than loops from one row on
            for m in range(Mg):
                b = bias[g * Mg + m] if use_bias else 0.0
                o = out[n, g * Mg + m]
                for j in range(Lout):
                    v = acc[j, m] + b
                    o[j] = relu_value(v) if relu else v


@njit(**JIT_OPTIONS)
def fft_inplace(re, im, wr_all, wi_all, n):
    """The complex FFT of (re, im) (n, a power of two, entered in bit-reversed order), in place: iterative radix-2,
    the first two stages as one radix-4 pass without multiplications, every later stage's twiddles contiguous
    (stage h at wr_all[h:2h], wi_all[h:2h]) and its butterflies over slices, so that LLVM vectorises them."""
    h = 1
    if n >= 4:
        for s0 in range(0, n, 4):
            a0r, a0i, a1r, a1i = re[s0], im[s0], re[s0 + 1], im[s0 + 1]
            a2r, a2i, a3r, a3i = re[s0 + 2], im[s0 + 2], re[s0 + 3], im[s0 + 3]
            b0r, b0i, b1r, b1i = a0r + a1r, a0i + a1i, a0r - a1r, a0i - a1i
            b2r, b2i, b3r, b3i = a2r + a3r, a2i + a3i, a2r - a3r, a2i - a3i
            re[s0], im[s0], re[s0 + 2], im[s0 + 2] = b0r + b2r, b0i + b2i, b0r - b2r, b0i - b2i
            # the second butterfly of stage 2 turns by -i
            re[s0 + 1], im[s0 + 1], re[s0 + 3], im[s0 + 3] = b1r + b3i, b1i - b3r, b1r - b3i, b1i + b3r
        h = 4
    while h < n:
        wr = wr_all[h:2 * h]
        wi = wi_all[h:2 * h]
        for start in range(0, n, 2 * h):
            ra = re[start:start + h]
            ia = im[start:start + h]
            rb = re[start + h:start + 2 * h]
            ib = im[start + h:start + 2 * h]
            for k in range(h):
                c = wr[k]
                s = wi[k]
                tr = rb[k] * c - ib[k] * s
                ti = ib[k] * c + rb[k] * s
                rb[k] = ra[k] - tr
                ib[k] = ia[k] - ti
                ra[k] += tr
                ia[k] += ti
        h *= 2


@njit(**JIT_OPTIONS)
def stft_kernel(x, window, consts, bitrev, bias, use_bias, pad0, stride, out, frame, magnitude, relu, reflect):
    """For each frame j of x (N, 1, L) (hop ``stride``, padding pad0 on the left: zeros, or the input mirrored with
    ``reflect``), the DFT of window * frame, then Relu if ``relu``,
    as a convolution with a windowed DFT basis computes it (Conv.pack): into out (N, K + 2, Lout) the real parts in
    rows 0 .. K / 2 and sign * the imaginary parts after them, or with ``magnitude`` into out (N, K / 2 + 1, Lout)
    their magnitudes sqrt(re^2 + im^2) (bias added first).

    A real input of K points is one complex FFT of n = K / 2 points (even samples the real parts, odd ones the
    imaginary), then a split into the K / 2 + 1 bins: half the butterflies of a complex FFT of K. The FFT is
    iterative radix-2 over split re/im arrays, one frame at a time, with the twiddles of each stage contiguous so
    that the butterfly loop over k vectorises. ``consts`` (stft_constants): the stage twiddles cos, -sin (n each:
    stage h at [h, 2h)), the split's cos, -sin (n + 1 each), then the sign; ``bitrev`` (n,) the bit-reversal
    permutation of n (as floats); ``frame`` (2n,) scratch."""
    N, _, L = x.shape
    K = window.shape[0]
    n = K // 2
    nb = n + 1
    Lout = out.shape[2]
    tr_ = consts[0:n]
    ti_ = consts[n:2 * n]
    pc = consts[2 * n:2 * n + nb]
    ps = consts[2 * n + nb:2 * n + 2 * nb]
    sign = consts[2 * n + 2 * nb]
    re = frame[0:n]
    im = frame[n:2 * n]
    half = consts.dtype.type(0.5)
    for b in range(N):
        xs = x[b, 0]
        for j in range(Lout):
            base = j * stride - pad0
            if base >= 0 and base + K <= L:
                for t in range(n):
                    q = np.int64(bitrev[t])
                    re[q] = xs[base + 2 * t] * window[2 * t]
                    im[q] = xs[base + 2 * t + 1] * window[2 * t + 1]
            else:
                for t in range(n):
                    q = np.int64(bitrev[t])
                    i0 = base + 2 * t
                    i1 = i0 + 1
                    if reflect:
                        i0 = reflected(i0, L)
                        i1 = reflected(i1, L)
                    re[q] = xs[i0] * window[2 * t] if 0 <= i0 < L else 0.0
                    im[q] = xs[i1] * window[2 * t + 1] if 0 <= i1 < L else 0.0
            fft_inplace(re, im, tr_, ti_, n)
            # the bins: X[k] = E[k] + e^{-2 pi i k / K} O[k], E and O the spectra of the even and odd samples,
            # E = (Z[k] + conj Z[n - k]) / 2, O = (Z[k] - conj Z[n - k]) / 2i
            for k in range(nb):
                k1 = k if k < n else 0               # Z is periodic in n: Z[n] = Z[0]
                k2 = n - k if k > 0 else 0
                zr, zi = re[k1], im[k1]
                mr, mi = re[k2], -im[k2]
                er = (zr + mr) * half
                ei = (zi + mi) * half
                orr = (zi - mi) * half
                oi = (mr - zr) * half
                c = pc[k]
                s = ps[k]
                vr = er + orr * c - oi * s
                vi = -sign * (ei + oi * c + orr * s)
                if use_bias:
                    vr += bias[k]
                    vi += bias[nb + k]
                if magnitude:
                    out[b, k, j] = np.sqrt(vr * vr + vi * vi)      # >= 0: Relu changes nothing
                elif relu:
                    out[b, k, j] = relu_value(vr)
                    out[b, nb + k, j] = relu_value(vi)
                else:
                    out[b, k, j] = vr
                    out[b, nb + k, j] = vi


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
    elif code == MATMUL:             # [a ref, b ref, out ref, R, K, N, parts]: (R, K) @ (K, N)
        R, K, N = prog[p + 6], prog[p + 7], prog[p + 8]
        a = shaped(fview(F, prog, p, R * K), (R, K))
        b = shaped(fview(F, prog, p + 2, K * N), (K, N))
        out = shaped(fview(F, prog, p + 4, R * N), (R, N))
        if prog[THREADS_AT] == 1 and prog[p + 9] > 1 and out.itemsize == 4:   # beside threaded kernels
            matmul_rows_parallel(a, b, out, prog[p + 9])
        else:
            product(a, b, out, prog[THREADS_AT])
    elif code == BATCHED_MATMUL:     # [a ref, b ref, out ref, batch, M, K, N, b batch stride (0: broadcast)]
        nb, M, K, N, bstep = prog[p + 6], prog[p + 7], prog[p + 8], prog[p + 9], prog[p + 10]
        a = shaped(fview(F, prog, p, nb * M * K), (nb, M, K))
        out = shaped(fview(F, prog, p + 4, nb * M * N), (nb, M, N))
        bs = F[prog[p + 2]]
        b0 = prog[p + 3]
        for i in range(nb):
            o = b0 + i * bstep
            product(a[i], shaped(bs[o:o + K * N], (K, N)), out[i], prog[THREADS_AT])
    elif code == SOFTMAX:            # [x ref, out ref, outer, K, inner, log]
        outer, K, inner = prog[p + 4], prog[p + 5], prog[p + 6]
        n = outer * K * inner
        softmax_kernel(shaped(fview(F, prog, p, n), (outer, K, inner)),
                       shaped(fview(F, prog, p + 2, n), (outer, K, inner)), prog[p + 7] != 0)
    elif code == MEAN:               # [x ref, out ref, outer, K, inner]
        outer, K, inner = prog[p + 4], prog[p + 5], prog[p + 6]
        mean_kernel(shaped(fview(F, prog, p, outer * K * inner), (outer, K, inner)),
                    shaped(fview(F, prog, p + 2, outer * inner), (outer, inner)))
    elif code == GATHER_F or code == GATHER_I:   # [data ref, idx ref (int), out ref, outer, n, inner, k]
        outer, n, inner, k = prog[p + 6], prog[p + 7], prog[p + 8], prog[p + 9]
        idx = iview(I, prog, p + 2, k)
        if code == GATHER_F:
            return gather_kernel(shaped(fview(F, prog, p, outer * n * inner), (outer, n, inner)), idx,
                                 shaped(fview(F, prog, p + 4, outer * k * inner), (outer, k, inner)))
        return gather_kernel(shaped(iview(I, prog, p, outer * n * inner), (outer, n, inner)), idx,
                             shaped(iview(I, prog, p + 4, outer * k * inner), (outer, k, inner)))
    elif code == CONV1D:             # [x ref, wt ref, bias ref, out ref, cols + xT ref, acc ref, N, C, L, M, Cg, K,
        #                               Lout, pad0, stride, dilation, group, use_bias, relu, reflect]
        N, C, L, M, Cg, K, Lout = (prog[p + 12], prog[p + 13], prog[p + 14], prog[p + 15], prog[p + 16],
                                   prog[p + 17], prog[p + 18])
        group = prog[p + 22]
        Mg = M // group
        use_bias = prog[p + 23] != 0
        conv1d_kernel(shaped(fview(F, prog, p, N * C * L), (N, C, L)),
                      shaped(fview(F, prog, p + 2, M * Cg * K), (group, Cg * K, Mg)),
                      fview(F, prog, p + 4, M) if use_bias else F[0][0:0], use_bias, prog[p + 19], prog[p + 20],
                      prog[p + 21], shaped(fview(F, prog, p + 6, N * M * Lout), (N, M, Lout)),
                      shaped(fview(F, prog, p + 8, Lout * Cg * K), (Lout, Cg * K)),
                      shaped(fview(F, prog, p + 8, Lout * Cg * K + L * Cg)[Lout * Cg * K:], (L, Cg)),
                      shaped(fview(F, prog, p + 10, Lout * Mg), (Lout, Mg)), prog[p + 24] != 0, prog[p + 25] != 0,
                      prog[THREADS_AT])
    elif code == STFT:               # [x ref, window ref, twiddles ref, bitrev ref, bias ref, out ref, frame ref,
        #                               N, L, K, Lout, pad0, stride, use_bias, magnitude, relu, reflect]
        N, L, K, Lout = prog[p + 14], prog[p + 15], prog[p + 16], prog[p + 17]
        use_bias, magnitude = prog[p + 20] != 0, prog[p + 21] != 0
        nb = K // 2 + 1
        M = nb if magnitude else 2 * nb
        stft_kernel(shaped(fview(F, prog, p, N * L), (N, 1, L)), fview(F, prog, p + 2, K),
                    fview(F, prog, p + 4, K + 2 * nb + 1), fview(F, prog, p + 6, K // 2),
                    fview(F, prog, p + 8, 2 * nb) if use_bias else F[0][0:0], use_bias, prog[p + 18], prog[p + 19],
                    shaped(fview(F, prog, p + 10, N * M * Lout), (N, M, Lout)), fview(F, prog, p + 12, K), magnitude,
                    prog[p + 22] != 0, prog[p + 23] != 0)
    return OK
