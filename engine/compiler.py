"""Turn a model graph into one jitted function: the per-call cost does not grow with the number of nodes.

The graph is written out as Python source (one line or a few per node, every value a C-contiguous array), saved
under the cache directory with a name derived from its text, imported, and compiled by Numba with ``cache=True``.
Weights are arguments, not globals, so two models with the same architecture share one compiled function, and
the compiled code survives across processes.

Stream mode generates a variant in which each recurrent node reads its initial state from arguments and returns its
final state, so that a stream can carry the state between calls.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from dataclasses import dataclass, field

import numpy as np

from . import _cache
from .ops import OPS


@dataclass
class Compiled:
    fn: object                      # the jitted function
    input_names: list               # graph inputs, in argument order
    consts: list                    # constant arrays, appended after the inputs
    output_names: list              # graph outputs, in return order
    state_slots: list = field(default_factory=list)   # stream mode: [(node name, state index, shape fn)]
    source: str = ""

    def call(self, inputs, states=()):
        return self.fn(*inputs, *self.consts, *states)


class _Context:
    def __init__(self, model, dtype, stream):
        self.model = model
        self.dtype = np.dtype(dtype)
        self.stream = stream
        self.lines = []
        self.vars = {}
        self.ranks = {}
        self.const_args = []
        self.const_vars = {}
        self.state_args = []        # stream mode: (var, node, index)
        self.state_returns = []     # stream mode: vars holding final states, same order as state_args
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
        var = self._fresh("k")
        self.const_args.append((var, arr))
        return var

    def scalar(self, value):
        """A scalar attribute as an argument, so that the generated source depends on structure only."""
        return self.const(value)

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
        return {k: self.const(v) for k, v in OPS[node.op].prepare(node, self.model, self.dtype).items()}

    def optional(self, name, dummy_arr):
        if name:
            return self.value(name), True
        return self.const(dummy_arr), False

    def initial_state(self, node, index, name):
        from .ops.base import dummy
        if self.stream:
            var = self._fresh("s")
            self.state_args.append((var, node, index))
            return var, True
        return self.optional(name, dummy(self.dtype, 3))

    def final_state(self, node, vars_):
        if self.stream:
            self.state_returns.extend(vars_[: len(OPS[node.op].state_names())])


def generate(model, dtype, stream=False):
    """Return (source, context) for ``model`` computed in ``dtype``."""
    ctx = _Context(model, dtype, stream)
    for node in model.nodes:
        OPS[node.op].emit(node, ctx)
    outs = [ctx.value(spec.name) for spec in model.outputs]
    rets = outs + ctx.state_returns
    args = [ctx.vars[s.name] for s in model.inputs] + [v for v, _ in ctx.const_args] + [v for v, _, _ in ctx.state_args]
    imports = {}
    for node in model.nodes:
        imports.update(OPS[node.op].imports)
    head = [
        "# generated by lstm-engine; do not edit",
        f"# engine sources: {_cache.source_hash()}",
        "import numpy as np",
        "from numba import njit",
        "from engine.config import JIT_OPTIONS",
    ]
    for name, fn in sorted(imports.items()):
        head.append(f"from {fn.__module__} import {name}")
    body = ["", "", "@njit(**JIT_OPTIONS)", f"def model_fn({', '.join(args)}):"]
    body += ["    " + line for line in ctx.lines]
    body.append(f"    return ({', '.join(rets)}{',' if len(rets) == 1 else ''})")
    return "\n".join(head + body) + "\n", ctx


def compile_model(model, dtype, stream=False) -> Compiled:
    source, ctx = generate(model, dtype, stream)
    fn = _load_generated(source)
    return Compiled(
        fn=fn,
        input_names=[s.name for s in model.inputs],
        consts=[arr for _, arr in ctx.const_args],
        output_names=[s.name for s in model.outputs],
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
