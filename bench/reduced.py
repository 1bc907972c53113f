"""Reduced-precision weights (issue 11, target 5): speed and accuracy of bfloat16 and int8 recurrent weights.

    python -m bench.reduced [--quick] [--repeat-seconds S] [--sizes 256,512] [--no-zoo] [--out bench/results/reduced.json]

Speed rows: an nn.LSTM (I = H, one layer) exported with torch.onnx.export(dynamo=False), T=100, B=1, one thread,
H = 256 and 512. Contenders, all on the same input: onnxruntime float32 and its int8 model
(``onnxruntime.quantization.quantize_dynamic``, weight_type QInt8 -> DynamicQuantizeLSTM), the engine on the same
ONNX file converted with ``--weights float32 / bfloat16 / int8``. Every output is checked against onnxruntime
float32 first (the engine's float32 within 1e-5, bfloat16 within 2e-2, int8 within twice onnxruntime int8's error:
otherwise the row fails and nothing is timed), then everything is timed interleaved (bench/timing.py), median per
call. Targets: engine int8 >= 1.2x onnxruntime int8, with an error no larger than its; engine bfloat16 >= 1.5x
onnxruntime float32 at H=512, error <= 2e-2.

Zoo rows: the quality of the four zoo models (engine/data/zoo, see engine/demo.py) converted with each setting:
charlm bits/char and next-character accuracy on held-out standard-library text, co2 one-step and 10-year RMSE,
digits test accuracy, crnn character accuracy, and each file's size.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings

import numpy as np

from bench.scenarios import REDUCED_SCENARIOS

WEIGHTS = ("float32", "bfloat16", "int8")
TARGETS = {"int8_vs_ort_int8": 1.2, "bfloat16_vs_ort_float32_H512": 1.5, "bfloat16_max_error": 2e-2}


def build(H, workdir):
    """(float32 ONNX path, onnxruntime int8 ONNX path)."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    torch.manual_seed(H)
    m = torch.nn.LSTM(H, H).eval()
    src, q = os.path.join(workdir, f"lstm{H}.onnx"), os.path.join(workdir, f"lstm{H}_int8.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (torch.zeros(3, 1, H),), src, dynamo=False, input_names=["input"],
                          output_names=["output", "h_n", "c_n"], dynamic_axes={"input": {0: "T", 1: "B"}})
        import logging
        logging.getLogger().setLevel(logging.ERROR)      # quantize_dynamic's pre-processing advice
        quantize_dynamic(src, q, weight_type=QuantType.QInt8)
    return src, q


def ort_session(path):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def _err(a, b):
    return max(float(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)).max()) for x, y in zip(a, b))


def speed_row(H, workdir, repeat_seconds):
    """One row of bench.scenarios.REDUCED_SCENARIOS (T=100, B=1, I=H)."""
    import engine
    from bench.timing import Contender, measure
    from converters import from_onnx
    src, q = build(H, workdir)
    x = np.random.default_rng(H + 1).standard_normal((100, 1, H)).astype(np.float32)
    feed = {"input": x}
    runs = {"ort_float32": ort_session(src), "ort_int8": ort_session(q)}
    sizes = {"ort_float32": os.path.getsize(src), "ort_int8": os.path.getsize(q)}
    for w in WEIGHTS:
        path = os.path.join(workdir, f"lstm{H}_{w}.lstm")
        from_onnx(src, path, weights=w)
        runs[f"engine_{w}"] = engine.Session(path, threads=1)
        sizes[f"engine_{w}"] = os.path.getsize(path)
    ref = runs["ort_float32"].run(None, feed)
    errors = {k: _err(s.run(None, feed), ref) for k, s in runs.items()}
    row = {"name": next((sc.name for sc in REDUCED_SCENARIOS if sc.H == H), f"reduced/T100/B1/H{H}"), "T": 100, "B": 1, "H": H, "I": H, "threads": 1,
           "max_abs_error_vs_float32": errors, "file_bytes": sizes}
    bad = [k for k, lim in (("engine_float32", 1e-5), ("engine_bfloat16", 2e-2),
                            ("engine_int8", 2 * errors["ort_int8"])) if not errors[k] <= lim]
    if bad:
        row["failed"] = f"outputs out of tolerance: {', '.join(bad)} ({errors}); not timed"
        return row
    stats = measure([Contender(k, (lambda s=s: s.run(None, feed))) for k, s in runs.items()],
                    repeat_seconds=repeat_seconds)
    med = {k: v["median_s"] for k, v in stats.items()}
    row["median_us"] = {k: v * 1e6 for k, v in med.items()}
    row["ratios"] = {"engine_int8_vs_ort_int8": med["ort_int8"] / med["engine_int8"],
                     "engine_bfloat16_vs_ort_float32": med["ort_float32"] / med["engine_bfloat16"],
                     "engine_float32_vs_ort_float32": med["ort_float32"] / med["engine_float32"],
                     "engine_bfloat16_vs_engine_float32": med["engine_float32"] / med["engine_bfloat16"],
                     "engine_int8_vs_engine_float32": med["engine_float32"] / med["engine_int8"]}
    row["targets"] = {
        "int8 >= 1.2x onnxruntime int8": row["ratios"]["engine_int8_vs_ort_int8"] >= TARGETS["int8_vs_ort_int8"],
        "int8 error <= onnxruntime int8's": errors["engine_int8"] <= errors["ort_int8"],
        "bfloat16 error <= 2e-2": errors["engine_bfloat16"] <= TARGETS["bfloat16_max_error"]}
    if H == 512:
        row["targets"]["bfloat16 >= 1.5x onnxruntime float32"] = \
            row["ratios"]["engine_bfloat16_vs_ort_float32"] >= TARGETS["bfloat16_vs_ort_float32_H512"]
    return row


# ---------------------------------------------------------------------- the zoo's quality per setting
def zoo_quality(workdir):
    from converters import from_onnx
    from engine import Session
    from engine.demo import edit_distance, load_meta, zoo_path
    out = {}
    for name in ("charlm", "co2", "digits", "crnn"):
        meta = load_meta(name)
        out[name] = {}
        for w in WEIGHTS:
            path = os.path.join(workdir, f"{name}_{w}.lstm")
            from_onnx(zoo_path(f"{name}.onnx"), path, weights=w)
            sess = Session(path, threads=1)
            q = {"file_bytes": os.path.getsize(path)}
            if name == "charlm":
                q.update(_charlm(sess, meta))
            elif name == "co2":
                q.update(_co2(sess, meta, zoo_path))
            elif name == "digits":
                d = np.load(zoo_path(meta["demo"]["test_set"]))
                x = d["images"].astype(np.float32) / np.float32(meta["demo"]["pixel_scale"])
                q["accuracy"] = float((sess.run(None, {"image_rows": x})[0].argmax(1) == d["labels"]).mean())
            else:
                q["char_accuracy"] = _crnn(sess, meta, zoo_path, edit_distance)
            out[name][w] = q
    return out


def _charlm(sess, meta):
    import sysconfig
    vocab = meta["demo"]["vocab"]
    index = {ch: i for i, ch in enumerate(vocab)}
    H, L = meta["demo"]["hidden_size"], meta["demo"]["num_layers"]
    texts = []
    for name in meta["data"]["valid_files"]:
        path = os.path.join(sysconfig.get_paths()["stdlib"], name)
        if os.path.exists(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                texts.append(f.read())
    if not texts:
        return {"bits_per_char": None, "next_char_accuracy": None}
    T = min(2000, *(len(t) for t in texts))
    ids = np.stack([np.array([index.get(ch, 0) for ch in t[:T]], np.int64) for t in texts], axis=1)
    zeros = np.zeros((L, ids.shape[1], H), np.float32)
    logits = sess.run(None, {"tokens": ids, "h0": zeros, "c0": zeros})[0][:-1].astype(np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    picked = np.take_along_axis(logp, ids[1:][..., None], axis=-1)[..., 0]
    return {"bits_per_char": float(-picked.mean() / np.log(2)),
            "next_char_accuracy": float((logits.argmax(-1) == ids[1:]).mean())}


def _co2(sess, meta, zoo_path):
    d = np.load(zoo_path(meta["demo"]["heldout_file"]))
    mean, std, W = float(d["mean"]), float(d["std"]), int(d["window"])
    z = ((d["ppm"].astype(np.float64) - mean) / std).astype(np.float32)
    start, truth = int(d["heldout_start"]), d["heldout"].astype(np.float64)
    n = len(truth)
    windows = np.stack([z[start + k - W:start + k] for k in range(n)])[:, :, None]
    onestep = sess.run(None, {"x": windows})[0][:, 0].astype(np.float64) * std + mean
    hist, rec = list(z[start - W:start]), []
    for _ in range(n):
        y = float(sess.run(None, {"x": np.array(hist[-W:], np.float32)[None, :, None]})[0][0, 0])
        hist.append(y)
        rec.append(y * std + mean)
    return {"onestep_rmse_ppm": float(np.sqrt(np.mean((onestep - truth) ** 2))),
            "recursive_10y_rmse_ppm": float(np.sqrt(np.mean((np.array(rec) - truth) ** 2)))}


def _crnn(sess, meta, zoo_path, edit_distance):
    d = np.load(zoo_path(meta["demo"]["heldout"]))
    alphabet = meta["demo"]["alphabet"]
    ends = np.cumsum(d["widths"])
    edits = chars = 0
    for (a, b), truth in zip(zip(ends - d["widths"], ends), d["texts"]):
        x = d["pixels"][None, None, :, a:b].astype(np.float32) / np.float32(127.5) - 1
        best = sess.run(None, {"image": x})[0][:, 0].argmax(1)
        read = "".join(alphabet[c - 1] for k, c in enumerate(best) if c and (k == 0 or c != best[k - 1]))
        edits += edit_distance(str(truth), read)
        chars += len(str(truth))
    return 1 - edits / chars


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.reduced", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="0.3 s per contender instead of 2")
    p.add_argument("--repeat-seconds", type=float, default=None)
    p.add_argument("--sizes", default=",".join(str(sc.H) for sc in REDUCED_SCENARIOS),
                   help="hidden sizes (default: those of bench.scenarios.REDUCED_SCENARIOS)")
    p.add_argument("--no-zoo", action="store_true")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    from bench.run import machine_info
    repeat = args.repeat_seconds or (0.3 if args.quick else 2.0)
    result = {"machine": machine_info([1], peers=[]), "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
              "rows": [], "zoo": None}
    with tempfile.TemporaryDirectory() as tmp:
        for H in (int(v) for v in args.sizes.split(",")):
            row = speed_row(H, tmp, repeat)
            result["rows"].append(row)
            _print_row(row)
        if not args.no_zoo:
            result["zoo"] = zoo_quality(tmp)
            _print_zoo(result["zoo"])
    result["load_average_end"] = list(os.getloadavg())
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return 1 if any("failed" in r for r in result["rows"]) else 0


def _print_row(row):
    print(f"\n{row['name']} (1 thread)")
    if "failed" in row:
        print(f"  FAILED: {row['failed']}")
        return
    for k, us in row["median_us"].items():
        print(f"  {k:<16} {us:9.0f} us   max abs error vs float32 {row['max_abs_error_vs_float32'][k]:.2e}   "
              f"file {row['file_bytes'][k] / 1024:7.0f} KiB")
    for k, v in row["ratios"].items():
        print(f"  {k:<36} {v:5.2f}x")
    for k, ok in row["targets"].items():
        print(f"  target {k}: {'met' if ok else 'MISSED'}")


def _print_zoo(zoo):
    print("\nzoo quality per weight setting")
    for name, per in zoo.items():
        for w, q in per.items():
            print(f"  {name:<7} {w:<9} " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                                     for k, v in q.items()))


if __name__ == "__main__":
    sys.exit(main())
