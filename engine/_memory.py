"""Absurd sizes are refused before anything is allocated; the buffers the kernels read start on a 64-byte boundary.

A plan's buffers, a call's input copies and a stream's state are checked against ``limit_bytes()``: the machine's
physical memory, or the room left in the process's address space when it is limited (``RLIMIT_AS``). A size
beyond that could only end as a MemoryError, or worse, with memory overcommitted, as a process killed later.
"""
import os

import numpy as np

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _physical():
    try:
        return os.sysconf("SC_PHYS_PAGES") * _PAGE
    except (ValueError, OSError, AttributeError):   # pragma: no cover - not POSIX
        return 1 << 62


PHYSICAL = _physical()


def limit_bytes() -> int:
    """The largest allocation worth attempting."""
    limit = PHYSICAL
    try:
        import resource
        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            with open("/proc/self/statm") as f:
                used = int(f.read().split()[0]) * _PAGE
            limit = min(limit, max(soft - used, 0))
    except (ImportError, OSError, ValueError):      # pragma: no cover - not Linux
        pass
    return limit


def fmt(nbytes) -> str:
    for unit, scale in (("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20)):
        if nbytes >= scale:
            return f"{nbytes / scale:.3g} {unit}" if nbytes < 1 << 60 else f"{nbytes:.3g} bytes"
    return f"{nbytes} bytes"


def too_big(nbytes, limit=None) -> str | None:
    """None if ``nbytes`` may be allocated (within ``limit``, default ``limit_bytes()``), else the end of an error
    message saying why not."""
    limit = limit_bytes() if limit is None else limit
    if nbytes <= limit:
        return None
    return f"needs {fmt(nbytes)}, more than the {fmt(limit)} of memory available"


ALIGN = 16   # elements: 64 bytes of float32, where every packed weight array and work buffer slot starts


def round_up(n):
    """n elements rounded up to a whole number of ALIGN: the offset of the next array in a packed buffer that
    aligned_empty allocated, so that it too starts on a 64-byte boundary (float32)."""
    return -(-n // ALIGN) * ALIGN


def aligned_empty(n, dtype):
    """An uninitialised (n,) array whose data starts on a 64-byte boundary, where numpy promises 16 (and numpy's
    buffers of 20 KiB and more start 16 or 48 bytes past one here): the kernels' 512-bit loads and stores of the
    weights and of the work buffers then never straddle two cache lines, whatever the allocator's state. Measured
    on one core, in one process: weights and work buffers both 16-48 bytes off cost 5-12% (T=100 H=256 1.53-1.56
    against 1.61-1.74 ms); work buffers alone off 0.6-0.9% of a stream step's kernel at H=128, and 0-3% of whole
    calls (T=100 H=128), so nearly all of it is the weights'."""
    dtype = np.dtype(dtype)
    raw = np.empty(n + 64 // dtype.itemsize, dtype)
    shift = (-raw.ctypes.data % 64) // dtype.itemsize
    return raw[shift:shift + n]
