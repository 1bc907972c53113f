"""Compile (or load from Numba's cache) the executor for each compute dtype, outside any model.

The executor is model-independent, so this is the whole of the engine's compilation: after it, a never-seen model
only costs loading its file and making a plan. ``lstm-engine warmup`` calls this; the first Session of a process
does the same for its own dtype.
"""
import time

import numpy as np

from . import _cache


def warm_up(precisions=("float32", "float64")):
    """Yield (precision, seconds) as each executor specialisation becomes ready."""
    import numba
    from .executor import execute
    _cache.ensure_fresh()
    # Numba issue #8578: a cached function that calls a parallel=True kernel (the executor calls the multi-thread
    # LSTM kernel) segfaults when it is loaded before the thread pool exists; asking for the thread count starts it
    numba.get_num_threads()
    for precision in precisions:
        t0 = time.perf_counter()
        f = np.empty(0, precision)
        i = np.empty(0, np.int64)
        execute(np.array([2, 2], np.int64), np.empty(1, precision), f, i, f, i, f, f)
        yield precision, time.perf_counter() - t0
