"""What recurrent weights fed as graph inputs cost per call (engine/call_weights.py), beside constant weights and
beside onnxruntime running the same graph.

    python -m bench.weight_inputs [--repeat-seconds 1] [--out bench/results/weight_inputs.json]

One LSTM node, I = H, batch 1, one thread, the state passed in and out (``run``), at H = 64 and 256 for one step and
H = 64 for 100 steps. Contenders, interleaved (bench/timing.py): the engine with the weights as initializers; the
engine with them fed, the same arrays every call (the packed buffer reused after comparing the bytes); the engine
with them fed and changed every call (two weight sets in turn: packed every call); onnxruntime with them fed. Every
output is checked against onnxruntime before anything is timed. Also the first call of a fresh Session (its plan
and the first packing), median of 5.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

POINTS = [(64, 1), (64, 100), (256, 1)]   # (H, T)


def _point(H, T, repeat_seconds):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
    from lstm_util import max_abs_diff, ort_session, rnn_model, weights_to_inputs

    import engine
    from bench.timing import Contender, measure
    rng = np.random.default_rng(0)
    model, w = rnn_model("LSTM", I=H, H=H, D=1, T="T", B=1, rng=rng, attrs={}, inputs=("initial_h", "initial_c"),
                         weight_scale=0.2)
    fed = weights_to_inputs(model)
    constant = engine.Session(model.SerializeToString(), threads=1)
    sess = engine.Session(fed.SerializeToString(), threads=1)
    ort = ort_session(fed)
    state = np.zeros((1, 1, H), np.float32)
    feed = {"X": rng.standard_normal((T, 1, H)).astype(np.float32), "initial_h": state, "initial_c": state.copy()}
    first = {k: w[k] for k in ("W", "R", "B")}
    second = {k: v * np.float32(0.5) for k, v in first.items()}
    for weights in (first, second):
        want = ort.run(None, {**feed, **weights})
        for got in (sess.run(None, {**feed, **weights}),
                    constant.run(None, feed) if weights is first else None):
            if got is not None:
                diff = max(max_abs_diff(g, r) for g, r in zip(got, want))
                if diff > 1e-5:
                    raise SystemExit(f"H={H} T={T}: max abs diff {diff:.2e} against onnxruntime; not timing")
    a, b = {**feed, **first}, {**feed, **second}
    turn = [0]

    def changing():
        turn[0] ^= 1
        return sess.run(None, a if turn[0] else b)

    stats = measure([Contender("constant weights", lambda: constant.run(None, feed)),
                     Contender("fed, the same arrays", lambda: sess.run(None, a)),
                     Contender("fed, changed every call", changing),
                     Contender("onnxruntime, fed", lambda: ort.run(None, a))], repeat_seconds=repeat_seconds)
    firsts = []
    for _ in range(5):
        s = engine.Session(fed.SerializeToString(), threads=1)
        t0 = time.perf_counter()
        s.run(None, a)
        firsts.append(time.perf_counter() - t0)
    row = {"H": H, "T": T, "weights_kib": sum(v.nbytes for v in first.values()) / 1024,
           "median_us": {k: v["median_s"] * 1e6 for k, v in stats.items()},
           "first_call_us": float(np.median(firsts)) * 1e6}
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat-seconds", type=float, default=1.0, help="timed seconds per contender per point")
    ap.add_argument("--out", default=os.path.join("bench", "results", "weight_inputs.json"))
    args = ap.parse_args(argv)
    rows = []
    for H, T in POINTS:
        row = _point(H, T, args.repeat_seconds)
        rows.append(row)
        print(f"LSTM H={H} T={T} ({row['weights_kib']:.0f} KiB of weights), median per call: " +
              ", ".join(f"{k} {v:.1f} us" for k, v in row["median_us"].items()) +
              f"; a fresh Session's first call {row['first_call_us']:.0f} us")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"what": "LSTM, I = H, batch 1, 1 thread, run with the state in and out",
                   "load_average": list(os.getloadavg()), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
