"""The executor's core: views of the program's spaces, strided copies, fills and casts (run_core).

The program format is in program.py.
"""
import numpy as np
from numba import njit, types
from numba.core import cgutils, config as numba_config
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic, overload
from numba.np.arrayobj import make_array, populate_array

from ..config import JIT_OPTIONS
from .program import COPY, FILL, FILL_CONST, FLOAT_TO_INT, INT_COPY, INT_TO_FLOAT, OK


@intrinsic
def _shaped(typingctx, ary, shape):
    """``ary.reshape(shape)`` for a C-contiguous array: the view's strides written directly. Numba's reshape runs
    a normaliser and a C helper for every call (~25 ns each); the run functions take a dozen views per instruction.
    A shape whose size differs from the array's raises ValueError, as reshape would."""
    if not (isinstance(ary, types.Array) and ary.layout == "C" and isinstance(shape, types.BaseTuple)
            and len(shape) > 0 and all(isinstance(t, types.Integer) for t in shape)):
        return None
    ndim = len(shape)
    retty = ary.copy(ndim=ndim, layout="C")

    def codegen(context, builder, sig, args):
        intp = context.get_value_type(types.intp)
        src = make_array(sig.args[0])(context, builder, args[0])
        dims = [context.cast(builder, v, t, types.intp)
                for v, t in zip(cgutils.unpack_tuple(builder, args[1], ndim), sig.args[1])]
        strides = [None] * ndim
        step = src.itemsize
        size = intp(1)
        for k in range(ndim - 1, -1, -1):
            strides[k] = step
            step = builder.mul(step, dims[k])
            size = builder.mul(size, dims[k])
        with builder.if_then(builder.icmp_signed("!=", size, src.nitems), likely=False):
            context.call_conv.return_user_exc(builder, ValueError, ("cannot reshape: the sizes differ",))
        out = make_array(retty)(context, builder)
        populate_array(out, data=src.data, shape=dims, strides=strides, itemsize=src.itemsize, meminfo=src.meminfo,
                       parent=src.parent)
        return impl_ret_borrowed(context, builder, retty, out._getvalue())
    return retty(ary, shape), codegen


@intrinsic
def _unmanaged(typingctx, ary):
    """``ary`` without its reference count: the same data, shape and strides, with no meminfo and no parent. Views
    of it carry none either, so Numba's incref and decref of every view and every array argument become a null test
    instead of an atomic add (a stream step at H=64 took ~150 of them, 18% of its time in the profile). Only for
    arrays the caller keeps alive while the result is in use: the executor's own arguments."""
    if not isinstance(ary, types.Array):
        return None

    def codegen(context, builder, sig, args):
        src = make_array(sig.args[0])(context, builder, args[0])
        out = make_array(sig.return_type)(context, builder)
        null = context.get_constant_null(types.MemInfoPointer(types.voidptr))
        populate_array(out, data=src.data, shape=src.shape, strides=src.strides, itemsize=src.itemsize,
                       meminfo=null, parent=cgutils.get_null_value(out.parent.type))
        return out._getvalue()
    return ary(ary), codegen


@intrinsic
def _at_address(typingctx, address, n, like):
    """The 1-D C-contiguous array of ``n`` elements of ``like``'s dtype at byte ``address``, with no meminfo and no
    parent (as _unmanaged's): only for memory that the caller keeps alive while the result is in use (the executor's
    bound arrays, engine/executor.py ``execute_bound``)."""
    if not (isinstance(address, types.Integer) and isinstance(n, types.Integer) and isinstance(like, types.Array)):
        return None
    retty = types.Array(like.dtype, 1, "C")

    def codegen(context, builder, sig, args):
        intp = context.get_value_type(types.intp)
        dtype = context.get_data_type(like.dtype)
        size = context.cast(builder, args[1], sig.args[1], types.intp)
        data = builder.inttoptr(context.cast(builder, args[0], sig.args[0], types.intp), dtype.as_pointer())
        out = make_array(retty)(context, builder)
        itemsize = intp(context.get_abi_sizeof(dtype))
        null = context.get_constant_null(types.MemInfoPointer(types.voidptr))
        populate_array(out, data=data, shape=[size], strides=[itemsize], itemsize=itemsize, meminfo=null,
                       parent=cgutils.get_null_value(out.parent.type))
        return out._getvalue()
    return retty(address, n, like), codegen


if numba_config.DISABLE_JIT:          # plain Python (NUMBA_DISABLE_JIT=1, for debugging): intrinsics do not run there
    def shaped(ary, shape):
        return ary.reshape(shape)

    def unmanaged(ary):
        return ary

    def at_address(address, n, like):
        return np.ctypeslib.as_array((np.ctypeslib.as_ctypes_type(like.dtype) * int(n)).from_address(int(address)))
else:
    shaped = _shaped
    unmanaged = _unmanaged
    at_address = _at_address


def typed_like(ary, value):
    """``value`` as a scalar of ``ary``'s dtype (in jitted code; no allocation)."""
    return ary.dtype.type(value)


@overload(typed_like, jit_options=JIT_OPTIONS)
def _typed_like(ary, value):
    cast = np.dtype(str(ary.dtype)).type

    def impl(ary, value):
        return cast(value)
    return impl


@njit(**JIT_OPTIONS)
def fview(F, prog, at, n):
    """The n floats referenced by prog[at], prog[at + 1] (space, offset)."""
    off = prog[at + 1]
    return F[prog[at]][off:off + n]


@njit(**JIT_OPTIONS)
def iview(I, prog, at, n):
    off = prog[at + 1]
    return I[prog[at]][off:off + n]


@njit(**JIT_OPTIONS)
def fparam(prog, at):
    """A float attribute stored as the bits of a float64."""
    return prog[at:at + 1].view(np.float64)[0]


@njit(**JIT_OPTIONS)
def strided_copy(src, sbase, dst, dbase, prog, at):
    """dst[dbase + sum(i * dstride)] = src[sbase + sum(i * sstride)] over the index space prog[at:at+6] (a shape
    padded with leading 1s); source strides at prog[at+6:at+12], destination strides at prog[at+12:at+18], in
    elements. Transpose, Slice, Split, Concat, Expand and the layout changes of the recurrent ops are all this."""
    n0, n1, n2, n3, n4, n5 = prog[at], prog[at + 1], prog[at + 2], prog[at + 3], prog[at + 4], prog[at + 5]
    s0, s1, s2, s3, s4, s5 = (prog[at + 6], prog[at + 7], prog[at + 8], prog[at + 9], prog[at + 10],
                              prog[at + 11])
    d0, d1, d2, d3, d4, d5 = (prog[at + 12], prog[at + 13], prog[at + 14], prog[at + 15], prog[at + 16],
                              prog[at + 17])
    for i0 in range(n0):
        for i1 in range(n1):
            for i2 in range(n2):
                for i3 in range(n3):
                    so = sbase + i0 * s0 + i1 * s1 + i2 * s2 + i3 * s3
                    do = dbase + i0 * d0 + i1 * d1 + i2 * d2 + i3 * d3
                    for i4 in range(n4):
                        if s5 == 1 and d5 == 1:
                            # indexed from 0 in views: dst[b + i5] pays the wraparound check of every index and
                            # runs scalar (64 floats: 0.11 against 0.024 us)
                            a = so + i4 * s4
                            b = do + i4 * d4
                            sv = src[a:a + n5]
                            dv = dst[b:b + n5]
                            for i5 in range(n5):
                                dv[i5] = sv[i5]
                        else:
                            for i5 in range(n5):
                                dst[do + i4 * d4 + i5 * d5] = src[so + i4 * s4 + i5 * s5]


@njit(**JIT_OPTIONS)
def run_core(code, prog, pc, F, I):
    """Data movement: strided copies (float or int), fills, and casts between the float and int spaces."""
    if code == COPY:                 # [src ref, dst ref, 18 shape/stride ints]
        strided_copy(F[prog[pc + 3]], prog[pc + 4], F[prog[pc + 5]], prog[pc + 6], prog, pc + 7)
    elif code == INT_COPY:
        strided_copy(I[prog[pc + 3]], prog[pc + 4], I[prog[pc + 5]], prog[pc + 6], prog, pc + 7)
    elif code == FILL:               # [dst ref, n, value]
        n = prog[pc + 5]
        out = fview(F, prog, pc + 3, n)
        v = fparam(prog, pc + 6)
        for i in range(n):
            out[i] = v
    elif code == FILL_CONST:         # [dst ref, n, n float64 bit patterns]
        n = prog[pc + 5]
        out = fview(F, prog, pc + 3, n)
        vals = prog[pc + 6:pc + 6 + n].view(np.float64)
        for i in range(n):
            out[i] = vals[i]
    elif code == INT_TO_FLOAT:       # [src int ref, dst float ref, n]
        n = prog[pc + 7]
        src = iview(I, prog, pc + 3, n)
        out = fview(F, prog, pc + 5, n)
        for i in range(n):
            out[i] = src[i]
    elif code == FLOAT_TO_INT:       # [src float ref, dst int ref, n]: truncation toward zero, as ONNX Cast
        n = prog[pc + 7]
        src = fview(F, prog, pc + 3, n)
        out = iview(I, prog, pc + 5, n)
        for i in range(n):
            out[i] = np.int64(src[i])
    return OK
