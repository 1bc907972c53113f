"""Batch scoring on Dask (engine.dask.score): sequences/s with 1 and 2 worker processes on a LocalCluster
(127.0.0.1), one thread each.

    python -m bench.dask_scale            # about a minute and a half

The job: the zoo's character LSTM (charlm.onnx) over SEQUENCES random token sequences of T tokens (made on the
workers), chunked by CHUNK sequences along the batch, returning each sequence's final hidden state h_n
(1, B, 192), a sequence embedding, so that the result is small and the time is the model's. The result is checked
against one Session.run on the whole batch in this process before anything is timed. Each configuration runs the
job once untimed (every worker makes its Session: the first block on a worker loads the engine and the model),
then REPEATS times timed; the median is reported, with the workers' CPU time over the wall time (how many cores
the job actually got: on a machine shared with other work, fewer than the workers), and a control without Dask: the
same chunks in a loop in 1 process, then in 2 processes at once. Writes bench/results/dask.json and dask.md.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "engine", "data", "zoo", "charlm.onnx")
SEQUENCES, T, CHUNK, REPEATS, H = 4096, 200, 128, 3, 192


def _cpu_seconds():
    """CPU time (user + system) of this worker process so far."""
    t = os.times()
    return t.user + t.system


def _busy(seconds):
    """Session.run on one chunk in a loop for ``seconds``: (chunks run, CPU seconds, wall seconds)."""
    import engine
    sess = engine.Session(MODEL, threads=1)
    feeds = {"tokens": np.random.default_rng(0).integers(0, 97, (T, CHUNK)).astype(np.int64),
             "h0": np.zeros((1, CHUNK, H), np.float32), "c0": np.zeros((1, CHUNK, H), np.float32)}
    sess.run(["h_n"], feeds)
    c0, t0, n = _cpu_seconds(), time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        sess.run(["h_n"], feeds)
        n += 1
    return n, _cpu_seconds() - c0, time.perf_counter() - t0


def control(seconds=6.0):
    """Without Dask: the same chunks in 1 process, then in 2 processes at once; chunks/s and the cores they got."""
    import multiprocessing
    out = {}
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        for n in (1, 2):
            runs = pool.map(_busy, [seconds] * n)
            out[f"{n}_process"] = {"chunks_per_s": round(sum(r[0] / r[2] for r in runs), 2),
                                   "cores": round(sum(r[1] / r[2] for r in runs), 2)}
    return out


def main(argv=None):
    import dask.array as da
    import distributed

    import engine
    import engine.dask
    from bench.serve_load import machine

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    p.add_argument("--quick", action="store_true", help="1024 sequences, one timed repeat")
    a = p.parse_args(argv)
    n_seq, repeats = (1024, 1) if a.quick else (SEQUENCES, REPEATS)

    # the data is made on the workers (random tokens, zero states), as it would be read there from storage
    inputs = {"tokens": da.random.default_rng(0).integers(0, 97, size=(T, n_seq), chunks=(T, CHUNK), dtype=np.int64),
              "h0": da.zeros((1, n_seq, H), chunks=(1, CHUNK, H), dtype=np.float32),
              "c0": da.zeros((1, n_seq, H), chunks=(1, CHUNK, H), dtype=np.float32)}
    tokens = inputs["tokens"].compute(scheduler="synchronous")
    zeros = np.zeros((1, n_seq, H), np.float32)
    t0 = time.perf_counter()
    want = engine.Session(MODEL, threads=1).run(["h_n"], {"tokens": tokens, "h0": zeros, "c0": zeros})[0]
    local_seconds = time.perf_counter() - t0
    os.environ["PYTHONPATH"] = ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")    # the workers import engine
    ctl = control()
    print("control, without Dask:", json.dumps(ctl), flush=True)
    results = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(), "control_without_dask": ctl,
               "load_average_at_start": os.getloadavg(), "model": "zoo charlm.onnx, output h_n",
               "sequences": n_seq, "tokens_per_sequence": T, "chunk": CHUNK, "repeats": repeats,
               "one_session_run_seconds": round(local_seconds, 3), "workers": []}
    for n in (1, 2):
        with distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                                      dashboard_address=None, silence_logs=40) as cluster, \
                distributed.Client(cluster) as client:
            y = engine.dask.score(MODEL, inputs, output="h_n")
            got = y.compute()                                  # untimed: every worker makes its Session
            diff = float(np.abs(got - want).max())
            if diff > 1e-5:
                raise SystemExit(f"{n} worker(s): max abs diff {diff:.2e} against Session.run; not timing it")
            times, cpu = [], []
            for _ in range(repeats):
                c0 = sum(client.run(_cpu_seconds).values())
                t0 = time.perf_counter()
                engine.dask.score(MODEL, inputs, output="h_n").compute()
                times.append(time.perf_counter() - t0)
                cpu.append(sum(client.run(_cpu_seconds).values()) - c0)
            sessions = client.run(engine.dask.cached_sessions)
            med = float(np.median(times))
            r = {"workers": n, "seconds": [round(t, 3) for t in times], "median_seconds": round(med, 3),
                 "sequences_per_s": round(n_seq / med, 1), "max_abs_diff_vs_session_run": diff,
                 "worker_cpu_seconds": [round(c, 3) for c in cpu],
                 "cores_busy_on_average": round(float(np.median(cpu)) / med, 2),
                 "sessions_per_worker": sorted(len(v) for v in sessions.values())}
            results["workers"].append(r)
            print(json.dumps(r), flush=True)
    one, two = results["workers"]
    results["speedup_2_vs_1"] = round(two["sequences_per_s"] / one["sequences_per_s"], 2)
    results["load_average_at_end"] = os.getloadavg()
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "dask.json"), "w") as f:
        json.dump(results, f, indent=1)
    m = results["machine"]
    md = (f"# engine.dask.score on a LocalCluster\n\n{results['date']}, {m['cpu']}, {m['logical_cpus']} logical CPUs "
          f"(shared with other work; load average {results['load_average_at_start'][0]:.1f} at the start), "
          f"charlm over {n_seq} sequences of {T} tokens, chunks of {CHUNK}, output h_n, median of {repeats}.\n\n"
          f"| workers (processes x 1 thread) | seconds | sequences/s | worker CPU time / wall time |\n"
          f"|---|---|---|---|\n"
          + "".join(f"| {r['workers']} | {r['median_seconds']:.2f} | {r['sequences_per_s']:.0f} "
                    f"| {r['cores_busy_on_average']:.2f} |\n" for r in results["workers"])
          + f"\nOne Session.run over the whole batch in one process: {local_seconds:.2f} s. 2 workers / 1 worker: "
            f"{results['speedup_2_vs_1']:.2f}x. Control without Dask, the same chunks (128 x 200 tokens) in a loop: "
            f"1 process {ctl['1_process']['chunks_per_s']:.1f} chunks/s on {ctl['1_process']['cores']:.2f} cores, "
            f"2 processes at once {ctl['2_process']['chunks_per_s']:.1f} chunks/s on {ctl['2_process']['cores']:.2f} "
            f"cores.\n")
    with open(os.path.join(a.out, "dask.md"), "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()
