"""``lstm-engine bench``: the side-by-side benchmark against onnxruntime and torch (the harness lives in ``bench/``).

The options are defined here, so that ``lstm-engine --help`` works without the harness or its dependencies; the
harness (and torch, onnxruntime, matplotlib) is imported only when the command runs. The harness is not part of
the installed package (a PyPI distribution is already named ``bench``): it runs from a source checkout.
"""
from __future__ import annotations

import argparse
import os
import sys

from .errors import EngineError

HOW_TO_RUN = ("the benchmark is not installed with lstm-engine; run it from a source checkout: clone the "
              "repository, then pip install -e \".[bench]\" and python -m bench")

DESCRIPTION = ("Run lstm-engine, onnxruntime (CPUExecutionProvider) and torch (nn.LSTM, nn.GRU, nn.RNN) side by side on identical "
               "inputs, with the same thread count, interleaved; OpenVINO and tract too where they are installed "
               "(pip install openvino tract) and can run the model. Every output is checked against onnxruntime "
               "before anything is timed; a mismatch of the engine or torch aborts that point and makes the exit "
               "status 1, a peer that differs or fails is reported and not timed. Prints a table and "
               "writes latest.json (every figure and the machine), latest.md and latest.png (speedup against "
               "onnxruntime, grouped by workload) into --out.")

EPILOG = """scenarios (globs or substrings, comma-separated, for --scenarios):
  stream/H64 .. stream/H512     T=1, B=1, state carried: session.run with state in/out, and stream.step
  seq/T100/H64 .. H1024         T=100, B=1;  seq/T1000/H128
  batch/B32/H256, batch/B64/H512
  bidir2/H256                   bidirectional, 2 layers, T=100, B=1
  gru/stream/H128, gru/stream/H256, gru/seq/T100/H128, gru/seq/T100/H256   (and the same for rnn/)
  cold/engine-warm, cold/engine-empty, cold/onnxruntime, cold/openvino, cold/tract
                                fresh process, import -> first result

examples:
  lstm-engine bench --quick
  lstm-engine bench --scenarios stream,seq/T100/* --threads 1
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="a fast look: 0.1 s per runtime per point instead of 1 s, shorter warm-up, one cold start each")
    p.add_argument("--threads", default=None, metavar="N[,N...]",
                   help="thread counts to measure, comma-separated, or 'all' (default: 1 and all cores)")
    p.add_argument("--scenarios", default=None, metavar="PATTERNS",
                   help="only the scenarios matching these comma-separated globs or substrings (default: all)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="where to write latest.json/.md/.png (default: bench/results in the checkout)")
    p.add_argument("--repeat-seconds", type=float, default=None, metavar="S",
                   help="timed seconds per runtime per point (default: 1.0; 0.1 with --quick)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--list", action="store_true", help="list the scenarios and their targets, then exit")


def add_bench_parser(sub) -> argparse.ArgumentParser:
    b = sub.add_parser("bench", help="benchmark against onnxruntime, torch, OpenVINO and tract: table, JSON and chart",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(b)
    return b


def _checkout_root():
    """The source checkout this engine was imported from, or None (an installed wheel, where a ``bench`` beside
    ``engine`` would be somebody else's package)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.isfile(os.path.join(root, "pyproject.toml")) and os.path.isfile(os.path.join(root, "bench", "run.py")):
        return root
    return None


def cmd_bench(args) -> int:
    root = _checkout_root()
    if root is None:
        raise EngineError(HOW_TO_RUN)
    if root not in sys.path:
        sys.path.insert(0, root)      # the console script's path does not hold the checkout (editable installs)
    try:
        from bench import run as bench_run
        from bench import scenarios
    except ImportError as e:
        raise EngineError(f"{HOW_TO_RUN} ({e})") from None
    patterns = [s.strip() for s in args.scenarios.split(",") if s.strip()] if args.scenarios else None
    if args.list:
        chosen, cold = scenarios.select(patterns)
        for s in chosen:
            target = f">= {s.min_ratio:g}x vs onnxruntime" if s.min_ratio is not None else "no target"
            print(f"{s.name:<18} T={s.T:<5} B={s.B:<3} I={s.input_size:<5} H={s.H:<5} layers={s.layers} "
                  f"{'bidirectional' if s.bidirectional else 'forward':<13} {target}")
        for c in cold:
            target = f"< {c.max_seconds:g} s" if c.max_seconds is not None else "no target"
            print(f"{c.name:<18} fresh process, import -> first result  {target}")
        return 0
    missing = []
    for module, name in (("torch", "torch"), ("onnxruntime", "onnxruntime"), ("onnx", "onnx"),
                         ("matplotlib", "matplotlib")):
        try:
            __import__(module)
        except ImportError:
            missing.append(name)
    if missing:
        raise EngineError(f"the benchmark needs {', '.join(missing)}: pip install -e \".[bench]\" in {root}")
    try:
        threads = bench_run.parse_threads(args.threads)
        bench_run.settings_for(args.quick, args.repeat_seconds)
    except ValueError as e:
        raise EngineError(f"{e}") from None
    chosen, cold = scenarios.select(patterns)
    if not chosen and not cold:
        names = [s.name for s in scenarios.SCENARIOS] + [c.name for c in scenarios.COLD_SCENARIOS]
        raise EngineError(f"no scenario matches {args.scenarios!r}; the scenarios are: {', '.join(names)} "
                          f"(see lstm-engine bench --list)")
    _, status = bench_run.run_benchmark(patterns=patterns, threads=threads, quick=args.quick,
                                        repeat_seconds=args.repeat_seconds, out_dir=args.out,
                                        progress=not args.no_progress)
    return status
