"""Values known at conversion time: Constant nodes, and any node whose inputs are all constants, evaluated with
onnx's reference implementation (the dynamo exporter's Slice/Concat gate reordering, Casts, shape arithmetic on
fixed shapes, ...)."""
from __future__ import annotations

import numpy as np


def constant(ctx, node):
    """A Constant node's value (dense tensors and numbers)."""
    attrs = ctx.attrs(node)
    if "value" in attrs:
        ctx.consts[node.output[0]] = ctx.to_array(node.attribute[0].t)
        return
    for key in ("value_float", "value_int", "value_floats", "value_ints"):
        if key in attrs:
            dtype = np.float32 if key.startswith("value_float") else np.int64
            ctx.consts[node.output[0]] = np.array(attrs[key], dtype=dtype)
            return
    raise ctx.err(node, "unsupported Constant attribute (only dense tensors and numbers)")


def foldable(ctx, node, recurrent_ops) -> bool:
    """Every input is known at conversion time (the recurrent ops are never folded: they keep their weights)."""
    ins = list(node.input)
    return node.op_type not in recurrent_ops and bool(ins) and all((not i) or i in ctx.consts for i in ins)


def fold(ctx, node):
    """Evaluate a node whose inputs are all constants with onnx's reference implementation."""
    import onnx
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    ins = [i for i in node.input if i]
    inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(ctx.consts[n].dtype),
                                            list(ctx.consts[n].shape)) for n in ins]
    outputs = [helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None) for n in node.output if n]
    g = helper.make_graph([node], "fold", inputs, outputs)
    m = helper.make_model(g, opset_imports=list(ctx.proto.opset_import), ir_version=ctx.proto.ir_version)
    try:
        results = ReferenceEvaluator(m).run(None, {n: ctx.consts[n] for n in ins})
    except Exception as e:
        raise ctx.err(node, f"cannot fold this node at conversion time: {e}") from e
    for name, value in zip([n for n in node.output if n], results):
        value = np.asarray(value)
        ctx.consts[name] = value.astype(np.float32) if value.dtype == np.float16 else value
