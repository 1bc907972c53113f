"""What this machine allows: measured bandwidth and multiply-add rates, and from them a floor under every benchmark
point, so that a missed speed target can be told apart from a bound no implementation can pass.

    python -m bench.limits [--bench bench/results/latest.json] [--reduced bench/results/reduced.json]
                           [--out bench/results/limits.json] [--quick]

Measured on one core, with the engine's own register tiles (engine/ops/tiles.py, the fastest loops it has):

- read bandwidth by working-set size: one row, and four, against a matrix read once per pass (the faster of the
  two: one row streams L1 and L2 best, four rows L3), passes repeated so that a matrix that fits a cache is read from
  that cache (L1 48 KiB, L2 1 MiB, L3 beyond, on the Zen 5 this was written on), every other pass backwards: a
  pass then starts on what the one before read last, still in the cache, as the engine's recurrence does (a set
  the size of a cache reads ~10% faster so);
- float32 multiply-adds: the 6-row, 4-block tile on weights that stay in L1;
- int8 multiply-adds (vpdpbusd where the CPU has AVX512-VNNI): the 4-row int8 tile, weights in L1;
- and, to show how close the tiles come to the core itself, the rate of 512-bit FMAs (and vpdpbusd) with no memory
  access at all: sixteen independent chains in registers, in LLVM IR of our own (on this Zen 5, one per cycle).

The floor of a point counts only what no implementation avoids, per direction: every multiply-add (the input
projection's T*B rows against W and every step's B rows against R) at the tiles' rate, and every byte that must be
read (W once, R every step) at the bandwidth of its size per core; with n threads each core does 1/n of both. The
two overlap: the memory-bound recurrence leaves the FMA unit idle, and the engine's batch-1 kernel fills it with
the input projection (lstm_direction_pipelined: one thread, T=100 H=128, 11% faster), so the floor is the larger
of the two, not their sum (used here until 2026-11-26: an implementation that overlaps them can pass it). A stream
call (T=1) reads W and R once per call. The gates' activations, barriers and per-call costs are left out, so a
floor is a lower bound: the ceiling ``onnxruntime time / floor`` is the highest ratio any implementation could
reach against that onnxruntime time, and a target above it is excluded by the machine. A time below its floor
means the floor is a few percent off (the measured bandwidth is what the tiles reach, and it varies by a few
percent from run to run): the table flags it, and a ceiling within 5% of a target decides nothing (verdict "at the
floor, within its margin").
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

GATES = {"lstm": 4, "gru": 3, "rnn": 1}
SIZES_KIB = (16, 32, 64, 128, 256, 384, 512, 768, 1024, 1536, 2048, 4096, 8192, 16384)
WEIGHT_BYTES = {"float32": 4, "bfloat16": 2, "int8": 1}

# issue 11's targets: (scenario, threads, timing) -> ratio against onnxruntime at the same thread count
TARGETS = {
    ("seq/T100/H128", 1, "engine"): 1.1, ("seq/T100/H256", 1, "engine"): 1.1, ("seq/T100/H512", 1, "engine"): 1.1,
    ("seq/T100/H256", 2, "engine"): 1.2, ("seq/T100/H512", 2, "engine"): 1.2,
    ("batch/B32/H256", 1, "engine"): 1.0, ("batch/B32/H256", 2, "engine"): 1.0,
    ("batch/B64/H512", 1, "engine"): 1.0, ("batch/B64/H512", 2, "engine"): 1.0,
    ("stream/H64", 1, "engine"): 2.5, ("stream/H128", 1, "engine"): 2.5,
    ("stream/H64", 1, "engine_step"): 3.0, ("stream/H128", 1, "engine_step"): 3.0,
    ("stream/H512", 1, "engine_step"): 1.3,
}
MARGIN = 0.05      # run-to-run spread of the measured bandwidth: a ceiling this close to a target decides nothing
REDUCED_TARGETS = {"int8": ("ort_int8", 1.2), "bfloat16": ("ort_float32", 1.5)}   # H=256 and 512; bf16 at 512


# ---------------------------------------------------------------------- measuring
def _best(fn, seconds):
    """The fastest of repeated timings of ``fn()``, each repeat ~seconds / 5."""
    fn()
    best = math.inf
    deadline = time.perf_counter() + seconds
    while True:
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        if time.perf_counter() > deadline:
            return best


def measure(seconds: float = 0.25, sizes_kib=SIZES_KIB) -> dict:
    """{"bandwidth_gbs": {KiB: GB/s}, "float32_gflops": ..., "int8_gmacs": ..., "vnni": bool, "fma16_per_s": ...,
    "vpdpbusd_per_s": ... (None without VNNI)} for one core."""
    from numba import njit

    from engine.ops.tiles import VNNI, tile_product
    f1, f4, f6, i4 = (tile_product("float", 1), tile_product("float", 4), tile_product("float", 6),
                      tile_product("int8", 4))

    @njit(cache=False)
    def read_rows(n, acc, W, x, K, groups):        # one row against W (K rows of 64 floats per group), n passes,
        for i in range(n):                         # every other one backwards (as the engine's recurrence)
            for k in range(groups):
                g = groups - 1 - k if i % 2 else k
                f1(acc, g * 64, 0, W, g * K * 256, x, 0, 0, K, 256)

    @njit(cache=False)
    def read_rows4(n, acc, W, x, K, groups):       # the same with four rows
        for i in range(n):
            for k in range(groups):
                g = groups - 1 - k if i % 2 else k
                f4(acc, g * 64, groups * 64, W, g * K * 256, x, 0, K, K, 256)

    @njit(cache=False)
    def float_tile(n, acc, W, x, K):               # 6 rows x 64 columns, W (K, 64) in L1
        for _ in range(n):
            f6(acc, 0, 64, W, 0, x, 0, K, K, 256)

    @njit(cache=False)
    def int8_tile(n, acc, Q, x4, nk):              # 4 rows x 64 columns, Q (nk quads, 64) in L1
        for _ in range(n):
            i4(acc, 0, 64, Q, 0, x4, 0, nk, nk, 256)

    rng = np.random.default_rng(0)
    K = 64
    bandwidth = {}
    for kib in sizes_kib:
        groups = max(1, kib * 1024 // (K * 256))
        W = rng.standard_normal(groups * K * 64).astype(np.float32)
        acc, x = np.zeros(4 * groups * 64, np.float32), rng.standard_normal(4 * K).astype(np.float32)
        n = max(4, int(64e6 // W.nbytes))
        t = min(_best(lambda: read_rows(n, acc, W, x, K, groups), seconds),
                _best(lambda: read_rows4(n, acc, W, x, K, groups), seconds))
        bandwidth[kib] = W.nbytes * n / t / 1e9
    W = rng.standard_normal(K * 64).astype(np.float32)            # 16 KiB
    acc, x = np.zeros(6 * 64, np.float32), rng.standard_normal(6 * K).astype(np.float32)
    n = 20000
    t = _best(lambda: float_tile(n, acc, W, x, K), seconds)
    gflops = 2 * 6 * 64 * K * n / t / 1e9
    nk = 64
    Q = rng.integers(-127, 128, nk * 256, dtype=np.int8)          # 16 KiB
    iacc, x4 = np.zeros(4 * 64, np.int32), rng.integers(0, 2 ** 31, 4 * nk).astype(np.int32)
    t = _best(lambda: int8_tile(n, iacc, Q, x4, nk), seconds)
    gmacs = 4 * 64 * 4 * nk * n / t / 1e9
    return {"bandwidth_gbs": bandwidth, "float32_gflops": gflops, "int8_gmacs": gmacs, "vnni": bool(VNNI),
            "fma16_per_s": register_peak("fma", seconds),
            "vpdpbusd_per_s": register_peak("vpdpbusd", seconds) if VNNI else None}


def register_peak(kind: str, seconds: float) -> float:
    """Instructions per second of ``kind`` ("fma": 512-bit float FMA, "vpdpbusd") on sixteen independent
    accumulators that never leave registers: the core's own rate, no load or store in the loop."""
    import ctypes

    import llvmlite.binding as llvm
    import llvmlite.ir as ir
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    vt = ir.VectorType(ir.FloatType(), 16) if kind == "fma" else ir.VectorType(ir.IntType(32), 16)
    mod = ir.Module(name="peak")
    i64 = ir.IntType(64)
    fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), [i64, vt.as_pointer()]), name="peak")
    op = ir.Function(mod, ir.FunctionType(vt, [vt, vt, vt]),
                     name="llvm.fma.v16f32" if kind == "fma" else "llvm.x86.avx512.vpdpbusd.512")

    def splat(v):
        return ir.Constant(vt, [v] * 16)

    a, c = (splat(0.999), splat(0.001)) if kind == "fma" else (splat(0x01010101), splat(0x02020202))
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    entry, loop, done = b.block, fn.append_basic_block("loop"), fn.append_basic_block("done")
    b.branch(loop)
    b.position_at_end(loop)
    i = b.phi(i64)
    i.add_incoming(ir.Constant(i64, 0), entry)
    sums = []
    for k in range(16):
        s = b.phi(vt)
        s.add_incoming(splat(1.0 + k) if kind == "fma" else splat(k), entry)
        sums.append(s)
    new = [b.call(op, [s, a, c]) for s in sums]
    nxt = b.add(i, ir.Constant(i64, 1))
    i.add_incoming(nxt, loop)
    for s, v in zip(sums, new):
        s.add_incoming(v, loop)
    b.cbranch(b.icmp_unsigned("<", nxt, fn.args[0]), loop, done)
    b.position_at_end(done)
    total = new[0]
    for v in new[1:]:
        total = b.fadd(total, v) if kind == "fma" else b.add(total, v)
    b.store(total, fn.args[1], align=4)      # the sums are used: nothing is optimised away
    b.ret_void()
    machine = llvm.Target.from_default_triple().create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=2)
    module = llvm.parse_assembly(str(mod))
    module.verify()
    jit = llvm.create_mcjit_compiler(module, machine)
    jit.finalize_object()
    run = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_void_p)(jit.get_function_address("peak"))
    out = ctypes.create_string_buffer(64)
    n = 2_000_000
    t = _best(lambda: run(n, ctypes.addressof(out)), seconds)
    return 16 * n / t


# ---------------------------------------------------------------------- floors
def bandwidth_at(limits: dict, nbytes: float) -> float:
    """GB/s for a working set of ``nbytes``: that of the largest measured size not above it (the faster side, so
    that a floor stays a lower bound), the smallest size's below the first; and no less than any larger size's (a
    working set read at some rate can be read at least as fast when it is smaller: this irons out a measurement
    that a busy neighbour on the shared L3 pulled down)."""
    table = sorted((int(k), v) for k, v in limits["bandwidth_gbs"].items())
    at = max([i for i, (k, _) in enumerate(table) if k * 1024 <= nbytes], default=0)
    return max(v for _, v in table[at:]) * 1e9


def floor_seconds(config: dict, threads: int, limits: dict, weights: str = "float32") -> float:
    """The floor of one call (module docstring) for a benchmark ``config`` (T, B, I, H, layers, bidirectional,
    cell) on ``threads`` cores, weights stored as ``weights``."""
    T, B, I, H = config["T"], config["B"], config["I"], config["H"]
    D = 2 if config.get("bidirectional") else 1
    G = GATES[config.get("cell", "lstm")] * H
    wb = WEIGHT_BYTES[weights]
    rate = limits["int8_gmacs"] * 1e9 if weights == "int8" else limits["float32_gflops"] / 2 * 1e9   # MAC/s
    n = threads
    total = 0.0
    for layer in range(config.get("layers", 1)):
        K = I if layer == 0 else D * H
        for _ in range(D):
            w, r = G * K * wb / n, G * H * wb / n
            if T == 1:          # a stream call: W and R both read again every call
                bw = bandwidth_at(limits, w + r)
                total += max((w + r) / bw, B * (K + H) * G / n / rate)
                continue
            compute = T * B * (K + H) * G / n / rate
            memory = w / bandwidth_at(limits, w) + T * r / bandwidth_at(limits, r)
            total += max(compute, memory)
    return total


def _row(name, threads, timing, ort_s, engine_s, floor_s, target):
    ceiling = ort_s / floor_s
    row = {"point": name, "threads": threads, "timing": timing, "onnxruntime_us": ort_s * 1e6,
           "engine_us": engine_s * 1e6, "floor_us": floor_s * 1e6, "ratio": ort_s / engine_s, "ceiling": ceiling,
           "target": target, "engine_over_floor": engine_s / floor_s,
           "below_floor": [who for who, s in (("onnxruntime", ort_s), ("engine", engine_s)) if s < floor_s]}
    if target is not None:
        row["verdict"] = ("met" if row["ratio"] >= target else
                          "excluded by the floor" if ceiling * (1 + MARGIN) < target else
                          "at the floor, within its margin" if ceiling * (1 - MARGIN) <= target else
                          "not excluded by the floor")
    return row


def table(bench: dict | None, reduced: dict | None, limits: dict) -> list:
    """One row per timed engine figure of the bench JSON (run and step) and per reduced-precision row."""
    rows = []
    for p in (bench or {}).get("points", []):
        t = p.get("timings") or {}
        ort = (t.get("onnxruntime") or {}).get("median_s")
        if not ort:
            continue
        for timing in ("engine", "engine_step"):
            e = (t.get(timing) or {}).get("median_s")
            if e:
                rows.append(_row(p["scenario"], p["threads"], timing, ort, e,
                                 floor_seconds(p["config"], p["threads"], limits),
                                 TARGETS.get((p["scenario"], p["threads"], timing))))
    for r in (reduced or {}).get("rows", []):
        config = {"T": r["T"], "B": r["B"], "I": r["I"], "H": r["H"], "cell": "lstm"}
        for weights, (against, target) in REDUCED_TARGETS.items():
            if weights == "bfloat16" and r["H"] != 512:
                target = None
            ort, e = r["median_us"].get(against), r["median_us"].get(f"engine_{weights}")
            if ort and e:
                rows.append(_row(f"{r['name']} {weights} vs {against}", r["threads"], "engine", ort / 1e6, e / 1e6,
                                 floor_seconds(config, r["threads"], limits, weights), target))
    return rows


def _of_peak(rate_g, per_instruction, peak_per_s, what):
    """" (97% of the core's 3.67 G 16-lane FMAs/s from registers)" for a tile rate against the register peak."""
    if not peak_per_s:
        return ""
    return (f" ({100 * rate_g * 1e9 / (per_instruction * peak_per_s):.0f}% of the core's {peak_per_s / 1e9:.2f} G "
            f"16-lane {what}/s from registers)")


def markdown(limits: dict, rows: list, machine: str) -> str:
    bw = limits["bandwidth_gbs"]
    fma = _of_peak(limits["float32_gflops"], 32, limits.get("fma16_per_s"), "FMAs")
    dp = _of_peak(limits["int8_gmacs"], 64, limits.get("vpdpbusd_per_s"), "vpdpbusd") if limits["vnni"] else \
        " (no VNNI)"
    lines = [f"Machine limits ({machine}), one core: read bandwidth "
             + ", ".join(f"{k} KiB {v:.0f}" for k, v in bw.items()) + " GB/s; "
             f"float32 tiles {limits['float32_gflops']:.0f} GFLOP/s{fma}; "
             f"int8 tiles {limits['int8_gmacs']:.0f} G multiply-adds/s{dp}.",
             "",
             "| point | threads | timing | onnxruntime us | engine us | floor us | ratio | ceiling | target "
             "| verdict |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        flag = f" ({' and '.join(r['below_floor'])} below the floor)" if r["below_floor"] else ""
        target = "" if r["target"] is None else f"{r['target']:.1f}x"
        lines.append(f"| {r['point']} | {r['threads']} | {r['timing'].replace('engine_step', 'step')} | "
                     f"{r['onnxruntime_us']:.1f} | {r['engine_us']:.1f} | {r['floor_us']:.1f} | "
                     f"{r['ratio']:.2f}x | {r['ceiling']:.2f}x | "
                     f"{target} | {r.get('verdict', '')}{flag} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    ap = argparse.ArgumentParser(prog="python -m bench.limits", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", default=os.path.join(here, "latest.json"),
                    help="the bench JSON whose points get floors (python -m bench writes it)")
    ap.add_argument("--reduced", default=os.path.join(here, "reduced.json"),
                    help="the reduced-precision JSON (python -m bench.reduced); missing files are skipped")
    ap.add_argument("--out", default=os.path.join(here, "limits.json"),
                    help="where the limits and the table go (JSON; the table also as .md beside it)")
    ap.add_argument("--quick", action="store_true", help="shorter timing (a smoke run; figures are noisier)")
    args = ap.parse_args(argv)

    def read(path):
        if not os.path.exists(path):
            print(f"{path}: not found, skipped", file=sys.stderr)
            return None
        with open(path) as f:
            return json.load(f)

    bench, reduced = read(args.bench), read(args.reduced)
    limits = measure(0.05 if args.quick else 0.25, SIZES_KIB[::3] if args.quick else SIZES_KIB)
    rows = table(bench, reduced, limits)
    import platform
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs"
    try:
        with open("/proc/cpuinfo") as f:
            name = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), None)
        machine = f"{name}, {os.cpu_count()} logical CPUs" if name else machine
    except OSError:
        pass
    md = markdown(limits, rows, machine)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"machine": machine, "created": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                   "bench": args.bench if bench else None, "reduced": args.reduced if reduced else None,
                   "limits": limits, "rows": rows}, f, indent=1)
    with open(os.path.splitext(args.out)[0] + ".md", "w") as f:
        f.write(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
