"""The kernels of the vision ops (engine/ops/vision.py) and their run function, ``run_vision``.

Images are read and written through flat views (N, C, H, W in C order); the plans have checked every size, so the
kernels index without bounds checks. Window bounds along an axis are solved once per output row or column (which
kernel taps fall inside the image) instead of testing every tap.
"""
import numpy as np
from numba import njit, prange

from ..config import JIT_OPTIONS, PARALLEL
from .numeric import product, product_add, relu as relu_value, transpose_block, window_tiles
from .program import OK
from .program_kernels import fparam, fview, shaped
from .vision import (AVGPOOL, CHANNEL_AFFINE, CLIP, CONV2D, DIRECT, IMPLICIT, LEAKY_RELU, MAXPOOL, REDUCE_MAX,
                     WINDOW_BLOCK, WINDOW_CHUNK, implicit_image, window_width)

# the plan's sizes of a convolution read in place, compiled for the kernels: one definition for both
_implicit_image = njit(**JIT_OPTIONS)(implicit_image)
_window_width = njit(**JIT_OPTIONS)(window_width)


@njit(**JIT_OPTIONS)
def taps(start, k, dilation, n):
    """(first, end): the taps t in [first, end) of a window starting at ``start`` (k taps, ``dilation`` apart) that
    fall inside [0, n)."""
    first = -(start // dilation) if start < 0 else 0      # ceil(-start / dilation)
    end = (n - 1 - start) // dilation + 1
    if end > k:
        end = k
    if first > end:
        first = end
    return first, end


@njit(**JIT_OPTIONS)
def tap_columns(off, stride, W, Wo):
    """(lo, hi): the output columns wo in [lo, hi) whose input column wo * stride + off is inside [0, W)."""
    lo = -(off // stride) if off < 0 else 0
    hi = (W - 1 - off) // stride + 1
    if hi > Wo:
        hi = Wo
    if hi < 0:                     # the tap is right of the image for every output column (pads wider than W)
        hi = 0
    if lo > hi:
        lo = hi
    return lo, hi


@njit(**JIT_OPTIONS)
def zero(dst):
    for q in range(dst.shape[0]):
        dst[q] = 0


@njit(**JIT_OPTIONS)
def copy_into(dst, src):
    """dst[q] = src[q]; src may be a strided view."""
    for q in range(dst.shape[0]):
        dst[q] = src[q]


@njit(**JIT_OPTIONS)
def im2col_shifted(x, xc, H, W, dr, dc, lo, hi, Ho, col, row):
    """One row of im2col at stride 1 when the output is as wide as the image: the image plane x[xc:] (H, W) shifted
    by dr rows and dc columns, i.e. one contiguous copy, then the columns outside [lo, hi) (which took their values
    from the neighbouring image rows) and the rows outside the image set to 0."""
    P = Ho * W
    ho_lo = min(Ho, max(0, -dr))         # the output rows whose input row ho + dr is inside the image
    ho_hi = max(ho_lo, min(Ho, H - dr))
    zero(col[row:row + ho_lo * W])
    zero(col[row + ho_hi * W:row + P])
    n = (ho_hi - ho_lo) * W
    dst = row + ho_lo * W
    src = xc + (ho_lo + dr) * W + dc
    a = max(0, xc - src)                 # the copy may start or end |dc| values outside the plane: those are
    b = min(n, xc + H * W - src)         # columns outside [lo, hi), zeroed below
    if a < b:
        copy_into(col[dst + a:dst + b], x[src + a:src + b])
    if lo > 0 or hi < W:
        for ho in range(ho_lo, ho_hi):
            base = row + ho * W
            zero(col[base:base + lo])
            zero(col[base + hi:base + W])


@njit(**JIT_OPTIONS)
def im2col(x, xo, Cg, H, W, kh, kw, sh, sw, dh, dw, pt, pl, Ho, Wo, col):
    """col (kh * kw * Cg, Ho * Wo) <- the windows of the image x[xo:] (Cg, H, W): row (i, j, c), in the packed
    weights' order (kernel row, kernel column, channel: Conv2D.pack), holds, for every output position (ho, wo),
    x[c, ho * sh - pt + i * dh, wo * sw - pl + j * dw], or 0 in the padding.

    (Loops index views from 0, so that Numba can drop its negative-index wraparound and vectorise them.)"""
    P = Ho * Wo
    for i in range(kh):
        for j in range(kw):
            off = j * dw - pl
            lo, hi = tap_columns(off, sw, W, Wo)
            for c in range(Cg):
                xc = xo + c * H * W
                r = (i * kw + j) * Cg + c
                if sh == 1 and sw == 1 and Wo == W:
                    im2col_shifted(x, xc, H, W, i * dh - pt, off, lo, hi, Ho, col, r * P)
                    continue
                for ho in range(Ho):
                    ih = ho * sh - pt + i * dh
                    base = r * P + ho * Wo
                    if ih < 0 or ih >= H:
                        zero(col[base:base + Wo])
                        continue
                    src = xc + ih * W + off
                    zero(col[base:base + lo])
                    if lo < hi:
                        if sw == 1:
                            copy_into(col[base + lo:base + hi], x[src + lo:src + hi])
                        else:
                            copy_into(col[base + lo:base + hi], x[src + lo * sw:src + (hi - 1) * sw + 1:sw])
                    zero(col[base + hi:base + Wo])


@njit(**JIT_OPTIONS)
def pad_channels_last(x, xo, Cg, H, W, pt, pl, Hp, Wp, xp):
    """xp (Hp Wp, Cg), flat <- the image x[xo:] (Cg, H, W) with its channels last, inside zeros: its pixel (h, w)
    at position (h + pt) Wp + w + pl; every other position of xp zero. Blocks of 16 channels x 16
    pixels through registers (numeric.transpose_block), the rest element by element."""
    zero(xp[:(pt * Wp + pl) * Cg])
    plane = H * W
    for h in range(H):
        row = ((h + pt) * Wp + pl) * Cg
        for w0 in range(0, W, 16):
            wn = min(16, W - w0)
            for c0 in range(0, Cg, 16):
                cn = min(16, Cg - c0)
                if wn == 16 and cn == 16:
                    transpose_block(x, xo + c0 * plane + h * W + w0, plane, xp, row + w0 * Cg + c0, Cg)
                    continue
                for c in range(cn):
                    src = xo + (c0 + c) * plane + h * W + w0
                    copy_into(xp[row + w0 * Cg + c0 + c:row + (w0 + wn) * Cg + c0 + c:Cg], x[src:src + wn])
        end = ((h + pt + 1) * Wp + pl) * Cg if h + 1 < H else xp.shape[0]
        zero(xp[row + W * Cg:end])


@njit(**JIT_OPTIONS)
def window_product(Q, xp, acc, out, bias, use_bias, m0, relu, Cg, H, kh, kw, pt, dh, dw, Wp, Wo, ho0, ho1):
    """out (Mg, Ho Wo) output rows [ho0, ho1) <- the windows of the image xp (pad_channels_last) @ the weights Q
    (Mg / width rounded up, kh kw Cg, width) in column groups of ``width`` output channels (64, or 32 for 32 or
    fewer: vision.window_width), plus bias[m0 + m] if ``use_bias``, then Relu's rule if ``relu``, without an
    im2col: at stride 1, output pixel (ho, wo) reads, for kernel row i, xp[((ho + i dh) Wp + wo + j dw) Cg + c] over
    taps j and channels c, a run of kw Cg floats when dw = 1 (else kw runs of Cg). The sums of WINDOW_BLOCK pixels
    of a row gather in ``acc`` (WINDOW_BLOCK x width) over the kernel rows they read inside the image (kernel_rows:
    the rows wholly in the padding are skipped), in chunks of each run of at most WINDOW_CHUNK steps: every register
    tile of the block (numeric.window_tiles: six pixels x 64 channels, or 12 x 32) sums one chunk, whose weights
    stay in the L1 for all the block's tiles; then the block goes out channels first (sums_out)."""
    isz = acc.itemsize
    oo = out.strides[0] // isz
    Mg = out.shape[0]
    width = Q.shape[2]
    Kc = kh * kw * Cg
    run = kw * Cg if dw == 1 else Cg
    runs = 1 if dw == 1 else kw
    pieces = -(-run // WINDOW_CHUNK)
    chunk = -(-run // pieces)          # the run in equal chunks of at most WINDOW_CHUNK steps
    dst = out.reshape(-1)
    flat = Q.reshape(-1)
    for q in range(Q.shape[0]):
        nc = min(width, Mg - q * width)
        for ho in range(ho0, ho1):
            lo, hi = kernel_rows(ho, H, kh, 1, dh, pt)
            for w0 in range(0, Wo, WINDOW_BLOCK):
                nb = min(WINDOW_BLOCK, Wo - w0)
                if lo >= hi:
                    zero(acc[:nb * width])
                first = True
                for i in range(lo, hi):
                    for j in range(runs):
                        for k0 in range(0, run, chunk):
                            window_tiles(width, nb, first, acc, 0, width, flat,
                                         (q * Kc + (i * kw + j) * Cg + k0) * width * isz, xp,
                                         ((ho + i * dh) * Wp + w0 + j * dw) * Cg + k0, Cg, min(chunk, run - k0))
                            first = False
                sums_out(acc, width, nb, nc, bias, use_bias, m0 + q * width, relu, dst,
                         q * width * oo + ho * Wo + w0, oo)


@njit(**JIT_OPTIONS)
def sums_out(acc, width, nb, nc, bias, use_bias, b0, relu, dst, d0, oo):
    """dst[d0 + c oo + u] <- acc[u width + c] + bias[b0 + c] (if ``use_bias``), then Relu's rule (if ``relu``), for
    the pixels u < nb and channels c < nc: a block of window_product's sums, pixels x channels, written channels
    first. The bias and Relu in a pass over acc as it is (contiguous), then 16 x 16 blocks through registers
    (numeric.transpose_block), the rest element by element. Element by element throughout it took ~0.9 ns an
    element, ~0.37 so (the Xeon): 16 -> 32 channels over 16 x 200, the whole convolution, 86 -> 104-113 GFLOP/s.
    Where the channels' planes are whole 64-byte lines apart, the first pixels go element by element up to a line's
    start, so that every block's sixteen stores are aligned: an output larger than the L2 (eight images of 128
    channels x 16 x 100, 6.5 MiB), sums_out alone, 1.31 -> 0.94 ms; within the L2 even."""
    z = acc.dtype.type(0)
    sums = acc[:nb * width].reshape((nb, width))       # (indices from ranges: no negative-index wraparound, so the
    b = bias[b0:b0 + nc]                               # loops over channels vectorise)
    for u in range(nb):
        row = sums[u]
        if use_bias:
            for c in range(nc):
                row[c] += b[c]
        if relu:                         # Relu's rule (NaN stays NaN, -0.0 gives 0) in one compare: a select
            for c in range(nc):
                v = row[c]
                row[c] = z if v <= z else v
    for c0 in range(0, nc, 16):
        cn = min(16, nc - c0)
        u0 = 0
        if cn == 16:
            if oo % 16 == 0:         # the blocks' stores 64-byte aligned (dst is, as the plan's buffers are)
                u0 = min(nb, -(d0 + c0 * oo) % 16)
                for c in range(c0, c0 + cn):
                    copy_into(dst[d0 + c * oo:d0 + c * oo + u0], sums[:u0, c])
            while u0 + 16 <= nb:
                transpose_block(acc, u0 * width + c0, width, dst, d0 + c0 * oo + u0, oo)
                u0 += 16
        for c in range(c0, c0 + cn):
            copy_into(dst[d0 + c * oo + u0:d0 + c * oo + nb], sums[u0:nb, c])


@njit(**JIT_OPTIONS)
def kernel_rows(ho, H, kh, sh, dh, pt):
    """The kernel rows [lo, hi) that output row ho reads inside the image (its input rows ho * sh - pt + i * dh in
    [0, H)); the others read the padding. lo <= hi; neither grows with ho (the first output row has the largest
    lo, the last the smallest hi)."""
    top = ho * sh - pt
    lo = 0 if top >= 0 else min(kh, (dh - 1 - top) // dh)
    last = H - 1 - top
    hi = 0 if last < 0 else min(kh, last // dh + 1)
    return lo, max(lo, hi)


@njit(**JIT_OPTIONS)
def padded_rows(H, kh, sh, dh, pt, Ho):
    """Whether some output row of a convolution reads kernel rows in the padding: its first or its last does then
    (kernel_rows)."""
    return kernel_rows(0, H, kh, sh, dh, pt)[0] > 0 or kernel_rows(Ho - 1, H, kh, sh, dh, pt)[1] < kh


@njit(**JIT_OPTIONS)
def banded_product(wg, cols, out, H, kh, sh, dh, pt, Wo):
    """out (Mg, Ho Wo) <- wg (Mg, kh Cg kw) @ cols (kh Cg kw, Ho Wo), K in (kernel row, channel, column) order
    (Conv2D.pack, im2col), over each band of output rows only the kernel rows it reads inside the image
    (kernel_rows): the rest of K multiplies the padding's zeros, a sixth of a 3x3 convolution with pads of 1 at
    four output rows, a twelfth at eight. A row wholly in the padding gets 0. Register tiles (product_add)."""
    Ho = out.shape[1] // Wo
    per = wg.shape[1] // kh
    out[:, :] = 0
    h0 = 0
    while h0 < Ho:
        lo, hi = kernel_rows(h0, H, kh, sh, dh, pt)
        h1 = h0 + 1
        while h1 < Ho and kernel_rows(h1, H, kh, sh, dh, pt) == (lo, hi):
            h1 += 1
        if lo < hi:
            product_add(wg[:, lo * per:hi * per], cols[lo * per:hi * per, h0 * Wo:h1 * Wo], out[:, h0 * Wo:h1 * Wo])
        h0 = h1


@njit(**JIT_OPTIONS)
def bias_relu(row, b, relu):
    """row += b, then Relu's rule if ``relu`` (NaN stays NaN), in one pass: a convolution's output channel."""
    if relu:
        for q in range(row.shape[0]):
            row[q] = relu_value(row[q] + b)
    else:
        for q in range(row.shape[0]):
            row[q] += b


@njit(**JIT_OPTIONS)
def conv2d_kernel(x, w, bias, use_bias, col, mode, span, N, C, H, W, M, Cg, kh, kw, Ho, Wo, pt, pl, sh, sw, dh, dw,
                  group, out, relu, rows, images):
    """out (N, M, Ho, Wo) = conv2d(x (N, C, H, W), w) + bias (M,), all flat, then Relu's rule with ``relu`` (NaN
    stays NaN), in one pass with the bias; w the model's (M, Cg, kh, kw) as Conv2D.pack lays it out for ``mode``
    (vision.conv_mode). Per image and group: IM2COL, im2col into col, then out_g (Mg, Ho Wo) = w_g (Mg, kh kw Cg)
    @ col (kh kw Cg, Ho Wo), the output rows that read padding over the other kernel rows only (banded_product);
    DIRECT, a 1x1 kernel at stride 1 without pads, whose col is the image itself; IMPLICIT, stride 1: the image
    with its channels last inside its padding in col, the product read from it where it is (window_product), w_g
    in column groups (Mg / width rounded up, kh kw Cg, width). ``span``: the work of one thread's image in col
    (vision.conv_work). Threads (the plan's choice, vision.conv_threads): the first N - N % images images split by
    images among ``images`` threads (conv2d_images_parallel; col holds one image's work per thread), the rest each
    split by output rows among ``rows`` threads (conv2d_rows_parallel)."""
    Mg = M // group
    first = 0
    if images > 1:
        first = N - N % images
        conv2d_images_parallel(x, w, bias, use_bias, col, mode, span, first, C, H, W, M, Cg, kh, kw, Ho, Wo, pt, pl,
                               sh, sw, dh, dw, group, out, relu, images)
    for n in range(first, N):
        if rows > 1:
            for g in range(group):
                conv2d_rows_parallel(x, w, bias, use_bias, col, mode, n, g, C, H, W, M, Mg, Cg, kh, kw, Ho, Wo, pt,
                                     pl, sh, sw, dh, dw, out, relu, rows)
        else:
            conv2d_image(x, w, bias, use_bias, col, mode, n, C, H, W, M, Cg, kh, kw, Ho, Wo, pt, pl, sh, sw, dh, dw,
                         group, out, relu)


@njit(**JIT_OPTIONS)
def implicit_sizes(Cg, Mg, kh, kw, Ho, Wo, dh, dw):
    """(Hp, Wp, Mg rounded up to its column groups' width, the width, the floats of the padded image at the start of
    col) of an IMPLICIT convolution (pad_channels_last): the rows and columns its stride-1 windows span. WINDOW_BLOCK
    x 64 floats of sums follow them in col, one per part of a split by rows (vision.conv_work)."""
    Hp, Wp, padded = _implicit_image(Cg, kh, kw, Ho, Wo, dh, dw)
    width = _window_width(Mg)
    return Hp, Wp, (Mg + width - 1) // width * width, width, padded


@njit(**JIT_OPTIONS)
def conv2d_image(x, w, bias, use_bias, col, mode, n, C, H, W, M, Cg, kh, kw, Ho, Wo, pt, pl, sh, sw, dh, dw, group,
                 out, relu):
    """conv2d_kernel's work for image n on the calling thread, col (one image's span) its scratch."""
    Mg = M // group
    Kc = Cg * kh * kw
    P = Ho * Wo
    banded = mode != DIRECT and padded_rows(H, kh, sh, dh, pt, Ho)
    for g in range(group):
        xo = (n * C + g * Cg) * H * W
        oo = (n * M + g * Mg) * P
        wg = shaped(w[g * Mg * Kc:(g + 1) * Mg * Kc], (Mg, Kc))
        og = shaped(out[oo:oo + Mg * P], (Mg, P))
        if mode == IMPLICIT:
            Hp, Wp, Mp, width, padded = implicit_sizes(Cg, Mg, kh, kw, Ho, Wo, dh, dw)
            pad_channels_last(x, xo, Cg, H, W, pt, pl, Hp, Wp, col[:padded])
            window_product(shaped(w[g * Mp * Kc:(g + 1) * Mp * Kc], (Mp // width, Kc, width)), col[:padded],
                           col[padded:padded + WINDOW_BLOCK * 64], og, bias, use_bias, g * Mg, relu, Cg, H, kh, kw, pt,
                           dh, dw, Wp, Wo, 0, Ho)
            continue
        if mode == DIRECT:
            cols = shaped(x[xo:xo + Kc * P], (Kc, P))
        else:
            im2col(x, xo, Cg, H, W, kh, kw, sh, sw, dh, dw, pt, pl, Ho, Wo, col)
            cols = shaped(col[:Kc * P], (Kc, P))
        if banded:
            banded_product(wg, cols, og, H, kh, sh, dh, pt, Wo)
        else:
            product(wg, cols, og, np.int64(1))
        if use_bias or relu:
            for m in range(Mg):
                bias_relu(og[m], bias[g * Mg + m] if use_bias else out.dtype.type(0), relu)


@njit(parallel=PARALLEL, **JIT_OPTIONS)
def conv2d_images_parallel(x, w, bias, use_bias, col, mode, span, N, C, H, W, M, Cg, kh, kw, Ho, Wo, pt, pl, sh, sw,
                           dh, dw, group, out, relu, parts):
    """conv2d_kernel over images [0, N) split among ``parts`` threads, one parallel region for them all: thread t
    runs images [t N / parts, (t + 1) N / parts) exactly as one thread would (conv2d_image), its work in its own
    ``span`` of col (parts spans), so the results are one thread's bit for bit."""
    for t in prange(parts):
        mine = col[t * span:(t + 1) * span] if mode != DIRECT else col
        for n in range(t * N // parts, (t + 1) * N // parts):
            conv2d_image(x, w, bias, use_bias, mine, mode, n, C, H, W, M, Cg, kh, kw, Ho, Wo, pt, pl, sh, sw, dh,
                         dw, group, out, relu)


@njit(parallel=PARALLEL, **JIT_OPTIONS)
def conv2d_rows_parallel(x, w, bias, use_bias, col, mode, n, g, C, H, W, M, Mg, Cg, kh, kw, Ho, Wo, pt, pl, sh, sw,
                         dh, dw, out, relu, parts):
    """conv2d_kernel's work for image n and group g split by output rows over ``parts`` threads (parts <= Ho): each
    makes the im2col of its own rows, into its own span of col, so that no thread reads what another wrote, and
    multiplies it on its own register tiles (no BLAS pool competes with the threads for the cores), then adds the
    bias and applies Relu to its columns. The results are the one-thread kernel's to float32 rounding: a part's
    width may put a column in a narrower tile than one thread's (whose one-row variant sums K in two streams).
    IMPLICIT: the image is copied channels last once, before the threads; each then runs window_product over its own
    output rows with its own block of sums (WINDOW_BLOCK x 64 floats after the copy), the one thread's result bit for
    bit."""
    Kc = Cg * kh * kw
    P = Ho * Wo
    xo = (n * C + g * Cg) * H * W
    oo = (n * M + g * Mg) * P
    wg = shaped(w[g * Mg * Kc:(g + 1) * Mg * Kc], (Mg, Kc))
    whole = shaped(out[oo:oo + Mg * P], (Mg, P))
    Hp, Wp, Mp, width, padded = implicit_sizes(Cg, Mg, kh, kw, Ho, Wo, dh, dw)
    if mode == IMPLICIT:
        pad_channels_last(x, xo, Cg, H, W, pt, pl, Hp, Wp, col[:padded])
    for t in prange(parts):
        ho0 = t * Ho // parts
        rows = (t + 1) * Ho // parts - ho0
        p0, pn = ho0 * Wo, rows * Wo
        if mode == IMPLICIT:
            window_product(shaped(w[g * Mp * Kc:(g + 1) * Mp * Kc], (Mp // width, Kc, width)), col[:padded],
                           col[padded + WINDOW_BLOCK * 64 * t:padded + WINDOW_BLOCK * 64 * (t + 1)], whole, bias,
                           use_bias, g * Mg, relu, Cg, H, kh, kw, pt, dh, dw, Wp, Wo, ho0, ho0 + rows)
        else:
            if mode == DIRECT:           # the image is its own col: this part's columns of it
                cols = shaped(x[xo:xo + Kc * P], (Kc, P))[:, p0:p0 + pn]
            else:                        # rows ho0.. of the output: the same windows with the top pad moved up
                mine = col[Kc * p0:Kc * (p0 + pn)]
                im2col(x, xo, Cg, H, W, kh, kw, sh, sw, dh, dw, pt - ho0 * sh, pl, rows, Wo, mine)
                cols = shaped(mine, (Kc, pn))
            # its rows that read padding over the other kernel rows only; without any, one band: the whole product
            banded_product(wg, cols, whole[:, p0:p0 + pn], H, kh, sh, dh, pt - ho0 * sh, Wo)
            if use_bias or relu:
                for m in range(Mg):
                    row = oo + m * P + p0
                    bias_relu(out[row:row + pn], bias[g * Mg + m] if use_bias else out.dtype.type(0), relu)


@njit(**JIT_OPTIONS)
def _max_in(m, v):
    """pool_kernel's running maximum: v replaces m when larger or NaN (so NaN propagates, and of two equal values,
    -0.0 and 0.0, the first stays)."""
    return v if (v > m or v != v) else m


@njit(**JIT_OPTIONS)
def tiled_max_pool(x, NC, H, W, Ho, Wo, kh, kw, out):
    """out (NC, Ho, Wo) = pool_kernel's max for windows that tile the image (stride = kernel, no pads, no dilation,
    each window inside): a CRNN's 2x2 and (2, 1) pools. kw is 1 or 2: the loop over the output columns then reads
    whole rows (two interleaved streams for kw = 2), which vectorises, where the general kernel's strided taps did
    not (64 x 32 x 400, 2x2: 282 -> 71 us; 16 x 32 x 100: 23 -> 4.4 us). The taps are taken in pool_kernel's order,
    so the results are its results bit for bit."""
    for nc in range(NC):
        for ho in range(Ho):
            o = out[(nc * Ho + ho) * Wo:(nc * Ho + ho + 1) * Wo]
            for i in range(kh):
                r = x[(nc * H + ho * kh + i) * W:(nc * H + ho * kh + i + 1) * W]
                if kw == 1:
                    if i == 0:
                        for wo in range(Wo):
                            o[wo] = r[wo]
                    else:
                        for wo in range(Wo):
                            o[wo] = _max_in(o[wo], r[wo])
                elif i == 0:
                    for wo in range(Wo):
                        o[wo] = _max_in(r[2 * wo], r[2 * wo + 1])
                else:
                    for wo in range(Wo):
                        o[wo] = _max_in(_max_in(o[wo], r[2 * wo]), r[2 * wo + 1])


@njit(**JIT_OPTIONS)
def pool_kernel(average, x, NC, H, W, Ho, Wo, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, include_pad, out):
    """out (NC, Ho, Wo) = max or mean of x (NC, H, W) over each window (kh x kw taps, dilated, strided, padded).
    Max: padding never wins, NaN propagates, a window without input values gives -inf. Mean: divided by the number
    of taps inside the image, or with ``include_pad`` inside the padded image.

    One output row at a time, tap by tap: each tap updates the run of output columns it falls inside the image for,
    a loop over contiguous outputs. The loops index x and out directly, unsigned (a slice per tap cost ~100 ns, and
    a signed index keeps Numba's negative-index check): a CRNN's 2x2 max pool of 16 x 32 x 100, 34 -> 23 us, its
    mean 62 -> 24 us (Zen 5). A mean's divisor depends only on the output column and the row's taps: counted once
    per call. Max windows that tile the image with kw <= 2 take tiled_max_pool."""
    if (not average and kw <= 2 and kh == sh and kw == sw and (dh == 1 or kh == 1) and (dw == 1 or kw == 1)
            and pt == 0 and pl == 0 and Ho * kh <= H and Wo * kw <= W):
        tiled_max_pool(x, NC, H, W, Ho, Wo, kh, kw, out)
        return
    U = np.uint64
    fill = 0.0 if average else -np.inf
    # the output columns whose window lies wholly inside the image (or the padded image): kw taps each
    span = dw * (kw - 1)
    full_lo = -(-pl // sw) if not include_pad else 0
    full_hi = min(Wo, ((W + (pr if include_pad else 0) - 1 + pl - span) // sw) + 1)
    nj = np.empty(Wo if average else 0, np.int64)      # a mean's taps along the row, per output column
    for wo in range(nj.shape[0]):
        if full_lo <= wo < full_hi:
            nj[wo] = kw
        else:
            w0 = wo * sw - pl
            if include_pad:
                nj[wo] = min(kw, (W + pr - 1 - w0) // dw + 1)
            else:
                j0, j1 = taps(w0, kw, dw, W)
                nj[wo] = j1 - j0
    usw = U(sw)
    for nc in range(NC):
        for ho in range(Ho):
            h0 = ho * sh - pt
            i0, i1 = taps(h0, kh, dh, H)
            ob = U((nc * Ho + ho) * Wo)
            for wo in range(U(Wo)):
                out[ob + wo] = fill
            for i in range(i0, i1):
                xr = (nc * H + h0 + i * dh) * W
                for j in range(kw):
                    off = j * dw - pl
                    lo, hi = tap_columns(off, sw, W, Wo)
                    if lo >= hi:
                        continue
                    a = U(xr + off + lo * sw)          # inside the image: tap_columns' bounds
                    o = ob + U(lo)
                    if average:
                        for q in range(U(hi - lo)):
                            out[o + q] += x[a + q * usw]
                    else:
                        for q in range(U(hi - lo)):
                            out[o + q] = _max_in(out[o + q], x[a + q * usw])
            if average:
                ni = min(kh, (H + pb - 1 - h0) // dh + 1) if include_pad else i1 - i0
                for wo in range(U(Wo)):
                    out[ob + wo] /= ni * nj[wo]


@njit(parallel=PARALLEL, **JIT_OPTIONS)
def pool_planes_parallel(average, x, NC, H, W, Ho, Wo, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, include_pad, out,
                         parts):
    """pool_kernel over the NC planes split among ``parts`` threads, each its own planes: the one thread's result
    bit for bit (a plane's outputs depend on that plane alone). One part: pool_kernel on the calling thread."""
    if parts <= 1:
        pool_kernel(average, x, NC, H, W, Ho, Wo, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, include_pad, out)
        return
    for t in prange(parts):
        a, b = t * NC // parts, (t + 1) * NC // parts
        pool_kernel(average, x[a * H * W:b * H * W], b - a, H, W, Ho, Wo, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr,
                    include_pad, out[a * Ho * Wo:b * Ho * Wo])


@njit(**JIT_OPTIONS)
def reduce_max_kernel(x, out):
    """out (outer, inner) = max of x (outer, K, inner) along the middle axis; NaN propagates, K = 0 gives -inf."""
    outer, K, inner = x.shape
    for o in range(outer):
        for q in range(inner):
            out[o, q] = -np.inf
        for k in range(K):
            for q in range(inner):
                v = x[o, k, q]
                if v > out[o, q] or v != v:
                    out[o, q] = v


@njit(**JIT_OPTIONS)
def run_vision(code, prog, pc, F, I):
    p = pc + 3
    if code == CONV2D:      # [x, w, bias, out, col refs, N, C, H, W, M, Cg, kh, kw, Ho, Wo, pt, pl, sh, sw, dh, dw,
        #                      group, use_bias, mode, relu, rows, images (threads: vision.conv_threads), span
        #                      (the work of one thread's image: vision.conv_work)]
        N, C, H, W, M, Cg, kh, kw, Ho, Wo = (prog[p + 10], prog[p + 11], prog[p + 12], prog[p + 13], prog[p + 14],
                                             prog[p + 15], prog[p + 16], prog[p + 17], prog[p + 18], prog[p + 19])
        use_bias, mode, relu, span = prog[p + 27] != 0, prog[p + 28], prog[p + 29] != 0, prog[p + 32]
        x = fview(F, prog, p, N * C * H * W)
        col = x[0:0] if mode == DIRECT else fview(F, prog, p + 8, span * prog[p + 31])
        group = prog[p + 26]
        # IMPLICIT: each group's weights in column groups of output channels (vision.Conv2D.pack)
        wn = group * implicit_sizes(Cg, M // group, kh, kw, Ho, Wo, 1, 1)[2] * Cg * kh * kw if mode == IMPLICIT \
            else M * Cg * kh * kw
        conv2d_kernel(x, fview(F, prog, p + 2, wn), fview(F, prog, p + 4, M) if use_bias else x[0:0],
                      use_bias, col, mode, span, N, C, H, W, M, Cg, kh, kw, Ho, Wo, prog[p + 20], prog[p + 21],
                      prog[p + 22], prog[p + 23], prog[p + 24], prog[p + 25], prog[p + 26],
                      fview(F, prog, p + 6, N * M * Ho * Wo), relu, prog[p + 30], prog[p + 31])
    elif code == MAXPOOL or code == AVGPOOL:   # [x, out refs, NC, H, W, Ho, Wo, kh, kw, sh, sw, dh, dw, pt, pl, pb,
        #                                         pr, count_include_pad, parts (threads: vision.pool_threads)]
        NC, H, W, Ho, Wo = prog[p + 4], prog[p + 5], prog[p + 6], prog[p + 7], prog[p + 8]
        pool_planes_parallel(code == AVGPOOL, fview(F, prog, p, NC * H * W), NC, H, W, Ho, Wo, prog[p + 9],
                             prog[p + 10], prog[p + 11], prog[p + 12], prog[p + 13], prog[p + 14], prog[p + 15],
                             prog[p + 16], prog[p + 17], prog[p + 18], prog[p + 19] != 0,
                             fview(F, prog, p + 2, NC * Ho * Wo), prog[p + 20])
    elif code == CHANNEL_AFFINE:   # [x, scale, bias, out refs, N, C, inner]: out = x * scale[c] + bias[c]
        N, C, inner = prog[p + 8], prog[p + 9], prog[p + 10]
        x = fview(F, prog, p, N * C * inner)
        scale, bias = fview(F, prog, p + 2, C), fview(F, prog, p + 4, C)
        out = fview(F, prog, p + 6, N * C * inner)
        for n in range(N):
            for c in range(C):
                s, b = scale[c], bias[c]
                o = (n * C + c) * inner
                xr, orow = x[o:o + inner], out[o:o + inner]
                for q in range(inner):
                    orow[q] = xr[q] * s + b
    elif code == LEAKY_RELU:       # [x, out refs, n, alpha]
        n = prog[p + 4]
        alpha = fparam(prog, p + 5)
        x, out = fview(F, prog, p, n), fview(F, prog, p + 2, n)
        for i in range(n):
            v = x[i]
            out[i] = v if v >= 0 else alpha * v
    elif code == CLIP:             # [x, out refs, n, min, max]: a min above the max gives the max
        n = prog[p + 4]
        lo, hi = fparam(prog, p + 5), fparam(prog, p + 6)
        x, out = fview(F, prog, p, n), fview(F, prog, p + 2, n)
        for i in range(n):
            v = x[i]
            v = lo if v < lo else v
            out[i] = hi if v > hi else v
    elif code == REDUCE_MAX:       # [x, out refs, outer, K, inner]
        outer, K, inner = prog[p + 4], prog[p + 5], prog[p + 6]
        reduce_max_kernel(shaped(fview(F, prog, p, outer * K * inner), (outer, K, inner)),
                          shaped(fview(F, prog, p + 2, outer * inner), (outer, inner)))
    return OK
