"""Atomic operations on an int64 array, for threads that meet at a barrier inside one parallel region.

Numba has no atomics in ``@njit`` code; these intrinsics emit LLVM's atomic instructions on element ``i`` of a
C-contiguous int64 array: ``load_acquire`` / ``store_release`` for flags one thread writes and others read,
``fetch_add`` and ``compare_exchange`` (sequentially consistent) for counters several threads update, ``cpu_relax``
(the x86 ``pause`` hint, nothing elsewhere) inside a spin loop, ``yield_cpu`` (``sched_yield``) when a spin has
lasted long enough that the thread waited for may be waiting for this core, and ``cycles`` (the cycle counter) to
measure how long. Nothing here checks ``i``: the caller does.
"""
import platform

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def _pointer(context, builder, arrty, arr, index):
    ary = context.make_array(arrty)(context, builder, arr)
    return cgutils.get_item_pointer(context, builder, arrty, ary, [index])


def _check(arr):
    return isinstance(arr, types.Array) and arr.dtype == types.int64 and arr.ndim == 1


@intrinsic
def load_acquire(typingctx, arr, i):
    if not _check(arr):
        return None

    def codegen(context, builder, sig, args):
        ptr = _pointer(context, builder, sig.args[0], args[0], args[1])
        return builder.load_atomic(ptr, "acquire", 8)
    return types.int64(arr, i), codegen


@intrinsic
def store_release(typingctx, arr, i, value):
    if not _check(arr):
        return None

    def codegen(context, builder, sig, args):
        ptr = _pointer(context, builder, sig.args[0], args[0], args[1])
        v = context.cast(builder, args[2], sig.args[2], types.int64)
        builder.store_atomic(v, ptr, "release", 8)
        return context.get_dummy_value()
    return types.none(arr, i, value), codegen


@intrinsic
def fetch_add(typingctx, arr, i, value):
    """arr[i] += value atomically; returns the value before."""
    if not _check(arr):
        return None

    def codegen(context, builder, sig, args):
        ptr = _pointer(context, builder, sig.args[0], args[0], args[1])
        v = context.cast(builder, args[2], sig.args[2], types.int64)
        return builder.atomic_rmw("add", ptr, v, "seq_cst")
    return types.int64(arr, i, value), codegen


@intrinsic
def compare_exchange(typingctx, arr, i, expected, value):
    """arr[i] = value if arr[i] == expected, atomically; returns the value before (== expected: it was swapped)."""
    if not _check(arr):
        return None

    def codegen(context, builder, sig, args):
        ptr = _pointer(context, builder, sig.args[0], args[0], args[1])
        e = context.cast(builder, args[2], sig.args[2], types.int64)
        v = context.cast(builder, args[3], sig.args[3], types.int64)
        pair = builder.cmpxchg(ptr, e, v, "seq_cst", "seq_cst")
        return builder.extract_value(pair, 0)
    return types.int64(arr, i, expected, value), codegen


@intrinsic
def cpu_relax(typingctx):
    def codegen(context, builder, sig, args):
        if _X86:
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                "llvm.x86.sse2.pause")
            builder.call(fn, [])
        return context.get_dummy_value()
    return types.none(), codegen


@intrinsic
def yield_cpu(typingctx):
    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []), "sched_yield")
        builder.call(fn, [])
        return context.get_dummy_value()
    return types.none(), codegen


@intrinsic
def cycles(typingctx):
    """The CPU's cycle counter (the TSC on x86, a constant rate); 0 where the target has none."""
    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(64), []),
                                            "llvm.readcyclecounter")
        return builder.call(fn, [])
    return types.int64(), codegen
