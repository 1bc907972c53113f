"""onnxruntime oracle for the Silero VAD models, fed exactly as silero-vad's own utilities feed them.

    from silero_oracle import oracle, silero_file, timestamps_from_probs
    res = oracle("speech16k.wav", silero_file("silero_vad.onnx"))
    res.probs        # float32 [n_chunks]: one speech probability per 512-sample chunk (256 at 8 kHz)
    res.segments     # [{'start': s, 'end': e}] from silero-vad's own get_speech_timestamps on onnxruntime
    # an engine's per-chunk probabilities -> segments by silero-vad's own state machine:
    timestamps_from_probs(engine_probs, res.sample_rate, res.num_samples, step=res.step)

How silero-vad runs a model (silero_vad/utils_vad.py, version 6.2.3), reproduced by `OrtVad`:
  * audio is cut into chunks of 512 samples at 16 kHz (256 at 8 kHz); get_speech_timestamps zero-pads the
    last chunk. Rates that are multiples of 16 kHz are decimated first by keeping every (sr // 16000)-th
    sample (no filter), and the resulting sample positions are multiplied back.
  * each chunk is prefixed by the last 64 samples (32 at 8 kHz) of the previous model input (zeros for the
    first chunk), so `input` is float32 [batch, 576] ([batch, 288] at 8 kHz);
  * `state` float32 [2, batch, 128] (h and c stacked) starts at zeros and is replaced by the model's
    `stateN` after every call; `sr` is an int64 scalar (0-d array);
  * reset_states() zeroes the state and empties the context; get_speech_timestamps calls it once before
    the audio; a change of rate or batch size also resets.
OnnxWrapper itself always passes `sr`, so it cannot run silero_vad_half.onnx or silero_vad_openvino_16k.onnx
(no `sr` input: onnxruntime rejects the extra name); OrtVad passes `sr` only to files that declare it.
silero_vad_16k_sequence.onnx is run the way silero-vad's SileroVADSequence runs it (blocks of up to 512
frames, each row = 64 context samples + 512 new ones, `h`/`c` carried between blocks).

Needs onnxruntime and numpy; torch and silero-vad for `segments` (get_speech_timestamps); the files come
from the installed silero-vad package (`pip install --no-deps silero-vad==6.2.3`).
"""
from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

SILERO_VERSION = "6.2.3"

# What each file of silero-vad 6.2.3 takes (checked against the files by bench/silero_inventory.py).
FILES = {
    "silero_vad.onnx":              dict(kind="stream", rates=(16000, 8000), takes_sr=True),
    "silero_vad_16k_op15.onnx":     dict(kind="stream", rates=(16000,), takes_sr=True),   # sr only *0 into stateN
    "silero_vad_half.onnx":         dict(kind="stream", rates=(16000,), takes_sr=False),  # float32, no fp16
    "silero_vad_op18_ifless.onnx":  dict(kind="stream", rates=(16000, 8000), takes_sr=True),  # has one If
    "silero_vad_openvino_16k.onnx": dict(kind="stream", rates=(16000,), takes_sr=False),  # input fixed [1, 576]
    "silero_vad_16k_sequence.onnx": dict(kind="sequence", rates=(16000,), takes_sr=False),
}
ALL_FILES = list(FILES)


def silero_dir() -> str:
    import importlib.util

    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"silero-vad is not installed: pip install --no-deps silero-vad=={SILERO_VERSION}")
    return os.path.join(list(spec.submodule_search_locations)[0], "data")


def silero_file(name: str) -> str:
    """Path of one of the package's ONNX files, e.g. silero_file('silero_vad.onnx')."""
    p = os.path.join(silero_dir(), name)
    if not os.path.exists(p):
        raise FileNotFoundError(p)
    return p


def file_info(path: str) -> dict:
    """kind ('stream' or 'sequence'), rates, takes_sr, and the input names, read from the file itself."""
    import onnx

    m = onnx.load(path, load_external_data=False)
    inputs = [i.name for i in m.graph.input]
    base = FILES.get(os.path.basename(path), {})
    kind = "sequence" if "h" in inputs and "c" in inputs else "stream"
    return dict(kind=base.get("kind", kind), rates=base.get("rates", (16000,)), takes_sr="sr" in inputs,
                inputs=inputs, outputs=[o.name for o in m.graph.output])


def session(path: str, threads: int = 1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3   # silero_vad_op18_ifless.onnx has unused initializers ORT warns about
    return ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])


def chunk_sizes(sr: int) -> tuple[int, int]:
    """(new samples per chunk, context samples) for 16000 or 8000."""
    if sr == 16000:
        return 512, 64
    if sr == 8000:
        return 256, 32
    raise ValueError(f"silero VAD runs at 8000 or 16000 Hz, not {sr}")


class OrtVad:
    """silero-vad's OnnxWrapper on onnxruntime, for every file: the model object get_speech_timestamps and
    VADIterator take (duck typing: they call only reset_states() and model(chunk, sr).item())."""

    def __init__(self, path: str, threads: int = 1):
        self.path = path
        self.session = session(path, threads)
        self.info = file_info(path)
        if self.info["kind"] != "stream":
            raise ValueError(f"{os.path.basename(path)} is a sequence model: use sequence_probs()")
        self.sample_rates = list(self.info["rates"])
        self.reset_states()

    def reset_states(self, batch_size: int = 1):
        self._state = np.zeros((2, batch_size, 128), dtype=np.float32)
        self._context = None
        self._last_sr = 0
        self._last_batch_size = 0

    def __call__(self, x, sr: int):
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if sr != 16000 and sr % 16000 == 0:   # as OnnxWrapper._validate_input
            x = x[:, :: sr // 16000]
            sr = 16000
        if sr not in self.sample_rates:
            raise ValueError(f"{os.path.basename(self.path)} supports {self.sample_rates} Hz, not {sr}")
        n, ctx = chunk_sizes(sr)
        if x.shape[-1] != n:
            raise ValueError(f"chunk of {x.shape[-1]} samples; the model takes {n} at {sr} Hz")
        batch = x.shape[0]
        if not self._last_batch_size or (self._last_sr and self._last_sr != sr) or \
                (self._last_batch_size and self._last_batch_size != batch):
            self.reset_states(batch)
        if self._context is None:
            self._context = np.zeros((batch, ctx), dtype=np.float32)
        inp = np.concatenate([self._context, x], axis=1)
        feed = {"input": inp, "state": self._state}
        if self.info["takes_sr"]:
            feed["sr"] = np.array(sr, dtype=np.int64)
        out, self._state = self.session.run(None, feed)
        self._context = inp[:, -ctx:]
        self._last_sr = sr
        self._last_batch_size = batch
        return out   # float32 [batch, 1]; .item() works as on OnnxWrapper's torch tensor


def _decimate(audio: np.ndarray, sr: int) -> tuple[np.ndarray, int, int]:
    if sr > 16000 and sr % 16000 == 0:
        step = sr // 16000
        return audio[::step], 16000, step
    return audio, sr, 1


def stream_probs(audio: np.ndarray, sr: int, path: str, threads: int = 1) -> np.ndarray:
    """Per-chunk probabilities exactly as get_speech_timestamps computes them (reset, chunks, zero-padded
    last chunk, context and state carried) - without torch."""
    audio, sr, _ = _decimate(np.asarray(audio, dtype=np.float32).reshape(-1), sr)
    n, _ = chunk_sizes(sr)
    model = OrtVad(path, threads)
    model.reset_states()
    probs = []
    for start in range(0, len(audio), n):
        chunk = audio[start: start + n]
        if len(chunk) < n:
            chunk = np.pad(chunk, (0, n - len(chunk)))
        probs.append(model(chunk, sr).item())
    return np.asarray(probs, dtype=np.float32)


def sequence_frames(audio: np.ndarray, sr: int = 16000) -> np.ndarray:
    """All frames of the audio as the sequence model's rows: [n_frames, 64 + 512] (zero-padded last frame,
    first context zeros) - the same rows the streaming models get one at a time."""
    n, ctx = chunk_sizes(sr)
    count = (audio.size + n - 1) // n
    frames = np.zeros((count, n), dtype=np.float32)
    frames.reshape(-1)[: audio.size] = audio
    contexts = np.zeros((count, ctx), dtype=np.float32)
    if count > 1:
        contexts[1:] = frames[:-1, -ctx:]
    return np.concatenate([contexts, frames], axis=1)


def sequence_probs(audio: np.ndarray, sr: int, path: str, threads: int = 1, max_frames: int = 512) -> np.ndarray:
    """Per-frame probabilities of silero_vad_16k_sequence.onnx, as SileroVADSequence.audio_forward computes
    them (blocks of up to max_frames rows, h and c carried between blocks)."""
    audio, sr, _ = _decimate(np.asarray(audio, dtype=np.float32).reshape(-1), sr)
    if sr != 16000:
        raise ValueError("the sequence file is 16 kHz only")
    rows = sequence_frames(audio, sr)
    sess = session(path, threads)
    h = np.zeros((1, 1, 128), np.float32)
    c = np.zeros((1, 1, 128), np.float32)
    out = []
    for i in range(0, len(rows), max_frames):
        p, h, c = sess.run(["speech_probs", "hn", "cn"], {"input": rows[i: i + max_frames], "h": h, "c": c})
        out.append(p)
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


def chunk_probs(audio: np.ndarray, sr: int, path: str, threads: int = 1) -> np.ndarray:
    """Per-chunk speech probabilities from onnxruntime, for any of the six files."""
    if file_info(path)["kind"] == "sequence":
        return sequence_probs(audio, sr, path, threads)
    return stream_probs(audio, sr, path, threads)


def timestamps_from_probs(probs, sr: int, num_samples: int, step: int = 1, **kw) -> list[dict]:
    """Segments from per-chunk probabilities by silero-vad's own state machine (get_speech_timestamps_from_probs,
    the second half of get_speech_timestamps). `sr` is the model's rate (16000 after decimation), `num_samples`
    the length of the audio the probabilities were computed on (after decimation), `step` the decimation."""
    from silero_vad.utils_vad import get_speech_timestamps_from_probs

    return get_speech_timestamps_from_probs([float(p) for p in probs], sampling_rate=sr,
                                            audio_length_samples=num_samples, step=step, **kw)


def speech_timestamps(audio: np.ndarray, sr: int, path: str, threads: int = 1, **kw) -> list[dict]:
    """silero-vad's own get_speech_timestamps on onnxruntime (get_speech_timestamps_sequence for the sequence
    file). Extra keywords go to it (threshold, min_silence_duration_ms, speech_pad_ms, ...)."""
    import torch
    from silero_vad.utils_vad import get_speech_timestamps

    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if file_info(path)["kind"] == "sequence":
        from silero_vad.sequence_vad import SileroVADSequence, get_speech_timestamps_sequence

        return get_speech_timestamps_sequence(audio, SileroVADSequence(path), sampling_rate=sr, **kw)
    with warnings.catch_warnings():   # 'Sampling rate is a multiply of 16000, casting to 16000 manually!'
        warnings.filterwarnings("ignore", message="Sampling rate is a multiply of 16000")
        return get_speech_timestamps(torch.from_numpy(audio.copy()), OrtVad(path, threads), sampling_rate=sr, **kw)


@dataclass
class OracleResult:
    file: str
    sample_rate: int          # the model's rate (16000 for 48 kHz input)
    step: int                 # decimation applied to the input (3 for 48 kHz)
    num_samples: int          # samples after decimation
    probs: np.ndarray         # [n_chunks]
    segments: list = field(default_factory=list)   # get_speech_timestamps's output, in input samples

    def segments_from(self, probs, **kw) -> list[dict]:
        """Segments for another model's probabilities of the same audio (e.g. the engine's)."""
        return timestamps_from_probs(probs, self.sample_rate, self.num_samples, self.step, **kw)


def oracle(wav_path: str, onnx_path: str, threads: int = 1, segments: bool = True, **kw) -> OracleResult:
    """(a) per-chunk probabilities and (b) silero-vad's get_speech_timestamps segments, both on onnxruntime.
    `wav_path` may also be an (audio, sr) pair."""
    if isinstance(wav_path, tuple):
        audio, sr = wav_path
    else:
        from audio_fixture import read_wav

        audio, sr = read_wav(wav_path)
    dec, model_sr, step = _decimate(np.asarray(audio, np.float32), sr)
    probs = chunk_probs(audio, sr, onnx_path, threads)
    segs = speech_timestamps(audio, sr, onnx_path, threads, **kw) if segments else []
    return OracleResult(file=os.path.basename(onnx_path), sample_rate=model_sr, step=step,
                        num_samples=len(dec), probs=probs, segments=segs)


# ---------------------------------------------------------------- timing

def time_per_chunk(path: str, n_chunks: int = 2000, sr: int = 16000, audio: np.ndarray | None = None,
                   threads: int = 1, repeats: int = 1) -> dict:
    """onnxruntime's time per chunk on one thread: the median of n_chunks timed session.run calls with the
    state carried (streaming files), or, for the sequence file, one call per frame (block of 1) and the
    per-frame time of 512-frame blocks."""
    info = file_info(path)
    sess = session(path, threads)
    n, ctx = chunk_sizes(sr)
    rng = np.random.default_rng(0)
    if audio is None:
        audio = (rng.standard_normal(n * n_chunks) * 0.05).astype(np.float32)
    audio = np.resize(audio.astype(np.float32), n * n_chunks)
    rows = sequence_frames(audio, sr)
    clock = time.perf_counter_ns
    res = {}
    if info["kind"] == "stream":
        state = np.zeros((2, 1, 128), np.float32)
        srv = np.array(sr, dtype=np.int64)
        times = np.empty(len(rows))
        for _ in range(repeats):
            for i, row in enumerate(rows):
                feed = {"input": row[None, :], "state": state}
                if info["takes_sr"]:
                    feed["sr"] = srv
                t0 = clock()
                out, state = sess.run(None, feed)
                times[i] = clock() - t0
        res["median_us"] = float(np.median(times)) / 1e3
        res["p10_us"] = float(np.percentile(times, 10)) / 1e3
        res["p90_us"] = float(np.percentile(times, 90)) / 1e3
    else:
        h = np.zeros((1, 1, 128), np.float32)
        c = np.zeros((1, 1, 128), np.float32)
        times = np.empty(len(rows))
        for i in range(len(rows)):
            t0 = clock()
            p, h, c = sess.run(["speech_probs", "hn", "cn"], {"input": rows[i: i + 1], "h": h, "c": c})
            times[i] = clock() - t0
        res["median_us"] = float(np.median(times)) / 1e3
        res["p10_us"] = float(np.percentile(times, 10)) / 1e3
        res["p90_us"] = float(np.percentile(times, 90)) / 1e3
        block = []
        for i in range(0, len(rows), 512):
            t0 = clock()
            sess.run(["speech_probs", "hn", "cn"], {"input": rows[i: i + 512], "h": h, "c": c})
            block.append((clock() - t0) / len(rows[i: i + 512]))
        res["block512_us_per_frame"] = float(np.median(block)) / 1e3
    res["chunks"] = len(rows)
    return res


if __name__ == "__main__":  # python tests/silero_oracle.py speech.wav [file.onnx ...]
    import sys

    wav = sys.argv[1]
    files = sys.argv[2:] or [silero_file(f) for f in ALL_FILES]
    for f in files:
        r = oracle(wav, f)
        print(f"{r.file}: {len(r.probs)} chunks, probs {r.probs.min():.4f}..{r.probs.max():.4f}, "
              f"{len(r.segments)} segments {r.segments}")
