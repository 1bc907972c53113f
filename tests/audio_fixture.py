"""The speech fixtures of the Silero VAD tests (engine/speech.py), skipping a test when espeak-ng or sox is missing.

    info = make_speech_wav("speech16k.wav", seed=0)   # and make_speech_wav_48k / make_speech_wav_8k / _at(rate)
    audio, sr = read_wav(info.path)
"""
import functools

import pytest

from engine import speech
from engine.speech import APT_COMMAND, SpeechWav, read_wav, tools_missing  # noqa: F401


def _skipping(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except speech.SpeechToolsMissing as e:
            pytest.skip(str(e))
    return wrapper


make_speech_wav_at = _skipping(speech.make_speech_wav_at)
make_speech_wav = _skipping(speech.make_speech_wav)
make_speech_wav_48k = _skipping(speech.make_speech_wav_48k)
make_speech_wav_8k = _skipping(speech.make_speech_wav_8k)
