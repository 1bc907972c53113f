"""The executor: one jitted function that runs any plan (engine/plan.py), compiled once per engine version.

A call unboxes ten arrays, whatever the model: the program, the packed weights, the call's float inputs (three
slots: the first two float inputs each in their own, the rest concatenated in the third, so that a model with an
input and an initial state or two is called without copying them), its int inputs, the work buffers, the output
buffer and a stream's state. ``execute_bound`` takes the five that stay put from call to call by address, for the
fast paths that make the same call many times. Each instruction is dispatched by opcode range
to its op family's run function (engine/ops/program.py describes the format). The loop returns 0, or an error
status ``code << 32 | node index`` that Session turns into a message.

This is the JIT runtime. The same function, compiled ahead of time by engine/aot.py, is the AOT runtime;
engine/runtime.py chooses between them, and imports this module (and so Numba) only when the JIT is needed.
"""
import numpy as np
from numba import njit

from .config import JIT_OPTIONS
from .ops.control_kernels import run_control
from .ops.layer_kernels import run_layers
from .ops.program import CONTROL_BASE, END, LAYER_BASE, OK, RECURRENT_BASE, VISION_BASE
from .ops.program_kernels import at_address, run_core, unmanaged
from .ops.recurrent_kernels import run_recurrent
from .ops.vision_kernels import run_vision


@njit(**JIT_OPTIONS)
def execute(prog, fconst, fin0, fin1, fin2, iin, fwork, iwork, fout, state):
    # the arguments live for the whole call: their views need no reference counts (unmanaged)
    F = (unmanaged(fconst), unmanaged(fin0), unmanaged(fin1), unmanaged(fin2), unmanaged(fwork), unmanaged(fout),
         unmanaged(state))
    prog = unmanaged(prog)
    return run_program(prog, F, (prog, unmanaged(iin), unmanaged(iwork)))


@njit(**JIT_OPTIONS)
def execute_bound(bound, fin0, fin1, fin2, iin, fout):
    """execute with the five arrays that stay put from call to call given by address: ``bound`` (int64) holds
    (address, length) of prog, fconst, fwork, iwork and state, in that order. A call then unboxes six arrays instead
    of ten (~40 ns each): a stream's step and run's fast path (engine/runtime.py, ``Runtime.bind``), whose owner keeps
    the five alive. The JIT runtime only; the AOT runtime calls ``execute``."""
    prog = at_address(bound[0], bound[1], bound)
    F = (at_address(bound[2], bound[3], fout), unmanaged(fin0), unmanaged(fin1), unmanaged(fin2),
         at_address(bound[4], bound[5], fout), unmanaged(fout), at_address(bound[8], bound[9], fout))
    return run_program(prog, F, (prog, unmanaged(iin), at_address(bound[6], bound[7], bound)))


@njit(**JIT_OPTIONS)
def run_program(prog, F, I):
    """The program's instructions, each dispatched by opcode range to its op family's run function."""
    pc = prog[0]
    end = prog[1]
    while pc < end:
        code = prog[pc]
        if code < RECURRENT_BASE:
            status = run_core(code, prog, pc, F, I)
        elif code < LAYER_BASE:
            status = run_recurrent(code, prog, pc, F, I)
        elif code < VISION_BASE:
            status = run_layers(code, prog, pc, F, I)
        elif code < CONTROL_BASE:
            status = run_vision(code, prog, pc, F, I)
        elif code >= CONTROL_BASE and code < END:
            status = run_control(code, prog, pc, F, I)
        else:
            status = 255
        if status != OK:
            return (np.int64(status) << 32) | (prog[pc + 2] & 0xFFFFFFFF)
        pc += prog[pc + 1]
    return np.int64(0)
