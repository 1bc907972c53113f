"""The executor's view helpers (engine/ops/program_kernels.py): ``shaped``, the reshape of a C-contiguous array that
the run functions use instead of Numba's, and ``typed_like``, a scalar cast to an array's dtype. Checked against
numpy's reshape and casts, including the size check that keeps a wrong plan from reading past a buffer; and
``unmanaged``, the executor's arguments without reference counts."""
import numpy as np
import pytest
from numba import njit

import sys

from engine.ops.program_kernels import shaped, typed_like, unmanaged


@njit(cache=False)
def _view2(a, start, n, m):
    return shaped(a[start:start + n * m], (n, m))


@njit(cache=False)
def _view4(a, d0, d1, d2, d3):
    return shaped(a, (d0, d1, d2, d3))


@njit(cache=False)
def _write_through(a, n, m, v):
    b = shaped(a, (n, m))
    b[n - 1, m - 1] = v
    return a[n * m - 1]


@njit(cache=False)
def _unmanaged_views(a, v):
    """Through an unmanaged a (2-D, maybe strided): its shape and strides, its sum, a write through a view of a
    view, and the sum of a shaped row."""
    u = unmanaged(a)
    row = u[u.shape[0] - 1]
    row[0] = v
    flat = shaped(u[0].copy(), (1, u.shape[1]))
    return u.shape[0], u.shape[1], u.strides[0], u.strides[1], u.sum(), flat.sum()


@njit(cache=False)
def _cast(a, v):
    return typed_like(a, v)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_shaped_is_numpys_reshape_of_a_contiguous_array(dtype):
    a = np.arange(60, dtype=dtype)
    for start, n, m in ((0, 3, 4), (5, 5, 11), (59, 1, 1), (0, 1, 60), (0, 60, 1)):
        got = _view2(a, start, n, m)
        want = a[start:start + n * m].reshape(n, m)
        assert got.shape == want.shape and got.strides == want.strides and np.array_equal(got, want)
    got = _view4(a, 3, 1, 4, 5)
    assert got.strides == a.reshape(3, 1, 4, 5).strides and np.array_equal(got, a.reshape(3, 1, 4, 5))
    assert _view4(a[:0], 0, 3, 4, 5).shape == (0, 3, 4, 5)


def test_shaped_is_a_view_of_the_same_memory():
    a = np.zeros(12, np.float32)
    assert _write_through(a, 3, 4, 7.5) == 7.5 and a[11] == 7.5


@pytest.mark.parametrize("n, m", [(3, 5), (2, 7), (13, 1), (0, 5)])
def test_shaped_refuses_a_shape_of_another_size(n, m):
    a = np.arange(12, dtype=np.float32)
    with pytest.raises(ValueError, match="sizes differ"):
        _view4(a, n, m, 1, 1)


def test_unmanaged_is_the_same_array_without_a_reference_count():
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    for a in (base.copy(), base[::2, 1:]):          # contiguous, and strided rows
        a = a.copy() if a.flags.c_contiguous else a
        want = a.sum() - a[-1, 0] + 9.5
        refs = sys.getrefcount(a)
        n0, n1, s0, s1, total, first = _unmanaged_views(a, 9.5)
        assert (n0, n1, s0, s1) == (*a.shape, *a.strides)
        assert a[-1, 0] == 9.5 and total == want and first == a[0].sum()
        assert sys.getrefcount(a) == refs            # nothing taken or leaked by the views


def test_typed_like_casts_to_the_arrays_dtype():
    v32 = _cast(np.zeros(1, np.float32), 0.1)
    v64 = _cast(np.zeros(1, np.float64), 0.1)
    assert v32 == np.float32(0.1) and v64 == 0.1
    assert _cast(np.zeros(1, np.float32), np.inf) == np.inf
