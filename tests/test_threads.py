"""The threaded LSTM path and the memory it holds: one layout of the weights (in parts, one per thread) that every
LSTM kernel reads, the same results with one thread or two, and a model file mapped while its weights are packed.

Sessions with threads=2 run a threaded kernel ("fast, threads" in the program listing): below SPLIT_MIN_ROWS batch
entries per thread the persistent kernel that splits the hidden units (``lstm_direction_parallel``, "by unit"), in
a stream step too; from there one that splits the batch (``lstm_batches_parallel``, "by batch"), each thread
running the one-thread kernel on its rows with every part of the weights in sequence (also checked directly in
tests/test_kernels.py, lstm-fast-parts-*). A bidirectional LSTM below SPLIT_MIN_ROWS a thread runs its two
directions at once instead, one thread each ("directions on 2 threads", ``lstm_directions_parallel``).
Every case is compared with threads=1 and with the float64 reference (tests/naive.py via built_models).
"""
import numpy as np
import pytest

import engine
from built_models import recurrent_model
from engine.ops.program import PARALLEL_MIN_HIDDEN, SPLIT_MAX_UNITS, SPLIT_MIN_ROWS
from engine.ops.recurrent import part_chunk

I, T = 8, 12
CASES = {
    "plain": {},
    "peepholes-clip": {"peepholes": True, "clip": 0.9},
    "input-forget": {"input_forget": 1},
    "reverse": {"direction": "reverse"},
    "bidirectional-lens": {"direction": "bidirectional", "sequence_lens": True},
    "everything": {"direction": "bidirectional", "sequence_lens": True, "peepholes": True, "clip": 1.3,
                   "input_forget": 1},
}


def max_abs_diff(a, b):
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def feed_of(model, B, seed=0, state=True):
    rng = np.random.default_rng(seed)
    D = 2 if model.nodes[0].attrs["direction"] == "bidirectional" else 1
    H = model.nodes[0].attrs["hidden_size"]
    feed = {"X": rng.standard_normal((T, B, I)).astype(np.float32)}
    if any(s.name == "sequence_lens" for s in model.inputs):
        lens = rng.integers(0, T + 1, size=B).astype(np.int32)
        lens[0] = T
        feed["sequence_lens"] = lens
    if state:
        feed["initial_h"] = rng.standard_normal((D, B, H)).astype(np.float32)
        feed["initial_c"] = rng.standard_normal((D, B, H)).astype(np.float32)
    return feed


@pytest.fixture(scope="module", params=[256, 257], ids=["H256", "H257-uneven"])
def hidden(request):
    return request.param


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("B", [1, 2, 5, 2 * SPLIT_MIN_ROWS + 1])
def test_two_threads_match_one_and_the_reference(case, B, hidden):
    model, reference = recurrent_model("LSTM", I=I, H=hidden, seed=B, scale=0.1, **CASES[case])
    one, two = engine.Session(model, threads=1), engine.Session(model, threads=2)
    feed = feed_of(model, B, seed=B)
    shapes = {k: v.shape for k, v in feed.items()}
    if two.threads == 2 and two.runtime == "jit":
        # B=17: 8 and 9 rows, split by batch (two directions) or while a thread's part of the units would be at
        # most SPLIT_MAX_UNITS
        two_directions = CASES[case].get("direction") == "bidirectional"
        narrow = part_chunk(hidden, 2, True) <= SPLIT_MAX_UNITS
        split = "by batch" if B >= 2 * SPLIT_MIN_ROWS and (two_directions or narrow) else "by unit"
        if split == "by unit" and two_directions:
            assert "directions on 2 threads" in two.program(shapes)      # each direction on a thread of its own
        else:
            assert f"fast, threads {split}" in two.program(shapes)      # a threaded kernel at any batch
    assert "fast, threads" not in one.program(shapes)
    a, b = one.run(None, feed), two.run(None, feed)
    for x, y, ref in zip(a, b, reference(feed)):
        assert max_abs_diff(x, y) <= 1e-5
        assert max_abs_diff(y, ref) <= 1e-5 + 1e-6 * float(np.abs(ref).max())


@pytest.mark.parametrize("case", list(CASES))
def test_a_split_batch_of_short_parts_matches_one_thread_and_the_reference(case):
    """H=128 on two threads: two parts of 64 units, each thread's rows of the batch on its own."""
    assert PARALLEL_MIN_HIDDEN <= 128
    B = 2 * SPLIT_MIN_ROWS + 3
    model, reference = recurrent_model("LSTM", I=I, H=128, seed=3, scale=0.1, **CASES[case])
    one, two = engine.Session(model, threads=1), engine.Session(model, threads=2)
    feed = feed_of(model, B, seed=5)
    if two.threads == 2 and two.runtime == "jit":
        assert "fast, threads by batch" in two.program({k: v.shape for k, v in feed.items()})
    for x, y, ref in zip(one.run(None, feed), two.run(None, feed), reference(feed)):
        assert max_abs_diff(x, y) <= 1e-5
        assert max_abs_diff(y, ref) <= 1e-5 + 1e-6 * float(np.abs(ref).max())


UNIT_SPLIT_CASES = {**CASES, "reverse-lens": {"direction": "reverse", "sequence_lens": True}}


@pytest.mark.parametrize("case", list(UNIT_SPLIT_CASES))
def test_a_batch_split_by_unit_projects_step_by_step(case):
    """Off AMD Zen, a batch at H=256 on two threads splits the hidden units (parts of 128, SPLIT_MAX_UNITS), and each
    step projects its own input on each thread (UNITS_FUSE_MIN_ROWS rows and more); reverse with uneven sequence
    lengths (every entry not at the same step) falls back to the hoisted projection the plan made room for. The
    results are one thread's and the reference's."""
    from engine import config
    from engine.ops.program import UNITS_FUSE_MIN_ROWS
    if config.ZEN:
        pytest.skip("on AMD Zen the batch is split by entry and the unit split never fuses (program.py)")
    model, reference = recurrent_model("LSTM", I=I, H=256, seed=11, scale=0.1, **UNIT_SPLIT_CASES[case])
    one, two = engine.Session(model, threads=1), engine.Session(model, threads=2)
    if two.threads < 2 or two.runtime != "jit":
        pytest.skip("needs two cores and the JIT runtime's threads")
    feed = feed_of(model, UNITS_FUSE_MIN_ROWS + 4, seed=7)
    listing = two.program({k: v.shape for k, v in feed.items()})
    if UNIT_SPLIT_CASES[case].get("direction") != "bidirectional":
        assert "fast, threads by unit, fused projection" in listing, listing
    for x, y, ref in zip(one.run(None, feed), two.run(None, feed), reference(feed)):
        assert max_abs_diff(x, y) <= 1e-5
        assert max_abs_diff(y, ref) <= 1e-5 + 1e-6 * float(np.abs(ref).max())


def test_the_weights_are_held_once_whatever_the_thread_count(hidden):
    model, _ = recurrent_model("LSTM", I=I, H=hidden, direction="bidirectional", scale=0.1)
    weight_bytes = sum(t.nbytes for t in model.tensors.values())
    one, two = engine.Session(model, threads=1), engine.Session(model, threads=2)
    # each part's units are padded to a multiple of 16 (whole column groups of 64 gate columns, the register
    # tiles' width): H=257 is 272 units on one thread, two parts of 144 on two; nothing else is added
    assert one.weights.nbytes <= 1.07 * weight_bytes + 4096
    assert two.weights.nbytes <= 1.13 * weight_bytes + 4096
    if hidden % 32 == 0:
        assert one.weights.nbytes <= 1.01 * weight_bytes + 4096
        assert two.weights.nbytes == one.weights.nbytes


def test_a_stream_steps_on_the_threaded_layout():
    model, _ = recurrent_model("LSTM", I=I, H=PARALLEL_MIN_HIDDEN, peepholes=True, scale=0.1)
    feed = feed_of(model, 1, state=False)
    two = engine.Session(model, threads=2)
    whole = two.run(None, feed)
    stream = two.stream(batch_size=1)
    steps = [stream.step(feed["X"][t:t + 1])[0] for t in range(T)]
    assert max_abs_diff(np.concatenate(steps).reshape(whole[0].shape), whole[0]) <= 1e-5


@pytest.mark.parametrize("op,direction", [("LSTM", "forward"), ("LSTM", "bidirectional"), ("GRU", "bidirectional"),
                                          ("RNN", "bidirectional")])
def test_fewer_numba_threads_than_parts_runs_the_parts_in_sequence(op, direction):
    """With one Numba thread, a Session made for two runs the parts of the kernel split by unit, or the two
    directions, one after the other: the same results."""
    numba = pytest.importorskip("numba")
    model, reference = recurrent_model(op, I=I, H=PARALLEL_MIN_HIDDEN, scale=0.1, direction=direction)
    two = engine.Session(model, threads=2)
    feed = feed_of(model, 1)
    if op != "LSTM":
        feed.pop("initial_c")
    expected = two.run(None, feed)
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        got = two.run(None, feed)
    finally:
        numba.set_num_threads(before)
    for x, y, ref in zip(expected, got, reference(feed)):
        assert max_abs_diff(x, y) <= 1e-6
        assert max_abs_diff(y, ref) <= 1e-5 + 1e-6 * float(np.abs(ref).max())


def test_a_session_maps_its_file_and_lets_it_go(tmp_path):
    model, reference = recurrent_model("LSTM", I=I, H=PARALLEL_MIN_HIDDEN, scale=0.1, peepholes=True)
    path = tmp_path / "m.lstm"
    engine.save(model, path)
    feed = feed_of(model, 1)
    expected = engine.Session(model, threads=1).run(None, feed)
    for threads in (1, 2):
        sess = engine.Session(str(path), threads=threads)
        path.write_bytes(b"\0" * 16)          # rewritten in place: the Session holds no mapping of it any more
        for x, y in zip(expected, sess.run(None, feed)):
            assert max_abs_diff(x, y) <= 1e-5
        engine.save(model, path)


def test_release_pages_leaves_values_alone(tmp_path):
    from engine.model import load_from, read_source
    model, _ = recurrent_model("LSTM", I=I, H=300, scale=0.1)
    path = tmp_path / "m.lstm"
    engine.save(model, path)
    mapped = load_from(*read_source(str(path), mapped=True))
    W = mapped.tensors["W"]
    before = np.array(W)
    mapped.release_pages(W[0])
    mapped.release_pages(np.zeros(4096, np.float32))   # not the mapping's: left alone
    assert np.array_equal(W, before)


def test_plans_with_the_threaded_kernel_run_their_other_products_on_one_thread():
    """The threaded kernel runs on Numba's threads, and an OpenBLAS pool spinning after another product of the same
    plan takes a core from them (each step's barrier then waits ~25 us for a thread off its core: bench.crnn's
    medium CRNN at 2 threads took 32 ms a call with its linear layer on OpenBLAS's two threads, 20.7 ms with it on
    one). So a plan with it sets the BLAS to one thread (prog[THREADS_AT]); a plan without it keeps the Session's
    threads, and a one-thread Session's plans one."""
    from engine import _threads
    threaded, _ = recurrent_model("LSTM", I=I, H=PARALLEL_MIN_HIDDEN, scale=0.1)
    plain, _ = recurrent_model("LSTM", I=I, H=PARALLEL_MIN_HIDDEN // 2, scale=0.1)
    two = engine.Session(threaded, threads=2)
    if two.threads < 2 or two.runtime != "jit":
        pytest.skip("needs two cores and the JIT runtime's threaded kernel")
    for B in (1, 5):
        two.run(None, feed_of(threaded, B, state=False))
        assert "threads" in two.program({"X": (T, B, I)}) and _threads.current == 1
        engine.Session(plain, threads=2).run(None, feed_of(plain, B, state=False))
        assert _threads.current == 2
        engine.Session(plain, threads=1).run(None, feed_of(plain, B, state=False))
        assert _threads.current == 1


def _lstm_then_linear(T, I, H, N, seed):
    """X (T, 1, I) -> bidirectional LSTM(H) -> (T, 2H) -> MatMul (2H, N): a recognizer's head."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(seed)
    W = (rng.standard_normal((2, 4 * H, I)) * 0.1).astype(np.float32)
    R = (rng.standard_normal((2, 4 * H, H)) * 0.1).astype(np.float32)
    head = rng.standard_normal((2 * H, N)).astype(np.float32)
    nodes = [helper.make_node("LSTM", ["X", "W", "R"], ["Y"], hidden_size=H, direction="bidirectional"),
             helper.make_node("Transpose", ["Y"], ["Yt"], perm=[0, 2, 1, 3]),
             helper.make_node("Reshape", ["Yt", "shape"], ["Y2"]),
             helper.make_node("MatMul", ["Y2", "head"], ["out"])]
    inits = [numpy_helper.from_array(a, n) for a, n in
             ((W, "W"), (R, "R"), (head, "head"), (np.array([-1, 2 * H], np.int64), "shape"))]
    graph = helper.make_graph(nodes, "lstm_linear", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, 1, I])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [T, N])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), rng


@pytest.mark.slow     # onnxruntime is its oracle: not in the fast tier
@pytest.mark.parametrize("N, parts", [(96, 2), (40, 2), (16, 1)])
def test_a_matmul_beside_threaded_kernels_splits_its_rows_over_the_threads(N, parts):
    """In a plan whose BLAS keeps to one thread (a threaded kernel in it: here a bidirectional LSTM's directions), a
    MatMul big enough (layers.matmul_parts: MATMUL_THREADS_MIN_MACS, MATMUL_THREADS_MIN_ROWS a thread) splits its
    rows over Numba's threads, on the register tiles at any width (N = 40 would take the BLAS on one thread); the
    result is onnxruntime's and a one-thread Session's. A small one (N = 16) stays on the calling thread."""
    import converters
    from lstm_util import ort_session

    from engine import _threads
    from engine.ops.layers import matmul_parts
    assert matmul_parts(2, 50, 128, 96) == 2 and matmul_parts(2, 50, 128, 16) == 1
    assert matmul_parts(2, 12, 512, 512) == matmul_parts(1, 400, 512, 512) == 1
    onnx_model, rng = _lstm_then_linear(120, 64, 64, N, seed=N)
    model = converters.from_onnx(onnx_model)
    two = engine.Session(model, threads=2)
    if two.threads < 2 or two.runtime != "jit":
        pytest.skip("needs two cores and the JIT runtime")
    x = rng.standard_normal((120, 1, 64)).astype(np.float32)
    y2 = two.run(None, {"X": x})[0]
    listing = two.program({"X": x.shape})
    assert "directions on 2 threads" in listing and _threads.current == 1
    assert (f"@ (128, {N}), on 2 threads" in listing) == (parts == 2), listing
    y1 = engine.Session(model, threads=1).run(None, {"X": x})[0]
    ref = ort_session(onnx_model).run(None, {"X": x})[0]
    assert max_abs_diff(y2, ref) <= 1e-5 * max(1.0, np.abs(ref).max())
    assert max_abs_diff(y2, y1) <= 1e-5 * max(1.0, np.abs(ref).max())


def test_the_row_split_product_against_float64():
    """numeric.matmul_rows_parallel at uneven row counts and widths (masked tiles), two and three parts (more
    parts than threads run in turn), against a float64 product; the buffer around the output untouched."""
    from engine.ops.numeric import matmul_rows_parallel
    rng = np.random.default_rng(3)
    for R, K, N in ((37, 19, 40), (100, 192, 96), (9, 64, 130), (3, 5, 7)):
        a = rng.standard_normal((R, K)).astype(np.float32)
        b = rng.standard_normal((K, N)).astype(np.float32)
        want = a.astype(np.float64) @ b.astype(np.float64)
        for parts in (2, 3):
            fence = np.full((R + 2) * N, np.nan, np.float32)
            out = fence[N:-N].reshape(R, N)
            matmul_rows_parallel(a, b, out, parts)
            assert np.isnan(fence[:N]).all() and np.isnan(fence[-N:]).all()
            assert np.abs(out - want).max() <= 4 * K * np.finfo(np.float32).eps * (np.abs(a) @ np.abs(b)).max()


def test_a_large_convolution_runs_on_the_sessions_threads_by_rows():
    """A 2-D convolution big and deep enough (vision.conv_threads: CONV_THREADS_MIN_MACS multiply-adds,
    CONV_THREADS_MIN_K per output) runs on the Session's threads, each its own output rows (the listing says so),
    with the plan's BLAS on one thread, as beside the threaded LSTM; the result is the reference's, and here (each
    part's width a multiple of 64: the same register tiles) one thread's bit for bit. A small one, a shallow one
    (one input channel, 3x3: bound by writing its output) and a one-thread Session's run on one thread, and leave the
    BLAS its threads."""
    from test_vision_kernels import conv_case, conv_reference

    from engine import _threads
    from engine.ops.vision import conv_threads
    big = conv_case(1, 8, 12, 64, 32, (3, 3), {"pads": [1, 1, 1, 1]}, seed=4)       # K = 72, 1.8 M, im2col
    small = conv_case(1, 2, 6, 16, 4, (3, 3), {"pads": [1, 1, 1, 1]}, seed=5)       # 7 K
    shallow = conv_case(1, 1, 32, 100, 64, (3, 3), {"pads": [1, 1, 1, 1]}, seed=6)  # K = 9, 1.8 M
    assert conv_threads(2, 1, 32, 72, 12, 64) == (1, 2)
    assert conv_threads(2, 1, 4, 18, 6, 16) == conv_threads(2, 1, 64, 9, 32, 100) == (1, 1)
    assert conv_threads(1, 1, 32, 144, 12, 64) == conv_threads(1, 8, 32, 144, 12, 64) == (1, 1)
    # and 32 -> 64 channels, the windows read in place (vision.conv_mode): each thread its rows and its sums
    in_place = conv_case(1, 32, 12, 64, 64, (3, 3), {"pads": [1, 1, 1, 1]}, seed=8)
    for (model, x, tensors), listed in ((big, "rows on 2 threads"), (in_place, "windows in place, rows on 2 threads")):
        two = engine.Session(model, threads=2)
        if two.threads < 2 or two.runtime != "jit":
            pytest.skip("needs two cores and the JIT runtime")
        y2 = two.run(None, {"x": x})[0]
        assert listed in two.program({"x": x.shape}) and _threads.current == 1
        one = engine.Session(model, threads=1)
        y1 = one.run(None, {"x": x})[0]
        assert "rows on" not in one.program({"x": x.shape})
        assert y2.tobytes() == y1.tobytes()
        ref, K, scale = conv_reference(x, tensors, model.nodes[0].attrs)
        assert np.abs(y2 - ref).max() <= 4 * (K + 1) * np.finfo(np.float32).eps * scale.max()
    for model, x, _ in (small, shallow):
        two = engine.Session(model, threads=2)
        two.run(None, {"x": x})
        assert "rows on" not in two.program({"x": x.shape}) and _threads.current == 2


@pytest.mark.parametrize("N, group, kernel, implicit, listed", [
    (4, 1, (3, 3), False, ["images on 2 threads"]),
    (5, 1, (3, 3), False, ["images on 2 threads, the last 1 by rows"]),        # the fifth image by rows
    (6, 2, (3, 3), False, ["images on 2 threads"]),                              # two groups an image
    (4, 1, (1, 1), False, ["images on 2 threads"]),                              # 1x1: no im2col
    # 32 -> 64 channels: the windows read in place (vision.conv_mode), each thread its own copy and sums
    (4, 1, (3, 3), True, ["windows in place, images on 2 threads"]),
    (5, 2, (3, 3), True, ["windows in place, images on 2 threads, the last 1 by rows"]),
])
def test_a_batch_of_convolutions_runs_on_the_sessions_threads_by_images(N, group, kernel, implicit, listed):
    """From as many images as threads, a convolution deep enough (vision.conv_threads) runs whole images on each
    thread, one parallel region for the batch, each thread's im2col in its own span of the work buffer; the images
    left over (N % threads) split by rows. The result is one thread's bit for bit (every image runs the one-thread
    code; the leftover's row parts are multiples of 64 wide) and the reference's; the BLAS keeps to one thread. A
    batch too small in all, or too shallow, stays on one thread."""
    from test_vision_kernels import conv_case, conv_reference

    from engine import _threads
    from engine.ops.vision import conv_threads
    C = (32 if implicit else 8 if kernel == (3, 3) else 72) * group      # 8 channels a group: im2col
    Mg = 64 if implicit else 24
    pads = [1, 1, 1, 1] if kernel == (3, 3) else [0, 0, 0, 0]
    model, x, tensors = conv_case(N, C, 12, 64, Mg * group, kernel, {"pads": pads, "group": group}, seed=7 + N)
    assert conv_threads(2, N, Mg, C // group * kernel[0] * kernel[1], 12, 64)[0] == 2
    assert conv_threads(2, 2, 16, 72, 2, 8) == (1, 1)                 # 18 K multiply-adds in all
    assert conv_threads(2, 8, 16, 9, 32, 100) == (1, 1)              # K = 9: bound by writing its output
    two = engine.Session(model, threads=2)
    if two.threads < 2 or two.runtime != "jit":
        pytest.skip("needs two cores and the JIT runtime")
    y2 = two.run(None, {"x": x})[0]
    listing = two.program({"x": x.shape})
    assert all(part in listing for part in listed), listing
    assert _threads.current == 1
    one = engine.Session(model, threads=1)
    y1 = one.run(None, {"x": x})[0]
    assert "threads" not in one.program({"x": x.shape})
    assert y2.tobytes() == y1.tobytes()
    ref, K, scale = conv_reference(x, tensors, model.nodes[0].attrs)
    assert np.abs(y2 - ref).max() <= 4 * (K + 1) * np.finfo(np.float32).eps * scale.max()
    y3 = two.run(None, {"x": x[:1]})[0]                                  # one image: by rows, or one thread
    assert "images on" not in two.program({"x": x[:1].shape})
    np.testing.assert_array_equal(y3, y1[:1])


@pytest.mark.parametrize("op, shape, attrs", [
    ("MaxPool", (8, 16, 32, 200), {"kernel_shape": [2, 2], "strides": [2, 2]}),       # a CRNN's: tiled_max_pool
    ("MaxPool", (3, 5, 70, 600), {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 0, 1, 1]}),
    ("AveragePool", (2, 4, 128, 512), {"kernel_shape": [2, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
                                       "count_include_pad": 1}),
    ("MaxPool", (4, 4, 40000), {"kernel_shape": [3], "strides": [2], "pads": [1, 1]}),   # 1-D
])
def test_a_large_pooling_runs_on_the_sessions_threads_by_planes(op, shape, attrs):
    """From POOL_THREADS_MIN_INPUT input values and a plane a thread (vision.pool_threads), a pooling splits its
    N x C planes among the Session's threads: one thread's result bit for bit (NaN and -inf among the values), the
    reference's, and the BLAS keeps to one thread. A smaller one, or fewer planes than threads, stays on one."""
    from test_vision_kernels import pool_attrs, pool_reference, pool_tolerance, single

    from engine import _threads
    from engine.ops.vision import POOL_THREADS_MIN_INPUT, pool_threads
    attrs = pool_attrs(attrs, op)
    x = np.random.default_rng(len(shape)).standard_normal(shape).astype(np.float32)
    x.reshape(-1)[::997] = np.nan
    x.reshape(-1)[5::1013] = -np.inf
    NC = shape[0] * shape[1]
    assert x.size >= POOL_THREADS_MIN_INPUT and pool_threads(2, NC, x.size // NC, 1) == 2
    assert pool_threads(2, 1, 1 << 20, 1) == pool_threads(2, 64, 16, 16) == pool_threads(1, 64, 1024, 1024) == 1
    model = single(op, attrs, len(shape))
    two = engine.Session(model, threads=2)
    if two.threads < 2 or two.runtime != "jit":
        pytest.skip("needs two cores and the JIT runtime")
    y2 = two.run(None, {"x": x})[0]
    assert "planes on 2 threads" in two.program({"x": x.shape}) and _threads.current == 1
    one = engine.Session(model, threads=1)
    y1 = one.run(None, {"x": x})[0]
    assert "threads" not in one.program({"x": x.shape})
    assert y2.tobytes() == y1.tobytes()
    ref = pool_reference(x, op, attrs)
    assert np.array_equal(np.isnan(y2), np.isnan(ref))
    finite = np.isfinite(ref)
    assert np.array_equal(y2[~finite & ~np.isnan(ref)], ref[~finite & ~np.isnan(ref)])
    tol = np.broadcast_to(pool_tolerance(x, op, attrs, "float32"), ref.shape)
    assert np.all(np.abs(y2[finite] - ref[finite]) <= tol[finite])
    small = x[:1, :1]                                                    # one plane: one thread
    assert "threads" not in two.program({"x": small.shape})
    np.testing.assert_array_equal(two.run(None, {"x": small})[0], y1[:1, :1])


@pytest.mark.slow     # compiles a parallel function of its own (~10 s)
def test_the_threaded_kernel_inside_another_parallel_region_finishes_and_matches():
    """Nested in another prange, the threading layer runs the kernel's region one iteration after the other: the
    first runs the tasks the second never starts (after ~25 us each), instead of waiting for it."""
    numba = pytest.importorskip("numba")
    import test_kernels as tk
    from engine.ops.lstm_fast import lstm_direction_parallel

    @numba.njit(parallel=True)
    def outer(Ys, X2, WTp, RTp, biasp, peep, seq, hs, cs, clip, xws):
        for i in numba.prange(2):
            lstm_direction_parallel(Ys[i], 1, X2, 1, WTp, RTp, biasp, peep, True, seq, hs[i], cs[i], False, clip,
                                    False, xws[i], False, False, False)

    c = tk.make_case("LSTM", 30, 1, 8, 64, seed=3, peep=True, state=True)
    X2, Y, h, cc = tk._start(c, np.float32)
    WTp, RTp, biasp = tk._grouped_parts(c, np.float32, 2)
    Ys, hs, cs = np.stack([Y, Y]), np.stack([h, h]), np.stack([cc, cc])
    xws = np.empty((2, 2, X2.shape[0], WTp.shape[1] * 64), np.float32)            # (calls, parts, T*B, 4*chunk)
    outer(Ys, X2, WTp, RTp, biasp, np.asarray(c.P, np.float32), c.seq, hs, cs, np.float32(np.inf), xws)
    ref = tk.reference(c)
    for i in range(2):
        for got, want in zip(tk._finish(Ys[i], hs[i], cs[i]), ref):
            tk.assert_matches(got, want, np.float32, f"nested run {i}")


def test_below_256_units_only_longer_calls_take_the_threaded_kernel():
    """From PARALLEL_MIN_HIDDEN units a call of PARALLEL_MIN_STEPS steps or more runs threaded; a shorter one (a
    streaming step) runs the same parts in sequence on one thread, where starting the region would cost more than
    it saves. Both agree with a one-thread Session."""
    from engine.ops.program import PARALLEL_ANY_STEPS_HIDDEN, PARALLEL_MIN_STEPS
    H = PARALLEL_MIN_HIDDEN
    assert H < PARALLEL_ANY_STEPS_HIDDEN
    model, _ = recurrent_model("LSTM", I=I, H=H, seed=4, scale=0.1)
    one, two = engine.Session(model, threads=1), engine.Session(model, threads=2)
    if two.threads < 2 or two.runtime != "jit":
        pytest.skip("needs two cores and the JIT runtime's threaded kernel")
    rng = np.random.default_rng(4)
    for steps, threaded in ((PARALLEL_MIN_STEPS, True), (PARALLEL_MIN_STEPS - 1, False), (1, False)):
        feed = {"X": rng.standard_normal((steps, 1, I)).astype(np.float32)}
        listing = two.program({"X": feed["X"].shape})
        assert ("fast, threads" in listing) == threaded, listing
        for a, b in zip(one.run(None, feed), two.run(None, feed)):
            assert max_abs_diff(a, b) <= 1e-5


@pytest.mark.parametrize("H", [256, 384])
def test_a_single_step_of_one_row_runs_threaded_from_parallel_step_hidden(H):
    """From PARALLEL_ANY_STEPS_HIDDEN units every call runs threaded except a single step of one row (a stream's
    step), which runs the parts in sequence on one thread below PARALLEL_STEP_HIDDEN units; two steps, or a step of
    two rows, run threaded. A stream steps the same way. Every result agrees with a one-thread Session."""
    from engine.ops.program import PARALLEL_ANY_STEPS_HIDDEN, PARALLEL_STEP_HIDDEN
    assert PARALLEL_ANY_STEPS_HIDDEN <= 256 <= PARALLEL_STEP_HIDDEN <= 384     # 384 on AMD Zen, 256 elsewhere
    model, _ = recurrent_model("LSTM", I=I, H=H, seed=5, scale=0.1)
    one, two = engine.Session(model, threads=1), engine.Session(model, threads=2)
    if two.threads < 2 or two.runtime != "jit":
        pytest.skip("needs two cores and the JIT runtime's threaded kernel")
    rng = np.random.default_rng(5)
    for steps, rows, threaded in ((1, 1, H >= PARALLEL_STEP_HIDDEN), (2, 1, True), (1, 2, True)):
        feed = {"X": rng.standard_normal((steps, rows, I)).astype(np.float32)}
        listing = two.program({"X": feed["X"].shape})
        assert ("fast, threads" in listing) == threaded, (steps, rows, listing)
        for a, b in zip(one.run(None, feed), two.run(None, feed)):
            assert max_abs_diff(a, b) <= 1e-5
    s1, s2 = one.stream(), two.stream()
    for _ in range(3):
        x = rng.standard_normal((1, I)).astype(np.float32)
        assert max_abs_diff(s1.step(x), s2.step(x)) <= 1e-5


GRU_CASES = {
    "plain": {},
    "reverse-clip": {"direction": "reverse", "clip": 0.9},
    "bidirectional-lens": {"direction": "bidirectional", "sequence_lens": True},
}


@pytest.mark.parametrize("case", list(GRU_CASES))
@pytest.mark.parametrize("B", [1, 3])
def test_the_threaded_gru_matches_one_thread_and_the_reference(case, B, hidden):
    """A GRU with linear_before_reset from GRU_PARALLEL_MIN_HIDDEN units runs the threaded kernel on two threads
    (any length and batch; its weights exist in the per-thread layout only); without linear_before_reset, or on
    one thread, the one-thread kernel."""
    from engine.ops.program import GRU_PARALLEL_MIN_HIDDEN
    assert hidden >= GRU_PARALLEL_MIN_HIDDEN
    model, reference = recurrent_model("GRU", I=I, H=hidden, seed=B, scale=0.1, linear_before_reset=1,
                                       **GRU_CASES[case])
    one, two = engine.Session(model, threads=1), engine.Session(model, threads=2)
    feed = feed_of(model, B, seed=B)
    feed.pop("initial_c")
    shapes = {k: v.shape for k, v in feed.items()}
    if two.threads == 2 and two.runtime == "jit":
        assert "gru fast, threads by unit" in two.program(shapes)
    assert "threads" not in one.program(shapes)
    a, b = one.run(None, feed), two.run(None, feed)
    for x, y, ref in zip(a, b, reference(feed)):
        assert max_abs_diff(x, y) <= 1e-5
        assert max_abs_diff(y, ref) <= 1e-5 + 1e-6 * float(np.abs(ref).max())
    plain, _ = recurrent_model("GRU", I=I, H=hidden, seed=B, scale=0.1, linear_before_reset=0, **GRU_CASES[case])
    listing = engine.Session(plain, threads=2).program(shapes)
    assert "threads by unit" not in listing
    if two.threads == 2 and two.runtime == "jit":     # a bidirectional one runs its directions at once
        assert ("directions on 2 threads" in listing) == (GRU_CASES[case].get("direction") == "bidirectional")


def test_a_gru_stream_steps_on_the_threaded_layout():
    model, _ = recurrent_model("GRU", I=I, H=256, scale=0.1, linear_before_reset=1)
    feed = {"X": np.random.default_rng(3).standard_normal((T, 2, I)).astype(np.float32)}
    one, two = engine.Session(model, threads=1), engine.Session(model, threads=2)
    whole = one.run(None, feed)
    stream = two.stream(batch_size=2)
    steps = [stream.step(feed["X"][t:t + 1])[0] for t in range(T)]
    assert max_abs_diff(np.concatenate(steps).reshape(whole[0].shape), whole[0]) <= 1e-5


@pytest.mark.parametrize("case", list(GRU_CASES))
@pytest.mark.parametrize("H", [37, 64, 128])
@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("op", ["GRU", "RNN"])
def test_gru_and_rnn_run_on_column_groups_and_match_the_reference(op, case, H, B):
    """A GRU with linear_before_reset below GRU_PARALLEL_MIN_HIDDEN units (or on one thread) runs the one-part kernel
    on the column groups (GRU_FAST), an RNN with tanh rnn_direction_grouped (RNN_FAST): "fast" in the listing, H
    padded to whole groups (H=37: 48 units a block, 192 columns for the GRU; 64 columns for the RNN). The same kernel
    on one and two threads, so the same results bit for bit, the projection's rows on both threads when big enough,
    a bidirectional one with its directions on two threads when big enough (DIRECTION_THREADS_MIN_MACS). Without
    linear_before_reset, or with a Relu, the general kernel."""
    from engine.ops.program import DIRECTION_THREADS_MIN_MACS
    steps = 40
    model, reference = recurrent_model(op, I=I, H=H, seed=H + B, scale=0.1, linear_before_reset=1, **GRU_CASES[case])
    one, two = engine.Session(model, threads=1), engine.Session(model, threads=2)
    feed = feed_of(model, B, seed=H)
    feed.pop("initial_c")
    feed["X"] = np.random.default_rng(B).standard_normal((steps, B, I)).astype(np.float32)
    if "sequence_lens" in feed:
        feed["sequence_lens"] = np.minimum(feed["sequence_lens"] * 3, steps).astype(np.int32)
        feed["sequence_lens"][0] = steps
    shapes = {k: v.shape for k, v in feed.items()}
    listing = one.program(shapes)
    assert f"{op.lower()} fast T=" in listing and "threads" not in listing, listing
    listing = two.program(shapes)
    assert f"{op.lower()} fast" in listing and "threads by unit" not in listing, listing
    bidirectional = GRU_CASES[case].get("direction") == "bidirectional"
    if two.threads == 2 and two.runtime == "jit":
        gates = 3 if op == "GRU" else 1
        at_once = bidirectional and steps * B * gates * H * (I + H) >= DIRECTION_THREADS_MIN_MACS
        assert ("directions on 2 threads" in listing) == at_once, listing
    for x, y, ref in zip(one.run(None, feed), two.run(None, feed), reference(feed)):
        np.testing.assert_array_equal(x, y)
        assert max_abs_diff(y, ref) <= 1e-5 + 1e-6 * float(np.abs(ref).max())
    plain, _ = recurrent_model(op, I=I, H=H, seed=H + B, scale=0.1, linear_before_reset=0, **GRU_CASES[case])
    if op == "RNN":
        D = 2 if bidirectional else 1
        plain.nodes[0].attrs["activations"] = [["Relu", 0.0, 0.0]] * D
    listing = engine.Session(plain, threads=1).program(shapes)
    assert f"{op.lower()} T=" in listing and "fast" not in listing, listing


@pytest.mark.parametrize("H", [37, 128])
@pytest.mark.parametrize("op", ["GRU", "RNN"])
def test_a_grouped_stream_alternates_and_matches_the_whole_run(op, H):
    """A stream's steps on the column groups (GRU_FAST, RNN_FAST) take them last to first every other call (the
    parity the LSTM's single step keeps): each step's output is the whole run's, by the stream and by ``run`` with
    the state in and out, one step a call."""
    model, _ = recurrent_model(op, I=I, H=H, scale=0.1, linear_before_reset=1)
    x = np.random.default_rng(H).standard_normal((T, 1, I)).astype(np.float32)
    session = engine.Session(model, threads=1)
    assert f"{op.lower()} fast T=1" in session.program({"X": (1, 1, I)})
    whole = session.run(None, {"X": x})[0]
    stream = session.stream(batch_size=1)
    steps = [stream.step(x[t:t + 1])[0] for t in range(T)]
    assert max_abs_diff(np.concatenate(steps).reshape(whole.shape), whole) <= 1e-5
    h = None
    for t in range(T):
        feed = {"X": x[t:t + 1]} if h is None else {"X": x[t:t + 1], "initial_h": h}
        y, h = session.run(None, feed)
        assert max_abs_diff(y[0], whole[t]) <= 1e-5


@pytest.mark.parametrize("H", [64, 96, PARALLEL_MIN_HIDDEN])
@pytest.mark.parametrize("B", [1, 5])
def test_two_directions_run_on_two_threads_and_match_one_thread(H, B):
    """A bidirectional LSTM at two threads runs each direction on a thread of its own (lstm_directions_parallel)
    below SPLIT_MIN_ROWS rows a thread, whatever H (the kernel split by unit is not used: each direction alone has no
    barrier a step), with the same kernels as one thread: the results are one thread's bit for bit, and the
    reference's; the plan keeps its other products to one BLAS thread. A call below DIRECTION_THREADS_MIN_MACS a
    direction runs the directions in turn."""
    from engine.ops.program import DIRECTION_THREADS_MIN_MACS
    model, reference = recurrent_model("LSTM", I=I, H=H, seed=H + B, scale=0.1, direction="bidirectional",
                                       sequence_lens=True, peepholes=True)
    one, two = engine.Session(model, threads=1), engine.Session(model, threads=2)
    if two.threads < 2 or two.runtime != "jit":
        pytest.skip("needs two cores and the JIT runtime's threads")
    feed = feed_of(model, B, seed=H)
    shapes = {k: v.shape for k, v in feed.items()}
    listing = two.program(shapes)
    assert "directions on 2 threads" in listing and "threads by unit" not in listing, listing
    assert "directions on" not in one.program(shapes)
    from engine import _threads
    for x, y, ref in zip(one.run(None, feed), two.run(None, feed), reference(feed)):
        np.testing.assert_array_equal(x, y)
        assert max_abs_diff(y, ref) <= 1e-5 + 1e-6 * float(np.abs(ref).max())
    assert _threads.current == 1          # the plan's BLAS on one thread, as beside the other threaded kernels
    steps = (DIRECTION_THREADS_MIN_MACS - 1) // (B * 4 * H * (I + H))     # the longest call below the threshold
    if steps >= 1:
        small = {**feed_of(model, B, seed=1), "X": feed["X"][:steps]}
        small["sequence_lens"] = np.full(B, steps, np.int32)
        assert "directions on" not in two.program({k: v.shape for k, v in small.items()})
        for x, y in zip(one.run(None, small), two.run(None, small)):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("op,lbr", [("GRU", 0), ("GRU", 1), ("RNN", 0)], ids=["gru", "gru-lbr", "rnn"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("B", [1, 5])
def test_a_bidirectional_gru_or_rnn_runs_its_directions_on_two_threads(op, lbr, dtype, B):
    """The one-thread GRU and RNN kernels run a bidirectional layer's two directions at once on two threads, each
    projecting its input into a buffer of its own (gru_rnn.directions_parallel): one thread's results bit for bit,
    and the reference's, in float32 and float64 (the kernels' general activations)."""
    H = 96 if op == "RNN" else 48      # above DIRECTION_THREADS_MIN_MACS a direction at batch 1 (T=12)
    model, reference = recurrent_model(op, I=I, H=H, seed=B + lbr, scale=0.1, direction="bidirectional",
                                       sequence_lens=True, linear_before_reset=lbr, dtype=dtype)
    one, two = engine.Session(model, threads=1), engine.Session(model, threads=2)
    if two.threads < 2 or two.runtime != "jit":
        pytest.skip("needs two cores and the JIT runtime's threads")
    feed = feed_of(model, B, seed=7)
    feed.pop("initial_c")
    feed = {k: v.astype(dtype) if v.dtype.kind == "f" else v for k, v in feed.items()}
    shapes = {k: v.shape for k, v in feed.items()}
    assert "directions on 2 threads" in two.program(shapes)
    assert "directions on" not in one.program(shapes)
    tol = 1e-5 if dtype == "float32" else 1e-12
    for x, y, ref in zip(one.run(None, feed), two.run(None, feed), reference(feed)):
        np.testing.assert_array_equal(x, y)
        assert max_abs_diff(y, ref) <= tol * (1 + float(np.abs(ref).max()))


@pytest.mark.parametrize("op, lbr, acts", [("GRU", 0, None), ("GRU", 1, None), ("RNN", 0, None),
                                           ("LSTM", 0, ["Sigmoid", "Tanh", "Relu"])],
                         ids=["gru", "gru-lbr", "rnn", "lstm-generic"])
def test_a_one_thread_recurrence_projects_its_input_on_the_sessions_threads(op, lbr, acts):
    """The GRU (with linear_before_reset: on the column groups, numeric.grouped_rows_parallel), RNN and general LSTM
    kernels run their recurrence on one thread; on a two-thread Session their
    input projection (one product over every step) splits its rows over Numba's threads when big enough
    (Recurrent.proj_parts), and the plan keeps the BLAS on one thread, big enough or not, so that no OpenBLAS pool
    spins beside the recurrence. The results: the reference's (the LSTM with a Relu, which the reference does not
    have: a one-thread Session's)."""
    from engine import _threads
    In, H, T2 = 64, 64, 40
    model, reference = recurrent_model(op, I=In, H=H, seed=3, scale=0.1, linear_before_reset=lbr)
    if acts:
        model.nodes[0].attrs["activations"] = [[a, 0.0, 0.0] for a in acts]
    one, two = engine.Session(model, threads=1), engine.Session(model, threads=2)
    if two.threads < 2 or two.runtime != "jit":
        pytest.skip("needs two cores and the JIT runtime's threads")
    rng = np.random.default_rng(5)
    for steps, B, split in ((T2, 4, True), (3, 1, False)):      # 160 rows; 3 rows, too few to split
        feed = {"X": rng.standard_normal((steps, B, In)).astype(np.float32),
                "initial_h": rng.standard_normal((1, B, H)).astype(np.float32)}
        if op == "LSTM":
            feed["initial_c"] = rng.standard_normal((1, B, H)).astype(np.float32)
        shapes = {k: v.shape for k, v in feed.items()}
        assert ("input projection on 2 threads" in two.program(shapes)) == split
        assert "input projection on" not in one.program(shapes)
        got, base = two.run(None, feed), one.run(None, feed)
        assert _threads.current == 1
        for y, x, ref in zip(got, base, base if acts else reference(feed)):
            assert max_abs_diff(y, ref) <= 1e-5 * (1 + float(np.abs(ref).max()))


@pytest.mark.parametrize("env,want", [({}, "300000"), ({"GOMP_SPINCOUNT": "7"}, "7"),
                                      ({"OMP_WAIT_POLICY": "passive"}, None)])
def test_the_openmp_spin_count_is_set_unless_the_user_chose_one(env, want):
    """engine sets libgomp's spin count (engine/config.py) before Numba's OpenMP layer loads, unless the user set a
    spin count or a wait policy: a worker that sleeps at once makes every parallel region wait for it to wake."""
    import os
    import subprocess
    import sys
    clean = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    code = "import os, engine.ops.lstm_fast; print(os.environ.get('GOMP_SPINCOUNT'))"   # (launches the threads)
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                         timeout=300, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == str(want)


def test_schedules_follow_the_cpu_family(monkeypatch):
    """config.ZEN (the pipelined and fused projections' schedules, the single step's threading and how a batch is
    split between threads, program.py) is the CPU Numba compiles for: NUMBA_CPU_NAME when set, else the host's
    vendor in /proc/cpuinfo; never Zen for an AOT build."""
    from engine import config
    from engine.ops import program
    monkeypatch.setenv("NUMBA_CPU_NAME", "znver5")
    assert config._amd_zen()
    monkeypatch.setenv("NUMBA_CPU_NAME", "sapphirerapids")
    assert not config._amd_zen()
    monkeypatch.delenv("NUMBA_CPU_NAME")
    with open("/proc/cpuinfo") as f:
        amd = "AuthenticAMD" in f.read()
    assert config._amd_zen() == amd
    monkeypatch.setattr(config, "AOT_BUILD", "blas")
    monkeypatch.setenv("NUMBA_CPU_NAME", "znver5")
    assert not config._amd_zen()
    if config.ZEN:
        assert program.PIPELINE_MAX_BYTES > 0 and program.FUSE_MIN_ROWS == 4 and program.PARALLEL_STEP_HIDDEN == 384
        assert program.SPLIT_MAX_UNITS >= 1 << 20 and program.UNITS_FUSE_MIN_ROWS >= 1 << 20
        assert program.FUSE_ROW_BYTES >= 1 << 40
    else:
        assert program.PIPELINE_MAX_BYTES == 0 and program.FUSE_MIN_ROWS == 16 and program.PARALLEL_STEP_HIDDEN == 256
        assert program.FUSE_ROW_BYTES == 48 << 10
        assert program.SPLIT_MAX_UNITS == 127 and program.UNITS_FUSE_MIN_ROWS == 16
