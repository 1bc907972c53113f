"""The ``lstm-engine`` command line: convert, inspect, run, vad, warmup, build-runtime, demo, bench, serve.

Errors are one clear line on stderr and exit status 2; no tracebacks for things a user can get wrong.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from .bench_cli import add_bench_parser, cmd_bench
from .errors import EngineError

EPILOG = """examples:
  lstm-engine convert model.onnx -o model.lstm
  lstm-engine convert lstm_state.pt -o model.lstm --batch-first
  lstm-engine convert rnn_state.safetensors -o model.lstm --nonlinearity relu
  lstm-engine convert model.onnx -o model-int8.lstm --weights int8
  lstm-engine inspect model.lstm
  lstm-engine inspect model.lstm --code --shape X=100,1,64
  lstm-engine warmup
  lstm-engine build-runtime --target x86-64-v3 -o runtime/
  lstm-engine run model.lstm --input X=x.npy -o out.npz
  lstm-engine vad talk.wav --json
  lstm-engine demo
  lstm-engine bench --quick
  lstm-engine serve model.lstm other.onnx --port 8000
"""


def _parser():
    p = argparse.ArgumentParser(
        prog="lstm-engine",
        description="A Numba-jitted CPU inference engine for LSTM models, with onnxruntime's API. "
                    "Convert ONNX or PyTorch models into one versioned model file, inspect it, run it, and compare "
                    "it with onnxruntime.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"lstm-engine {_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    c = sub.add_parser("convert", help="convert an ONNX file or a PyTorch state dict to an lstm-engine model file",
                       description="Convert an ONNX model (from either PyTorch exporter or any other producer) or a "
                                   "state dict of a PyTorch nn.LSTM, nn.GRU, nn.RNN, nn.LSTMCell, nn.GRUCell or "
                                   "nn.RNNCell (torch.save'd, read with weights_only=True, or safetensors) into one "
                                   "lstm-engine model file. The kind of input is detected from its content; the kind "
                                   "of layer from the state dict's keys and shapes.")
    c.add_argument("source", help="an .onnx file, or a state dict (.pt/.pth/.safetensors)")
    c.add_argument("-o", "--output", required=True, help="the model file to write (conventionally .lstm)")
    c.add_argument("--batch-first", action="store_true",
                   help="state dicts only: the module was built with batch_first=True (torch keeps this flag "
                        "outside the weights); inputs are then (batch, time, features)")
    c.add_argument("--kind", default=None, choices=["lstm", "gru", "rnn", "lstm_cell", "gru_cell", "rnn_cell"],
                   help="state dicts only: the recurrent module type (default: inferred from the weights)")
    c.add_argument("--nonlinearity", default=None, choices=["tanh", "relu"],
                   help="state dicts of nn.RNN / nn.RNNCell only: their nonlinearity (default: tanh)")
    c.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                   help="state dicts only: the precision of the stored weights (default: float32)")
    c.add_argument("--weights", default="float32", choices=["float32", "bfloat16", "int8"],
                   help="how the LSTM/GRU/RNN W and R matrices are stored: float32 (default), bfloat16 (half the "
                        "size, ~1e-2 from float32) or int8 (a quarter, per-channel symmetric with float32 scales); "
                        "biases stay float32. The engine computes in float32 from the stored weights")
    c.add_argument("--state", action="append", default=[], metavar="INPUT=OUTPUT",
                   help="ONNX only: an input the caller feeds back from an output (the model's state), kept inside "
                        "a stream (repeat for several; default: pairs found by name and shape, such as "
                        "state=stateN or h=hn, c=cn)")
    c.add_argument("--quiet", action="store_true", help="no progress bar or summary")

    i = sub.add_parser("inspect", help="describe a model: layers, sizes, parameters, format version, origin",
                       description="Print a model's inputs, outputs, layers with their attributes, parameter count, "
                                   "format version and origin. Accepts lstm-engine files and ONNX files.")
    i.add_argument("model")
    i.add_argument("--json", action="store_true", help="print the model description as JSON")
    i.add_argument("--code", action="store_true",
                   help="print the program the engine runs for this model: one line per instruction, each naming "
                        "its node (symbolic dimensions 1 unless given with --shape)")
    i.add_argument("--shape", action="append", default=[], metavar="NAME=D,D,...",
                   help="with --code: the shape of an input (repeat for several)")
    i.add_argument("--value", action="append", default=[], metavar="NAME=V",
                   help="with --code: the value of a small integer input that picks the program (e.g. sr=16000 for "
                        "Silero VAD; default 0)")
    i.add_argument("--stream", action="store_true", help="with --code: the program of one streamed step")

    w = sub.add_parser("warmup", help="compile the engine's executor now (once per install) so that models start fast",
                       description="Compile the engine's precompiled executor for float32 and float64 and store it in "
                                   "Numba's cache (next to the installed sources, or NUMBA_CACHE_DIR), and write "
                                   "the package's Python bytecode (which an editable install or "
                                   "PYTHONDONTWRITEBYTECODE leaves to every start). The first Session after an "
                                   "install or upgrade otherwise compiles the executor, which takes about two minutes; "
                                   "run this once in a container build step or after pip install.")
    w.add_argument("--precision", choices=["float32", "float64", "both"], default="both",
                   help="which executor to compile (default: both)")

    b = sub.add_parser("build-runtime", help="compile the executor ahead of time: models then run without Numba",
                       description="Compile the engine's executor (float32 and float64) ahead of time with "
                                   "numba.pycc into an extension module for this machine's Python and numpy. A "
                                   "Session uses it instead of the JIT when it is found (in -o's default location, "
                                   "or where LSTM_ENGINE_RUNTIME points) and was built from the same engine sources; "
                                   "Numba is then not imported. The threaded LSTM kernel is not in it (pycc cannot "
                                   "link Numba's threading layer): the single-thread kernel runs instead.")
    b.add_argument("--target", choices=["host", "x86-64-v3", "generic"], default="host",
                   help="the CPU to compile for: this one (default), any x86-64 with AVX2/FMA, or any x86-64")
    b.add_argument("--no-blas", action="store_true",
                   help="compute matrix products with the engine's own loops instead of BLAS, so that the runtime "
                        "needs no SciPy (slower for large batches)")
    b.add_argument("-o", "--output", default=None, metavar="DIR",
                   help="where to write the runtime (default: $LSTM_ENGINE_CACHE_DIR/runtime, "
                        "~/.cache/lstm-engine/runtime, where the engine looks for it)")
    b.add_argument("--verbose", action="store_true", help="show the compiler's output")

    r = sub.add_parser("run", help="run a model on .npy inputs and save the outputs as .npz",
                       description="Run a model once. Each --input names a model input and a .npy file holding it; "
                                   "the outputs are written to one .npz file under their names.")
    r.add_argument("model")
    r.add_argument("--input", "-i", action="append", default=[], metavar="NAME=FILE.npy",
                   help="an input, as NAME=FILE.npy (repeat for several)")
    r.add_argument("-o", "--output", required=True, help="the .npz file to write")
    r.add_argument("--outputs", nargs="*", default=None, metavar="NAME", help="only these outputs (default: all)")
    r.add_argument("--threads", type=int, default=None, help="threads for the kernels (default: all cores)")
    r.add_argument("--precision", choices=["float32", "float64"], default=None,
                   help="compute precision (default: the model's)")

    v = sub.add_parser("vad", help="voice activity detection: the speech segments of a WAV file (Silero VAD)",
                       description="Find the speech in a WAV file with Silero VAD running on the engine: the audio "
                                   "(PCM or float WAV, mixed to mono) is resampled to 16 kHz with a polyphase filter and "
                                   "streamed through the model in 32 ms chunks, the state kept inside; the segments "
                                   "follow silero-vad's rules (threshold with hysteresis, minimum speech and silence, "
                                   "padding). The default model is silero_vad.onnx from an installed silero-vad "
                                   "package: pip install --no-deps silero-vad.")
    v.add_argument("audio", help="a WAV file (PCM 8/16/24/32-bit or float, any rate, any number of channels)")
    v.add_argument("--model", default=None, metavar="FILE",
                   help="a Silero VAD model: one of silero-vad's .onnx files or a converted .lstm file "
                        "(default: the installed silero-vad package's silero_vad.onnx)")
    v.add_argument("--json", action="store_true", help="print JSON: segments in seconds, and the chunk timing")
    v.add_argument("--threshold", type=float, default=0.5, help="speech probability threshold (default: 0.5)")
    v.add_argument("--min-speech-ms", type=int, default=250, help="drop shorter speech (default: 250)")
    v.add_argument("--min-silence-ms", type=int, default=100,
                   help="silence that ends a segment (default: 100)")
    v.add_argument("--pad-ms", type=int, default=30, help="padding added to each segment (default: 30)")
    v.add_argument("--threads", type=int, default=1, help="kernel threads (default: 1)")

    d = sub.add_parser("demo", help="the main job: the bundled zoo models, run, shown and checked against onnxruntime",
                       description="Convert the bundled models (a character-level LSTM of Python source, a CO2 "
                                   "forecaster, a digit reader, a text-line reader; trained on real data, see "
                                   "bench/zoo), run each on the engine, show what it does (generated code, a "
                                   "forecast chart, test accuracy, lines read back), "
                                   "run Silero VAD on speech made with espeak-ng and sox (needs pip install "
                                   "--no-deps silero-vad and the two Debian packages; skipped with a note without "
                                   "them), check every output against onnxruntime and print both latencies side by "
                                   "side.")
    d.add_argument("--repeats", type=int, default=200, help="timed calls per measurement (default: 200)")
    d.add_argument("--out", default="lstm-engine-demo", metavar="DIR",
                   help="where to write the charts and the speech WAV (default: ./lstm-engine-demo)")
    d.add_argument("--models", default=",".join(("charlm", "co2", "digits", "crnn", "vad")), metavar="NAMES",
                   help="comma-separated subset of charlm, co2, digits, crnn, vad (default: all)")
    add_bench_parser(sub)

    s = sub.add_parser("serve", help="serve models over HTTP: Open Inference Protocol v2 (KServe/Triton), sequences",
                       description="Serve models with the Open Inference Protocol v2 REST API (KServe, Triton; JSON "
                                   "and binary tensors) at /v2/models/NAME/infer, NAME being each file's stem. "
                                   "Stateful sequences as Triton's: request parameters sequence_id, sequence_start, "
                                   "sequence_end; the server keeps each sequence's state. Needs "
                                   "pip install 'lstm-engine[serve]'.")
    s.add_argument("models", nargs="+", metavar="MODEL", help="lstm-engine or ONNX model files")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1; 0.0.0.0 for all)")
    s.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    s.add_argument("--max-sequences", type=int, default=1000, metavar="N",
                   help="live sequences at most, over all models; a start beyond is refused with 429 (default: 1000)")
    s.add_argument("--sequence-timeout", type=float, default=60.0, metavar="S",
                   help="drop a sequence idle for S seconds (default: 60)")
    s.add_argument("--workers", type=int, default=None, metavar="N",
                   help="threads running the models, one core each (default: all cores)")
    s.add_argument("--max-request-bytes", type=int, default=16 << 20, metavar="B",
                   help="largest request body accepted, larger ones get 413 (default: 16 MiB)")
    return p


def _version():
    from . import __version__
    return __version__


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return {"convert": cmd_convert, "inspect": cmd_inspect, "run": cmd_run, "warmup": cmd_warmup,
                "build-runtime": cmd_build_runtime, "demo": cmd_demo, "bench": cmd_bench,
                "serve": cmd_serve, "vad": cmd_vad}[args.command](args) or 0
    except EngineError as e:
        print(f"lstm-engine {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`lstm-engine inspect model | head`): stop quietly, as Unix tools do; point stdout at
        # /dev/null so that the interpreter's final flush does not raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


# ---------------------------------------------------------------------- convert
def _sniff(path):
    """'lstm' (our file), 'safetensors' (a state dict), 'torch' (torch.save zip/pickle) or 'onnx'."""
    from .errors import ConversionError
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except FileNotFoundError:
        raise ConversionError(f"file not found: {path}") from None
    except IsADirectoryError:
        raise ConversionError(f"{path} is a directory") from None
    if len(head) > 8 and head[8:9] == b"{":
        return "lstm" if b'"lstm_engine"' in head or b"lstm_engine" in _header(path) else "safetensors"
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        return "torch"
    return "onnx"


def _header(path):
    import struct
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return f.read(min(n, 64 * 1024 * 1024))


def cmd_convert(args):
    from .errors import ConversionError
    from .model import save
    kind = _sniff(args.source)
    t0 = time.perf_counter()
    if kind == "lstm":
        raise ConversionError(f"{args.source} is already an lstm-engine model file")
    state = {}
    for item in args.state:
        i, sep, o = item.partition("=")
        if not sep or not i or not o:
            raise ConversionError(f"--state {item!r}: expected INPUT=OUTPUT")
        state[i] = o
    if kind == "onnx":
        from converters.onnx import onnx_to_model
        model = onnx_to_model(args.source, progress=not args.quiet, state=state or None)
    else:
        if state:
            raise ConversionError("--state applies to ONNX files (a state dict's layers keep their state inside)")
        from converters.torch_import import torch_to_model
        model = torch_to_model(args.source, batch_first=args.batch_first, kind=args.kind,
                               nonlinearity=args.nonlinearity, dtype=args.dtype)
        model.origin["file"] = os.path.basename(args.source)
    from converters.reduced import reduce_weights
    model = reduce_weights(model, args.weights)
    save(model, args.output)
    if not args.quiet:
        print(f"wrote {args.output}: {_summary(model)} ({time.perf_counter() - t0:.2f}s)")
    return 0


def _summary(model):
    rec = model.recurrent_nodes()
    kinds = ", ".join(f"{n.op}({n.attrs.get('direction', '')}, H={n.attrs.get('hidden_size')})" for n in rec)
    from .quant import summary
    weights = "" if not model.weight_encodings else f", weights {summary(model)}"
    return (f"{len(rec)} recurrent layer(s) [{kinds}], {model.parameter_count():,} parameters, "
            f"{model.dtype}{weights}")


# ---------------------------------------------------------------------- inspect
def cmd_inspect(args):
    import json
    from .session import load_any
    model = load_any(args.model)
    if args.code:
        return _print_code(model, args)
    if args.json:
        meta = model.metadata()
        meta["parameter_count"] = model.parameter_count()
        print(json.dumps(meta, indent=2))
        return 0
    print(f"model:          {args.model}")
    print(f"format:         lstm-engine v{model.format_version} ({model.dtype})")
    origin = ", ".join(f"{k}={v}" for k, v in model.origin.items())
    print(f"origin:         {origin or 'unknown'}")
    print(f"parameters:     {model.parameter_count():,}")
    from .quant import summary
    print(f"weights:        {summary(model)}")
    print("inputs:")
    for s in model.inputs:
        print(f"  {s.name:<14} {str(s.shape):<22} {s.dtype}{' (optional)' if s.optional else ''}")
    print("outputs:")
    for s in model.outputs:
        print(f"  {s.name:<14} {str(s.shape):<22} {s.dtype}")
    print("layers:")
    from .ops import RECURRENT_OP_NAMES
    recurrent = [n for n in model.all_nodes() if n.op in RECURRENT_OP_NAMES]   # If branches included
    for n in recurrent:
        a = n.attrs
        W = model.tensors[n.inputs[1]]
        extras = []
        if a.get("proj_size"):
            extras.append(f"proj_size={a['proj_size']}")
        if a.get("clip") is not None:
            extras.append(f"clip={a['clip']}")
        if a.get("input_forget"):
            extras.append("input_forget")
        if len(n.inputs) > 7 and n.inputs[7]:
            extras.append("peepholes")
        acts = [x[0] for x in a["activations"]]
        if acts != ["Sigmoid", "Tanh", "Tanh"] * (len(acts) // 3):
            extras.append("activations=" + ",".join(acts))
        print(f"  {n.name:<14} {n.op} {a['direction']:<13} input={W.shape[2]} hidden={a['hidden_size']} "
              f"layout={a['layout']} {' '.join(extras)}")
    glue = [n.op for n in model.all_nodes() if n.op not in RECURRENT_OP_NAMES]
    if glue:
        from collections import Counter
        print("other ops:      " + ", ".join(f"{op} x{k}" for op, k in Counter(glue).items()))
    if model.stream:
        axis = model.stream["time_axis"]
        pairs = ", ".join(f"{i} -> {o}" for i, o in model.stream.get("state", []))
        print(f"streaming:      input {model.stream['input']!r}, "
              + (f"time axis {axis}" if axis is not None else "one step per call (a cell)")
              + (f"; state fed back: {pairs}" if pairs else ""))
    else:
        print("streaming:      not available (no free time axis)")
    return 0


def _print_code(model, args):
    from .errors import InvalidInputError
    from .session import Session
    shapes = {}
    for item in args.shape:
        name, _, dims = item.partition("=")
        try:
            shapes[name] = tuple(int(d) for d in dims.split(","))
        except ValueError:
            raise InvalidInputError(f"--shape {item!r}: expected NAME=D,D,... with integer dimensions") from None
    unknown = [n for n in shapes if n not in [s.name for s in model.inputs]]
    if unknown:
        raise InvalidInputError(f"--shape: unknown input(s) {unknown}; the model's inputs are "
                                f"{[s.name for s in model.inputs]}")
    values = {}
    for item in args.value:
        name, _, v = item.partition("=")
        try:
            values[name] = int(v)
        except ValueError:
            raise InvalidInputError(f"--value {item!r}: expected NAME=INTEGER") from None
    sess = Session(model, threads=1)
    print(sess.stream(1).program() if args.stream else sess.program(shapes, values=values))
    return 0


# ---------------------------------------------------------------------- vad
def cmd_vad(args):
    import json
    from .vad import Vad, read_wav
    if not os.path.exists(args.audio):
        raise EngineError(f"{args.audio}: no such file")
    audio, rate = read_wav(args.audio)
    vad = Vad(args.model, threads=args.threads)
    t0 = time.perf_counter()
    segments = vad.segments(audio, rate, threshold=args.threshold, min_speech_ms=args.min_speech_ms,
                            min_silence_ms=args.min_silence_ms, pad_ms=args.pad_ms)
    seconds = time.perf_counter() - t0
    duration = len(audio) / rate
    if args.json:
        print(json.dumps({"audio": args.audio, "seconds": round(duration, 3), "model": vad.path,
                          "segments": segments, "processing_seconds": round(seconds, 4)}))
        return 0
    for seg in segments:
        print(f"{seg['start']:9.3f} - {seg['end']:9.3f} s")
    speech = sum(s["end"] - s["start"] for s in segments)
    print(f"{len(segments)} segment(s), {speech:.2f} s of speech in {duration:.2f} s of audio "
          f"(processed in {seconds:.2f} s, {duration / max(seconds, 1e-9):.0f}x real time)", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------- warmup
def cmd_warmup(args):
    from . import runtime
    from .warmup import compile_bytecode, warm_up
    failed = compile_bytecode()
    print("bytecode: written" if not failed else
          f"bytecode: could not write to {', '.join(failed)} (each start compiles those modules again)")
    rt = runtime.current()
    for precision, seconds in warm_up(("float32", "float64") if args.precision == "both" else (args.precision,)):
        print(f"executor ({precision}) ready in {seconds:.1f}s")
    if rt.name == "aot":
        print(f"runtime: ahead-of-time ({rt.path}); nothing to compile")
    return 0


# ---------------------------------------------------------------------- build-runtime
def cmd_build_runtime(args):
    from . import aot
    print(f"compiling the executor for {args.target}{' without BLAS' if args.no_blas else ''} "
          f"(about a minute of CPU time)...", flush=True)
    info = aot.build(args.output, target=args.target, blas=not args.no_blas, verbose=args.verbose)
    print(f"wrote {info['path']} ({info['size_bytes'] / 2**20:.1f} MiB, {info['build_seconds']:.0f}s; "
          f"cpu {info['cpu']}, {'BLAS through SciPy' if info['blas'] else 'no BLAS'}, numpy {info['numpy']})")
    where = os.path.dirname(info["path"])
    if os.path.abspath(where) not in [os.path.abspath(d) for d in aot.search_dirs()]:
        print(f"sessions use it when LSTM_ENGINE_RUNTIME={where}")
    else:
        print("sessions use it from now on (LSTM_ENGINE_RUNTIME=jit to turn it off)")
    return 0


# ---------------------------------------------------------------------- run
def cmd_run(args):
    import numpy as np
    from .errors import InvalidInputError
    from .session import Session
    feed = {}
    for item in args.input:
        if "=" not in item:
            raise InvalidInputError(f"--input {item!r}: expected NAME=FILE.npy")
        name, path = item.split("=", 1)
        try:
            feed[name] = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise InvalidInputError(f"--input {name}: file not found: {path}") from None
        except ValueError as e:
            raise InvalidInputError(f"--input {name}: {path} is not a readable .npy array ({e})") from None
    sess = Session(args.model, threads=args.threads, precision=args.precision)
    t0 = time.perf_counter()
    outs = sess.run(args.outputs, feed)
    dt = time.perf_counter() - t0
    names = args.outputs or [o.name for o in sess.get_outputs()]
    np.savez(args.output, **dict(zip(names, outs)))
    for n, o in zip(names, outs):
        print(f"{n}: shape {tuple(o.shape)} {o.dtype}")
    print(f"wrote {args.output} (load {sess.load_seconds + sess.pack_seconds:.2f}s, executor "
          f"{sess.compile_seconds:.2f}s, run {dt * 1e3:.2f} ms)")
    return 0


# ---------------------------------------------------------------------- demo
def cmd_demo(args):
    from .demo import MODELS, run_demo
    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise EngineError(f"unknown demo model(s) {unknown or args.models!r}; choose from {', '.join(MODELS)}")
    if args.repeats < 1:
        raise EngineError(f"--repeats must be at least 1, got {args.repeats}")
    return run_demo(repeats=args.repeats, out_dir=args.out, models=models)


# ---------------------------------------------------------------------- serve
def cmd_serve(args):
    for flag, value in (("--max-sequences", args.max_sequences), ("--workers", args.workers or 1),
                        ("--max-request-bytes", args.max_request_bytes)):
        if value < 1:
            raise EngineError(f"{flag} must be at least 1, got {value}")
    if not args.sequence_timeout > 0:
        raise EngineError(f"--sequence-timeout must be positive, got {args.sequence_timeout}")
    try:
        from .serve import serve
        import starlette, uvicorn  # noqa: F401,E401
    except ImportError as e:
        raise EngineError(f"serving needs starlette and uvicorn: pip install 'lstm-engine[serve]' ({e})") from None
    try:
        serve(args.models, args.host, args.port, workers=args.workers, max_sequences=args.max_sequences,
              sequence_timeout=args.sequence_timeout, max_request_bytes=args.max_request_bytes)
    except KeyboardInterrupt:   # uvicorn re-raises Ctrl-C after its graceful shutdown
        print("lstm-engine serve: stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
