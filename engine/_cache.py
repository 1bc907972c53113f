"""Keeping Numba's on-disk cache honest.

Numba's ``cache=True`` invalidates a function's cache when that function's own source file changes, but not when a
function it calls, in another file, changes; the executor calls kernels in every op module. Nor is its cache keyed by
the environment switches that change the machine code it writes (``NUMBA_ENABLE_PROFILING`` compiles every loop of
the activations scalar: a kernel cached in a profiling run stayed scalar in every later run). We therefore
fingerprint all of the engine's sources and those switches, and drop the engine's Numba cache files whenever the
fingerprint differs from the one recorded for this installation and cache location (its ``__pycache__``
directories, or NUMBA_CACHE_DIR: ``drop_stale``) under ``cache_root()`` (``LSTM_ENGINE_CACHE_DIR``, default
``~/.cache/lstm-engine``). The switches are read from the environment only, not from a ``.numba_config.yaml``.
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


# Numba's environment switches that change the code it compiles but not the key of its cache (which holds the
# function's source file, its types and the target CPU): optimisation level, debug information and profiling (which
# stop LLVM vectorising), bounds checks, the vectorisers, AVX and SVML
CODEGEN_SWITCHES = ("NUMBA_OPT", "NUMBA_ENABLE_PROFILING", "NUMBA_DEBUGINFO", "NUMBA_BOUNDSCHECK",
                    "NUMBA_LOOP_VECTORIZE", "NUMBA_SLP_VECTORIZE", "NUMBA_ENABLE_AVX", "NUMBA_DISABLE_INTEL_SVML")


def fingerprint() -> str:
    """What the engine's cached kernels must have been compiled from: source_hash and the switches set among
    CODEGEN_SWITCHES (the sources alone when none is set, so that the usual fingerprint is source_hash)."""
    switches = [f"{name}={os.environ[name]}" for name in CODEGEN_SWITCHES if os.environ.get(name, "") != ""]
    if not switches:
        return source_hash()
    return source_hash() + "-" + hashlib.sha256(";".join(switches).encode()).hexdigest()[:8]


def cache_root() -> str:
    root = os.environ.get("LSTM_ENGINE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "lstm-engine")
    return root


@lru_cache(maxsize=None)
def ensure_fresh() -> None:
    """Drop stale Numba cache files of the engine's kernels if any engine source, or a switch of CODEGEN_SWITCHES,
    changed since they were written."""
    import numba
    drop_stale(_ENGINE_DIR, cache_root(), fingerprint(), numba.config.CACHE_DIR)


def marker_path(marker_dir: str, engine_dir: str = _ENGINE_DIR, numba_cache_dir: str = "") -> str:
    """Where the fingerprint of the engine installed in ``engine_dir`` is recorded: one marker per installation and
    Numba cache location (the installation's own ``__pycache__`` directories, or ``numba_cache_dir``)."""
    key = os.path.realpath(engine_dir)
    if numba_cache_dir:
        key += "\n" + os.path.realpath(numba_cache_dir)
    tag = hashlib.sha256(key.encode()).hexdigest()[:12]
    return os.path.join(marker_dir, f"engine-sources-{tag}.txt")


def _writable(directory: str) -> bool:
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError:
        return False
    return os.access(directory, os.W_OK)


def drop_stale(engine_dir: str, marker_dir: str, current: str, numba_cache_dir: str = "") -> None:
    """Remove the Numba cache files (``*.nbi``, ``*.nbc``) that this process would load for the engine installed in
    ``engine_dir`` unless the marker of that installation and location records ``current``. The location is
    ``numba_cache_dir`` (NUMBA_CACHE_DIR) when it is set and writable, else the installation's own ``__pycache__``
    directories (where Numba falls back to when it cannot write NUMBA_CACHE_DIR): a process that caches elsewhere
    leaves the installation's cache, which it never reads, to the processes that do (a profiling run with its own
    NUMBA_CACHE_DIR deleted it, and the next plain run spent two minutes compiling the executor again). The marker
    is per installation (named by a hash of its path): every installation keeps its cache beside its own sources,
    so one installation being fresh says nothing of another's (a virtualenv reinstalled over an older engine kept
    that engine's cached executor, which then ran on the new weight layouts, while another installation had already
    written the new fingerprint)."""
    try:
        os.makedirs(marker_dir, exist_ok=True)
        elsewhere = bool(numba_cache_dir) and _writable(numba_cache_dir)
        marker = marker_path(marker_dir, engine_dir, numba_cache_dir if elsewhere else "")
        old = open(marker).read().strip() if os.path.exists(marker) else ""
        if old == current:
            return
        pattern = os.path.join(numba_cache_dir, "**", "*.nb[ic]") if elsewhere else \
            os.path.join(engine_dir, "**", "__pycache__", "*.nb[ic]")
        for path in glob.glob(pattern, recursive=True):
            try:
                os.remove(path)
            except OSError:
                pass
        with open(marker, "w") as f:
            f.write(current + "\n")
    except OSError:
        pass  # a read-only cache location only costs compile time
