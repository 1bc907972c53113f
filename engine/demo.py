"""``lstm-engine demo``: the main job. Convert the bundled zoo models, run each on the engine, show what it does,
check every output against onnxruntime, and time both side by side.

The models (engine/data/zoo, trained by bench/zoo on real data):
  charlm  character-level LSTM of Python source: generates code one character at a time (stream.step), and scores
          a held-out stretch of the standard library
  co2     LSTM forecaster of the Mauna Loa CO2 record: one-step and 10-year forecasts of 1992-2001, plotted
  digits  bidirectional LSTM reading scikit-learn's 8x8 digits row by row: test-set accuracy
  crnn    CRNN text recogniser (convolutions, two bidirectional LSTMs, CTC) reading held-out rendered text lines
  vad     Silero VAD (from an installed silero-vad package) on speech made with espeak-ng and sox: the segments
          found, checked chunk by chunk against onnxruntime (engine/demo_vad.py)
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sysconfig
import tempfile
import time

import numpy as np

from ._progress import Progress
from .errors import EngineError

ZOO = os.path.join(os.path.dirname(__file__), "data", "zoo")
MODELS = ("charlm", "co2", "digits", "crnn", "vad")
ZOO_MODELS = ("charlm", "co2", "digits", "crnn")


class Mismatch(EngineError):
    pass


def zoo_path(name: str) -> str:
    return os.path.join(ZOO, name)


def load_meta(name: str) -> dict:
    with open(zoo_path(f"{name}.json")) as f:
        return json.load(f)


def _median_us(fn, repeats):
    for _ in range(min(20, repeats)):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def _interleaved(fn_a, fn_b, repeats):
    """Medians (us) of two callables timed in alternating blocks, so that machine drift hits both alike."""
    a, b = [], []
    block = max(1, repeats // 10)
    for _ in range(10):
        a.append(_median_us(fn_a, block))
        b.append(_median_us(fn_b, block))
    return statistics.median(a), statistics.median(b)


def _check(what, ours, theirs, tol):
    diff = max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)))) for x, y in zip(ours, theirs))
    if not diff <= tol:
        raise Mismatch(f"{what}: the engine differs from onnxruntime by {diff:.2e} (tolerance {tol:g})")
    return diff


# ---------------------------------------------------------------------- charlm
def demo_charlm(sess, ort_sess, meta, repeats, rng):
    vocab = meta["demo"]["vocab"]
    index = {ch: i for i, ch in enumerate(vocab)}
    H = meta["demo"]["hidden_size"]
    L = meta["demo"]["num_layers"]

    def encode(text):
        return np.array([index.get(ch, 0) for ch in text], dtype=np.int64)

    # 1) generate: the prompt, then sampled characters, one at a time with the state inside the engine; onnxruntime
    #    runs the same tokens with the state passed in and out, and every step's logits are compared
    stream = sess.stream(batch_size=1)
    h = np.zeros((L, 1, H), np.float32)
    c = np.zeros((L, 1, H), np.float32)
    prompt = meta["demo"]["seed_prompt"]
    temperature = meta["demo"]["temperature"]
    text, diff = prompt, 0.0
    tokens = list(encode(prompt))
    for step in range(len(prompt) + 240):
        tok = np.array([tokens[step]], dtype=np.int64)
        logits = stream.step(tok)[0]
        ref, h, c = ort_sess.run(None, {"tokens": tok[None], "h0": h, "c0": c})
        diff = max(diff, _check("charlm, one character", [logits], [ref[0, 0]], 1e-5))
        if step + 1 >= len(tokens):
            z = logits.astype(np.float64) / temperature
            p = np.exp(z - z.max())
            nxt = int(rng.choice(len(vocab), p=p / p.sum()))
            tokens.append(nxt)
            text += vocab[nxt]
    # 2) quality on held-out text: the start of each standard-library file held out from training, as one batch
    stdlib = sysconfig.get_paths()["stdlib"]
    texts = {}
    for name in meta["data"]["valid_files"]:
        path = os.path.join(stdlib, name)
        if os.path.exists(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                texts[name] = f.read()
    quality = "held-out text unavailable (this Python has none of the held-out standard-library files)"
    if texts:
        T = min(2000, *(len(t) for t in texts.values()))
        ids = np.stack([encode(t[:T]) for t in texts.values()], axis=1)          # (T, B)
        zeros = np.zeros((L, ids.shape[1], H), np.float32)
        feed = {"tokens": ids, "h0": zeros, "c0": zeros}
        out = sess.run(None, feed)
        diff = max(diff, _check("charlm, held-out text", out, ort_sess.run(None, feed), 1e-4))
        logits = out[0][:-1].astype(np.float64)                                  # (T-1, B, V)
        logp = logits - logits.max(-1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
        target = ids[1:]
        picked = np.take_along_axis(logp, target[..., None], axis=-1)[..., 0]
        bits = float(-picked.mean() / np.log(2))
        acc = float((logits.argmax(-1) == target).mean())
        quality = (f"{bits:.2f} bits/char, next-char accuracy {acc:.2f} on the first {T} characters of the "
                   f"{len(texts)} held-out standard-library files, run as one batch (at training: "
                   f"{meta['quality']['heldout']['bits_per_char']:.2f} over the whole files; unigram baseline "
                   f"{meta['quality']['baselines']['unigram_add_one']['bits_per_char']:.2f})")
    # 3) latency of one character: stream.step against onnxruntime with the state in and out
    tok = np.array([tokens[-1]], dtype=np.int64)
    feed = {"tokens": tok[None], "h0": h, "c0": c}
    e, o = _interleaved(lambda: stream.step(tok), lambda: ort_sess.run(None, feed), repeats)
    shown = text.replace("\t", "    ")
    return {"what": "generated Python, one character at a time (stream.step)", "show": shown, "quality": quality,
            "diff": diff, "latency": [("charlm: one character (streaming)", e, o)]}


# ---------------------------------------------------------------------- co2
def demo_co2(sess, ort_sess, meta, repeats, out_dir):
    d = np.load(zoo_path(meta["demo"]["heldout_file"]))
    mean, std, W = float(d["mean"]), float(d["std"]), int(d["window"])
    ppm = d["ppm"].astype(np.float64)
    start = int(d["heldout_start"])
    truth = d["heldout"].astype(np.float64)
    n = len(truth)
    z = ((ppm - mean) / std).astype(np.float32)
    windows = np.stack([z[start + k - W:start + k] for k in range(n)])[:, :, None]     # (n, W, 1)
    out = sess.run(None, {"x": windows})
    diff = _check("co2, one-step forecasts", out, ort_sess.run(None, {"x": windows}), 1e-5)
    onestep = out[0][:, 0].astype(np.float64) * std + mean
    rmse1 = float(np.sqrt(np.mean((onestep - truth) ** 2)))
    # a 10-year forecast fed with its own predictions, one month at a time
    hist = list(z[start - W:start])
    rec = []
    for _ in range(n):
        x = np.array(hist[-W:], np.float32)[None, :, None]
        y = sess.run(None, {"x": x})[0]
        diff = max(diff, _check("co2, recursive forecast", [y], ort_sess.run(None, {"x": x}), 1e-5))
        hist.append(float(y[0, 0]))
        rec.append(float(y[0, 0]) * std + mean)
    rec = np.array(rec)
    rmse_rec = float(np.sqrt(np.mean((rec - truth) ** 2)))
    png = _plot_co2(d, onestep, rec, rmse1, rmse_rec, out_dir)
    base = meta["quality"]["onestep"]["baselines"]["seasonal_naive_rmse_ppm"]
    quality = (f"one-step RMSE {rmse1:.2f} ppm over {n} held-out months 1992-2001 (seasonal-naive baseline "
               f"{base:.2f}); 10-year recursive forecast RMSE {rmse_rec:.2f} ppm")
    x1 = windows[:1]
    e, o = _interleaved(lambda: sess.run(None, {"x": x1}), lambda: ort_sess.run(None, {"x": x1}), repeats)
    xb = windows
    eb, ob = _interleaved(lambda: sess.run(None, {"x": xb}), lambda: ort_sess.run(None, {"x": xb}),
                          max(10, repeats // 10))
    return {"what": "forecast of the Mauna Loa CO2 record, 1992-2001", "show": f"chart: {png}" if png else "",
            "quality": quality, "diff": diff,
            "latency": [("co2: one forecast (36 months, batch 1)", e, o),
                        (f"co2: {n} forecasts (batch {n})", eb, ob)]}


def _plot_co2(d, onestep, rec, rmse1, rmse_rec, out_dir):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    months = [str(m) for m in d["months"]]
    start = int(d["heldout_start"])
    years = np.array([int(m[:4]) + (int(m[5:7]) - 1) / 12 for m in months])
    fig = Figure(figsize=(9, 4.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    lo = start - 96
    ax.plot(years[lo:], d["ppm"][lo:], color="black", linewidth=1.2, label="measured (Mauna Loa, monthly)")
    ax.plot(years[start:], onestep, color="#4c72b0", linewidth=1, label=f"one month ahead (RMSE {rmse1:.2f} ppm)")
    ax.plot(years[start:], rec, color="#dd8452", linewidth=1, linestyle="--",
            label=f"10 years ahead, from 1991 (RMSE {rmse_rec:.2f} ppm)")
    ax.axvline(years[start], color="grey", linestyle=":", linewidth=1)
    ax.text(years[start] + 0.1, float(np.min(d["ppm"][lo:])), "held out ->", fontsize=8, color="grey")
    ax.set_xlabel("year")
    ax.set_ylabel("CO2 (ppm)")
    ax.set_title("lstm-engine: LSTM forecast of atmospheric CO2 against the measurements", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "co2_forecast.png")
    fig.savefig(path)
    return path


# ---------------------------------------------------------------------- digits
def demo_digits(sess, ort_sess, meta, repeats):
    d = np.load(zoo_path(meta["demo"]["test_set"]))
    x = (d["images"].astype(np.float32) / np.float32(meta["demo"]["pixel_scale"])) if "images" in d.files else None
    if x is None:
        key = [k for k in d.files if d[k].ndim == 3][0]
        x = d[key].astype(np.float32) / np.float32(meta["demo"]["pixel_scale"])
    labels = d["labels"] if "labels" in d.files else d[[k for k in d.files if d[k].ndim == 1][0]]
    out = sess.run(None, {"image_rows": x})
    diff = _check("digits, test set", out, ort_sess.run(None, {"image_rows": x}), 1e-5)
    pred = out[0].argmax(1)
    acc = float((pred == labels).mean())
    wrong = int((pred != labels).sum())
    art = _digit_art(x[0], int(pred[0]), int(labels[0]))
    x1 = x[:1]
    e, o = _interleaved(lambda: sess.run(None, {"image_rows": x1}), lambda: ort_sess.run(None, {"image_rows": x1}),
                        repeats)
    return {"what": "handwritten digits read row by row (bidirectional LSTM)", "show": art,
            "quality": f"test accuracy {acc:.4f} ({len(labels) - wrong}/{len(labels)}; logistic regression "
                       f"baseline {meta['quality']['baselines']['logistic_regression_pixels_accuracy']:.4f})",
            "diff": diff, "latency": [("digits: one image", e, o)]}


def _digit_art(img, pred, label):
    shades = " .:-=+*#%@"
    rows = ["".join(shades[min(9, int(v * 9.99))] * 2 for v in row) for row in img]
    rows[3] += f"   read as {pred} (label {label})"
    return "\n".join(rows)


# ---------------------------------------------------------------------- crnn
def demo_crnn(sess, ort_sess, meta, repeats):
    """The held-out text lines (their uint8 pixels side by side in crnn_heldout.npz), one call per line, decoded
    greedily: the best class per column, repeats merged, blanks (0) dropped."""
    d = np.load(zoo_path(meta["demo"]["heldout"]))
    alphabet = meta["demo"]["alphabet"]
    ends = np.cumsum(d["widths"])
    images = [d["pixels"][None, None, :, a:b].astype(np.float32) / np.float32(127.5) - 1
              for a, b in zip(ends - d["widths"], ends)]
    pairs, diff = [], 0.0
    for x, truth in zip(images, d["texts"]):
        out = sess.run(None, {"image": x})
        diff = max(diff, _check("crnn, a held-out line", out, ort_sess.run(None, {"image": x}), 1e-4))
        best = out[0][:, 0].argmax(1)
        read = "".join(alphabet[c - 1] for k, c in enumerate(best) if c and (k == 0 or c != best[k - 1]))
        pairs.append((str(truth), read))
    edits = sum(edit_distance(t, r) for t, r in pairs)
    chars = sum(len(t) for t, _ in pairs)
    q = meta["quality"]
    show = "\n".join(f"{'ok ' if t == r else '   '}{r!r:34} (printed: {t!r})" for t, r in pairs[:6])
    x1 = images[int(np.argsort(d["widths"])[len(images) // 2])]          # a line of the median width
    e, o = _interleaved(lambda: sess.run(None, {"image": x1}), lambda: ort_sess.run(None, {"image": x1}), repeats)
    return {"what": f"held-out text lines read back (greedy CTC decoding; {len(pairs)} lines, the first 6)",
            "show": show,
            "quality": f"character accuracy {1 - edits / chars:.3f} on these {len(pairs)} lines; on "
                       f"{q['heldout_text']['lines']} held-out lines {q['heldout_text']['char_accuracy']:.3f}, in "
                       f"held-out fonts {q['heldout_text_and_faces']['char_accuracy']:.3f} (its convolutions "
                       f"read column by column, without the LSTMs: "
                       f"{q['baseline_column_probe']['heldout_text']['char_accuracy']:.3f})",
            "diff": diff, "latency": [(f"crnn: one text line (32 x {x1.shape[3]} px)", e, o)]}


def edit_distance(a, b):
    """Levenshtein distance of two strings (character accuracy = 1 - edits / characters)."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


# ---------------------------------------------------------------------- the demo
def run_demo(repeats: int = 200, out_dir: str = "lstm-engine-demo", models=MODELS) -> int:
    try:
        import onnxruntime as ort
    except ImportError:
        print("the demo compares with onnxruntime: pip install 'lstm-engine[demo]'")
        return 2
    from converters import from_onnx

    from .session import Session
    from .warmup import warm_up

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    zoo = [m for m in models if m in ZOO_MODELS]
    bar = Progress(2 * len(zoo) + 1, "demo: convert + load")
    # the executor is the engine's one compilation: once per install (a minute or two), then loaded from the cache
    # in a second; said before it starts, so that a first run's bar does not look stuck
    bar.advance(0, note="the engine's executor: compiling it (once per install, 1-2 min) or loading it from the cache")
    for _, seconds in warm_up(("float32",)):
        bar.advance(note=f"executor ready in {seconds:.1f}s")
    sessions = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in zoo:
            t0 = time.perf_counter()
            path = os.path.join(tmp, f"{name}.lstm")
            model = from_onnx(zoo_path(f"{name}.onnx"), path)
            convert_s = time.perf_counter() - t0
            bar.advance(note=f"{name} converted")
            sess = Session(path, threads=1)
            sessions[name] = (model, sess, convert_s, os.path.getsize(path))
            bar.advance(note=f"{name} loaded")
    bar.close()
    rng = np.random.default_rng(0)
    results = {}
    for name in zoo:
        model, sess, convert_s, size = sessions[name]
        meta = load_meta(name)
        ref = ort.InferenceSession(zoo_path(f"{name}.onnx"), opts, providers=["CPUExecutionProvider"])
        ops = sorted({n.op for n in model.nodes})
        print(f"\n== {name}: {meta['description']}")
        print(f"   {model.parameter_count():,} parameters, ops {', '.join(ops)}; converted in {convert_s:.2f}s, "
              f"loaded in {sess.load_seconds + sess.pack_seconds:.3f}s, {size / 1024:.0f} KiB")
        try:
            if name == "charlm":
                r = demo_charlm(sess, ref, meta, repeats, rng)
            elif name == "co2":
                r = demo_co2(sess, ref, meta, repeats, out_dir)
            elif name == "crnn":
                r = demo_crnn(sess, ref, meta, repeats)
            else:
                r = demo_digits(sess, ref, meta, repeats)
        except Mismatch as e:
            print(f"MISMATCH: {e}")
            return 1
        results[name] = r
        _show(r)
    if "vad" in models:
        from .demo_vad import demo_vad, unavailable
        why = unavailable()
        print("\n== vad: Silero VAD, the most deployed LSTM model, on real speech")
        if why:
            print(f"   skipped: {why}")
        else:
            try:
                results["vad"] = demo_vad(ort, repeats, out_dir, _interleaved, _check)
            except Mismatch as e:
                print(f"MISMATCH: {e}")
                return 1
            _show(results["vad"])
    print(f"\nlatency, median per call, 1 thread, interleaved with onnxruntime {ort.__version__} "
          f"({_machine()}):\n")
    print(f"{'':<44} {'engine':>10} {'onnxruntime':>12} {'speedup':>8}")
    for name in results:
        for label, e, o in results[name]["latency"]:
            print(f"{label:<44} {e:>8.1f}us {o:>10.1f}us {o / e:>7.2f}x")
    print("\nall outputs match onnxruntime")
    return 0


def _show(r):
    print(f"   {r['what']}:")
    for line in r["show"].splitlines():
        print("   | " + line)
    print(f"   quality: {r['quality']}")
    print(f"   every output matches onnxruntime (max abs diff {r['diff']:.1e})")


def _machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs"
