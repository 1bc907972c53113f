"""The side-by-side benchmark: lstm-engine, onnxruntime (CPUExecutionProvider) and torch (nn.LSTM), with OpenVINO
and tract as peers where they are installed.

For each scenario: build the nn.LSTM with torch (fixed seed), export it with torch.onnx.export(dynamo=False) and give
that file to onnxruntime, to the peers and (converted with converters.from_onnx) to the engine. For each thread
count: check every output of the engine and of torch against onnxruntime (a mismatch aborts the point: it is
recorded as an error, shown in the table, and the exit status is 1), check each peer the same way (a peer that
differs, fails, is missing or cannot use the thread count is recorded with the reason and not timed; it does not
change the exit status), then time all of them interleaved (``timing.measure``). Then the cold starts, in fresh
processes. Writes ``latest.json`` (every figure, the machine), ``latest.md`` (the table)
and ``latest.png`` (speedup against onnxruntime) into the output directory.

    python -m bench [--quick] [--threads 1,2] [--scenarios stream,seq/*] [--out DIR] [--repeat-seconds S]
    lstm-engine bench ...
"""
from __future__ import annotations

import datetime
import os
import platform
import sys
import tempfile
import time
import traceback

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import coldstart, report
from .peers import PEERS, reason_of
from .models import build, input_names, make_inputs, output_names
from .scenarios import COLD_MODEL, COLD_SCENARIOS, SCENARIOS, Scenario, select
from .timing import Contender, measure

SCHEMA = "lstm-engine-bench/1"
ALL_CORES_NOISE = 0.95    # the all-core ratio counts as "at least the single-thread one" within 5% (noise)
STREAM_CHECK_STEPS = 10   # steps carried through every runtime before a streaming point is timed


class Mismatch(Exception):
    pass


# ---------------------------------------------------------------------- settings
def settings_for(quick: bool, repeat_seconds: float | None) -> dict:
    if quick:
        s = {"quick": True, "repeat_seconds": 0.1, "warmup_seconds": 0.02, "warmup_calls": 2, "min_calls": 3,
             "rounds": 5, "settle_seconds": 0.02, "cold_repeats": 1}
    else:
        s = {"quick": False, "repeat_seconds": 1.0, "warmup_seconds": 0.25, "warmup_calls": 3, "min_calls": 5,
             "rounds": 10, "settle_seconds": 0.1, "cold_repeats": 3}
    if repeat_seconds is not None:
        if not repeat_seconds > 0:
            raise ValueError(f"repeat_seconds must be positive, got {repeat_seconds}")
        s["repeat_seconds"] = float(repeat_seconds)
    return s


def available_cores() -> int:
    from engine import _threads
    return _threads.available_cores()


def parse_threads(spec) -> list:
    """'1,2' or [1, 2] -> [1, 2]; 'all' -> [cores]; None -> [1, cores] (one entry on a one-core machine)."""
    cores = available_cores()
    if spec is None:
        return sorted({1, cores})
    if isinstance(spec, int):
        values = [spec]
    elif isinstance(spec, (list, tuple)):
        values = [int(v) for v in spec]
    else:
        values = []
        for part in str(spec).split(","):
            part = part.strip()
            if not part:
                continue
            if part == "all":
                values.append(cores)
                continue
            try:
                values.append(int(part))
            except ValueError:
                raise ValueError(f"thread counts are positive integers or 'all', got {part!r}") from None
    if not values or any(v < 1 for v in values):
        raise ValueError(f"thread counts must be positive, got {spec!r}")
    too_many = [v for v in values if v > cores]
    if too_many:
        raise ValueError(f"this machine has {cores} core(s) available; cannot run with {too_many} threads")
    return sorted(set(values))


# ---------------------------------------------------------------------- machine
def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:
        return platform.processor() or platform.machine(), []
    model, flags = "", []
    for line in info.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = value.split()
    wanted = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "amx_tile", "asimd", "sve")
    return model or platform.processor() or platform.machine(), [f for f in wanted if f in flags]


def _physical_cores():
    try:
        with open("/proc/cpuinfo") as f:
            pairs, phys = set(), None
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "physical id":
                    phys = value.strip()
                elif key.strip() == "core id":
                    pairs.add((phys, value.strip()))
        return len(pairs) or None
    except OSError:
        return None


def _mem_total_gib():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 ** 2, 1)
    except OSError:
        pass
    return None


def _version(module):
    try:
        return __import__(module).__version__
    except Exception:  # noqa: BLE001 - a missing or odd package is only shown as unknown
        return None


def _git_commit():
    import subprocess
    root = coldstart.project_root()
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return {"commit": head.stdout.strip(), "uncommitted_changes": bool(dirty.stdout.strip())}


def machine_info(threads, peers=PEERS) -> dict:
    import numba
    import onnxruntime
    import torch
    from engine import _cache
    cpu, flags = _cpu_model()
    info = {
        "cpu_model": cpu, "cpu_flags": flags, "logical_cpus": os.cpu_count(), "physical_cores": _physical_cores(),
        "available_cores": available_cores(), "memory_gib": _mem_total_gib(), "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {"lstm-engine": _version("engine"), "numpy": np.__version__, "numba": numba.__version__,
                     "onnxruntime": onnxruntime.__version__, "torch": torch.__version__, "scipy": _version("scipy"),
                     "onnx": _version("onnx"), **{p.name: p.version() for p in peers}},
        "engine_source_hash": _cache.source_hash(), "git": _git_commit(),
        "threads": {"measured": list(threads),
                    "engine": "Session(threads=n)",
                    "onnxruntime": "SessionOptions.intra_op_num_threads = inter_op_num_threads = n, "
                                   "CPUExecutionProvider, other options default",
                    "torch": "torch.set_num_threads(n) before each timed block, torch.inference_mode()",
                    **{p.name: p.settings("n") for p in peers},
                    "numba_num_threads": numba.config.NUMBA_NUM_THREADS,
                    "torch_default_threads": torch.get_num_threads()},
        "load_average_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "blas": _blas_info(),
        "openblas_env": {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ},
    }
    return info


def _blas_info():
    """Which BLAS the engine's matrix products ran on, and which kernel it chose for this CPU (threadpoolctl)."""
    try:
        import scipy.linalg  # noqa: F401  (loads the BLAS that Numba's np.dot calls)
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return [{k: lib.get(k) for k in ("internal_api", "version", "architecture", "filepath", "num_threads")}
            for lib in threadpool_info() if lib.get("user_api") == "blas"]


# ---------------------------------------------------------------------- one point
def _max_diff(ours, ref, names):
    """{name: max abs diff}, inf for a shape mismatch (a NaN stays NaN and fails the check)."""
    out = {}
    for name, a, b in zip(names, ours, ref):
        a = np.asarray(a)
        b = np.asarray(b)
        out[name] = float(np.max(np.abs(a.astype(np.float64) - b))) if a.shape == b.shape else float("inf")
    return out


def _ok(diffs: dict, tol: float) -> bool:
    return all(d <= tol for d in diffs.values())   # NaN compares False: a NaN output fails


def _torch_tensors(*arrays):
    import torch
    return [torch.from_numpy(a) for a in arrays]


def _torch_forward(module, x, states):
    """[output, h_n(, c_n)] of a torch recurrent module; states are tensors (h0, and c0 for an LSTM)."""
    y, st = module(x, tuple(states) if len(states) > 1 else states[0])
    return [y, *(st if isinstance(st, tuple) else (st,))]


@dataclass
class PeerPlan:
    """What a point asks of each peer: the feed that fixes the shapes it is loaded for, the check (its outputs,
    compared with onnxruntime's ``reference``), and the timed call's feed and carried state."""
    load_feed: dict
    check: Callable          # runner -> its outputs, in ``names`` order
    reference: list
    names: list
    timed_feed: Callable     # the peer's checked outputs -> the feed of the timed call
    carry: list = field(default_factory=list)   # (output index, input name): state passed from call to call


def check_peers(peers, onnx_path, threads, plan: PeerPlan, tol) -> tuple:
    """({name: record}, [Contender]): each peer loaded, checked against onnxruntime and, if it matches, made a
    contender. The record says why a peer is not timed: "not installed", "n/a" (cannot use this thread count, or
    failed to load or run the model) or "mismatch" (outputs differ by more than the tolerance)."""
    records, contenders = {}, []
    for peer in peers:
        rec = {"label": peer.label, "version": peer.version(), "status": None, "reason": None}
        records[peer.name] = rec
        if rec["version"] is None:
            rec.update(status="not installed", reason=f"not installed ({peer.install})")
            continue
        why = peer.unsupported_threads(threads)
        if why:
            rec.update(status="n/a", reason=why, short_reason="1 thread only" if threads > 1 else "n/a")
            continue
        rec["settings"] = peer.settings(threads)
        try:
            runner = peer.load(onnx_path, plan.load_feed, threads)
            outs = plan.check(runner)
            diffs = _max_diff(outs, plan.reference, plan.names)
            rec["max_abs_diff"] = diffs
            if not _ok(diffs, tol):
                bad = [f"{out} {d:.3g}" for out, d in diffs.items() if not d <= tol]
                rec.update(status="mismatch", reason=f"outputs differ from onnxruntime by more than {tol:g} "
                                                     f"(max abs diff: {', '.join(bad)}); not timed")
                continue
            call = runner.timed_call(plan.timed_feed(outs), plan.carry)
            call()   # a call that fails here is reported, not left to abort the timing of every runtime
        except Exception as e:  # noqa: BLE001 - a peer that cannot run this model is reported, never fatal
            rec.update(status="n/a", reason=reason_of(e))
            continue
        rec["status"] = "timed"
        contenders.append(Contender(peer.name, call))
    return records, contenders


def _sequence_point(sc, ort_sess, eng, module, threads):
    import torch
    feed = make_inputs(sc)
    names = output_names(sc)
    ref = ort_sess.run(None, feed)
    ours = eng.run(None, feed)
    x_t = torch.from_numpy(feed["input"])
    st_t = _torch_tensors(*(feed[n] for n in sc.state_names))
    with torch.inference_mode():
        theirs = [t.numpy() for t in _torch_forward(module, x_t, st_t)]
    diffs = {"engine": _max_diff(ours, ref, names), "torch": _max_diff(theirs, ref, names)}

    def ort_call():
        ort_sess.run(None, feed)

    def eng_call():
        eng.run(None, feed)

    def torch_call():
        _torch_forward(module, x_t, st_t)

    contenders = [Contender("onnxruntime", ort_call), Contender("engine", eng_call),
                  Contender("torch", torch_call, lambda: torch.set_num_threads(threads))]
    plan = PeerPlan(load_feed=feed, check=lambda runner: runner.run(feed), reference=ref, names=names,
                    timed_feed=lambda outs: feed)
    return diffs, contenders, [("run", "engine")], plan


def _stream_point(sc, ort_sess, eng, module, threads):
    """T=1 per call with the state carried from call to call: onnxruntime, torch and ``session.run`` pass it in and
    out; ``stream.step`` keeps it inside."""
    import torch
    feed = make_inputs(sc, T=STREAM_CHECK_STEPS)
    xs = feed["input"]
    state_names = sc.state_names
    init = [feed[n] for n in state_names]
    names = output_names(sc)

    def carry(run, steps):
        st, ys = init, []
        for t in range(steps):
            y, *st = run({"input": xs[t:t + 1], **dict(zip(state_names, st))})
            ys.append(y)
        return [np.concatenate(ys), *st]

    ref = carry(lambda f: ort_sess.run(None, f), STREAM_CHECK_STEPS)
    ours = carry(lambda f: eng.run(None, f), STREAM_CHECK_STEPS)

    def torch_run(f):
        out = _torch_forward(module, torch.from_numpy(f["input"]), _torch_tensors(*(f[n] for n in state_names)))
        return [t.numpy() for t in out]

    with torch.inference_mode():
        theirs = carry(torch_run, STREAM_CHECK_STEPS)

    stream = eng.stream(batch_size=sc.B)
    suffixes = ["/h", "/c"][:len(state_names)]
    keys = [[k for k in stream.state if k.endswith(sfx)] for sfx in suffixes]   # per state kind, one per layer
    d = sc.directions
    stream.state = {k: s0[i * d:(i + 1) * d] for ks, s0 in zip(keys, init) for i, k in enumerate(ks)}
    ys = [stream.step(xs[t]) for t in range(STREAM_CHECK_STEPS)]
    st = stream.state
    # step returns (B, D*H) without the time axis; stacked: (T, B, D*H) like "output"
    stepped = [np.stack(ys), *(np.concatenate([st[k] for k in ks]) for ks in keys)]
    diffs = {"engine": _max_diff(ours, ref, names), "engine_step": _max_diff(stepped, ref, names),
             "torch": _max_diff(theirs, ref, names)}

    x1 = np.ascontiguousarray(xs[:1])             # (1, B, I): one time step
    x_step = np.ascontiguousarray(xs[0])          # (B, I): the same step without its time axis
    ort_feed = {"input": x1, **dict(zip(state_names, ref[1:]))}
    eng_feed = {"input": x1, **dict(zip(state_names, ours[1:]))}
    x1_t = torch.from_numpy(x1)
    torch_state = [_torch_tensors(*theirs[1:])]

    def ort_call():
        out = ort_sess.run(None, ort_feed)
        for k, v in zip(state_names, out[1:]):
            ort_feed[k] = v

    def eng_call():
        out = eng.run(None, eng_feed)
        for k, v in zip(state_names, out[1:]):
            eng_feed[k] = v

    def step_call():
        stream.step(x_step)

    def torch_call():
        torch_state[0] = _torch_forward(module, x1_t, torch_state[0])[1:]

    contenders = [Contender("onnxruntime", ort_call), Contender("engine", eng_call),
                  Contender("engine_step", step_call),
                  Contender("torch", torch_call, lambda: torch.set_num_threads(threads))]
    # a peer is loaded for one step's shapes, checked over the same steps, then timed with its own state carried
    plan = PeerPlan(load_feed={"input": x1, **dict(zip(state_names, init))},
                    check=lambda runner: carry(runner.run, STREAM_CHECK_STEPS), reference=ref, names=names,
                    timed_feed=lambda outs: {"input": x1, **dict(zip(state_names, outs[1:]))},
                    carry=[(1 + k, n) for k, n in enumerate(state_names)])
    return diffs, contenders, [("run (state in/out)", "engine"), ("stream.step", "engine_step")], plan


def run_point(built, threads: int, settings: dict, peers=PEERS) -> dict:
    import onnxruntime as ort
    import torch

    import engine

    sc: Scenario = built.scenario
    point = {"scenario": sc.name, "kind": sc.kind, "threads": threads,
             "config": {"T": sc.T, "B": sc.B, "I": sc.input_size, "H": sc.H, "layers": sc.layers,
                        "bidirectional": sc.bidirectional, "cell": sc.cell,
                        "inputs": input_names(sc)},
             "flops_per_call": sc.flops_per_call(), "convert_seconds": built.convert_seconds,
             "check": None, "timings": {}, "rows": [], "error": None, "peers": {},
             "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    try:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = threads
        ort_sess = ort.InferenceSession(built.onnx_path, so, providers=["CPUExecutionProvider"])
        t0 = time.perf_counter()
        eng = engine.Session(built.engine_path, threads=threads)
        point["engine_session_seconds"] = time.perf_counter() - t0
        point["engine_compile_seconds"] = eng.compile_seconds
        torch.set_num_threads(threads)
        make = _stream_point if sc.kind == "stream" else _sequence_point
        diffs, contenders, rows, plan = make(sc, ort_sess, eng, built.module, threads)
        tol = sc.tolerance() if sc.kind != "stream" else 1e-5
        ok = all(_ok(d, tol) for d in diffs.values())
        point["check"] = {"reference": "onnxruntime", "tolerance": tol, "max_abs_diff": diffs, "ok": ok}
        if not ok:
            bad = [f"{who} {out} {d:.3g}" for who, per in diffs.items() for out, d in per.items() if not d <= tol]
            raise Mismatch(f"outputs differ from onnxruntime by more than {tol:g} (max abs diff: {', '.join(bad)}); "
                           f"not timed")
        point["peers"], peer_contenders = check_peers(peers, built.onnx_path, threads, plan, tol)
        contenders += peer_contenders
        with torch.inference_mode():
            point["timings"] = measure(contenders, repeat_seconds=settings["repeat_seconds"],
                                       min_calls=settings["min_calls"], warmup_seconds=settings["warmup_seconds"],
                                       warmup_calls=settings["warmup_calls"], rounds=settings["rounds"],
                                       settle_seconds=settings["settle_seconds"] if threads > 1 else 0.0)
        t = point["timings"]
        for name, rec in point["peers"].items():
            if name in t:
                rec["ratio_vs_onnxruntime"] = t["onnxruntime"]["median_s"] / t[name]["median_s"]
        for label, who in rows:
            eng_median = t[who]["median_s"]
            point["rows"].append({
                "variant": label, "engine": who,
                "ratio_vs_onnxruntime": t["onnxruntime"]["median_s"] / eng_median,
                "ratio_vs_torch": t["torch"]["median_s"] / eng_median,
                **{f"ratio_vs_{p.name}": t[p.name]["median_s"] / eng_median if p.name in t else None
                   for p in peers},
                "gflops": {name: sc.flops_per_call() / s["median_s"] / 1e9 for name, s in t.items()},
                "min_ratio": sc.min_ratio, "target_source": sc.target_source, "targets": [], "met": None})
    except Mismatch as e:
        point["error"] = {"kind": "mismatch", "message": str(e)}
    except Exception as e:  # noqa: BLE001 - one failing point is recorded and the others still run
        where = traceback.extract_tb(e.__traceback__)[-1]
        point["error"] = {"kind": "exception", "message": f"{type(e).__name__}: {e}",
                          "where": f"{os.path.basename(where.filename)}:{where.lineno}"}
    return point


# ---------------------------------------------------------------------- targets
def evaluate_targets(points, threads) -> None:
    """Fill each row's ``targets`` (a list of {id, text, met}) and ``met`` (all met; None: no target)."""
    all_cores = max(threads)
    by_key = {(p["scenario"], p["threads"], r["variant"]): r for p in points for r in p["rows"]}
    for p in points:
        for r in p["rows"]:
            targets = []
            ratio = r["ratio_vs_onnxruntime"]
            if r["min_ratio"] is not None:
                targets.append({"id": "min_ratio", "text": f">={r['min_ratio']:g}x",
                                "met": ratio >= r["min_ratio"]})
            if r["engine"] == "engine_step":
                run_row = by_key.get((p["scenario"], p["threads"], "run (state in/out)"))
                if run_row is not None:
                    targets.append({"id": "step_faster_than_run", "text": ">run",
                                    "met": ratio > run_row["ratio_vs_onnxruntime"]})
            if p["threads"] == all_cores and all_cores > 1:
                single = by_key.get((p["scenario"], 1, r["variant"]))
                if single is not None:
                    # within measurement noise: two medians of the same work differ by a few percent run to run
                    targets.append({"id": "all_cores_at_least_single", "text": ">=1T",
                                    "met": ratio >= ALL_CORES_NOISE * single["ratio_vs_onnxruntime"]})
            r["targets"] = targets
            r["met"] = all(t["met"] for t in targets) if targets else None


# ---------------------------------------------------------------------- everything
def default_out_dir() -> str:
    """bench/results in a source checkout; ./lstm-engine-bench elsewhere (an installed package is not a place to
    write results)."""
    here = os.path.dirname(os.path.abspath(__file__))
    if os.path.exists(os.path.join(os.path.dirname(here), "pyproject.toml")):
        return os.path.join(here, "results")
    return os.path.abspath("lstm-engine-bench")


def run_benchmark(patterns=None, threads=None, quick=False, repeat_seconds=None, out_dir=None, progress=True,
                  scenarios=None, cold_scenarios=None, out=None, peers=None) -> tuple:
    """Run the selected scenarios; write the JSON, Markdown and PNG; print the table. Returns (result, exit status):
    1 if any point failed its check or could not run, else 0. Unmet speed targets and peers that could not run do
    not change the status. ``peers``: the peer runtimes (default ``peers.PEERS``; [] for none)."""
    from engine._progress import Progress

    out = out or sys.stdout
    peers = PEERS if peers is None else list(peers)
    settings = settings_for(quick, repeat_seconds)
    threads = parse_threads(threads)
    selected, cold = select(patterns, scenarios, cold_scenarios)
    if not selected and not cold:
        raise ValueError(f"no scenario matches {patterns!r}; the scenarios are "
                         f"{[s.name for s in SCENARIOS] + [c.name for c in COLD_SCENARIOS]}")
    out_dir = out_dir or default_out_dir()
    os.makedirs(out_dir, exist_ok=True)
    result = {"schema": SCHEMA, "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "command": " ".join(sys.argv), "settings": {**settings, "threads": threads,
                                                          "patterns": list(patterns or [])},
              "machine": machine_info(threads, peers),
              "peers": {p.name: {"label": p.label, "version": p.version(), "install": p.install,
                                 "settings": p.settings("n"),
                                 "not_timed_at": {str(n): p.unsupported_threads(n) for n in threads
                                                  if p.unsupported_threads(n)}}
                        for p in peers},
              "notes": ["ratio = onnxruntime median time per call / engine median time per call",
                        "GFLOP/s count the matrix products only: 2*T*B*G*H*(I+H) per direction per layer, G = 4 (LSTM), "
                        "3 (GRU), 1 (RNN)",
                        "streaming calls carry the state from call to call; 'run (state in/out)' passes it through "
                        "session.run as onnxruntime must, 'stream.step' keeps it inside the engine",
                        "peers (OpenVINO, tract) run the same ONNX file, checked against onnxruntime like the engine; "
                        "each point's 'peers' says per peer whether it was timed and, if not, why; a peer's speedup "
                        "over onnxruntime is peers[name].ratio_vs_onnxruntime, the engine's over the peer is "
                        "rows[].ratio_vs_<peer>"],
              "points": [], "cold_start": []}
    # a peer's cold start is measured only when that peer is one of this run's peers
    cold = [c for c in cold if c.runtime in ("engine", "onnxruntime") or c.runtime in {p.name for p in peers}]
    total = len(selected) * len(threads) + coldstart.planned_runs(cold, settings["cold_repeats"], peers)
    bar = Progress(total, "bench", stream=sys.stderr) if progress else None
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lstm-bench-") as workdir:
        for sc in selected:
            try:
                built = build(sc, workdir)
            except Exception as e:  # noqa: BLE001 - recorded per point
                for n in threads:
                    result["points"].append({"scenario": sc.name, "kind": sc.kind, "threads": n, "rows": [],
                                             "timings": {}, "check": None,
                                             "error": {"kind": "exception",
                                                       "message": f"building the model: {type(e).__name__}: {e}"}})
                    if bar:
                        bar.advance(note=f"{sc.name} {n}T FAILED")
                continue
            for n in threads:
                if bar:
                    bar._draw(f"{sc.name} {n}T")
                point = run_point(built, n, settings, peers)
                result["points"].append(point)
                if bar:
                    bar.advance(note=f"{sc.name} {n}T" + (" FAILED" if point["error"] else ""))
            del built
        if cold:
            import onnxruntime as ort
            built = build(COLD_MODEL, workdir)
            feed = make_inputs(COLD_MODEL)
            so = ort.SessionOptions()
            so.intra_op_num_threads = so.inter_op_num_threads = 1
            reference = ort.InferenceSession(built.onnx_path, so, providers=["CPUExecutionProvider"]).run(None, feed)[0]
            result["cold_start"] = coldstart.measure_cold(
                cold, built, feed, reference, COLD_MODEL.tolerance(), repeats=settings["cold_repeats"],
                on_run=(lambda name: bar.advance(note=name)) if bar else None, peers=peers)
    if bar:
        bar.close()
    evaluate_targets(result["points"], threads)
    result["machine"]["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    result["elapsed_seconds"] = time.perf_counter() - t_start
    errors = [f"{p['scenario']} ({p['threads']}T): {p['error']['message']}" for p in result["points"] if p["error"]]
    errors += [f"{c['scenario']}: {c['error']['message']}" for c in result["cold_start"]
               if c["error"] and c["runtime"] in ("engine", "onnxruntime")]   # a peer's failure is only reported
    result["errors"] = errors
    paths = report.write_all(result, out_dir)
    print(report.terminal_table(result), file=out)
    print("\nwrote " + ", ".join(paths), file=out)
    if errors:
        print(f"\n{len(errors)} point(s) FAILED:", file=out)
        for e in errors:
            print("  " + e, file=out)
    return result, (1 if errors else 0)


def main(argv=None) -> int:
    import argparse

    from engine.bench_cli import add_arguments, cmd_bench
    from engine.errors import EngineError
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        return cmd_bench(args)
    except EngineError as e:
        print(f"python -m bench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

