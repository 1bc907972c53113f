"""The state of one import, shared by its steps, and the helpers every handler uses.

Every ONNX value the import has seen is in exactly one of three places:
  * ``consts``: known at conversion time (initializers, Constant nodes, whatever folds from them);
  * ``symvals``: integer tensors computed from shapes, with symbolic dimensions (shape_values.py);
  * ``shapes`` / ``dtypes``: computed at run time by the engine's nodes, or model tensors (weights).
"""
from __future__ import annotations

import numpy as np

from engine.errors import UnsupportedModelError
from engine.model import Node

from .dims import Shapes


class Named:
    """A stand-in for an ONNX node where a handler emits an extra node of its own (only .name is read)."""

    def __init__(self, name):
        self.name = name


class ImportContext:
    def __init__(self, proto, where: str, base_dir: str | None = None):
        self.proto = proto
        self.where = where          # the source, for messages: a path, "<bytes>" or "<ModelProto>"
        self.base_dir = base_dir    # the directory of the source file (None for bytes): for external data
        self.graph = proto.graph
        self.opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
        self.S = Shapes()
        self.consts: dict = {}       # name -> np.ndarray
        self.symvals: dict = {}      # name -> (list of dims, is_scalar): integer tensors computed from shapes
        self.shapes: dict = {}       # name -> list of dims, for run-time values and model tensors
        self.dtypes: dict = {}       # name -> dtype string, for run-time values and model tensors
        self.nodes: list = []        # the engine's nodes, in order
        self.tensors: dict = {}      # name -> np.ndarray stored in the model
        self.recurrent: list = []    # (emitted recurrent node, its X value's name, layout): for streaming.py
        self.input_names: list = []  # the graph inputs computed at run time
        self.float_dtype = None      # the float type of the graph inputs, if they agree on one
        self.scopes: list = [set()]  # names defined by emitted nodes: the main graph, then each If branch inside
        self.node_names: set = set()  # engine node names (unique: packed weights are found by node name)
        self._bases: set = set()     # tensor name prefixes handed out by base_name

    # ------------------------------------------------------------------ messages
    @staticmethod
    def describe(node) -> str:
        op = node.op_type
        op = op if isinstance(op, str) and op.isidentifier() else repr(op)   # one line, whatever the file holds
        return f"node {node.name or '<unnamed>'!r} ({op})"

    def err(self, node, msg) -> UnsupportedModelError:
        return UnsupportedModelError(f"{self.describe(node)}: {msg}")

    # ------------------------------------------------------------------ reading a node
    @staticmethod
    def attrs(node) -> dict:
        from onnx import helper
        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    def to_array(self, tensor) -> np.ndarray:
        from .loading import to_array
        return to_array(tensor, self.base_dir)

    def const_input(self, node, i, what):
        """Input ``i`` of ``node`` as an array if it is known at conversion time, None if absent; else an error."""
        name = node.input[i] if i < len(node.input) else ""
        if not name:
            return None
        if name in self.consts:
            return self.consts[name]
        raise UnsupportedModelError(f"node {node.name!r} ({node.op_type}): {what} must be a constant (an initializer "
                                    f"or computed from initializers only), but {name!r} is computed at run time")

    def value(self, name, node) -> str:
        """A run-time value's name; a float constant used as data becomes a model tensor."""
        if name in self.shapes:
            return name
        if name in self.consts:
            c = self.consts[name]
            if c.dtype.kind != "f":
                raise self.err(node, f"integer constant {name!r} used as data is not supported")
            self.tensors.setdefault(name, np.asarray(c, order="C"))     # (rank 0 stays rank 0)
            self.shapes[name] = list(c.shape)
            self.dtypes[name] = str(c.dtype)
            return name
        if name in self.symvals:
            return self.materialize(name, node)
        raise self.err(node, f"input {name!r} is not produced by any earlier node")

    def materialize(self, name, node) -> str:
        """A shape value needed at run time (an If condition, a comparison): a ShapeValue node that reads the
        dimensions it is made of off the values that have them, when a plan knows their shapes."""
        dims, scalar = self.symvals[name]
        sources, out = [], []
        for d in dims:
            d = self.S.norm(d)
            if isinstance(d, int):
                out.append([d, []])
                continue
            factors = []
            for s in d.syms:
                src = self.dim_source(s)
                if src is None:
                    raise self.err(node, f"the dimension {s} of shape value {name!r} is not the dimension of any "
                                         f"value computed so far")
                if src[0] not in sources:
                    sources.append(src[0])
                factors.append([sources.index(src[0]), src[1]])
            out.append([d.coef, factors])
        del self.symvals[name]
        self.emit("ShapeValue", Named(f"{name}/shape"), sources, [name], {"dims": out, "scalar": scalar},
                  [[] if scalar else [len(dims)]], ["int64"])
        return name

    def dim_source(self, sym):
        """(value, axis) of a visible run-time value one of whose dimensions is the symbol ``sym``, or None."""
        from .dims import Dim
        want = Dim(1, (sym,))
        visible = list(self.input_names) + [n for scope in self.scopes for n in scope]
        for name in visible:
            for axis, d in enumerate(self.shapes.get(name, ())):
                if self.S.norm(d) == want:
                    return name, axis
        return None

    def data(self, name, node, allow_int=False) -> str:
        """Like value, but float constants take the inputs' float type (a float32 array plus a float64 constant
        would compute in float64), and integer constants may be allowed."""
        if name in self.consts and name not in self.shapes:
            c = self.consts[name]
            if c.dtype.kind not in ("f" + ("iu" if allow_int else "")):
                raise self.err(node, f"constant {name!r} of type {c.dtype} used as data is not supported")
            if c.dtype.kind == "f" and self.float_dtype:
                c = c.astype(self.float_dtype)
            c = np.asarray(c, order="C")        # (rank 0 stays rank 0, as the result's rank depends on it)
            if c.dtype.kind in "iu":
                c = c.astype(np.int64)
            key = name
            while key in self.tensors and self.tensors[key].shape != c.shape:
                key += "_"
            self.tensors.setdefault(key, c)
            self.shapes[key] = list(c.shape)
            self.dtypes[key] = str(c.dtype)
            return key
        return self.value(name, node)

    def shape_of(self, name, node) -> list:
        if name in self.shapes:
            return self.shapes[name]
        if name in self.consts:
            return list(self.consts[name].shape)
        raise self.err(node, f"the shape of {name!r} is unknown")

    # ------------------------------------------------------------------ writing the model
    def emit(self, op, node, inputs, outputs, attrs, out_shapes, out_dtypes):
        """Append an engine node; its outputs become run-time values of the given shapes and dtypes."""
        name = self.node_name(node.name or f"{op}_{len(self.nodes)}")
        self.nodes.append(Node(op, name, inputs, outputs, attrs))
        for o, s, d in zip(outputs, out_shapes, out_dtypes):
            if o:
                self.shapes[o] = s
                self.dtypes[o] = d
                self.scopes[-1].add(o)

    def node_name(self, base: str) -> str:
        """``base``, or ``base#k``: a node name not used yet in this import (taken)."""
        return _take_unique(base, self.node_names)

    def store(self, key, array) -> str:
        """Keep ``array`` in the model as tensor ``key`` (replacing one of that name)."""
        self.tensors[key] = array
        self.shapes[key], self.dtypes[key] = list(array.shape), str(array.dtype)
        return key

    def base_name(self, node, fallback: str) -> str:
        """A prefix, unique in this import, for the tensors and extra nodes a handler adds for ``node`` (node names
        repeat across If branches: Silero's 16 and 8 kHz models have the same names)."""
        return _take_unique((node.name or fallback).replace("/", "_"), self._bases)

    # ------------------------------------------------------------------ dimensions
    def soft_equal(self, d, value) -> bool:
        """d is a soft symbol declared as ``value`` (a fixed size in the ONNX file that nothing has bound yet)."""
        s = self.S.single_sym(d)
        return s is not None and self.S.soft.get(s) == value

    def export_dim(self, d):
        d = self.S.norm(d)
        if isinstance(d, int):
            return d
        return str(d)


def _take_unique(base: str, taken: set) -> str:
    """``base``, or the first of ``base#2``, ``base#3``, ... not in ``taken``; added to ``taken``."""
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}#{k}"
    taken.add(name)
    return name
