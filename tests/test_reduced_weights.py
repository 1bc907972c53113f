"""Reduced-precision recurrent weights (bfloat16, int8): the kernels against numpy references, whole models against
tests/naive.py run on the same (decoded) weights in float64, streaming, threads, the file format and its errors, the
converter's and the command line's checks. No torch or onnxruntime here (tests/test_reduced_weights_torch.py has
them)."""
import json
import struct

import numpy as np
import pytest

import engine
import naive
from built_models import recurrent_model
from converters.reduced import reduce_weights
from engine import quant
from engine.errors import ConversionError, FormatVersionError, ModelFileError
from engine.model import METADATA_KEY
from engine.ops import reduced_kernels as rk
from engine.ops.recurrent import group_pack


def decoded_reference(model, op, direction="forward", **attrs):
    """naive.recurrent on the model's weights as the engine decodes them (float64)."""
    W, R = quant.decoded(model, "W", np.float64), quant.decoded(model, "R", np.float64)
    extra = {"P": model.tensors["P"]} if "P" in model.tensors else {}

    def reference(feed):
        return naive.recurrent(op, feed["X"], W, R, model.tensors["B"], feed.get("sequence_lens"),
                               feed.get("initial_h"), feed.get("initial_c"), direction=direction, **attrs, **extra)
    return reference


def quantized_reference(x, q, scales):
    """x (N, K) @ (q * scales) with each row of x quantized as reduced_kernels.int8_product does (float32 steps, exact
    integer sums)."""
    out = np.empty((x.shape[0], q.shape[1]), np.float64)
    for r, row in enumerate(x.astype(np.float32)):
        amax = np.float32(np.abs(row).max())
        if amax == 0:
            out[r] = 0
            continue
        xi = np.clip(np.rint(row * (np.float32(127) / amax)), -127, 127).astype(np.int64)
        out[r] = (amax / np.float32(127)) * scales.astype(np.float64) * (xi @ q.astype(np.int64))
    return out


# ---------------------------------------------------------------------- the encodings
def test_bfloat16_rounds_to_nearest_even_and_keeps_specials():
    x = np.array([1.0, -2.5, 1 + 2 ** -8, 1 + 3 * 2 ** -9, np.inf, -np.inf, 0.0, 3.4e38], np.float32)
    bits = quant.to_bfloat16(x)
    back = quant.from_bfloat16(bits)
    assert back[0] == 1.0 and back[1] == -2.5 and back[2] == 1.0          # tie to even
    assert back[3] == 1 + 2 ** -7                                          # above the tie: up
    assert np.isinf(back[4]) and back[4] > 0 and np.isinf(back[5]) and back[5] < 0 and back[6] == 0
    assert np.isnan(quant.from_bfloat16(quant.to_bfloat16(np.array([np.nan], np.float32))))[0]
    w = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    assert np.abs(quant.from_bfloat16(quant.to_bfloat16(w)) - w).max() <= np.abs(w).max() * 2 ** -8


def test_int8_is_symmetric_per_row():
    w = np.random.default_rng(0).standard_normal((2, 8, 5)).astype(np.float32)
    w[1, 3] = 0
    q, s = quant.to_int8(w)
    assert q.dtype == np.int8 and s.shape == (2, 8) and s[1, 3] == 0 and (q[1, 3] == 0).all()
    assert (np.abs(q).max(axis=-1)[s > 0] == 127).all()
    assert np.abs(quant.from_int8(q, s) - w).max() <= s.max() / 2 + 1e-7
    with pytest.raises(ConversionError, match="NaN or inf"):
        quant.to_int8(np.array([[np.nan, 1.0]], np.float32))


# ---------------------------------------------------------------------- kernels
@pytest.mark.parametrize("K,G", [(16, 16), (5, 12), (33, 70), (64, 256), (7, 64), (130, 192)])
def test_int8_product_matches_integer_reference(K, G):
    """Sums scaled through acc (G not a multiple of 64) and in registers (64, 192, 256)."""
    rng = np.random.default_rng(K * G)
    q = rng.integers(-127, 128, (K, G)).astype(np.int8)
    scales = rng.uniform(0.001, 0.02, G).astype(np.float32)
    neg = np.zeros(-(-G // 64) * 64, np.int32)
    neg[:G] = -128 * q.astype(np.int32).sum(0)
    x = rng.standard_normal((7, K)).astype(np.float32)
    want = quantized_reference(x, q, scales)
    acc, xq = np.empty(neg.shape[0], np.int32), np.empty(-(-K // 4) * 4, np.uint8)
    for r in range(x.shape[0]):
        g = np.full(G, 0.5, np.float32)
        rk.int8_product(g, x[r], group_pack(q, 4), scales, neg, acc, xq, False)
        assert np.abs(g - 0.5 - want[r]).max() <= 1e-5 * max(1.0, np.abs(want[r]).max())
        back = np.full(G, 0.5, np.float32)      # the column groups last to first: the same sums
        rk.int8_product(back, x[r], group_pack(q, 4), scales, neg, acc, xq, True)
        assert np.array_equal(back, g)
    for n in (1, 3, 4, 5, 7):          # four rows per pass, and the rows past a multiple of four
        out = np.full((n, G), np.nan, np.float32)
        rk.int8_rows(x[:n], group_pack(q, 4), scales, neg, out)
        assert np.abs(out - want[:n]).max() <= 1e-5 * max(1.0, np.abs(want).max())


@pytest.mark.parametrize("G", [32, 64])
def test_int8_kernels_zero_and_non_finite_rows(G):
    rng = np.random.default_rng(1)
    q = rng.integers(-127, 128, (16, G)).astype(np.int8)
    scales = np.full(G, 0.01, np.float32)
    neg = np.zeros(64, np.int32)
    neg[:G] = -128 * q.astype(np.int32).sum(0)
    x = rng.standard_normal((5, 16)).astype(np.float32)
    x[1] = 0
    x[2, 3] = np.nan
    x[3, 0] = np.inf
    out = np.empty((5, G), np.float32)
    rk.int8_rows(x, group_pack(q, 4), scales, neg, out)
    assert (out[1] == 0).all() and np.isnan(out[2]).all() and np.isnan(out[3]).all()
    assert np.isfinite(out[[0, 4]]).all()
    acc, xq = np.empty(64, np.int32), np.empty(16, np.uint8)
    g = np.ones(G, np.float32)
    rk.int8_product(g, x[1], group_pack(q, 4), scales, neg, acc, xq, False)
    assert (g == 1).all()
    rk.int8_product(g, x[2], group_pack(q, 4), scales, neg, acc, xq, True)
    assert np.isnan(g).all()


def test_int8_rows_in_chunks_are_each_row_alone_bit_for_bit():
    """Rows past ROWS_CHUNK (the chunks, and the n % 4 rows of the last one), written into every other row of a
    wider array: each row equals the projection of that row by itself, and the non-finite rows are NaN."""
    rng = np.random.default_rng(3)
    K, G = 40, 128
    q = rng.integers(-127, 128, (K, G)).astype(np.int8)
    scales = rng.uniform(0.002, 0.02, G).astype(np.float32)
    neg = (-128 * q.astype(np.int32).sum(0)).astype(np.int32)
    N = 2 * rk.ROWS_CHUNK + 7
    x = rng.standard_normal((N, K)).astype(np.float32)
    x[rk.ROWS_CHUNK + 1, 5] = np.nan
    x[N - 2] = 0
    wide = np.full((2 * N, G + 64), 7.0, np.float32)
    out = wide[::2, 32:32 + G]
    rk.int8_rows(x, group_pack(q, 4), scales, neg, out)
    for i in range(N):
        alone = np.empty((1, G), np.float32)
        rk.int8_rows(x[i:i + 1], group_pack(q, 4), scales, neg, alone)
        assert np.array_equal(out[i], alone[0], equal_nan=True)
    assert np.isnan(out[rk.ROWS_CHUNK + 1]).all() and (out[N - 2] == 0).all()
    assert np.isfinite(np.delete(out, rk.ROWS_CHUNK + 1, axis=0)).all()
    assert (wide[1::2] == 7).all() and (wide[:, :32] == 7).all() and (wide[:, 32 + G:] == 7).all()
    want = quantized_reference(x[:3], q, scales)
    assert np.abs(out[:3] - want).max() <= 1e-5 * max(1.0, np.abs(want).max())


def _int8_matrix(rng, K, G):
    """A random (K, G) int8 matrix packed as the kernels read it: column groups, per-column scales, the zero point's
    correction."""
    q = rng.integers(-127, 128, (K, G)).astype(np.int8)
    neg = np.zeros(-(-G // 64) * 64, np.int32)
    neg[:G] = -128 * q.astype(np.int32).sum(0)
    return group_pack(q, 4), rng.uniform(0.002, 0.02, G).astype(np.float32), neg


@pytest.mark.parametrize("In,H", [(20, 16), (64, 32)])
@pytest.mark.parametrize("L,T", [(8, 8), (9, 12), (10, 10), (11, 16), (13, 13), (100, 100)])
@pytest.mark.parametrize("reverse", [False, True])
def test_int8_pipelined_lstm_is_the_unpipelined_bit_for_bit(In, H, L, T, reverse):
    """lstm_int8_pipelined (the projection inside the recurrence) against int8_rows then lstm_direction_reduced:
    the same exact integer sums scaled the same way. Lengths: two blocks only, tails of 1-3 steps, shorter than the
    input; peepholes, clip and input_forget on one case each; a NaN in one input row and a zero initial state."""
    rng = np.random.default_rng(L * 100 + T + In)
    G = 4 * H
    WQ, wscale, wneg = _int8_matrix(rng, In, G)
    R, rscale, rneg = _int8_matrix(rng, H, G)
    bias = rng.standard_normal(G).astype(np.float32)
    peep = rng.standard_normal(3 * H).astype(np.float32)
    X = rng.standard_normal((T, In)).astype(np.float32)
    use_peep, clip, input_forget = L == 9, np.float32(1.5 if L == 10 else np.inf), L == 11
    if L == 13:
        X[6, 3] = np.nan           # a row projected in the recurrence: NaN from its step on, in both
    assert rk.int8_pipelines(1, L, In, H, G)
    h0 = np.zeros(H, np.float32) if L == 8 else (0.5 * rng.standard_normal(H)).astype(np.float32)
    c0 = (0.5 * rng.standard_normal(H)).astype(np.float32)
    outs = []
    for pipelined in (False, True):
        Y = np.full((T, 1, 1, H), -7.0, np.float32)
        h, c = h0.copy().reshape(1, H), c0.copy().reshape(1, H)
        xw = np.full((T, G), np.nan, np.float32)
        if pipelined:
            rk.lstm_int8_pipelined(Y, 0, X, WQ, wscale, wneg, R, rscale, rneg, bias, peep, use_peep, L, h[0], c[0],
                                   reverse, clip, input_forget, xw)
        else:
            rk.int8_rows(X, WQ, wscale, wneg, xw)
            rk.lstm_direction_reduced(Y, 0, xw, 1, R, rscale, rneg, bias, peep, use_peep, np.array([L]), h, c,
                                      reverse, clip, input_forget)
        outs.append((Y, h, c))
    (Y1, h1, c1), (Y2, h2, c2) = outs
    assert np.array_equal(Y1, Y2, equal_nan=True) and np.array_equal(h1, h2, equal_nan=True)
    assert np.array_equal(c1, c2, equal_nan=True)
    assert np.isnan(Y2).any() == (L == 13) and (Y2[L:] == -7.0).all()


@pytest.mark.parametrize("N,K,G", [(1, 8, 16), (3, 13, 40), (9, 20, 300), (40, 64, 64)])
def test_bfloat16_products_match_float64(N, K, G):
    rng = np.random.default_rng(N + K)
    w = quant.to_bfloat16(rng.standard_normal((K, G)).astype(np.float32))
    x = rng.standard_normal((N, K)).astype(np.float32)
    want = x.astype(np.float64) @ quant.from_bfloat16(w, np.float64)
    out = np.full((N, G), np.nan, np.float32)
    rk.bf16_rows(x, group_pack(w, 2), out)
    assert np.abs(out - want).max() <= 1e-5 * np.abs(want).max()
    g = np.full(G, 0.25, np.float32)
    acc, xs = np.empty(-(-G // 64) * 64, np.float32), np.empty(-(-K // 2) * 2, np.float32)
    rk.bf16_product(g, x[0], group_pack(w, 2), acc, xs, False)
    assert np.abs(g - 0.25 - want[0]).max() <= 1e-5 * np.abs(want).max()
    back = np.full(G, 0.25, np.float32)
    rk.bf16_product(back, x[0], group_pack(w, 2), acc, xs, True)
    assert np.array_equal(back, g)


# ---------------------------------------------------------------------- whole models
CASES = [
    ("LSTM", dict(direction="bidirectional", peepholes=True)),
    ("LSTM", dict(clip=1.5, input_forget=1, sequence_lens=True)),
    ("GRU", dict(direction="bidirectional")),
    ("GRU", dict(linear_before_reset=1, sequence_lens=True)),
    ("RNN", dict(direction="reverse")),
]


def _feed(model, op, T=6, B=3, I=5, seed=0, D=1):
    rng = np.random.default_rng(seed)
    feed = {"X": rng.standard_normal((T, B, I)).astype(np.float32),
            "initial_h": (0.5 * rng.standard_normal((D, B, 17))).astype(np.float32)}
    if op == "LSTM":
        feed["initial_c"] = (0.5 * rng.standard_normal((D, B, 17))).astype(np.float32)
    if any(s.name == "sequence_lens" for s in model.inputs):
        feed["sequence_lens"] = np.array([T, 0, T - 2][:B], np.int32)
    return feed


@pytest.mark.parametrize("weights", ["bfloat16", "int8"])
@pytest.mark.parametrize("op,kw", CASES)
def test_models_against_the_decoded_reference(op, kw, weights):
    model, _ = recurrent_model(op, I=5, H=17, scale=0.3, **kw)
    reduced = reduce_weights(model, weights)
    attrs = {k: v for k, v in kw.items() if k in ("clip", "input_forget", "linear_before_reset")}
    reference = decoded_reference(reduced, op, kw.get("direction", "forward"), **attrs)
    D = 2 if kw.get("direction") == "bidirectional" else 1
    feed = _feed(reduced, op, D=D)
    want = reference(feed)
    session = engine.Session(reduced, threads=1)
    assert "reduced weights" in session.program()
    got = session.run(None, feed)
    # bfloat16 computes exactly on the stored weights (float32 rounding only); int8 also quantizes each step's input
    # and state to 8 bits
    tol = 2e-5 if weights == "bfloat16" else 3e-2
    for a, b in zip(got, want):
        assert np.abs(a - b).max() <= tol
    # float64 compute has no reduced kernel: the weights are decoded when packed, and the result is the reference's
    exact = engine.Session(reduced, precision="float64").run(None, feed)
    for a, b in zip(exact, want):
        assert np.abs(a - b).max() <= 1e-9
    # two threads: the reduced kernels run single-threaded, same result
    again = engine.Session(reduced, threads=2).run(None, feed)
    for a, b in zip(again, got):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("kw", [{}, dict(direction="bidirectional", peepholes=True, clip=2.0),
                                dict(direction="reverse", sequence_lens=True, input_forget=1)])
def test_int8_lstm_at_batch_1_projects_in_the_recurrence(kw):
    """An int8 LSTM at batch 1 from 8 steps, H=16 (whole column groups of 64 gates), projects its input inside the
    recurrence (reduced_kernels.lstm_int8_pipelined): the decoded reference's result, and bit for bit the
    unpipelined kernel's (the same sequence as the first entry of a batch of two)."""
    model, _ = recurrent_model("LSTM", I=5, H=16, scale=0.3, **kw)
    reduced = reduce_weights(model, "int8")
    attrs = {k: v for k, v in kw.items() if k in ("clip", "input_forget")}
    reference = decoded_reference(reduced, "LSTM", kw.get("direction", "forward"), **attrs)
    D = 2 if kw.get("direction") == "bidirectional" else 1
    rng = np.random.default_rng(5)
    T = 13
    pair = {"X": rng.standard_normal((T, 2, 5)).astype(np.float32),
            "initial_h": (0.5 * rng.standard_normal((D, 2, 16))).astype(np.float32),
            "initial_c": (0.5 * rng.standard_normal((D, 2, 16))).astype(np.float32)}
    if kw.get("sequence_lens"):
        pair["sequence_lens"] = np.array([11, 5], np.int32)
    one = {k: np.ascontiguousarray(v[:, :1] if v.ndim == 3 else v[:1]) for k, v in pair.items()}
    session = engine.Session(reduced, threads=1)
    got = session.run(None, one)
    for a, b in zip(got, reference(one)):
        assert np.abs(a - b).max() <= 3e-2
    both = session.run(None, pair)
    for a, b in zip(got, both):
        assert np.array_equal(a, b[:, :, :1] if a.ndim == 4 else b[:, :1])


@pytest.mark.parametrize("weights", ["bfloat16", "int8"])
def test_larger_lstm_error_against_float32_is_small(weights):
    model, _ = recurrent_model("LSTM", I=64, H=128, scale=0.1, seed=3)
    feed = {"X": np.random.default_rng(4).standard_normal((50, 2, 64)).astype(np.float32)}
    ref = engine.Session(model, threads=1).run(None, feed)
    got = engine.Session(reduce_weights(model, weights), threads=1).run(None, feed)
    err = max(float(np.abs(a - b).max()) for a, b in zip(got, ref))
    assert err <= (2e-2 if weights == "bfloat16" else 5e-2), err


@pytest.mark.parametrize("weights", ["bfloat16", "int8"])
def test_stream_steps_match_run(weights):
    for op in ("LSTM", "GRU", "RNN"):
        model, _ = recurrent_model(op, I=5, H=17, scale=0.3)
        session = engine.Session(reduce_weights(model, weights), threads=1)
        x = np.random.default_rng(1).standard_normal((8, 2, 5)).astype(np.float32)
        whole = session.run(["Y"], {"X": x})[0]
        stream = session.stream(batch_size=2)
        steps = np.stack([np.asarray(stream.step(x[t], "Y")).reshape(whole.shape[1:]) for t in range(8)])
        assert np.abs(steps - whole).max() <= 1e-6


def test_batch_of_eight_runs_every_entry():
    """Batch >= 4 runs the float kernels on BLAS; the reduced ones go entry by entry."""
    model, _ = recurrent_model("LSTM", I=5, H=17, scale=0.3)
    reduced = reduce_weights(model, "bfloat16")
    x = np.random.default_rng(2).standard_normal((4, 8, 5)).astype(np.float32)
    want = decoded_reference(reduced, "LSTM")({"X": x})
    got = engine.Session(reduced, threads=1).run(None, {"X": x})
    assert max(float(np.abs(a - b).max()) for a, b in zip(got, want)) <= 2e-5


# ---------------------------------------------------------------------- the file
@pytest.mark.parametrize("weights", ["bfloat16", "int8"])
def test_file_round_trip(weights, tmp_path):
    model, _ = recurrent_model("GRU", I=32, H=64, direction="bidirectional")
    engine.save(model, tmp_path / "f32.lstm")
    reduced = reduce_weights(model, weights)
    engine.save(reduced, tmp_path / "r.lstm")
    loaded = engine.load(tmp_path / "r.lstm")
    assert engine.load(tmp_path / "f32.lstm").format_version == 1          # older engines still read it
    assert loaded.format_version == 2 and loaded.weight_encodings == reduced.weight_encodings
    assert loaded.origin["weights"] == weights
    assert loaded.tensors["W"].dtype == quant.STORED_DTYPE[weights]
    for name, t in reduced.tensors.items():
        assert np.array_equal(loaded.tensors[name], t)
    ratio = (tmp_path / "r.lstm").stat().st_size / (tmp_path / "f32.lstm").stat().st_size
    assert ratio < (0.56 if weights == "bfloat16" else 0.33)
    assert loaded.parameter_count() == model.parameter_count()
    x = np.random.default_rng(0).standard_normal((5, 1, 32)).astype(np.float32)
    a = engine.Session(tmp_path / "r.lstm", threads=1).run(None, {"X": x})
    b = engine.Session(reduced, threads=1).run(None, {"X": x})
    assert all(np.array_equal(u, v) for u, v in zip(a, b))


def _rewrite_meta(data, mutate):
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    meta = json.loads(header["__metadata__"][METADATA_KEY])
    mutate(meta)
    header["__metadata__"][METADATA_KEY] = json.dumps(meta)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + data[8 + n:]


@pytest.fixture(scope="module")
def int8_bytes():
    model, _ = recurrent_model("LSTM", I=4, H=8)
    return engine.model.to_bytes(reduce_weights(model, "int8"))


def _set(key, value):
    def mutate(meta):
        meta["weight_encodings"]["W"][key] = value
    return mutate


@pytest.mark.parametrize("mutate,message", [
    (_set("encoding", "int4"), "weight encoding 'int4', which this engine does not know"),
    (_set("encoding", "bfloat16"), "must be a rank-3 uint16 tensor"),
    (_set("scales", "nothing"), "its scales 'nothing' are not a tensor"),
    (_set("scales", "B"), "scales 'B' must be float32 of shape"),
    (lambda m: m["weight_encodings"].update(B={"encoding": "bfloat16"}), "must be a rank-3 uint16|only the W and R"),
    (lambda m: m["weight_encodings"].update(Z={"encoding": "bfloat16"}), "'Z', which is not a tensor"),
    (lambda m: m.update(weight_encodings=[1]), "weight_encodings must map"),
    (lambda m: m["weight_encodings"].update(R="int8"), "must be a JSON object"),
    (lambda m: m.update(format_version=1), "W must be a float tensor"),       # a version-1 file has no encodings
])
def test_bad_encodings_are_model_file_errors(int8_bytes, mutate, message):
    with pytest.raises(ModelFileError, match=message):
        engine.load(_rewrite_meta(int8_bytes, mutate))


def test_a_model_built_in_code_is_written_as_version_2(tmp_path):
    model, _ = recurrent_model("RNN", I=4, H=8)
    reduced = reduce_weights(model, "bfloat16")
    built = engine.Model(inputs=model.inputs, outputs=model.outputs, nodes=model.nodes, tensors=reduced.tensors,
                         weight_encodings=reduced.weight_encodings)          # format_version left at 1
    engine.save(built.validate(), tmp_path / "m.lstm")
    assert engine.load(tmp_path / "m.lstm").format_version == 2


def test_encoded_bias_is_refused():
    model, _ = recurrent_model("RNN", I=4, H=8)
    tensors = dict(model.tensors, B=quant.to_bfloat16(model.tensors["B"])[None].reshape(1, 1, -1))
    bad = engine.Model(inputs=model.inputs, outputs=model.outputs, nodes=model.nodes, tensors=tensors,
                       format_version=2, weight_encodings={"B": {"encoding": "bfloat16"}})
    with pytest.raises(ModelFileError, match="only the W and R inputs"):
        bad.validate()


def test_newer_format_version_is_refused(int8_bytes):
    with pytest.raises(FormatVersionError, match="upgrade lstm-engine"):
        engine.load(_rewrite_meta(int8_bytes, lambda m: m.update(format_version=3)))


def test_bad_scales_values_are_refused():
    model, _ = recurrent_model("LSTM", I=4, H=8)
    reduced = reduce_weights(model, "int8")
    scales = reduced.weight_encodings["R"]["scales"]
    reduced.tensors[scales] = np.full_like(reduced.tensors[scales], np.nan)
    with pytest.raises(ModelFileError, match="finite"):
        reduced.validate()


# ---------------------------------------------------------------------- converter and command line
def test_converter_checks():
    model, _ = recurrent_model("LSTM", I=4, H=8)
    assert reduce_weights(model, "float32") is model
    with pytest.raises(ConversionError, match="not one of float32, bfloat16, int8"):
        reduce_weights(model, "fp8")
    f64, _ = recurrent_model("LSTM", I=4, H=8, dtype="float64")
    with pytest.raises(ConversionError, match="float32 models"):
        reduce_weights(f64, "int8")
    from built_models import if_model
    with pytest.raises(ConversionError, match="no LSTM, GRU or RNN node with constant W and R"):
        reduce_weights(if_model()[0], "bfloat16")
    from built_models import weights_as_inputs
    fed, _ = weights_as_inputs(model, ["R"])
    with pytest.raises(ConversionError, match="no LSTM, GRU or RNN node with constant"):
        reduce_weights(fed, "int8")


def test_command_line(tmp_path, capsys):
    from engine.cli import main
    from lstm_util import rnn_model
    onnx_model, _ = rnn_model("GRU", I=6, H=16, D=1, T="T", B="B", rng=np.random.default_rng(0), attrs={})
    src = tmp_path / "gru.onnx"
    src.write_bytes(onnx_model.SerializeToString())
    with pytest.raises(SystemExit) as e:
        main(["convert", str(src), "-o", str(tmp_path / "x.lstm"), "--weights", "int4"])
    assert e.value.code == 2
    assert "invalid choice: 'int4' (choose from 'float32', 'bfloat16', 'int8')" in capsys.readouterr().err
    for weights in ("float32", "bfloat16", "int8"):
        out = tmp_path / f"{weights}.lstm"
        assert main(["convert", str(src), "-o", str(out), "--weights", weights]) == 0
        assert (f"weights {weights}" in capsys.readouterr().out) == (weights != "float32")
        model = engine.load(out)
        assert quant.encoding_of(model, model.nodes[0].inputs[1]) == weights
    assert main(["inspect", str(tmp_path / "int8.lstm")]) == 0
    text = capsys.readouterr().out
    assert "lstm-engine v2" in text and "weights:        int8 recurrent W and R (2 tensors)" in text
    x = np.random.default_rng(0).standard_normal((4, 1, 6)).astype(np.float32)
    ref = engine.Session(tmp_path / "float32.lstm").run(None, {"X": x})
    for weights, tol in (("bfloat16", 2e-2), ("int8", 5e-2)):
        got = engine.Session(tmp_path / f"{weights}.lstm").run(None, {"X": x})
        assert max(float(np.abs(a - b).max()) for a, b in zip(got, ref)) <= tol
