"""Interleaved timing of several contenders (engine, onnxruntime, torch) on the same work.

Every contender is warmed up, then timed in blocks, round robin: in each round every contender runs one block of
calls (about 1/``rounds`` of the time budget), the starting contender rotating from round to round, so that drift
of the machine (other processes, clock changes) hits all of them alike. A contender stops once it has been timed
for ``repeat_seconds`` and at least ``min_calls`` calls. Each call is timed on its own (perf_counter around it), so
that the median and p90 are per call. The garbage collector is off during a block, as in ``timeit``.

``settle_seconds`` is a pause before each block. Thread pools spin for a while after their last task before they
sleep (OpenBLAS up to ~2^28 cycles, ~0.1 s; onnxruntime's and OpenMP's pools less): without a pause, the pool of
the contender that just ran would keep a core busy while the next one runs with several threads, an artefact of
running the runtimes in one process that a user of only one of them never sees.
"""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass
class Contender:
    name: str
    call: Callable[[], object]                    # one call: the unit that is timed
    activate: Callable[[], None] | None = None    # before each block (torch's process-wide thread count)


def measure(contenders, repeat_seconds: float = 1.0, min_calls: int = 5, warmup_seconds: float = 0.25,
            warmup_calls: int = 3, rounds: int = 10, settle_seconds: float = 0.0) -> dict:
    """{name: per-call statistics} for each contender; see ``summarise``."""
    perf = time.perf_counter
    for c in contenders:
        if c.activate:
            c.activate()
        calls = 0
        start = perf()
        while calls < warmup_calls or perf() - start < warmup_seconds:
            c.call()
            calls += 1
    block_seconds = repeat_seconds / rounds
    samples = {c.name: [] for c in contenders}
    spent = {c.name: 0.0 for c in contenders}
    blocks = {c.name: 0 for c in contenders}

    def done(c):
        return spent[c.name] >= repeat_seconds and len(samples[c.name]) >= min_calls

    r = 0
    while not all(done(c) for c in contenders):
        k = r % len(contenders)
        for c in contenders[k:] + contenders[:k]:
            if done(c):
                continue
            if settle_seconds > 0:
                time.sleep(settle_seconds)
            if c.activate:
                c.activate()
            out = samples[c.name]
            call = c.call
            block = 0.0
            gc_was_on = gc.isenabled()
            gc.disable()
            try:
                # the block ends on time, not on a count from the warm-up: a machine that slows down mid-way
                # (other processes) cannot stretch one block into minutes
                while block < block_seconds:
                    t0 = perf()
                    call()
                    dt = perf() - t0
                    out.append(dt)
                    block += dt
            finally:
                if gc_was_on:
                    gc.enable()
            spent[c.name] += block
            blocks[c.name] += 1
        r += 1
    result = {name: summarise(s) for name, s in samples.items()}
    for c in contenders:
        result[c.name]["blocks"] = blocks[c.name]
    return result


def summarise(seconds) -> dict:
    s = np.asarray(seconds, dtype=np.float64)
    return {"calls": int(s.size), "total_s": float(s.sum()), "median_s": float(np.median(s)),
            "p90_s": float(np.percentile(s, 90)), "mean_s": float(s.mean()), "min_s": float(s.min()),
            "max_s": float(s.max())}
