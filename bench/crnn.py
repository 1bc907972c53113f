"""A CRNN text recogniser's forward pass, lstm-engine beside onnxruntime (issue 9, item 6).

    python -m bench.crnn [--quick] [--repeat-seconds S] [--models small,medium] [--threads N]
                         [--out bench/results/crnn.json]

Two CRNNs (bench/crnn_models.py, random weights): ``small`` (convolutions of 16-64 channels, bidirectional
LSTMs of 96 units, 0.4 M parameters) and ``medium`` (64-256 channels, LSTMs of 256 units, 3.2 M parameters, the
size of the recognisers OCR libraries ship), exported with torch.onnx.export(dynamo=False), over grey text lines
of height 32 and widths 100 and 400 (one line) and 200 (a batch of 8). Both runtimes get the same ONNX file and the
same inputs and the same threads, one by default (Session(threads=N); intra_op_num_threads = inter_op_num_threads
= N); every point is checked against onnxruntime first (max abs diff <= 1e-4, or the point fails and nothing is
timed), then timed interleaved (bench/timing.py), median per call; on more than one thread with a pause before each
block, so that one runtime's spinning pool does not take a core from the other. Also reported: the engine's time
per instruction family (convolutions, pools, LSTMs, the rest), each instruction timed alone, and the convolutions'
GFLOP/s.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import re
import sys
import time
import warnings

import numpy as np

MODELS = {"small": {}, "medium": {"channels": (64, 128, 256, 256), "hidden": 256}}
POINTS = [(1, 100), (1, 400), (8, 200)]      # (batch, width)
TOL = 1e-4


def export(config):
    import torch

    from bench.crnn_models import HEIGHT, build
    m = build("crnn", seed=0, **MODELS[config])
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (torch.randn(1, 1, HEIGHT, 64),), buf, dynamo=False, input_names=["image"],
                          output_names=["logp"], dynamic_axes={"image": {0: "N", 3: "W"}, "logp": {0: "T", 1: "N"}})
    return buf.getvalue(), sum(p.numel() for p in m.parameters())


def ort_session(data, threads=1):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def profile(sess, x, repeats=7):
    """(seconds per instruction family, their sum, GFLOP of the 2-D convolutions) of the engine's plan for x: the
    whole program runs once, then each instruction alone (its inputs are in the work buffer from that run), min
    over ``repeats``. The FLOPs come from the plan's own listing ("conv2d (N, C, H, W) * (M, Cg, kh, kw) ->
    (N, M, Ho, Wo)"), 2 per multiply-add."""
    from engine import _threads
    sess.run(None, {"image": x})
    plan = sess._plan(("run", (x.shape,), None), {"image": x.shape}, sess._output_names)
    prog = plan.prog
    starts, pc = [], prog[0]
    while pc < prog[1]:
        starts.append(pc)
        pc += prog[pc + 1]
    starts.append(pc)
    fwork, iwork = plan.take_work(sess.dtype)
    fout = np.empty(plan.fout_size, sess.dtype)
    _threads.set_blas_threads(1)
    flat = x.reshape(-1)

    def run(begin, end):
        p = prog.copy()
        p[0], p[1] = begin, end
        best = np.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            sess._run(p, sess._fconst, flat, sess._no_f, sess._no_f, sess._no_i, fwork, iwork, fout, sess._no_f)
            best = min(best, time.perf_counter() - t0)
        return best

    run(starts[0], starts[-1])
    families = {"conv2d": 0.0, "pool": 0.0, "lstm": 0.0, "other": 0.0}
    gflop = 0.0
    for k, line in enumerate(plan.listing):
        key = next((f for f in ("conv2d", "lstm") if line.startswith(f)), "pool" if "pool" in line else "other")
        families[key] += run(starts[k], starts[k + 1])
        if key == "conv2d":
            _, (_, Cg, kh, kw), out = [tuple(map(int, re.findall(r"\d+", part)))
                                       for part in re.findall(r"\(([\d, ]+)\)", line)[:3]]
            gflop += 2 * math.prod(out) * Cg * kh * kw / 1e9
    return families, sum(families.values()), gflop


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="0.5 s per runtime per point instead of 3 s")
    p.add_argument("--repeat-seconds", type=float, default=None)
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    p.add_argument("--threads", type=int, default=1, help="threads for each runtime (default 1)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "crnn.json"))
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error("--threads must be at least 1")
    seconds = args.repeat_seconds or (0.5 if args.quick else 3.0)

    import converters
    import engine
    from bench.run import machine_info
    from bench.timing import Contender, measure

    results = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine_info([args.threads], peers=()),
               "points": [],
               "settings": {"repeat_seconds": seconds, "threads": args.threads, "tolerance": TOL}}
    ok = True
    print(f"{'model':8s} {'input':>14s} {'engine':>10s} {'onnxrt':>10s} {'speedup':>8s} {'max diff':>9s}   "
          f"engine: conv GFLOP/s, share of time in conv / pool / lstm / other")
    configs = args.models.split(",")
    unknown = [c for c in configs if c not in MODELS]
    if unknown:
        p.error(f"unknown model(s) {', '.join(unknown)}")
    for config in configs:
        data, params = export(config)
        model = converters.from_onnx(data)
        sess, ort = engine.Session(model, threads=args.threads), ort_session(data, args.threads)
        rng = np.random.default_rng(0)
        for N, W in POINTS:
            x = rng.uniform(-1, 1, (N, 1, 32, W)).astype(np.float32)
            got, ref = sess.run(None, {"image": x})[0], ort.run(None, {"image": x})[0]
            diff = float(np.abs(got.astype(np.float64) - ref).max())
            point = {"model": config, "parameters": int(params), "batch": N, "width": W, "max_abs_diff": diff}
            if not diff <= TOL:
                print(f"{config:8s} {N}x1x32x{W}: outputs differ from onnxruntime by {diff:.3g}; not timed")
                point["error"] = "mismatch"
                results["points"].append(point)
                ok = False
                continue
            stats = measure([Contender("engine", lambda: sess.run(None, {"image": x})),
                             Contender("onnxruntime", lambda: ort.run(None, {"image": x}))],
                            repeat_seconds=seconds, min_calls=5, settle_seconds=0.05 if args.threads > 1 else 0.0)
            families, total, gflop = profile(sess, x)
            e, o = stats["engine"]["median_s"], stats["onnxruntime"]["median_s"]
            point.update(engine=stats["engine"], onnxruntime=stats["onnxruntime"], speedup=o / e,
                         engine_profile_s=families, engine_profile_total_s=total, conv_gflop=gflop,
                         engine_conv_gflops=gflop / families["conv2d"] if families["conv2d"] else None)
            results["points"].append(point)
            shares = " / ".join(f"{100 * families[k] / total:.0f}%" for k in ("conv2d", "pool", "lstm", "other"))
            print(f"{config:8s} {f'{N}x1x32x{W}':>14s} {e * 1e3:8.2f}ms {o * 1e3:8.2f}ms {o / e:7.2f}x {diff:9.1e}   "
                  f"{point['engine_conv_gflops']:.0f}, {shares}", flush=True)
    results["load_average_end"] = list(os.getloadavg())
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print(f"load average at start {results['machine']['load_average_start']}, at end {results['load_average_end']}; "
          f"wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
