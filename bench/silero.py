"""Silero VAD per 32 ms chunk, engine beside onnxruntime, and many concurrent streams (issue 9, item 5).

    python -m bench.silero [--streams 1000] [--seconds 1.0] [--out bench/results/silero.json]

Per file of silero-vad 6.2.3, 1 thread, the same chunk (espeak-ng speech if espeak-ng and sox are installed, else
noise), outputs checked before timing:
  * run, the state passed in and out as silero-vad's users call onnxruntime: engine Session.run vs
    InferenceSession.run (the sequence file: one frame per call, h and c passed);
  * the engine's stream.step (the state inside) vs the same onnxruntime call.
Interleaved blocks, medians (bench/timing.py).

Many streams: N concurrent streams, each fed its own chunk in turn (round robin, so that no stream's working set
stays in cache for the next), time per chunk and memory per stream (RSS growth while the N streams exist, over N):
  * engine: one Session, N streams (the state inside each);
  * onnxruntime, one InferenceSession per stream (the common service pattern);
  * onnxruntime, one InferenceSession, N states passed in and out.
Each of these runs in a fresh process so that memory is the runtime's own.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

MANY = r"""
import json, sys, time, gc
import numpy as np
kind, path, n, chunks = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024.0

rng = np.random.default_rng(0)
xs = (rng.standard_normal((64, 1, 576)) * 0.05).astype(np.float32)
sr = np.array(16000, dtype=np.int64)
if kind == "engine":
    import engine
    from converters import from_onnx
    sess = engine.Session(from_onnx(path), threads=1)
    sess.stream(inputs={"sr": sr}).step(xs[0])
    before = rss()
    streams = [sess.stream(inputs={"sr": sr}) for _ in range(n)]
    for s in streams:
        s.step(xs[0])                      # every stream holds its state
    def step(i, x):
        return streams[i].step(x)
else:
    import onnxruntime as ort
    so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.inter_op_num_threads = 1; so.log_severity_level = 3
    def make():
        return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    if kind == "ort-per-stream":
        make().run(None, {"input": xs[0], "state": np.zeros((2, 1, 128), np.float32), "sr": sr})
        before = rss()
        sessions = [make() for _ in range(n)]
        states = [np.zeros((2, 1, 128), np.float32) for _ in range(n)]
        def step(i, x):
            out, states[i] = sessions[i].run(None, {"input": x, "state": states[i], "sr": sr})
            return out
    else:
        one = make()
        one.run(None, {"input": xs[0], "state": np.zeros((2, 1, 128), np.float32), "sr": sr})
        before = rss()
        states = [np.zeros((2, 1, 128), np.float32) for _ in range(n)]
        def step(i, x):
            out, states[i] = one.run(None, {"input": x, "state": states[i], "sr": sr})
            return out
    for i in range(n):
        step(i, xs[0])
after = rss()
gc.disable()
times = []
for c in range(chunks):
    i = c % n
    t0 = time.perf_counter()
    step(i, xs[c % 64])
    times.append(time.perf_counter() - t0)
print(json.dumps({"kind": kind, "streams": n, "chunks": chunks, "median_us": float(np.median(times)) * 1e6,
                  "p90_us": float(np.percentile(times, 90)) * 1e6, "rss_before_mib": before, "rss_after_mib": after,
                  "kib_per_stream": (after - before) * 1024 / n}))
"""


def per_chunk(seconds, audio):
    import engine
    import silero_oracle as so
    from converters import from_onnx

    from .timing import Contender, measure

    rows = []
    for name in so.ALL_FILES:
        path = so.silero_file(name)
        info = so.FILES[name]
        sess = engine.Session(from_onnx(path), threads=1)
        ort = so.session(path, 1)
        frame = audio[16000:16000 + 576].astype(np.float32)
        if info["kind"] == "sequence":
            z = np.zeros((1, 1, 128), np.float32)
            feed = {"input": frame[None], "h": z, "c": z}
            stream = sess.stream()
            step_x = frame
        else:
            feed = {"input": frame[None], "state": np.zeros((2, 1, 128), np.float32)}
            if info["takes_sr"]:
                feed["sr"] = np.array(16000, dtype=np.int64)
            stream = sess.stream(inputs={"sr": feed["sr"]} if info["takes_sr"] else None)
            step_x = frame[None]
        ours, theirs = sess.run(None, feed), ort.run(None, feed)
        diff = max(float(np.abs(a - b).max()) for a, b in zip(ours, theirs))
        if not diff <= 1e-5:
            raise SystemExit(f"{name}: the engine differs from onnxruntime by {diff:.2e}; not timing it")
        stream.step(step_x)
        res = measure([Contender("engine run", lambda: sess.run(None, feed)),
                       Contender("engine step", lambda: stream.step(step_x)),
                       Contender("onnxruntime run", lambda: ort.run(None, feed))], repeat_seconds=seconds)
        e, s, o = (res[k]["median_s"] * 1e6 for k in ("engine run", "engine step", "onnxruntime run"))
        rows.append({"file": name, "engine_run_us": e, "engine_step_us": s, "onnxruntime_run_us": o,
                     "run_ratio": o / e, "step_ratio": o / s, "max_abs_diff": diff})
        print(f"  {name:<30} run {e:6.1f} us  step {s:6.1f} us  onnxruntime {o:6.1f} us  "
              f"-> {o / e:.2f}x / {o / s:.2f}x", flush=True)
    return rows


def many_streams(n, chunks):
    import silero_oracle as so

    path = so.silero_file("silero_vad.onnx")
    out = []
    for kind in ("engine", "ort-per-stream", "ort-one-session"):
        r = subprocess.run([sys.executable, "-c", MANY, kind, path, str(n), str(chunks)], capture_output=True,
                           text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        if r.returncode != 0:
            raise SystemExit(f"{kind}: {r.stderr[-2000:]}")
        row = json.loads(r.stdout.strip().splitlines()[-1])
        out.append(row)
        print(f"  {kind:<18} {row['median_us']:7.1f} us/chunk  {row['kib_per_stream']:8.1f} KiB/stream  "
              f"(RSS {row['rss_after_mib']:.0f} MiB)", flush=True)
    return out


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs"


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.silero", description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--chunks", type=int, default=20000, help="chunks timed in the many-streams runs")
    ap.add_argument("--seconds", type=float, default=1.0, help="time per contender and file")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "silero.json"))
    args = ap.parse_args(argv)
    import onnxruntime

    from engine import speech
    from engine.vad import read_wav
    if not speech.tools_missing():
        with tempfile.TemporaryDirectory() as tmp:
            audio, _ = read_wav(speech.make_speech_wav(os.path.join(tmp, "s.wav"), seed=0).path)
        what = "espeak-ng speech"
    else:
        audio = (np.random.default_rng(0).standard_normal(32000) * 0.05).astype(np.float32)
        what = "noise (espeak-ng/sox not installed)"
    print(f"Silero VAD per 32 ms chunk, 1 thread, {what} ({machine()}, onnxruntime {onnxruntime.__version__}):")
    rows = per_chunk(args.seconds, audio)
    print(f"{args.streams} concurrent streams of silero_vad.onnx, round robin:")
    many = many_streams(args.streams, args.chunks)
    try:
        from threadpoolctl import threadpool_info
        blas = [f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')}" for i in threadpool_info()
                if i.get("user_api") == "blas"]
    except Exception:
        blas = []
    result = {"machine": machine(), "onnxruntime": onnxruntime.__version__, "audio": what, "per_chunk": rows,
              "many_streams": many, "blas": blas,
              "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    md = [f"Silero VAD, 1 thread, {result['machine']}, onnxruntime {result['onnxruntime']}", "",
          "| file | engine run (us) | engine stream.step (us) | onnxruntime run (us) | run | step |",
          "|---|---:|---:|---:|---:|---:|"]
    md += [f"| {r['file']} | {r['engine_run_us']:.1f} | {r['engine_step_us']:.1f} | {r['onnxruntime_run_us']:.1f} "
           f"| {r['run_ratio']:.2f}x | {r['step_ratio']:.2f}x |" for r in rows]
    md += ["", f"{args.streams} concurrent streams (silero_vad.onnx):", "",
           "| | time per chunk (us) | memory per stream (KiB) |", "|---|---:|---:|"]
    names = {"engine": "engine: one Session, a stream each", "ort-per-stream": "onnxruntime: a session each",
             "ort-one-session": "onnxruntime: one session, states passed"}
    md += [f"| {names[m['kind']]} | {m['median_us']:.1f} | {m['kib_per_stream']:.1f} |" for m in many]
    with open(os.path.splitext(args.out)[0] + ".md", "w") as f:
        f.write("\n".join(md) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
