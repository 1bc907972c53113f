"""Cold start of the ahead-of-time runtime against the JIT (warm cache) and onnxruntime.

    python -m bench.aot_coldstart --runtime DIR [--repeats 5] [--out bench/results/aot_coldstart.json]

Each run is a fresh process (bench/coldstart.py's child): from ``import`` to the first result of the cold-start
model (LSTM T=100, B=1, H=128, one thread), and its peak RSS (VmHWM). The three alternate, so that drift on a shared
machine hits them alike; one unrecorded run of each comes first (it fills the JIT's cache and the page cache). Every
output is checked against onnxruntime's before any figure is reported.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile

import numpy as np

from .coldstart import run_child
from .models import build, make_inputs
from .scenarios import COLD_MODEL


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runtime", required=True, help="a directory holding a runtime from lstm-engine build-runtime")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)
    from engine import aot
    info, reason = aot.check(args.runtime)
    if info is None:
        sys.exit(f"{args.runtime}: {reason}")
    kinds = {
        "lstm-engine, AOT runtime": ("engine", {"LSTM_ENGINE_RUNTIME": os.path.abspath(args.runtime)}),
        "lstm-engine, JIT, warm cache": ("engine", {"LSTM_ENGINE_RUNTIME": "jit"}),
        "onnxruntime": ("onnxruntime", None),
    }
    runs = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory(prefix="lstm-aot-cold-") as tmp:
        built = build(COLD_MODEL, tmp)
        feed = make_inputs(COLD_MODEL)
        inputs_path = os.path.join(tmp, "inputs.npz")
        np.savez(inputs_path, **feed)
        for repeat in range(args.repeats + 1):
            for name, (kind, env) in kinds.items():
                path = built.engine_path if kind == "engine" else built.onnx_path
                figures, out = run_child(kind, path, inputs_path, tmp, env)
                if kind == "onnxruntime":
                    reference = out
                elif repeat:
                    diff = float(np.abs(out - reference).max())
                    assert diff <= 1e-5, f"{name}: max abs diff {diff} against onnxruntime"
                if repeat:
                    runs[name].append(figures)
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "model": "LSTM T=100 B=1 H=128 (bench/scenarios.py COLD_MODEL), one thread",
        "runtime": {k: info[k] for k in ("target", "cpu", "blas", "numba", "numpy", "build_seconds")},
        "runtime_module_bytes": os.path.getsize(aot.module_path(args.runtime, info)),
        "medians": {name: {key: statistics.median(r[key] for r in rs)
                           for key in ("seconds", "process_seconds", "peak_rss_mib")} for name, rs in runs.items()},
        "runs": runs,
    }
    print("| cold start: fresh process, `import` to the first result | time | whole process | peak RSS |")
    print("|---|---|---|---|")
    for name, m in result["medians"].items():
        print(f"| {name} | {m['seconds']:.3f} s | {m['process_seconds']:.3f} s | {m['peak_rss_mib']:.0f} MiB |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
