"""Real speech made on the spot with espeak-ng and sox: the audio of the VAD demo and of the Silero VAD tests.

    info = make_speech_wav("speech16k.wav", seed=0)         # 16 kHz mono 16-bit WAV
    info = make_speech_wav_48k("speech48k.wav", seed=0)     # the same scene at 48 kHz (get_speech_timestamps
                                                            # decimates multiples of 16 kHz by slicing)
    info = make_speech_wav_8k("speech8k.wav", seed=0)       # the same scene at 8 kHz (the 8 kHz branch)
    audio, sr = read_wav(info.path)                         # float32 in [-1, 1), no torchaudio needed

A scene is: a lead-in silence, then a few English sentences spoken by espeak-ng (voice, speed and pitch drawn
from the seed) with silent gaps between them (lengths drawn from the seed), low-level noise over the whole
thing, peak-normalised to -3 dBFS. The result is deterministic for a given seed and rate: espeak-ng's output
is, and sox runs in repeatable mode (-R) without dither (-D); the noise differs between seeds because each
seed reads it from another offset of sox's repeatable noise.

`SpeechWav.speech` gives the sample ranges where the sentences were placed (the ground truth a VAD should
roughly find; espeak's own leading/trailing silence inside a sentence is included).

Missing tools raise SpeechToolsMissing with the apt command (tests/audio_fixture.py turns it into a skip).
Needs: `apt-get install -y espeak-ng sox` (Debian); numpy.
"""
from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass, field

import numpy as np

APT_COMMAND = "apt-get update && apt-get install -y espeak-ng sox"

SENTENCES = [
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
]
VOICES = ["en-us", "en-gb", "en-us+f3", "en-gb+m3", "en-gb-scotland+f2", "en-gb-x-rp+m7"]


@dataclass
class SpeechWav:
    path: str
    sample_rate: int
    num_samples: int
    speech: list = field(default_factory=list)   # [(start_sample, end_sample)] of each spoken sentence
    sentences: list = field(default_factory=list)
    seed: int = 0

    @property
    def seconds(self) -> float:
        return self.num_samples / self.sample_rate


def tools_missing() -> list[str]:
    return [t for t in ("espeak-ng", "sox") if shutil.which(t) is None]


class SpeechToolsMissing(RuntimeError):
    """espeak-ng or sox is not installed."""


def require_tools():
    missing = tools_missing()
    if missing:
        raise SpeechToolsMissing(f"{' and '.join(missing)} not installed; on Debian: {APT_COMMAND}")


def _run(cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _samples(path) -> int:
    with wave.open(path, "rb") as w:
        return w.getnframes()


def _scene(seed: int):
    rng = random.Random(seed)
    n = rng.randint(4, 5)
    sentences = rng.sample(SENTENCES, n)
    takes = []
    for s in sentences:
        takes.append(dict(text=s, voice=rng.choice(VOICES), speed=rng.randint(140, 185),
                          pitch=rng.randint(30, 70)))
    lead = round(rng.uniform(0.6, 1.2), 2)
    gaps = [round(rng.uniform(0.4, 1.6), 2) for _ in range(n - 1)]
    tail = round(rng.uniform(0.6, 1.2), 2)
    noise_db = rng.uniform(-42, -34)           # noise peak level before the final -3 dB normalisation
    noise_offset = 0.5 + 0.37 * (seed % 97)    # where in sox's repeatable noise this seed's noise starts
    return takes, lead, gaps, tail, noise_db, noise_offset


def make_speech_wav_at(path: str, sample_rate: int, seed: int = 0) -> SpeechWav:
    """Render the seed's scene as a mono 16-bit WAV at `sample_rate` (8000, 16000, 48000, ...)."""
    require_tools()
    takes, lead, gaps, tail, noise_db, noise_offset = _scene(seed)
    sox = ["sox", "-R", "-D"]
    fmt = ["-r", str(sample_rate), "-c", "1", "-b", "16", "-e", "signed-integer"]
    with tempfile.TemporaryDirectory(prefix="speechwav") as tmp:
        parts, speech = [], []
        pos = 0

        def silence(seconds, name):
            nonlocal pos
            p = os.path.join(tmp, name)
            _run(sox + ["-n"] + fmt + [p, "trim", "0", f"{seconds}"])
            parts.append(p)
            pos += _samples(p)

        silence(lead, "lead.wav")
        for i, t in enumerate(takes):
            raw = os.path.join(tmp, f"say{i}.wav")
            _run(["espeak-ng", "-v", t["voice"], "-s", str(t["speed"]), "-p", str(t["pitch"]), "-w", raw, t["text"]])
            res = os.path.join(tmp, f"say{i}_{sample_rate}.wav")
            _run(sox + [raw] + fmt + [res])   # sox resamples (rate effect added automatically)
            n = _samples(res)
            speech.append((pos, pos + n))
            parts.append(res)
            pos += n
            if i < len(gaps):
                silence(gaps[i], f"gap{i}.wav")
        silence(tail, "tail.wav")
        clean = os.path.join(tmp, "clean.wav")
        _run(sox + parts + [clean])
        total = _samples(clean)
        noise = os.path.join(tmp, "noise.wav")
        # repeatable pink noise, read from a seed-dependent offset, cut to the scene's length
        _run(sox + ["-n"] + fmt + [noise, "synth", f"{noise_offset + total / sample_rate + 1:.4f}", "pinknoise",
                                   "trim", f"{noise_offset:.4f}", f"{total}s", "gain", "-n", f"{noise_db:.2f}"])
        mixed = os.path.join(tmp, "mixed.wav")
        _run(sox + ["-m", "-v", "1", clean, "-v", "1", noise] + fmt + [mixed, "gain", "-n", "-3"])
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        shutil.copyfile(mixed, path)
    return SpeechWav(path=path, sample_rate=sample_rate, num_samples=_samples(path), speech=speech,
                     sentences=[t["text"] for t in takes], seed=seed)


def make_speech_wav(path: str, seed: int = 0) -> SpeechWav:
    """16 kHz mono 16-bit WAV of a few spoken sentences with silent gaps and low-level noise."""
    return make_speech_wav_at(path, 16000, seed)


def make_speech_wav_48k(path: str, seed: int = 0) -> SpeechWav:
    """The same scene at 48 kHz (silero-vad takes multiples of 16 kHz by keeping every 3rd sample)."""
    return make_speech_wav_at(path, 48000, seed)


def make_speech_wav_8k(path: str, seed: int = 0) -> SpeechWav:
    """The same scene at 8 kHz (the 8 kHz model of the files that have one)."""
    return make_speech_wav_at(path, 8000, seed)


def read_wav(path: str) -> tuple[np.ndarray, int]:
    """Mono 16-bit PCM WAV -> (float32 samples in [-1, 1), sample rate), as torchaudio would load it."""
    with wave.open(path, "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit PCM, got {8 * w.getsampwidth()}-bit")
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        channels, sr = w.getnchannels(), w.getframerate()
    audio = data.astype(np.float32) / 32768.0
    if channels > 1:
        audio = audio.reshape(-1, channels).mean(axis=1)
    return audio, sr


if __name__ == "__main__":  # python -m engine.speech OUT.wav [seed] [rate]
    import sys

    out = sys.argv[1] if len(sys.argv) > 1 else "speech16k.wav"
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    rate = int(sys.argv[3]) if len(sys.argv) > 3 else 16000
    info = make_speech_wav_at(out, rate, seed)
    print(f"{info.path}: {info.seconds:.2f} s at {info.sample_rate} Hz, speech at {info.speech}")
