"""``lstm-engine demo``: convert the bundled model, run it, check it against onnxruntime, time both side by side."""
from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time

import numpy as np

from ._progress import Progress

DEMO_MODEL = os.path.join(os.path.dirname(__file__), "data", "demo_lstm.onnx")


def _median_us(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def run_demo(repeats: int = 200) -> int:
    try:
        import onnxruntime as ort
    except ImportError:
        print("the demo compares with onnxruntime: pip install 'lstm-engine[demo]'")
        return 2
    from converters import from_onnx
    from .session import Session

    bar = Progress(3, "demo: convert + compile")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "demo.lstm")
        t0 = time.perf_counter()
        model = from_onnx(DEMO_MODEL, path)
        convert_s = time.perf_counter() - t0
        bar.advance(note="converted")
        sess = Session(path, threads=1)
        bar.advance(note="compiled")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        ref = ort.InferenceSession(DEMO_MODEL, opts, providers=["CPUExecutionProvider"])
        bar.advance(note="onnxruntime ready")
        bar.close()
        size_kb = os.path.getsize(path) / 1024

    rec = model.recurrent_nodes()
    print(f"\nmodel: {os.path.basename(DEMO_MODEL)} -> lstm-engine v{model.format_version}, {len(rec)} LSTM layers, "
          f"hidden {rec[0].attrs['hidden_size']}, {model.parameter_count():,} parameters, {size_kb:.0f} KiB "
          f"(convert {convert_s:.2f}s, compile {sess.compile_seconds:.2f}s)")
    rng = np.random.default_rng(0)
    H = rec[0].attrs["hidden_size"]
    I = model.tensors[rec[0].inputs[1]].shape[2]
    L = len(rec)
    rows = []
    # 1) a whole sequence
    for T in (1, 100):
        feed = {"input": rng.standard_normal((T, 1, I), dtype=np.float32),
                "h0": np.zeros((L, 1, H), np.float32), "c0": np.zeros((L, 1, H), np.float32)}
        ours = sess.run(None, feed)
        theirs = ref.run(None, feed)
        diff = max(float(np.abs(a - b).max()) for a, b in zip(ours, theirs))
        tol = 1e-5 if T <= 100 else 1e-4
        if not diff <= tol:
            print(f"MISMATCH against onnxruntime at T={T}: max abs diff {diff:.2e} > {tol}")
            return 1
        e = _median_us(lambda: sess.run(None, feed), repeats)
        o = _median_us(lambda: ref.run(None, feed), repeats)
        rows.append((f"sequence T={T}, batch 1", diff, e, o))
    # 2) streaming: one step at a time, state carried
    T = 50
    xs = rng.standard_normal((T, 1, I), dtype=np.float32)
    stream = sess.stream(batch_size=1)
    h = np.zeros((L, 1, H), np.float32)
    c = np.zeros((L, 1, H), np.float32)
    diff = 0.0
    for t in range(T):
        y = stream.step(xs[t])
        yo, h, c = ref.run(None, {"input": xs[t:t + 1], "h0": h, "c0": c})
        diff = max(diff, float(np.abs(y - yo[0]).max()))
    if not diff <= 1e-5:
        print(f"MISMATCH against onnxruntime while streaming: max abs diff {diff:.2e}")
        return 1
    x1 = xs[:1]
    feed = {"input": x1, "h0": h, "c0": c}
    e = _median_us(lambda: stream.step(x1[0]), repeats)
    o = _median_us(lambda: ref.run(None, feed), repeats)
    rows.append(("streaming step (state inside)", diff, e, o))
    e2 = _median_us(lambda: sess.run(None, feed), repeats)
    rows.append(("streaming step (state in/out)", diff, e2, o))

    print(f"machine: {platform.processor() or platform.machine()}, 1 thread, onnxruntime {ort.__version__}\n")
    print(f"{'scenario':<32} {'max |diff|':>11} {'engine us':>11} {'onnxrt us':>11} {'speedup':>8}")
    for name, d, e, o in rows:
        print(f"{name:<32} {d:>11.1e} {e:>11.1f} {o:>11.1f} {o / e:>7.2f}x")
    print("\nall outputs match onnxruntime (fp32 tolerance 1e-5)")
    return 0
