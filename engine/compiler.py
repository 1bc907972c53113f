"""Turn a model graph into one jitted function: the per-call cost does not grow with the number of nodes.

The graph is written out as Python source (one line or a few per node, every value a C-contiguous array), saved
under the cache directory with a name derived from its text, imported, and compiled by Numba with ``cache=True``.
Weights are arguments, not globals, so two models with the same architecture share one compiled function, and
the compiled code survives across processes.

Constants and scalar attributes are packed into one aligned byte buffer with a table of offsets and shapes; the
generated code slices its views out of it. A call therefore unboxes the inputs and one array, however many weights
the model has. The generated code also checks the inputs' shapes, so that Session.run can call it directly.

Stream mode generates a variant in which each recurrent node reads its initial state from argument arrays and
writes its final state back into them, so that a stream carries the state between calls without new arrays.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys
from dataclasses import dataclass, field

import numpy as np

from . import _cache
from .ops import OPS


@dataclass
class Compiled:
    fn: object                      # the jitted function
    input_names: list               # graph inputs, in argument order
    consts: list                    # [the packed constant buffer], appended after the inputs
    output_names: list              # graph outputs, in return order
    state_slots: list = field(default_factory=list)   # stream mode: [(node name, state index, shape fn)]
    source: str = ""
    arg_index: list | None = None   # positions among the model's inputs of the arguments (None: all of them)

    def call(self, inputs, states=()):
        """inputs: one array per model input, in the model's order."""
        if self.arg_index is not None:
            inputs = [inputs[i] for i in self.arg_index]
        return self.fn(*inputs, *self.consts, *states)


class _Context:
    def __init__(self, model, dtype, stream, threads=1):
        self.model = model
        self.threads = threads      # kernels may split work over this many threads
        self.uses_parallel = False  # set by ops that emit a parallel=True kernel
        self.dtype = np.dtype(dtype)
        self.stream = stream
        self.lines = []
        self.vars = {}
        self.ranks = {}
        self.arrays = []            # packed constant arrays, in order
        self.meta = []              # per array: byte start, byte end, shape
        self.meta_slots = []        # index in meta of each array's entry
        self.ints = []              # integer and boolean scalar attributes
        self.floats = []            # float scalar attributes
        self.prologue = []          # lines that slice the constants' views out of the buffers
        self.state_args = []        # stream mode: (var, node, index)
        self.node_states = {}       # stream mode: node name -> {state index: argument variable}
        self.arg_specs = list(model.inputs)   # the graph inputs the generated function takes, in order
        self._n = 0
        for spec in model.inputs:
            self.vars[spec.name] = self._fresh("in")
            self.ranks[spec.name] = len(spec.shape)

    def _fresh(self, prefix):
        self._n += 1
        return f"{prefix}{self._n}"

    # ------------------------------------------------------------ used by ops
    def line(self, text):
        self.lines.append(text)

    def msg(self, node, text):
        return repr(f"node {node.name!r} ({node.op}): {text}")

    def rank(self, name):
        if name in self.ranks:
            return self.ranks[name]
        if name in self.model.tensors:
            return self.model.tensors[name].ndim
        raise KeyError(name)

    def const(self, arr):
        """A constant array, packed into the model's byte buffer; returns the variable holding its view."""
        arr = np.ascontiguousarray(arr)
        if arr.ndim == 0:
            return self.scalar(arr[()])
        self.arrays.append(arr)
        m = len(self.meta)
        self.meta += [0, 0, *arr.shape]      # byte offsets are filled in by packed_buffer()
        self.meta_slots.append(m)
        var = self._fresh("k")
        dims = ", ".join(f"_m[{m + 2 + i}]" for i in range(arr.ndim)) + ("," if arr.ndim == 1 else "")
        self.prologue.append(f"{var} = _b[_m[{m}]:_m[{m + 1}]].view(np.{arr.dtype.name}).reshape(({dims}))")
        return var

    def scalar(self, value):
        """A scalar attribute, read from the buffer, so that the source depends on structure only."""
        var = self._fresh("k")
        if isinstance(value, (bool, np.bool_)):
            self.ints.append(int(value))
            self.prologue.append(f"{var} = _si[{len(self.ints) - 1}] != 0")
        elif isinstance(value, (int, np.integer)):
            self.ints.append(int(value))
            self.prologue.append(f"{var} = _si[{len(self.ints) - 1}]")
        elif isinstance(value, np.float32):
            self.floats.append(float(value))
            self.prologue.append(f"{var} = np.float32(_sf[{len(self.floats) - 1}])")
        elif isinstance(value, (float, np.floating)):
            self.floats.append(float(value))
            self.prologue.append(f"{var} = _sf[{len(self.floats) - 1}]")
        else:
            raise TypeError(f"unsupported scalar attribute {value!r}")
        return var

    def packed_buffer(self):
        """(header lines, buffer): every constant and scalar in one 64-byte-aligned uint8 buffer.

        Layout: [table of byte offsets and shapes, int64][int scalars, int64][float scalars, float64][arrays...],
        each part starting on a 64-byte boundary, so a call unboxes one array however many weights there are.
        """
        def up(n):
            return -(-n // 64) * 64
        n_meta, n_int, n_float = max(len(self.meta), 1), max(len(self.ints), 1), max(len(self.floats), 1)
        o_int = up(8 * n_meta)
        o_float = o_int + up(8 * n_int)
        pos = o_float + up(8 * n_float)
        meta = list(self.meta) + [0] * (n_meta - len(self.meta))
        for slot, arr in zip(self.meta_slots, self.arrays):
            meta[slot], meta[slot + 1] = pos, pos + arr.nbytes
            pos = up(pos + arr.nbytes)
        raw = np.zeros(pos + 64, dtype=np.uint8)
        shift = -raw.ctypes.data % 64                        # align the buffer itself to 64 bytes
        buf = raw[shift:shift + pos]
        buf[:8 * n_meta] = np.array(meta, dtype=np.int64).view(np.uint8)
        buf[o_int:o_int + 8 * len(self.ints)] = np.array(self.ints, dtype=np.int64).view(np.uint8)
        buf[o_float:o_float + 8 * len(self.floats)] = np.array(self.floats, dtype=np.float64).view(np.uint8)
        for slot, arr in zip(self.meta_slots, self.arrays):
            buf[meta[slot]:meta[slot + 1]] = arr.reshape(-1).view(np.uint8)
        header = [f"_m = _b[0:{8 * n_meta}].view(np.int64)",
                  f"_si = _b[{o_int}:{o_int + 8 * n_int}].view(np.int64)",
                  f"_sf = _b[{o_float}:{o_float + 8 * n_float}].view(np.float64)"]
        return header, buf

    def check_inputs(self, specs=None):
        """Shape checks of the graph inputs, as generated code: the fast path of Session.run relies on them. The
        messages are constant (cheap to compile); Session re-checks a refused call in Python for the full story."""
        bound = {}
        for spec in self.model.inputs if specs is None else specs:
            x = self.vars[spec.name]
            for axis, d in enumerate(spec.shape):
                if isinstance(d, str):
                    if d in bound:
                        first, var = bound[d]
                        self.line(f"if {x}.shape[{axis}] != {var}:")
                        self.line(f"    raise ValueError({(f'input {spec.name!r} dimension {axis} ({d!r}) differs from input {first!r}')!r})")
                    else:
                        var = self._fresh("dim")
                        bound[d] = (spec.name, var)
                        self.line(f"{var} = {x}.shape[{axis}]")
                        self.line(f"if {var} < 1:")
                        self.line(f"    raise ValueError({(f'input {spec.name!r} has an empty dimension {axis} ({d!r})')!r})")
                else:
                    size = self.scalar(int(d))   # sizes are data, not source: one compile serves every size
                    self.line(f"if {x}.shape[{axis}] != {size}:")
                    self.line(f"    raise ValueError({(f'input {spec.name!r} dimension {axis} has the wrong size')!r})")

    def value(self, name):
        if name in self.vars:
            return self.vars[name]
        if name in self.model.tensors:
            t = self.model.tensors[name]
            t = t.astype(self.dtype) if t.dtype.kind == "f" else np.ascontiguousarray(t)
            self.vars[name] = self.const(np.ascontiguousarray(t))
            return self.vars[name]
        raise KeyError(name)

    def define(self, name, rank):
        var = self._fresh("v")
        self.vars[name] = var
        self.ranks[name] = rank
        return var

    def outputs(self, node, n):
        """Variables for a node's outputs (absent ones get throwaway names). Ranks come from the op."""
        ranks = OPS[node.op].output_ranks
        outs = []
        for i in range(n):
            name = node.outputs[i] if i < len(node.outputs) else ""
            outs.append(self.define(name, ranks[i]) if name else self._fresh("unused"))
        return outs

    def packed(self, node):
        """Each packed array of a node as its own view variable (for ops whose generated code reads them)."""
        return {k: self.const(v) for k, v in OPS[node.op].prepare(node, self.model, self.dtype).items()}

    def packed_table(self, node, extra=None):
        """A node's packed arrays left in the buffer: returns (first table entry, {key: entry}); the op's kernel
        wrapper slices its own views (engine/ops/packing.py), so that reshapes are compiled once per op, not in
        every generated function."""
        entries = {}
        arrays = dict(OPS[node.op].prepare(node, self.model, self.dtype))
        arrays.update(extra or {})
        for key, arr in arrays.items():
            arr = np.ascontiguousarray(arr)
            if arr.ndim > 4:
                raise ValueError("packed arrays have at most 4 dimensions")
            self.arrays.append(arr)
            m = len(self.meta)
            self.meta += [0, 0, *arr.shape, *([1] * (4 - arr.ndim)), 0]
            self.meta_slots.append(m)
            entries[key] = m
        return entries

    def optional(self, name, dummy_arr):
        if name:
            return self.value(name), True
        return self.const(dummy_arr), False

    def initial_state(self, node, index, name):
        from .ops.base import dummy
        if self.stream:
            var = self._fresh("s")
            self.state_args.append((var, node, index))
            self.node_states.setdefault(node.name, {})[index] = var
            return var, True
        return self.optional(name, dummy(self.dtype, 3))

    def final_state(self, node, vars_):
        """Stream mode: the final state is copied into the state arrays the stream owns (no new arrays to return)."""
        if self.stream:
            for index, var in self.node_states.get(node.name, {}).items():
                self.line(f"{var}[:] = {vars_[index]}")


def generate(model, dtype, stream=False, threads=1, outputs=None):
    """Return (source, context, constant buffer) for ``model`` computed in ``dtype``. ``outputs``: the names of the
    graph outputs to return (default: all); what only the others need is left out of the generated code."""
    ctx = _Context(model, dtype, stream, threads)
    ctx.check_inputs()
    n_checks = len(ctx.lines)
    for node in model.nodes:
        OPS[node.op].emit(node, ctx)
    outs = [ctx.value(spec.name) for spec in model.outputs if outputs is None or spec.name in outputs]
    rets = outs
    live = set(rets) | {v for v, _, _ in ctx.state_args}
    if stream:
        # the state inputs (h0, c0) are not read in stream mode: leave them out of the signature and the checks,
        # since every array argument costs the dispatcher an unboxing per call
        read = set(_NAME.findall("\n".join(_drop_dead(ctx.lines[n_checks:], live))))
        used = [spec for spec in model.inputs if ctx.vars[spec.name] in read]
        if len(used) < len(model.inputs):
            body_lines = ctx.lines[n_checks:]
            ctx.lines = []
            ctx.check_inputs(used)
            ctx.lines += body_lines
            ctx.arg_specs = used
    header_lines, buf = ctx.packed_buffer()
    args = [ctx.vars[s.name] for s in ctx.arg_specs] + ["_b"] + [v for v, _, _ in ctx.state_args]
    imports = {}
    for node in model.nodes:
        imports.update(OPS[node.op].imports)
    head = [
        "# generated by lstm-engine; do not edit",
        f"# engine sources: {_cache.source_hash()}; compute dtype: {np.dtype(dtype).name}; stream: {stream}",
        # one module per argument-type combination: Session disables compilation after the warm-up call
        f"# input dtypes: {', '.join(s.dtype for s in model.inputs)}",
        "import numpy as np",
        "from numba import njit",
        "from engine.config import JIT_OPTIONS",
    ]
    for name, fn in sorted(imports.items()):
        head.append(f"from {fn.__module__} import {name}")
    body = ["", "", "@njit(**JIT_OPTIONS)", f"def model_fn({', '.join(args)}):"]
    lines = _drop_dead(header_lines + ctx.prologue + ctx.lines, live)
    body += ["    " + line for line in lines]
    body.append(f"    return ({', '.join(rets)}{',' if len(rets) == 1 else ''})")
    return "\n".join(head + body) + "\n", ctx, buf


_ASSIGN = re.compile(r"^([A-Za-z_]\w*(?:, [A-Za-z_]\w*)*) = ")
_NAME = re.compile(r"[A-Za-z_]\w*")


def _drop_dead(lines, live):
    """Drop assignments whose targets nothing later reads (every generated expression is free of side effects;
    writes into arrays, checks and raises are kept). In stream mode this removes, for example, the slicing of the
    state inputs that the recurrent nodes no longer read; each dropped line is an allocation saved per call."""
    live = set(live)
    kept = []
    for line in reversed(lines):
        m = _ASSIGN.match(line)
        if m and not any(t in live for t in m.group(1).split(", ")):
            continue
        kept.append(line)
        live.update(_NAME.findall(line))
    return kept[::-1]


def compile_model(model, dtype, stream=False, threads=1, outputs=None) -> Compiled:
    source, ctx, buf = generate(model, dtype, stream, threads, outputs)
    if ctx.uses_parallel:
        # Numba issue #8578: a cached function calling a parallel=True kernel segfaults when it is loaded before
        # the thread pool exists; get_num_threads() launches the pool.
        import numba
        numba.get_num_threads()
    fn = _load_generated(source)
    return Compiled(
        fn=fn,
        input_names=[s.name for s in model.inputs],
        consts=[buf],
        output_names=[s.name for s in model.outputs if outputs is None or s.name in outputs],
        arg_index=(None if len(ctx.arg_specs) == len(model.inputs)
                   else [list(model.inputs).index(spec) for spec in ctx.arg_specs]),
        state_slots=[(node, index) for _, node, index in ctx.state_args],
        source=source,
    )


def _load_generated(source: str):
    digest = hashlib.sha256(source.encode()).hexdigest()[:20]
    modname = f"lstm_engine_generated_{digest}"
    if modname in sys.modules:
        return sys.modules[modname].model_fn
    directory = _cache.generated_dir()
    path = os.path.join(directory, modname + ".py")
    if not os.path.exists(path):
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(source)
        os.replace(tmp, path)   # atomic: concurrent sessions never see half a file
    spec = importlib.util.spec_from_file_location(modname, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    spec.loader.exec_module(module)
    return module.model_fn
