"""The VAD part of ``lstm-engine demo``: real speech (espeak-ng + sox) through Silero VAD on the engine, the speech
segments shown against where the sentences were placed, every chunk checked against onnxruntime, a chart of the
probabilities, and the latency per 32 ms chunk side by side."""
from __future__ import annotations

import os

import numpy as np

from .errors import EngineError


def unavailable() -> str | None:
    """Why the VAD demo cannot run here (and how to fix it), or None."""
    from . import speech, vad
    try:
        vad.default_model()
    except EngineError as e:
        return str(e)
    missing = speech.tools_missing()
    if missing:
        return f"the demo speaks its test audio with espeak-ng and sox: {speech.APT_COMMAND}"
    return None


def demo_vad(ort, repeats, out_dir, interleaved, check):
    from . import speech
    from .vad import CHUNK, Vad, default_model, read_wav, speech_segments

    os.makedirs(out_dir, exist_ok=True)
    wav = speech.make_speech_wav(os.path.join(out_dir, "speech.wav"), seed=0)
    audio, rate = read_wav(wav.path)
    path = default_model()
    vad = Vad(path)
    probs, model_rate = vad.probabilities(audio, rate)
    # onnxruntime, fed as silero-vad feeds it: 512 new samples + 64 of context, the state passed in and out
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    ref = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    n, ctx = CHUNK[16000]
    padded = np.zeros(ctx + len(probs) * n, np.float32)
    padded[ctx:ctx + len(audio)] = audio
    state = np.zeros((2, 1, 128), np.float32)
    sr = np.array(16000, dtype=np.int64)
    ref_probs = np.empty_like(probs)
    for k in range(len(probs)):
        out, state = ref.run(None, {"input": padded[k * n:k * n + n + ctx][None], "state": state, "sr": sr})
        ref_probs[k] = out[0, 0]
    diff = check("vad, every chunk's probability", [probs], [ref_probs], 1e-4)
    ours = speech_segments(probs, model_rate, len(audio))
    theirs = speech_segments(ref_probs, model_rate, len(audio))
    if ours != theirs:
        from .demo import Mismatch
        raise Mismatch(f"vad: the engine's segments {ours} differ from onnxruntime's {theirs}")
    lines = [f"{len(audio) / rate:.1f} s of speech made with espeak-ng + sox: {wav.path}",
             f"{'sentence placed at':<22} {'speech found at':<18} text"]
    for (s0, s1), text in zip(wav.speech, wav.sentences):
        found = [f"{a / rate:.2f}-{b / rate:.2f} s" for a, b in ours if a < s1 and s0 < b]
        lines.append(f"{s0 / rate:5.2f}-{s1 / rate:5.2f} s{'':<9} {', '.join(found) or 'MISSED':<18} {text}")
    png = _plot(audio, rate, probs, ours, wav.speech, out_dir)
    if png:
        lines.append(f"chart: {png}")
    # latency of one chunk, 1 thread: run with the state in and out (as silero-vad's users call onnxruntime), and
    # a stream stepping with the state inside
    sess = vad.session
    x = padded[300 * n:300 * n + n + ctx][None].copy()
    st = np.zeros((2, 1, 128), np.float32)
    feed = {"input": x, "state": st, "sr": sr}
    e_run, o_run = interleaved(lambda: sess.run(None, feed), lambda: ref.run(None, feed), repeats)
    stream = sess.stream(inputs={"sr": sr})
    e_step, _ = interleaved(lambda: stream.step(x), lambda: ref.run(None, feed), repeats)
    found = sum(any(a < s1 and s0 < b for a, b in ours) for s0, s1 in wav.speech)
    return {"what": f"voice activity detection, Silero VAD ({os.path.basename(path)}), 32 ms chunks",
            "show": "\n".join(lines),
            "quality": f"{found} of {len(wav.speech)} sentences found, {len(ours)} segments; the same segments as "
                       f"onnxruntime's probabilities give",
            "diff": diff,
            "latency": [("vad: one 32 ms chunk (run, state in/out)", e_run, o_run),
                        ("vad: one 32 ms chunk (stream.step)", e_step, o_run)]}


def _plot(audio, rate, probs, segments, truth, out_dir):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=(10, 4), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(2, 1, 1)
    t = np.arange(len(audio)) / rate
    ax.plot(t[::8], audio[::8], color="#555555", linewidth=0.4)
    for s0, s1 in truth:
        ax.axvspan(s0 / rate, s1 / rate, color="#55a868", alpha=0.25, linewidth=0)
    ax.set_ylabel("audio")
    ax.set_xlim(0, t[-1])
    ax.set_title("lstm-engine: Silero VAD on espeak-ng speech (green: where the sentences are; blue: speech found)",
                 fontsize=9)
    ax2 = fig.add_subplot(2, 1, 2, sharex=ax)
    ax2.plot((np.arange(len(probs)) + 0.5) * 512 / 16000, probs, color="black", linewidth=1, label="P(speech)")
    for a, b in segments:
        ax2.axvspan(a / rate, b / rate, color="#4c72b0", alpha=0.3, linewidth=0)
    ax2.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    ax2.set_ylim(-0.02, 1.02)
    ax2.set_ylabel("P(speech)")
    ax2.set_xlabel("seconds")
    fig.tight_layout()
    path = os.path.join(out_dir, "vad.png")
    fig.savefig(path)
    return path
