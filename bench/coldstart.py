"""Cold start: a fresh Python process, from ``import`` to the first result, and its peak memory.

The child process starts its clock before importing anything but ``time``, ``sys`` and ``json``,
imports numpy and the runtime, loads the model, runs one call (T=100, B=1, one thread) and stops the clock. The
peers (OpenVINO, tract) load the ONNX file through ``bench.peers``, as in the timed points; a peer that is not
installed is recorded as such and started in no process. It
saves the output, which the parent checks against onnxruntime, and prints its time and ``ru_maxrss``. The parent
also records the whole process's wall time (interpreter start-up included).

"Empty cache" points LSTM_ENGINE_CACHE_DIR and NUMBA_CACHE_DIR at new temporary directories, so that every Numba
function (kernels and the generated model function) is compiled from scratch; "warm cache" reuses those directories
after the empty run filled them. A child with its own NUMBA_CACHE_DIR leaves the checkout's in-tree ``__pycache__``
kernel caches alone (``engine._cache.drop_stale`` clears only the location the process loads from).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
runtime, model_path, inputs_path, out_path = sys.argv[1:5]
import numpy as np
feed = dict(np.load(inputs_path))
if runtime == "engine":
    import engine
    sess = engine.Session(model_path, threads=1)
    out = sess.run(None, feed)[0]
elif runtime == "onnxruntime":
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
    out = sess.run(None, feed)[0]
else:
    from bench.peers import BY_NAME
    out = BY_NAME[runtime].load(model_path, feed, 1).run(feed)[0]
seconds = time.perf_counter() - t0
np.save(out_path, out)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork and exec, so the child would report the parent's peak
peak = None
try:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1])
except OSError:
    pass
if peak is None:
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_rss_kib": peak}))
"""


class ColdStartError(RuntimeError):
    pass


def project_root() -> str:
    """The directory that holds the ``engine`` package (a source checkout or site-packages)."""
    import engine
    return os.path.dirname(os.path.dirname(os.path.abspath(engine.__file__)))


def run_child(runtime, model_path, inputs_path, workdir, env_extra=None, timeout=600):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([project_root()] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.update(env_extra or {})
    out_path = os.path.join(workdir, f"cold_out_{runtime}.npy")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, runtime, model_path, inputs_path, out_path],
                          capture_output=True, text=True, env=env, timeout=timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise ColdStartError(f"the {runtime} child process failed (exit {proc.returncode}): " + " | ".join(tail))
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    output = np.load(out_path)
    return {"seconds": report["seconds"], "process_seconds": wall,
            "peak_rss_mib": report["peak_rss_kib"] / 1024.0}, output


def fresh_cache_env(root):
    """Environment for an engine child with empty compile caches under ``root``."""
    cache = os.path.join(root, "lstm-engine-cache")
    numba_cache = os.path.join(root, "numba-cache")
    os.makedirs(cache, exist_ok=True)
    os.makedirs(numba_cache, exist_ok=True)
    return {"LSTM_ENGINE_CACHE_DIR": cache, "NUMBA_CACHE_DIR": numba_cache}


def _installed_peers(cold_scenarios, peers):
    """The cold scenarios of peers that are installed, and {scenario name: install hint} of those that are not."""
    by_name = {p.name: p for p in peers}
    runnable, missing = [], {}
    for c in cold_scenarios:
        peer = by_name.get(c.runtime)
        if peer is None:
            continue
        if peer.installed():
            runnable.append(c)
        else:
            missing[c.name] = f"not installed ({peer.install})"
    return runnable, missing


def measure_cold(cold_scenarios, built, inputs, reference, tolerance, repeats=3, on_run=None, peers=(),
                 cache_env=None):
    """One record per cold scenario: every run's figures, the medians, the max abs diff against onnxruntime.

    ``built`` is the BuiltModel of the cold-start model, ``inputs`` its feed, ``reference`` onnxruntime's first
    output on it (computed in this process). The engine's warm runs need the empty run first (it fills the cache),
    so the empty run happens whenever an engine scenario is selected, and is recorded only if it was selected.
    A scenario whose runtime is one of ``peers`` runs with the others (recorded with ``status`` "not installed"
    when that peer is missing); a peer's failure is recorded in its record's error like any other.

    ``cache_env``: the engine children's compile caches (environment variables). None, for the bench: new empty
    ones (``fresh_cache_env``), so the empty run compiles everything. ``{}``: this process's own caches, which a
    test has already filled, so the unrecorded first run loads rather than spends a minute compiling.
    """
    wanted = {c.name: c for c in cold_scenarios}
    runs = {name: [] for name in wanted}
    errors = {}
    diffs = {name: 0.0 for name in wanted}
    with tempfile.TemporaryDirectory(prefix="lstm-bench-cold-") as tmp:
        inputs_path = os.path.join(tmp, "inputs.npz")
        np.savez(inputs_path, **inputs)
        env = fresh_cache_env(tmp) if cache_env is None else cache_env
        plan = []
        engine_cold = [c for c in cold_scenarios if c.runtime == "engine"]
        ort_cold = [c for c in cold_scenarios if c.runtime == "onnxruntime"]
        peer_cold, not_installed = _installed_peers(cold_scenarios, peers)
        empty = next((c for c in engine_cold if c.cache == "empty"), None)
        warm = next((c for c in engine_cold if c.cache == "warm"), None)
        if engine_cold:
            plan.append(("engine", empty.name if empty else None))
        # warm engine, onnxruntime and the peers alternate, so that drift hits all alike
        for _ in range(repeats):
            if warm:
                plan.append(("engine", warm.name))
            for c in ort_cold + peer_cold:
                plan.append((c.runtime, c.name))
        for runtime, name in plan:
            if name in errors:
                continue
            model_path = built.engine_path if runtime == "engine" else built.onnx_path
            try:
                figures, output = run_child(runtime, model_path, inputs_path, tmp,
                                            env if runtime == "engine" else None)
            except (ColdStartError, subprocess.TimeoutExpired, OSError, ValueError) as e:
                if name is None:      # the unrecorded empty run that fills the cache for the warm runs
                    name = warm.name
                errors[name] = f"{type(e).__name__}: {e}"
                if on_run:
                    on_run(name)
                continue
            if name is not None:
                runs[name].append(figures)
                diffs[name] = max(diffs[name], float(np.max(np.abs(output - reference))))
            if on_run:
                on_run(name or "cold/engine-empty (fills the cache)")
    records = []
    for c in cold_scenarios:
        rec = {"scenario": c.name, "runtime": c.runtime, "cache": c.cache, "threads": 1,
               "model": "LSTM T=100 B=1 I=H=128 (sequence); engine: .lstm file, onnxruntime and peers: .onnx file",
               "runs": runs[c.name], "max_abs_diff": diffs[c.name], "tolerance": tolerance,
               "target_max_seconds": c.max_seconds, "target_source": c.target_source, "error": None}
        if c.name in not_installed:
            rec.update(status="not installed", reason=not_installed[c.name], met=None)
            records.append(rec)
            continue
        if c.name in errors:
            rec["error"] = {"kind": "exception", "message": errors[c.name]}
        elif diffs[c.name] > tolerance or not np.isfinite(diffs[c.name]):
            rec["error"] = {"kind": "mismatch", "message": f"first result differs from onnxruntime by "
                                                           f"{diffs[c.name]:.3g} > {tolerance:g}"}
        if runs[c.name]:
            rec["seconds"] = statistics.median(r["seconds"] for r in runs[c.name])
            rec["process_seconds"] = statistics.median(r["process_seconds"] for r in runs[c.name])
            rec["peak_rss_mib"] = max(r["peak_rss_mib"] for r in runs[c.name])
        if c.max_seconds is not None and rec["error"] is None and runs[c.name]:
            rec["met"] = rec["seconds"] < c.max_seconds
        else:
            rec["met"] = None if rec["error"] is None else False
        records.append(rec)
    return records


def planned_runs(cold_scenarios, repeats, peers=()) -> int:
    """How many child processes ``measure_cold`` starts (for the progress bar)."""
    engine_cold = [c for c in cold_scenarios if c.runtime == "engine"]
    warm = any(c.cache == "warm" for c in engine_cold)
    ort = sum(c.runtime == "onnxruntime" for c in cold_scenarios)
    return (1 if engine_cold else 0) + repeats * (int(warm) + ort + len(_installed_peers(cold_scenarios, peers)[0]))
