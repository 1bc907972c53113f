"""Every recurrent kernel against the slow float64 reference (tests/naive.py), called directly on packed arrays.

The kernels are pure functions over buffers the caller prepares; this file prepares them the way their docstrings
describe (weights transposed and packed per gate, the input projection hoisted, the state of an empty sequence
zeroed) and compares one direction at a time with the reference run on the same float32 values in float64.
Tolerances: |kernel - reference| <= 1e-5 + 1e-6 |reference| for float32 kernels (up to 100 steps), 1e-12 (1 +
|reference|) for float64. The relative part matters only for values far beyond 1: an LSTM cell state that integrates
over 100 steps reaches 50-90 (with peepholes), where 1e-5 is 2 float32 ulps.

NaN must propagate exactly as in the reference, +-inf must saturate the way float math says (the same NaN and inf
positions, the same values elsewhere), and nothing a kernel must not read (a step past the end of a sequence) may
leak into its outputs.
"""
from __future__ import annotations

import functools
import itertools
import zlib
from dataclasses import dataclass

import numpy as np
import pytest

import naive
from engine.ops.activations import codes_of
from engine.ops.gru_rnn import gru_direction, rnn_direction
from engine.ops.lstm_fast import (lstm_batches_parallel, lstm_direction_fast, lstm_direction_fused, lstm_direction_one,
                                  lstm_direction_parallel, lstm_direction_pipelined, lstm_directions_parallel,
                                  same_steps)
from engine.ops.numeric import grouped_product, input_projection
from engine.ops.recurrent import pack_parts, part_chunk
from engine.ops.numeric import sigmoid32, tanh32
from engine.ops.lstm_kernels import lstm_direction_generic

F32, F64 = np.float32, np.float64
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
D, SLOT = 2, 1          # every kernel writes direction slot 1 of a two-direction Y; slot 0 must stay untouched


def tolerance(dtype):
    """(absolute, relative): |got - ref| <= absolute + relative * |ref|, element by element (llm.c's t_eff)."""
    return (1e-5, 1e-6) if dtype == F32 else (1e-12, 1e-12)


def assert_matches(got, ref, dtype, what) -> float:
    """Same NaN and +-inf positions, finite values within the tolerance; returns the largest finite difference."""
    got = np.asarray(got, F64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape}, reference {ref.shape}"
    nan_got, nan_ref = np.isnan(got), np.isnan(ref)
    assert np.array_equal(nan_got, nan_ref), \
        f"{what}: NaN at {np.argwhere(nan_got)[:5].tolist()}, reference at {np.argwhere(nan_ref)[:5].tolist()}"
    for sign in (np.isposinf, np.isneginf):
        assert np.array_equal(sign(got), sign(ref)), f"{what}: infinities differ from the reference"
    finite = np.isfinite(ref)
    err = np.abs(got[finite] - ref[finite])
    absolute, relative = tolerance(dtype)
    bad = err > absolute + relative * np.abs(ref[finite])
    assert not bad.any(), (f"{what}: abs diff {err[bad].max():.3g} where the reference is "
                           f"{ref[finite][bad][np.argmax(err[bad])]:.3g} (largest diff {err.max():.3g})")
    return float(err.max(initial=0.0))


# ---------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    """One direction's inputs, as ONNX defines them, with float32-representable values (float64 arrays)."""
    op: str
    x: np.ndarray            # (T, B, I)
    W: np.ndarray            # (G*H, I)   LSTM i, o, f, c; GRU z, r, h
    R: np.ndarray            # (G*H, Hout)
    Wb: np.ndarray           # (G*H,)
    Rb: np.ndarray           # (G*H,)
    P: np.ndarray | None     # (3H,) i, o, f (LSTM)
    W_proj: np.ndarray | None  # (Hout, H) (LSTM, PyTorch's projection)
    h0: np.ndarray           # (B, Hout)
    c0: np.ndarray           # (B, H)
    lens: np.ndarray | None  # (B,) int64, None: every entry runs T steps
    reverse: bool = False
    clip: float | None = None
    input_forget: int = 0
    lbr: int = 0             # GRU linear_before_reset
    acts: tuple = ()         # ((name, alpha, beta), ...) f, g[, h]; () = the op's defaults

    @property
    def H(self):
        return self.W.shape[0] // GATES[self.op]

    @property
    def seq(self):
        T, B, _ = self.x.shape
        return np.full(B, T, np.int64) if self.lens is None else self.lens

    def activations(self):
        return list(self.acts) or naive.resolve_activations(naive.DEFAULTS[self.op])

    def default_activations(self):
        return not self.acts


def f32_values(a):
    return np.asarray(a, F32).astype(F64)


def make_case(op, T, B, I, H, seed, *, lens=False, state=False, peep=False, proj=0, scale=0.5, **kw) -> Case:
    rng = np.random.default_rng(seed)
    G = GATES[op]
    Hout = proj or H
    r = lambda *shape: f32_values(rng.standard_normal(shape) * scale)   # noqa: E731
    seq = None
    if lens:
        seq = rng.integers(0, T + 1, size=B).astype(np.int64)
        seq[0] = T
    return Case(op, x=f32_values(rng.standard_normal((T, B, I))), W=r(G * H, I), R=r(G * H, Hout), Wb=r(G * H),
                Rb=r(G * H), P=r(3 * H) if peep else None, W_proj=r(Hout, H) if proj else None,
                h0=r(B, Hout) if state else np.zeros((B, Hout)), c0=r(B, H) if state else np.zeros((B, H)),
                lens=seq, **kw)


def reference(c: Case) -> list:
    """[Y (T, B, Hout), h (B, Hout)] and for the LSTM c (B, H), in float64."""
    common = dict(lens=c.seq, reverse=c.reverse, acts=c.activations(), clip=c.clip)
    if c.op == "LSTM":
        return list(naive.lstm_direction(c.x, c.W, c.R, c.Wb, c.Rb, c.P, c.h0, c.c0, input_forget=c.input_forget,
                                         W_proj=c.W_proj, **common))
    if c.op == "GRU":
        return list(naive.gru_direction(c.x, c.W, c.R, c.Wb, c.Rb, c.h0, linear_before_reset=c.lbr, **common))
    return list(naive.rnn_direction(c.x, c.W, c.R, c.Wb, c.Rb, c.h0, **common))


# ---------------------------------------------------------------------- calling the kernels
def _start(c: Case, dtype):
    """The buffers every kernel takes: x (T*B, I), Y with slot SLOT prefilled with NaN where every step must be
    written (zero where a sequence ends early: the caller zero-fills), and the initial state with the state of an
    empty sequence zeroed (the kernels' contract)."""
    T, B, I = c.x.shape
    Hout = c.R.shape[1]
    Y = np.zeros((T, D, B, Hout), dtype)
    if c.lens is None:
        Y[:, SLOT] = np.nan
    empty = c.seq == 0
    h = np.array(c.h0, dtype)
    h[empty] = 0
    cc = np.array(c.c0, dtype)
    cc[empty] = 0
    return np.ascontiguousarray(c.x.reshape(T * B, I), dtype), Y, h, cc


def _finish(Y, *state):
    assert not Y[:, 1 - SLOT].any(), "a kernel wrote into the other direction's slot"
    return [Y[:, SLOT], *state]


def _project(X2, WT, parts=1):
    """X2 @ WT through the kernel's input projection (which writes into a buffer it is given), its rows in
    ``parts`` on Numba's threads."""
    out = np.full((X2.shape[0], WT.shape[1]), np.nan, X2.dtype)
    input_projection(X2, WT, out, 1, parts)
    return out


def _fclip(c, dtype):
    """The clip of the fast LSTM kernels and the GRU/RNN kernels: +inf for none, float32 for float32 kernels."""
    value = np.inf if c.clip is None else c.clip
    return F32(value) if dtype == F32 else float(value)


def _grouped_parts(c: Case, dtype, nparts):
    """The fast kernels' weights as Recurrent.pack makes them: WT (nparts, 4*chunk // 64, I, 64) and RT
    (nparts, 4*chunk // 64, H, 64) in column groups, bias (nparts, 1, 4*chunk)."""
    WTp = pack_parts(np.ascontiguousarray(c.W.T, dtype)[None], nparts, grouped=True)[0]
    RTp = pack_parts(np.ascontiguousarray(c.R.T, dtype)[None], nparts, grouped=True)[0]
    biasp = pack_parts(np.asarray(c.Wb + c.Rb, dtype)[None, None], nparts, grouped=True)[0].reshape(nparts, 1, -1)
    return WTp, RTp, biasp


def lstm_fast(c: Case, dtype=F32, nparts=1):
    """The fast kernel on the weights in ``nparts`` parts (pack_parts; one part is the plain layout), run in
    sequence: what a Session packed for several threads runs on one (a batch, a stream step)."""
    X2, Y, h, cc = _start(c, dtype)
    H = c.H
    WTp, RTp, biasp = _grouped_parts(c, dtype, nparts)
    peep = np.asarray(c.P if c.P is not None else np.zeros(3 * H), dtype)              # (3H,) i, o, f
    G = WTp.shape[1] * 64
    xw = np.empty((nparts, X2.shape[0], G), dtype)                                     # (nparts, T*B, 4*chunk)
    for k in range(nparts):
        grouped_product(X2, WTp[k], xw[k])
    gates = np.empty(nparts * G, dtype)
    rec = np.empty((nparts, c.x.shape[1], G), dtype)
    lstm_direction_fast(Y, SLOT, 0, xw, c.x.shape[1], RTp, biasp, peep, c.P is not None, c.seq, h, cc, c.reverse,
                        _fclip(c, dtype), bool(c.input_forget), gates, rec)
    return _finish(Y, h, cc)


def lstm_parallel(c: Case, nparts=2, fused=False):
    """The kernel split by hidden unit; ``fused``: each step projects its own input, where the engine runs it
    (every running entry at the same step; else, as the engine, the hoisted projection)."""
    fused = fused and same_steps(c.seq, c.x.shape[1], c.reverse)
    X2, Y, h, cc = _start(c, F32)
    H = c.H
    WTp, RTp, biasp = _grouped_parts(c, F32, nparts)
    peep = np.asarray(c.P if c.P is not None else np.zeros(3 * H), F32)
    xw = np.empty((nparts, X2.shape[0], WTp.shape[1] * 64), F32)                    # (nparts, T*B, 4*chunk)
    if fused:
        xw = np.full((nparts, 0, WTp.shape[1] * 64), np.nan, F32)                     # not read
    lstm_direction_parallel(Y, SLOT, X2, c.x.shape[1], WTp, RTp, biasp, peep, c.P is not None, c.seq, h, cc,
                            c.reverse, _fclip(c, F32), bool(c.input_forget), xw, False, fused, False)
    return _finish(Y, h, cc)


def lstm_fused(c: Case, nparts=1):
    """The fast kernel projecting the input step by step, where the engine runs it (every running entry at the same
    step); else, as the engine, the hoisted projection."""
    if not same_steps(c.seq, c.x.shape[1], c.reverse):
        return lstm_fast(c, F32, nparts)
    X2, Y, h, cc = _start(c, F32)
    WTp, RTp, biasp = _grouped_parts(c, F32, nparts)
    peep = np.asarray(c.P if c.P is not None else np.zeros(3 * c.H), F32)
    rec = np.empty((nparts, c.x.shape[1], WTp.shape[1] * 64), F32)
    lstm_direction_fused(Y, SLOT, 0, X2.reshape(c.x.shape), c.x.shape[1], WTp, RTp, biasp, peep, c.P is not None,
                         c.seq, h, cc, c.reverse, _fclip(c, F32), bool(c.input_forget), rec)
    return _finish(Y, h, cc)


def lstm_pipelined(c: Case):
    """The batch-1 kernel that projects the input inside the recurrence, where the engine runs it (one row, one
    part; float32, the fast kernels' activations); else the fast kernel. The engine runs it from
    PIPELINE_MIN_STEPS steps; here any length."""
    if c.x.shape[1] != 1:
        return lstm_fast(c)
    X2, Y, h, cc = _start(c, F32)
    WTp, RTp, biasp = _grouped_parts(c, F32, 1)
    peep = np.asarray(c.P if c.P is not None else np.zeros(3 * c.H), F32)
    G = WTp.shape[1] * 64
    xw = np.full((X2.shape[0], G), np.nan, F32)          # rows the kernel reads before it writes them would show
    lstm_direction_pipelined(Y, SLOT, X2, WTp[0], RTp[0], biasp[0], peep, c.P is not None, int(c.seq[0]), h, cc,
                             c.reverse, _fclip(c, F32), bool(c.input_forget), np.empty(G, F32), xw)
    return _finish(Y, h, cc)


def lstm_batches(c: Case, nparts=2, fused=False, threads=None):
    """The threaded kernel that splits the batch: each of ``threads`` (default nparts) threads the one-thread kernel
    on its rows, every part of the weights in sequence (a thread may get no rows), the input projected up front or
    (``fused``, where the engine runs it) step by step. A bidirectional LSTM on two threads splits the batch with
    one part."""
    X2, Y, h, cc = _start(c, F32)
    WTp, RTp, biasp = _grouped_parts(c, F32, nparts)
    peep = np.asarray(c.P if c.P is not None else np.zeros(3 * c.H), F32)
    fused = fused and same_steps(c.seq, c.x.shape[1], c.reverse)
    xw = np.empty((nparts, 0 if fused else X2.shape[0], WTp.shape[1] * 64), F32)
    lstm_batches_parallel(Y, SLOT, X2.reshape(c.x.shape), c.x.shape[1], WTp, RTp, biasp, peep, c.P is not None,
                          c.seq, h, cc, c.reverse, _fclip(c, F32), bool(c.input_forget), xw, fused,
                          nparts if threads is None else threads)
    return _finish(Y, h, cc)


def lstm_generic(c: Case, dtype=F32):
    X2, Y, h, cc = _start(c, dtype)
    T, B, _ = c.x.shape
    H, Hout = c.H, c.R.shape[1]
    WT = np.ascontiguousarray(c.W.T, dtype)
    RT = np.ascontiguousarray(c.R.T, dtype)                               # (Hout, 4H)
    projT = np.ascontiguousarray(c.W_proj.T if c.W_proj is not None else np.zeros((1, 1)), dtype)  # (H, Hout)
    peep = np.asarray(c.P if c.P is not None else np.zeros(3 * H), dtype)
    codes, alphas, betas = codes_of(c.activations())
    Yh = np.full((D, B, Hout), np.nan, dtype)
    Yc = np.full((D, B, H), np.nan, dtype)
    with np.errstate(invalid="ignore"):                                   # inf - inf in the NaN/inf cases
        xw = np.dot(X2, WT)
    lstm_direction_generic(Y, Yh, Yc, SLOT, xw, B, RT, np.asarray(c.Wb + c.Rb, dtype), peep,
                           c.P is not None, projT, c.W_proj is not None, c.seq, h, cc, c.reverse, codes, alphas,
                           betas, float(c.clip) if c.clip is not None else np.inf, int(c.input_forget))
    return _finish(Y, Yh[SLOT], Yc[SLOT])


def gru(c: Case, dtype=F32):
    X2, Y, h, _ = _start(c, dtype)
    H = c.H
    RT = c.R.T                                                            # (H, 3H) z, r, h
    bias = np.concatenate([c.Wb[:2 * H] + c.Rb[:2 * H], c.Wb[2 * H:], c.Rb[2 * H:]])   # (4H,) z, r, Wbh, Rbh
    codes, alphas, betas = codes_of(c.activations())
    gru_direction(Y, SLOT, _project(X2, np.ascontiguousarray(c.W.T, dtype)), c.x.shape[1],
                  np.ascontiguousarray(RT[:, :2 * H], dtype), np.ascontiguousarray(RT[:, 2 * H:], dtype),
                  np.asarray(bias, dtype), c.seq, h, c.reverse, codes, alphas, betas,
                  _fclip(c, dtype), bool(c.lbr),
                  dtype == F32 and c.default_activations())
    return _finish(Y, h)


def gru_parallel(c: Case, nparts=2):
    """The threaded kernel with the GRU's part step (linear_before_reset only), on the weights as GRU.pack packs
    them for nparts threads."""
    assert c.lbr and c.default_activations()
    X2, Y, h, _ = _start(c, F32)
    H = c.H
    chunk = part_chunk(H, nparts, True)
    WTp = pack_parts(np.ascontiguousarray(c.W.T, F32)[None], nparts, True, 3)[0]
    RTp = pack_parts(np.ascontiguousarray(c.R.T, F32)[None], nparts, True, 3)[0]
    bias = np.concatenate([c.Wb[:2 * H] + c.Rb[:2 * H], c.Wb[2 * H:], c.Rb[2 * H:]]).astype(F32)
    biasp = pack_parts(bias[None, None], nparts, False, 4, chunk)[0].reshape(nparts, 1, 4 * chunk)
    xw = np.empty((nparts, X2.shape[0], WTp.shape[1] * 64), F32)
    lstm_direction_parallel(Y, SLOT, X2, c.x.shape[1], WTp, RTp, biasp, h[0], False, c.seq, h, h, c.reverse,
                            _fclip(c, F32), False, xw, True, False, False)
    return _finish(Y, h)


def rnn(c: Case, dtype=F32):
    X2, Y, h, _ = _start(c, dtype)
    codes, alphas, betas = codes_of(c.activations())
    rnn_direction(Y, SLOT, _project(X2, np.ascontiguousarray(c.W.T, dtype)), c.x.shape[1],
                  np.ascontiguousarray(c.R.T, dtype), np.asarray(c.Wb + c.Rb, dtype), c.seq, h, c.reverse, codes[0],
                  alphas[0], betas[0], _fclip(c, dtype),
                  dtype == F32 and c.default_activations())
    return _finish(Y, h)


# the engine runs a parallel kernel with two threads or more, each owning a part of the hidden units (lstm-parallel)
# or of the batch (lstm-batches)
KERNELS = {
    "lstm-fast": ("LSTM", F32, lstm_fast),
    "lstm-fast-parts-2": ("LSTM", F32, functools.partial(lstm_fast, nparts=2)),
    "lstm-fast-parts-3": ("LSTM", F32, functools.partial(lstm_fast, nparts=3)),
    "lstm-parallel-2": ("LSTM", F32, functools.partial(lstm_parallel, nparts=2)),
    "lstm-parallel-3": ("LSTM", F32, functools.partial(lstm_parallel, nparts=3)),
    "lstm-parallel-4": ("LSTM", F32, functools.partial(lstm_parallel, nparts=4)),
    "lstm-parallel-fused-2": ("LSTM", F32, functools.partial(lstm_parallel, nparts=2, fused=True)),
    "lstm-parallel-fused-3": ("LSTM", F32, functools.partial(lstm_parallel, nparts=3, fused=True)),
    "lstm-batches-2": ("LSTM", F32, functools.partial(lstm_batches, nparts=2)),
    "lstm-batches-3": ("LSTM", F32, functools.partial(lstm_batches, nparts=3)),
    "lstm-batches-fused-2": ("LSTM", F32, functools.partial(lstm_batches, nparts=2, fused=True)),
    "lstm-batches-one-part-threads-2": ("LSTM", F32, functools.partial(lstm_batches, nparts=1, threads=2)),
    "lstm-batches-fused-one-part-threads-2": ("LSTM", F32, functools.partial(lstm_batches, nparts=1, fused=True,
                                                                        threads=2)),
    "lstm-fused": ("LSTM", F32, lstm_fused),
    "lstm-pipelined": ("LSTM", F32, lstm_pipelined),
    "lstm-fused-parts-2": ("LSTM", F32, functools.partial(lstm_fused, nparts=2)),
    "lstm-generic-f32": ("LSTM", F32, lstm_generic),
    "lstm-generic-f64": ("LSTM", F64, functools.partial(lstm_generic, dtype=F64)),
    "gru-f32": ("GRU", F32, gru),
    "gru-f64": ("GRU", F64, functools.partial(gru, dtype=F64)),
    "gru-parallel-2": ("GRU", F32, functools.partial(gru_parallel, nparts=2)),
    "gru-parallel-3": ("GRU", F32, functools.partial(gru_parallel, nparts=3)),
    "rnn-f32": ("RNN", F32, rnn),
    "rnn-f64": ("RNN", F64, functools.partial(rnn, dtype=F64)),
}


def check(kernel, c: Case, ref=None) -> float:
    op, dtype, run = KERNELS[kernel]
    assert op == c.op
    ref = reference(c) if ref is None else ref
    got = run(c)
    return max(assert_matches(g, r, dtype, f"{kernel} {name}") for g, r, name in zip(got, ref, ("Y", "h", "c")))


# ---------------------------------------------------------------------- random inputs
# (T, B, I, H): one step; a single hidden unit; H not a multiple of 4 (the blocked product's tail); B >= 4 (the
# fast kernels' per-step GEMM instead of the blocked product); 100 steps
SIZES = [(1, 1, 2, 1), (9, 1, 3, 5), (17, 3, 4, 8), (9, 6, 3, 5), (100, 2, 3, 7)]
FEATURES = {
    "plain": {},
    "lens": {"lens": True},
    "reverse-lens": {"reverse": True, "lens": True},
    "state": {"state": True},
    "clip": {"clip": 0.8, "state": True},
    "reverse-clip-lens": {"reverse": True, "clip": 1.3, "lens": True, "state": True},
}
LSTM_FEATURES = {
    **FEATURES,
    "peepholes": {"peep": True, "state": True},
    "input-forget": {"input_forget": 1},
    "everything": {"lens": True, "reverse": True, "peep": True, "clip": 1.3, "input_forget": 1, "state": True},
}
GRU_FEATURES = {**FEATURES, **{f"lbr-{k}": {**v, "lbr": 1} for k, v in FEATURES.items()}}


@functools.lru_cache(maxsize=None)
def random_case(op, size, feature):
    """A case and its reference, shared by the kernels that run it."""
    T, B, I, H = size
    opts = {"LSTM": LSTM_FEATURES, "GRU": GRU_FEATURES, "RNN": FEATURES}[op][feature]
    c = make_case(op, T, B, I, H, seed=zlib.crc32(repr((op, size, feature)).encode()), **opts)
    return c, reference(c)


def more_parts_than_units(kernel, H):
    """pack_parts cannot split H hidden units into that many parts (see test_pack_parts_with_more_parts_than_units)."""
    split = kernel.startswith(("lstm-parallel", "lstm-fast-parts", "lstm-batches", "lstm-fused-parts", "gru-parallel"))
    nparts = int(kernel.rsplit("-", 1)[1]) if split else 1
    return (nparts - 1) * -(-H // nparts) > H


def params(kernels, features):
    return [pytest.param(k, s, f, id=f"{k}-T{s[0]}B{s[1]}H{s[3]}-{f}")
            for k, s, f in itertools.product(kernels, SIZES, features) if not more_parts_than_units(k, s[3])]


LSTM_KERNELS = [k for k in KERNELS if k.startswith("lstm") and k != "lstm-parallel-4"]


@pytest.mark.parametrize("kernel,size,feature", params(LSTM_KERNELS, LSTM_FEATURES))
def test_lstm_kernels_match_the_reference(kernel, size, feature):
    check(kernel, *random_case("LSTM", size, feature))


@pytest.mark.parametrize("kernel,size,feature", params(["gru-f32", "gru-f64"], GRU_FEATURES)
                         + params(["gru-parallel-2", "gru-parallel-3"],
                                  {k: v for k, v in GRU_FEATURES.items() if k.startswith("lbr-")})
                         + params(["rnn-f32", "rnn-f64"], FEATURES))
def test_gru_and_rnn_kernels_match_the_reference(kernel, size, feature):
    check(kernel, *random_case(kernel[:3].upper(), size, feature))


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("size", [(7, 2, 3, 5), (6, 5, 2, 4)], ids=["B2", "B5"])
def test_lstm_generic_projection(size, dtype):
    T, B, I, H = size
    kernel = "lstm-generic-f32" if dtype == F32 else "lstm-generic-f64"
    for opts in ({}, {"lens": True, "reverse": True, "peep": True, "state": True, "clip": 0.9}):
        check(kernel, make_case("LSTM", T, B, I, H, seed=11, proj=3, **opts))


# activations other than the defaults: only the generic kernels; few steps and small weights, since unbounded
# ones (Relu, Affine, LeakyRelu) make the state grow geometrically with the steps (to 1e46 in 6 steps at weights
# of scale 0.5: beyond float32)
ACTIVATIONS = {
    "relu-tanh-affine": (["Relu", "Tanh", "Affine"], [0.5], [0.1]),
    "hardsigmoid-softsign-softplus": (["HardSigmoid", "Softsign", "Softplus"], [0.3], [0.4]),
    "leakyrelu-thresholdedrelu-elu": (["LeakyRelu", "ThresholdedRelu", "Elu"], [0.05, 0.2, 0.9], []),
    "sigmoid-scaledtanh-scaledtanh": (["Sigmoid", "ScaledTanh", "ScaledTanh"], [1.2, 0.8], [0.7, 1.3]),
}


@pytest.mark.parametrize("acts", list(ACTIVATIONS))
@pytest.mark.parametrize("kernel", ["lstm-generic-f32", "lstm-generic-f64", "gru-f32", "gru-f64", "rnn-f32",
                                    "rnn-f64"])
def test_generic_activations_match_the_reference(kernel, acts):
    op = KERNELS[kernel][0]
    names, alphas, betas = ACTIVATIONS[acts]
    n = len(naive.DEFAULTS[op])
    resolved = tuple(naive.resolve_activations(names, alphas, betas)[:n])
    for opts in ({}, {"lens": True, "reverse": True, "clip": 1.5, "state": True, "lbr": 1}):
        if op != "GRU":
            opts.pop("lbr", None)
        check(kernel, make_case(op, 6, 3, 3, 4, seed=5, acts=resolved, scale=0.2, **opts))


# ---------------------------------------------------------------------- NaN, inf, constants
@functools.lru_cache(maxsize=None)
def special_case(op, special, B, lbr=False):
    """T=7, I=3, H=6: inputs with NaN, infinities or constants, and a state that stays finite unless said; and the
    reference's outputs, shared by the kernels (``lbr``: a GRU with linear_before_reset)."""
    c = make_case(op, 7, B, 3, 6, seed=7, state=True, peep=op == "LSTM", **({"lbr": 1} if lbr else {}))
    x, h0, lens = c.x.copy(), c.h0.copy(), None
    if special == "nan-x":
        x[2, 0, 0] = np.nan                       # entry 0 is NaN from step 2 on; the others stay finite
    elif special == "nan-h0":
        h0[1, 3] = np.nan
    elif special == "inf-x":
        x[1, 0, 0] = np.inf
        x[4, 1, 2] = -np.inf
    elif special == "inf-and-nan-x":
        x[3, 0, :] = np.inf                       # on every feature: inf - inf = NaN where the weights' signs differ
        x[5, 1, 1] = np.nan
    elif special == "nan-past-the-end":
        lens = np.full(B, 7, np.int64)
        lens[1] = 3
        x[3:, 1] = np.nan                         # never read: entry 1 ends after 3 steps
    elif special == "zeros":
        x[:] = 0.0
    elif special == "constant":
        x[:] = 3.0
    elif special == "huge":
        x[:] = 1e4                                # every gate saturates
    else:
        raise ValueError(special)
    c = Case(**{**c.__dict__, "x": x, "h0": h0, "lens": lens})
    return c, reference(c)


SPECIALS = ["nan-x", "nan-h0", "inf-x", "inf-and-nan-x", "nan-past-the-end", "zeros", "constant", "huge"]


@pytest.mark.parametrize("B", [2, 5])
@pytest.mark.parametrize("special", SPECIALS)
@pytest.mark.parametrize("kernel", list(KERNELS))
def test_nan_inf_and_constant_inputs(kernel, special, B):
    op = KERNELS[kernel][0]
    c, ref = special_case(op, special, B, lbr=kernel.startswith("gru-parallel"))    # the threaded GRU's only kind
    check(kernel, c, ref)
    y = ref[0]
    if special == "nan-x":
        assert np.isnan(y[2:, 0]).all() and np.isfinite(y[:, 1:]).all()
    if special == "nan-h0":
        assert np.isnan(y[:, 1]).all() and np.isfinite(y[:, 0]).all()
    if special in ("inf-x", "nan-past-the-end", "zeros", "constant", "huge"):
        assert np.isfinite(y).all()


def test_tanh32_and_sigmoid32():
    x = np.linspace(-20, 20, 4001).astype(F32)
    t = np.array([tanh32(v) for v in x], F64)
    s = np.array([sigmoid32(v) for v in x], F64)
    x64 = x.astype(F64)
    assert np.abs(t - np.tanh(x64)).max() <= 3e-7
    assert np.abs(s - 1 / (1 + np.exp(-x64))).max() <= 3e-7
    assert np.array_equal(t[np.abs(x) > 9], np.sign(x64[np.abs(x) > 9]))    # saturated exactly
    assert (tanh32(F32(np.inf)), tanh32(F32(-np.inf)), sigmoid32(F32(np.inf)), sigmoid32(F32(-np.inf))) == \
        (1.0, -1.0, 1.0, 0.0)
    assert np.isnan(tanh32(F32(np.nan))) and np.isnan(sigmoid32(F32(np.nan)))


@pytest.mark.parametrize("N, parts", [(1, 1), (4, 1), (5, 1), (12, 1), (5, 2), (12, 2), (37, 3)])
def test_input_projection(N, parts):
    """Every row written, NaN in one row only, by the blocked loop (N <= 4), the product, or the rows split on
    Numba's threads (the parts uneven at N=37)."""
    rng = np.random.default_rng(N)
    X2 = rng.standard_normal((N, 7)).astype(F32)
    WT = rng.standard_normal((7, 12)).astype(F32)
    X2[0, 3] = np.nan
    got = _project(X2, WT, parts)
    ref = X2.astype(F64) @ WT.astype(F64)
    assert np.isnan(got[0]).all()
    assert np.abs(got[1:] - ref[1:]).max(initial=0.0) <= 1e-5


def test_pack_parts_with_more_parts_than_units():
    c = make_case("LSTM", 3, 1, 2, 5, seed=1)
    assert more_parts_than_units("lstm-parallel-4", 5)
    check("lstm-parallel-4", c)


# ---------------------------------------------------------------------- the pipelined kernel
@pytest.mark.parametrize("I,H", [(3, 5), (64, 64), (40, 96), (130, 17)])
def test_the_pipelined_kernels_match_the_reference(I, H):
    """lstm_direction_pipelined projects four steps ahead, half of K a step, inside the recurrent product (and so
    does the threaded kernel at batch 1, each thread for its part): for every length (whole blocks of four, a
    tail, fewer steps than a block, sequences shorter than the input, none), both directions and the features,
    against the float64 reference and the fast kernel (the same sums, but not all in the same order: a row
    projected alone is summed in two streams, as one row is)."""
    for T, L in [(8, 8), (9, 9), (10, 10), (11, 11), (13, 13), (16, 7), (40, 37), (40, 12), (3, 3), (9, 0)]:
        for opts in ({}, {"reverse": True, "state": True}, {"peep": True, "clip": 0.9, "state": True},
                     {"reverse": True, "input_forget": True}):
            c = make_case("LSTM", T, 1, I, H, seed=T + L, lens=True, **opts)
            c.lens[0] = L
            ref, fast = reference(c), lstm_fast(c)
            # one thread, and each thread for its part (lstm_direction_parallel; pipelined from 8 steps)
            for kernel, got in (("pipelined", lstm_pipelined(c)), ("parallel-2", lstm_parallel(c, 2)),
                                ("parallel-3", lstm_parallel(c, 3))):
                for g, r, f, name in zip(got, ref, fast, ("Y", "h", "c")):
                    what = f"{kernel} T={T} L={L} {opts} {name}"
                    assert_matches(g, r, F32, what)
                    assert_matches(g, np.asarray(f, F64), F32, f"{what} against the fast kernel")
                if L:
                    assert np.isfinite(got[0][:L]).all()


# ---------------------------------------------------------------------- one step of one row
@pytest.mark.parametrize("parts", [1, 2])
@pytest.mark.parametrize("I,H", [(3, 5), (64, 64), (40, 96), (130, 17), (128, 128)])
def test_one_step_of_one_row_is_the_fast_kernels_step(I, H, parts):
    """lstm_direction_one's path for a single step at batch 1 (a stream's step: the input projected straight into
    the gates) makes the general path's sums in its order: bit for bit the fast kernel's step (projection into xw,
    then the gates), with every feature and both directions, and the float64 reference's within the tolerance;
    xw is left alone (NaN: the general path would fill it). In two parts (weights packed for two threads, run in
    sequence) too, every part's gates made before any cell writes h; and the same bit for bit with the column
    groups last to first (``back``, as a stream's every other step). The kernel split by unit (a part a thread)
    makes the same step, bit for bit."""
    for opts, back in (({}, False), ({"reverse": True, "state": True}, True), ({"peep": True, "clip": 0.9,
                       "state": True}, False), ({"reverse": True, "input_forget": True, "state": True}, True),
                       ({}, True)):
        c = make_case("LSTM", 1, 1, I, H, seed=I + H, **opts)
        X2, Y, h, cc = _start(c, F32)
        WTp, RTp, biasp = _grouped_parts(c, F32, parts)
        peep = np.asarray(c.P if c.P is not None else np.zeros(3 * H), F32)
        G = WTp.shape[1] * 64
        xw, scratch = np.full(parts * G, np.nan, F32), np.full(2 * parts * G, np.nan, F32)
        lstm_direction_one(Y, SLOT, X2, 1, WTp, RTp, biasp, peep, c.P is not None, c.seq, h, cc, c.reverse,
                           _fclip(c, F32), bool(c.input_forget), False, xw, scratch, back)
        assert np.isnan(xw).all(), "the general path ran (it projects into xw)"
        got = _finish(Y, h, cc)
        # the kernel split by unit (one thread a part) makes the same step in its tasks (_part_step), its
        # projection task skipped: xw is not read either
        X2, Yt, ht, ct = _start(c, F32)
        lstm_direction_parallel(Yt, SLOT, X2, 1, WTp, RTp, biasp, peep, c.P is not None, c.seq, ht, ct, c.reverse,
                                _fclip(c, F32), bool(c.input_forget), np.full((parts, 1, G), np.nan, F32), False,
                                False, back)
        threaded = _finish(Yt, ht, ct)
        for g, t, f, r, name in zip(got, threaded, lstm_fast(c), reference(c), ("Y", "h", "c")):
            assert np.asarray(g).tobytes() == np.asarray(f).tobytes(), f"{opts} {name}: not the fast kernel's"
            assert np.asarray(t).tobytes() == np.asarray(f).tobytes(), f"{opts} {name}: the threaded step differs"
            assert_matches(g, r, F32, f"one step {opts} {name}")


# ---------------------------------------------------------------------- both directions at once
def _both_directions(cases, fused, at_once):
    """A bidirectional LSTM from two one-direction cases (the same x and lengths): both directions at once
    (lstm_directions_parallel, one thread each) or one after the other (lstm_direction_one, as one thread runs
    them). Returns Y (T, 2, B, H), h (2, B, H), c (2, B, H)."""
    T, B, I = cases[0].x.shape
    H = cases[0].H
    X2 = np.ascontiguousarray(cases[0].x.reshape(T * B, I), F32)
    parts = [_grouped_parts(c, F32, 1) for c in cases]
    WTp, RTp, biasp = (np.ascontiguousarray(np.stack([p[k] for p in parts])) for k in range(3))
    peep = np.stack([np.asarray(c.P if c.P is not None else np.zeros(3 * H), F32) for c in cases])
    G = WTp.shape[2] * 64
    seq = cases[0].seq
    Y = np.full((T, 2, B, H), np.nan, F32)
    if cases[0].lens is not None:
        Y[:] = 0
    h = np.stack([np.array(c.h0, F32) for c in cases])
    cc = np.stack([np.array(c.c0, F32) for c in cases])
    h[:, seq == 0] = 0
    cc[:, seq == 0] = 0
    reverse = np.array([int(c.reverse) for c in cases], np.int64)
    f = [fused and same_steps(seq, B, c.reverse) for c in cases]
    n_xw = 0 if all(f) else T * B * G
    xw = np.full(2 * n_xw, np.nan, F32)                 # read before written would show
    scratch = np.full(2 * (B + 1) * G, np.nan, F32)
    args = (cases[0].P is not None, seq)
    clip, inf = _fclip(cases[0], F32), bool(cases[0].input_forget)
    if at_once:
        lstm_directions_parallel(Y, X2, B, WTp, RTp, biasp, peep, *args, h, cc, reverse, clip, inf, f[0], f[1], xw,
                                 scratch, False)
    else:
        for d in range(2):
            lstm_direction_one(Y, d, X2, B, WTp[d], RTp[d], biasp[d], peep[d], *args, h[d], cc[d], reverse[d] == 1,
                               clip, inf, f[d], xw[:n_xw], scratch[:(B + 1) * G], False)
    return Y, h, cc


@pytest.mark.parametrize("feature", ["plain", "lens-state", "peep-clip", "input-forget"])
@pytest.mark.parametrize("size,fused", [((12, 1, 3, 5), False), ((12, 5, 4, 13), False), ((12, 5, 4, 13), True),
                                        ((3, 2, 6, 70), True)], ids=["B1-pipelined", "B5", "B5-fused", "H70-fused"])
def test_both_directions_at_once_match_the_reference_and_one_after_the_other(size, fused, feature):
    """lstm_directions_parallel: each direction on a thread of its own, with buffers of its own, gives what one
    thread gives running them in turn (bit for bit: the same kernels) and the float64 reference; at batch 1 from
    eight steps the pipelined kernel, from four rows (fused) the step-by-step projection, except a reverse
    direction with unequal lengths (its projection hoisted)."""
    T, B, I, H = size
    opts = {"plain": {}, "lens-state": {"lens": True, "state": True}, "peep-clip": {"peep": True, "clip": 0.8},
            "input-forget": {"input_forget": 1}}[feature]
    forward = make_case("LSTM", T, B, I, H, seed=11, **opts)
    backward = make_case("LSTM", T, B, I, H, seed=12, **opts)
    backward = Case(**{**backward.__dict__, "x": forward.x, "lens": forward.lens, "reverse": True})
    cases = [forward, backward]
    Y, h, cc = _both_directions(cases, fused, at_once=True)
    Y1, h1, c1 = _both_directions(cases, fused, at_once=False)
    np.testing.assert_array_equal(Y, Y1)
    np.testing.assert_array_equal(h, h1)
    np.testing.assert_array_equal(cc, c1)
    for d, c in enumerate(cases):
        for got, ref, name in zip((Y[:, d], h[d], cc[d]), reference(c), ("Y", "h", "c")):
            assert_matches(got, ref, F32, f"direction {d} {name}")


# ---------------------------------------------------------------------- the three LSTM kernels agree
@pytest.mark.parametrize("feature", list(LSTM_FEATURES))
@pytest.mark.parametrize("size", [(9, 1, 3, 5), (30, 3, 4, 13), (12, 5, 3, 8)], ids=["B1", "B3", "B5"])
def test_fast_generic_and_parallel_lstm_kernels_agree(size, feature):
    T, B, I, H = size
    c = make_case("LSTM", T, B, I, H, seed=2, **LSTM_FEATURES[feature])
    fast = lstm_fast(c)
    for other in (lstm_generic(c), lstm_parallel(c, 2), lstm_parallel(c, 3), lstm_fast(c, nparts=2),
                  lstm_fast(c, nparts=3)):
        for a, b, name in zip(fast, other, ("Y", "h", "c")):
            assert_matches(a, np.asarray(b, F64), F32, name)
