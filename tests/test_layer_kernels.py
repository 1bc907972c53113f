"""The elementwise binary kernel (engine/ops/layer_kernels.py ``binary_kernel``) against numpy's broadcasting: every
op, with each side contiguous, one value along the inner axis (stride 0), or strided (a transposed or sliced
operand), and NaN and inf passed through as numpy passes them."""
import itertools

import numpy as np
import pytest

from engine.ops.layer_kernels import binary_kernel
from engine.ops.layers import ADD, DIV, MUL, POW, SUB

OPS = {ADD: np.add, SUB: np.subtract, MUL: np.multiply, DIV: np.divide, POW: np.power}


def _operand(rng, shape, kind):
    """(flat buffer, element strides over the 6-D index space) of an operand broadcast to ``shape``."""
    if kind == "value":                                   # one value along the inner axis: stride 0 there
        a = rng.uniform(0.5, 2.0, shape[:-1] + (1,)).astype(np.float32)
    elif kind == "strided":                               # every other element of a wider array
        a = rng.uniform(0.5, 2.0, shape[:-1] + (2 * shape[-1],)).astype(np.float32)[..., ::2]
    else:
        a = rng.uniform(0.5, 2.0, shape).astype(np.float32)
    if kind == "broadcast-row":                           # one row for every outer index: strides 0 outside
        a = a[:1, :1, :1, :1, :1].copy()
    base = a.base if a.base is not None else a
    flat = np.ascontiguousarray(base).reshape(-1)
    strides = [0 if a.shape[k] == 1 and shape[k] != 1 else a.strides[k] // 4 for k in range(6)]
    return flat, strides, np.broadcast_to(a, shape)


KINDS = ["contiguous", "value", "strided", "broadcast-row"]


@pytest.mark.parametrize("op", list(OPS), ids=["add", "sub", "mul", "div", "pow"])
@pytest.mark.parametrize("kinds", list(itertools.product(KINDS, KINDS)), ids="-".join)
def test_binary_kernel_is_numpys_broadcast(op, kinds):
    rng = np.random.default_rng(op)
    shape = (2, 1, 3, 1, 2, 37)
    (fa, sa, a), (fb, sb, b) = (_operand(rng, shape, k) for k in kinds)
    if kinds[0] == "contiguous":
        fa[5] = np.nan
        fa[7] = np.inf
    out = np.full(int(np.prod(shape)), -7.0, np.float32)
    prog = np.array(list(shape) + sa + sb, np.int64)
    binary_kernel(op, fa, fb, out, prog, 0)
    with np.errstate(all="ignore"):
        want = OPS[op](a, b).astype(np.float32).reshape(-1)
    np.testing.assert_allclose(out, want, rtol=2e-6, equal_nan=True)
