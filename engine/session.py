"""``Session``: load a model, compile it once, run it. The same shape of API as ``onnxruntime.InferenceSession``.

    sess = engine.Session("model.lstm")            # or an .onnx file, or the bytes of either
    [y, h, c] = sess.run(None, {"X": x})
    stream = sess.stream(batch_size=1)             # state stays inside
    y_t = stream.step(x_t)

All validation happens here, before the jitted code runs: the kernels have no bounds checks.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from . import _cache, _threads
from .compiler import compile_model
from .errors import EngineError, InvalidInputError, ModelFileError, UnsupportedModelError
from .model import Model, is_model_file_bytes, load as load_model_file
from .ops import OPS

_ONNX_TYPES = {"float32": "tensor(float)", "float64": "tensor(double)", "int32": "tensor(int32)",
               "int64": "tensor(int64)"}


@dataclass(frozen=True)
class NodeArg:
    """An input or output of a session, as onnxruntime describes them."""
    name: str
    shape: list
    type: str


def load_any(source) -> Model:
    """A Model from an lstm-engine file or an ONNX file (path or bytes); the kind is detected from the content."""
    if isinstance(source, Model):
        return source.validate()
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        where = "<bytes>"
    elif isinstance(source, (str, os.PathLike)):
        where = os.fspath(source)
        try:
            with open(where, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise ModelFileError(f"model file not found: {where}") from None
        except IsADirectoryError:
            raise ModelFileError(f"{where} is a directory, not a model file") from None
        except OSError as e:
            raise ModelFileError(f"cannot read {where}: {e.strerror}") from None
    else:
        raise TypeError(f"expected a path, bytes or Model, got {type(source).__name__}")
    if is_model_file_bytes(data[:16]):
        return load_model_file(data) if where == "<bytes>" else _load_named(data, where)
    try:
        from converters.onnx_import import onnx_bytes_to_model
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ModelFileError(f"{where} is not an lstm-engine file; reading it as ONNX needs the 'onnx' package "
                             f"(pip install 'lstm-engine[convert]'): {e}") from None
    return onnx_bytes_to_model(data, where)


def _load_named(data, where):
    try:
        return load_model_file(data)
    except ModelFileError as e:
        raise type(e)(str(e).replace("<bytes>", where)) from None


class Session:
    """Run an lstm-engine model (or an ONNX model, converted in memory).

    Parameters
    ----------
    path_or_bytes : path, bytes or Model
        An lstm-engine model file or an ONNX file; which one is detected from the content.
    threads : int, optional
        Threads for the BLAS products inside the kernels (default: all available cores); the recurrence itself runs
        on the calling thread. The counterpart of onnxruntime's ``intra_op_num_threads``. OpenBLAS's setting is
        process-wide: it is switched, at the cost of one call, when a run needs a different count than the last.
    precision : "float32" or "float64", optional
        Compute precision. Default: the model's. ``"float64"`` runs a float32 model in double precision as a
        reference (onnxruntime has no float64 LSTM).
    """

    def __init__(self, path_or_bytes, threads: int | None = None, precision: str | None = None):
        t0 = time.perf_counter()
        self.model = load_any(path_or_bytes)
        self.load_seconds = time.perf_counter() - t0
        self.precision = precision or self.model.dtype
        if self.precision not in ("float32", "float64"):
            raise EngineError(f"precision must be 'float32' or 'float64', got {precision!r}")
        self.dtype = np.dtype(self.precision)
        self.threads = _check_threads(threads)
        self._inputs = [NodeArg(s.name, list(s.shape), _ONNX_TYPES[self._io_dtype(s.dtype)]) for s in self.model.inputs]
        self._outputs = [NodeArg(s.name, list(s.shape), _ONNX_TYPES[self._io_dtype(s.dtype)])
                         for s in self.model.outputs]
        t1 = time.perf_counter()
        _cache.ensure_fresh()
        self._compiled = compile_model(self.model, self.dtype, threads=self.threads)
        self._warm_up(self._compiled)
        self._stream_compiled = {}     # output name -> the stream-mode function that returns only that output
        self.compile_seconds = time.perf_counter() - t1
        self._all_outputs = list(range(len(self._outputs)))
        self._input_names = [s.name for s in self.model.inputs]

    # ------------------------------------------------------------------ description
    def get_inputs(self):
        return list(self._inputs)

    def get_outputs(self):
        return list(self._outputs)

    def get_providers(self):
        return ["LstmEngineCPU"]

    def _io_dtype(self, dtype):
        return self.precision if dtype in ("float32", "float64") else dtype

    # ------------------------------------------------------------------ running
    def run(self, output_names, input_feed, run_options=None):
        """Run the model. ``output_names=None`` returns every output, in the order of ``get_outputs()``."""
        if run_options is not None:
            raise EngineError("run_options are not supported; pass None")
        wanted = self._all_outputs if output_names is None else self._output_indices(output_names)
        compiled = self._compiled
        if type(input_feed) is dict and len(input_feed) == len(self._input_names):
            # Fast path: the dispatcher (compilation disabled after warm-up) refuses any dtype, rank or layout it was
            # not compiled for, and the generated code checks shapes; on any refusal the checked path below explains.
            try:
                args = [input_feed[n] for n in self._input_names]
                if _threads.current != self.threads:
                    _threads.set_blas_threads(self.threads)
                results = compiled.fn(*args, *compiled.consts)
                return list(results) if output_names is None else [results[i] for i in wanted]
            except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError):
                pass
        args, _ = self._bind_inputs(input_feed)
        results = self._call(compiled, args, ())
        return [results[i] for i in wanted]

    def stream(self, batch_size: int = 1) -> "Stream":
        """A stateful stream: feed one step (or a chunk of steps) at a time; the recurrent state stays inside."""
        return Stream(self, batch_size)

    def _output_indices(self, output_names):
        names = [o.name for o in self._outputs]
        if output_names is None:
            return list(range(len(names)))
        if isinstance(output_names, str):
            raise InvalidInputError("output_names must be a list of names or None, not a string")
        idx = []
        for n in output_names:
            if n not in names:
                raise InvalidInputError(f"unknown output {n!r}; the model's outputs are {names}")
            idx.append(names.index(n))
        return idx

    def _bind_inputs(self, feed, skip=()):
        """Validate a feed against the model's inputs; return the argument list and the bound symbolic dims."""
        if not isinstance(feed, dict):
            raise InvalidInputError(f"input_feed must be a dict of name -> array, got {type(feed).__name__}")
        specs = self.model.inputs
        known = {s.name for s in specs}
        unknown = [k for k in feed if k not in known]
        if unknown:
            raise InvalidInputError(f"unknown input(s) {unknown}; the model's inputs are {[s.name for s in specs]}")
        dims: dict = {}
        arrays = {}
        for spec in specs:
            if spec.name not in feed or spec.name in skip:
                if not spec.optional and spec.name not in skip:
                    raise InvalidInputError(f"missing required input {spec.name!r} "
                                            f"(shape {_fmt_shape(spec.shape)}, {spec.dtype})")
                continue
            arrays[spec.name] = self._check_array(spec, feed[spec.name], dims)
        args = []
        for spec in specs:
            if spec.name in arrays:
                args.append(arrays[spec.name])
                continue
            shape = []
            for d in spec.shape:
                if isinstance(d, str):
                    if d not in dims:
                        raise InvalidInputError(
                            f"optional input {spec.name!r} was not given and its dimension {d!r} cannot be inferred "
                            f"from the other inputs; pass it explicitly")
                    d = dims[d]
                shape.append(d)
            args.append(np.zeros(shape, dtype=self._arg_dtype(spec)))
        return args, dims

    def _arg_dtype(self, spec):
        return self.dtype if spec.dtype in ("float32", "float64") else np.dtype(spec.dtype)

    def _check_array(self, spec, value, dims):
        try:
            arr = np.asarray(value)
        except Exception as e:
            raise InvalidInputError(f"input {spec.name!r} cannot be read as an array: {e}") from None
        want_float = spec.dtype in ("float32", "float64")
        if want_float:
            if arr.dtype.kind != "f":
                raise InvalidInputError(f"input {spec.name!r} must be a float array ({self.precision}), "
                                        f"got dtype {arr.dtype}; convert it with .astype(np.{self.precision})")
        elif arr.dtype.kind not in "iu":
            raise InvalidInputError(f"input {spec.name!r} must be an integer array ({spec.dtype}), got {arr.dtype}")
        if arr.ndim != len(spec.shape):
            raise InvalidInputError(f"input {spec.name!r} must have rank {len(spec.shape)} "
                                    f"(shape {_fmt_shape(spec.shape)}), got shape {tuple(arr.shape)}")
        for axis, (want, got) in enumerate(zip(spec.shape, arr.shape)):
            if got == 0:
                raise InvalidInputError(f"input {spec.name!r} has an empty dimension {axis} (shape {tuple(arr.shape)}); "
                                        f"batch size and sequence length must be at least 1")
            if isinstance(want, str):
                if dims.setdefault(want, got) != got:
                    raise InvalidInputError(f"input {spec.name!r} dimension {axis} ({want!r}) is {got}, but another "
                                            f"input gave {want!r} = {dims[want]}")
            elif want != got:
                raise InvalidInputError(f"input {spec.name!r} must have shape {_fmt_shape(spec.shape)}, "
                                        f"got {tuple(arr.shape)} (dimension {axis} must be {want})")
        if want_float:
            arr = np.ascontiguousarray(arr, dtype=self.dtype)
        else:
            info = np.iinfo(np.dtype(spec.dtype))
            if arr.size and (arr.min() < info.min or arr.max() > info.max):
                raise InvalidInputError(f"input {spec.name!r} has values outside the {spec.dtype} range")
            arr = np.ascontiguousarray(arr, dtype=spec.dtype)
        if not arr.flags.writeable:
            arr = arr.copy()   # one array type for the compiled code: read-only arrays would force a recompile
        return arr

    def _call(self, compiled, args, states):
        try:
            if _threads.current != self.threads:
                _threads.set_blas_threads(self.threads)
            return compiled.call(args, states)
        except (ValueError, IndexError, ZeroDivisionError) as e:
            msg = " ".join(str(a) for a in e.args) if e.args else type(e).__name__
            raise InvalidInputError(f"the model rejected these inputs: {msg}") from None

    def _warm_up(self, compiled, states=None):
        """Compile now (in the constructor), not in the first run: one call on the smallest valid inputs."""
        args = []
        for spec in self.model.inputs:
            shape = [1 if isinstance(d, str) else d for d in spec.shape]
            args.append(np.zeros(shape, dtype=self._arg_dtype(spec)))
        try:
            compiled.call(args, states or ())
        except (ValueError, IndexError, ZeroDivisionError):
            pass  # the dummy shapes did not fit this model; compilation has happened all the same
        # exactly one signature per generated function: any other argument type is refused, not compiled anew
        compiled.fn.disable_compile()


def _check_threads(threads):
    if threads is None:
        return _threads.available_cores()
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise EngineError(f"threads must be a positive integer, got {threads!r}")
    return min(threads, _threads.available_cores())


def _fmt_shape(shape):
    return "[" + ", ".join(str(d) for d in shape) + "]"


class Stream:
    """Step-by-step inference with the recurrent state kept inside.

    ``step(x)`` takes one time step (the model's stream input without its time axis) or a chunk of steps (with
    it), runs it from the current state, keeps the new state, and returns the model's first output (or the one
    named), without a time axis for a single step. A model without a time axis (a PyTorch cell: LSTMCell, GRUCell,
    RNNCell) takes each call's input as one step. ``state`` is a dict ``{"<node>/h": array, "<node>/c": ...}``
    that can be read and assigned; ``reset()`` returns to the zero state.
    """

    def __init__(self, session: Session, batch_size: int = 1):
        model = session.model
        info = model.stream
        if info is None:
            raise UnsupportedModelError("this model cannot be streamed: the converter found no time axis on its "
                                        "inputs (for example because the sequence length was fixed at export)")
        for node in model.recurrent_nodes():
            if node.attrs.get("direction") == "bidirectional" or node.attrs.get("direction") == "reverse":
                raise UnsupportedModelError(
                    f"node {node.name!r} runs {node.attrs['direction']}: a reverse direction needs the whole "
                    f"sequence, so this model cannot be streamed step by step; use Session.run")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise EngineError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.session = session
        self.batch_size = batch_size
        self.input_name = info["input"]
        self.time_axis = info["time_axis"]
        self.batch_axis = info.get("batch_axis")
        self.output_time_axes = info.get("outputs", {})
        # a step returns one output: the stream-mode function returns only it (boxing arrays nobody reads costs
        # more than the step itself at small sizes); another output gets its own function on first use
        self._compiled = self._variant(model.outputs[0].name)
        self._threads = session.threads
        self.reset()
        # fast-path constants: the other inputs as zeros for this batch size (the stream mode ignores state inputs),
        # and the index tuples that add and remove the time axis
        spec = model.input(self.input_name)
        self._rank = len(spec.shape)
        self._dtype = session._arg_dtype(spec)    # the model's float type, or the int type of token ids
        one_step = np.zeros([1 if k == self.time_axis else (batch_size if k == self.batch_axis else
                             (d if isinstance(d, int) else 1)) for k, d in enumerate(spec.shape)], self._dtype)
        others = [s.name for s in model.inputs if s.name != self.input_name]
        pos = [s.name for s in model.inputs].index(self.input_name)
        try:
            args, _ = session._bind_inputs({self.input_name: one_step}, skip=others)
            index = self._compiled.arg_index or list(range(len(args)))   # the inputs the stream function takes
            self._before = [args[i] for i in index if i < pos]
            self._after = [args[i] for i in index if i > pos]
            self._states = self._states          # prepares the fast path's call
        except EngineError:
            self._rank = -1   # the other inputs cannot be made up from the batch size: checked path only
        # a model without a time axis (a cell) takes each step as it is
        self._step_ndim = self._rank - 1 if self.time_axis is not None and self._rank > 0 else self._rank
        self._expand = (slice(None),) * self.time_axis + (None,) if self.time_axis is not None else ()
        out_axis = self.output_time_axes.get(model.outputs[0].name)
        self._take_first = (slice(None),) * out_axis + (0,) if out_axis is not None else ()

    def _variant(self, output_name):
        sess = self.session
        compiled = sess._stream_compiled.get(output_name)
        fresh = compiled is None
        if fresh:
            compiled = compile_model(sess.model, sess.dtype, stream=True, threads=sess.threads,
                                     outputs=[output_name])
        self._init_slots(compiled)
        if fresh:
            sess._warm_up(compiled, self._zero_states(1))
            sess._stream_compiled[output_name] = compiled
        return compiled

    def _init_slots(self, compiled):
        self._slots = []
        for node, index in compiled.state_slots:
            op = OPS[node.op]
            self._slots.append((f"{node.name}/{op.state_names()[index]}", node, index))

    def _zero_states(self, batch):
        out = []
        for _, node, index in self._slots:
            shape = OPS[node.op].state_shapes(node, self.session.model, batch)[index]
            out.append(np.zeros(shape, dtype=self.session.dtype))
        return out

    def reset(self):
        """Back to the zero state."""
        self._states = self._zero_states(self.batch_size)

    @property
    def _states(self):
        return self._state_arrays

    @_states.setter
    def _states(self, arrays):
        # the fast path's call, prepared once per state change: (function, arguments before x, arguments after x)
        self._state_arrays = arrays
        if hasattr(self, "_after"):
            self._fast = (self._compiled.fn, tuple(self._before),
                          (*self._after, *self._compiled.consts, *arrays))

    @property
    def state(self) -> dict:
        return {name: s.copy() for (name, _, _), s in zip(self._slots, self._states)}

    @state.setter
    def state(self, values: dict):
        if not isinstance(values, dict):
            raise InvalidInputError("state must be a dict of name -> array")
        names = [n for n, _, _ in self._slots]
        unknown = [k for k in values if k not in names]
        if unknown:
            raise InvalidInputError(f"unknown state name(s) {unknown}; this stream's state is {names}")
        new = list(self._states)
        for i, name in enumerate(names):
            if name in values:
                arr = np.asarray(values[name])
                if arr.dtype.kind != "f":
                    raise InvalidInputError(f"state {name!r} must be a float array, got {arr.dtype}")
                if arr.shape != new[i].shape:
                    raise InvalidInputError(f"state {name!r} must have shape {new[i].shape}, got {arr.shape}")
                new[i] = np.array(arr, dtype=self.session.dtype, order="C")
        self._states = new

    def step(self, x, output_name: str | None = None):
        if output_name is None and type(x) is np.ndarray and x.ndim == self._step_ndim and x.dtype == self._dtype:
            # Fast path for one step of the usual dtype; the generated code checks shapes, the dispatcher types.
            try:
                if _threads.current != self._threads:
                    _threads.set_blas_threads(self._threads)
                fn, before, after = self._fast
                return fn(*before, x[self._expand], *after)[0][self._take_first]
            except (TypeError, ValueError, IndexError, ZeroDivisionError):
                pass  # the checked path below explains what is wrong
        return self._step_checked(x, output_name)

    def _step_checked(self, x, output_name):
        sess = self.session
        spec = sess.model.input(self.input_name)
        arr = np.asarray(x)
        single = self.time_axis is not None and arr.ndim == len(spec.shape) - 1
        if single:
            arr = np.expand_dims(arr, self.time_axis)
        if self.batch_axis is not None and arr.ndim == len(spec.shape) and arr.shape[self.batch_axis] != self.batch_size:
            raise InvalidInputError(f"this stream has batch size {self.batch_size}, but the step has "
                                    f"{arr.shape[self.batch_axis]} on axis {self.batch_axis}")
        others = [s.name for s in sess.model.inputs if s.name != self.input_name]
        args, _ = sess._bind_inputs({self.input_name: arr}, skip=others)
        out_names = [o.name for o in sess.model.outputs]
        name = output_name or out_names[0]
        if name not in out_names:
            raise InvalidInputError(f"unknown output {name!r}; the model's outputs are {out_names}")
        compiled = self._compiled if name == out_names[0] else self._variant(name)
        y = sess._call(compiled, args, self._states)[0]
        axis = self.output_time_axes.get(name)
        if single and axis is not None:
            y = np.take(y, 0, axis=axis)
        return y
