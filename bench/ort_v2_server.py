"""The comparison server for bench/serve_load.py: the same V2 server (engine/serve.py: Starlette, uvicorn, the same
parsing, limits, sequence table and worker pool), with onnxruntime running the model the way its users serve
stateful LSTMs: one ``InferenceSession`` per live sequence, the recurrent state passed in and out on every call.

    python -m bench.ort_v2_server charlm.onnx --port 8001 --workers 2

Sequences: the model's first input is the stream input; its other inputs are the state, fed (zeros at the start)
from the outputs after the first, in order (charlm: tokens, h0, c0 -> logits, h_n, c_n). Whole-sequence requests
go to one shared session and must carry every input, as with ``InferenceSession.run``.
"""
from __future__ import annotations

import argparse
import os

import numpy as np
import onnxruntime as ort

from engine.serve import _ONNX_TO_DTYPE, DATATYPES, MAX_REQUEST_BYTES, ServeError, _config, build_app


def _options():
    o = ort.SessionOptions()
    o.intra_op_num_threads = 1        # as the engine's Session(threads=1): the workers use one core each
    o.inter_op_num_threads = 1
    o.log_severity_level = 3
    return o


class OrtModel:
    """An ONNX file served by onnxruntime, with engine/serve.py's model interface (see ServedModel)."""

    def __init__(self, path: str):
        self.path = path
        self.name = os.path.splitext(os.path.basename(path))[0]
        with open(path, "rb") as f:
            self.onnx = f.read()
        self.session = ort.InferenceSession(self.onnx, _options(), providers=["CPUExecutionProvider"])
        ins, outs = self.session.get_inputs(), self.session.get_outputs()
        self.inputs = {a.name: _ONNX_TO_DTYPE[a.type] for a in ins}
        self.outputs = {a.name: _ONNX_TO_DTYPE[a.type] for a in outs}
        self.ranks = {a.name: len(a.shape) for a in ins}
        self.metadata = {"name": self.name, "versions": ["1"], "platform": "onnxruntime",
                         "inputs": [_meta(a) for a in ins], "outputs": [_meta(a) for a in outs]}
        self.stream_input = ins[0].name
        self.stream_shape = ins[0].shape
        self.state_inputs = [(a.name, a.shape, np.dtype(_ONNX_TO_DTYPE[a.type])) for a in ins[1:]]
        self.state_outputs = [a.name for a in outs[1:1 + len(self.state_inputs)]]
        self.output_index = {a.name: k for k, a in enumerate(outs)}
        self.stream_error = None if len(self.state_outputs) == len(self.state_inputs) else \
            "its state inputs and outputs do not pair up"

    def run(self, output_names, feeds):
        try:
            return self.session.run(output_names, feeds)
        except Exception as e:     # onnxruntime's errors for bad inputs (shape, missing input) are the caller's
            raise ServeError(400, f"onnxruntime: {e}") from None

    def new_stream(self, x):
        return OrtSequence(self, x)


class OrtSequence:
    """One live sequence: its own InferenceSession and state arrays (the pattern of onnxruntime's users)."""
    time_axis = None              # every request's chunk goes to run() whole, time axis included
    output_time_axes = {}

    def __init__(self, model: OrtModel, x):
        self.model = model
        self.session = ort.InferenceSession(model.onnx, _options(), providers=["CPUExecutionProvider"])
        dims = {d: n for d, n in zip(model.stream_shape, x.shape) if isinstance(d, str)}
        self.state = {name: np.zeros([dims.get(d, 1) if isinstance(d, str) else d for d in shape], dtype)
                      for name, shape, dtype in model.state_inputs}

    def step(self, x, name):
        m = self.model
        try:
            outs = self.session.run(None, {m.stream_input: x, **self.state})
        except Exception as e:     # as OrtModel.run
            raise ServeError(400, f"onnxruntime: {e}") from None
        for (state_name, _, _), k in zip(m.state_inputs, range(1, 1 + len(m.state_inputs))):
            self.state[state_name] = outs[k]
        return outs[m.output_index[name]]


def _meta(arg):
    return {"name": arg.name, "datatype": DATATYPES[_ONNX_TO_DTYPE[arg.type]],
            "shape": [d if isinstance(d, int) else -1 for d in arg.shape]}


def main(argv=None):
    import uvicorn
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8001)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--max-sequences", type=int, default=1000)
    p.add_argument("--sequence-timeout", type=float, default=60.0)
    p.add_argument("--max-request-bytes", type=int, default=MAX_REQUEST_BYTES)
    a = p.parse_args(argv)
    app = build_app([OrtModel(m) for m in a.models], workers=a.workers, max_sequences=a.max_sequences,
                    sequence_timeout=a.sequence_timeout, max_request_bytes=a.max_request_bytes)
    try:
        uvicorn.Server(_config(app, a.host, a.port, log_level="warning")).run()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
