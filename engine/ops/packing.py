"""Views of packed constants, sliced inside the kernel wrappers.

A model's constants live in one uint8 buffer ``b`` with an int64 table ``m``; a table entry ``e`` is
``m[e] = first byte, m[e+1] = end byte, m[e+2:e+6] = shape (padded with 1), m[e+6] = 0``. ``like`` is any array of
the wanted dtype. Slicing here, inside cached kernel code, keeps the (slow to compile) reshapes out of the generated
per-model functions.
"""
from numba import njit

from ..config import JIT_OPTIONS


@njit(**JIT_OPTIONS)
def view1(b, m, e, like):
    return b[m[e]:m[e + 1]].view(like.dtype)


@njit(**JIT_OPTIONS)
def view2(b, m, e, like):
    return b[m[e]:m[e + 1]].view(like.dtype).reshape((m[e + 2], m[e + 3]))


@njit(**JIT_OPTIONS)
def view3(b, m, e, like):
    return b[m[e]:m[e + 1]].view(like.dtype).reshape((m[e + 2], m[e + 3], m[e + 4]))


@njit(**JIT_OPTIONS)
def view4(b, m, e, like):
    return b[m[e]:m[e + 1]].view(like.dtype).reshape((m[e + 2], m[e + 3], m[e + 4], m[e + 5]))
