"""The Silero VAD test fixtures themselves: the espeak-ng/sox speech audio and the onnxruntime oracle.

Skipped without espeak-ng and sox (apt-get install -y espeak-ng sox) or without silero-vad
(pip install --no-deps silero-vad==6.2.3).
"""
import warnings

import numpy as np
import pytest

pytestmark = pytest.mark.slow   # onnxruntime, torch (silero-vad's utilities are the oracle)

from audio_fixture import make_speech_wav, make_speech_wav_48k, make_speech_wav_8k, read_wav

pytest.importorskip("onnxruntime")
try:
    import torch
    _torch_threads = torch.get_num_threads()
except ImportError:
    torch = None
pytest.importorskip("silero_vad", reason="pip install --no-deps silero-vad==6.2.3")
if torch is not None:
    torch.set_num_threads(_torch_threads)   # `import silero_vad` sets torch to 1 thread for the whole process
import silero_oracle as so  # noqa: E402


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    d = tmp_path_factory.mktemp("speech")
    return {16000: make_speech_wav(str(d / "s16.wav"), seed=0),
            8000: make_speech_wav_8k(str(d / "s8.wav"), seed=0),
            48000: make_speech_wav_48k(str(d / "s48.wav"), seed=0)}


def test_fixture_is_deterministic_and_seeded(wavs, tmp_path):
    w = wavs[16000]
    again = make_speech_wav(str(tmp_path / "again.wav"), seed=0)
    other = make_speech_wav(str(tmp_path / "other.wav"), seed=1)
    assert open(w.path, "rb").read() == open(again.path, "rb").read()
    assert open(w.path, "rb").read() != open(other.path, "rb").read()
    audio, sr = read_wav(w.path)
    assert sr == 16000 and audio.dtype == np.float32 and len(audio) == w.num_samples
    assert 8 < w.seconds < 40 and len(w.speech) >= 4
    assert 0.5 < np.abs(audio).max() < 0.75            # normalised to -3 dBFS
    silence = audio[: w.speech[0][0] - 800]
    assert 1e-4 < np.sqrt(np.mean(silence ** 2)) < 1e-2  # low-level noise, not digital silence


def overlaps(seg, span, step=1):
    return seg["start"] < span[1] * step and span[0] * step < seg["end"]


@pytest.mark.parametrize("name", so.ALL_FILES)
def test_oracle_finds_the_sentences(wavs, name):
    w = wavs[16000]
    r = so.oracle(w.path, so.silero_file(name))
    assert len(r.probs) == -(-w.num_samples // 512)
    assert 0.0 <= r.probs.min() < 0.05 and r.probs.max() > 0.95
    assert r.segments_from(r.probs) == r.segments      # silero's state machine on our probs = its own run
    for span in w.speech:                              # every sentence is found, nothing else
        assert any(overlaps(s, span) for s in r.segments), (span, r.segments)
    for s in r.segments:
        assert any(overlaps(s, span) for span in w.speech), (s, w.speech)


@pytest.mark.parametrize("name", ["silero_vad.onnx", "silero_vad_16k_op15.onnx", "silero_vad_op18_ifless.onnx"])
@pytest.mark.parametrize("rate", [16000, 8000, 48000])
def test_oracle_is_silero_onnxwrapper(wavs, name, rate):
    torch = pytest.importorskip("torch")
    from silero_vad.utils_vad import OnnxWrapper, get_speech_timestamps

    path = so.silero_file(name)
    if rate == 8000 and 8000 not in so.FILES[name]["rates"]:
        pytest.skip("16 kHz-only file")
    audio, sr = read_wav(wavs[rate].path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapper = OnnxWrapper(path, force_onnx_cpu=True)
        expected = get_speech_timestamps(torch.from_numpy(audio), wrapper, sampling_rate=sr)
    r = so.oracle((audio, sr), path)
    assert r.segments == expected
    assert r.segments_from(r.probs) == expected


def test_sequence_file_matches_streaming_file(wavs):
    audio, sr = read_wav(wavs[16000].path)
    seq = so.chunk_probs(audio, sr, so.silero_file("silero_vad_16k_sequence.onnx"))
    stream = so.chunk_probs(audio, sr, so.silero_file("silero_vad.onnx"))
    np.testing.assert_allclose(seq, stream, atol=1e-6)
