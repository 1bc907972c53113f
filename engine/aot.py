"""The ahead-of-time runtime: the executor (engine/executor.py) compiled by numba.pycc into one extension module, so
that a machine runs models with numpy (and safetensors) but without Numba or llvmlite.

    lstm-engine build-runtime [--target host|x86-64-v3|generic] [--no-blas] [-o DIR]

writes ``DIR/lstm_engine_runtime<suffix>`` (exporting ``execute_float32`` and ``execute_float64``) and
``DIR/lstm_engine_runtime.json``, the build record: what it was built from (the engine's source fingerprint) and for
(Python, numpy, CPU, BLAS). engine/runtime.py uses a runtime only when its record matches (``check``).

Every use of numba.pycc is here, in the child process that ``build`` starts (``_compile``), because the kernels read
two compile-time switches (engine/config.py, LSTM_ENGINE_AOT_BUILD) when they are imported and Numba reads the target
CPU (NUMBA_CPU_NAME) when it is imported. What pycc (numba 0.68) does with the executor, found by trying:

* explicit signatures of 1-D arrays, UniTuples of arrays built inside, calls into the @njit kernels, which keep their
  own options (fastmath, error_model): compiled as by the JIT; results equal the JIT's.
* ``np.dot``: compiled; Numba's helper library, linked into the module, imports scipy.linalg.cython_blas at the first
  product, and without SciPy the process crashes. ``--no-blas`` compiles every product as a blocked loop instead
  (config.BLAS) for a device without SciPy; the record says which, and a runtime that needs SciPy is refused where
  SciPy is not installed.
* ``parallel=True`` / ``prange``: compiled, but the module then fails to import (undefined symbol
  ``numba_parallel_for``: Numba's threading layer is not linked in; numba issues #3336, #7696). The build compiles
  ``lstm_direction_parallel`` without ``parallel`` (config.PARALLEL) and ``Runtime.parallel`` is False, so the
  planner never chooses the threaded LSTM variant with this runtime.
* ``nogil``: pycc has no option for it; the exported wrappers release the GIL because ``_compile`` gives pycc's
  compiler flags with ``release_gil`` set, as the JIT's ``nogil=True`` does.
"""
from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

from . import _cache
from .errors import EngineError

MODULE = "lstm_engine_runtime"
RECORD = MODULE + ".json"
FORMAT = 1
PRECISIONS = ("float32", "float64")
# execute(prog, fconst, fin0, fin1, fin2, iin, fwork, iwork, fout, state): the signature Session calls, one per
# precision
SIGNATURE = ("int64(int64[::1], {f}[::1], {f}[::1], {f}[::1], {f}[::1], int64[::1], {f}[::1], int64[::1], {f}[::1], "
             "{f}[::1])")

# target -> (LLVM CPU name, the /proc/cpuinfo flags a machine needs to run the code; None: the build machine's)
TARGETS = {
    "host": ("host", None),
    "x86-64-v3": ("x86-64-v3", ("avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "movbe", "abm")),
    "generic": ("generic", ()),
}
# the instruction-set flags of /proc/cpuinfo that code compiled for the build machine ("host") may use
_ISA_FLAGS = ("sse3", "ssse3", "sse4_1", "sse4_2", "popcnt", "avx", "avx2", "fma", "f16c", "bmi1", "bmi2", "movbe",
              "abm", "adx", "sha_ni", "gfni", "vaes", "vpclmulqdq", "avx_vnni", "avx512f", "avx512dq", "avx512cd",
              "avx512bw", "avx512vl", "avx512ifma", "avx512vbmi", "avx512_vbmi2", "avx512_vnni", "avx512_bitalg",
              "avx512_vpopcntdq", "avx512_bf16", "avx512_fp16")


# ---------------------------------------------------------------------- where, and whether it fits (no Numba here)
def fingerprint() -> str:
    """What a runtime must have been built from: the engine's compiled sources and this build recipe."""
    h = hashlib.sha256()
    h.update(_cache.source_hash().encode())
    with open(os.path.abspath(__file__), "rb") as f:
        h.update(f.read())
    return h.hexdigest()[:16]


def default_dir() -> str:
    """Where build-runtime writes unless told otherwise: $LSTM_ENGINE_CACHE_DIR/runtime."""
    return os.path.join(_cache.cache_root(), "runtime")


def search_dirs() -> list:
    """Where the engine looks for a runtime when LSTM_ENGINE_RUNTIME is not set."""
    return [default_dir(), os.path.join(os.path.dirname(os.path.abspath(__file__)), "_runtime")]


def module_path(directory, info) -> str:
    return os.path.join(directory, info["module"])


def _cpu_flags():
    """This machine's /proc/cpuinfo flags, or None where there are none to read (not Linux x86)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def check(directory):
    """(build record, "") if the runtime in ``directory`` can run here with these engine sources, else
    (None, why not)."""
    path = os.path.join(directory, RECORD)
    try:
        with open(path) as f:
            info = json.load(f)
    except FileNotFoundError:
        return None, "no runtime there"
    except (OSError, ValueError) as e:
        return None, f"unreadable build record {path} ({e})"
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        return None, f"build record of another format ({path})"
    if info.get("fingerprint") != fingerprint():
        return None, (f"built from other engine sources (fingerprint {info.get('fingerprint')}, these sources "
                      f"{fingerprint()}); rebuild it with `lstm-engine build-runtime`")
    if info.get("ext_suffix") not in importlib.machinery.EXTENSION_SUFFIXES:
        return None, f"built for another Python ({info.get('python')}, this is {sys.implementation.cache_tag})"
    if info.get("machine") != platform.machine() or info.get("system") != platform.system():
        return None, f"built for {info.get('system')} {info.get('machine')}"
    import numpy
    if str(info.get("numpy", "")).split(".")[0] != numpy.__version__.split(".")[0]:
        return None, f"built against numpy {info.get('numpy')}, this is numpy {numpy.__version__}"
    flags = _cpu_flags()
    missing = sorted(set(info.get("cpu_flags", ())) - flags) if flags is not None else []
    if missing:
        return None, f"built for a CPU with {', '.join(missing)}, which this one lacks (build with --target generic)"
    if info.get("blas") and importlib.util.find_spec("scipy") is None:
        return None, "built with BLAS products, which need SciPy at run time (not installed; build with --no-blas)"
    if not os.path.exists(module_path(directory, info)):
        return None, f"its module {info.get('module')} is missing"
    return info, ""


def load(directory, info) -> dict:
    """{precision: execute} from the runtime's extension module (imports neither Numba nor llvmlite)."""
    path = module_path(directory, info)
    loader = importlib.machinery.ExtensionFileLoader(MODULE, path)
    spec = importlib.util.spec_from_file_location(MODULE, path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return {p: getattr(module, f"execute_{p}") for p in PRECISIONS}


# ---------------------------------------------------------------------- building
def build(out_dir=None, target="host", blas=True, verbose=False) -> dict:
    """Compile the runtime into ``out_dir`` (default: ``default_dir()``); returns its build record.

    Runs in a child process (the compile-time switches must be set before the kernels and Numba are imported) and
    replaces a runtime already there only once the new one is complete."""
    if target not in TARGETS:
        raise EngineError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    out_dir = os.path.abspath(out_dir or default_dir())
    os.makedirs(out_dir, exist_ok=True)
    cpu, _ = TARGETS[target]
    env = dict(os.environ)
    env["LSTM_ENGINE_AOT_BUILD"] = "blas" if blas else "noblas"
    env.pop("NUMBA_DISABLE_JIT", None)
    if target == "host":
        env.pop("NUMBA_CPU_NAME", None)
        env.pop("NUMBA_CPU_FEATURES", None)
    else:
        # the kernels are optimised by Numba's JIT codegen before pycc links them: it must target the same CPU
        env["NUMBA_CPU_NAME"] = cpu
        env["NUMBA_CPU_FEATURES"] = ""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=".build-", dir=out_dir) as tmp:
        code = f"from engine.aot import _compile; _compile({tmp!r}, {target!r})"
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=not verbose, text=True)
        if proc.returncode != 0:
            tail = "\n".join(((proc.stderr or "") + (proc.stdout or "")).strip().splitlines()[-15:])
            raise EngineError(f"building the runtime failed (exit {proc.returncode}):\n{tail}")
        with open(os.path.join(tmp, "child.json")) as f:
            info = json.load(f)
        info["build_seconds"] = round(time.perf_counter() - t0, 1)
        record = os.path.join(out_dir, RECORD)
        if os.path.exists(record):
            os.remove(record)                     # no moment where an old record describes the new module
        os.replace(os.path.join(tmp, info["module"]), os.path.join(out_dir, info["module"]))
        with open(os.path.join(tmp, RECORD), "w") as f:
            json.dump(info, f, indent=1)
        os.replace(os.path.join(tmp, RECORD), record)
    info["path"] = os.path.join(out_dir, info["module"])
    info["size_bytes"] = os.path.getsize(info["path"])
    return info


def _compile(out_dir, target):
    """In the child process: compile the executor for both precisions with pycc into ``out_dir``."""
    from . import config
    assert config.AOT_BUILD and not config.PARALLEL and not config.CACHE, "run through build()"
    import numba
    import numpy
    from numba.core import compiler
    from numba.pycc import CC
    from numba.pycc import compiler as pycc_compiler

    class _Flags(compiler.Flags):
        # pycc compiles its exports with default flags; release the GIL in the wrappers, as nogil=True does
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.release_gil = True

    pycc_compiler.Flags = _Flags
    from .executor import execute
    cpu, flags = TARGETS[target]
    cc = CC(MODULE)
    cc.output_dir = out_dir
    cc.target_cpu = cpu
    for precision in PRECISIONS:
        cc.export(f"execute_{precision}", SIGNATURE.format(f=precision))(execute.py_func)
    cc.compile()
    if flags is None:
        host = _cpu_flags()
        flags = sorted(host & set(_ISA_FLAGS)) if host is not None else []
        import llvmlite.binding as ll
        cpu = ll.get_host_cpu_name()
    info = {
        "format": FORMAT, "fingerprint": fingerprint(), "module": cc.output_file, "target": target, "cpu": cpu,
        "cpu_flags": list(flags), "blas": config.BLAS, "parallel": config.PARALLEL,
        "python": sys.implementation.cache_tag, "ext_suffix": importlib.machinery.EXTENSION_SUFFIXES[0],
        "machine": platform.machine(), "system": platform.system(), "numpy": numpy.__version__,
        "numba": numba.__version__, "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    with open(os.path.join(out_dir, "child.json"), "w") as f:
        json.dump(info, f)
