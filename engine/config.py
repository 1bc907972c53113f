"""Numba settings, in one place.

fastmath is an explicit flag set without ``nnan``/``ninf``: the compiler may reassociate and contract (FMA), but it
may not assume that NaN or inf never occur, so NaN inputs stay visible in the outputs instead of being optimised
into garbage.
"""
import os

FASTMATH = {"contract", "arcp", "reassoc", "nsz", "afn"}

# cache=True writes compiled machine code next to the sources (or NUMBA_CACHE_DIR); it can be switched off for
# debugging with LSTM_ENGINE_NO_CACHE=1.
CACHE = os.environ.get("LSTM_ENGINE_NO_CACHE", "") not in ("1", "true", "yes")

JIT_OPTIONS = {"nogil": True, "cache": CACHE, "fastmath": FASTMATH, "error_model": "numpy"}
