"""What every op provides: validation of a node, weight packing, and the line of generated code that runs it."""
import numpy as np

from ..errors import ModelFileError


class Op:
    name = ""
    recurrent = False
    output_ranks: tuple = ()
    imports: dict = {}

    @classmethod
    def validate(cls, node, model):
        """Raise ModelFileError / UnsupportedModelError if the node is malformed."""

    @classmethod
    def prepare(cls, node, model, dtype):
        """Return {key: array} of packed constants this node's generated code reads."""
        return {}

    @classmethod
    def emit(cls, node, ctx):
        """Append the node's code to ``ctx`` (see engine/compiler.py)."""
        raise NotImplementedError


def require_attrs(node, names):
    missing = [n for n in names if n not in node.attrs]
    if missing:
        raise ModelFileError(f"node {node.name!r} ({node.op}) lacks attribute(s) {', '.join(missing)}")
    return node.attrs


def const_tensor(node, model, index, what, required=False):
    """The constant tensor at input ``index`` of ``node``, or None if absent; weights must be constants."""
    name = node.inputs[index] if index < len(node.inputs) else ""
    if not name:
        if required:
            raise ModelFileError(f"node {node.name!r}: input {what} is required")
        return None
    if name not in model.tensors:
        raise ModelFileError(f"node {node.name!r}: {what} ({name!r}) must be a constant tensor stored in the model, "
                             f"not a value computed at run time")
    t = model.tensors[name]
    if t.dtype.kind != "f":
        raise ModelFileError(f"node {node.name!r}: {what} must be a float tensor, got {t.dtype}")
    return t


def dummy(dtype, ndim):
    """A zero-size array standing in for an absent optional input (keeps the generated code's types fixed)."""
    return np.zeros((0,) * ndim, dtype=dtype)
