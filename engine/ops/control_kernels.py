"""The kernels of the control ops (engine/ops/control.py) and their run function, ``run_control``."""
from numba import njit

from ..config import JIT_OPTIONS
from .control import AND, ELEMENTWISE, EQ, GE, GT, INT_OPERANDS, LE, LT, NE, NOT, OR, PAD, WHERE, XOR
from .program import OK
from .program_kernels import fparam


@njit(**JIT_OPTIONS)
def _apply(op, x, y, z):
    if op == EQ:
        return x == y
    if op == LT:
        return x < y
    if op == GT:
        return x > y
    if op == LE:
        return x <= y
    if op == GE:
        return x >= y
    if op == NE:
        return x != y
    if op == NOT:
        return x == 0
    if op == AND:
        return x != 0 and y != 0
    if op == OR:
        return x != 0 or y != 0
    if op == XOR:
        return (x != 0) != (y != 0)
    return x != 0    # BOOL


@njit(**JIT_OPTIONS)
def elementwise(op, a, b, c, out, prog, at):
    """out[k] = op(a, b[, c]) over the index space prog[at:at+6] with the operands' strides at prog[at+6:],
    prog[at+12:], prog[at+18:] (0 along broadcast axes); out is contiguous. WHERE picks b or c by a."""
    n0, n1, n2, n3, n4, n5 = prog[at], prog[at + 1], prog[at + 2], prog[at + 3], prog[at + 4], prog[at + 5]
    k = 0
    for i0 in range(n0):
        for i1 in range(n1):
            for i2 in range(n2):
                for i3 in range(n3):
                    for i4 in range(n4):
                        ao = (i0 * prog[at + 6] + i1 * prog[at + 7] + i2 * prog[at + 8] + i3 * prog[at + 9]
                              + i4 * prog[at + 10])
                        bo = (i0 * prog[at + 12] + i1 * prog[at + 13] + i2 * prog[at + 14] + i3 * prog[at + 15]
                              + i4 * prog[at + 16])
                        co = (i0 * prog[at + 18] + i1 * prog[at + 19] + i2 * prog[at + 20] + i3 * prog[at + 21]
                              + i4 * prog[at + 22])
                        sa, sb, sc = prog[at + 11], prog[at + 17], prog[at + 23]
                        if op == WHERE:
                            for i5 in range(n5):
                                out[k + i5] = b[bo + i5 * sb] if a[ao + i5 * sa] != 0 else c[co + i5 * sc]
                        else:
                            for i5 in range(n5):
                                out[k + i5] = 1 if _apply(op, a[ao + i5 * sa], b[bo + i5 * sb], 0) else 0
                        k += n5


@njit(**JIT_OPTIONS)
def pad_kernel(x, out, value, prog, at):
    """out[i0..i5] = x[sum(map_d[i_d] * stride_d)], or value where a map entry is -1. prog[at:at+6] the output
    dims, prog[at+6:at+12] the input strides, then the six axis maps one after the other."""
    n0, n1, n2, n3, n4, n5 = prog[at], prog[at + 1], prog[at + 2], prog[at + 3], prog[at + 4], prog[at + 5]
    s0, s1, s2, s3, s4, s5 = (prog[at + 6], prog[at + 7], prog[at + 8], prog[at + 9], prog[at + 10],
                              prog[at + 11])
    m0 = at + 12
    m1 = m0 + n0
    m2 = m1 + n1
    m3 = m2 + n2
    m4 = m3 + n3
    m5 = m4 + n4
    k = 0
    for i0 in range(n0):
        j0 = prog[m0 + i0]
        for i1 in range(n1):
            j1 = prog[m1 + i1]
            for i2 in range(n2):
                j2 = prog[m2 + i2]
                for i3 in range(n3):
                    j3 = prog[m3 + i3]
                    for i4 in range(n4):
                        j4 = prog[m4 + i4]
                        outer = j0 < 0 or j1 < 0 or j2 < 0 or j3 < 0 or j4 < 0
                        base = j0 * s0 + j1 * s1 + j2 * s2 + j3 * s3 + j4 * s4
                        for i5 in range(n5):
                            j5 = prog[m5 + i5]
                            out[k] = value if (outer or j5 < 0) else x[base + j5 * s5]
                            k += 1


@njit(**JIT_OPTIONS)
def run_control(code, prog, pc, F, I):
    p = pc + 3
    if code == ELEMENTWISE:          # [op, out ref, n, a ref, b ref, c ref, 6 dims, 3 x 6 strides]
        op, n = prog[p], prog[p + 3]
        ao, bo, co = prog[p + 5], prog[p + 7], prog[p + 9]
        if op == WHERE:
            out = F[prog[p + 1]][prog[p + 2]:prog[p + 2] + n]
            elementwise(op, I[prog[p + 4]][ao:], F[prog[p + 6]][bo:], F[prog[p + 8]][co:], out, prog, p + 10)
        else:
            out = I[prog[p + 1]][prog[p + 2]:prog[p + 2] + n]
            if op <= NE:
                elementwise(op, F[prog[p + 4]][ao:], F[prog[p + 6]][bo:], F[prog[p + 6]][bo:], out, prog, p + 10)
            else:        # logic, or a comparison of int values (op + INT_OPERANDS)
                elementwise(op - INT_OPERANDS if op >= INT_OPERANDS else op, I[prog[p + 4]][ao:],
                            I[prog[p + 6]][bo:], I[prog[p + 6]][bo:], out, prog, p + 10)
    elif code == PAD:                # [x ref, out ref, value, 6 dims, 6 strides, axis maps]
        dims = prog[p + 5:p + 11]
        n = dims[0] * dims[1] * dims[2] * dims[3] * dims[4] * dims[5]
        out = F[prog[p + 2]][prog[p + 3]:prog[p + 3] + n]
        pad_kernel(F[prog[p]][prog[p + 1]:], out, fparam(prog, p + 4), prog, p + 5)
    return OK
