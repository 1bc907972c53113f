"""Single-LSTM-node ONNX graphs, engine against onnxruntime, over every attribute and optional input.

Each parametrized case fixes the graph's structure (each structure is one compile); hypothesis varies sizes,
lengths and values. layout=1 is compared with onnxruntime running the equivalent layout=0 graph on transposed data,
since onnxruntime rejects layout=1.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import engine
from lstm_util import SETTINGS, compare, make_feeds, max_abs_diff, ort_session, rnn_model, to_double, tolerance

pytestmark = pytest.mark.slow   # onnxruntime, and many compiled models

# the ahead-of-time runtime (LSTM_ENGINE_RUNTIME=DIR) has no threaded LSTM kernel: pycc cannot link prange
needs_threaded_kernel = pytest.mark.skipif(not engine.runtime.current().parallel,
                                           reason="this runtime has no threaded LSTM kernel (engine/aot.py)")

DEFAULT = ["Sigmoid", "Tanh", "Tanh"]

# (id, attrs, options) - options: with_B, with_P, inputs, outputs
CASES = [
    ("forward-defaults", {}, {}),
    ("forward-no-bias", {}, {"with_B": False}),
    ("reverse", {"direction": "reverse"}, {}),
    ("bidirectional", {"direction": "bidirectional"}, {}),
    ("initial-state", {}, {"inputs": ("X", "initial_h", "initial_c")}),
    ("initial-h-only", {"direction": "bidirectional"}, {"inputs": ("X", "initial_h")}),
    ("peepholes", {}, {"with_P": True, "inputs": ("X", "initial_h", "initial_c")}),
    ("peepholes-bidirectional", {"direction": "bidirectional"}, {"with_P": True}),
    ("sequence-lens", {}, {"inputs": ("X", "sequence_lens", "initial_h", "initial_c")}),
    ("sequence-lens-reverse", {"direction": "reverse"}, {"inputs": ("X", "sequence_lens")}),
    ("sequence-lens-bidirectional", {"direction": "bidirectional"},
     {"inputs": ("X", "sequence_lens", "initial_h"), "with_P": True}),
    ("clip", {"clip": 0.7}, {}),
    ("clip-peepholes", {"clip": 1.5}, {"with_P": True}),
    ("input-forget", {"input_forget": 1}, {}),
    ("input-forget-peepholes-bidirectional", {"input_forget": 1, "direction": "bidirectional"}, {"with_P": True}),
    ("only-Y", {}, {"outputs": ("Y",)}),
    ("only-Y_h", {"direction": "bidirectional"}, {"outputs": ("Y_h",)}),
    ("only-Y_c", {}, {"outputs": ("Y_c",)}),
    ("Y_h-and-Y_c", {"direction": "reverse"}, {"outputs": ("Y_h", "Y_c")}),
]

ACTIVATION_CASES = [
    ("relu-tanh-affine", ["Relu", "Tanh", "Affine"], [0.5], [0.1]),
    ("hardsigmoid-softsign-softplus", ["HardSigmoid", "Softsign", "Softplus"], [0.3], [0.4]),
    ("leakyrelu-thresholdedrelu-elu", ["LeakyRelu", "ThresholdedRelu", "Elu"], [0.05, 0.2, 0.9], []),
    ("scaledtanh-sigmoid-scaledtanh", ["Sigmoid", "ScaledTanh", "ScaledTanh"], [1.2, 0.8], [0.7, 1.3]),
    ("defaults-for-missing-alpha", ["HardSigmoid", "LeakyRelu", "Elu"], [], []),
    ("affine-everywhere", ["Affine", "Affine", "Affine"], [0.9, 1.1, 0.5], [0.0, 0.2, -0.1]),
    # onnxruntime's defaults when alpha/beta run out: 0 for these three (not the standalone ops' 1.0)
    ("defaults-thresholdedrelu-scaledtanh-affine", ["ThresholdedRelu", "ScaledTanh", "Affine"], [], []),
]

# unbounded activations (Relu, Affine, LeakyRelu, ...) as gates make the state grow geometrically with the steps:
# short sequences and small weights keep both engines far from float32 overflow
short_shapes = st.fixed_dictionaries({
    "T": st.integers(1, 10), "B": st.integers(1, 4), "I": st.integers(1, 6), "H": st.integers(1, 10),
    "seed": st.integers(0, 2 ** 31 - 1)})
shapes = st.fixed_dictionaries({
    "T": st.integers(1, 24), "B": st.integers(1, 5), "I": st.integers(1, 9), "H": st.integers(1, 12),
    "seed": st.integers(0, 2 ** 31 - 1)})


@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("name,attrs,opts", CASES, ids=[c[0] for c in CASES])
def test_attributes_against_onnxruntime(name, attrs, opts, layout):
    D = 2 if attrs.get("direction") == "bidirectional" else 1
    inputs = opts.get("inputs", ("X",))

    @SETTINGS
    @given(shapes)
    def check(s):
        rng = np.random.default_rng(s["seed"])
        T, B, I, H = s["T"], s["B"], s["I"], s["H"]
        model, _ = rnn_model("LSTM", I=I, H=H, D=D, T=T, B=B, rng=rng, attrs={**attrs, "layout": layout},
                             with_B=opts.get("with_B", True), with_P=opts.get("with_P", False), inputs=inputs,
                             outputs=opts.get("outputs", ("Y", "Y_h", "Y_c")))
        compare(model, make_feeds(inputs, T, B, I, H, D, rng, layout), T, layout)

    check()


@pytest.mark.parametrize("name,acts,alphas,betas", ACTIVATION_CASES, ids=[c[0] for c in ACTIVATION_CASES])
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_activations_against_onnxruntime(name, acts, alphas, betas, direction):
    D = 2 if direction == "bidirectional" else 1
    attrs = {"direction": direction, "activations": acts * D}
    if alphas:
        attrs["activation_alpha"] = alphas * D
    if betas:
        attrs["activation_beta"] = betas * D

    @SETTINGS
    @given(short_shapes)
    def check(s):
        rng = np.random.default_rng(s["seed"])
        T, B, I, H = s["T"], s["B"], s["I"], s["H"]
        model, _ = rnn_model("LSTM", I=I, H=H, D=D, T=T, B=B, rng=rng, attrs=attrs,
                             inputs=("X", "initial_h", "initial_c"), weight_scale=0.15)
        compare(model, make_feeds(("initial_h", "initial_c"), T, B, I, H, D, rng), T, rel=2e-6)

    check()


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_zero_length_sequences_against_onnxruntime(direction):
    """A batch entry with sequence_lens 0: Y all zero, and Y_h/Y_c zero too (not the initial state)."""
    D = 2 if direction == "bidirectional" else 1
    T, B, I, H = 5, 3, 4, 6
    rng = np.random.default_rng(7)
    inputs = ("X", "sequence_lens", "initial_h", "initial_c")
    model, _ = rnn_model("LSTM", I=I, H=H, D=D, T=T, B=B, rng=rng, attrs={"direction": direction}, inputs=inputs)
    feeds = make_feeds(inputs, T, B, I, H, D, rng)
    feeds["sequence_lens"] = np.array([T, 0, 2], dtype=np.int32)
    compare(model, feeds, T)
    y, yh, yc = engine.Session(model.SerializeToString()).run(None, feeds)
    assert not y[:, :, 1].any() and not yh[:, 1].any() and not yc[:, 1].any()


@pytest.mark.parametrize("T,H", [(100, 64), (1000, 32)])
def test_long_sequences_against_onnxruntime(T, H):
    rng = np.random.default_rng(T)
    model, _ = rnn_model("LSTM", I=16, H=H, D=1, T=T, B=2, rng=rng, attrs={}, inputs=("X", "initial_h", "initial_c"),
                         weight_scale=0.2)
    diff = compare(model, make_feeds(("initial_h", "initial_c"), T, 2, 16, H, 1, rng), T)
    assert diff <= tolerance(T)


@pytest.mark.parametrize("H", [64, 256])
def test_fast_kernel_sizes_against_onnxruntime(H):
    """Hidden sizes where the fast kernel's blocked loops have no remainder, and batch sizes on both sides of the
    switch to a BLAS product for the recurrence."""
    for B in (1, 3, 8):
        rng = np.random.default_rng(H + B)
        model, _ = rnn_model("LSTM", I=H, H=H, D=1, T=20, B=B, rng=rng, attrs={},
                             inputs=("X", "sequence_lens", "initial_h", "initial_c"), weight_scale=0.1)
        compare(model, make_feeds(("sequence_lens", "initial_h", "initial_c"), 20, B, H, H, 1, rng), 20)


@needs_threaded_kernel
@pytest.mark.parametrize("direction,path", [("reverse", "lstm fast, threads by unit"),
                                            ("bidirectional", "lstm fast, directions on 2 threads")])
def test_multithreaded_kernel_against_onnxruntime(direction, path):
    """threads=2 with H >= 256 takes the path that splits hidden units over threads; a bidirectional layer runs
    its two directions at once instead, one thread each."""
    rng = np.random.default_rng(7)
    H = 256
    D = 2 if direction == "bidirectional" else 1
    model, _ = rnn_model("LSTM", I=32, H=H, D=D, T=30, B=2, rng=rng, attrs={"direction": direction},
                         inputs=("X", "sequence_lens", "initial_h", "initial_c"), weight_scale=0.1)
    feeds = make_feeds(("sequence_lens", "initial_h", "initial_c"), 30, 2, 32, H, D, rng)
    sess = engine.Session(model.SerializeToString(), threads=2)
    if sess.threads < 2 or sess.runtime != "jit":
        pytest.skip("needs two cores and the JIT runtime's threads")
    assert path in sess.program({"X": (30, 2, 32)})
    got = sess.run(None, feeds)
    ref = ort_session(model).run(None, feeds)
    assert max(max_abs_diff(g, r) for g, r in zip(got, ref)) <= 1e-5


def test_nan_and_inf_propagate_without_crashing():
    """A deliberate difference: onnxruntime's clamped activations turn a NaN input into finite numbers (silently
    wrong); the engine propagates NaN through the rest of that sequence. Elsewhere, and for inf inputs (which
    saturate the gates), the two agree."""
    rng = np.random.default_rng(3)
    model, _ = rnn_model("LSTM", I=4, H=5, D=1, T=6, B=2, rng=rng, attrs={})
    x = rng.standard_normal((6, 2, 4)).astype(np.float32)
    x[2, 0, 1] = np.nan
    x[3, 1, 2] = np.inf
    y, yh, yc = engine.Session(model.SerializeToString()).run(None, {"X": x})
    ref_y, ref_yh, ref_yc = ort_session(model).run(None, {"X": x})
    assert np.isnan(y[2:, 0, 0]).all() and np.isnan(yh[0, 0]).all() and np.isnan(yc[0, 0]).all()
    assert np.isfinite(y[:2]).all() and np.isfinite(y[:, :, 1]).all()
    assert max_abs_diff(y[:2], ref_y[:2]) <= 1e-5                      # before the NaN
    assert max_abs_diff(y[:, :, 1], ref_y[:, :, 1]) <= 1e-5            # the sequence with inf
    assert max_abs_diff(yh[:, 1], ref_yh[:, 1]) <= 1e-5
    assert max_abs_diff(yc[:, 1], ref_yc[:, 1]) <= 1e-5


def test_float64_model_matches_float32_reference():
    """ONNX allows double LSTMs but onnxruntime has no kernel for them: compare the engine's float64 run with
    onnxruntime's float32 run (fp32 tolerance), and the engine's float64 precision mode on a float32 model too."""
    rng = np.random.default_rng(11)
    m32, _ = rnn_model("LSTM", I=5, H=7, D=2, T=12, B=3, rng=rng, attrs={"direction": "bidirectional"},
                       inputs=("X", "initial_h", "initial_c"))
    m64 = to_double(m32)     # the same weights, exactly, as doubles
    feeds = make_feeds(("initial_h", "initial_c"), 12, 3, 5, 7, 2, np.random.default_rng(5))
    ref = ort_session(m32).run(None, feeds)
    s64 = engine.Session(m64.SerializeToString())
    assert s64.get_inputs()[0].type == "tensor(double)"
    got64 = s64.run(None, {k: v.astype(np.float64) for k, v in feeds.items()})
    assert all(g.dtype == np.float64 for g in got64)
    assert max(max_abs_diff(g, r) for g, r in zip(got64, ref)) <= 1e-5
    prec = engine.Session(m32.SerializeToString(), precision="float64").run(None, feeds)
    assert max(max_abs_diff(g, r) for g, r in zip(prec, got64)) <= 1e-12


@needs_threaded_kernel
def test_multithreaded_model_loads_from_the_compile_cache_in_a_new_process(tmp_path):
    """Regression: Numba issue #8578 - a cached function that calls a parallel kernel segfaulted when loaded from
    the cache in a new process. Two new processes on this process's caches, which hold the executor once this
    process has run the model (a minute's compile less than empty caches): each loads it and runs the threaded
    kernel, and the kernel that runs a bidirectional layer's directions at once."""
    import subprocess
    import sys
    import os
    rng = np.random.default_rng(1)
    model, _ = rnn_model("LSTM", I=8, H=256, D=1, T=5, B=1, rng=rng, attrs={})
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    both, _ = rnn_model("LSTM", I=8, H=64, D=2, T=5, B=1, rng=rng, attrs={"direction": "bidirectional"})
    path2 = tmp_path / "b.onnx"
    path2.write_bytes(both.SerializeToString())
    code = ("import numpy as np, engine; s = engine.Session(%r, threads=2); b = engine.Session(%r, threads=2); "
            "x = np.ones((5, 1, 8), np.float32); assert 'lstm fast, threads' in s.program({'X': x.shape}); "
            "assert 'directions on 2 threads' in b.program({'X': x.shape}); "
            "print(s.run(None, {'X': x})[0].sum() + b.run(None, {'X': x})[0].sum())" % (str(path), str(path2)))
    here, there = engine.Session(str(path), threads=2), engine.Session(str(path2), threads=2)
    assert "lstm fast, threads" in here.program({"X": (5, 1, 8)})   # five steps (one would run on one thread)
    x = np.ones((5, 1, 8), np.float32)
    assert "directions on 2 threads" in there.program({"X": x.shape})
    want = here.run(None, {"X": x})[0].sum() + there.run(None, {"X": x})[0].sum()
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    outs = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
            for _ in range(2)]
    for p in outs:
        assert p.returncode == 0, p.stderr[-2000:]
    assert outs[0].stdout == outs[1].stdout
    assert abs(float(outs[0].stdout) - float(want)) <= 1e-4
