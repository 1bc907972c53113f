"""Which executor runs the plans: the ahead-of-time one when a compatible one is installed, else the JIT one.

    aot   engine/executor.py's ``execute`` compiled by ``lstm-engine build-runtime`` (engine/aot.py) into an extension
          module; loading it imports neither Numba nor llvmlite
    jit   the same function compiled by Numba at first use (or loaded from Numba's cache)

The choice is made once per process, at the first Session (``current()``), from ``LSTM_ENGINE_RUNTIME``:

    unset     the AOT runtime if a compatible one is found in $LSTM_ENGINE_CACHE_DIR/runtime (where build-runtime writes
              by default) or in the package's own ``_runtime`` folder; else the JIT
    DIR       the AOT runtime in DIR if it is compatible; else the JIT, with a warning saying why
    jit       the JIT, whatever is installed

"Compatible" means built from these engine sources, for this Python and numpy, for a CPU that this one can run
(engine/aot.py, ``check``). Nothing here imports Numba: only the JIT branch does, when it is taken.
"""
from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass, field

from . import _threads
from .errors import EngineError

ENV = "LSTM_ENGINE_RUNTIME"


@dataclass(frozen=True)
class Runtime:
    name: str                   # "aot" or "jit"
    parallel: bool              # has the threaded LSTM kernel (lstm_direction_parallel); the AOT runtime has not
    # precision -> execute(prog, fconst, fin0, fin1, fin2, iin, fwork, iwork, fout, state)
    functions: dict = field(repr=False)
    path: str | None = None     # the AOT module
    info: dict | None = None    # the AOT module's build record (engine/aot.py)
    note: str = ""              # why the JIT was chosen over an AOT runtime, when one was looked for and refused
    # precision -> execute_bound(bound, fin0, fin1, fin2, iin, fout) (engine/executor.py); the JIT runtime only
    bound_functions: dict = field(default_factory=dict, repr=False)

    def executor(self, precision):
        return self.functions[str(precision)]

    def bind(self, precision, prog, fconst, fwork, iwork, state, example):
        """A call of the executor with prog, fconst, fwork, iwork and state fixed, as ``(call, bound)``:
        ``call(bound, fin0, fin1, fin2, iin, fout)`` is execute_bound's compiled entry point, which unboxes six
        arrays a call instead of ten (stream step at H=64: ~0.2 us less). ``example`` is (fin0, fin1, fin2, iin,
        fout) of the types every later call passes (C-contiguous writable 1-D arrays). The five fixed arrays must be
        C-contiguous 1-D arrays that the caller keeps alive, and unchanged, as long as it makes the call: ``bound``
        holds their addresses only. None where there is no such entry point (the AOT runtime, plain Python, or no
        compiled specialisation for these types): the caller then calls ``executor(precision)`` with all ten."""
        import numpy as np
        fn = self.bound_functions.get(str(precision))
        fixed = (prog, fconst, fwork, iwork, state)
        if fn is None or not all(a.ndim == 1 and a.flags.c_contiguous and a.flags.writeable for a in fixed):
            return None
        # execute_bound reads prog and iwork as int64, the rest as fout's dtype: anything else is not bound
        if prog.dtype != np.int64 or iwork.dtype != np.int64 or \
                not fconst.dtype == fwork.dtype == state.dtype == example[4].dtype == np.dtype(str(precision)):
            return None
        bound = np.array([v for a in fixed for v in (a.ctypes.data, a.size)], np.int64)
        call = self.direct(fn, (bound, *example))
        return None if call is fn else (call, bound)

    def direct(self, fn, args):
        """``fn`` (an executor of this runtime) as a callable that skips the JIT's type dispatch for arguments of
        exactly the types of ``args`` (after a call with them): Numba's compiled entry point, ~0.2 us less per
        call. It does not check its arguments: only for fast paths that guarantee every later call the same dtypes,
        ranks, C-contiguous and writable arrays. ``fn`` itself when there is none (the AOT runtime)."""
        overloads = getattr(fn, "overloads", None)
        if self.name != "jit" or not overloads:
            return fn
        from numba import typeof
        if not all(a.flags.c_contiguous and a.flags.writeable for a in args):
            return fn
        compiled = overloads.get(tuple(typeof(a) for a in args))
        return fn if compiled is None else compiled.entry_point


_current = None
_lock = threading.Lock()


def current() -> Runtime:
    """The process's runtime, chosen on first use."""
    global _current
    if _current is None:
        with _lock:
            if _current is None:
                _current = _choose()
    return _current


def _choose() -> Runtime:
    from . import aot
    setting = os.environ.get(ENV, "").strip()
    if setting.lower() == "jit":
        return jit_runtime()
    dirs = [setting] if setting else aot.search_dirs()
    reasons = []
    for d in dirs:
        info, reason = aot.check(d)
        if info is not None:
            try:
                functions = aot.load(d, info)
            except (ImportError, OSError) as e:
                reasons.append(f"{d}: its module does not load ({e})")
                continue
            if not info["blas"]:
                _threads.without_blas()
            return Runtime("aot", parallel=False, functions=functions, path=aot.module_path(d, info), info=info)
        if reason:
            reasons.append(f"{d}: {reason}")
    note = "; ".join(r for r in reasons if setting or "no runtime" not in r)
    if setting:
        warnings.warn(f"{ENV}={setting} is not used ({note}); falling back to the JIT", RuntimeWarning, stacklevel=3)
    return jit_runtime(note)


def jit_runtime(note="") -> Runtime:
    try:
        from .executor import execute, execute_bound
    except ImportError as e:
        raise EngineError(f"no usable ahead-of-time runtime ({note or 'none found'}) and the JIT needs Numba, which "
                          f"cannot be imported ({e}); build one with `lstm-engine build-runtime` where Numba is "
                          f"installed, or install numba") from None
    return Runtime("jit", parallel=True, functions={"float32": execute, "float64": execute}, note=note,
                   bound_functions={"float32": execute_bound, "float64": execute_bound})
