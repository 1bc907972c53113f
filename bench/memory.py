"""Memory a Session adds per MiB of weights, and the peak while loading, beside onnxruntime (issue 10, goal 4).

    python -m bench.memory [--hidden 1024] [--out bench/results/memory.json]

A bidirectional LSTM with I = H = 1024 holds 64 MiB of float32 weights. Each measurement is a fresh process that
imports its runtime and warms it up on a tiny model first, so that what is measured is the model alone: resident
memory (VmRSS) before and after creating the session and running it once, and the peak (VmHWM, reset before the
load through /proc/self/clear_refs) while loading. The model file is written once (.lstm for the engine, .onnx
for onnxruntime).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

CHILD = r"""
import json, sys
import numpy as np
runtime, path, small, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

def status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024.0
    return out

if runtime == "engine":
    import engine
    def make(p):
        return engine.Session(p, threads=threads)
else:
    import onnxruntime as ort
    def make(p):
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        return ort.InferenceSession(p, so, providers=["CPUExecutionProvider"])
x_small = np.zeros((2, 1, 8), np.float32)
make(small).run(None, {"X": x_small})            # imports, thread pools, the executor: not the model's cost
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")                                    # reset VmHWM to the current RSS
before = status()
sess = make(path)
loaded = status()
sess.run(None, {"X": np.zeros((4, 1, int(sys.argv[5])), np.float32)})
after = status()
print(json.dumps({"rss_before_mib": before["VmRSS"], "rss_loaded_mib": loaded["VmRSS"],
                  "rss_after_run_mib": after["VmRSS"], "peak_while_loading_mib": loaded["VmHWM"]}))
"""


def _models(tmp, H):
    import onnx

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
    from lstm_util import rnn_model

    import converters
    rng = np.random.default_rng(0)
    big, _ = rnn_model("LSTM", I=H, H=H, D=2, T="T", B="B", rng=rng, attrs={"direction": "bidirectional"},
                       weight_scale=0.02)
    small, _ = rnn_model("LSTM", I=8, H=8, D=1, T="T", B="B", rng=rng, attrs={})
    paths = {}
    for name, m in (("big", big), ("small", small)):
        onnx_path = os.path.join(tmp, f"{name}.onnx")
        onnx.save_model(m, onnx_path)
        converters.from_onnx(onnx_path, os.path.join(tmp, f"{name}.lstm"))
        paths[name] = onnx_path
    weights = sum(int(np.prod(t.dims)) * 4 for t in big.graph.initializer)
    return paths, weights


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=1024, help="I = H of the bidirectional LSTM (default 1024: 64 MiB)")
    ap.add_argument("--out", default=os.path.join("bench", "results", "memory.json"))
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="lstm-bench-mem-") as tmp:
        paths, weight_bytes = _models(tmp, args.hidden)
        mib = weight_bytes / 2 ** 20
        for runtime in ("engine", "onnxruntime"):
            for threads in (1, 2):
                big = paths["big"].replace(".onnx", ".lstm") if runtime == "engine" else paths["big"]
                small = paths["small"].replace(".onnx", ".lstm") if runtime == "engine" else paths["small"]
                p = subprocess.run([sys.executable, "-c", CHILD, runtime, big, small, str(threads), str(args.hidden)],
                                   capture_output=True, text=True, timeout=900)
                if p.returncode != 0:
                    raise SystemExit(f"{runtime} child failed: {p.stderr[-2000:]}")
                r = json.loads(p.stdout.strip().splitlines()[-1])
                r.update(runtime=runtime, threads=threads, weights_mib=mib,
                         session_per_weight_mib=(r["rss_after_run_mib"] - r["rss_before_mib"]) / mib,
                         loading_peak_per_weight_mib=(r["peak_while_loading_mib"] - r["rss_before_mib"]) / mib)
                rows.append(r)
                print(f"{runtime:<12} threads={threads}: session adds {r['rss_after_run_mib'] - r['rss_before_mib']:6.1f}"
                      f" MiB ({r['session_per_weight_mib']:.2f}x the {mib:.0f} MiB of weights), loading peaks at "
                      f"+{r['peak_while_loading_mib'] - r['rss_before_mib']:.1f} MiB "
                      f"({r['loading_peak_per_weight_mib']:.2f}x)")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"model": f"bidirectional LSTM I=H={args.hidden}", "weights_mib": mib, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
