"""Thread count of the BLAS that Numba's ``np.dot`` calls (SciPy's bundled OpenBLAS).

The engine's own kernels run on the calling thread, except the threaded LSTM kernel (its own Numba threads, each
calling the BLAS on one thread for its part); the other multi-threaded work is the BLAS GEMM of the input projection
(and of the recurrence at large batch). OpenBLAS's setting is process-wide, so we remember the last value set and
touch the library only when a plan needs another (``Plan.blas_threads``): a run costs one comparison.
"""
import os

current = None
_controllers = None


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def without_blas() -> None:
    """The runtime computes products without BLAS (an AOT runtime built with --no-blas): leave SciPy unimported."""
    global _controllers
    if _controllers is None:
        _controllers = []


def set_blas_threads(n: int) -> None:
    global current, _controllers
    if n == current:
        return
    if _controllers is None:
        try:
            import scipy.linalg  # noqa: F401  (loads the BLAS Numba uses)
            from threadpoolctl import ThreadpoolController
            _controllers = [lc for lc in ThreadpoolController().lib_controllers
                            if lc.user_api == "blas" and "scipy" in os.path.basename(os.path.dirname(lc.filepath))]
        except ImportError:  # pragma: no cover - threadpoolctl is a dependency
            _controllers = []
    for lc in _controllers:
        lc.set_num_threads(n)
    current = n
