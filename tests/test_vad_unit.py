"""engine.vad without a model: WAV reading of every supported layout, resampling, and the segment rules on
hand-made probabilities (fast tier; tests/test_silero.py checks the rules against silero-vad's own code)."""
import struct

import numpy as np
import pytest

from engine.errors import InvalidInputError
from engine.vad import read_wav, resample, speech_segments


def _wav(path, samples, rate, bits, tag=1, extensible=False):
    """Write a WAV by hand: samples (n, channels) as raw little-endian values of the given width."""
    channels = samples.shape[1]
    if tag == 3:
        raw = samples.astype("<f4" if bits == 32 else "<f8").tobytes()
    elif bits == 24:
        v = samples.astype(np.int32).reshape(-1)
        raw = np.stack([v & 255, (v >> 8) & 255, (v >> 16) & 255], axis=1).astype(np.uint8).tobytes()
    else:
        raw = samples.astype({8: np.uint8, 16: "<i2", 32: "<i4"}[bits]).tobytes()
    block = channels * bits // 8
    if extensible:
        fmt = struct.pack("<HHIIHHHHI", 0xFFFE, channels, rate, rate * block, block, bits, 22, bits, 0) + \
            struct.pack("<H", tag) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    else:
        fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"LIST" + struct.pack("<I", 3) + b"abc\x00" + \
        b"data" + struct.pack("<I", len(raw)) + raw
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", len(body)) + body)


@pytest.mark.parametrize("bits,tag,scale,extensible", [(8, 1, 128, False), (16, 1, 32768, False),
                                                       (24, 1, 1 << 23, True), (32, 1, 2 ** 31, False),
                                                       (32, 3, None, True), (64, 3, None, False)])
def test_read_wav_layouts(tmp_path, bits, tag, scale, extensible):
    rng = np.random.default_rng(bits)
    x = rng.uniform(-0.9, 0.9, size=(300, 2))
    if tag == 1:
        stored = np.round(x * scale).astype(np.int64) + (128 if bits == 8 else 0)
        expect = ((stored - (128 if bits == 8 else 0)) / scale).mean(axis=1)
    else:
        stored, expect = x, x.astype(np.float32 if bits == 32 else np.float64).mean(axis=1)
    p = tmp_path / "a.wav"
    _wav(p, stored, 22050, bits, tag, extensible)
    audio, rate = read_wav(p)
    assert rate == 22050 and audio.dtype == np.float32 and audio.shape == (300,)
    np.testing.assert_allclose(audio, expect, atol=1e-6)


def test_read_wav_rejects_what_it_cannot_read(tmp_path):
    for content, msg in ((b"", "RIFF"), (b"RIFF\x00\x00\x00\x00WAVEjunk", "fmt and a data"),
                         (b"RIFF\x10\x00\x00\x00WAVEfmt \x04\x00\x00\x00\x01\x00", "truncated")):
        p = tmp_path / "bad.wav"
        p.write_bytes(content)
        with pytest.raises(InvalidInputError, match=msg):
            read_wav(p)
    p = tmp_path / "alaw.wav"
    _wav(p, np.zeros((10, 1)), 8000, 8, tag=6)
    with pytest.raises(InvalidInputError, match="not supported"):
        read_wav(p)
    with pytest.raises(InvalidInputError, match="No such file"):
        read_wav(tmp_path / "missing.wav")


def test_resample_keeps_a_tone_and_removes_what_aliases():
    t = np.arange(48000) / 48000
    tone = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    high = np.sin(2 * np.pi * 11000 * t).astype(np.float32)       # above 16 kHz's Nyquist: must be filtered out
    y = resample(tone + high, 48000, 16000)
    assert y.shape == (16000,)
    ref = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)
    assert np.abs(y[200:-200] - ref[200:-200]).max() < 0.02
    assert resample(tone, 16000, 16000) is not None


def test_segment_rules_by_hand():
    rate, w = 16000, 512
    probs = [0.0] * 10 + [0.9] * 20 + [0.0] * 10 + [0.9] * 3 + [0.0] * 10
    n = len(probs) * w
    segs = speech_segments(probs, rate, n)
    # one segment: chunks 10..29 (the 3-chunk burst is 96 ms < 250 ms), padded by 30 ms = 480 samples
    assert segs == [(10 * w - 480, 30 * w + 480)]
    # hysteresis: 0.4 is below the threshold but above threshold - 0.15, so speech continues through it
    probs2 = [0.0] * 5 + [0.9] * 10 + [0.4] * 10 + [0.9] * 10 + [0.0] * 10
    assert len(speech_segments(probs2, rate, len(probs2) * w)) == 1
    # a short gap (< 100 ms of silence) does not split; a long one does
    short = [0.9] * 20 + [0.0] * 2 + [0.9] * 20 + [0.0] * 10
    long = [0.9] * 20 + [0.0] * 8 + [0.9] * 20 + [0.0] * 10
    assert len(speech_segments(short, rate, len(short) * w)) == 1
    assert len(speech_segments(long, rate, len(long) * w)) == 2
    # speech to the end of the audio ends at the audio's end
    assert speech_segments([0.9] * 30, rate, 30 * w - 100)[-1][1] == 30 * w - 100
    # max speech: a 3 s segment is cut in pieces of at most ~1 s
    cut = speech_segments([0.9] * 100, rate, 100 * w, max_speech_s=1.0)
    assert len(cut) >= 3 and all(e - s <= rate * 1.1 for s, e in cut)
    assert speech_segments([], rate, 0) == []
