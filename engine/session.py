"""``Session``: load a model, pack its weights once, run it. The same shape of API as
``onnxruntime.InferenceSession``.

    sess = engine.Session("model.lstm")            # or an .onnx file, or the bytes of either
    [y, h, c] = sess.run(None, {"X": x})
    stream = sess.stream(batch_size=1)             # state stays inside
    y_t = stream.step(x_t)

A call finds (or makes, once per combination of input shapes) a plan (engine/plan.py) and runs it with the one
precompiled executor: compiled ahead of time (``runtime == "aot"``, engine/aot.py) when a compatible runtime is
installed, else by Numba (``"jit"``, engine/executor.py); engine/runtime.py chooses. All validation happens before
the executor runs: names, dtypes and ranks here, shapes when the plan is made; the kernels have no bounds checks.
Only checks that depend on input values (token ids, sequence lengths) happen inside, and come back as a status.
"""
from __future__ import annotations

import math
import operator
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from . import _memory, _threads, runtime as _runtime
from .call_weights import CallWeights
from .errors import EngineError, InvalidInputError, ModelFileError, UnsupportedModelError
from .model import Model, is_model_file_bytes, load_from, read_source
from .ops import OPS
from .ops.program import ERROR_MESSAGES
from .plan import MAX_VALUE_INPUT, WORK_POOL_SIZE, NeedsValue, Planner, Weights
from .warmup import warm_up

MAX_PLANS = 64      # plans kept per Session (one per combination of input shapes; the oldest made is dropped)
_SMALL = 1 << 20    # inputs with more elements are checked against the memory available before they are copied

_ONNX_TYPES = {"float32": "tensor(float)", "float64": "tensor(double)", "int32": "tensor(int32)",
               "int64": "tensor(int64)", "float16": "tensor(float16)", "bool": "tensor(bool)"}
_FLOATS = ("float16", "float32", "float64")   # float16 inputs and outputs: computed in float32


@dataclass(frozen=True)
class NodeArg:
    """An input or output of a session, as onnxruntime describes them."""
    name: str
    shape: list
    type: str


def load_any(source, mapped: bool = False) -> Model:
    """A Model from an lstm-engine file or an ONNX file (path or bytes); the kind is detected from the content.
    ``mapped``: an lstm-engine file is memory-mapped, not read (``read_source``), for a caller that packs the
    weights and then lets the Model go."""
    if isinstance(source, Model):
        return source.validate()
    data, where = read_source(source, mapped=mapped)
    if is_model_file_bytes(bytes(data[:16])):
        return load_from(data, where)
    try:
        from converters.onnx import onnx_bytes_to_model
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ModelFileError(f"{where} is not an lstm-engine file; reading it as ONNX needs the 'onnx' package "
                             f"(pip install 'lstm-engine[convert]'): {e}") from None
    base_dir = None if where == "<bytes>" else os.path.dirname(os.path.abspath(where))   # for external data
    return onnx_bytes_to_model(bytes(data), where, base_dir=base_dir)


class Session:
    """Run an lstm-engine model (or an ONNX model, converted in memory).

    Parameters
    ----------
    path_or_bytes : path, bytes or Model
        An lstm-engine model file or an ONNX file; which one is detected from the content.
    threads : int, optional
        Threads for the kernels (default: all available cores): the BLAS products, and the LSTM recurrence at
        batch < 4 for hidden sizes >= 256 (one thread per part of the hidden units, for the whole sequence; the
        BLAS runs on one thread meanwhile). The counterpart of onnxruntime's ``intra_op_num_threads``.
        OpenBLAS's setting is process-wide: it is switched, at the cost of one call, when a run needs a different
        count than the last.
    precision : "float32" or "float64", optional
        Compute precision. Default: the model's. ``"float64"`` runs a float32 model in double precision as a
        reference (onnxruntime has no float64 LSTM).

    ``runtime`` is "aot" when the executor compiled ahead of time runs the model (``lstm-engine build-runtime``;
    Numba is then not imported), else "jit".

    A Session is safe to use from several threads at once; so are its streams, one thread per stream at a time.
    Memory: a Session keeps its packed weights only. When it loaded the model itself (from a path or bytes), the
    file's weights are let go once packed, and ``Session.model`` keeps the graph with their shapes only (passing it
    to another Session is refused with a clear error: load the file again); a ``Model`` passed in stays whole.
    """

    def __init__(self, path_or_bytes, threads: int | None = None, precision: str | None = None):
        t0 = time.perf_counter()
        self.model = load_any(path_or_bytes, mapped=True)     # released once packed, below
        self.load_seconds = time.perf_counter() - t0
        self.precision = precision or self.model.dtype
        if self.precision not in ("float32", "float64"):
            raise EngineError(f"precision must be 'float32' or 'float64', got {precision!r}")
        self.dtype = np.dtype(self.precision)
        self.threads = _check_threads(threads)
        self._inputs = [NodeArg(s.name, list(s.shape), _ONNX_TYPES[self._io_dtype(s.dtype)]) for s in self.model.inputs]
        self._outputs = [NodeArg(s.name, list(s.shape), _ONNX_TYPES[self._io_dtype(s.dtype)])
                         for s in self.model.outputs]
        self._input_names = [s.name for s in self.model.inputs]
        self._output_names = [s.name for s in self.model.outputs]
        self._arg_dtypes = [np.dtype(self._arg_dtype(s)) for s in self.model.inputs]   # what the executor takes
        self._plans = OrderedDict()
        self._plan_lock = threading.Lock()
        self._value_inputs = ()        # indexes of small int inputs planned as known values (plans keyed by them)
        self._fast_run = None          # run's fast path for the last shapes seen (see _fast_runner)
        self._runtime = _runtime.current()
        self.runtime = self._runtime.name
        self._run = self._runtime.executor(self.precision)
        t1 = time.perf_counter()
        self.weights = Weights(self.model, self.dtype, self.threads)
        if not isinstance(path_or_bytes, Model):
            # the packed buffer is all the kernels read: let the file's weights go (a Model passed in is the
            # caller's and stays as it is)
            self.model = self.model.with_weights_released()
        self._fconst = self.weights.buffer
        self._call_weights = CallWeights()     # weights that are graph inputs, packed on the call
        self._no_f = np.empty(0, self.dtype)
        self._no_i = np.empty(0, np.int64)
        self.pack_seconds = time.perf_counter() - t1
        t2 = time.perf_counter()
        self._warm_up()
        self.compile_seconds = time.perf_counter() - t2

    # ------------------------------------------------------------------ description
    def get_inputs(self):
        return list(self._inputs)

    def get_outputs(self):
        return list(self._outputs)

    def get_providers(self):
        return ["LstmEngineCPU"]

    def _io_dtype(self, dtype):
        return self.precision if dtype in ("float32", "float64") else dtype

    def program(self, shapes: dict | None = None, stream_batch: int | None = None, values: dict | None = None) -> str:
        """The program the executor runs for inputs of the given shapes ({name: shape}; default: every symbolic
        dimension 1), one line per instruction, each naming its node. ``values``: the values of small int inputs
        that pick the program (Silero's sr; default 0). ``stream_batch``: a stream's one-step program instead."""
        if stream_batch is not None:
            return self.stream(stream_batch).program()
        values = dict(values or {})
        for name, v in values.items():
            if name not in self._input_names:
                raise InvalidInputError(f"unknown input {name!r}; the model's inputs are {self._input_names}")
            values[name] = np.asarray(v)
        full = self._dummy_shapes({**{n: v.shape for n, v in values.items()}, **self._checked_shapes(shapes)})
        # the arguments only the inputs planned by value are read from (small ints): zeros unless given
        args = [values[n].astype(np.int64) if n in values else
                (np.zeros(full[n], np.int64) if math.prod(full[n]) <= MAX_VALUE_INPUT else None)
                for n in self._input_names]
        plan = self._plan(("run", tuple(full[n] for n in self._input_names), None), full, self._output_names,
                          args=args)
        return _listing(plan)

    def _values_of(self, args):
        """The plan-key suffix of the inputs planned by value: () when there are none."""
        if not self._value_inputs:
            return ()
        return (tuple(None if args is None else tuple(np.asarray(args[i]).reshape(-1).tolist())
                      for i in self._value_inputs),)

    # ------------------------------------------------------------------ plans
    def _plan(self, key, shapes, wanted, stream=None, args=None):
        """The plan for ``key`` (plus the values of the inputs planned by value, read from ``args``: one array per
        input; zeros when None), made once (thread-safe) and kept while recently used."""
        plan = self._plans.get(key + self._values_of(args))
        if plan is not None:
            return plan
        with self._plan_lock:
            while True:
                full = key + self._values_of(args)
                plan = self._plans.get(full)
                if plan is not None:
                    return plan
                values = {self._input_names[i]: (np.zeros(shapes[self._input_names[i]], np.int64) if args is None
                                                 else args[i]) for i in self._value_inputs}
                try:
                    plan = Planner(self.model, self.weights, self.dtype, self.threads, shapes, wanted, stream,
                                   values).build()
                except NeedsValue as e:
                    # an op needs this small int input's value at plan time (an If on a sample rate, a Reshape
                    # target fed as an input): from now on it is planned by value and keys the plans
                    self._value_inputs = tuple(sorted({*self._value_inputs,
                                                       *(self._input_names.index(n) for n in e.names)}))
                    self._plans.clear()
                    self._fast_run = None
                    continue
                self._plans[full] = plan
                while len(self._plans) > MAX_PLANS:
                    self._plans.popitem(last=False)
                return plan

    def _checked_shapes(self, shapes):
        """program()'s ``shapes``: {input name: a shape of that input's rank, of non-negative ints}."""
        if shapes is None:
            return {}
        if not isinstance(shapes, dict):
            raise InvalidInputError(f"shapes must be a dict {{input name: shape}}, got {type(shapes).__name__}")
        for name, shape in shapes.items():
            if name not in self._input_names:
                raise InvalidInputError(f"unknown input {name!r}; the model's inputs are {self._input_names}")
            if isinstance(shape, np.ndarray):
                raise InvalidInputError(f"shapes[{name!r}] is an array: program() takes shapes, e.g. "
                                        f"{{{name!r}: {tuple(shape.shape)}}}")
            rank = len(self.model.input(name).shape)
            if not isinstance(shape, (tuple, list)) or len(shape) != rank or \
                    any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0 for d in shape):
                raise InvalidInputError(f"shapes[{name!r}] must be a tuple of {rank} non-negative ints (the input "
                                        f"is {self.model.input(name).shape}), got {shape!r}")
        return {name: tuple(int(d) for d in shape) for name, shape in shapes.items()}

    def _dummy_shapes(self, given=None):
        """Shapes for every input: those ``given``, the others with their symbolic dimensions bound by the given
        ones where they share a name, else 1."""
        given = {k: tuple(v) for k, v in (given or {}).items()}
        dims = {}
        for s in self.model.inputs:
            for d, n in zip(s.shape, given.get(s.name, ())):
                if isinstance(d, str):
                    dims.setdefault(d, n)
        return {s.name: given.get(s.name, tuple(dims.get(d, 1) if isinstance(d, str) else d for d in s.shape))
                for s in self.model.inputs}

    def _warm_up(self):
        """Load (or, the first time after an install, compile) the executor now, not in the first run, and plan
        the model once so that what does not depend on the inputs' shapes is checked at load."""
        for _ in warm_up((self.precision,), self._runtime):
            pass
        try:
            self.program()
        except InvalidInputError:
            pass   # the dummy shapes (every symbolic dimension 1) do not fit this model; real inputs will

    # ------------------------------------------------------------------ running
    def run(self, output_names, input_feed, run_options=None):
        """Run the model. ``output_names=None`` returns every output, in the order of ``get_outputs()``."""
        if run_options is not None:
            raise EngineError("run_options are not supported; pass None")
        if output_names is None and type(input_feed) is dict:
            fast = self._fast_run
            if fast is not None:
                outs = fast(input_feed)
                if outs is not None:
                    return outs
        wanted = self._output_names if output_names is None else self._wanted(output_names)
        okey = None if output_names is None else tuple(wanted)
        args, _ = self._bind_inputs(input_feed)
        key = ("run", tuple(a.shape for a in args), okey)
        plan = self._plans.get(key + self._values_of(args))
        if plan is None:
            plan = self._plan(key, {n: a.shape for n, a in zip(self._input_names, args)}, wanted, args=args)
        if output_names is None:
            given = tuple(n in input_feed for n in self._input_names)
            fast = self._fast_run
            if fast is None or fast.plan is not plan or fast.given != given:    # (making one costs ~70 us)
                self._fast_run = self._fast_runner(plan, key[1], self._values_of(args), given, args)
        return self._execute(plan, args)

    def _fast_runner(self, plan, shapes, values, given, defaults):
        """The fast path of ``run`` for the last plan used with all outputs: a feed of the same inputs (``given``:
        which of the model's inputs it holds; an optional one left out is read from ``defaults``, the zeros the
        checked path bound) in exactly these shapes, float inputs of any float dtype (converted as the checked
        path would), int inputs of the declared dtype, and the inputs planned by value with the values of this
        plan, goes straight to the executor. Anything else returns None, and the checked path explains what is
        wrong."""
        all_names = self._input_names
        names = tuple(n for n, g in zip(all_names, given) if g)
        n_inputs = len(names)
        checks = tuple((n, sh, (s.dtype in _FLOATS, t)) for n, sh, s, t, g in
                       zip(all_names, shapes, self.model.inputs, self._arg_dtypes, given) if g)
        # the inputs planned by value that the feed holds (a left-out one is the zeros this plan was made for)
        by_value = tuple((all_names[i], v) for i, v in zip(self._value_inputs, values[0]) if given[i]) \
            if values else ()

        def args_of(feed):
            return [feed[n] if g else d for n, g, d in zip(all_names, given, defaults)]

        def checked(feed):
            """True when the feed is one this path serves."""
            if len(feed) != n_inputs:
                return False
            for name, shape, (is_float, want) in checks:
                a = feed.get(name)
                if type(a) is not np.ndarray or a.shape != shape or \
                        (a.dtype.kind != "f" if is_float else a.dtype != want):
                    return False
            for name, v in by_value:
                if tuple(feed[name].reshape(-1).tolist()) != v:
                    return False
            return True

        # lean: each float input in a slot of its own, no int input read, no weights fed, float outputs: the
        # executor is called here, its entry point directly, when the inputs are C-contiguous writable arrays of
        # the compute dtype (else _execute converts them)
        lean = plan.call is None and plan.float_outputs and not plan.int_args and \
            all(len(idx) <= 1 for idx in plan.float_slots)
        if lean:
            fast = self._lean_runner(plan, checked, args_of, given, defaults, shapes, bool(by_value))
        else:
            def fast(feed):
                return self._execute(plan, args_of(feed)) if checked(feed) else None
        fast.plan, fast.given = plan, given
        return fast

    def _lean_runner(self, plan, checked, args_of, given, defaults, shapes, by_value):
        """run's fast path at its leanest (see _fast_runner): the inputs straight into the executor's slots and its
        compiled entry point called directly. An input left out (``given``) is read from ``defaults``; fed inputs
        that are not C-contiguous writable arrays of the compute dtype go to _execute, which converts them. The call
        itself is Session._call's sequence written out for this one case, as Stream.step's is: through _call it
        measured ~0.5 us slower per run (H=64: 6.4 against 6.9 us). When every fed input has a slot of its own and
        none is planned by value, one pass over the slots checks and binds them (``checked`` then runs only for a
        feed that fails it): two passes cost ~1.2 us a call, one ~0.6 (three inputs).

        The function is written out for this plan's slots and outputs (_lean_source) rather than looping over them:
        the Xeon, one thread, an LSTM step with its state in and out, 4.83 -> 4.34 us at H=64."""
        dt, no_f, no_i = self.dtype, self._no_f, self._no_i
        slots = [idx[0] if idx else -1 for idx in plan.float_slots]
        example = [no_f if i < 0 else np.zeros(1, dt) for i in slots]
        # each executor slot: (the feed's name, its shape, None) or (None, None, the flat array it always gets)
        sources = [(None, None, no_f) if i < 0 else (self._input_names[i], shapes[i], None) if given[i] else
                   (None, None, np.ascontiguousarray(defaults[i], dt).ravel()) for i in slots]
        sources += [(None, None, no_f)] * (3 - len(sources))
        rows = _output_rows(plan.out_views, plan.fout_size)
        n_fed = sum(given)
        one_pass = not by_value and n_fed == sum(1 for name, _, _ in sources if name is not None)

        def slow(feed):
            return self._execute(plan, args_of(feed)) if checked(feed) else None

        def failed(status):
            raise self._status_error(status)
        space = dict(ndarray=np.ndarray, empty=np.empty, dt=dt, no_i=no_i, no_f=no_f, _threads=_threads,
                     threads=plan.blas_threads, slow=slow, checked=checked, failed=failed)
        # small calls (~0.2 us of a few): a work pair of its own, bound with prog and fconst by address
        # (Runtime.bind), so that a call unboxes six arrays, not ten. One call at a time takes it; a concurrent call
        # goes to the checked path. Large work stays in the plan's pool, which every runner of the plan shares
        bound = None
        if plan.fwork_size * dt.itemsize + plan.iwork_size * 8 <= BIND_MAX_WORK_BYTES:
            work = plan.take_work(dt)
            bound = self._runtime.bind(self.precision, plan.prog, self._fconst, work[0], work[1], no_f,
                                       (*example, no_i, np.zeros(1, dt)))
            if bound is None:
                plan.give_work(work)
            else:
                space.update(call=bound[0], mine=[bound[1]], keep=work)
        if bound is None:                # the ten-array entry point, with the plan's pool's work
            run = self._runtime.direct(self._run, (plan.prog, self._fconst, *example, no_i, np.zeros(1, dt),
                                                   np.zeros(1, np.int64), np.zeros(1, dt), no_f))
            space.update(run=run, prog=plan.prog, fconst=self._fconst, pool=plan._pool, take_work=plan.take_work,
                         POOL=WORK_POOL_SIZE)
        exec(_lean_source(sources, one_pass, n_fed, plan.out_views, plan.fout_size, rows, dt.itemsize, space,
                          bound is not None), space)
        return space["fast"]

    def _execute(self, plan, args, state=None, work=None):
        """Run ``plan`` on ``args`` (one array per model input, in order, of the shapes the plan was made for; float
        ones of any float dtype); returns the outputs in the plan's order."""
        dtype = self.dtype
        f0, f1, f2 = [_flat(args[idx[0]], dtype) if len(idx) == 1 else
                      np.concatenate([args[i].reshape(-1) for i in idx], dtype=dtype) if idx else self._no_f
                      for idx in plan.float_slots]
        ip = plan.int_args
        iin = np.concatenate([args[i].reshape(-1) for i in ip], dtype=np.int64) if ip else self._no_i
        if plan.call is not None:    # weights fed as inputs, packed for this call (or reused): in the state's slot
            state = self._call_weights.buffer(plan.call, args, self._fconst)
        return self._call(plan, f0, f1, f2, iin, state, work)

    def _call(self, plan, f0, f1, f2, iin, state=None, work=None):
        """One call of the executor on flat inputs in their slots; returns the outputs in the plan's order. The
        work buffers are ``work`` (a stream's) or the plan's pool's for the call."""
        fwork, iwork = plan.take_work(self.dtype) if work is None else work
        fout = np.empty(plan.fout_size, self.dtype)
        if _threads.current != plan.blas_threads:
            _threads.set_blas_threads(plan.blas_threads)
        status = self._run(plan.prog, self._fconst, f0, f1, f2, iin, fwork, iwork, fout,
                           self._no_f if state is None else state)
        if status:
            if work is None:
                plan.give_work((fwork, iwork))
            raise self._status_error(status)
        if plan.float_outputs:       # views made by the constructor: ~0.1 us less each than a slice and a reshape
            isz = fout.itemsize
            outs = [np.ndarray(shape, fout.dtype, fout, a * isz) for a, b, shape in plan.out_views]
        else:   # int outputs live in iwork: copy them out before another thread may take the buffers; float16
            #     outputs are the float32 results rounded
            outs = [fout[a:b].reshape(shape) if kind == "f" else
                    (fout if kind == "h" else iwork)[a:b].reshape(shape).astype(dtype)
                    for (a, b, shape), (kind, dtype) in zip(plan.out_views, plan.out_kinds)]
        if work is None:
            plan.give_work((fwork, iwork))
        return outs

    def _status_error(self, status):
        code, index = int(status) >> 32, int(status) & 0xFFFFFFFF
        nodes = self.model.all_nodes()
        node = nodes[index] if index < len(nodes) else None
        where = f"node {node.name!r} ({node.op}): " if node is not None else ""
        return InvalidInputError(where + ERROR_MESSAGES.get(code, f"the executor stopped with status {code}"))

    def stream(self, batch_size: int = 1, inputs: dict | None = None):
        """A stateful stream: feed one step (or a chunk of steps) at a time; the recurrent state stays inside.
        For a model whose state is an input/output pair (Silero's ``state`` -> ``stateN``) the stream feeds each
        state output back (engine/state_stream.py); ``inputs`` fixes the model's other inputs for the stream
        (Silero's ``sr``)."""
        if self.model.stream is not None and self.model.stream.get("state"):
            from .state_stream import StateStream
            return StateStream(self, batch_size, inputs)
        if inputs:
            raise EngineError("inputs= is for models whose state is an input/output pair; this model's stream keeps "
                              "its recurrent layers' state inside and fills its other inputs with zeros")
        return Stream(self, batch_size)

    def _wanted(self, output_names):
        if isinstance(output_names, str):
            raise InvalidInputError("output_names must be a list of names or None, not a string")
        for n in output_names:
            if n not in self._output_names:
                raise InvalidInputError(f"unknown output {n!r}; the model's outputs are {self._output_names}")
        return list(output_names)

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
            why = _memory.too_big(math.prod(shape) * 8) if math.prod(shape) > _SMALL else None
            if why:
                raise InvalidInputError(f"optional input {spec.name!r} was not given: zeros of shape {tuple(shape)} "
                                        f"{why}")
            args.append(np.zeros(shape, dtype=self._arg_dtype(spec)))
        return args, dims

    def _arg_dtype(self, spec):
        return self.dtype if spec.dtype in _FLOATS else np.dtype(spec.dtype)

    def _check_array(self, spec, value, dims):
        arr = _as_array(value, f"input {spec.name!r}")
        want_float = spec.dtype in _FLOATS
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
        if arr.size > _SMALL:
            # a broadcast view of 10^9 elements takes no memory, its contiguous copy would: refuse it first
            why = _memory.too_big(arr.size * 8)
            if why:
                raise InvalidInputError(f"input {spec.name!r} of shape {tuple(arr.shape)} {why}")
        if want_float:     # (np.asarray, not ascontiguousarray: that makes a rank-0 input rank 1)
            arr = np.asarray(arr, dtype=self.dtype, order="C")
        else:
            info = np.iinfo(np.dtype(spec.dtype))
            if arr.size and (arr.min() < info.min or arr.max() > info.max):
                raise InvalidInputError(f"input {spec.name!r} has values outside the {spec.dtype} range")
            arr = np.asarray(arr, dtype=spec.dtype, order="C")
        if not arr.flags.writeable:
            arr = arr.copy()   # the executor takes writable arrays only (one compiled signature)
        return arr


def _as_array(value, what):
    try:
        return np.asarray(value)
    except Exception as e:
        why = str(e).splitlines()[0] if str(e) else repr(e)
        raise InvalidInputError(f"{what} cannot be read as an array: {why}") from None


def _check_threads(threads):
    if threads is None:
        return _threads.available_cores()
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise EngineError(f"threads must be a positive integer, got {threads!r}")
    return min(threads, _threads.available_cores())


def _fmt_shape(shape):
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _flat(a, dtype):
    """``a`` as the 1-D, C-contiguous, writable array of ``dtype`` the executor takes (a view when it is one)."""
    if a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable:
        return a.ravel()
    return np.array(a, dtype=dtype).reshape(-1)


BIND_MAX_WORK_BYTES = 256 * 1024   # run's fast path binds its own work up to this size (Session._lean_runner)


def _lean_source(sources, one_pass, n_fed, out_views, size, rows, itemsize, space, bound):
    """The source of Session._lean_runner's function for one plan, ``fast(feed)``: the outputs, None for a feed the
    checked path must see (wrong keys, shapes or dtypes), or _execute's result for inputs it must convert. Names,
    shapes and arrays go into ``space`` (the function's globals), never into the source: the model's input names
    are the file's strings. ``bound``: the call takes the runner's own bound work (``mine``, ``call``), else the
    plan's pool's and the ten-array entry point."""
    lines = ["def fast(feed):"]
    lines += ["    if len(feed) != n_fed:", "        return None"] if one_pass else \
        ["    if not checked(feed):", "        return None"]
    space["n_fed"] = n_fed
    args, tests = [], []
    for k, (name, shape, fixed) in enumerate(sources):
        if name is None:
            space[f"k{k}"] = fixed
            args.append(f"k{k}")
            continue
        space[f"n{k}"], space[f"s{k}"] = name, shape
        lines.append(f"    a{k} = feed.get(n{k})")
        tests.append(f"type(a{k}) is not ndarray or a{k}.shape != s{k} or a{k}.dtype is not dt or "
                     f"not a{k}.flags.carray")
        args.append(f"a{k}.ravel()")
    if tests:
        lines += ["    if " + " or \\\n            ".join(tests) + ":", "        return slow(feed)"]
    if bound:
        lines += ["    try:",
                  "        at = mine.pop()              # atomic under the GIL: one call at a time has it",
                  "    except IndexError:",
                  "        return slow(feed)"]
    else:
        lines += ["    try:",
                  "        work = pool.pop()            # atomic under the GIL: no two calls share buffers",
                  "    except IndexError:",
                  "        work = take_work(dt)"]
    lines += ["    if _threads.current != threads:",
              "        _threads.set_blas_threads(threads)"]
    if rows is None:
        space["size"] = size
        lines.append("    buf = empty(size, dt)")
        out = "buf"
    else:
        space["bshape"], space["pick"] = rows[0], rows[2]
        lines.append("    buf = empty(bshape, dt)")
        out = "buf.ravel()"
    if bound:
        lines += ["    try:",
                  f"        status = call(at, {', '.join(args)}, no_i, {out})",
                  "    finally:",
                  "        mine.append(at)"]
    else:
        lines += [f"    status = run(prog, fconst, {', '.join(args)}, no_i, work[0], work[1], {out}, no_f)",
                  "    if len(pool) < POOL:",
                  "        pool.append(work)"]
    lines += ["    if status:",
              "        failed(status)"]
    if rows is None:
        views = []
        for k, (a, _, shape) in enumerate(out_views):
            space[f"o{k}"], space[f"v{k}"] = shape, a * itemsize
            views.append(f"ndarray(o{k}, dt, buf, v{k})")
        lines.append(f"    return [{', '.join(views)}]")
    else:
        lines.append("    outs = list(pick(buf))")
        for k, shape in rows[1]:
            space[f"r{k}"] = shape
            lines.append(f"    outs[{k}] = outs[{k}].reshape(r{k})")
        lines.append("    return outs")
    return "\n".join(lines) + "\n"


def _output_rows(out_views, size):
    """When the outputs are of one size and tile the output buffer (an LSTM's y, h and c at one step, in any order):
    the buffer's shape as rows of the commonest output shape, the outputs of another shape (to reshape) and a getter
    of each output's row. An output is then a row of the buffer, ~0.08 us where a view made from an offset costs
    ~0.22 (three outputs at H=64: 0.98 -> 0.3 us). None otherwise."""
    if len(out_views) < 2:
        return None
    n = out_views[0][1] - out_views[0][0]
    starts = [a for a, _, _ in out_views]
    if n == 0 or size != n * len(out_views) or any(b - a != n or a % n for a, b, _ in out_views) or \
            len(set(starts)) != len(starts):
        return None
    shapes = [shape for _, _, shape in out_views]
    common = max(shapes, key=shapes.count)
    return ((len(shapes), *common), tuple((k, shape) for k, shape in enumerate(shapes) if shape != common),
            operator.itemgetter(*(a // n for a in starts)))


def _listing(plan):
    lines = [f"# {len(plan.listing)} instructions; buffers: work {plan.fwork_size} + {plan.iwork_size} int, "
             f"outputs {plan.fout_size} elements"]
    lines += [f"{k:4d}  {line}" for k, line in enumerate(plan.listing)]
    return "\n".join(lines)


class Stream:
    """Step-by-step inference with the recurrent state kept inside.

    ``step(x)`` takes one time step (the model's stream input without its time axis) or a chunk of steps (with
    it), runs it from the current state, keeps the new state, and returns the model's first output (or the one
    named), without a time axis for a single step. A model without a time axis (a PyTorch cell: LSTMCell, GRUCell,
    RNNCell) takes each call's input as one step. ``state`` is a dict ``{"<node>/h": array, "<node>/c": ...}``
    that can be read and assigned; ``reset()`` returns to the zero state.

    Each stream has its own state and work buffers: streams of one Session may run in different threads at once;
    one stream must not be stepped from two threads at the same time.
    """

    def __init__(self, session: Session, batch_size: int = 1):
        model = session.model
        info = model.stream
        if info is None:
            raise UnsupportedModelError("this model cannot be streamed: the converter found no time axis on its "
                                        "inputs (for example because the sequence length was fixed at export)")
        for node in model.recurrent_nodes():
            if node.attrs.get("direction") in ("bidirectional", "reverse"):
                raise UnsupportedModelError(
                    f"node {node.name!r} runs {node.attrs['direction']}: a reverse direction needs the whole "
                    f"sequence, so this model cannot be streamed step by step; use Session.run")
            fed = [node.inputs[i] for i in OPS[node.op].call_inputs(node, model)]
            if fed:
                raise UnsupportedModelError(
                    f"node {node.name!r} takes its weights from the graph inputs {fed}, and this stream is fed "
                    f"only {info['input']!r}: use Session.run; or convert the model with its state as input/output "
                    f"pairs (from_onnx(state=...), lstm-engine convert --state) and give the weights once, "
                    f"stream(inputs=...); or convert it with its weights as initializers")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise EngineError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.session = session
        self.batch_size = batch_size
        self.input_name = info["input"]
        self.time_axis = info["time_axis"]
        self.batch_axis = info.get("batch_axis")
        self.output_time_axes = info.get("outputs", {})
        # the state buffer: every recurrent node's state, in the kernels' layout (D, B, .)
        self._slots, self._layout, pos = [], {}, 0
        for node in model.recurrent_nodes():
            op = OPS[node.op]
            shapes = op.kernel_state_shapes(node, batch_size)
            for index, (name, shape) in enumerate(zip(op.state_names, shapes)):
                self._slots.append((f"{node.name}/{name}", node, index, pos, shape))
                self._layout.setdefault(node.name, {})[index] = (pos, shape)
                pos += math.prod(shape)              # Python ints: a batch of 10**30 cannot overflow
        why = _memory.too_big(pos * session.dtype.itemsize)
        if why:
            raise InvalidInputError(f"a stream of batch size {batch_size}: its state {why}")
        self._state = np.zeros(max(pos, 1), session.dtype)
        spec = model.input(self.input_name)
        self._rank = len(spec.shape)
        self._dtype = session._arg_dtype(spec)       # the model's float type, or the int type of token ids
        self._step_ndim = self._rank - 1 if self.time_axis is not None else self._rank
        self._others = [s.name for s in model.inputs if s.name != self.input_name]
        self._plans = {}                              # (input shape, output name) -> (plan, work, args)
        self._fast = {}                               # (step shape, output name) -> its fast path (_remember_fast)
        self._last = None                             # (output_name as passed, step shape, dtype, fast path) of the
        #                                               last step that took one: step checks only these

    # ------------------------------------------------------------------ state
    def reset(self):
        """Back to the zero state."""
        self._state[:] = 0

    @property
    def state(self) -> dict:
        """{"<node>/h": array, ...} in each node's layout ((B, D, .) for layout 1), copies."""
        out = {}
        for name, node, _, pos, shape in self._slots:
            s = self._state[pos:pos + int(np.prod(shape))].reshape(shape)
            out[name] = (s.transpose(1, 0, 2) if node.attrs["layout"] == 1 else s).copy()
        return out

    @state.setter
    def state(self, values: dict):
        if not isinstance(values, dict):
            raise InvalidInputError("state must be a dict of name -> array")
        names = [n for n, _, _, _, _ in self._slots]
        unknown = [k for k in values if k not in names]
        if unknown:
            raise InvalidInputError(f"unknown state name(s) {unknown}; this stream's state is {names}")
        new = []
        for name, node, _, pos, shape in self._slots:
            if name not in values:
                continue
            arr = _as_array(values[name], f"state {name!r}")
            want = (shape[1], shape[0], shape[2]) if node.attrs["layout"] == 1 else shape
            if arr.dtype.kind != "f":
                raise InvalidInputError(f"state {name!r} must be a float array, got {arr.dtype}")
            if arr.shape != want:
                raise InvalidInputError(f"state {name!r} must have shape {want}, got {arr.shape}")
            new.append((pos, arr.transpose(1, 0, 2) if node.attrs["layout"] == 1 else arr))
        for pos, arr in new:
            self._state[pos:pos + arr.size] = np.ascontiguousarray(arr).reshape(-1)

    # ------------------------------------------------------------------ stepping
    def _prepare(self, x_shape, output_name):
        """The plan for an input of shape ``x_shape`` returning ``output_name``, with this stream's work buffers
        and the other inputs (zeros of the shapes they take for this batch; state inputs are not read)."""
        sess = self.session
        arr = np.zeros(x_shape, self._dtype)
        try:
            args, _ = sess._bind_inputs({self.input_name: arr}, skip=self._others)
        except InvalidInputError:
            raise
        shapes = {n: a.shape for n, a in zip(sess._input_names, args)}
        key = ("stream", tuple(shapes[n] for n in sess._input_names), output_name, self.batch_size)
        plan = sess._plan(key, shapes, [output_name], stream=self._layout, args=args)
        entry = (plan, plan.take_work(sess.dtype), args)
        self._plans[(x_shape, output_name)] = entry
        return entry

    def step(self, x, output_name: str | None = None):
        last = self._last
        if last is not None and type(x) is np.ndarray and output_name is last[0] and x.shape == last[1] and \
                x.dtype is last[2] and x.flags.carray:
            return last[3](x)        # the same shape and output as the step before: its fast path (_remember_fast)
        name = output_name or self.session._output_names[0]
        if type(x) is np.ndarray and x.dtype == self._dtype and x.ndim == self._step_ndim:
            fast = self._fast.get((x.shape, name))
            if fast is not None and x.flags.carray:
                self._last = (output_name, x.shape, x.dtype, fast)
                return fast(x)
        return self._step_checked(x, name)

    @property
    def _index(self):
        return self.session._input_names.index(self.input_name)

    def _squeeze(self, y, name, single):
        axis = self.output_time_axes.get(name)
        if single and self.time_axis is not None and axis is not None:
            return np.take(y, 0, axis=axis)
        return y

    def _step_checked(self, x, name):
        sess = self.session
        if name not in sess._output_names:
            raise InvalidInputError(f"unknown output {name!r}; the model's outputs are {sess._output_names}")
        spec = sess.model.input(self.input_name)
        arr = _as_array(x, "the step")
        single = self.time_axis is not None and arr.ndim == len(spec.shape) - 1
        full = np.expand_dims(arr, self.time_axis) if single else arr
        if self.batch_axis is not None and full.ndim == len(spec.shape) and \
                full.shape[self.batch_axis] != self.batch_size:
            raise InvalidInputError(f"this stream has batch size {self.batch_size}, but the step has "
                                    f"{full.shape[self.batch_axis]} on axis {self.batch_axis}")
        checked, _ = sess._bind_inputs({self.input_name: full}, skip=self._others)
        xc = checked[self._index]
        step_shape = xc.shape if not single else tuple(d for k, d in enumerate(xc.shape) if k != self.time_axis)
        entry = self._plans.get((step_shape, name) if single else (xc.shape, name))
        if entry is None:
            entry = self._prepare(xc.shape, name)
            if single:
                self._plans[(step_shape, name)] = entry
                self._remember_fast(step_shape, name, entry)
        plan, work, args = entry
        args = list(args)
        args[self._index] = xc
        y = sess._execute(plan, args, self._state, work)[0]
        return self._squeeze(y, name, single)

    def _remember_fast(self, step_shape, name, entry):
        """Prepare the fast path of ``step`` for this shape when the plan reads only the stream input and returns
        one float output at offset 0."""
        plan, (fwork, iwork), _ = entry
        sess = self.session
        if [entry[0] for entry in plan.inputs] != [self.input_name] or not plan.float_outputs or plan.out_views[0][0] != 0:
            return
        a, b, shape = plan.out_views[0]
        axis = self.output_time_axes.get(name)
        if self.time_axis is not None and axis is not None:
            shape = shape[:axis] + shape[axis + 1:]
        as_float = plan.inputs[0][1] == "f"
        dt, no_f, no_i, state = sess.dtype, sess._no_f, sess._no_i, self._state
        x = np.zeros(math.prod(step_shape), self._dtype if as_float else np.int64)
        prog, fconst, size, threads = plan.prog, sess._fconst, plan.fout_size, plan.blas_threads
        example = (x if as_float else no_f, no_f, no_f, no_i if as_float else x, np.empty(size, dt))
        # prog, fconst, the work and the state stay put for the stream's life (the stream holds them): bound by
        # address where the runtime can (Runtime.bind), else every call passes all ten arrays
        bound = sess._runtime.bind(sess.precision, prog, fconst, fwork, iwork, state, example)
        call, at = bound if bound is not None else (None, None)
        run = sess._runtime.direct(sess._run, (prog, fconst, *example[:4], fwork, iwork, example[4], state)) \
            if call is None else None
        whole = b - a == size            # the output is all of the output buffer: made in its shape, no reshape

        def fast(x):
            """One step of this shape: x C-contiguous, writable, of the stream input's dtype. ~1.2 -> 0.7 us over
            the executor's call at H=64 (a dict lookup, a flags object and a reshape fewer); the bound call ~0.2 us
            less again."""
            if _threads.current != threads:
                _threads.set_blas_threads(threads)
            if whole:
                y = np.empty(shape, dt)
                fout = y.ravel()
            else:
                fout = np.empty(size, dt)
                y = fout[:b - a].reshape(shape)
            flat = x.ravel()                  # C-contiguous: a view
            if call is not None:
                status = call(at, flat, no_f, no_f, no_i, fout) if as_float else \
                    call(at, no_f, no_f, no_f, flat, fout)
            elif as_float:
                status = run(prog, fconst, flat, no_f, no_f, no_i, fwork, iwork, fout, state)
            else:
                status = run(prog, fconst, no_f, no_f, no_f, flat, fwork, iwork, fout, state)
            if status:
                raise sess._status_error(status)
            return y
        fast.keep = (prog, fconst, fwork, iwork, state)   # what ``at`` points to (the stream holds them too)
        self._fast[(step_shape, name)] = fast

    def program(self, output_name: str | None = None) -> str:
        """The program one step runs (see Session.program)."""
        name = output_name or self.session._output_names[0]
        spec = self.session.model.input(self.input_name)
        shape = tuple(1 if k == self.time_axis else (self.batch_size if k == self.batch_axis else
                      (d if isinstance(d, int) else 1)) for k, d in enumerate(spec.shape))
        return _listing(self._prepare(shape, name)[0])
