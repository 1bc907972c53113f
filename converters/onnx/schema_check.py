"""What every ONNX node must satisfy before a handler reads it, checked against the op's own schema in one place:
the number of inputs and of outputs, each attribute's type, string attributes in UTF-8, and the element type of
constant inputs whose type the schema fixes (Reshape's shape is int64, ...). A malformed node is then a clear error
naming the node, the attribute or input and what the schema wants, not an exception from deep inside a handler. An
op newer than the model's opset is checked against its first version, whose handler reads it (registry.lookup)."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from engine.errors import ConversionError

_ELEMENT = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(float)": np.float32,
            "tensor(double)": np.float64, "tensor(bool)": np.bool_}


def check(ctx, node):
    import onnx
    from onnx import defs
    fields = (node.op_type, node.name, *node.input, *node.output, *(a.name for a in node.attribute))
    if not all(isinstance(v, str) for v in fields):   # protobuf hands back invalid UTF-8 as bytes
        raise ConversionError(f"a node's op type, name, inputs, outputs or attribute names are not UTF-8 text "
                              f"(op type {node.op_type!r}, name {node.name!r})")
    where = ctx.describe(node)
    for a in node.attribute:
        if a.type == onnx.AttributeProto.STRING:
            _utf8(a.s, where, a.name)
        elif a.type == onnx.AttributeProto.STRINGS:
            for s in a.strings:
                _utf8(s, where, a.name)
    try:
        schema = defs.get_schema(node.op_type, max_inclusive_version=ctx.opset, domain="")
    except Exception:   # an op this opset does not define yet: its first version's handler reads it
        schema = _first_schema(node.op_type)      # (registry.lookup), so its first version's schema applies
        if schema is None:                        # an op ONNX does not define: the handler lookup says so
            return
    _check_count(where, node.input, schema.min_input, schema.max_input, "takes {} input(s)")
    _check_count(where, node.output, schema.min_output, schema.max_output, "has {} output(s)")
    for a in node.attribute:
        spec = schema.attributes.get(a.name)
        if spec is not None and a.type != spec.type:
            raise ConversionError(f"{where}: attribute {a.name!r} must be {_type_name(spec.type)}, got "
                                  f"{_type_name(a.type)}")
    for i, name in enumerate(node.input):
        if not name or name not in ctx.consts or not schema.inputs:
            continue
        formal = schema.inputs[min(i, len(schema.inputs) - 1)]
        want = _ELEMENT.get(formal.type_str)
        if want is not None and ctx.consts[name].dtype != want:
            raise ConversionError(f"{where}: input {i} ({name!r}) must be {formal.type_str}, got "
                                  f"{ctx.consts[name].dtype}")


def _check_count(where, names, lo, hi, what):
    """The node's inputs or outputs (trailing empty names are left-out optional ones) number lo to hi."""
    n = len(names)
    while n and not names[n - 1]:
        n -= 1
    if n < lo or n > hi:
        raise ConversionError(f"{where}: {what.format(lo if lo == hi else f'{lo} to {hi}')}, got {n}")


@lru_cache(maxsize=None)
def _first_schema(op_type: str):
    """The schema of the first version of a default-domain op, or None for an op ONNX does not define."""
    from onnx import defs
    try:
        latest = defs.get_schema(op_type, domain="").since_version
    except Exception:
        return None
    for version in range(1, latest + 1):
        try:
            return defs.get_schema(op_type, max_inclusive_version=version, domain="")
        except Exception:
            continue
    return None


def _utf8(raw: bytes, where, attr):
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConversionError(f"{where}: attribute {attr!r} is not UTF-8 text") from None


def _type_name(t) -> str:
    import onnx
    try:
        return onnx.AttributeProto.AttributeType.Name(t).lower()
    except ValueError:
        return f"type {t}"
