"""Handlers found by ONNX op type and opset.

A handler is registered for the version of an op it implements, its since-version:

    @handler("Squeeze", since=1)      # axes as an attribute (Squeeze-1, Squeeze-11) or an input (Squeeze-13 on)
    def squeeze(ctx, node, ins, a): ...

``lookup(op, opset)`` resolves the model's opset to the op's since-version with ``onnx.defs.get_schema(op,
max_inclusive_version=opset).since_version`` and returns the handler with the highest since-version not above it.
So one handler serves every opset where the op did not change, and every later one until a handler registered
for a later since-version takes over (a later version that only widened the types needs no handler of its own).
An op the model's opset does not define yet gets the op's first handler.
"""
from __future__ import annotations

import bisect
from functools import lru_cache


class Registry:
    def __init__(self, what: str):
        self.what = what                 # which values its handlers take, for error messages
        self._handlers: dict = {}        # op type -> {since-version: handler}

    def register(self, op: str, since: int = 1):
        def decorate(fn):
            versions = self._handlers.setdefault(op, {})
            if since in versions:
                raise ValueError(f"{op}-{since} has two {self.what} handlers: {versions[since].__name__}, "
                                 f"{fn.__name__}")
            versions[since] = fn
            return fn
        return decorate

    def lookup(self, op: str, opset: int):
        """The handler for ``op`` in a model importing default-domain ``opset``, or None."""
        versions = self._handlers.get(op)
        if not versions:
            return None
        keys = sorted(versions)
        since = _since_version(op, opset)
        if since is None:
            return versions[keys[0]]
        k = bisect.bisect_right(keys, since)
        return versions[keys[k - 1]] if k else None

    def ops(self) -> list:
        return sorted(self._handlers)

    def __contains__(self, op: str) -> bool:
        return op in self._handlers


@lru_cache(maxsize=None)
def _since_version(op: str, opset: int):
    import onnx.defs

    try:
        return onnx.defs.get_schema(op, max_inclusive_version=opset).since_version
    except onnx.defs.SchemaError:
        return None


RUNTIME = Registry("run-time value")   # ops whose inputs include a value computed at run time
SHAPE = Registry("shape value")        # ops on integer tensors computed from shapes (shape_values.py)
handler = RUNTIME.register
shape_handler = SHAPE.register
