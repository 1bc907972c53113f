"""The engine on one and two threads, and with its default (threads=None), beside onnxruntime on the same counts and
with its own default (issue 11, target 1).

    python -m bench.threads [--points T100/B1/H256,T100/B1/H512,T100/B32/H256] [--seconds 2]

Per point: one model (nn.LSTM exported to ONNX, converted), the engine's outputs checked against onnxruntime's for
every contender, then all contenders timed interleaved (bench/timing.py, with a pause before each block so that one
runtime's spinning pool does not steal a core from the next). Prints median times per call and the ratios the
issue's targets are stated in. Run with ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` unset, as the main bench.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np


def _point(spec):
    t, b, h = spec.split("/")
    return int(t[1:]), int(b[1:]), int(h[1:])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", default="T100/B1/H256,T100/B1/H512,T100/B32/H256")
    ap.add_argument("--seconds", type=float, default=2.0, help="timed seconds per contender per point")
    args = ap.parse_args(argv)

    import onnxruntime as ort

    import engine
    from bench.models import build, input_names, make_inputs
    from bench.scenarios import Scenario
    from bench.timing import Contender, measure

    print(f"load average {os.getloadavg()[0]:.2f}; numba threading layer: ", end="")
    with tempfile.TemporaryDirectory(prefix="lstm-bench-threads-") as tmp:
        for spec in args.points.split(","):
            T, B, H = _point(spec)
            sc = Scenario(f"threads/{spec}", "sequence" if B == 1 else "batched", T=T, B=B, H=H)
            built = build(sc, tmp)
            feed = make_inputs(sc)
            sessions = {}
            for n in (1, 2, None):
                sessions[f"engine {n or 'default'}"] = engine.Session(built.engine_path, threads=n)
            for n in (1, 2, None):
                so = ort.SessionOptions()
                if n is not None:
                    so.intra_op_num_threads = n
                    so.inter_op_num_threads = 1
                sessions[f"ort {n or 'default'}"] = ort.InferenceSession(built.onnx_path, so,
                                                                        providers=["CPUExecutionProvider"])
            if spec == args.points.split(",")[0]:
                import numba
                print(numba.threading_layer())
            ref = sessions["ort 1"].run(None, feed)
            for name, s in sessions.items():
                got = s.run(None, feed)
                diff = max(float(np.abs(a - b).max()) for a, b in zip(got, ref))
                if diff > 1e-4:
                    raise SystemExit(f"{spec}: {name} differs from onnxruntime by {diff:.3g}")
            contenders = [Contender(name, (lambda s=s: s.run(None, feed))) for name, s in sessions.items()]
            res = measure(contenders, repeat_seconds=args.seconds, settle_seconds=0.05)
            med = {k: v["median_s"] * 1e6 for k, v in res.items()}
            names = input_names(sc)
            print(f"{spec} ({', '.join(names)}), load {os.getloadavg()[0]:.2f}:")
            print("   " + "  ".join(f"{k} {v:8.1f} us" for k, v in med.items()))
            print(f"   1T: {med['ort 1'] / med['engine 1']:.2f}x ort   2T: {med['ort 2'] / med['engine 2']:.2f}x ort"
                  f"   engine 2T/1T: {med['engine 1'] / med['engine 2']:.2f}x   defaults: "
                  f"{med['ort default'] / med['engine default']:.2f}x ort "
                  f"(engine default picks threads={sessions['engine default'].threads})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
