"""The ops of convolutional front ends over images (text-line recognisers, CRNNs): 2-D convolution, max and average
pooling (1-D and 2-D), a per-channel scale and shift (inference batch normalisation), LeakyRelu, Clip, ReduceMax.

The converters resolve what ONNX leaves open: auto_pad becomes explicit pads, a BatchNormalization becomes a
ChannelAffine (or is folded into the convolution before it), GlobalAveragePool / GlobalMaxPool become ReduceMean /
ReduceMax over the spatial axes. Every attribute arrives filled in; the plans check every size, since the kernels
(vision_kernels.py, ``run_vision``) index without bounds checks.

Canonical nodes (layout NCHW; a 1-D pool's input is (N, C, L)):

    Conv2D        X (N, C, H, W), W (M, C/group, kH, kW) constant, B (M,) constant, optional
                  pads [top, left, bottom, right], strides [sH, sW], dilations [dH, dW], group, auto_pad
    MaxPool       X (N, C, [H,] W); kernel_shape, strides, dilations (one per spatial axis), pads (begins, ends),
    AveragePool   auto_pad, ceil_mode 0/1; AveragePool also count_include_pad 0/1
    ChannelAffine X (N, C, ...), scale (C,), bias (C,) constants: X * scale[c] + bias[c]
    LeakyRelu     alpha
    Clip          min, max (null = unbounded)
    ReduceMax     as ReduceMean (engine/ops/layers.py): axes (distinct, non-negative), keepdims

auto_pad is NOTSET (the pads apply) unless the padding depends on a size known only at run time (SAME_UPPER or
SAME_LOWER with a stride over a dynamic axis): then the plan computes the pads for each input size.
"""
import math

import numpy as np

from ..errors import ModelFileError
from .base import Op, check_arity, int_list, is_number, release_pages
from .layers import ReduceMean
from .program import VISION_BASE

CONV2D, MAXPOOL, AVGPOOL, CHANNEL_AFFINE, LEAKY_RELU, CLIP, REDUCE_MAX = range(VISION_BASE, VISION_BASE + 7)

SIZE_LIMIT = 2 ** 31    # kernel sizes, pads, strides and dilations: far beyond any real model, and no overflow

# the least multiply-adds of a convolution (per image and group) for it to run on the Session's threads, split by
# output rows (vision_kernels.conv2d_rows_parallel); smaller ones run on the calling thread. Measured on the 2-core
# Zen 5, 3x3 convolutions with Relu, two threads against one: 0.03 M multiply-adds 0.60x, 0.1 M 0.81x, 0.9 M 1.07x,
# 1.8 M 1.31-1.34x, 3.7-14.7 M 1.28-1.77x, 236 M 1.96-2.82x (one thread's im2col of 7 MiB does not fit the L2; each
# half nearly does). OpenBLAS's two threads on one im2col were slower than one thread's tiles at 5-30 M (the im2col
# written by one core, read by both) and 0.6-1.5x at 236 M. A product with few multiply-adds per output (K = Cg kh kw)
# is bound by writing its output, which a second thread does not speed up: K = 9 (a first convolution over one grey
# channel) 0.79-1.02x, 27-36 0.88-1.07x, 72 1.07-1.08x, 144 and more 1.03-1.86x; hence CONV_THREADS_MIN_K.
CONV_THREADS_MIN_MACS = 1 << 20
CONV_THREADS_MIN_K = 64
POOL_THREADS_MIN_INPUT = 1 << 19      # input values of a pooling split among threads (pool_threads)

# a 2-D convolution's mode (conv_mode; vision_kernels.conv2d_kernel): im2col then a product; a 1x1 kernel at stride 1
# without pads, whose image is its own im2col; or, at stride 1 with at least IMPLICIT_MIN_CG channels a group and
# output channels that fill three quarters of their column groups (window_width), the product read from the image
# where it is, its channels last (vision_kernels.window_product). The Xeon, one thread, 3x3 convolutions with pads
# of 1, the whole kernel (the copy or im2col, the product, bias and Relu) against im2col (2026-11-28, GFLOP/s
# counting the padding's): 64 -> 128 channels over 16 x 200 115-143 against 77-89, 128 -> 256 over 8 x 100 134-167
# against 94-111, 256 -> 256 over 4 x 100 146-177 against 91-108, 32 -> 64 over 16 x 200 120-131 against 82-90,
# 16 -> 32 104-113 against 73-82 (groups of 32); 16 -> 64 over 16 x 100 even; 8 -> 16 0.8x (a group of 64)
IM2COL, DIRECT, IMPLICIT = 0, 1, 2
IMPLICIT_MIN_CG = 16
# An IMPLICIT convolution holds the sums of WINDOW_BLOCK pixels of a row (18 KiB at 64 channels) before writing them
# channels first, and walks each kernel row's run of taps x channels in chunks of at most WINDOW_CHUNK steps, whose
# weights (32 KiB at 64 channels) every tile of the block then reads from the L1, rather than each tile streaming all
# of its K from the L2. The Xeon, one thread, 64-byte aligned buffers, window_product alone in one process
# (2026-11-28, GFLOP/s; before: blocks of 48, each tile over all its kernel rows in registers): 64 -> 128 channels
# over 16 x 100 147 -> 152, 128 -> 256 over 8 x 50 155 -> 161, 256 -> 256 over 4 x 50 168 -> 174, 16 -> 32 over
# 16 x 200 114 -> 119; chunks of 64 / 96 / 128 / 192 steps at blocks of 72: 145-170 / 148-172 / 152-178 / 138-168.
# The medium CRNN at 8 x 200, its instructions one by one, alternating processes: 13.6-13.9 -> 13.1-13.5,
# 12.3-12.6 -> 11.6-11.8, 10.9-11.2 -> 10.6-10.7 ms.
WINDOW_BLOCK = 72
WINDOW_CHUNK = 128


def window_width(Mg):
    """The output channels of an IMPLICIT convolution's column groups: 64, or 32 for 32 or fewer (register tiles of
    12 pixels x 32 channels rather than half-idle ones of 6 x 64). Also compiled for the kernels
    (vision_kernels.implicit_sizes)."""
    return 32 if Mg <= 32 else 64


def implicit_image(Cg, kh, kw, Ho, Wo, dh, dw):
    """(Hp, Wp, floats) of an IMPLICIT convolution's image copied channels last inside its padding: the rows and
    columns its stride-1 windows span, Hp x Wp positions of Cg floats (vision_kernels.pad_channels_last). Also
    compiled for the kernels (vision_kernels.implicit_sizes)."""
    Hp, Wp = Ho + (kh - 1) * dh, Wo + (kw - 1) * dw
    return Hp, Wp, Hp * Wp * Cg


def conv_mode(Cg, Mg, kh, kw, sh, sw, pads):
    """IM2COL, DIRECT or IMPLICIT for a convolution of Cg input and Mg output channels a group (see
    IMPLICIT_MIN_CG). IMPLICIT depends on neither the pads nor the input, so Conv2D.pack lays the weights out
    for it."""
    if (kh, kw) == (1, 1):
        return DIRECT if sh == sw == 1 and not any(pads) else IM2COL
    width = window_width(Mg)
    lanes = (Mg + width - 1) // width * width
    return IMPLICIT if sh == sw == 1 and Cg >= IMPLICIT_MIN_CG and 4 * Mg >= 3 * lanes else IM2COL


def conv_work(mode, Cg, kh, kw, Ho, Wo, dh, dw, rows):
    """The floats of work one thread's image of a convolution takes (``span`` in vision_kernels.conv2d_kernel):
    IM2COL its im2col (kh kw Cg, Ho Wo); IMPLICIT the image with its channels last inside its padding
    (implicit_image), then sums of WINDOW_BLOCK x 64 for each of the ``rows`` parts of a split by
    rows; DIRECT none."""
    if mode == DIRECT:
        return 0
    if mode == IM2COL:
        return Cg * kh * kw * Ho * Wo
    return implicit_image(Cg, kh, kw, Ho, Wo, dh, dw)[2] + WINDOW_BLOCK * 64 * max(1, rows)


def conv_threads(threads, N, Mg, K, Ho, Wo):
    """(threads over images, threads over rows) of a 2-D convolution of N images: the Session's ``threads`` where
    the work is big and deep enough, else 1. A batch of at least ``threads`` images is split by images
    (conv2d_images_parallel, one parallel region for the batch: at 8 images 1.67-1.88x one thread, where the split
    by rows, a region per image, gained 1.1-1.25x); the images left over (N % threads), or every image of a smaller
    batch, by output rows (conv2d_rows_parallel)."""
    if threads <= 1 or K < CONV_THREADS_MIN_K:
        return 1, 1
    macs = Mg * K * Ho * Wo
    images = threads if N >= threads and N * macs >= CONV_THREADS_MIN_MACS else 1
    rows = min(threads, Ho) if Ho > 1 and macs >= CONV_THREADS_MIN_MACS else 1
    return images, rows


def pool_threads(threads, NC, H, W):
    """Threads of a pooling over NC planes of H x W (vision_kernels.pool_planes_parallel, each thread its own
    planes): the Session's ``threads`` from POOL_THREADS_MIN_INPUT input values and at least a plane a thread, else
    1. Pools are bound by reading their input: the Xeon, caches flushed before each call, one thread against two
    (2026-11-28): 2x2 max pools of 64 x 32 x 400 403 -> 291 us, 8 x 128 x 16 x 100 756 -> 594, 8 x 64 x 32 x 200
    1648 -> 1136, 8 x 16 x 32 x 200 494 -> 416; (2, 1) pools of 8 x 256 x 8 x 50 414 -> 389, of 8 x 256 x 4 x 50
    (410 K values) 252 -> 261; 16 x 32 x 100 59 -> 131."""
    if threads <= 1 or NC < threads or NC * H * W < POOL_THREADS_MIN_INPUT:
        return 1
    return threads


def _ints(node, key, n, lo):
    """Attribute ``key``: a list of ``n`` integers in [lo, SIZE_LIMIT)."""
    v = int_list(node, key)
    if len(v) != n or any(not lo <= d < SIZE_LIMIT for d in v):
        raise ModelFileError(f"node {node.name!r} ({node.op}): {key} must be {n} integers in [{lo}, 2**31), "
                             f"got {v}")
    return v


def _flag(node, key):
    if node.attrs.get(key) not in (0, 1):
        raise ModelFileError(f"node {node.name!r} ({node.op}): {key} must be 0 or 1")


def _float_input(p, node, what="X"):
    x = p.input(0)
    if x.kind != "f":
        raise p.unsupported(f"{what} must be a float tensor, not an integer one")
    return x


def same_pads(n, k, stride, dilation, auto_pad):
    """(begin, end) pads of auto_pad SAME_UPPER / SAME_LOWER along one axis: the output has ceil(n / stride)
    positions, and the odd pad goes at the end (UPPER) or the beginning (LOWER)."""
    total = max(0, (-(-n // stride) - 1) * stride + dilation * (k - 1) + 1 - n)
    small, big = total // 2, total - total // 2
    return (small, big) if auto_pad == "SAME_UPPER" else (big, small)


def spatial_pads(node, sizes, kernel, strides, dilations):
    """The node's pads [begins..., ends...] for input ``sizes``: its ``pads``, or those of its ``auto_pad``."""
    auto = node.attrs["auto_pad"]
    if auto == "NOTSET":
        return list(node.attrs["pads"])
    pairs = [same_pads(n, k, s, d, auto) for n, k, s, d in zip(sizes, kernel, strides, dilations)]
    return [b for b, _ in pairs] + [e for _, e in pairs]


def _auto_pad(node):
    if node.attrs.get("auto_pad") not in ("NOTSET", "SAME_UPPER", "SAME_LOWER"):
        raise ModelFileError(f"node {node.name!r} ({node.op}): auto_pad must be NOTSET (explicit pads), SAME_UPPER "
                             f"or SAME_LOWER")


def conv_out(n, k, stride, dilation, pad0, pad1):
    """Output length of a convolution along one axis (0 when the kernel does not fit)."""
    span = n + pad0 + pad1 - dilation * (k - 1) - 1
    return span // stride + 1 if span >= 0 else 0


def pool_out(n, k, stride, dilation, pad0, pad1, ceil_mode):
    """Output length of a pooling along one axis; with ceil_mode, a last window that would start in the end padding
    is dropped (ONNX, PyTorch and onnxruntime agree)."""
    span = n + pad0 + pad1 - dilation * (k - 1) - 1
    if span < 0:
        return 0
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    if (out - 1) * stride >= n + pad0:
        out -= 1
    return out


class Conv2D(Op):
    """2-D convolution as one matrix product per image and group over its windows: im2col's, or at stride 1 the
    padded image read where it is (conv_mode; vision_kernels).
    ``relu`` (true; the converters set it for a Relu that alone reads the output, converters/fusion.py): the output
    passed through Relu, in the same pass that adds the bias."""
    name = "Conv2D"
    attrs = frozenset({"group", "auto_pad", "pads", "strides", "dilations", "relu"})
    packed_inputs = (1,)

    @classmethod
    def validate(cls, node, model):
        check_arity(node, (2, 3))
        _auto_pad(node)
        _ints(node, "pads", 4, 0)
        _ints(node, "strides", 2, 1)
        _ints(node, "dilations", 2, 1)
        group = node.attrs.get("group")
        W = model.tensors.get(node.inputs[1])
        if W is None or W.ndim != 4 or W.dtype.kind != "f" or min(W.shape) < 1:
            raise ModelFileError(f"node {node.name!r} (Conv2D): W must be a float constant (M, C/group, kH, kW) "
                                 f"with no empty dimension")
        if not isinstance(group, int) or isinstance(group, bool) or not 1 <= group <= W.shape[0] or \
                W.shape[0] % group:
            raise ModelFileError(f"node {node.name!r} (Conv2D): group must be a positive integer dividing the "
                                 f"{W.shape[0]} output channels, got {group!r}")
        if not isinstance(node.attrs.get("relu", False), bool):
            raise ModelFileError(f"node {node.name!r} (Conv2D): relu must be true or false")
        if len(node.inputs) > 2 and node.inputs[2]:
            B = model.tensors.get(node.inputs[2])
            if B is None or B.dtype.kind != "f" or B.shape != (W.shape[0],):
                raise ModelFileError(f"node {node.name!r} (Conv2D): B must be a float constant of shape "
                                     f"({W.shape[0]},)")

    @classmethod
    def pack(cls, node, model, dtype, threads):
        # IM2COL and DIRECT: (M, kH, kW, C/group), the kernel rows first: the output rows that read the padding
        # (the first and last of a padded image) multiply a contiguous part of each row (banded_product).
        # IMPLICIT: per group, its output channels in column groups of window_width (zero columns up to a multiple
        # of it), (group, Mg / width, kH kW C/group, width), each tap's channels contiguous (window_product)
        W = model.tensors[node.inputs[1]]
        M, Cg, kh, kw = W.shape
        rows = W.transpose(0, 2, 3, 1).reshape(M, kh * kw * Cg)
        group = node.attrs["group"]
        Mg = M // group
        if conv_mode(Cg, Mg, kh, kw, *node.attrs["strides"], ()) == IMPLICIT:     # (IMPLICIT whatever the pads)
            width = window_width(Mg)
            Mp = (Mg + width - 1) // width * width
            Q = np.zeros((group, Mp, kh * kw * Cg), dtype)
            Q[:, :Mg] = rows.reshape(group, Mg, -1)
            yield "W", np.ascontiguousarray(Q.reshape(group, Mp // width, width, -1).transpose(0, 1, 3, 2))
        else:
            yield "W", np.ascontiguousarray(rows, dtype=dtype)
        release_pages(model, W)

    @classmethod
    def plan(cls, node, p):
        a = node.attrs
        x, bias = _float_input(p, node), p.input(2)
        if x.rank != 4:
            raise p.error(f"X must have rank 4 (N, C, H, W), got shape {x.shape}")
        N, C, H, W = x.shape
        w_off, _ = p.weight("W")
        M, Cg, kh, kw = p.model.tensors[node.inputs[1]].shape
        group = a["group"]
        if C != Cg * group:
            raise p.error(f"X has {C} channels; the weights take {Cg * group} ({Cg} per group, {group} groups)")
        sh, sw = a["strides"]
        dh, dw = a["dilations"]
        pt, pl, pb, pr = spatial_pads(node, (H, W), (kh, kw), (sh, sw), (dh, dw))
        Ho, Wo = conv_out(H, kh, sh, dh, pt, pb), conv_out(W, kw, sw, dw, pl, pr)
        if Ho < 1 or Wo < 1:
            raise p.error(f"the input ({H} x {W}, padded {pt}+{pb} x {pl}+{pr}) is smaller than the kernel "
                          f"({kh} x {kw}, dilations {dh} x {dw})")
        out = p.output(0, (N, M, Ho, Wo))
        if not out.size:
            return
        mode = conv_mode(Cg, M // group, kh, kw, sh, sw, (pt, pl, pb, pr))
        relu = int(a.get("relu", False))
        images, rows = conv_threads(p.threads, N, M // group, Cg * kh * kw, Ho, Wo)
        # one image's work, or one per thread when each takes whole images
        span = conv_work(mode, Cg, kh, kw, Ho, Wo, dh, dw, rows)
        col = p.temp(span * images) if span else None
        label = f", images on {images} threads" if images > 1 else ""
        if rows > 1 and images == 1:
            label = f", rows on {rows} threads"
        elif rows > 1 and N % images:
            label += f", the last {N % images} by rows"
        if label:
            # its threads are Numba's: the plan's BLAS products keep to one thread, as beside the threaded LSTM
            # (an OpenBLAS pool spinning after its product takes a core from them: bench.crnn's small CRNN at two
            # threads took 8.1 ms a call with its linear layer on OpenBLAS's two threads, against 1.7 ms for its
            # instructions timed one by one)
            p.blas_threads = 1
        p.emit(CONV2D, f"conv2d {x.shape} * {(M, Cg, kh, kw)} -> {out.shape}" + (" + relu" if relu else "")
               + (", windows in place" if mode == IMPLICIT else "") + label, *p.ref(x), p.weight_space(), w_off,
               *p.ref(bias), *p.ref(out), *p.ref(col), N, C, H, W, M, Cg, kh, kw, Ho, Wo, pt, pl, sh, sw, dh, dw,
               group, int(bias is not None), mode, relu, rows, images, span)


class MaxPool(Op):
    """Max pooling over 1 or 2 spatial axes; pads never win (they are not values), NaN propagates."""
    name = "MaxPool"
    attrs = frozenset({"kernel_shape", "auto_pad", "pads", "strides", "dilations", "ceil_mode"})
    opcode = MAXPOOL

    @classmethod
    def validate(cls, node, model):
        check_arity(node, 1)
        k = node.attrs.get("kernel_shape")
        if not isinstance(k, list) or len(k) not in (1, 2):
            raise ModelFileError(f"node {node.name!r} ({node.op}): kernel_shape must list 1 or 2 sizes "
                                 f"(1-D or 2-D pooling)")
        n = len(k)
        kernel = _ints(node, "kernel_shape", n, 1)
        _ints(node, "strides", n, 1)
        _ints(node, "dilations", n, 1)
        pads = _ints(node, "pads", 2 * n, 0)
        _auto_pad(node)
        if any(pads[i] >= kernel[i % n] for i in range(2 * n)):
            raise ModelFileError(f"node {node.name!r} ({node.op}): pads {pads} must be smaller than the kernel "
                                 f"{kernel}")
        _flag(node, "ceil_mode")
        if cls is AveragePool:
            _flag(node, "count_include_pad")

    @classmethod
    def plan(cls, node, p):
        a = node.attrs
        x = _float_input(p, node)
        n = len(a["kernel_shape"])
        if x.rank != n + 2:
            raise p.error(f"a {n}-D pooling needs an input of rank {n + 2}, got shape {x.shape}")
        pads = spatial_pads(node, x.shape[2:], a["kernel_shape"], a["strides"], a["dilations"])
        if n == 1:      # (N, C, L) pooled as (N, C, 1, L)
            H, W = 1, x.shape[2]
            (kh, kw), (sh, sw), (dh, dw) = (1, *a["kernel_shape"]), (1, *a["strides"]), (1, *a["dilations"])
            pt, pl, pb, pr = 0, pads[0], 0, pads[1]
        else:
            H, W = x.shape[2:]
            (kh, kw), (sh, sw), (dh, dw) = a["kernel_shape"], a["strides"], a["dilations"]
            pt, pl, pb, pr = pads
        ceil = a["ceil_mode"]
        Ho, Wo = pool_out(H, kh, sh, dh, pt, pb, ceil), pool_out(W, kw, sw, dw, pl, pr, ceil)
        if Ho < 1 or Wo < 1:
            raise p.error(f"the input {x.shape[2:]} (with pads {pads}) is smaller than the pooling window "
                          f"{a['kernel_shape']} (dilations {a['dilations']})")
        shape = list(x.shape[:2]) + ([Wo] if n == 1 else [Ho, Wo])
        out = p.output(0, shape)
        if out.size:
            NC = x.shape[0] * x.shape[1]
            parts = pool_threads(p.threads, NC, H, W)
            if parts > 1:
                p.blas_threads = 1        # Numba's threads: the BLAS keeps to one (see Conv2D.plan)
            p.emit(cls.opcode, f"{node.op.lower()} {x.shape} -> {tuple(shape)}"
                   + (f", planes on {parts} threads" if parts > 1 else ""), *p.ref(x), *p.ref(out), NC, H, W,
                   Ho, Wo, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, a.get("count_include_pad", 0), parts)


class AveragePool(MaxPool):
    """Average pooling; the divisor is the number of input values in the window, or with count_include_pad the
    window's positions inside the padded input."""
    name = "AveragePool"
    attrs = MaxPool.attrs | frozenset({"count_include_pad"})
    opcode = AVGPOOL


class ChannelAffine(Op):
    """X * scale[c] + bias[c] along axis 1: batch normalisation in inference, when it cannot be folded."""
    name = "ChannelAffine"

    @classmethod
    def validate(cls, node, model):
        check_arity(node, 3)
        shapes = []
        for i in (1, 2):
            t = model.tensors.get(node.inputs[i])
            if t is None or t.dtype.kind != "f" or t.ndim != 1:
                raise ModelFileError(f"node {node.name!r} (ChannelAffine): scale and bias must be float constants "
                                     f"of rank 1")
            shapes.append(t.shape)
        if shapes[0] != shapes[1]:
            raise ModelFileError(f"node {node.name!r} (ChannelAffine): scale {shapes[0]} and bias {shapes[1]} "
                                 f"differ in shape")

    @classmethod
    def plan(cls, node, p):
        x, scale, bias = _float_input(p, node), p.input(1), p.input(2)
        C = scale.shape[0]
        if x.rank < 2 or x.shape[1] != C:
            raise p.error(f"X must have rank >= 2 and {C} channels on axis 1, got shape {x.shape}")
        out = p.output(0, x.shape)
        if out.size:
            p.emit(CHANNEL_AFFINE, f"channel affine {x.shape}", *p.ref(x), *p.ref(scale), *p.ref(bias),
                   *p.ref(out), x.shape[0], C, out.size // (x.shape[0] * C))


class LeakyRelu(Op):
    name = "LeakyRelu"
    attrs = frozenset({"alpha"})

    @classmethod
    def validate(cls, node, model):
        check_arity(node, 1)
        alpha = node.attrs.get("alpha")
        if not is_number(alpha) or math.isnan(alpha):
            raise ModelFileError(f"node {node.name!r} (LeakyRelu): alpha must be a number")

    @classmethod
    def plan(cls, node, p):
        x = _float_input(p, node)
        out = p.output(0, x.shape)
        if out.size:
            p.emit(LEAKY_RELU, f"leaky relu {x.shape}", *p.ref(x), *p.ref(out), out.size,
                   p.f64(float(node.attrs["alpha"])))


class Clip(Op):
    """min(max(X, min), max): a min above the max gives the max everywhere (ONNX); NaN stays NaN."""
    name = "Clip"
    attrs = frozenset({"min", "max"})

    @classmethod
    def validate(cls, node, model):
        check_arity(node, 1)
        for key in ("min", "max"):
            v = node.attrs.get(key)
            if v is not None and (not is_number(v) or math.isnan(v)):
                raise ModelFileError(f"node {node.name!r} (Clip): {key} must be a number or null (unbounded)")

    @classmethod
    def plan(cls, node, p):
        x = _float_input(p, node)
        lo, hi = node.attrs["min"], node.attrs["max"]
        out = p.output(0, x.shape)
        if out.size:
            p.emit(CLIP, f"clip {x.shape} to [{lo}, {hi}]", *p.ref(x), *p.ref(out), out.size,
                   p.f64(-math.inf if lo is None else float(lo)), p.f64(math.inf if hi is None else float(hi)))


class ReduceMax(ReduceMean):
    """The maximum over ``axes`` (the plan is ReduceMean's); NaN propagates, an empty reduction gives -inf."""
    name = "ReduceMax"
    opcode = REDUCE_MAX


VISION_OPS = [Conv2D, MaxPool, AveragePool, ChannelAffine, LeakyRelu, Clip, ReduceMax]
