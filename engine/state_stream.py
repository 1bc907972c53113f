"""Streams of models whose state is an input/output pair (Silero VAD's ``state`` -> ``stateN``; ``h``, ``c`` ->
``hn``, ``cn``): the stream feeds each state output back into its input, so a caller steps with the data alone.

The pairs are in the model's stream description (``"state": [[input, output], ...]``), found by the converter by name
and shape or declared at conversion (``lstm-engine convert --state state=stateN``). A step runs the model's plan for
the step's shape with every state output wanted; the outputs come back in a fresh buffer each call, so the new state
is taken as it is (no copy) and passed in as the next step's input.
"""
from __future__ import annotations

import numpy as np

from . import _threads
from .errors import EngineError, InvalidInputError
from .plan import WORK_POOL_SIZE


class StateStream:
    """One stream over a Session: ``step(x)`` runs one chunk (or one time step), the state pairs carried inside.

    ``inputs``: values for the model's other inputs, fixed for the stream (Silero's ``sr``). The state starts at
    zeros of the shapes its inputs declare, the dimensions they share with the stream input taken from the first
    step, any other free dimension being the batch size."""

    def __init__(self, session, batch_size: int = 1, inputs: dict | None = None):
        model = session.model
        info = model.stream
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise EngineError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.session, self.batch_size = session, batch_size
        self.input_name, self.time_axis = info["input"], info["time_axis"]
        self.pairs = [tuple(p) for p in info["state"]]
        self.state_inputs = [i for i, _ in self.pairs]
        self.state_outputs = [o for _, o in self.pairs]
        self.output_time_axes = info.get("outputs", {})
        names = session._input_names
        fixed = dict(inputs or {})
        wrong = [k for k in fixed if k not in names or k == self.input_name or k in self.state_inputs]
        if wrong:
            raise InvalidInputError(f"inputs {wrong} cannot be fixed for a stream: pass the model's other inputs "
                                    f"(not {self.input_name!r} or the state {self.state_inputs})")
        missing = [s.name for s in model.inputs if s.name not in fixed and s.name != self.input_name
                   and s.name not in self.state_inputs and not s.optional]
        if missing:
            raise InvalidInputError(f"this model's input(s) {missing} are neither the stream input nor state: give "
                                    f"them once for the stream, e.g. session.stream(inputs={{{missing[0]!r}: ...}})")
        self._fixed = fixed
        spec = model.input(self.input_name)
        self._rank = len(spec.shape)
        self._dtype = session._arg_dtype(spec)
        self._step_ndim = self._rank - 1 if self.time_axis is not None else self._rank
        self._index = names.index(self.input_name)
        self._state_index = [names.index(n) for n in self.state_inputs]
        self._outputs = [o for o in session._output_names if o not in self.state_outputs]
        self._state = None          # the state arrays, in pair order; made on the first step
        self._plans = {}            # (step shape, output) -> (plan, args)
        self._fast = {}             # (step shape, output) -> what step's fast path needs (_fast_path)

    # ------------------------------------------------------------------ state
    def reset(self):
        """Back to the zero state."""
        self._state = None

    @property
    def state(self) -> dict:
        """{state input name: array} (copies); empty before the first step."""
        return {} if self._state is None else {n: a.copy() for n, a in zip(self.state_inputs, self._state)}

    @state.setter
    def state(self, values: dict):
        if not isinstance(values, dict) or any(k not in self.state_inputs for k in values):
            raise InvalidInputError(f"state must be a dict with keys among {self.state_inputs}")
        if self._state is None and set(values) != set(self.state_inputs):
            raise InvalidInputError(f"before the first step, set the whole state: {self.state_inputs}")
        new = list(self._state) if self._state is not None else [None] * len(self.pairs)
        for k, name in enumerate(self.state_inputs):
            if name in values:
                arr = np.asarray(values[name])
                if arr.dtype.kind != "f":
                    raise InvalidInputError(f"state {name!r} must be a float array, got {arr.dtype}")
                if self._state is not None and arr.shape != self._state[k].shape:
                    raise InvalidInputError(f"state {name!r} must have shape {self._state[k].shape}, got {arr.shape}")
                new[k] = np.array(arr, dtype=self.session.dtype, order="C")
        self._state = new

    def _zero_state(self, full):
        """Zeros for every state input, their free dimensions bound by the step (or the batch size)."""
        sess = self.session
        dims = {}
        sess._check_array(sess.model.input(self.input_name), full, dims)
        out = []
        for name in self.state_inputs:
            shape = [d if isinstance(d, int) else dims.get(d, self.batch_size) for d in sess.model.input(name).shape]
            out.append(np.zeros(shape, sess.dtype))
        return out

    # ------------------------------------------------------------------ stepping
    def step(self, x, output_name: str | None = None):
        """Run one step (or chunk): ``x`` without the time axis for one time step of a model that has one, or with
        it for several. Returns the output ``output_name`` (default: the first output that is not a state)."""
        name = output_name or self._outputs[0]
        if type(x) is np.ndarray and x.dtype == self._dtype and x.ndim == self._step_ndim and \
                self._state is not None and x.flags.c_contiguous:
            fast = self._fast.get((x.shape, name))
            if fast is not None and x.flags.writeable:
                return self._run_fast(fast, x)
            entry = self._plans.get((x.shape, name))
            if entry is not None:
                return self._run(entry, x.reshape(plan_shape(x, self.time_axis)) if entry[2] else x)
        return self._step_checked(x, name)

    def _run(self, entry, full):
        plan, args, single, axis = entry
        args = list(args)
        args[self._index] = full
        for k, i in enumerate(self._state_index):
            args[i] = self._state[k]
        outs = self.session._execute(plan, args)
        self._state = outs[1:]
        y = outs[0]
        return np.take(y, 0, axis=axis) if single and axis is not None else y

    def _step_checked(self, x, name):
        sess = self.session
        if name not in self._outputs:
            raise InvalidInputError(f"unknown output {name!r}; this stream's outputs are {self._outputs} (the state "
                                    f"outputs {self.state_outputs} are fed back)")
        arr = np.asarray(x) if not isinstance(x, np.ndarray) else x
        if arr.dtype.kind not in "fiu":
            raise InvalidInputError(f"the step must be a numeric array, got {arr.dtype}")
        single = self.time_axis is not None and arr.ndim == self._rank - 1
        full = np.expand_dims(arr, self.time_axis) if single else arr
        if self._state is None:
            self._state = self._zero_state(full)
        feed = {self.input_name: full, **self._fixed, **dict(zip(self.state_inputs, self._state))}
        args, _ = sess._bind_inputs(feed)
        shapes = {n: a.shape for n, a in zip(sess._input_names, args)}
        key = ("state-stream", tuple(a.shape for a in args), name)
        plan = sess._plan(key, shapes, [name, *self.state_outputs], args=args)
        entry = (plan, args, single, self.output_time_axes.get(name))
        if not any(i in sess._value_inputs for i in self._state_index + [self._index]):
            self._plans[(arr.shape, name)] = entry     # the fixed inputs keep their values for the stream
            fast = self._fast_path(entry)
            if fast is not None:
                self._fast[(arr.shape, name)] = fast
        return self._run(entry, args[self._index])

    def _fast_path(self, entry):
        """What ``step`` needs to call the executor itself for this plan, without Session._execute's general
        binding: the stream input and the state arrays go straight into their float slots, the fixed inputs are
        flattened once. None when the plan needs more (weights fed at run time, int or float16 outputs, an input
        sharing a slot, a float16 step)."""
        plan, args, single, axis = entry
        sess = self.session
        if plan.call is not None or not plan.float_outputs or self._dtype != sess.dtype:
            return None
        src = {self._index: -1, **{i: k for k, i in enumerate(self._state_index)}}
        slots = []
        for idx in plan.float_slots:
            if len(idx) > 1:
                return None
            slots.append(sess._no_f if not idx else src[idx[0]] if idx[0] in src else
                         np.ascontiguousarray(args[idx[0]], sess.dtype).reshape(-1))
        if any(i in src for i in plan.int_args):
            return None
        iin = np.concatenate([args[i].reshape(-1) for i in plan.int_args], dtype=np.int64) if plan.int_args else \
            sess._no_i
        (a, b, shape), *states = plan.out_views
        if single and axis is not None:
            shape = shape[:axis] + shape[axis + 1:]      # the output's time axis of 1 dropped: a reshape
        f = [s if type(s) is not int else np.ascontiguousarray(args[self._index if s < 0 else self._state_index[s]],
                                                                 sess.dtype).reshape(-1) for s in slots]
        work = plan.take_work(sess.dtype)
        run = sess._runtime.direct(sess._run, (plan.prog, sess._fconst, *f, iin, *work,
                                               np.empty(plan.fout_size, sess.dtype), sess._no_f))
        plan.give_work(work)
        return (run, plan, sess._fconst, slots, iin, plan.fout_size, (a, b, shape), states, plan.blas_threads)

    def _run_fast(self, fast, x):
        run, plan, fconst, slots, iin, size, (a, b, shape), states, threads = fast
        sess = self.session
        f = []
        for s in slots:
            f.append(s if type(s) is not int else x.ravel() if s < 0 else self._state[s].ravel())
        fout = np.empty(size, fconst.dtype)       # fresh: the new state is taken from it as it is
        if _threads.current != threads:
            _threads.set_blas_threads(threads)
        pool = plan._pool                        # the plan's idle work buffers (take_work / give_work, inlined):
        try:                                     # a stream holds none between steps
            work = pool.pop()
        except IndexError:
            work = plan.take_work(fconst.dtype)
        status = run(plan.prog, fconst, f[0], f[1], f[2], iin, work[0], work[1], fout, sess._no_f)
        if len(pool) < WORK_POOL_SIZE:
            pool.append(work)
        if status:
            raise sess._status_error(status)
        self._state = [fout[s0:s1].reshape(sh) for s0, s1, sh in states]
        return fout[a:b].reshape(shape)

    def program(self, output_name: str | None = None) -> str:
        """The program one step runs (see Session.program); after a first step."""
        from .session import _listing
        name = output_name or self._outputs[0]
        for (shape, n), (plan, _, _, _) in self._plans.items():
            if n == name:
                return _listing(plan)
        raise EngineError("step the stream once first: the program depends on the step's shape")


def plan_shape(x, time_axis):
    """x's shape with a time axis of 1 inserted."""
    shape = list(x.shape)
    shape.insert(time_axis, 1)
    return tuple(shape)
