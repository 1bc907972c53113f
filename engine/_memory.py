"""Absurd sizes are refused before anything is allocated.

A plan's buffers, a call's input copies and a stream's state are checked against ``limit_bytes()``: the machine's
physical memory, or the room left in the process's address space when it is limited (``RLIMIT_AS``). A size
beyond that could only end as a MemoryError, or worse, with memory overcommitted, as a process killed later.
"""
import os

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
