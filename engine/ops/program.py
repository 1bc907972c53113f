"""The program format shared by the planner (engine/plan.py) and the executor (engine/executor.py).

A plan is one int64 array, ``prog``: ``prog[0]`` is where the instructions start, ``prog[1]`` where they end,
``prog[THREADS_AT]`` how many threads the plan's BLAS products may use (``Plan.blas_threads``; one-thread products
run on the engine's register tiles instead, engine/ops/numeric.py ``product``), and int constants (token tables,
sequence lengths, fill values) follow the instructions. An instruction is ``[opcode, length, node index,
params...]``; the executor jumps ``length`` ahead after running it.

Every value lives in one flat buffer ("space") at an offset, and a reference to it in a param list is two ints,
``(space, offset)``. Float spaces hold the compute dtype, int spaces int64:

    float: F_CONST packed weights (shared by every plan and thread), F_IN .. F_IN + 2 the call's float inputs (the
           first two each in their own slot, the rest flattened and concatenated in the third), F_WORK
           intermediates (reused between calls), F_OUT the outputs returned to the caller (fresh each call),
           F_STATE a stream's recurrent state; in a run (never in a stream) the same slot is F_CALL, the weights
           packed on the call from graph inputs (engine/call_weights.py)
    int:   I_CONST the program itself (its constant region), I_IN the call's int inputs, I_WORK intermediates

Float attributes travel inside ``prog`` as the bits of a float64 (``Planner.f64``, read back with ``fparam``).
Kernels cannot raise from compiled code without losing the message, so run functions return a status: 0 for
success, or one of the ERR_* codes below, which Session turns into an ``InvalidInputError`` naming the node.
Everything a plan can check (shapes, dtypes, ranks) is checked in Python when the plan is made; only checks that
depend on input values (token ids, sequence lengths) happen here.

This module holds the format only and imports no Numba: the planner uses it where Numba is absent (the ahead-of-time
runtime, engine/aot.py). The compiled side is program_kernels.py.
"""
from ..config import ZEN

F_CONST, F_IN, F_WORK, F_OUT, F_STATE = 0, 1, 4, 5, 6    # F_IN, F_IN + 1, F_IN + 2: the three input slots
F_IN_SLOTS = 3
F_CALL = F_STATE   # a model whose weights are inputs cannot be streamed, so the two uses never meet
I_CONST, I_IN, I_WORK = 0, 1, 2
ABSENT = -1      # the space of an absent optional value
KEEP = -2        # the space of a stream's initial state: the state buffer already holds it
MAX_RANK = 6     # strided copies and broadcasts work on shapes padded to this rank

THREADS_AT = 2   # prog[THREADS_AT]: the plan's BLAS threads

OK = 0
ERR_INDEX = 1        # an index (token id) is out of range for the gathered axis
ERR_SEQ_LENS = 2     # a sequence length is negative or longer than the sequence
ERROR_MESSAGES = {
    ERR_INDEX: "an index is out of range for the gathered axis",
    ERR_SEQ_LENS: "sequence_lens values must be between 0 and the sequence length",
}

# opcode ranges: each family of ops owns one range and one run function (see engine/executor.py)
CORE_BASE, RECURRENT_BASE, LAYER_BASE, VISION_BASE, CONTROL_BASE, END = 0, 16, 32, 64, 96, 128
COPY, FILL, FILL_CONST, INT_TO_FLOAT, FLOAT_TO_INT, INT_COPY = range(CORE_BASE, CORE_BASE + 6)

# kernel choices the planner and the kernels share
BLAS_MIN_BATCH = 4          # below this batch size the hand-blocked product beats a BLAS call per step
# the threaded LSTM kernel (several threads, hidden units split between them), measured on 2 cores at T=100 B=1:
PARALLEL_MIN_HIDDEN = 128        # from this H (H=128: 332 against 446 us on one thread; H=64: 144 against 130 us)
PARALLEL_ANY_STEPS_HIDDEN = 256  # from this H at any length; below it only from PARALLEL_MIN_STEPS steps
PARALLEL_MIN_STEPS = 8
# ... except a single step of one row (a stream's), which runs the parts in sequence on one thread below this H.
# The two threads' speed here depends on the host's placement of the two vCPUs, which changes over time; measured on
# 2 cores, a stream step, alternating processes: H=256 threaded 34.7-36.5 us in one spell, 24.8-25.1 in another, in
# sequence 28.1-28.8 in both (never the worst of the two); H=384 threaded 43.8 and 55.3 against 60.9 in sequence,
# H=512 67-75 against 104. Two steps at H=256: even (47.2 against 47.5 us, 33.5 against 33.3). That is the Zen 5;
# on the Xeon (config.ZEN false; 2 MiB of L2 a core, a slow L3) the threaded step wins from H=256, where each core's
# half of W and R (1 MiB) stays in its L2 and one core's whole 2 MiB does not: a stream step, one process, 2026-11-27:
# H=256 21.5-22.5 us threaded against 37.5 in sequence (one-thread session 32.6), H=320 37.8-44.7 against 102.7-121.8
# on one thread; H=128 even (7.4-7.5 against 7.4)
PARALLEL_STEP_HIDDEN = 384 if ZEN else 256
# ... and from this many batch entries per thread, split by batch entry instead (lstm_batches_parallel: no barrier
# per step), measured at T=100 on 2 cores: B=32 H=256 16.9 against 17.8-19.5 ms, B=64 H=512 127 against 138 ms;
# B=8 even (4.4 ms), B=4 2.8 against 2.1 ms
SPLIT_MIN_ROWS = 8
# ... while a thread's part of the hidden units would be at most SPLIT_MAX_UNITS. That is the Zen 5's rule (no
# limit); on the Xeon (config.ZEN false) the split by unit is faster from parts of 128 units, each thread holding
# its part of W and R for all steps (two threads, T=100, kernels alone, the faster projection of each, 2026-11-27;
# by unit against by batch): B=16 H=256 7.54 against 8.23 ms, B=32 H=256 15.1 against 17.4, B=64 H=256 27.5
# against 29.2, B=128 H=256 53.9 against 55.9, B=16 H=512 29.7 against 40.7, B=32 H=512 57.1 against 62.8, B=64
# H=512 103.4 against 112.5, B=32 H=1024 217 against 253; with parts of 64 units slower: B=16 H=128 2.00 against
# 1.71, B=32 4.23 against 3.83, B=64 8.22 against 7.70
SPLIT_MAX_UNITS = 1 << 30 if ZEN else 127
# the kernel split by unit projects the input step by step too (lstm_direction_parallel's ``fused``: every thread
# all rows, x_t @ its part of W into gates in its cache) from UNITS_FUSE_MIN_ROWS rows while a thread's part of W and
# R is at most UNITS_FUSE_ROW_BYTES a row; measured on the Xeon (two threads, T=100, fused against hoisted): B=8
# H=128 1.21 against 1.16 ms, B=8 H=256 4.24 against 4.00, B=12 H=256 6.05 against 6.01, B=16 H=256 7.54 against
# 7.82, B=32 H=256 15.1 against 15.8, B=64 H=256 27.5 against 31.7, B=128 H=256 53.9 against 60.5, B=16 H=512
# 33.5 against 29.7, B=24 H=512 46.1 against 42.5, B=32 H=512 59.1 against 57.1, B=48 H=512 77.5 against 79.5,
# B=64 H=512 103.4 against 107.2. Never on Zen, where it was not measured
UNITS_FUSE_MIN_ROWS = 1 << 30 if ZEN else 16
UNITS_FUSE_ROW_BYTES = 96 << 10
# the threaded GRU (linear_before_reset) runs every call from this H: its weights exist in the per-thread layout only
GRU_PARALLEL_MIN_HIDDEN = 256
# a bidirectional LSTM on the one-thread kernel runs its two directions at once, one thread each, from this many
# multiply-adds a direction (T * B * 4H * (I + H)): at two threads, against one after the other, I = H, B=1: 8 K
# 0.78x, 16 K 0.84x, 33 K 0.93-0.95x, 66 K 1.06-1.08x, 131 K 1.22x, 262 K 1.38x (H=32-96, 1-8 steps)
DIRECTION_THREADS_MIN_MACS = 1 << 16
# the fast LSTM projects the input step by step, into gates still in the cache (lstm_direction_fused), from this many
# rows (batch entries on one thread) while W and R together are at most FUSE_MAX_BYTES (read once a step, from L3)
# and at most FUSE_ROW_BYTES a row;
# measured one thread T=100: B=32 H=256 33.4 against 35.5 ms hoisted, B=4 H=512 15.9 against 16.5, B=2 H=256 2.7
# against 2.35, B=8 H=1024 (32 MiB) 142 against 128. That is the Zen 5 (config.ZEN); on the Xeon the hoisted
# projection is faster up to 16 rows (kernels alone, one thread, T=100, 2026-11-27: B=4 H=512 18.6 against 31.5 ms
# fused, B=8 H=256 6.8 against 8.1, B=8 H=512 29.9 against 39.4, B=16 H=256 12.6 against 13.1, B=16 H=512 50.3
# against 58.0). Since the hoisted projection writes its sums without clearing and reading the buffer first
# (numeric.grouped_set), it also wins at 32 rows while W and R are more than 48 KiB a row (FUSE_ROW_BYTES), and the
# fused one wins below that (2026-11-28, same setting, fused against hoisted: B=32 H=256 23.9-25.3 against
# 22.8-23.9 ms, B=64 H=512 174.8-180.5 against 173.4-179.7, B=128 H=256 85.9 against 90.1; H=128 (W and R 512 KiB)
# B=32 5.39 against 6.52, B=64 11.5 against 14.0, B=128 22.1 against 27.0; two threads by batch at H=128, 16 rows
# a thread: B=32 2.96 against 3.18)
FUSE_MIN_ROWS = 4 if ZEN else 16
FUSE_ROW_BYTES = 1 << 62 if ZEN else 48 << 10
FUSE_MAX_BYTES = 16 << 20
# at batch 1 the fast LSTM projects the input inside the recurrence (lstm_direction_pipelined; each thread for its
# part in lstm_direction_parallel) while W and R, of all parts, are at most this many bytes (measured on the Zen 5
# with 32 MiB of L3, one thread: faster up to 12.5 MiB, H=640; slower from 18 MiB, H=768) and the sequence has at
# least PIPELINE_MIN_STEPS steps (two blocks of four). On the Xeon (config.ZEN false) it is slower at every size:
# the hoisted projection then the recurrence, kernels alone, one thread, T=100, I=H (2026-11-27): H=16 1.19x, 64
# 1.15x, 128 1.08x, 192 1.06x, 256 1.30x, 384 1.49x, 512 1.30x, 640 1.23x faster than the pipelined kernel
PIPELINE_MAX_BYTES = 13 << 20 if ZEN else 0
PIPELINE_MIN_STEPS = 8
