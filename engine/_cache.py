"""Keeping Numba's on-disk cache honest.

Numba's ``cache=True`` invalidates a function's cache when that function's own source file changes, but not when a
function it calls, in another file, changes; the executor calls kernels in every op module. We therefore
fingerprint all of the engine's sources and drop the engine's Numba cache files whenever the fingerprint differs
from the one recorded under ``cache_root()`` (``LSTM_ENGINE_CACHE_DIR``, default ``~/.cache/lstm-engine``).
"""
import glob
import hashlib
import os
from functools import lru_cache

_ENGINE_DIR = os.path.dirname(os.path.abspath(__file__))


@lru_cache(maxsize=None)
def source_hash() -> str:
    """A fingerprint of the engine's compiled sources: every module with jitted code, the op modules whose constants
    (opcodes, parameter offsets) the kernels read, and the Numba settings. It reads files only: no Numba."""
    h = hashlib.sha256()
    for path in sorted(glob.glob(os.path.join(_ENGINE_DIR, "**", "*.py"), recursive=True)):
        rel = os.path.relpath(path, _ENGINE_DIR)
        with open(path, "rb") as f:
            text = f.read()
        if b"@njit" in text or rel in ("config.py", "executor.py") or rel.startswith("ops" + os.sep):
            h.update(rel.encode())
            h.update(text)
    return h.hexdigest()[:16]


def cache_root() -> str:
    root = os.environ.get("LSTM_ENGINE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "lstm-engine")
    return root


@lru_cache(maxsize=None)
def ensure_fresh() -> None:
    """Drop stale Numba cache files of the engine's kernels if any engine source changed since they were written."""
    marker_dir = os.path.join(cache_root())
    try:
        os.makedirs(marker_dir, exist_ok=True)
        marker = os.path.join(marker_dir, "engine-sources.txt")
        current = source_hash()
        old = open(marker).read().strip() if os.path.exists(marker) else ""
        if old == current:
            return
        patterns = [os.path.join(_ENGINE_DIR, "**", "__pycache__", "*.nb[ic]")]
        import numba
        if numba.config.CACHE_DIR:
            patterns.append(os.path.join(numba.config.CACHE_DIR, "**", "*.nb[ic]"))
        for pattern in patterns:
            for path in glob.glob(pattern, recursive=True):
                try:
                    os.remove(path)
                except OSError:
                    pass
        with open(marker, "w") as f:
            f.write(current + "\n")
    except OSError:
        pass  # a read-only cache location only costs compile time
