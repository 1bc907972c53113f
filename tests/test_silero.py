"""Silero VAD (every ONNX file of silero-vad 6.2.3) on the engine, against onnxruntime and silero-vad's own code.

Real speech (espeak-ng + sox, tests/audio_fixture.py) at 16 and 8 kHz, fed in 32 ms chunks with context, the state
carried inside an engine stream: every chunk's probability within 1e-4 of onnxruntime's, and the segments equal to
those silero-vad's get_speech_timestamps finds on onnxruntime. Skipped without espeak-ng/sox or silero-vad.
"""
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

pytestmark = pytest.mark.slow   # onnxruntime, torch (silero-vad's utilities are the oracle)

from audio_fixture import make_speech_wav, make_speech_wav_8k, read_wav  # noqa: E402

pytest.importorskip("onnxruntime")
pytest.importorskip("silero_vad", reason="pip install --no-deps silero-vad==6.2.3")
import silero_oracle as so  # noqa: E402

import engine  # noqa: E402
from converters import from_onnx  # noqa: E402
from engine.errors import ConversionError, EngineError, InvalidInputError  # noqa: E402
from engine.vad import Vad, speech_segments  # noqa: E402

ENGINE_CMD = [sys.executable, "-m", "engine.cli"]


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    d = tmp_path_factory.mktemp("speech")
    return {16000: make_speech_wav(str(d / "s16.wav"), seed=3), 8000: make_speech_wav_8k(str(d / "s8.wav"), seed=3)}


@pytest.fixture(scope="module")
def vads():
    return {}


def _vad(vads, name):
    if name not in vads:
        vads[name] = Vad(so.silero_file(name))
    return vads[name]


CASES = [(f, r) for f in so.ALL_FILES for r in so.FILES[f]["rates"]]


@pytest.mark.parametrize("name,rate", CASES, ids=[f"{f}-{r}" for f, r in CASES])
def test_every_chunk_and_segment_matches(wavs, vads, name, rate):
    audio, sr = read_wav(wavs[rate].path)
    vad = _vad(vads, name)
    probs, model_rate = vad.probabilities(audio, sr)
    assert model_rate == rate
    expected = so.oracle((audio, sr), so.silero_file(name))
    assert probs.shape == expected.probs.shape
    assert np.abs(probs - expected.probs).max() <= 1e-4
    assert expected.segments_from(probs) == expected.segments     # silero-vad's rules on the engine's probabilities
    mine = speech_segments(probs, rate, len(audio))                # the engine's own rules, written anew
    assert mine == [(s["start"], s["end"]) for s in expected.segments]
    assert len(mine) >= 4


@pytest.mark.parametrize("rules", [dict(), dict(threshold=0.3), dict(threshold=0.7, min_silence_ms=300),
                                   dict(min_speech_ms=1000, pad_ms=100), dict(max_speech_s=1.5),
                                   dict(max_speech_s=0.8, min_silence_ms=20, threshold=0.4)])
def test_segment_rules_are_silero_vads(wavs, vads, rules):
    audio, sr = read_wav(wavs[16000].path)
    probs, _ = _vad(vads, "silero_vad.onnx").probabilities(audio, sr)
    names = dict(threshold="threshold", min_speech_ms="min_speech_duration_ms",
                 min_silence_ms="min_silence_duration_ms", pad_ms="speech_pad_ms", max_speech_s="max_speech_duration_s")
    theirs = so.timestamps_from_probs(probs, 16000, len(audio), **{names[k]: v for k, v in rules.items()})
    assert speech_segments(probs, 16000, len(audio), **rules) == [(s["start"], s["end"]) for s in theirs]


@pytest.mark.parametrize("name", so.ALL_FILES)
def test_stream_keeps_the_state_pair_inside(name):
    """stream.step(chunk) with the state inside equals onnxruntime with the state passed in and out."""
    path = so.silero_file(name)
    sess = engine.Session(from_onnx(path))
    ort = so.session(path)
    info = so.FILES[name]
    rng = np.random.default_rng(0)
    fixed = {"sr": np.array(16000, dtype=np.int64)} if info["takes_sr"] else None
    stream = sess.stream(inputs=fixed)
    if info["kind"] == "sequence":
        assert sess.model.stream["state"] == [["h", "hn"], ["c", "cn"]]
        h = c = np.zeros((1, 1, 128), np.float32)
        for _ in range(12):
            x = (rng.standard_normal(576) * 0.1).astype(np.float32)
            y = stream.step(x)
            yo, h, c = ort.run(None, {"input": x[None], "h": h, "c": c})
            assert np.abs(y - yo).max() <= 1e-5
        np.testing.assert_allclose(stream.state["h"], h, atol=1e-5)
        return
    assert sess.model.stream["state"] == [["state", "stateN"]]
    state = np.zeros((2, 1, 128), np.float32)
    for k in range(12):
        x = (rng.standard_normal((1, 576)) * 0.1).astype(np.float32)
        y = stream.step(x)
        feed = {"input": x, "state": state, **(fixed or {})}
        yo, state = ort.run(None, feed)
        assert y.shape == (1, 1) and np.abs(y - yo).max() <= 1e-5
    np.testing.assert_allclose(stream.state["state"], state, atol=1e-5)
    stream.reset()
    assert stream.state == {}
    y0 = stream.step(x)
    yo, _ = ort.run(None, {"input": x, "state": np.zeros((2, 1, 128), np.float32), **(fixed or {})})
    assert np.abs(y0 - yo).max() <= 1e-5
    stream.state = {"state": state}
    y1 = stream.step(x)
    yo, _ = ort.run(None, {"input": x, "state": state, **(fixed or {})})
    assert np.abs(y1 - yo).max() <= 1e-5


def test_stream_state_errors():
    sess = engine.Session(from_onnx(so.silero_file("silero_vad.onnx")))
    with pytest.raises(InvalidInputError, match="sr"):
        sess.stream()                                           # sr is neither data nor state
    with pytest.raises(InvalidInputError, match="cannot be fixed"):
        sess.stream(inputs={"state": np.zeros((2, 1, 128), np.float32)})
    st = sess.stream(inputs={"sr": np.array(16000)})
    with pytest.raises(InvalidInputError, match="whole state"):
        st.state = {}
    st.step(np.zeros((1, 576), np.float32))
    with pytest.raises(InvalidInputError, match="shape"):
        st.state = {"state": np.zeros((2, 2, 128), np.float32)}
    with pytest.raises(InvalidInputError, match="unknown output"):
        st.step(np.zeros((1, 576), np.float32), "stateN")
    with pytest.raises(InvalidInputError):
        st.step(np.zeros((1, 576), np.float64).astype(object))


def test_declared_state_pairs(tmp_path):
    path = so.silero_file("silero_vad_16k_sequence.onnx")
    out = tmp_path / "seq.lstm"
    r = subprocess.run(ENGINE_CMD + ["convert", path, "-o", str(out), "--state", "h=hn", "--quiet"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert engine.load(str(out)).stream["state"] == [["h", "hn"]]
    r = subprocess.run(ENGINE_CMD + ["inspect", str(out)], capture_output=True, text=True)
    assert "state fed back: h -> hn" in r.stdout
    with pytest.raises(ConversionError, match="inputs are"):
        from_onnx(path, state={"nope": "hn"})
    with pytest.raises(ConversionError, match="differ"):
        from_onnx(path, state={"input": "hn"})
    r = subprocess.run(ENGINE_CMD + ["convert", path, "-o", str(out), "--state", "h"], capture_output=True, text=True)
    assert r.returncode == 2 and "INPUT=OUTPUT" in r.stderr


def test_one_session_runs_both_rates_by_value():
    """silero_vad.onnx picks its 16 or 8 kHz model by the value of sr: plans are keyed by it, fast path included."""
    path = so.silero_file("silero_vad.onnx")
    sess = engine.Session(from_onnx(path))
    ort = so.session(path)
    rng = np.random.default_rng(1)
    state = np.zeros((2, 1, 128), np.float32)
    for k in range(8):
        rate = (16000, 8000)[k % 2]
        x = (rng.standard_normal((1, 576 if rate == 16000 else 288)) * 0.1).astype(np.float32)
        feed = {"input": x, "state": state, "sr": np.array(rate)}
        for _ in range(2):
            y, s2 = sess.run(None, feed)
            yo, so2 = ort.run(None, feed)
            assert np.abs(y - yo).max() <= 1e-5 and np.abs(s2 - so2).max() <= 1e-5
    with pytest.raises(InvalidInputError):     # the 16 kHz model on 8 kHz-sized input: a clear error
        sess.run(None, {"input": np.zeros((1, 100), np.float32), "state": state, "sr": np.array(16000)})


def test_vad_command(wavs, tmp_path):
    w = wavs[16000]
    r = subprocess.run(ENGINE_CMD + ["vad", w.path, "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    audio, sr = read_wav(w.path)
    expected = so.speech_timestamps(audio, sr, so.silero_file("silero_vad.onnx"))
    assert [(round(s["start"] / sr, 3), round(s["end"] / sr, 3)) for s in expected] == \
        [(s["start"], s["end"]) for s in got["segments"]]
    r = subprocess.run(ENGINE_CMD + ["vad", w.path, "--model", so.silero_file("silero_vad_half.onnx")],
                       capture_output=True, text=True)
    assert r.returncode == 0 and " - " in r.stdout and "segment(s)" in r.stderr
    # a 44.1 kHz stereo 24-bit file: read, mixed, resampled with a filter; the same speech is found
    stereo = tmp_path / "s44.wav"
    subprocess.run(["sox", "-R", "-D", w.path, "-r", "44100", "-c", "2", "-b", "24", str(stereo)], check=True)
    r = subprocess.run(ENGINE_CMD + ["vad", str(stereo), "--json"], capture_output=True, text=True)
    segs44 = json.loads(r.stdout)["segments"]
    assert len(segs44) == len(got["segments"])
    assert all(abs(a["start"] - b["start"]) < 0.1 and abs(a["end"] - b["end"]) < 0.1
               for a, b in zip(segs44, got["segments"]))
    for args, msg in ([str(tmp_path / "missing.wav")], "no such file"), ([__file__], "not a WAV file"), \
            ([w.path, "--model", __file__], "error"):
        r = subprocess.run(ENGINE_CMD + ["vad", *args], capture_output=True, text=True)
        assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr


def test_vad_without_silero_package(monkeypatch):
    import importlib.util

    from engine import vad
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "silero_vad" else real(name, *a))
    with pytest.raises(EngineError, match="pip install --no-deps silero-vad"):
        vad.default_model()


def test_vad_input_errors(vads):
    vad = _vad(vads, "silero_vad.onnx")
    with pytest.raises(InvalidInputError, match="one channel"):
        vad.probabilities(np.zeros((2, 100), np.float32), 16000)
    with pytest.raises(InvalidInputError, match="sample rate"):
        vad.probabilities(np.zeros(100, np.float32), 0)
    probs, rate = vad.probabilities(np.zeros(10, np.float32), 16000)      # shorter than one chunk: zero-padded
    assert probs.shape == (1,) and rate == 16000
    assert os.path.basename(vad.path) == "silero_vad.onnx" and vad.rates() == (16000, 8000)
    assert _vad(vads, "silero_vad_16k_op15.onnx").rates() == (16000,)


def test_sequence_model_in_blocks_matches_stream(wavs, vads):
    """The sequence file run over a whole block of frames equals the same file streamed frame by frame."""
    audio, sr = read_wav(wavs[16000].path)
    rows = so.sequence_frames(audio, sr)[:300]
    sess = engine.Session(from_onnx(so.silero_file("silero_vad_16k_sequence.onnx")))
    z = np.zeros((1, 1, 128), np.float32)
    block, _, _ = sess.run(None, {"input": rows, "h": z, "c": z})
    stream = sess.stream()
    stepped = np.array([stream.step(r).reshape(-1)[0] for r in rows])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.abs(block - stepped).max() <= 1e-5
