"""The vector LSTM cell (engine/ops/cell_vectors.py), through the two calls the kernels make of it (numeric.lstm_cell_at
and lstm_cell_rows), against a float64 cell written out here: every width around the 16- and 32-unit vectors, units
at an offset inside padded gate blocks, peepholes, clip, input_forget, NaN and inf, both float dtypes; nothing
outside the units is written; the row call equals the single-row call bit for bit; a strided array takes the scalar
cell (numeric.lstm_cell) and still matches."""
import numpy as np
import pytest

from engine.ops.numeric import lstm_cell_at, lstm_cell_rows, tanh32

F32, F64 = np.float32, np.float64
WIDTHS = [1, 15, 16, 17, 31, 32, 33, 48, 64, 100]


def reference(g, j0, n, c, peep, use_peep, clip, input_forget):
    """The cell in float64 on units [j0, j0 + n): (new c, new h) for those units. g (4 * chunk,) holds units 0 .. n
    of each gate block (i, o, f, c), c and peep the whole row (H,) and (3H,)."""
    g = g.astype(F64)
    chunk = g.shape[0] // 4
    H = c.shape[0]
    i, o, f, z = (g[k * chunk:k * chunk + n] for k in range(4))
    cold = c[j0:j0 + n].astype(F64)
    pi, po, pf = (peep[k * H + j0:k * H + j0 + n].astype(F64) for k in range(3))
    if use_peep:
        i, f = i + pi * cold, f + pf * cold
    cl = np.clip if np.isfinite(clip) else (lambda x, lo, hi: x)
    sig = lambda x: 1 / (1 + np.exp(-x))      # noqa: E731
    i, f, z = sig(cl(i, -clip, clip)), sig(cl(f, -clip, clip)), np.tanh(cl(z, -clip, clip))
    if input_forget:
        f = 1 - i
    cnew = f * cold + i * z
    if use_peep:
        o = o + po * cnew
    return cnew, sig(cl(o, -clip, clip)) * np.tanh(cnew)


def _case(rng, n, dtype, scale=2.0):
    chunk = n + int(rng.integers(0, 20))          # the part's gate blocks are padded past its units
    H = chunk + int(rng.integers(0, 9))
    j0 = int(rng.integers(0, H - n + 1))
    g = (rng.standard_normal(4 * chunk) * scale).astype(dtype)
    c = (rng.standard_normal(H) * 2).astype(dtype)
    peep = rng.standard_normal(3 * H).astype(dtype)
    return g, j0, c, peep


def _close(got, want, dtype):
    tol = 2e-6 if dtype == F32 else 1e-6          # the float64 executor's cell is the same float32 rational
    assert np.array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    assert np.all(np.abs(got[ok] - want[ok]) <= tol * (1 + np.abs(want[ok])))


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("n", WIDTHS)
def test_the_cell_matches_float64_for_every_width_and_variant(n, dtype):
    rng = np.random.default_rng(n)
    for use_peep in (False, True):
        for clip in (np.inf, 1.5):
            for input_forget in (False, True):
                g, j0, c, peep = _case(rng, n, dtype)
                want_c, want_h = reference(g, j0, n, c, peep, use_peep, clip, input_forget)
                H = c.shape[0]
                h, y = np.full(H, 7, dtype), np.full(H, 9, dtype)
                before = c.copy()
                lstm_cell_at(g.copy(), j0, n, c, h, y, peep, use_peep, dtype(clip), input_forget)
                _close(c[j0:j0 + n], want_c, dtype)
                _close(h[j0:j0 + n], want_h, dtype)
                assert np.array_equal(y[j0:j0 + n], h[j0:j0 + n])
                outside = np.r_[0:j0, j0 + n:H]
                assert np.array_equal(c[outside], before[outside])      # nothing past the units is written
                assert np.all(h[outside] == 7) and np.all(y[outside] == 9)


def test_nan_stays_in_its_unit_and_saturated_gates_are_exact():
    n = 40
    rng = np.random.default_rng(1)
    g, j0, c, peep = _case(rng, n, F32)
    chunk = g.shape[0] // 4
    g[3] = np.nan                                  # unit 3's input gate
    g[chunk + 20] = np.inf                         # unit 20's output gate: sigmoid(inf) = 1
    g[[5, 2 * chunk + 5, 3 * chunk + 5]] = 30      # unit 5: i = f = 1, z = 1 exactly
    H = c.shape[0]
    h, y = np.zeros(H, F32), np.zeros(H, F32)
    cold = c.copy()
    lstm_cell_at(g, j0, n, c, h, y, peep, False, F32(np.inf), False)
    assert np.isnan(c[j0 + 3]) and np.isnan(h[j0 + 3])
    assert np.isfinite(np.delete(c[j0:j0 + n], 3)).all() and np.isfinite(np.delete(h[j0:j0 + n], 3)).all()
    assert c[j0 + 5] == cold[j0 + 5] + F32(1)
    assert h[j0 + 20] == tanh32(c[j0 + 20])


@pytest.mark.parametrize("n", [16, 37, 64, 256])
def test_the_row_call_is_the_single_row_call_bit_for_bit(n):
    """lstm_cell_rows (no row views) against lstm_cell_at row by row; rows whose sequence has ended are left alone,
    and so is every other batch entry and direction slot of Y."""
    rng = np.random.default_rng(n)
    B, Bt, H, T, D = 5, 8, n + 8, 3, 2
    j0, yb, t, d, s = 8, 2, 1, 1, 4
    chunk = n + 16
    r = (rng.standard_normal((B, 4 * chunk)) * 2).astype(F32)
    c = rng.standard_normal((B, H)).astype(F32)
    h = rng.standard_normal((B, H)).astype(F32)
    peep = rng.standard_normal(3 * H).astype(F32)
    seq = np.array([9, 4, 7, 0, 5], np.int32)       # rows 1 and 3 have ended at step 4
    for use_peep in (False, True):
        Y1, Y2 = np.zeros((T, D, Bt, H), F32), np.zeros((T, D, Bt, H), F32)
        c1, c2, h1, h2 = c.copy(), c.copy(), h.copy(), h.copy()
        lstm_cell_rows(r.copy(), B, n, c1, h1, Y1, t, d, yb, j0, seq, s, peep, use_peep, F32(3), False)
        for b in range(B):
            if s < seq[b]:
                lstm_cell_at(r[b].copy(), j0, n, c2[b], h2[b], Y2[t, d, yb + b], peep, use_peep, F32(3), False)
        assert np.array_equal(c1, c2) and np.array_equal(h1, h2) and np.array_equal(Y1, Y2)
        assert np.array_equal(c1[[1, 3]], c[[1, 3]]) and np.array_equal(h1[[1, 3]], h[[1, 3]])
        assert np.count_nonzero(Y1) == 3 * n


def test_strided_arrays_take_the_scalar_cell_and_still_match():
    n = 33
    rng = np.random.default_rng(7)
    g, j0, c, peep = _case(rng, n, F32)
    H = c.shape[0]
    want_c, want_h = reference(g, j0, n, c, peep, True, 2.0, False)
    h2 = np.zeros((H, 2), F32)                     # h a strided view: every other element
    y = np.zeros(H, F32)
    lstm_cell_at(g.copy(), j0, n, c, h2[:, 0], y, peep, True, F32(2.0), False)
    _close(c[j0:j0 + n], want_c, F32)
    _close(h2[j0:j0 + n, 0], want_h, F32)
    assert np.all(h2[:, 1] == 0)
    # the rows' call with strided rows of c: row by row through the same scalar cell
    B = 3
    r = (rng.standard_normal((B, g.shape[0])) * 2).astype(F32)
    cs = np.zeros((B, H, 2), F32)
    cs[:, :, 0] = rng.standard_normal((B, H))
    h, Y = np.zeros((B, H), F32), np.zeros((1, 1, B, H), F32)
    cold = cs[:, :, 0].copy()
    lstm_cell_rows(r.copy(), B, n, cs[:, :, 0], h, Y, 0, 0, 0, j0, np.full(B, 5, np.int32), 0, peep, False,
                   F32(np.inf), False)
    for b in range(B):
        want_c, want_h = reference(r[b], j0, n, cold[b], peep, False, np.inf, False)
        _close(cs[b, j0:j0 + n, 0], want_c, F32)
        _close(h[b, j0:j0 + n], want_h, F32)

