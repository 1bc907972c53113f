"""Compile (or load from Numba's cache) the executor for each compute dtype, outside any model.

The executor is model-independent, so this is the whole of the engine's compilation: after it, a never-seen model
only costs loading its file and making a plan. ``lstm-engine warmup`` calls this; the first Session of a process
does the same for its own dtype. With the ahead-of-time runtime there is nothing to compile: the call only checks
that the module runs.
"""
import compileall
import os
import time

import numpy as np

from . import _cache, runtime as _runtime


def warm_up(precisions=("float32", "float64"), runtime=None):
    """Yield (precision, seconds) as each executor specialisation becomes ready."""
    runtime = runtime or _runtime.current()
    if runtime.name == "jit":
        import numba
        _cache.ensure_fresh()
        # Numba issue #8578: a cached function that calls a parallel=True kernel (the executor calls the
        # multi-thread LSTM kernel) segfaults when it is loaded before the thread pool exists; asking for the
        # thread count starts it
        numba.get_num_threads()
    for precision in precisions:
        t0 = time.perf_counter()
        f = np.empty(0, precision)
        i = np.empty(0, np.int64)
        prog = np.array([2, 2], np.int64)          # no instructions
        runtime.executor(precision)(prog, np.empty(1, precision), f, f, f, i, f, i, f, f)
        bound = runtime.bound_functions.get(precision)
        if bound is not None:                       # the fast paths' entry (Runtime.bind), with nothing bound
            bound(np.array([prog.ctypes.data, 2] + [0] * 8, np.int64), f, f, f, i, f)
        yield precision, time.perf_counter() - t0


def compile_bytecode():
    """Write the Python bytecode of the engine and its converters, as ``pip install`` does for a regular install.
    An editable install, or PYTHONDONTWRITEBYTECODE, otherwise leaves every process to compile ~40 modules from
    source: ~45 ms of a cold start here (the ahead-of-time runtime's 0.10 s start is 0.14 s without it). Returns the
    package directories it could not write to."""
    import converters as conv       # the sibling package, for its path
    failed = []
    for path in (os.path.dirname(os.path.abspath(__file__)), os.path.dirname(os.path.abspath(conv.__file__))):
        if not compileall.compile_dir(path, quiet=2, workers=1):
            failed.append(path)
    return failed
