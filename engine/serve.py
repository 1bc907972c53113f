"""``lstm-engine serve``: models over HTTP with the Open Inference Protocol v2 (KServe / Triton REST).

    lstm-engine serve charlm.lstm co2.onnx --port 8000 --workers 2

Endpoints (NAME is a model file's stem; ``/v2/models/NAME/versions/1/...`` is accepted too):

    GET  /v2                        server metadata
    GET  /v2/health/live            200 while the process runs
    GET  /v2/health/ready           200 once every model is loaded
    GET  /v2/models/NAME            inputs and outputs: name, datatype (FP32, INT64, ...), shape (-1: any size)
    GET  /v2/models/NAME/ready
    POST /v2/models/NAME/infer      JSON tensors, or Triton's binary tensor data extension

Stateful sequences follow Triton's sequence batcher: the request parameters ``sequence_id`` (a non-zero integer or
a string), ``sequence_start`` and ``sequence_end``. A start creates the sequence's Stream (engine/session.py; its
batch size is the start request's); each request carries one step (time length 1) or a chunk of steps of the
model's stream input, in the model's full shape with its time axis, and gets the requested output (one; default the
first) for those steps; the state stays in the server. ``sequence_end`` drops it, and so does ``--sequence-timeout``
seconds without a request. At most ``--max-sequences`` live at once: a start beyond that is refused with 429.

How it runs: Starlette on uvicorn. The event loop only reads bodies and writes responses; parsing, validation, the
kernel call and encoding run in a pool of ``--workers`` threads. The executor releases the GIL, so N workers keep N
cores busy; each model has one Session (threads=1, so workers do not oversubscribe the cores), shared by the
workers (a Session is thread-safe), and each sequence its own Stream, stepped by one worker at a time (a lock per
sequence). Errors are ``{"error": "..."}`` with a 4xx status (the caller's fault) or 500 (ours; the traceback goes to
the server's log, never into a response). Limits: a request body of at most ``--max-request-bytes`` (413), read
within ``BODY_TIMEOUT`` seconds (408), and at most ``MAX_BODIES`` requests with their bodies in memory at once (the
others wait, unread, under TCP flow control).
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

import numpy as np

from .errors import EngineError, UnsupportedModelError

log = logging.getLogger("lstm_engine.serve")

MAX_REQUEST_BYTES = 16 << 20   # default body limit: JSON of 16 MiB parses into ~250 MiB of Python floats at worst
MAX_BODIES = 64                # requests whose bodies are read and held at once; later ones wait unread
BODY_TIMEOUT = 30.0            # seconds to receive a request's body
MAX_DRAIN = 256 << 20          # bytes of an oversize body read and discarded so the client sees the 413
MAX_RANK = 8

# the V2 datatypes of the dtypes a model can take or return
DATATYPES = {"float32": "FP32", "float64": "FP64", "int32": "INT32", "int64": "INT64", "bool": "BOOL",
             "float16": "FP16"}
_ONNX_TO_DTYPE = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(int32)": "int32",
                  "tensor(int64)": "int64", "tensor(bool)": "bool", "tensor(float16)": "float16"}
_WIRE = {"FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
         "FP16": np.dtype("<f2"), "INT8": np.dtype("i1"), "INT16": np.dtype("<i2"), "UINT8": np.dtype("u1"),
         "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"), "BOOL": np.dtype("?")}


class ServeError(Exception):
    """An error answered to the client: an HTTP status and a message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------------- models
class ServedModel:
    """One model file: its Session, its V2 metadata, and how its sequences stream. What the server asks of a model
    is ``name``, ``path``, ``inputs`` / ``outputs`` ({name: dtype}), ``ranks``, ``metadata``, ``stream_input``,
    ``stream_error``, ``run(output_names, feeds)`` and ``new_stream(x)`` (an object with Stream's ``step(x, name)``,
    ``time_axis`` and ``output_time_axes``); bench/ort_v2_server.py serves onnxruntime through the same interface."""

    def __init__(self, path: str, name: str | None = None):
        from .session import Session
        self.path = path
        self.name = name or os.path.splitext(os.path.basename(path))[0]
        self.session = Session(path, threads=1)
        self.inputs = {a.name: _ONNX_TO_DTYPE[a.type] for a in self.session.get_inputs()}
        self.outputs = {a.name: _ONNX_TO_DTYPE[a.type] for a in self.session.get_outputs()}
        self.ranks = {a.name: len(a.shape) for a in self.session.get_inputs()}
        self.metadata = {
            "name": self.name, "versions": ["1"], "platform": "lstm-engine",
            "inputs": [_tensor_meta(a) for a in self.session.get_inputs()],
            "outputs": [_tensor_meta(a) for a in self.session.get_outputs()]}
        info = self.session.model.stream
        self.stream_input = info["input"] if info else None
        self.time_axis = info["time_axis"] if info else None
        self.batch_axis = info.get("batch_axis") if info else None
        try:
            self.session.stream(1)
            self.stream_error = None
        except UnsupportedModelError as e:
            self.stream_error = str(e)

    def run(self, output_names, feeds):
        return self.session.run(output_names, feeds)

    def new_stream(self, x):
        """A Stream for a sequence whose first request carries ``x`` (its batch size is x's)."""
        batch = x.shape[self.batch_axis] if self.batch_axis is not None and x.ndim > self.batch_axis else 1
        return self.session.stream(int(batch))


def _tensor_meta(arg):
    return {"name": arg.name, "datatype": DATATYPES[_ONNX_TO_DTYPE[arg.type]],
            "shape": [d if isinstance(d, int) else -1 for d in arg.shape]}


# ---------------------------------------------------------------------- sequences
class _Sequence:
    __slots__ = ("stream", "lock", "last_used", "users")

    def __init__(self):
        self.stream = None
        self.lock = threading.Lock()      # one step at a time: a Stream is used by one thread at a time
        self.last_used = time.monotonic()
        self.users = 0                    # requests holding it (not expired while > 0)


class Sequences:
    """The live sequences of every model: {(model name, sequence id): _Sequence}, bounded in number, dropped at
    their end or after ``timeout`` idle seconds."""

    def __init__(self, max_sequences: int, timeout: float):
        self.max_sequences, self.timeout = max_sequences, timeout
        self._live = {}
        self._lock = threading.Lock()
        self.started = self.ended = self.expired = 0

    def __len__(self):
        return len(self._live)

    def enter(self, key, start: bool) -> _Sequence:
        with self._lock:
            seq = self._live.get(key)
            if start:
                if seq is None and len(self._live) >= self.max_sequences:
                    self._expire_locked(time.monotonic())
                    if len(self._live) >= self.max_sequences:
                        raise ServeError(429, f"too many live sequences ({self.max_sequences}, the server's "
                                              f"--max-sequences); end finished sequences with sequence_end, or wait "
                                              f"for idle ones to time out ({self.timeout:g} s)")
                seq = _Sequence()        # a start on a live id starts it afresh
                self._live[key] = seq
                self.started += 1
            elif seq is None:
                raise ServeError(400, f"sequence {key[1]!r} of model {key[0]!r} is not live: start it with "
                                      f"sequence_start=true (it may have ended or been idle longer than "
                                      f"{self.timeout:g} s)")
            seq.users += 1
            return seq

    def leave(self, key, seq: _Sequence, end: bool):
        with self._lock:
            seq.users -= 1
            seq.last_used = time.monotonic()
            if end and self._live.get(key) is seq:
                del self._live[key]
                self.ended += 1

    def expire(self) -> int:
        with self._lock:
            return self._expire_locked(time.monotonic())

    def _expire_locked(self, now):
        old = [k for k, s in self._live.items() if s.users == 0 and now - s.last_used > self.timeout]
        for k in old:
            del self._live[k]
        self.expired += len(old)
        return len(old)


# ---------------------------------------------------------------------- requests
class _Request:
    __slots__ = ("id", "inputs", "outputs", "binary_out", "sequence_id", "start", "end")


def parse_request(model: ServedModel, body: bytes, header_length) -> _Request:
    """Validate an infer request (JSON, or JSON followed by binary tensors) against the model."""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise ServeError(400, f"Inference-Header-Content-Length must be an integer, got {header_length!r}") \
                from None
        if not 0 < n <= len(body):
            raise ServeError(400, f"Inference-Header-Content-Length {n} is outside the body's {len(body)} bytes")
        head, binary = body[:n], memoryview(body)[n:]
    else:
        head, binary = body, memoryview(b"")
    try:
        doc = json.loads(head)
    except (ValueError, RecursionError) as e:
        raise ServeError(400, f"the request is not valid JSON: {_short(e)}") from None
    if not isinstance(doc, dict):
        raise ServeError(400, "the request must be a JSON object with an 'inputs' list")
    params = _params(doc, "the request")
    req = _Request()
    req.id = doc.get("id")
    if req.id is not None and not isinstance(req.id, str):
        raise ServeError(400, "'id' must be a string")

    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise ServeError(400, "'inputs' must be a non-empty list of tensors")
    req.inputs, pos = {}, 0
    for t in raw_inputs:
        name, arr, used = _read_tensor(model, t, binary, pos)
        pos += used
        if name in req.inputs:
            raise ServeError(400, f"input {name!r} is given twice")
        req.inputs[name] = arr
    if pos != len(binary):
        raise ServeError(400, f"the binary part of the body has {len(binary)} bytes, but the inputs' binary_data_size "
                              f"add up to {pos}")

    binary_all = params.get("binary_data_output", False)
    if not isinstance(binary_all, bool):
        raise ServeError(400, "parameter 'binary_data_output' must be true or false")
    raw_outputs = doc.get("outputs")
    if raw_outputs is None:
        req.outputs, req.binary_out = None, {name: binary_all for name in model.outputs}
    else:
        if not isinstance(raw_outputs, list):
            raise ServeError(400, "'outputs' must be a list of {\"name\": ...} objects")
        req.outputs, req.binary_out = [], {}
        for o in raw_outputs:
            if not isinstance(o, dict) or not isinstance(o.get("name"), str):
                raise ServeError(400, "each requested output must be an object with a 'name'")
            name = o["name"]
            if name not in model.outputs:
                raise ServeError(400, f"unknown output {name!r}; model {model.name!r} has outputs "
                                      f"{list(model.outputs)}")
            if name in req.binary_out:
                raise ServeError(400, f"output {name!r} is requested twice")
            binary = _params(o, f"output {name!r}").get("binary_data", binary_all)
            if not isinstance(binary, bool):
                raise ServeError(400, f"output {name!r}: parameter 'binary_data' must be true or false")
            req.outputs.append(name)
            req.binary_out[name] = binary

    seq_id = params.get("sequence_id", 0)
    if isinstance(seq_id, bool) or not isinstance(seq_id, (int, str)) or (isinstance(seq_id, int) and seq_id < 0) \
            or (isinstance(seq_id, str) and len(seq_id) > 256):
        raise ServeError(400, "parameter 'sequence_id' must be a non-negative integer or a string (at most 256 "
                              "characters)")
    req.sequence_id = seq_id if seq_id not in (0, "") else None
    req.start, req.end = params.get("sequence_start", False), params.get("sequence_end", False)
    if not isinstance(req.start, bool) or not isinstance(req.end, bool):
        raise ServeError(400, "parameters 'sequence_start' and 'sequence_end' must be true or false")
    if req.sequence_id is None and (req.start or req.end):
        raise ServeError(400, "sequence_start / sequence_end need a non-zero 'sequence_id'")
    return req


def _params(obj, what):
    p = obj.get("parameters", {})
    if not isinstance(p, dict):
        raise ServeError(400, f"{what}: 'parameters' must be an object")
    return p


def _read_tensor(model, t, binary, pos):
    """(name, array, binary bytes consumed) of one request input, checked against the model's input."""
    if not isinstance(t, dict) or not isinstance(t.get("name"), str):
        raise ServeError(400, "each input must be an object with 'name', 'shape', 'datatype' and 'data' (or the "
                              "parameter 'binary_data_size')")
    name = t["name"]
    if name not in model.inputs:
        raise ServeError(400, f"unknown input {name!r}; model {model.name!r} has inputs {list(model.inputs)}")
    shape = t.get("shape")
    if not isinstance(shape, list) or len(shape) > MAX_RANK or \
            not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ServeError(400, f"input {name!r}: 'shape' must be a list of at most {MAX_RANK} non-negative integers")
    want = DATATYPES[model.inputs[name]]
    datatype = t.get("datatype")
    if datatype != want:
        raise ServeError(400, f"input {name!r}: datatype must be {want}, got {datatype!r}")
    count = math.prod(shape)
    size = _params(t, f"input {name!r}").get("binary_data_size")
    if size is not None:
        wire = _WIRE[want]
        if isinstance(size, bool) or not isinstance(size, int) or size != count * wire.itemsize:
            raise ServeError(400, f"input {name!r}: binary_data_size must be {count * wire.itemsize} bytes for shape "
                                  f"{shape} of {want}, got {size!r}")
        if pos + size > len(binary):
            raise ServeError(400, f"input {name!r}: binary_data_size {size} runs past the end of the body")
        arr = np.frombuffer(binary[pos:pos + size], dtype=wire).astype(wire.newbyteorder("="))   # a writable copy
        return name, arr.reshape(shape), size
    if "data" not in t:
        raise ServeError(400, f"input {name!r} has neither 'data' nor the parameter 'binary_data_size'")
    try:
        arr = np.asarray(t["data"])
    except (ValueError, TypeError, RecursionError) as e:
        raise ServeError(400, f"input {name!r}: 'data' is not a list of numbers: {_short(e)}") from None
    kinds = "iu" if want.startswith("INT") else "iuf"
    if arr.size and arr.dtype.kind not in kinds:
        raise ServeError(400, f"input {name!r}: 'data' must hold {'integers' if kinds == 'iu' else 'numbers'} "
                              f"for {want}, got {arr.dtype.kind!r} values")
    if arr.size != count:
        raise ServeError(400, f"input {name!r}: shape {shape} needs {count} values, 'data' has {arr.size}")
    dtype = np.dtype(model.inputs[name])
    if kinds == "iu" and arr.size:
        info = np.iinfo(dtype)
        if arr.min() < info.min or arr.max() > info.max:
            raise ServeError(400, f"input {name!r}: values outside the {want} range")
    return name, arr.astype(dtype).reshape(shape), 0


def _short(e):
    s = str(e)
    return s if len(s) <= 200 else s[:200] + "..."


# ---------------------------------------------------------------------- running
class Handler:
    """What an infer request does, from the body to the response bytes; runs on a worker thread."""

    def __init__(self, sequences: Sequences):
        self.sequences = sequences

    def infer(self, model: ServedModel, body: bytes, header_length):
        """(status, headers, body) of the response."""
        try:
            req = parse_request(model, body, header_length)
            names = req.outputs or list(model.outputs)
            if req.sequence_id is None:
                outs = model.run(req.outputs, req.inputs)
            else:
                names = names[:1] if req.outputs is None else names
                outs = [self._step(model, req, names)]
            return _response(model, req, names, outs)
        except ServeError as e:
            return _error(e.status, str(e))
        except EngineError as e:
            return _error(400, str(e))
        except MemoryError:
            return _error(503, "the server ran out of memory for this request")
        except Exception:   # noqa: BLE001 - our bug: logged here, a generic message to the client
            log.exception("infer on model %r failed", model.name)
            return _error(500, "internal error while running the model (see the server's log)")

    def _step(self, model, req, names):
        if model.stream_error:
            raise ServeError(400, f"model {model.name!r} cannot run sequences: {model.stream_error}")
        extra = [n for n in req.inputs if n != model.stream_input]
        if extra:
            raise ServeError(400, f"a sequence request takes only the stream input {model.stream_input!r}; got "
                                  f"also {extra} (the state is kept by the server)")
        if model.stream_input not in req.inputs:
            raise ServeError(400, f"a sequence request needs the input {model.stream_input!r}")
        if len(names) != 1:
            raise ServeError(400, f"a sequence request returns one output; {len(names)} were requested")
        x = req.inputs[model.stream_input]
        rank = model.ranks[model.stream_input]
        if x.ndim != rank:
            raise ServeError(400, f"input {model.stream_input!r} must have rank {rank} (its time axis included: "
                                  f"a step is a chunk of length 1), got shape {list(x.shape)}")
        key = (model.name, req.sequence_id)
        seq = self.sequences.enter(key, req.start)
        ok = False
        try:
            with seq.lock:
                if seq.stream is None:
                    seq.stream = model.new_stream(x)
                y = _step(seq.stream, x, names[0])
            ok = True
            return y
        finally:
            # a start that failed leaves no sequence behind; a failed step keeps the state it had
            self.sequences.leave(key, seq, end=req.end or (req.start and not ok))


def _step(stream, x, name):
    """One chunk through a Stream; a chunk of length 1 goes through the single-step fast path."""
    ta = stream.time_axis
    if ta is not None and x.shape[ta] == 1:
        y = stream.step(np.ascontiguousarray(np.take(x, 0, axis=ta)) if ta else x[0], name)
        oa = stream.output_time_axes.get(name)
        return y.reshape(y.shape[:oa] + (1,) + y.shape[oa:]) if oa is not None else y
    return stream.step(x, name)


def _response(model, req, names, outs):
    doc = {"model_name": model.name, "model_version": "1"}
    if req.id is not None:
        doc["id"] = req.id
    tensors, blobs = [], []
    for name, y in zip(names, outs):
        y = np.asarray(y)
        t = {"name": name, "datatype": DATATYPES[model.outputs[name]], "shape": list(y.shape)}
        if req.binary_out.get(name):
            blob = np.ascontiguousarray(y, dtype=_WIRE[t["datatype"]]).tobytes()
            t["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            t["data"] = y.reshape(-1).tolist()
        tensors.append(t)
    doc["outputs"] = tensors
    head = json.dumps(doc, separators=(",", ":")).encode()
    if not blobs:
        return 200, {"content-type": "application/json"}, head
    return 200, {"content-type": "application/octet-stream", "inference-header-content-length": str(len(head))}, \
        b"".join([head, *blobs])


def _error(status, message):
    return status, {"content-type": "application/json"}, json.dumps({"error": message}).encode()


# ---------------------------------------------------------------------- the app
def build_app(models: list[ServedModel], *, workers: int | None = None, max_sequences: int = 1000,
              sequence_timeout: float = 60.0, max_request_bytes: int = MAX_REQUEST_BYTES):
    """The Starlette app serving ``models``; ``app.state`` holds the pool and the sequence table."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from . import __version__, _threads

    by_name = {}
    for m in models:
        if m.name in by_name:
            raise EngineError(f"two models are named {m.name!r} ({by_name[m.name].path} and {m.path}); model names "
                              f"are the files' stems and must differ")
        by_name[m.name] = m
    workers = workers or _threads.available_cores()
    sequences = Sequences(max_sequences, sequence_timeout)
    handler = Handler(sequences)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lstm-engine-worker")
    bodies = {}           # the semaphore, made inside the server's event loop
    ready = {"ready": False}

    def error(status, message):
        return JSONResponse({"error": message}, status_code=status)

    def model_of(request):
        name = request.path_params["model"]
        version = request.path_params.get("version")
        m = by_name.get(name)
        if m is None:
            raise ServeError(404, f"unknown model {name!r}; this server has {sorted(by_name)}")
        if version is not None and version != "1":
            raise ServeError(404, f"model {name!r} has only version 1, not {version!r}")
        return m

    async def server_metadata(request):
        return JSONResponse({"name": "lstm-engine", "version": __version__,
                             "extensions": ["binary_tensor_data", "sequence"]})

    async def live(request):
        return Response(status_code=200)

    async def server_ready(request):
        return Response(status_code=200 if ready["ready"] else 503)

    async def model_metadata(request):
        return JSONResponse(model_of(request).metadata)

    async def model_ready(request):
        model_of(request)
        return Response(status_code=200 if ready["ready"] else 503)

    async def infer(request):
        model = model_of(request)
        encoding = request.headers.get("content-encoding", "identity").lower()
        if encoding != "identity":
            raise ServeError(415, f"Content-Encoding {encoding!r} is not supported; send the body uncompressed")
        async with bodies["sem"]:
            try:
                body = await asyncio.wait_for(_read_body(request, max_request_bytes), BODY_TIMEOUT)
            except asyncio.TimeoutError:
                raise ServeError(408, f"the request body did not arrive within {BODY_TIMEOUT:g} s") from None
            status, headers, payload = await asyncio.get_running_loop().run_in_executor(
                pool, handler.infer, model, body, request.headers.get("inference-header-content-length"))
        return Response(payload, status_code=status, headers=headers)

    async def on_serve_error(request, exc):
        return error(exc.status, str(exc))

    async def on_http_error(request, exc):
        return error(exc.status_code, exc.detail or "error")

    async def on_disconnect(request, exc):
        return error(400, "the client disconnected before sending the whole body")

    async def on_any_error(request, exc):
        log.error("unhandled error on %s", request.url.path, exc_info=exc)
        return error(500, "internal server error (see the server's log)")

    async def expire_idle():
        while True:
            await asyncio.sleep(min(1.0, max(sequence_timeout / 4, 0.01)))
            n = sequences.expire()
            if n:
                log.info("dropped %d idle sequence(s)", n)

    @asynccontextmanager
    async def lifespan(app):
        bodies["sem"] = asyncio.Semaphore(MAX_BODIES)
        task = asyncio.create_task(expire_idle())
        ready["ready"] = True
        try:
            yield
        finally:
            ready["ready"] = False
            task.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    prefixes = ["/v2/models/{model}", "/v2/models/{model}/versions/{version}"]
    routes = [Route("/v2", server_metadata), Route("/v2/health/live", live), Route("/v2/health/ready", server_ready)]
    for p in prefixes:
        routes += [Route(p, model_metadata), Route(p + "/ready", model_ready),
                   Route(p + "/infer", infer, methods=["POST"])]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={ServeError: on_serve_error, HTTPException: on_http_error,
                                        ClientDisconnect: on_disconnect, Exception: on_any_error})
    app.state.sequences, app.state.pool, app.state.models = sequences, pool, by_name
    return app


async def _read_body(request, limit):
    length = request.headers.get("content-length")
    if length is not None:
        try:
            if int(length) > limit:
                await _drain(request)
                raise ServeError(413, f"the request body ({int(length)} bytes) is larger than the server's limit "
                                      f"of {limit} bytes (--max-request-bytes)")
        except ValueError:
            raise ServeError(400, "Content-Length is not an integer") from None
    chunks, n = [], 0
    async for chunk in request.stream():
        n += len(chunk)
        if n > limit:
            await _drain(request)
            raise ServeError(413, f"the request body is larger than the server's limit of {limit} bytes "
                                  f"(--max-request-bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


async def _drain(request):
    """Read and discard the rest of an oversize body (up to MAX_DRAIN), so that the client, still sending, gets
    the 413 rather than a reset connection."""
    n = 0
    try:
        async for chunk in request.stream():
            n += len(chunk)
            if n > MAX_DRAIN:
                break
    except Exception:   # noqa: BLE001 - the client went away; the 413 is moot
        pass


# ---------------------------------------------------------------------- running a server
def load_models(paths) -> list[ServedModel]:
    return [ServedModel(p) for p in paths]


def _config(app, host, port, **kw):
    import uvicorn
    return uvicorn.Config(app, host=host, port=port, log_level=kw.pop("log_level", "warning"), access_log=False,
                          timeout_keep_alive=kw.pop("timeout_keep_alive", 30), **kw)


def serve(paths, host="127.0.0.1", port=8000, *, workers=None, max_sequences=1000, sequence_timeout=60.0,
          max_request_bytes=MAX_REQUEST_BYTES, log_level="info"):
    """Load the models and serve them until interrupted (``lstm-engine serve``)."""
    import uvicorn
    models = load_models(paths)
    app = build_app(models, workers=workers, max_sequences=max_sequences, sequence_timeout=sequence_timeout,
                    max_request_bytes=max_request_bytes)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for m in models:
        log.info("model %r from %s: inputs %s, outputs %s%s", m.name, m.path, m.metadata["inputs"],
                 m.metadata["outputs"], "" if m.stream_error is None else " (no sequences: " + m.stream_error + ")")
    uvicorn.Server(_config(app, host, port, log_level=log_level)).run()


class Server:
    """A server on a background thread, for tests, benchmarks and embedding:

        with Server(["model.lstm"], port=0) as srv:      # port 0: a free port
            client = tritonclient.http.InferenceServerClient(srv.url)
    """

    def __init__(self, models, host="127.0.0.1", port=0, **options):
        import socket

        import uvicorn
        models = [ServedModel(m) if isinstance(m, (str, os.PathLike)) else m for m in models]
        self.app = build_app(models, **options)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host, self.port = self._sock.getsockname()[:2]
        self.url = f"{self.host}:{self.port}"
        self._server = uvicorn.Server(_config(self.app, host, self.port))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True,
                                        name="lstm-engine-serve")

    def start(self):
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        return self

    def stop(self):
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._sock.close()

    @property
    def sequences(self) -> Sequences:
        return self.app.state.sequences

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
