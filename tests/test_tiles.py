"""The register-tile products (engine/ops/tiles.py, engine/ops/numeric.py product_add / matmul / product) against a
float64 numpy reference: every tile shape (6, 2 and 1 rows; 64 and 16 columns; the last 1-15 columns in masked
tiles), strided rows, both float dtypes, K = 0, and NaN and inf passing through; the masked tiles read and write
nothing past a row's last column, even where the next byte is unmapped."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from engine.ops.numeric import matmul, product, product_add

ROWS = [0, 1, 2, 3, 5, 6, 7, 8, 13]              # tiles of 6, then 2, then 1
COLS = [0, 1, 15, 16, 17, 63, 64, 65, 80, 130]   # groups of 64, then 16, then a masked tile of 1-15
DEPTHS = [0, 1, 3, 64, 100]


def _strided(rng, shape, dtype, pad):
    """A (rows, cols) view with ``pad`` extra elements per row (strided rows, contiguous within a row)."""
    base = rng.standard_normal((shape[0], shape[1] + pad)).astype(dtype)
    return base[:, 1:shape[1] + 1] if pad else base


def _bound(dtype, K):
    return (1e-5 if dtype == np.float32 else 1e-12) * max(1, K) ** 0.5 * 10


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("K", DEPTHS)
def test_product_add_matches_the_reference_for_every_tile_shape(dtype, K):
    rng = np.random.default_rng(K)
    for M in ROWS:
        for N in COLS:
            for pad in (0, 3):
                a = _strided(rng, (M, K), dtype, pad)
                b = _strided(rng, (K, N), dtype, pad + 2 if pad else 0)
                out = _strided(rng, (M, N), dtype, pad)
                want = out.astype(np.float64) + a.astype(np.float64) @ b.astype(np.float64)
                before = out.base.copy() if out.base is not None else None
                product_add(a, b, out)
                assert out.dtype == dtype
                np.testing.assert_allclose(out, want, rtol=0, atol=_bound(dtype, K),
                                           err_msg=f"M={M} K={K} N={N} pad={pad}")
                if before is not None:      # the padding around the view is left alone
                    mask = np.ones(before.shape, bool)
                    mask[:, 1:N + 1] = False
                    assert np.array_equal(out.base[mask], before[mask])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("M,K,N", [(300, 1100, 70), (300, 1100, 400), (20, 576, 3203)])
def test_product_add_over_row_blocks_matches_the_reference(dtype, M, K, N):
    """Many rows: a in blocks of ~256 KiB while b is at most as wide as a is tall (300 rows of 1100 in blocks of 54
    in float32 or 48 in float64, the last shorter), all rows in one block when b is wider (numeric._product_block:
    a convolution's weights times its im2col), the last columns in 16-wide and masked tiles."""
    rng = np.random.default_rng(M + K + N)
    a = rng.standard_normal((M, K)).astype(dtype)
    b = rng.standard_normal((K, N)).astype(dtype)
    out = rng.standard_normal((M, N)).astype(dtype)
    want = out.astype(np.float64) + a.astype(np.float64) @ b.astype(np.float64)
    product_add(a, b, out)
    np.testing.assert_allclose(out, want, rtol=0, atol=_bound(dtype, K))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N", [128, 130, 100, 37])   # tiles (a multiple of 16; 100: and a masked tail) / the BLAS
def test_matmul_and_product_overwrite_the_output(dtype, N):
    rng = np.random.default_rng(7)
    a = rng.standard_normal((13, 100)).astype(dtype)
    b = rng.standard_normal((100, N)).astype(dtype)
    want = a.astype(np.float64) @ b.astype(np.float64)
    for threads in (None, 1, 2):
        out = np.full((13, N), np.nan, dtype)
        if threads is None:
            matmul(a, b, out)
        else:
            product(a, b, out, threads)
        np.testing.assert_allclose(out, want, rtol=0, atol=_bound(dtype, 100), err_msg=f"threads={threads}")


def test_nan_and_inf_reach_the_outputs_they_touch():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((7, 20)).astype(np.float32)
    b = rng.standard_normal((20, 70)).astype(np.float32)
    a[2, 5] = np.nan                 # row 2 of the result: all NaN
    b[9, 66] = np.inf                # column 66: +-inf or NaN in every row
    out = np.zeros((7, 70), np.float32)
    product_add(a, b, out)
    assert np.isnan(out[2]).all()
    assert not np.isfinite(out[:, 66]).any()
    rest = np.delete(np.delete(out, 2, axis=0), 66, axis=1)
    assert np.isfinite(rest).all()


def test_masked_tiles_touch_nothing_past_the_last_column():
    """b's last row and out's last row end where an unmapped page starts: a 16-lane load or store of the last 1-15
    columns would fault (a child process, so that a fault fails this test rather than ending the run)."""
    code = textwrap.dedent("""
        import ctypes, mmap
        import numpy as np
        from engine.ops.numeric import product_add

        PAGE = mmap.PAGESIZE
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        rng = np.random.default_rng(0)

        def at_page_end(shape):
            buf = mmap.mmap(-1, 2 * PAGE)
            base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
            assert libc.mprotect(base + PAGE, PAGE, 0) == 0          # PROT_NONE
            n = shape[0] * shape[1]
            return buf, np.frombuffer(buf, np.float32, n, PAGE - 4 * n).reshape(shape)

        for M, K, N in ((7, 3, 5), (13, 40, 17), (1, 1, 1), (6, 9, 100)):
            keep_b, b = at_page_end((K, N))
            keep_o, out = at_page_end((M, N))
            b[:] = rng.standard_normal((K, N))
            out[:] = 1.0
            a = rng.standard_normal((M, K)).astype(np.float32)
            product_add(a, b, out)
            err = np.abs(out - (1.0 + a.astype(np.float64) @ b)).max()
            assert err < 1e-4, (M, K, N, err)
            del b, out
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip() == "ok", (done.returncode, done.stdout, done.stderr[-2000:])


def test_columns_not_contiguous_within_a_row_take_the_general_path():
    """matmul reads rows as contiguous runs; a transposed view (unit stride down its columns) must still be right."""
    rng = np.random.default_rng(5)
    a = rng.standard_normal((40, 9)).astype(np.float32).T          # (9, 40), columns contiguous
    b = rng.standard_normal((40, 70)).astype(np.float32)
    out = np.empty((9, 70), np.float32)
    matmul(a, b, out)
    np.testing.assert_allclose(out, a.astype(np.float64) @ b, rtol=0, atol=1e-4)



@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("M,K,groups", [(0, 1, 1), (0, 7, 3), (0, 64, 4), (0, 129, 8), (2, 7, 3), (3, 64, 4),
                                        (13, 129, 2), (100, 129, 2), (520, 129, 130)])
def test_grouped_products_either_way_match_the_reference(dtype, M, K, groups):
    """Rows against weights in column groups (a step's recurrence; M=0: one row, grouped_row_add, as at batch 1),
    the groups first to last or last to first (a recurrence alternates, to start on what the step before read
    last): the same sums, bit for bit. M=100: a larger than the L1 and W small, blocks of 12 rows off AMD Zen
    (numeric._grouped_block), the last of 4; M=520: W of 4 MiB, blocks of ~256 KiB of a, the last of 16 rows."""
    from engine.ops.numeric import grouped_add, grouped_row_add
    rng = np.random.default_rng(M * 1000 + K * groups)
    W = rng.standard_normal((K, 64 * groups)).astype(dtype)
    Q = np.ascontiguousarray(W.reshape(K, groups, 64).transpose(1, 0, 2))     # (groups, K, 64)
    a = rng.standard_normal((max(M, 1), K)).astype(dtype)
    start = rng.standard_normal((max(M, 1), 64 * groups)).astype(dtype)
    forward, backward = start.copy(), start.copy()
    for out, back in ((forward, False), (backward, True)):
        if M:
            grouped_add(a, Q, out, back)
        else:
            grouped_row_add(out[0], a[0], Q, back)
    np.testing.assert_allclose(forward, start.astype(np.float64) + a.astype(np.float64) @ W.astype(np.float64),
                               rtol=0, atol=_bound(dtype, K))
    assert np.array_equal(forward, backward)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("I,H,groups", [(1, 1, 1), (7, 5, 3), (64, 64, 4), (129, 33, 2), (40, 96, 6)])
def test_grouped_step_is_the_two_products_and_the_bias_group_by_group(dtype, I, H, groups):
    """grouped_step (a batch-1 step's gates, each group's W and R read together): g <- x @ W + b + h @ R in the sums
    of grouped_row_add into zeros, plus b, plus grouped_row_add, bit for bit, whatever g held, the groups first to
    last or last to first; a NaN in x reaches every column, one in b its own column only."""
    from engine.ops.numeric import grouped_row_add, grouped_step
    rng = np.random.default_rng(I * 100 + H + groups)
    G = 64 * groups
    W, R = rng.standard_normal((I, G)).astype(dtype), rng.standard_normal((H, G)).astype(dtype)
    WT, RT = (np.ascontiguousarray(M.reshape(M.shape[0], groups, 64).transpose(1, 0, 2)) for M in (W, R))
    x, h, b = rng.standard_normal(I).astype(dtype), rng.standard_normal(H).astype(dtype), \
        rng.standard_normal(G).astype(dtype)
    want = np.zeros(G, dtype)
    grouped_row_add(want, x, WT, False)
    want += b
    grouped_row_add(want, h, RT, False)
    for back in (False, True):
        g = np.full(G, np.nan, dtype)
        grouped_step(g, x, WT, b, h, RT, back)
        assert g.tobytes() == want.tobytes(), f"backward={back}"
    np.testing.assert_allclose(want, x.astype(np.float64) @ W + b + h.astype(np.float64) @ R, rtol=0,
                               atol=_bound(dtype, I + H + 1))
    b[G - 1] = np.nan
    g = np.zeros(G, dtype)
    grouped_step(g, x, WT, b, h, RT, True)
    assert np.isnan(g[G - 1]) and not np.isnan(g[:G - 1]).any()
    x[0] = np.nan
    grouped_step(g, x, WT, b, h, RT, False)
    assert np.isnan(g).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("M,K,groups", [(1, 7, 3), (1, 64, 4), (1, 129, 2), (2, 64, 4), (5, 16, 1), (7, 33, 2),
                                        (13, 64, 3), (100, 129, 2)])
def test_grouped_product_overwrites_with_the_product(M, K, groups, dtype):
    """grouped_product (the hoisted input projection): out <- a @ W, whatever out held (its zero-start tiles never
    read it), the same sums bit for bit as grouped_add into zeros, NaN only in the row that holds one; one row (a
    stream's step) goes through grouped_row_add, more through the tiles (6 rows, then 5, 4, 3, 2 or 1)."""
    from engine.ops.numeric import grouped_add, grouped_product
    rng = np.random.default_rng(M * 100 + K)
    W = rng.standard_normal((K, 64 * groups)).astype(dtype)
    Q = np.ascontiguousarray(W.reshape(K, groups, 64).transpose(1, 0, 2))
    a = rng.standard_normal((M, K)).astype(dtype)
    if M > 2:
        a[M - 2, K // 2] = np.nan
    out = np.full((M, 64 * groups), np.nan, dtype)
    grouped_product(a, Q, out)
    added = np.zeros_like(out)
    grouped_add(a, Q, added, False)
    assert np.array_equal(out, added, equal_nan=True)
    ok = ~np.isnan(a).any(axis=1)
    assert np.isnan(out[~ok]).all() and not np.isnan(out[ok]).any()
    np.testing.assert_allclose(out[ok], a[ok].astype(np.float64) @ W.astype(np.float64), rtol=0,
                               atol=_bound(dtype, K))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transpose_block_copies_sixteen_by_sixteen_transposed_and_nothing_else(dtype):
    """transpose_block (tiles.transpose16: four passes of shuffles in registers) at odd offsets and strides: the
    block lands transposed, every other element of dst as it was."""
    from numba import njit

    from engine.ops.numeric import transpose_block

    @njit
    def call(src, soff, sstride, dst, doff, dstride):
        transpose_block(src, soff, sstride, dst, doff, dstride)
    src = np.random.default_rng(2).standard_normal(23 * 37).astype(dtype)
    dst = np.full(19 * 41, np.nan, dtype)
    call(src, 5, 23, dst, 3, 19)
    want = np.full_like(dst, np.nan)
    want[3:3 + 16 * 19].reshape(16, 19)[:, :16] = src[5:5 + 16 * 23].reshape(16, 23)[:, :16].T
    np.testing.assert_array_equal(dst, want)
