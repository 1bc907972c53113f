"""The vision ops (engine/ops/vision.py: Conv2D, MaxPool, AveragePool, ChannelAffine, LeakyRelu, Clip, ReduceMax;
and 4-D Transpose) against the slow float64 numpy reference (tests/naive_vision.py), each run as a one-node model
built with engine.Model (no converter, no torch, no onnxruntime), in float32 and in float64 precision.

Tolerances follow the error bound of a sum of K products (llm.c's ``t_eff``, here with the bound's own scale):
|got - ref| <= 4 K eps (|x| * |w| + |b|) for a convolution, eps the compute type's, where ``|x| * |w|`` is the
convolution of the absolute values; a wrong tap, pad or stride is off by O(1) and fails. Max pooling, clips,
transposes and ReduceMax must be exact; an average of n values within (n + 1) eps of the average of their absolute
values, affine maps within a few eps of the value. NaN and +-inf must land where the reference puts them.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import engine
import naive_vision as nv

F32, F64 = np.float32, np.float64


def single(op, attrs, x_rank, tensors=None, out_rank=None, dtype="float32", x_dtype=None):
    """A model of one ``op`` node reading input "x" (every dimension free) and the named constant tensors."""
    tensors = dict(tensors or {})
    x = engine.TensorSpec("x", [f"x{i}" for i in range(x_rank)], x_dtype or dtype)
    y = engine.TensorSpec("y", [f"y{i}" for i in range(x_rank if out_rank is None else out_rank)], dtype)
    node = engine.Node(op, op.lower(), ["x", *tensors], ["y"], attrs)
    return engine.Model(inputs=[x], outputs=[y], nodes=[node], tensors=tensors, dtype=dtype)


def run(model, x, precision, threads=None):
    return engine.Session(model, precision=precision, threads=threads).run(None, {"x": x.astype(precision)})[0]


def assert_close(got, ref, tol, what):
    """Same NaN and +-inf positions; finite values within ``tol`` (a scalar or an array like ref)."""
    got = np.asarray(got, F64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape}, reference {ref.shape}"
    assert np.array_equal(np.isnan(got), np.isnan(ref)), f"{what}: NaN positions differ"
    assert np.array_equal(np.isposinf(got), np.isposinf(ref)) and np.array_equal(np.isneginf(got), np.isneginf(ref)), \
        f"{what}: infinities differ"
    finite = np.isfinite(ref)
    tol = np.broadcast_to(np.asarray(tol, F64), ref.shape)
    with np.errstate(invalid="ignore"):
        err = np.abs(got - ref)
    bad = finite & ~(err <= tol)
    assert not bad.any(), f"{what}: diff {err[bad].max():.3g} > tolerance {tol[bad][np.argmax(err[bad])]:.3g}"


def eps(precision):
    return float(np.finfo(precision).eps)


# ---------------------------------------------------------------------- Conv2D
CONV_CASES = [
    # name: N, C, H, W, M, (kh, kw), attrs
    ("3x3-valid", 2, 3, 8, 13, 4, (3, 3), {}),
    ("3x3-same", 2, 3, 8, 13, 4, (3, 3), {"pads": [1, 1, 1, 1]}),
    ("same-width-asymmetric", 1, 2, 6, 9, 3, (2, 4), {"pads": [0, 1, 1, 2]}),
    ("same-width-dilated", 1, 2, 7, 8, 2, (3, 3), {"pads": [3, 2, 1, 2], "dilations": [2, 2]}),
    ("same-width-wider-than-the-image", 1, 1, 3, 2, 2, (3, 5), {"pads": [1, 2, 1, 2]}),
    ("same-upper-stride-1", 1, 3, 5, 7, 2, (4, 4), {"auto_pad": "SAME_UPPER"}),
    ("same-width-pad-beyond-the-image", 1, 2, 1, 6, 2, (3, 3), {"pads": [5, 1, 0, 1]}),
    ("same-width-pads-on-both-ends", 1, 1, 2, 5, 2, (2, 1), {"pads": [4, 0, 3, 0]}),
    ("asymmetric-pads", 1, 2, 7, 9, 3, (3, 2), {"pads": [2, 0, 1, 3]}),
    ("strides", 2, 2, 11, 10, 5, (3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 3]}),
    ("dilations", 1, 3, 12, 14, 2, (3, 3), {"pads": [2, 1, 0, 2], "dilations": [2, 3]}),
    ("stride-beyond-kernel", 1, 1, 9, 17, 2, (2, 2), {"strides": [3, 4]}),
    ("groups", 2, 6, 6, 7, 4, (3, 3), {"pads": [1, 1, 1, 1], "group": 2}),
    ("depthwise", 1, 4, 5, 8, 4, (3, 3), {"pads": [1, 1, 1, 1], "group": 4}),
    ("1x1-direct", 2, 5, 4, 6, 7, (1, 1), {}),
    ("1x1-strided", 1, 5, 6, 6, 3, (1, 1), {"strides": [2, 2]}),
    ("1x1-padded", 1, 2, 3, 3, 2, (1, 1), {"pads": [1, 0, 0, 1]}),
    ("kernel-as-big-as-padded-input", 1, 2, 3, 4, 3, (5, 6), {"pads": [1, 1, 1, 1]}),
    ("tall-kernel-no-bias", 1, 2, 32, 5, 3, (7, 1), {"pads": [3, 0, 3, 0], "bias": False}),
    ("same-upper-strided", 1, 2, 9, 10, 3, (3, 4), {"auto_pad": "SAME_UPPER", "strides": [2, 3]}),
    ("same-lower-dilated", 1, 2, 9, 10, 3, (3, 2), {"auto_pad": "SAME_LOWER", "strides": [2, 1], "dilations": [2, 2]}),
    # wider outputs: a multiple of 16 positions (the register tiles on one thread in float32), not one (the BLAS),
    # a strided window (im2col row by row, not the shifted copy)
    ("wide-output-tiles", 2, 4, 8, 16, 6, (3, 3), {"pads": [1, 1, 1, 1], "group": 2}),
    ("wide-output-blas", 1, 3, 4, 100, 5, (3, 3), {"pads": [1, 1, 1, 1]}),
    ("wide-output-strided", 1, 2, 20, 30, 3, (3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 1]}),
    # stride 1, 16 input channels a group and more, output channels filling 3/4 of their groups of 64, or of 32
    # for 32 and fewer (conv_mode): the image with its channels last read in place (listed "windows in place"):
    # tiles of six pixels and fewer (12, 6, 3 and 1 at 32 channels), blocks of 72 pixels and fewer, runs of taps x
    # channels in chunks (WINDOW_CHUNK: 300 in three, dilated taps' 136 channels in two), a second group
    # of channels partly zero, kernel rows only in the padding, dilated taps one at a time, groups
    ("implicit-3x3", 1, 32, 6, 37, 50, (3, 3), {"pads": [1, 1, 1, 1]}),
    ("implicit-dilated-asymmetric", 2, 48, 9, 20, 64, (3, 2), {"pads": [2, 0, 1, 3], "dilations": [2, 3]}),
    ("implicit-rows-in-the-padding", 1, 16, 2, 70, 64, (3, 3), {"pads": [4, 1, 3, 1], "bias": False}),
    ("implicit-groups", 1, 64, 5, 30, 128, (3, 3), {"pads": [1, 1, 1, 1], "group": 2}),
    ("implicit-two-column-groups", 1, 20, 4, 21, 100, (3, 3), {"pads": [1, 1, 1, 1]}),
    ("implicit-no-pads", 2, 33, 7, 70, 48, (2, 3), {}),
    ("implicit-32-wide", 1, 16, 6, 59, 32, (3, 3), {"pads": [1, 1, 1, 1]}),
    ("implicit-24-of-32-wide", 2, 40, 3, 23, 48, (3, 3), {"pads": [0, 2, 1, 0], "group": 2}),
    ("implicit-runs-in-chunks", 1, 100, 4, 75, 64, (3, 3), {"pads": [1, 1, 1, 1]}),
    ("implicit-dilated-runs-in-chunks", 1, 136, 5, 9, 24, (2, 3), {"pads": [1, 2, 0, 1], "dilations": [1, 2]}),
    ("too-few-output-channels", 1, 16, 6, 20, 20, (3, 3), {"pads": [1, 1, 1, 1]}),      # 20 of 32: im2col
]


def conv_attrs(spec):
    return {"pads": spec.get("pads", [0, 0, 0, 0]), "strides": spec.get("strides", [1, 1]),
            "dilations": spec.get("dilations", [1, 1]), "group": spec.get("group", 1),
            "auto_pad": spec.get("auto_pad", "NOTSET")}


def conv_case(N, C, H, W, M, k, spec, seed):
    rng = np.random.default_rng(seed)
    attrs = conv_attrs(spec)
    Wt = rng.standard_normal((M, C // attrs["group"], *k)).astype(F32)
    tensors = {"W": Wt}
    if spec.get("bias", True):
        tensors["B"] = rng.standard_normal(M).astype(F32)
    x = rng.standard_normal((N, C, H, W)).astype(F32)
    return single("Conv2D", attrs, 4, tensors), x, tensors


def conv_reference(x, tensors, attrs):
    """The naive convolution, and the tolerance scale: the convolution of absolute values."""
    pads = attrs["pads"]
    if attrs["auto_pad"] != "NOTSET":
        from engine.ops.vision import same_pads
        k = tensors["W"].shape[2:]
        pairs = [same_pads(n, kk, s, d, attrs["auto_pad"])
                 for n, kk, s, d in zip(x.shape[2:], k, attrs["strides"], attrs["dilations"])]
        pads = [pairs[0][0], pairs[1][0], pairs[0][1], pairs[1][1]]
    args = dict(pads=pads, strides=attrs["strides"], dilations=attrs["dilations"], group=attrs["group"])
    B = tensors.get("B")
    ref = nv.conv2d(x, tensors["W"], B, **args)
    with np.errstate(invalid="ignore"):
        scale = nv.conv2d(np.abs(x), np.abs(tensors["W"]), None if B is None else np.abs(B), **args)
    K = tensors["W"][0].size
    return ref, K, scale


@pytest.mark.parametrize("precision", ["float32", "float64"])
@pytest.mark.parametrize("name,N,C,H,W,M,k,spec", CONV_CASES, ids=[c[0] for c in CONV_CASES])
def test_conv2d_matches_the_reference(name, N, C, H, W, M, k, spec, precision):
    """On the default threads and on one (float32 on one thread: the register tiles, with im2col in column groups
    from 64 output positions)."""
    model, x, tensors = conv_case(N, C, H, W, M, k, spec, seed=len(name))
    ref, K, scale = conv_reference(x, tensors, model.nodes[0].attrs)
    for threads in (None, 1):
        got = run(model, x, precision, threads)
        assert_close(got, ref, 4 * (K + 1) * eps(precision) * (scale + 1e-30), f"{name}, threads={threads}")
    listing = engine.Session(model, precision=precision).program({"x": x.shape})
    assert ("windows in place" in listing) == name.startswith("implicit"), listing


def test_conv2d_one_session_many_widths_and_batches():
    """The width is free: one Session plans each new shape, and a plan made earlier still gives the same result."""
    model, _, tensors = conv_case(1, 3, 8, 5, 4, (3, 3), {"pads": [1, 1, 1, 1], "strides": [1, 2]}, seed=3)
    sess = engine.Session(model)
    rng = np.random.default_rng(4)
    xs = [rng.standard_normal((n, 3, 8, w)).astype(F32) for n, w in ((1, 5), (3, 40), (2, 1), (1, 5))]
    for x in xs:
        ref, K, scale = conv_reference(x, tensors, model.nodes[0].attrs)
        assert_close(sess.run(None, {"x": x})[0], ref, 4 * (K + 1) * eps(F32) * scale, f"shape {x.shape}")


@pytest.mark.parametrize("special", ["nan", "inf", "-inf", "constant"])
def test_conv2d_nan_inf_and_constant_inputs(special):
    model, x, tensors = conv_case(1, 2, 6, 7, 3, (3, 3), {"pads": [1, 1, 1, 1]}, seed=9)
    if special == "constant":
        x[:] = 0.75
    else:
        x[0, 1, 2, 3] = float(special)
        x[0, 0, 5, 0] = float(special)
    ref, K, scale = conv_reference(x, tensors, model.nodes[0].attrs)
    for precision in ("float32", "float64"):
        got = run(model, x, precision)
        assert_close(got, ref, 4 * (K + 1) * eps(precision) * np.where(np.isfinite(scale), scale, 0), special)
    assert np.isnan(ref).any() or np.isinf(ref).any() or special == "constant"


@pytest.mark.parametrize("special", ["nan", "inf", "-inf"])
def test_windows_in_place_with_relu_keep_nan_and_inf(special):
    """A convolution read in place (32 -> 64 channels) with its Relu fused: the NaN and infinities its windows reach
    come out where the reference has them (Relu keeps NaN and +inf, -inf gives 0), through the 16 x 16 blocks
    written channels first and the element-by-element rest (20 pixels a row: one block of 16, then 4)."""
    model, x, tensors = conv_case(1, 32, 6, 20, 64, (3, 3), {"pads": [1, 1, 1, 1]}, seed=11)
    model.nodes[0].attrs["relu"] = True
    x[0, 3, 2, 5] = float(special)
    x[0, 30, 5, 18] = float(special)
    ref, K, scale = conv_reference(x, tensors, model.nodes[0].attrs)
    with np.errstate(invalid="ignore"):
        ref = np.where(np.isnan(ref), ref, np.maximum(ref, 0))
    for precision in ("float32", "float64"):
        sess = engine.Session(model, precision=precision)
        assert "windows in place" in sess.program({"x": x.shape})
        got = sess.run(None, {"x": x.astype(precision)})[0]
        assert_close(got, ref, 4 * (K + 1) * eps(precision) * np.where(np.isfinite(scale), scale, 0), special)
    assert np.isnan(ref).any() or np.isinf(ref).any()


# ---------------------------------------------------------------------- pooling
POOL_CASES = [
    # name, input shape, attrs (kernel_shape required; the rest default)
    ("2x2-stride-2", (2, 3, 8, 10), {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ("2x1-crnn", (1, 4, 8, 9), {"kernel_shape": [2, 1], "strides": [2, 1]}),
    ("odd-sizes-floor", (1, 2, 7, 9), {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ("ceil-mode", (1, 2, 7, 9), {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}),
    ("ceil-mode-drops-a-window-in-the-end-pad", (1, 1, 5, 5),
     {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1}),
    ("pads-3x3-stride-1", (2, 2, 6, 5), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    ("asymmetric-pads-ceil", (1, 2, 6, 7), {"kernel_shape": [3, 2], "strides": [2, 3], "pads": [2, 0, 1, 1],
                                            "ceil_mode": 1}),
    ("dilations", (1, 2, 9, 11), {"kernel_shape": [2, 3], "dilations": [2, 3], "pads": [1, 2, 1, 0]}),
    ("same-upper", (1, 2, 7, 9), {"kernel_shape": [3, 2], "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ("same-lower", (1, 2, 7, 9), {"kernel_shape": [3, 2], "strides": [2, 2], "auto_pad": "SAME_LOWER"}),
    ("1d", (2, 3, 11), {"kernel_shape": [3], "strides": [2], "pads": [1, 1]}),
    ("1d-ceil-dilated", (1, 2, 10), {"kernel_shape": [2], "strides": [3], "dilations": [2], "ceil_mode": 1}),
]


def pool_attrs(attrs, op):
    n = len(attrs["kernel_shape"])
    full = {"strides": [1] * n, "dilations": [1] * n, "pads": [0] * (2 * n), "auto_pad": "NOTSET", "ceil_mode": 0,
            **attrs}
    if op == "AveragePool":
        full.setdefault("count_include_pad", 0)
    return full


def pool_reference(x, op, attrs):
    pads = attrs["pads"]
    if attrs["auto_pad"] != "NOTSET":
        from engine.ops.vision import same_pads
        pairs = [same_pads(n, k, s, d, attrs["auto_pad"]) for n, k, s, d in
                 zip(x.shape[2:], attrs["kernel_shape"], attrs["strides"], attrs["dilations"])]
        pads = [b for b, _ in pairs] + [e for _, e in pairs]
    return nv.pool(x, "max" if op == "MaxPool" else "avg", attrs["kernel_shape"], attrs["strides"], pads,
                   attrs["dilations"], attrs["ceil_mode"], attrs.get("count_include_pad", 0))


def pool_tolerance(x, op, attrs, precision):
    """Max pooling is exact; an average of n values summed in the compute type is within n eps of the average of
    their absolute values."""
    if op == "MaxPool":
        return 0.0
    n = int(np.prod(attrs["kernel_shape"]))
    with np.errstate(invalid="ignore"):
        scale = pool_reference(np.abs(x), op, attrs)
    return (n + 1) * eps(precision) * np.where(np.isfinite(scale), scale, 0)


POOL_PARAMS = [(op, include, *case) for case in POOL_CASES for op, include in
               (("MaxPool", 0), ("AveragePool", 0), ("AveragePool", 1))]


@pytest.mark.parametrize("precision", ["float32", "float64"])
@pytest.mark.parametrize("op,include,name,shape,attrs", POOL_PARAMS,
                         ids=[f"{p[0]}-{p[2]}{'-include-pad' if p[1] else ''}" for p in POOL_PARAMS])
def test_pools_match_the_reference(op, include, name, shape, attrs, precision):
    attrs = pool_attrs(attrs, op)
    if op == "AveragePool":
        attrs["count_include_pad"] = include
    x = np.random.default_rng(len(name)).standard_normal(shape).astype(F32)
    ref = pool_reference(x, op, attrs)
    got = run(single(op, attrs, len(shape)), x, precision)
    assert_close(got, ref, pool_tolerance(x, op, attrs, precision), name)


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("special", ["nan", "inf", "-inf", "constant"])
def test_pools_with_nan_inf_and_constant_inputs(op, special):
    attrs = pool_attrs({"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 0, 1, 1]}, op)
    x = np.random.default_rng(2).standard_normal((1, 2, 6, 5)).astype(F32)
    if special == "constant":
        x[:] = -2.5
    else:
        x[0, 0, 3, 2] = float(special)
        x[0, 1, 0, 4] = float(special)
    ref = pool_reference(x, op, attrs)
    for precision in ("float32", "float64"):
        assert_close(run(single(op, attrs, 4), x, precision), ref, pool_tolerance(x, op, attrs, precision), special)


# ---------------------------------------------------------------------- random windows
RANDOM = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
small = st.integers


@RANDOM
@given(N=small(1, 2), Cg=small(1, 3), group=small(1, 2), Mg=small(1, 3), H=small(1, 7), W=small(1, 9),
       kh=small(1, 4), kw=small(1, 4), pads=st.lists(small(0, 5), min_size=4, max_size=4), sh=small(1, 3),
       sw=small(1, 3), dh=small(1, 3), dw=small(1, 3), bias=st.booleans())
def test_random_convolutions_match_the_reference(N, Cg, group, Mg, H, W, kh, kw, pads, sh, sw, dh, dw, bias):
    """Any sizes, pads (also beyond the image), strides and dilations: the reference's result, or, when the kernel
    does not fit the padded input, an InvalidInputError."""
    spec = {"pads": pads, "strides": [sh, sw], "dilations": [dh, dw], "group": group, "bias": bias}
    model, x, tensors = conv_case(N, Cg * group, H, W, Mg * group, (kh, kw), spec, seed=H * 10 + W)
    if H + pads[0] + pads[2] < dh * (kh - 1) + 1 or W + pads[1] + pads[3] < dw * (kw - 1) + 1:
        with pytest.raises(engine.InvalidInputError, match="smaller than the kernel"):
            run(model, x, "float32")
        return
    ref, K, scale = conv_reference(x, tensors, model.nodes[0].attrs)
    assert_close(run(model, x, "float64"), ref, 4 * (K + 1) * eps(F64) * (scale + 1e-30), str(spec))


@RANDOM
@given(op=st.sampled_from(["MaxPool", "AveragePool"]), one_d=st.booleans(), H=small(1, 7), W=small(1, 9),
       kh=small(1, 4), kw=small(1, 4), pads=st.lists(small(0, 3), min_size=4, max_size=4), sh=small(1, 3),
       sw=small(1, 3), dh=small(1, 3), dw=small(1, 3), ceil_mode=small(0, 1), include=small(0, 1))
def test_random_pools_match_the_reference(op, one_d, H, W, kh, kw, pads, sh, sw, dh, dw, ceil_mode, include):
    if one_d:
        attrs = {"kernel_shape": [kw], "strides": [sw], "dilations": [dw], "pads": [pads[1] % kw, pads[3] % kw]}
        shape = (2, 3, W)
    else:
        attrs = {"kernel_shape": [kh, kw], "strides": [sh, sw], "dilations": [dh, dw],
                 "pads": [pads[0] % kh, pads[1] % kw, pads[2] % kh, pads[3] % kw]}
        shape = (2, 3, H, W)
    attrs = pool_attrs({**attrs, "ceil_mode": ceil_mode}, op)
    if op == "AveragePool":
        attrs["count_include_pad"] = include
    x = np.random.default_rng(H * 10 + W).standard_normal(shape).astype(F32)
    k, d, p = attrs["kernel_shape"], attrs["dilations"], attrs["pads"]
    n = len(k)
    if any(shape[2 + a] + p[a] + p[a + n] < d[a] * (k[a] - 1) + 1 for a in range(n)):
        with pytest.raises(engine.InvalidInputError, match="smaller than the pooling window"):
            run(single(op, attrs, len(shape)), x, "float32")
        return
    ref = pool_reference(x, op, attrs)
    assert_close(run(single(op, attrs, len(shape)), x, "float64"), ref, pool_tolerance(x, op, attrs, "float64"),
                 str(attrs))


@pytest.mark.parametrize("kh,kw,H,W,ceil", [(2, 2, 8, 12, 0), (2, 1, 6, 5, 0), (3, 2, 7, 9, 0), (1, 2, 3, 7, 0),
                                            (1, 1, 2, 5, 0), (2, 2, 7, 9, 1)])
def test_max_pools_that_tile_the_image_keep_the_general_rule(kh, kw, H, W, ceil):
    """Windows that tile the image (stride = kernel, no pads) with kw <= 2 take vision_kernels.tiled_max_pool (ceil
    mode with a partial window does not): the same values as the general rule applied tap by tap in order, bit for
    bit, NaN, inf and signed zeros included."""
    rng = np.random.default_rng(kh * 100 + kw * 10 + H)
    x = rng.standard_normal((2, 3, H, W)).astype(F32)
    x[0, 0, 0, :4] = [0.0, -0.0, -0.0, 0.0]           # equal maxima: the first tap stays
    x[0, 1, 1, 1], x[1, 2, 0, 0], x[1, 0, -1, -1] = np.nan, np.inf, -np.inf
    x[1, 1] = -np.inf
    attrs = pool_attrs({"kernel_shape": [kh, kw], "strides": [kh, kw], "ceil_mode": ceil}, "MaxPool")
    got = run(single("MaxPool", attrs, 4), x, "float32")
    Ho, Wo = got.shape[2:]
    want = np.full(got.shape, -np.inf, F32)
    for i in range(kh):
        for j in range(kw):
            v = np.full(got.shape, -np.inf, F32)
            hs, ws = np.arange(Ho) * kh + i, np.arange(Wo) * kw + j
            inside = (hs[:, None] < H) & (ws[None, :] < W)
            v[..., inside] = x[..., np.minimum(hs, H - 1)[:, None], np.minimum(ws, W - 1)[None, :]][..., inside]
            take = (v > want) | np.isnan(v)
            want = np.where(take, v, want)
    assert np.array_equal(got, want, equal_nan=True)
    assert np.array_equal(np.signbit(got), np.signbit(want))


GUARD = 64


def guarded(n):
    """A buffer of n floats inside NaN sentinels of GUARD floats on each side: (whole array, the n-float view)."""
    whole = np.full(n + 2 * GUARD, np.nan, F32)
    return whole, whole[GUARD:GUARD + n]


def untouched(whole):
    return np.isnan(whole[:GUARD]).all() and np.isnan(whole[-GUARD:]).all()


def packed_conv_weights(w, M, Cg, kh, kw, implicit=False, group=1):
    """The weights as Conv2D.pack lays them out for the kernels, flat: (M, kh, kw, Cg), or for ``implicit`` each
    group's output channels in column groups of 32 (Mg <= 32) or 64, (group, Mg / width rounded up, kh kw Cg,
    width)."""
    rows = w.reshape(M, Cg, kh, kw).transpose(0, 2, 3, 1).reshape(M, -1)
    if not implicit:
        return np.ascontiguousarray(rows).reshape(-1)
    Mg = M // group
    width = 32 if Mg <= 32 else 64
    Mp = -(-Mg // width) * width
    Q = np.zeros((group, Mp, rows.shape[1]), rows.dtype)
    Q[:, :Mg] = rows.reshape(group, Mg, -1)
    return np.ascontiguousarray(Q.reshape(group, Mp // width, width, -1).transpose(0, 1, 3, 2)).reshape(-1)


@RANDOM
@given(Cg=small(1, 3), group=small(1, 2), H=small(1, 6), W=small(1, 8), kh=small(1, 4), kw=small(1, 4),
       pads=st.lists(small(0, 6), min_size=4, max_size=4), sh=small(1, 3), sw=small(1, 3), dh=small(1, 3),
       dw=small(1, 3))
# taps wholly right of the image (pads wider than it): a negative column bound once zeroed other taps' rows
@example(Cg=1, group=1, H=1, W=1, kh=4, kw=4, pads=[3, 3, 6, 6], sh=1, sw=1, dh=3, dw=3)
def test_kernels_write_only_their_buffers(Cg, group, H, W, kh, kw, pads, sh, sw, dh, dw):
    """The convolution and pooling kernels called directly, their work (im2col, or at stride 1 the padded image
    and the sums of implicit_product, at any channel count) and output buffers fenced by NaN: nothing outside them
    changes (the kernels have no bounds checks), and the output is the reference's."""
    from engine.ops.vision import IM2COL, IMPLICIT, conv_out, conv_work, pool_out
    from engine.ops.vision_kernels import conv2d_kernel, pool_kernel
    pt, pl, pb, pr = pads
    Ho, Wo = conv_out(H, kh, sh, dh, pt, pb), conv_out(W, kw, sw, dw, pl, pr)
    if Ho < 1 or Wo < 1:
        return
    C, M = Cg * group, 2 * group
    rng = np.random.default_rng(H * 10 + W)
    x = rng.standard_normal(C * H * W).astype(F32)
    w = rng.standard_normal(M * Cg * kh * kw).astype(F32)
    b = rng.standard_normal(M).astype(F32)
    out_all, out = guarded(M * Ho * Wo)
    ref = nv.conv2d(x.reshape(1, C, H, W), w.reshape(M, Cg, kh, kw), b, pads, (sh, sw), (dh, dw), group)
    for mode in (IM2COL, IMPLICIT) if sh == sw == 1 else (IM2COL,):
        wp = packed_conv_weights(w, M, Cg, kh, kw, mode == IMPLICIT, group)
        span = conv_work(mode, Cg, kh, kw, Ho, Wo, dh, dw, 1)
        col_all, col = guarded(span)
        for relu in (False, True):
            conv2d_kernel(x, wp, b, True, col, mode, span, 1, C, H, W, M, Cg, kh, kw, Ho, Wo, pt, pl, sh, sw, dh,
                          dw, group, out, relu, 1, 1)
            assert untouched(col_all) and untouched(out_all)
            assert np.allclose(out.reshape(ref.shape), np.maximum(ref, 0) if relu else ref, atol=1e-4), mode
    pk = [p % k for p, k in zip(pads, (kh, kw, kh, kw))]
    for average in (False, True):
        Hp, Wp = pool_out(H, kh, sh, dh, pk[0], pk[2], 1), pool_out(W, kw, sw, dw, pk[1], pk[3], 1)
        if Hp < 1 or Wp < 1:
            continue
        pool_all, pooled = guarded(C * Hp * Wp)
        pool_kernel(average, x, C, H, W, Hp, Wp, kh, kw, sh, sw, dh, dw, *pk, True, pooled)
        assert untouched(pool_all)


@RANDOM
@given(N=small(1, 5), Cg=small(1, 3), group=small(1, 2), Mg=small(1, 7), H=small(2, 9), W=small(1, 40),
       kh=small(1, 3), kw=small(1, 3), pads=st.lists(small(0, 2), min_size=4, max_size=4), sh=small(1, 2),
       sw=small(1, 2), dh=small(1, 2), dw=small(1, 2), parts=small(2, 3), relu=st.booleans(), bias=st.booleans(),
       implicit=st.booleans())
@example(N=1, Cg=3, group=1, Mg=5, H=4, W=16, kh=1, kw=1, pads=[0, 0, 0, 0], sh=1, sw=1, dh=1, dw=1, parts=2,
         relu=True, bias=True, implicit=False)   # a 1x1 kernel: the image is its own im2col, each part its columns
@example(N=3, Cg=2, group=2, Mg=7, H=5, W=40, kh=3, kw=3, pads=[1, 1, 1, 1], sh=1, sw=1, dh=1, dw=2, parts=2,
         relu=True, bias=True, implicit=True)    # window_product: each part its rows, blocks of 72 pixels
@example(N=1, Cg=70, group=1, Mg=64, H=4, W=80, kh=3, kw=2, pads=[1, 1, 1, 0], sh=1, sw=1, dh=1, dw=1, parts=2,
         relu=False, bias=True, implicit=True)   # runs of 140 taps x channels in two chunks, blocks of 72 and 8
def test_a_convolution_split_by_rows_or_images_is_the_one_thread_result(N, Cg, group, Mg, H, W, kh, kw, pads, sh, sw,
                                                                         dh, dw, parts, relu, bias, implicit):
    """conv2d_rows_parallel (the Session's threads, each its own output rows: own im2col, own tiles) against
    conv2d_kernel on one thread, every image and group, their buffers fenced by NaN: nothing written outside them,
    and the same values to float32 rounding (a part's width may put a column in a narrower tile, whose one-row
    variant sums K in two streams), with two and three parts (more parts than threads run in turn). Then
    conv2d_kernel with the batch split by images (each thread its own span of col) and the N % parts left over by
    rows: the images split so are one thread's bit for bit. At stride 1, ``implicit``: the image with its channels
    last read where it is (window_product), made once, each part its own output rows and its own block of sums."""
    from engine.ops.vision import DIRECT, IM2COL, IMPLICIT, conv_out, conv_work
    from engine.ops.vision_kernels import conv2d_kernel, conv2d_rows_parallel
    pt, pl, pb, pr = pads
    Ho, Wo = conv_out(H, kh, sh, dh, pt, pb), conv_out(W, kw, sw, dw, pl, pr)
    if Ho < parts or Wo < 1:
        return
    mode = DIRECT if kh == kw == sh == sw == 1 and not any(pads) else \
        IMPLICIT if implicit and sh == sw == 1 else IM2COL
    C, M = Cg * group, Mg * group
    rng = np.random.default_rng(H * 100 + W * 3 + parts)
    x = rng.standard_normal(N * C * H * W).astype(F32)
    w = rng.standard_normal(M * Cg * kh * kw).astype(F32)
    wp = packed_conv_weights(w, M, Cg, kh, kw, mode == IMPLICIT, group)
    b = rng.standard_normal(M).astype(F32) if bias else np.zeros(0, F32)
    n_col = conv_work(mode, Cg, kh, kw, Ho, Wo, dh, dw, parts)
    col_all, col = guarded(n_col)
    one_all, one = guarded(N * M * Ho * Wo)
    split_all, split = guarded(N * M * Ho * Wo)
    conv2d_kernel(x, wp, b, bias, col, mode, n_col, N, C, H, W, M, Cg, kh, kw, Ho, Wo, pt, pl, sh, sw, dh, dw,
                  group, one, relu, 1, 1)
    for n in range(N):
        for g in range(group):
            conv2d_rows_parallel(x, wp, b, bias, col, mode, n, g, C, H, W, M, Mg, Cg, kh, kw, Ho, Wo, pt, pl, sh,
                                 sw, dh, dw, split, relu, parts)
    assert untouched(col_all) and untouched(one_all) and untouched(split_all)
    K = Cg * kh * kw
    scale = K * np.abs(x).max() * np.abs(w).max() + (np.abs(b).max() if bias else 0)
    assert np.abs(split.astype(F64) - one).max() <= 4 * (K + 1) * eps(F32) * scale
    if N < parts:
        return
    cols_all, cols = guarded(n_col * parts)
    images_all, images = guarded(N * M * Ho * Wo)
    conv2d_kernel(x, wp, b, bias, cols, mode, n_col, N, C, H, W, M, Cg, kh, kw, Ho, Wo, pt, pl, sh, sw, dh, dw,
                  group, images, relu, parts, parts)
    assert untouched(cols_all) and untouched(images_all)
    whole = (N - N % parts) * M * Ho * Wo
    assert images[:whole].tobytes() == one[:whole].tobytes()
    assert np.abs(images.astype(F64) - one).max() <= 4 * (K + 1) * eps(F32) * scale


# ---------------------------------------------------------------------- elementwise, reductions, transpose
SPECIALS = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30, -1e30, 3.0, -3.0], F32)


def _with_specials(shape, seed):
    x = (np.random.default_rng(seed).standard_normal(shape) * 3).astype(F32)
    x.reshape(-1)[:SPECIALS.size] = SPECIALS
    return x


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_channel_affine(precision):
    rng = np.random.default_rng(0)
    scale, bias = rng.standard_normal(3).astype(F32), rng.standard_normal(3).astype(F32)
    for shape in ((2, 3, 4, 5), (4, 3), (1, 3, 7)):
        x = _with_specials(shape, len(shape))
        got = run(single("ChannelAffine", {}, len(shape), {"scale": scale, "bias": bias}), x, precision)
        ref = nv.channel_affine(x, scale, bias)
        assert_close(got, ref, 4 * eps(precision) * (np.abs(ref) + 1), f"shape {shape}")


@pytest.mark.parametrize("alpha", [0.01, 0.2, -1.5, 0.0])
def test_leaky_relu(alpha):
    x = _with_specials((2, 3, 4, 5), 1)
    for precision in ("float32", "float64"):
        got = run(single("LeakyRelu", {"alpha": alpha}, 4), x, precision)
        ref = nv.leaky_relu(x, np.float32(alpha) if precision == "float32" else alpha)
        assert_close(got, ref, eps(precision) * np.abs(ref), f"alpha {alpha}")


@pytest.mark.parametrize("lo,hi", [(0.0, 6.0), (None, 1.5), (-1.0, None), (None, None), (2.0, -1.0),
                                   (-np.inf, np.inf), (-3.4028234663852886e38, 3.4028234663852886e38)])
def test_clip(lo, hi):
    x = _with_specials((3, 4, 5), 2)
    for precision in ("float32", "float64"):
        got = run(single("Clip", {"min": lo, "max": hi}, 3), x, precision)
        assert_close(got, nv.clip(x, lo, hi), 0.0, f"[{lo}, {hi}]")


REDUCE_CASES = [((2, 3, 4, 5), [2], 0), ((2, 3, 4, 5), [2], 1), ((2, 3, 4, 5), [1, 3], 0), ((2, 3, 4, 5), [2, 3], 1),
                ((2, 3, 4, 5), [0, 1, 2, 3], 0), ((4, 5), [0], 1), ((3, 1, 6), [1], 0)]


@pytest.mark.parametrize("op", ["ReduceMax", "ReduceMean"])
@pytest.mark.parametrize("shape,axes,keepdims", REDUCE_CASES)
def test_reductions_over_any_axes(op, shape, axes, keepdims):
    x = np.random.default_rng(len(shape)).standard_normal(shape).astype(F32)
    out_rank = len(shape) - (0 if keepdims else len(axes))
    model = single(op, {"axes": axes, "keepdims": keepdims}, len(shape), out_rank=out_rank)
    ref = nv.reduce(x, "max" if op == "ReduceMax" else "mean", axes, keepdims)
    for precision in ("float32", "float64"):
        assert_close(run(model, x, precision), ref, 0.0 if op == "ReduceMax" else 4 * eps(precision), f"{axes}")


def test_reduce_max_nan_and_inf():
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(F32)
    x[0, 1, 2], x[1, 2, 0], x[1, 0, 3] = np.nan, np.inf, -np.inf
    model = single("ReduceMax", {"axes": [1], "keepdims": 0}, 3, out_rank=2)
    assert_close(run(model, x, "float32"), nv.reduce(x, "max", [1], 0), 0.0, "specials")


@pytest.mark.parametrize("perm", [(0, 2, 1, 3), (3, 0, 1, 2), (2, 3, 0, 1), (0, 1, 3, 2), (1, 0, 3, 2)])
def test_transpose_4d(perm):
    x = np.arange(2 * 3 * 4 * 5, dtype=F32).reshape(2, 3, 4, 5)
    got = run(single("Transpose", {"perm": list(perm)}, 4), x, "float32")
    assert np.array_equal(got, np.transpose(x, perm))


# ---------------------------------------------------------------------- errors
W3 = np.ones((4, 2, 3, 3), F32)
CONV_OK = {"pads": [0, 0, 0, 0], "strides": [1, 1], "dilations": [1, 1], "group": 1, "auto_pad": "NOTSET"}
POOL_OK = pool_attrs({"kernel_shape": [2, 2]}, "MaxPool")
BAD_MODELS = [
    ("Conv2D", {**CONV_OK, "pads": [1, 1]}, {"W": W3}, "pads must be 4 integers"),
    ("Conv2D", {**CONV_OK, "pads": [0, -1, 0, 0]}, {"W": W3}, "pads must be 4 integers"),
    ("Conv2D", {**CONV_OK, "strides": [0, 1]}, {"W": W3}, "strides must be 2 integers"),
    ("Conv2D", {**CONV_OK, "dilations": [1, 2 ** 40]}, {"W": W3}, "dilations must be 2 integers"),
    ("Conv2D", {**CONV_OK, "group": 3}, {"W": W3}, "group must be a positive integer dividing"),
    ("Conv2D", {**CONV_OK, "group": 0}, {"W": W3}, "group must be"),
    ("Conv2D", {**CONV_OK, "auto_pad": "VALID"}, {"W": W3}, "auto_pad must be"),
    ("Conv2D", CONV_OK, {"W": np.ones((4, 2, 3), F32)}, "W must be a float constant"),
    ("Conv2D", CONV_OK, {"W": np.ones((4, 2, 0, 3), F32)}, "no empty dimension"),
    ("Conv2D", CONV_OK, {"W": W3, "B": np.ones(3, F32)}, r"B must be a float constant of shape \(4,\)"),
    ("MaxPool", {**POOL_OK, "kernel_shape": [2, 2, 2]}, {}, "1 or 2 sizes"),
    ("MaxPool", {**POOL_OK, "kernel_shape": [0, 2]}, {}, "kernel_shape must be 2 integers"),
    ("MaxPool", {**POOL_OK, "pads": [2, 0, 0, 0]}, {}, "smaller than the kernel"),
    ("MaxPool", {**POOL_OK, "strides": [1]}, {}, "strides must be 2 integers"),
    ("MaxPool", {**POOL_OK, "ceil_mode": 2}, {}, "ceil_mode must be 0 or 1"),
    ("AveragePool", POOL_OK, {}, "count_include_pad must be 0 or 1"),
    ("ChannelAffine", {}, {"scale": np.ones(3, F32), "bias": np.ones(4, F32)}, "differ in shape"),
    ("ChannelAffine", {}, {"scale": np.ones((3, 1), F32), "bias": np.ones(3, F32)}, "rank 1"),
    ("LeakyRelu", {"alpha": "x"}, {}, "alpha must be a number"),
    ("Clip", {"min": float("nan"), "max": None}, {}, "min must be a number or null"),
    ("ReduceMax", {"axes": [], "keepdims": 0}, {}, "ReduceMax needs at least one axis"),
]


@pytest.mark.parametrize("op,attrs,tensors,message", BAD_MODELS, ids=[f"{b[0]}-{b[3][:30]}" for b in BAD_MODELS])
def test_malformed_nodes_are_model_file_errors(op, attrs, tensors, message):
    with pytest.raises(engine.ModelFileError, match=message):
        single(op, attrs, 4, tensors).validate()


BAD_CALLS = [
    ("Conv2D", CONV_OK, {"W": W3}, (1, 2, 5), "X must have rank 4"),
    ("Conv2D", CONV_OK, {"W": W3}, (1, 3, 5, 5), "X has 3 channels; the weights take 2"),
    ("Conv2D", CONV_OK, {"W": W3}, (1, 2, 2, 9), r"smaller than the kernel"),
    ("MaxPool", POOL_OK, {}, (1, 2, 5), "needs an input of rank 4"),
    ("MaxPool", POOL_OK, {}, (1, 2, 1, 5), "smaller than the pooling window"),
    ("AveragePool", {**POOL_OK, "count_include_pad": 0, "kernel_shape": [3]}, {}, (1, 2, 2), "smaller than the"),
    ("ChannelAffine", {}, {"scale": np.ones(3, F32), "bias": np.ones(3, F32)}, (1, 2, 5), "3 channels on axis 1"),
]


@pytest.mark.parametrize("op,attrs,tensors,shape,message", BAD_CALLS, ids=[f"{b[0]}-{b[4][:30]}" for b in BAD_CALLS])
def test_bad_input_shapes_are_invalid_input_errors(op, attrs, tensors, shape, message):
    if len(attrs.get("kernel_shape", [0, 0])) == 1:
        attrs = {**attrs, "strides": [1], "dilations": [1], "pads": [0, 0]}
    sess = engine.Session(single(op, attrs, len(shape), tensors))
    with pytest.raises(engine.InvalidInputError, match=message):
        sess.run(None, {"x": np.ones(shape, F32)})


def test_integer_inputs_are_refused():
    model = single("MaxPool", POOL_OK, 4, x_dtype="int64")
    with pytest.raises(engine.UnsupportedModelError, match="not an integer"):
        engine.Session(model).run(None, {"x": np.ones((1, 1, 4, 4), np.int64)})



def test_kernel_rows_are_those_inside_the_image():
    """kernel_rows (the kernel rows an output row reads inside the image, which banded_product multiplies) against
    every tap tested one by one, pads and dilations wider than the image included; padded_rows says whether any
    output row has one outside."""
    from engine.ops.vision import conv_out
    from engine.ops.vision_kernels import kernel_rows, padded_rows
    for H in range(1, 6):
        for kh in range(1, 5):
            for sh in range(1, 3):
                for dh in range(1, 4):
                    for pt in range(0, 7):
                        for pb in range(0, 7):
                            Ho = conv_out(H, kh, sh, dh, pt, pb)
                            if Ho < 1:
                                continue
                            rows = []
                            for ho in range(Ho):
                                inside = [i for i in range(kh) if 0 <= ho * sh - pt + i * dh < H]
                                lo, hi = kernel_rows(ho, H, kh, sh, dh, pt)
                                assert list(range(lo, hi)) == inside, (H, kh, sh, dh, pt, ho)
                                rows.append(len(inside) < kh)
                            assert padded_rows(H, kh, sh, dh, pt, Ho) == any(rows)
