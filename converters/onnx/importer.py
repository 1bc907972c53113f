"""The driver: an ONNX model (path, bytes or ModelProto) -> a validated lstm-engine Model.

Each node goes, in this order, to: the Constant reader or the folder (all its inputs known at conversion time,
folding.py); the shape-value evaluator (it computes from shapes, shape_values.py); the handler registered for its
op and the model's opset (handlers/), which emits the engine's nodes. Then the fusions (fusion.py) replace spelled-out
computations the engine has one instruction for.
"""
from __future__ import annotations

import os

from engine import recurrent_spec
from engine.errors import ConversionError, UnsupportedModelError
from engine.model import Model, TensorSpec

from . import folding, fusion, handlers, loading, schema_check, shape_values  # noqa: F401 (handlers: registers them)
from .control_flow import convert_if
from .context import ImportContext
from .registry import RUNTIME
from .streaming import state_pairs, stream_info


def onnx_bytes_to_model(data: bytes, where: str = "<bytes>", progress: bool = False,
                        base_dir: str | None = None, state: dict | None = None) -> Model:
    return convert(loading.parse(data, where), where, progress, base_dir, state)


def onnx_to_model(src, progress: bool = False, state: dict | None = None) -> Model:
    """An ONNX file path, bytes, or ModelProto -> validated Model (not written anywhere). ``state``: {input: output}
    pairs a stream keeps inside (default: found by name and shape, e.g. state -> stateN, h -> hn)."""
    import onnx

    if isinstance(src, onnx.ModelProto):
        return convert(src, "<ModelProto>", progress, state=state)
    if isinstance(src, (bytes, bytearray)):
        return onnx_bytes_to_model(bytes(src), "<bytes>", progress, state=state)
    path = os.fspath(src)
    data = loading.read_file(path)
    model = onnx_bytes_to_model(data, path, progress, base_dir=loading.source_dir(path), state=state)
    model.origin["file"] = os.path.basename(path)
    return model


def convert(proto, where: str = "<ModelProto>", progress: bool = False, base_dir: str | None = None,
            state: dict | None = None) -> Model:
    """A ModelProto -> validated Model. ``base_dir``: the directory of the file it was read from, if any;
    ``state``: declared state pairs (streaming.state_pairs)."""
    ctx = ImportContext(proto, where, base_dir)
    loading.check_opset(ctx)
    loading.load_initializers(ctx)
    inputs = loading.load_inputs(ctx)
    nodes = list(ctx.graph.node)
    from engine._progress import progress_iter
    for node in progress_iter(nodes, "converting", enabled=progress and len(nodes) > 1):
        convert_node(ctx, node)
    fusion.fuse(ctx)
    return _model(ctx, inputs, state)


def convert_node(ctx, node):
    op = node.op_type
    if node.domain not in ("", "ai.onnx"):
        raise ctx.err(node, f"custom domain {node.domain!r} is not supported")
    schema_check.check(ctx, node)
    if op == "Constant":
        folding.constant(ctx, node)
        return
    if op == "If":
        convert_if(ctx, node, convert_node)
        return
    if folding.foldable(ctx, node, recurrent_spec.SPECS):
        folding.fold(ctx, node)
        return
    if shape_values.applies(ctx, node):
        try:
            shape_values.evaluate(ctx, node)
            return
        except shape_values.Undecidable:
            pass     # a run-time node below; its shape-value inputs become ShapeValue nodes
    fn = RUNTIME.lookup(op, ctx.opset)
    if fn is None:
        raise ctx.err(node, f"op {op!r} is not supported on run-time values (supported: {', '.join(RUNTIME.ops())}; "
                            f"anything computed only from weights or static shapes is folded at conversion)")
    fn(ctx, node, list(node.input), ctx.attrs(node))


def _model(ctx, inputs, state=None) -> Model:
    outputs = []
    for vi in ctx.graph.output:
        if vi.name in ctx.consts or vi.name in ctx.symvals:
            raise UnsupportedModelError(f"graph output {vi.name!r} is a constant: nothing to run")
        if vi.name not in ctx.shapes:
            raise ConversionError(f"graph output {vi.name!r} is not produced by any node")
        outputs.append(vi.name)
    pairs = state_pairs(ctx, inputs, [TensorSpec(n, ctx.shapes[n], ctx.dtypes[n]) for n in outputs], state)
    for i, o in pairs:      # a state's fixed sizes (Silero's 2 and 128) are what a stream's zero state takes
        for d in ctx.shapes[i] + ctx.shapes[o]:
            ctx.S.concretize(d)
    specs_in = [TensorSpec(s.name, [ctx.export_dim(d) for d in ctx.shapes[s.name]], s.dtype, s.optional)
                for s in inputs]
    half = {vi.name for vi in ctx.graph.output if vi.type.tensor_type.elem_type == loading.FLOAT16}
    specs_out = [TensorSpec(n, [ctx.export_dim(d) for d in ctx.shapes[n]],
                            "float16" if n in half and ctx.dtypes[n].startswith("float") else ctx.dtypes[n])
                 for n in outputs]
    float_dtypes = {"float32" if s.dtype == "float16" else s.dtype for s in specs_in if s.dtype.startswith("float")}
    if len(float_dtypes) > 1:
        raise UnsupportedModelError("the model mixes float32 and float64 inputs")
    dtype = float_dtypes.pop() if float_dtypes else "float32"
    proto = ctx.proto
    model = Model(inputs=specs_in, outputs=specs_out, nodes=ctx.nodes, tensors=ctx.tensors, dtype=dtype,
                  origin={"source": "onnx", "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
                          "opset": ctx.opset, "ir_version": proto.ir_version},
                  stream=stream_info(ctx, specs_in, specs_out, pairs))
    return model.validate()
