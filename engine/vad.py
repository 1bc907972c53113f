"""Voice activity detection with Silero VAD on the engine: audio in, speech segments out.

    from engine.vad import Vad, read_wav
    vad = Vad()                              # the model of the installed silero-vad package (or Vad("m.onnx"/".lstm"))
    audio, rate = read_wav("talk.wav")       # any PCM WAV: mono or not, 8/16/24/32-bit, any rate
    for seg in vad.segments(audio, rate):    # [{"start": seconds, "end": seconds}, ...]
        print(seg)

WAV files are read with the standard library (struct); the audio is resampled to the model's rate (16 kHz, or 8 kHz for 8 kHz audio when the model has an 8 kHz branch)
with a polyphase filter (scipy.signal.resample_poly), then cut into 32 ms chunks (512 samples at 16 kHz, 256 at
8 kHz), each fed with the last 64 (32) samples before it as context, the model's state carried from chunk to chunk
inside one engine stream, as silero-vad's own utilities do. The segments come from the probabilities by the rules of
silero-vad's ``get_speech_timestamps`` (threshold with hysteresis, minimum speech and silence durations, padding),
written here anew; the tests check that they give the same segments as silero-vad's own code.

The model files come from the silero-vad package (MIT): ``pip install --no-deps silero-vad`` brings just its files
(without --no-deps it also installs torch); nothing here imports it.
"""
from __future__ import annotations

import importlib.util
import math
import os
import struct

import numpy as np

from .errors import EngineError, InvalidInputError

DEFAULT_FILE = "silero_vad.onnx"
CHUNK = {16000: (512, 64), 8000: (256, 32)}     # new samples per chunk, context samples


def default_model() -> str:
    """The ONNX model of the installed silero-vad package (found without importing it), or a clear error."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise EngineError("no Silero VAD model: install its files with `pip install --no-deps silero-vad` (MIT; "
                          "without --no-deps it also installs torch), or pass --model FILE (.onnx or .lstm)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", DEFAULT_FILE)
    if not os.path.exists(path):
        raise EngineError(f"the installed silero-vad package has no {DEFAULT_FILE}; pass --model FILE")
    return path


def read_wav(path) -> tuple[np.ndarray, int]:
    """A WAV file -> (float32 mono samples in [-1, 1), sample rate). PCM 8/16/24/32-bit and IEEE float 32/64, plain
    or WAVE_FORMAT_EXTENSIBLE (what sox writes for 24-bit or multichannel audio; the standard library's wave reads
    only plain PCM before Python 3.12), channels averaged. The RIFF chunks are parsed here with struct."""
    try:
        with open(os.fspath(path), "rb") as f:
            data = f.read()
    except OSError as e:
        raise InvalidInputError(f"{path}: {e.strerror or e}") from None
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise InvalidInputError(f"{path}: not a WAV file (no RIFF/WAVE header)")
    fmt = samples = None
    pos = 12
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        body = data[pos + 8:pos + 8 + size]
        if cid == b"fmt ":
            if len(body) < 16:
                raise InvalidInputError(f"{path}: truncated fmt chunk")
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            if tag == 0xFFFE and len(body) >= 26:
                tag = struct.unpack("<H", body[24:26])[0]      # the sub-format GUID starts with the format tag
            fmt = (tag, channels, rate, bits)
        elif cid == b"data":
            samples = body
        pos += 8 + size + (size & 1)
    if fmt is None or samples is None:
        raise InvalidInputError(f"{path}: not a WAV file with a fmt and a data chunk")
    tag, channels, rate, bits = fmt
    if channels < 1 or rate < 1:
        raise InvalidInputError(f"{path}: {channels} channels at {rate} Hz")
    width = bits // 8
    usable = len(samples) // (width * channels) * width * channels if width else 0
    b = np.frombuffer(samples[:usable], np.uint8)
    if tag == 1 and bits == 8:
        x = (b.astype(np.float32) - 128) / 128
    elif tag == 1 and bits == 16:
        x = b.view("<i2").astype(np.float32) / 32768
    elif tag == 1 and bits == 24:
        t = b.reshape(-1, 3).astype(np.int32)
        v = t[:, 0] | (t[:, 1] << 8) | (t[:, 2] << 16)
        x = np.where(v >= 1 << 23, v - (1 << 24), v).astype(np.float32) / (1 << 23)
    elif tag == 1 and bits == 32:
        x = (b.view("<i4").astype(np.float64) / 2 ** 31).astype(np.float32)
    elif tag == 3 and bits in (32, 64):
        x = b.view("<f4" if bits == 32 else "<f8").astype(np.float32)
    else:
        raise InvalidInputError(f"{path}: WAV format {tag} with {bits}-bit samples is not supported (PCM 8/16/24/32, "
                                f"float 32/64)")
    if channels > 1:
        x = x.reshape(-1, channels).mean(axis=1)
    return np.ascontiguousarray(x, dtype=np.float32), rate


def resample(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Polyphase resampling (an anti-aliasing FIR filter, scipy.signal.resample_poly)."""
    if rate == target:
        return np.asarray(audio, dtype=np.float32)
    from scipy.signal import resample_poly
    g = math.gcd(rate, target)
    return resample_poly(np.asarray(audio, dtype=np.float64), target // g, rate // g).astype(np.float32)


class Vad:
    """Silero VAD on an engine Session. ``model``: a path to one of silero-vad's ONNX files (converted on load)
    or to a converted .lstm file; default: the installed package's silero_vad.onnx."""

    def __init__(self, model=None, threads: int = 1):
        from .session import Session
        path = os.fspath(model) if model is not None else default_model()
        if path.endswith(".onnx"):
            from converters.onnx import onnx_to_model      # needs the onnx package (pip install lstm-engine[convert])
            source = onnx_to_model(path)
        else:
            source = path
        self.path = path
        self.session = Session(source, threads=threads)
        names = self.session._input_names
        self.takes_rate = "sr" in names
        self.sequence = "h" in names and "c" in names      # silero_vad_16k_sequence.onnx: rows of frames
        info = self.session.model.stream
        if not info or not info.get("state"):
            raise EngineError(f"{path}: not a Silero VAD model (no state input/output pair to stream)")
        self._rank = len(self.session.model.input(info["input"]).shape)

    def rates(self) -> tuple:
        """The rates the model runs at: 16000, and 8000 when it takes a rate and its file name does not say 16k
        (silero-vad's own rule: silero_vad_16k_op15.onnx takes ``sr`` but has only the 16 kHz model)."""
        name = os.path.basename(self.session.model.origin.get("file") or self.path)
        if not self.takes_rate or self.sequence or "16k" in name:
            return (16000,)
        return (16000, 8000)

    def _chunk_shape(self, rate):
        n, ctx = CHUNK[rate]
        return (n + ctx,) if self._rank == 2 and self.sequence else (1, n + ctx)

    def _stream(self, rate):
        fixed = {"sr": np.array(rate, dtype=np.int64)} if self.takes_rate else None
        return self.session.stream(inputs=fixed)

    def probabilities(self, audio: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
        """Speech probability of every 32 ms chunk: (probabilities, the model rate they were computed at: 8000 for
        8 kHz audio when the model has an 8 kHz branch, else 16000)."""
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise InvalidInputError(f"audio must be one channel (1-D), got shape {audio.shape}")
        if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate < 1:
            raise InvalidInputError(f"the sample rate must be a positive integer, got {rate!r}")
        rate = int(rate)
        target = 8000 if rate == 8000 and 8000 in self.rates() else 16000
        x = resample(audio, rate, target)
        n, ctx = CHUNK[target]
        chunks = max(1, -(-len(x) // n))
        padded = np.zeros(ctx + chunks * n, np.float32)
        padded[ctx:ctx + len(x)] = x
        stream = self._stream(target)
        shape = self._chunk_shape(target)
        probs = np.empty(chunks, np.float32)
        for k in range(chunks):
            frame = padded[k * n:k * n + n + ctx].reshape(shape)
            probs[k] = float(np.asarray(stream.step(frame)).reshape(-1)[0])
        return probs, target

    def segments(self, audio: np.ndarray, rate: int, **rules) -> list:
        """Speech segments in seconds: [{"start": s, "end": e}, ...] (rules: see ``speech_segments``)."""
        probs, target = self.probabilities(audio, rate)
        n = -(-len(audio) * target // int(rate))        # the resampled length (resample_poly's)
        return [{"start": round(s / target, 3), "end": round(e / target, 3)}
                for s, e in speech_segments(probs, target, n, **rules)]


def speech_segments(probs, rate: int, num_samples: int, threshold: float = 0.5, min_speech_ms: int = 250,
                    min_silence_ms: int = 100, pad_ms: int = 30, max_speech_s: float = math.inf,
                    neg_threshold: float | None = None, min_silence_at_max_speech_ms: int = 98) -> list:
    """[(start, end)] in samples from per-chunk probabilities, by silero-vad's rules (get_speech_timestamps, 6.2):
    speech starts at a chunk >= threshold and ends after ``min_silence_ms`` below ``neg_threshold`` (default
    threshold - 0.15); segments shorter than ``min_speech_ms`` are dropped; a segment longer than ``max_speech_s``
    is cut at its longest silence of more than ``min_silence_at_max_speech_ms`` (or where it reaches the limit);
    each segment is padded by ``pad_ms`` (half the gap where two are closer than twice that)."""
    window = CHUNK[rate][0] if rate in CHUNK else 512
    min_speech = rate * min_speech_ms / 1000
    pad = rate * pad_ms / 1000
    max_speech = rate * max_speech_s - window - 2 * pad
    min_silence = rate * min_silence_ms / 1000
    min_silence_at_max = rate * min_silence_at_max_speech_ms / 1000
    low = max(threshold - 0.15, 0.01) if neg_threshold is None else neg_threshold
    segs, cur = [], {}
    triggered = False
    temp_end = prev_end = next_start = 0
    possible_ends = []
    for i, p in enumerate(probs):
        at = window * i
        if p >= threshold and temp_end:
            if at - temp_end > min_silence_at_max:
                possible_ends.append((temp_end, at - temp_end))
            temp_end = 0
            if next_start < prev_end:
                next_start = at
        if p >= threshold and not triggered:
            triggered = True
            cur = {"start": at}
            continue
        if triggered and at - cur["start"] > max_speech:
            if possible_ends:
                prev_end, dur = max(possible_ends, key=lambda e: e[1])
                cur["end"] = prev_end
                segs.append(cur)
                cur = {}
                next_start = prev_end + dur
                if next_start < prev_end + at:
                    cur["start"] = next_start
                else:
                    triggered = False
                prev_end = next_start = temp_end = 0
                possible_ends = []
            else:
                cur["end"] = at
                segs.append(cur)
                cur = {}
                prev_end = next_start = temp_end = 0
                triggered = False
                possible_ends = []
                continue
        if p < low and triggered:
            if not temp_end:
                temp_end = at
            if at - temp_end < min_silence:
                continue
            cur["end"] = temp_end
            if cur["end"] - cur["start"] > min_speech:
                segs.append(cur)
            cur = {}
            prev_end = next_start = temp_end = 0
            triggered = False
            possible_ends = []
    if cur and num_samples - cur["start"] > min_speech:
        cur["end"] = num_samples
        segs.append(cur)
    for i, s in enumerate(segs):
        if i == 0:
            s["start"] = int(max(0, s["start"] - pad))
        if i != len(segs) - 1:
            gap = segs[i + 1]["start"] - s["end"]
            if gap < 2 * pad:
                s["end"] += int(gap // 2)
                segs[i + 1]["start"] = int(max(0, segs[i + 1]["start"] - gap // 2))
            else:
                s["end"] = int(min(num_samples, s["end"] + pad))
                segs[i + 1]["start"] = int(max(0, segs[i + 1]["start"] - pad))
        else:
            s["end"] = int(min(num_samples, s["end"] + pad))
    return [(s["start"], s["end"]) for s in segs]
