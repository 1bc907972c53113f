"""Check the onnxruntime oracle (tests/silero_oracle.py) on all six Silero VAD files and time onnxruntime.

    python -m bench.silero_oracle_check                # makes the speech fixtures in a temporary folder
    python -m bench.silero_oracle_check --chunks 2000  # chunks timed per file (median reported)

For every file and every rate it supports (16 kHz; 8 kHz where the file has an 8 kHz model; 48 kHz input,
which silero-vad decimates to 16 kHz): the number of chunks, the range of the per-chunk probabilities, the
segments of silero-vad's get_speech_timestamps, whether get_speech_timestamps_from_probs on the oracle's
probabilities gives the same segments, whether silero-vad's own OnnxWrapper gives the same probabilities
(where it can run the file), the largest difference from silero_vad.onnx at the same rate, and onnxruntime's
median time per chunk on one thread. Needs espeak-ng and sox, onnxruntime, torch, silero-vad.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

from engine import speech as audio_fixture  # noqa: E402
import silero_oracle as so  # noqa: E402


def wrapper_probs(audio, sr, path):
    """silero-vad's own OnnxWrapper, chunk by chunk as get_speech_timestamps drives it."""
    import torch
    from silero_vad.utils_vad import OnnxWrapper

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = OnnxWrapper(path, force_onnx_cpu=True)
    dec, msr, _ = so._decimate(audio, sr)
    n, _ = so.chunk_sizes(msr)
    w.reset_states()
    out = []
    for i in range(0, len(dec), n):
        chunk = dec[i: i + n]
        chunk = np.pad(chunk, (0, n - len(chunk)))
        out.append(w(torch.from_numpy(chunk.copy()), msr).item())
    return np.asarray(out, np.float32)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chunks", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-timing", action="store_true")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        wavs = {16000: audio_fixture.make_speech_wav(os.path.join(tmp, "s16.wav"), args.seed)}
        t16 = time.perf_counter() - t0
        wavs[8000] = audio_fixture.make_speech_wav_8k(os.path.join(tmp, "s8.wav"), args.seed)
        wavs[48000] = audio_fixture.make_speech_wav_48k(os.path.join(tmp, "s48.wav"), args.seed)
        t_all = time.perf_counter() - t0
        audio = {sr: audio_fixture.read_wav(w.path)[0] for sr, w in wavs.items()}
        w16 = wavs[16000]
        print(f"fixture seed {args.seed}: {w16.seconds:.2f} s, sentences at (16 kHz samples) {w16.speech}; "
              f"made in {t16:.2f} s (16 kHz), {t_all:.2f} s (16 + 8 + 48 kHz)\n")
        print("| file | input rate | chunks | prob min..max | segments | from_probs = get_speech_timestamps "
              "| OnnxWrapper | max diff vs silero_vad.onnx | ORT us/chunk (median, 1 thread) |")
        print("|---|---|---|---|---|---|---|---|---|")
        ref = {}
        for f in so.ALL_FILES:
            path = so.silero_file(f)
            info = so.FILES[f]
            rates = [16000, 48000] + ([8000] if 8000 in info["rates"] else [])
            timing = {}
            if not args.no_timing:
                timing[16000] = so.time_per_chunk(path, n_chunks=args.chunks, audio=audio[16000])
                if 8000 in info["rates"]:
                    timing[8000] = so.time_per_chunk(path, n_chunks=args.chunks, sr=8000, audio=audio[8000])
            for sr in rates:
                r = so.oracle((audio[sr], sr), path)
                same = r.segments_from(r.probs) == r.segments
                try:
                    wp = wrapper_probs(audio[sr], sr, path)
                    wrap = f"probs max diff {np.abs(wp - r.probs).max():.1e}"
                except Exception as e:  # noqa: BLE001
                    wrap = f"fails ({type(e).__name__}: {str(e).split(':')[-1].strip()[:40]})"
                if f == "silero_vad.onnx":
                    ref[sr] = r.probs
                diff = f"{np.abs(r.probs - ref[sr]).max():.1e}" if sr in ref and len(ref[sr]) == len(r.probs) else "-"
                segs = ", ".join(f"{s['start']}-{s['end']}" for s in r.segments)
                t = ""
                if sr in timing:
                    tm = timing[sr]
                    t = f"{tm['median_us']:.1f} (p10 {tm['p10_us']:.1f}, p90 {tm['p90_us']:.1f})"
                    if "block512_us_per_frame" in tm:
                        t += f"; 512-frame blocks: {tm['block512_us_per_frame']:.1f}/frame"
                print(f"| {f} | {sr} | {len(r.probs)} | {r.probs.min():.4f}..{r.probs.max():.4f} | "
                      f"{len(r.segments)}: {segs} | {same} | {wrap} | {diff} | {t} |")


if __name__ == "__main__":
    main()
