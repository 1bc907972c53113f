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

# Set only in the child process of `lstm-engine build-runtime` (engine/aot.py), which compiles the kernels for
# numba.pycc: "blas" or "noblas". Kernels read PARALLEL and BLAS when they are compiled, and nothing is cached.
AOT_BUILD = os.environ.get("LSTM_ENGINE_AOT_BUILD", "")
PARALLEL = not AOT_BUILD            # prange: pycc compiles it but cannot link Numba's threading layer (numba#7696)
BLAS = AOT_BUILD != "noblas"        # False: matrix products by a blocked loop, for a device without SciPy
CACHE = CACHE and not AOT_BUILD

JIT_OPTIONS = {"nogil": True, "cache": CACHE, "fastmath": FASTMATH, "error_model": "numpy"}


def _amd_zen() -> bool:
    """Whether the kernels are compiled for an AMD Zen core: NUMBA_CPU_NAME when set (znver*), else the host's
    vendor (every AMD CPU with the AVX2 these kernels want is a Zen); False for an AOT build (compiled generic) and
    where the vendor cannot be read. Read without importing Numba, which the AOT runtime leaves out."""
    if AOT_BUILD:
        return False
    name = os.environ.get("NUMBA_CPU_NAME", "")
    if name:
        return name.startswith("znver")
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return "AuthenticAMD" in line
    except OSError:
        pass
    return False


# Where a schedule is faster on one CPU family and slower on another, the kernels choose by the CPU they are compiled
# for (Numba keys its cache by that CPU, so a cached kernel holds the choice made for it). AMD Zen (measured on
# Zen 5: 1 MiB of L2 per core, a fast L3) pipelines a batch-1 LSTM's input projection into the recurrence, fuses
# it into batched steps from four rows and threads a single step from H=384; elsewhere (measured on a 2-core Intel
# Xeon with AMX under KVM: 2 MiB of L2 per core, a slower L3) the first two lose to the hoisted projection and a
# single step gains from two threads from H=256 (engine/ops/program.py).
ZEN = _amd_zen()

# Numba compiles a jitted function once per distinct argument types, and a call from jitted code types a constant
# argument as a literal (0 -> Literal[int](0), False -> Literal[bool](False)) and a prange index as uint64: each is
# another compile of the callee and of everything it calls (Numba optimises and emits machine code for every
# function's whole call tree). Where one caller of a kernel would pass a constant or a prange index and another an
# int64 or a bool, the caller passes np.int64(...) or np.bool_(...) (typed int64 and bool, not literals): the
# directions-at-once loops, lstm_direction_one's calls, the GRU on the LSTM's threaded kernel, the RNN's lbr, the
# grouped tiles' ``backward``. Literal booleans that choose a kernel's variant (a GRU or an RNN step) stay literal.

# Numba's OpenMP threading layer (GNU libgomp) reads its spin count when it loads, at the first threaded kernel. In a
# process that has not loaded another OpenMP runtime first (torch loads its own), a waiting worker here spun so
# briefly that each parallel region waited for it to wake: the small CRNN at 8 x 200 on two threads took 7.3 ms a call
# in every such process, 4.66 ms with GOMP_SPINCOUNT=300000 (libgomp's documented default when the threads do not
# outnumber the cores) or OMP_WAIT_POLICY=active, 5.8 ms with OMP_WAIT_POLICY=passive (2-core Zen 5). So that count,
# unless the user chose a spin count or a wait policy.
if "GOMP_SPINCOUNT" not in os.environ and "OMP_WAIT_POLICY" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "300000"
