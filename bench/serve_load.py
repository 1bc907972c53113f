"""Load and soak of ``lstm-engine serve`` beside the same V2 server over onnxruntime (bench/ort_v2_server.py, one
InferenceSession per sequence), on 127.0.0.1 only. Bounded: every phase has a time limit, the whole run a deadline,
and both servers are stopped at the end.

    python -m bench.serve_load              # about 6 minutes: 1,000 live sequences, a 150 s soak
    python -m bench.serve_load --quick      # about a minute, 200 live sequences, a 20 s soak

The model is the zoo's character LSTM (engine/data/zoo/charlm.onnx: tokens (T, B), h0, c0 -> logits, h_n, c_n;
Embedding(97, 48) -> LSTM(192) -> Linear(97)), served from the same .onnx file by both servers, each with
``--workers 2`` (one core per worker, kernels single-threaded). Both servers run at once and take turns in every
phase (ROUNDS rounds, ABBA), so that drift on a shared machine hits both alike:

1. check: one whole sequence and one streamed sequence through each server equal onnxruntime's full-sequence run
   in this process (max abs diff <= 1e-4), or nothing is timed;
2. whole sequences: closed loop on CONNECTIONS keep-alive connections, each request 64 tokens with h0/c0 zeros,
   logits back as binary tensor data: requests/s, p50/p99 latency;
3. streaming: LIVE sequences live at once on each server, one token per request (Triton sequence parameters),
   each sequence SEQ_LEN tokens long and replaced by a new one when it ends: steps/s, p50/p99 latency of steps
   and of starts; the servers' RSS sampled throughout;
4. soak (lstm-engine alone, the other server stopped): phase 3 continued for SOAK seconds, RSS sampled against
   the number of finished sequences; then every live sequence is ended, and RSS measured again. Growth per
   finished sequence: RSS over finished sequences, over the whole soak and over its second half (a fitted slope).

The client is a minimal asyncio HTTP/1.1 client in this process (a few tens of µs per request), so that the
servers, not the client, are measured; but client and server share the machine's cores. Writes
bench/results/serve.json and serve.md.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import time
from collections import deque

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "engine", "data", "zoo", "charlm.onnx")
H, VOCAB = 192, 97
CONNECTIONS = 8
ROUNDS = 4            # the servers take turns, ABBA, in this many rounds per phase
WHOLE_T = 64
SEQ_LEN = 50
DEADLINE = 15 * 60          # seconds: the whole run stops by then whatever happens


# ---------------------------------------------------------------------- a minimal HTTP client
class Conn:
    """One keep-alive HTTP/1.1 connection; responses must carry Content-Length (uvicorn's do)."""

    def __init__(self, port):
        self.port = port
        self.reader = self.writer = None

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def post(self, path, body: bytes, header_len: int | None):
        head = f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: {len(body)}\r\n"
        if header_len is not None:
            head += f"inference-header-content-length: {header_len}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        status = int((await self.reader.readline()).split()[1])
        headers = {}
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            k, _, v = line.decode().partition(":")
            headers[k.strip().lower()] = v.strip()
        payload = await self.reader.readexactly(int(headers.get("content-length", 0)))
        return status, headers, payload

    def close(self):
        if self.writer:
            self.writer.close()


def infer_body(inputs: dict, outputs, params=None):
    """(body, header length) of a V2 request with every input as binary tensor data."""
    types = {np.dtype(np.int64): "INT64", np.dtype(np.float32): "FP32"}
    doc = {"inputs": [{"name": n, "shape": list(a.shape), "datatype": types[a.dtype],
                       "parameters": {"binary_data_size": a.nbytes}} for n, a in inputs.items()],
           "outputs": [{"name": o, "parameters": {"binary_data": True}} for o in outputs]}
    if params:
        doc["parameters"] = params
    head = json.dumps(doc).encode()
    return head + b"".join(a.tobytes() for a in inputs.values()), len(head)


def decode(headers, payload, name):
    n = int(headers["inference-header-content-length"])
    doc = json.loads(payload[:n])
    pos = n
    for o in doc["outputs"]:
        size = o["parameters"]["binary_data_size"]
        if o["name"] == name:
            return np.frombuffer(payload[pos:pos + size], np.float32).reshape(o["shape"])
        pos += size
    raise KeyError(name)


# ---------------------------------------------------------------------- servers
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(kind, model, port, live):
    cmd = ([sys.executable, "-m", "engine.cli", "serve"] if kind == "lstm-engine" else
           [sys.executable, "-m", "bench.ort_v2_server"])
    cmd += [model, "--port", str(port), "--workers", "2", "--max-sequences", str(live)]
    env = {**os.environ, "PYTHONPATH": ROOT}
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180          # a first run may compile the executor
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise RuntimeError(f"{kind} server exited: {p.stderr.read()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /v2/health/ready HTTP/1.1\r\nhost: x\r\n\r\n")
                if b" 200 " in s.recv(200):
                    return p
        except OSError:
            time.sleep(0.3)
    p.kill()
    raise RuntimeError(f"{kind} server did not become ready")


def stop_server(p):
    if p.poll() is None:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def rss(pid):
    import psutil
    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return 0


# ---------------------------------------------------------------------- phases
def reference():
    import onnxruntime as ort
    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    return ort.InferenceSession(MODEL, o, providers=["CPUExecutionProvider"])


def zeros_state(B=1):
    return np.zeros((1, B, H), np.float32)


async def check(port, ref, rng):
    """The server's whole-sequence and streamed logits against onnxruntime's full-sequence run."""
    tokens = rng.integers(0, VOCAB, (50, 1)).astype(np.int64)
    want = ref.run(["logits"], {"tokens": tokens, "h0": zeros_state(), "c0": zeros_state()})[0]
    c = await Conn(port).open()
    try:
        body, n = infer_body({"tokens": tokens, "h0": zeros_state(), "c0": zeros_state()}, ["logits"])
        status, headers, payload = await c.post("/v2/models/charlm/infer", body, n)
        assert status == 200, payload[:300]
        whole = float(np.abs(decode(headers, payload, "logits") - want).max())
        steps = []
        for t in range(len(tokens)):
            params = {"sequence_id": 999_999, "sequence_start": t == 0, "sequence_end": t == len(tokens) - 1}
            body, n = infer_body({"tokens": tokens[t:t + 1]}, ["logits"], params)
            status, headers, payload = await c.post("/v2/models/charlm/infer", body, n)
            assert status == 200, payload[:300]
            steps.append(decode(headers, payload, "logits"))
        streamed = float(np.abs(np.concatenate(steps) - want).max())
    finally:
        c.close()
    return {"whole_max_abs_diff": whole, "streamed_max_abs_diff": streamed}


def summarize(lat, seconds):
    lat = np.asarray(lat) * 1e3
    return {"requests": int(lat.size), "seconds": round(seconds, 2), "requests_per_s": round(lat.size / seconds, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 3) if lat.size else None,
            "p99_ms": round(float(np.percentile(lat, 99)), 3) if lat.size else None}


async def whole_sequences(port, seconds, body, n):
    """Closed loop for ``seconds``; returns (latencies, errors, elapsed seconds)."""
    lat, errors = [], 0
    stop = time.perf_counter() + seconds

    async def loop():
        nonlocal errors
        c = await Conn(port).open()
        try:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                status, _, _ = await c.post("/v2/models/charlm/infer", body, n)
                lat.append(time.perf_counter() - t0)
                errors += status != 200
        finally:
            c.close()

    t0 = time.perf_counter()
    await asyncio.gather(*[loop() for _ in range(CONNECTIONS)])
    return lat, errors, time.perf_counter() - t0


class Streaming:
    """LIVE sequences kept live: a queue of sequences waiting for their next step; CONNECTIONS loops each take the
    next one, send its step, and put it back (or, after its last step, a fresh sequence in its place)."""

    def __init__(self, port, live, rng):
        self.port, self.live, self.rng = port, live, rng
        self.next_id = 1
        self.ready = deque(self._new() for _ in range(live))
        self.finished = 0
        self.errors = 0
        self.step_lat, self.start_lat = [], []

    def _new(self):
        sid = self.next_id
        self.next_id += 1
        return [sid, 0, self.rng.integers(0, VOCAB, (SEQ_LEN, 1, 1)).astype(np.int64)]

    async def run(self, seconds):
        """Step sequences for ``seconds``."""
        stop = time.perf_counter() + seconds

        async def loop():
            c = await Conn(self.port).open()
            try:
                while time.perf_counter() < stop:
                    seq = self.ready.popleft()
                    sid, t, tokens = seq
                    last = t == SEQ_LEN - 1
                    body, n = infer_body({"tokens": tokens[t]}, ["logits"],
                                         {"sequence_id": sid, "sequence_start": t == 0, "sequence_end": last})
                    t0 = time.perf_counter()
                    status, _, _ = await c.post("/v2/models/charlm/infer", body, n)
                    (self.start_lat if t == 0 else self.step_lat).append(time.perf_counter() - t0)
                    self.errors += status != 200
                    if last:
                        self.finished += 1
                        self.ready.append(self._new())
                    else:
                        seq[1] = t + 1
                        self.ready.append(seq)
            finally:
                c.close()

        t0 = time.perf_counter()
        await asyncio.gather(*[loop() for _ in range(CONNECTIONS)])
        return time.perf_counter() - t0

    def reset_latencies(self):
        self.step_lat, self.start_lat = [], []

    async def end_all(self):
        """Send every started sequence its last step (sequence_end)."""
        started = [seq for seq in self.ready if seq[1] > 0]
        self.ready.clear()

        async def loop(mine):
            c = await Conn(self.port).open()
            try:
                for sid, t, tokens in mine:
                    body, n = infer_body({"tokens": tokens[t]}, ["logits"], {"sequence_id": sid, "sequence_end": True})
                    status, _, _ = await c.post("/v2/models/charlm/infer", body, n)
                    self.errors += status != 200
                    self.finished += 1
            finally:
                c.close()

        await asyncio.gather(*[loop(started[k::CONNECTIONS]) for k in range(CONNECTIONS)])


async def sample_rss(pid, stream, samples, every, t_start):
    while True:
        samples.append({"t": round(time.perf_counter() - t_start, 1), "rss_mib": round(rss(pid) / 2**20, 1),
                        "finished_sequences": stream.finished if stream else 0})
        await asyncio.sleep(every)


def _order(kinds, r):
    """ABBA...: the servers take turns, each round starting with the other one."""
    return kinds if r % 2 == 0 else kinds[::-1]


async def measure(servers, args, ref):
    """Every phase on every server, interleaved in rounds so that machine drift hits both alike."""
    rng = np.random.default_rng(7)
    kinds = list(servers)
    out = {k: {"server": k, "rss_mib_loaded": round(rss(servers[k][1].pid) / 2**20, 1)} for k in kinds}
    for k in kinds:
        out[k]["check"] = await check(servers[k][0], ref, rng)
        if not all(v <= 1e-4 for v in out[k]["check"].values()):
            raise SystemExit(f"{k}: outputs differ from onnxruntime ({out[k]['check']}); not timing it")

    tokens = rng.integers(0, VOCAB, (WHOLE_T, 1)).astype(np.int64)
    body, n = infer_body({"tokens": tokens, "h0": zeros_state(), "c0": zeros_state()}, ["logits"])
    acc = {k: ([], 0, 0.0) for k in kinds}
    for r in range(ROUNDS):
        for k in _order(kinds, r):
            lat, errors, seconds = await whole_sequences(servers[k][0], args.whole_seconds / ROUNDS, body, n)
            a = acc[k]
            acc[k] = (a[0] + lat, a[1] + errors, a[2] + seconds)
    for k, (lat, errors, seconds) in acc.items():
        out[k]["whole_sequences"] = {**summarize(lat, seconds), "errors": errors}

    streams = {k: Streaming(servers[k][0], args.live, rng) for k in kinds}
    samples = {k: [] for k in kinds}
    t_start = time.perf_counter()
    samplers = [asyncio.create_task(sample_rss(servers[k][1].pid, streams[k], samples[k], 1.0, t_start))
                for k in kinds]
    elapsed = dict.fromkeys(kinds, 0.0)
    for r in range(ROUNDS):
        for k in _order(kinds, r):
            elapsed[k] += await streams[k].run(args.stream_seconds / ROUNDS)
    for t in samplers:
        t.cancel()
    for k in kinds:
        stream = streams[k]
        st = summarize(stream.step_lat, elapsed[k])
        st["steps_per_s"] = st.pop("requests_per_s")
        st["steps"] = st.pop("requests")
        st["starts"] = summarize(stream.start_lat, elapsed[k])
        st["live_sequences"] = args.live
        st["errors"] = stream.errors
        st["rss_mib_max"] = max(s["rss_mib"] for s in samples[k])
        out[k]["streaming"] = st
    for k in kinds:
        if k != "lstm-engine" or args.soak_seconds <= 0:
            await streams[k].end_all()
            await asyncio.sleep(1)
            out[k]["rss_mib_after_all_ended"] = round(rss(servers[k][1].pid) / 2**20, 1)
            stop_server(servers[k][1])     # the soak runs alone
    if "lstm-engine" in kinds and args.soak_seconds > 0:
        out["lstm-engine"]["soak"] = await soak(servers["lstm-engine"][1].pid, streams["lstm-engine"], args)
    return [out[k] for k in kinds]


async def soak(pid, stream, args):
    """The streaming load continued for args.soak_seconds, RSS sampled against finished sequences; then every
    live sequence ended."""
    samples = []
    sampler = asyncio.create_task(sample_rss(pid, stream, samples, 2.0, time.perf_counter()))
    stream.reset_latencies()
    before = rss(pid)
    finished0, errors0 = stream.finished, stream.errors
    seconds = await stream.run(args.soak_seconds)
    sampler.cancel()
    steps, starts = len(stream.step_lat), len(stream.start_lat)
    await stream.end_all()
    await asyncio.sleep(3)
    after = rss(pid)
    half = [s for s in samples if s["t"] >= samples[-1]["t"] / 2]
    f = np.array([s["finished_sequences"] for s in half], float)
    r = np.array([s["rss_mib"] for s in half], float) * 2**20
    slope = float(np.polyfit(f, r, 1)[0]) if len(half) > 2 and np.ptp(f) > 0 else None
    return {"seconds": round(seconds, 1), "steps": steps, "starts": starts,
            "finished_sequences": stream.finished - finished0, "errors": stream.errors - errors0,
            "steps_per_s": round(steps / seconds, 1),
            "step_p50_ms": round(float(np.percentile(stream.step_lat, 50)) * 1e3, 3),
            "step_p99_ms": round(float(np.percentile(stream.step_lat, 99)) * 1e3, 3),
            "rss_mib_before": round(before / 2**20, 1),
            "rss_mib_during_min": min(s["rss_mib"] for s in samples),
            "rss_mib_during_max": max(s["rss_mib"] for s in samples),
            "rss_mib_after_all_ended": round(after / 2**20, 1),
            "rss_bytes_per_finished_sequence_second_half": None if slope is None else round(slope, 1),
            "rss_bytes_per_finished_sequence_whole_soak": round(
                (samples[-1]["rss_mib"] - samples[0]["rss_mib"]) * 2**20
                / max(samples[-1]["finished_sequences"] - samples[0]["finished_sequences"], 1), 1),
            "samples": samples}


# ---------------------------------------------------------------------- report
def table(results):
    rows = ["| server | whole sequences (64 tokens): req/s, p50 / p99 | streaming, {live} live: steps/s, p50 / p99 "
            "| sequence start: p50 / p99 | RSS loaded / max while streaming |".format(live=results["live"]),
            "|---|---|---|---|---|"]
    for r in results["servers"]:
        w, s = r["whole_sequences"], r["streaming"]
        rows.append(f"| {r['server']} | {w['requests_per_s']:.0f}, {w['p50_ms']:.2f} / {w['p99_ms']:.2f} ms "
                    f"| {s['steps_per_s']:.0f}, {s['p50_ms']:.2f} / {s['p99_ms']:.2f} ms "
                    f"| {s['starts']['p50_ms']:.2f} / {s['starts']['p99_ms']:.2f} ms "
                    f"| {r['rss_mib_loaded']:.0f} / {s['rss_mib_max']:.0f} MiB |")
    soak = next((r["soak"] for r in results["servers"] if "soak" in r), None)
    if soak:
        slope = soak["rss_bytes_per_finished_sequence_second_half"]
        rows += ["", f"Soak (lstm-engine, {soak['seconds']:.0f} s, {results['live']} live sequences, "
                     f"{soak['finished_sequences']} sequences finished, {soak['steps_per_s']:.0f} steps/s, "
                     f"{soak['errors']} errors): RSS {soak['rss_mib_before']:.0f} MiB before, "
                     f"{soak['rss_mib_during_min']:.0f}-{soak['rss_mib_during_max']:.0f} MiB during, "
                     f"{soak['rss_mib_after_all_ended']:.0f} MiB after every sequence ended; "
                     f"growth per finished sequence: "
                     f"{soak['rss_bytes_per_finished_sequence_whole_soak']:.0f} bytes over the soak, "
                     + ("n/a" if slope is None else f"{slope:.0f} bytes") + " over its second half."]
    return "\n".join(rows)


def machine():
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform()}


async def main_async(args):
    import onnxruntime
    ref = reference()
    results = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(), "model": "zoo charlm.onnx",
               "onnxruntime": onnxruntime.__version__, "live": args.live, "connections": CONNECTIONS,
               "seq_len": SEQ_LEN, "whole_tokens": WHOLE_T, "workers": 2, "servers": []}
    results["load_average_at_start"] = os.getloadavg()
    servers = {}
    try:
        for kind in args.servers:
            port = free_port()
            servers[kind] = (port, start_server(kind, MODEL, port, args.live))
            print(f"{kind}: serving on 127.0.0.1:{port} (pid {servers[kind][1].pid})", flush=True)
        results["servers"] = await measure(servers, args, ref)
    finally:
        for _, p in servers.values():
            stop_server(p)
    results["load_average_at_end"] = os.getloadavg()
    for r in results["servers"]:
        print(json.dumps({k: v for k, v in r.items() if k != "soak"}), flush=True)
        if "soak" in r:
            print(json.dumps({k: v for k, v in r["soak"].items() if k != "samples"}), flush=True)
    return results


def main(argv=None):
    global SEQ_LEN
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="200 live sequences, short phases, a 20 s soak")
    p.add_argument("--servers", default="lstm-engine,onnxruntime", help="which servers (comma-separated)")
    p.add_argument("--live", type=int, default=None, help="live sequences (default 1000; --quick 200)")
    p.add_argument("--seq-len", type=int, default=SEQ_LEN, help=f"tokens per sequence (default {SEQ_LEN})")
    p.add_argument("--soak-seconds", type=float, default=None, help="soak length (default 150; --quick 20)")
    p.add_argument("--name", default="serve", help="results file names: NAME.json, NAME.md (default: serve)")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = p.parse_args(argv)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    live, args.whole_seconds, args.stream_seconds, soak = (200, 5, 8, 20) if args.quick else (1000, 20, 30, 150)
    args.live = args.live or live
    args.soak_seconds = soak if args.soak_seconds is None else args.soak_seconds
    SEQ_LEN = args.seq_len
    random.seed(0)

    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    results = asyncio.run(asyncio.wait_for(main_async(args), DEADLINE))   # the servers are stopped on timeout too
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, args.name + ".json"), "w") as f:
        json.dump(results, f, indent=1)
    md = table(results)
    m = results["machine"]
    with open(os.path.join(args.out, args.name + ".md"), "w") as f:
        f.write(f"# lstm-engine serve vs onnxruntime behind the same V2 server\n\n{results['date']}, {m['cpu']}, "
                f"{m['logical_cpus']} logical CPUs (shared with other work), onnxruntime {results['onnxruntime']}; "
                f"zoo charlm (LSTM 192), 2 workers per server, {CONNECTIONS} client connections (closed loop), "
                f"binary tensors, loopback.\n\n{md}\n")
    print(md)


if __name__ == "__main__":
    main()
