"""ONNX -> lstm-engine model.

Handles what both PyTorch exporters emit around recurrent layers:
  * weight-only subgraphs (the dynamo exporter's Slice/Concat gate reordering, Constant nodes, Casts) are folded to
    constants with onnx's reference evaluator;
  * shape computations (Shape -> Gather/Slice -> Mul -> Concat -> Reshape) are evaluated symbolically, so that the
    Reshape between stacked layers becomes a static target (0 = copy a dimension, -1 = infer);
  * the Transpose/Reshape/Squeeze/Unsqueeze/Concat/Slice glue is kept as nodes of the engine's graph.
Anything else is a ConversionError/UnsupportedModelError naming the node, the op and what is supported.
"""
from __future__ import annotations

import os

import numpy as np

from engine.errors import ConversionError, ModelFileError, UnsupportedModelError
from engine.model import Model, Node, TensorSpec
from engine.ops.activations import normalize as normalize_activations
from engine.ops.recurrent import DIRECTIONS

from .symbolic import Dim, Shapes

INT64_BIG = 2 ** 62
# op: (gates, default activations per direction, 0/1 attributes of its own)
RECURRENT = {"LSTM": (4, ("Sigmoid", "Tanh", "Tanh"), ("input_forget",)),
             "GRU": (3, ("Sigmoid", "Tanh"), ("linear_before_reset",)),
             "RNN": (1, ("Tanh",), ())}
DATA_OPS = ("LSTM", "GRU", "RNN", "Gather", "MatMul", "Gemm", "Add", "Sub", "Mul", "Div", "Relu", "Tanh", "Sigmoid",
            "Exp", "Neg", "Sqrt", "Abs", "Softmax", "LogSoftmax", "Conv", "Split", "Flatten", "ReduceMean",
            "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Concat", "Slice", "Identity", "Dropout", "Cast")
SHAPE_OPS = ("Shape", "Gather", "Slice", "Concat", "Unsqueeze", "Squeeze", "Mul", "Cast", "Reshape", "Identity",
             "Size", "ConstantOfShape", "Expand")
MIN_OPSET = 7
_ELEM = {1: "float32", 11: "float64", 6: "int32", 7: "int64"}


class _Named:
    """A stand-in for an ONNX node where the converter emits an extra node of its own (only .name is read)."""

    def __init__(self, name):
        self.name = name


def onnx_bytes_to_model(data: bytes, where: str = "<bytes>", progress: bool = False) -> Model:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        proto = onnx.load_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as e:
        raise ModelFileError(f"{where}: neither an lstm-engine model nor a readable ONNX file ({e})") from None
    if not proto.graph.node and not proto.graph.input:
        raise ModelFileError(f"{where}: neither an lstm-engine model nor an ONNX model (empty or unrecognised content)")
    return _Importer(proto, where, progress).run()


def onnx_to_model(src, progress: bool = False) -> Model:
    """An ONNX file path, bytes, or ModelProto -> validated Model (not written anywhere)."""
    import onnx

    if isinstance(src, onnx.ModelProto):
        return _Importer(src, "<ModelProto>", progress).run()
    if isinstance(src, (bytes, bytearray)):
        return onnx_bytes_to_model(bytes(src), "<bytes>", progress)
    path = os.fspath(src)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ConversionError(f"ONNX file not found: {path}") from None
    except OSError as e:
        raise ConversionError(f"cannot read {path}: {e.strerror}") from None
    model = onnx_bytes_to_model(data, path, progress)
    model.origin["file"] = os.path.basename(path)
    return model


class _Importer:
    def __init__(self, proto, where, progress):
        self.proto = proto
        self.where = where
        self.progress = progress
        self.graph = proto.graph
        self.opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
        self.S = Shapes()
        self.consts: dict = {}       # name -> np.ndarray
        self.symvals: dict = {}      # name -> (list of dims, is_scalar): integer tensors computed from shapes
        self.shapes: dict = {}       # name -> list of dims, for run-time values
        self.dtypes: dict = {}       # name -> dtype string, for run-time values
        self.nodes: list = []
        self.tensors: dict = {}
        self.recurrent: list = []    # (node, X value name, layout)

    # ------------------------------------------------------------------ driver
    def run(self) -> Model:
        if self.opset is None:
            raise ConversionError(f"{self.where}: the model imports no default-domain opset")
        if self.opset < MIN_OPSET:
            raise UnsupportedModelError(f"{self.where}: opset {self.opset} is older than the oldest supported "
                                        f"({MIN_OPSET})")
        for init in self.graph.initializer:
            self.consts[init.name] = self._to_array(init)
        for init in getattr(self.graph, "sparse_initializer", []):
            raise UnsupportedModelError(f"{self.where}: sparse initializer {init.values.name!r} is not supported")
        inputs = []
        for vi in self.graph.input:
            if vi.name in self.consts:
                continue  # IR < 4 lists initializers among the inputs
            inputs.append(self._graph_input(vi))
        self.input_names = [s.name for s in inputs]
        floats = {s.dtype for s in inputs if s.dtype.startswith("float")}
        self.float_dtype = floats.pop() if len(floats) == 1 else None
        nodes = list(self.graph.node)
        from engine._progress import progress_iter
        for node in progress_iter(nodes, "converting", enabled=self.progress and len(nodes) > 1):
            self._node(node)
        outputs = []
        for vi in self.graph.output:
            if vi.name in self.consts or vi.name in self.symvals:
                raise UnsupportedModelError(f"graph output {vi.name!r} is a constant: nothing to run")
            if vi.name not in self.shapes:
                raise ConversionError(f"graph output {vi.name!r} is not produced by any node")
            outputs.append(vi.name)
        specs_in = [TensorSpec(s.name, [self._export_dim(d) for d in self.shapes[s.name]], s.dtype, s.optional)
                    for s in inputs]
        specs_out = [TensorSpec(n, [self._export_dim(d) for d in self.shapes[n]], self.dtypes[n]) for n in outputs]
        float_dtypes = {s.dtype for s in specs_in if s.dtype.startswith("float")}
        if len(float_dtypes) > 1:
            raise UnsupportedModelError("the model mixes float32 and float64 inputs")
        dtype = float_dtypes.pop() if float_dtypes else "float32"
        model = Model(inputs=specs_in, outputs=specs_out, nodes=self.nodes, tensors=self.tensors, dtype=dtype,
                      origin={"source": "onnx", "producer": f"{self.proto.producer_name} {self.proto.producer_version}".strip(),
                              "opset": self.opset, "ir_version": self.proto.ir_version},
                      stream=self._stream_info(specs_in, specs_out))
        return model.validate()

    # ------------------------------------------------------------------ helpers
    def _to_array(self, tensor):
        from onnx import numpy_helper
        try:
            return numpy_helper.to_array(tensor)
        except Exception as e:
            raise ConversionError(f"tensor {tensor.name!r} cannot be read: {e}") from None

    def _graph_input(self, vi):
        t = vi.type
        if not t.HasField("tensor_type"):
            raise UnsupportedModelError(f"graph input {vi.name!r} is not a tensor")
        elem = t.tensor_type.elem_type
        if elem not in _ELEM:
            import onnx
            raise UnsupportedModelError(f"graph input {vi.name!r} has element type "
                                        f"{onnx.TensorProto.DataType.Name(elem)}; supported: float, double, int32, int64")
        if not t.tensor_type.HasField("shape"):
            raise UnsupportedModelError(f"graph input {vi.name!r} has no shape (rank unknown)")
        dims = []
        for k, d in enumerate(t.tensor_type.shape.dim):
            if d.HasField("dim_value"):
                dims.append(self.S.new(f"{vi.name}_{k}_", soft_value=d.dim_value))
            elif d.dim_param:
                name = d.dim_param
                dims.append(Dim(1, (name,)) if name in self.S.names else self.S.new(name))
            else:
                dims.append(self.S.new(f"{vi.name}_{k}_"))
        self.shapes[vi.name] = dims
        self.dtypes[vi.name] = _ELEM[elem]
        return TensorSpec(vi.name, dims, _ELEM[elem], optional=False)

    def _export_dim(self, d):
        d = self.S.norm(d)
        if isinstance(d, int):
            return d
        return str(d)

    def _attrs(self, node):
        from onnx import helper
        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    def _const_input(self, node, i, what):
        name = node.input[i] if i < len(node.input) else ""
        if not name:
            return None
        if name in self.consts:
            return self.consts[name]
        raise UnsupportedModelError(f"node {node.name!r} ({node.op_type}): {what} must be a constant (an initializer "
                                    f"or computed from initializers only), but {name!r} is computed at run time")

    def _err(self, node, msg):
        return UnsupportedModelError(f"node {node.name or '<unnamed>'!r} ({node.op_type}): {msg}")

    # ------------------------------------------------------------------ nodes
    def _node(self, node):
        op = node.op_type
        if node.domain not in ("", "ai.onnx"):
            raise self._err(node, f"custom domain {node.domain!r} is not supported")
        ins = list(node.input)
        if op == "Constant":
            from onnx import helper
            attrs = self._attrs(node)
            if "value" in attrs:
                self.consts[node.output[0]] = self._to_array(node.attribute[0].t)
                return
            for key in ("value_float", "value_int"):
                if key in attrs:
                    self.consts[node.output[0]] = np.array(attrs[key],
                                                           dtype=np.float32 if key == "value_float" else np.int64)
                    return
            for key in ("value_floats", "value_ints"):
                if key in attrs:
                    self.consts[node.output[0]] = np.array(attrs[key],
                                                           dtype=np.float32 if key == "value_floats" else np.int64)
                    return
            del helper
            raise self._err(node, "unsupported Constant attribute (only dense tensors and numbers)")
        if op not in RECURRENT and all((not i) or i in self.consts for i in ins) and ins:
            self._fold(node)
            return
        if op in ("Shape", "Size") or (any(i in self.symvals for i in ins if i)
                                       and all(i in self.symvals or i in self.consts for i in ins if i)):
            self._symbolic(node)
            return
        handler = getattr(self, f"_op_{op}", None)
        if handler is None:
            raise self._err(node, f"op {op!r} is not supported on run-time values (supported: {', '.join(DATA_OPS)}; "
                                  f"anything computed only from weights or static shapes is folded at conversion)")
        handler(node, ins, self._attrs(node))

    def _fold(self, node):
        """Evaluate a node whose inputs are all constants with onnx's reference implementation."""
        import onnx
        from onnx import helper
        from onnx.reference import ReferenceEvaluator

        ins = [i for i in node.input if i]
        inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(self.consts[n].dtype),
                                                list(self.consts[n].shape)) for n in ins]
        outputs = [helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None) for n in node.output if n]
        g = helper.make_graph([node], "fold", inputs, outputs)
        m = helper.make_model(g, opset_imports=list(self.proto.opset_import), ir_version=self.proto.ir_version)
        try:
            results = ReferenceEvaluator(m).run(None, {n: self.consts[n] for n in ins})
        except Exception as e:
            raise self._err(node, f"cannot fold this node at conversion time: {e}") from None
        for name, value in zip([n for n in node.output if n], results):
            self.consts[name] = np.asarray(value)

    # ------------------------------------------------------------------ symbolic shape values
    def _sym(self, name, node):
        if name in self.symvals:
            return self.symvals[name]
        if name in self.consts:
            c = self.consts[name]
            if c.dtype.kind not in "iu" or c.ndim > 1:
                raise self._err(node, f"mixes a shape computation with non-integer constant {name!r}")
            return [int(v) for v in c.reshape(-1)], c.ndim == 0
        raise self._err(node, f"mixes a shape computation with the run-time value {name!r}")

    def _set_sym(self, name, dims, scalar=False):
        dims = [self.S.norm(d) for d in dims]
        if all(isinstance(d, int) for d in dims):
            arr = np.array(dims, dtype=np.int64)
            self.consts[name] = arr.reshape(()) if scalar else arr
        else:
            self.symvals[name] = (dims, scalar)

    def _symbolic(self, node):
        op = node.op_type
        a = self._attrs(node)
        ins = list(node.input)
        out = node.output[0]
        if op not in SHAPE_OPS:
            raise self._err(node, f"op {op!r} on a shape value is not supported (supported: {', '.join(SHAPE_OPS)})")
        if op == "Expand" and ins[0] in self.consts and self.consts[ins[0]].dtype.kind == "f":
            # a constant broadcast to a run-time shape: exporters build zero initial states this way
            fill = self.consts[ins[0]]
            target, _ = self._sym(ins[1], node)
            target = [self.S.norm(d) for d in target]
            if fill.ndim > len(target):
                raise self._err(node, f"cannot expand a rank-{fill.ndim} tensor to rank {len(target)}")
            out = list(target)
            for k, d in enumerate(fill.shape):       # numpy broadcasting, right-aligned
                t = len(target) - fill.ndim + k
                if d != 1:
                    if isinstance(target[t], int) and target[t] not in (1, d):
                        raise self._err(node, f"shape {fill.shape} does not broadcast to the target")
                    if target[t] != 1:
                        self.S.unify(target[t], d, f"node {node.name!r} (Expand)")
                    out[t] = d
            if fill.size == 0 or not np.all(fill == fill.reshape(-1)[0]):
                raise self._err(node, "only a constant of one repeated value expanded to a run-time shape is "
                                      "supported")
            self._constant_of_shape(node, out, {}, value=fill.reshape(-1)[0])
            return
        if op == "Shape":
            dims = self._shape_of(ins[0], node)
            start, end = a.get("start", 0), a.get("end", None)
            self._set_sym(out, dims[slice(start, end)])
            return
        if op == "Size":
            self._set_sym(out, [self.S.prod(self._shape_of(ins[0], node))], scalar=True)
            return
        vals, scalar = self._sym(ins[0], node)
        if op == "ConstantOfShape":
            self._constant_of_shape(node, vals, a)
            return
        if op in ("Cast", "Identity"):
            self._set_sym(out, vals, scalar)
        elif op == "Gather":
            idx = self._const_input(node, 1, "Gather indices")
            if a.get("axis", 0) != 0:
                raise self._err(node, "Gather on a shape value must use axis 0")
            picked = [vals[int(i)] for i in np.asarray(idx).reshape(-1)]
            self._set_sym(out, picked, scalar=np.asarray(idx).ndim == 0)
        elif op == "Slice":
            starts, ends, axes, steps = self._slice_params(node, ins, a)
            if axes not in (None, [0]):
                raise self._err(node, "Slice on a shape value must use axis 0")
            self._set_sym(out, vals[slice(starts[0], _clamp_end(ends[0]), steps[0] if steps else 1)])
        elif op == "Concat":
            dims = []
            for i in ins:
                dims += self._sym(i, node)[0]
            self._set_sym(out, dims)
        elif op in ("Unsqueeze", "Reshape"):
            self._set_sym(out, vals, scalar=False)
        elif op == "Squeeze":
            self._set_sym(out, vals, scalar=True)
        elif op == "Mul":
            other, s2 = self._sym(ins[1], node)
            n = max(len(vals), len(other))
            vals = vals * n if len(vals) == 1 else vals
            other = other * n if len(other) == 1 else other
            self._set_sym(out, [self.S.mul(x, y) for x, y in zip(vals, other)], scalar and s2)

    def _constant_of_shape(self, node, dims, a, value=None):
        """A run-time tensor of one value whose dimensions come from graph inputs' dimensions."""
        if value is None:
            value = self._to_array(node.attribute[0].t) if a.get("value") is not None else np.zeros(1, np.float32)
        value = np.asarray(value)
        if value.dtype.kind != "f":
            raise self._err(node, f"only float fill values are supported on run-time shapes, got {value.dtype}")
        sources, shape = [], []
        for d in dims:
            d = self.S.norm(d)
            if isinstance(d, int):
                shape.append(d)
                continue
            sym = self.S.single_sym(d)
            src = self._dim_source(sym)
            if src is None:
                raise self._err(node, f"the dimension {d} is not a dimension of a graph input")
            if src[0] not in sources:
                sources.append(src[0])
            shape.append([sources.index(src[0]), src[1]])
        dtype = self.float_dtype or "float32"
        self._emit("ConstantOfShape", node, sources, [node.output[0]],
                   {"shape": shape, "value": float(value.reshape(-1)[0])}, [list(dims)], [dtype])

    def _dim_source(self, sym):
        if sym is None:
            return None
        for name in self.input_names:
            for axis, d in enumerate(self.shapes[name]):
                if self.S.single_sym(d) == sym:
                    return name, axis
        return None

    def _shape_of(self, name, node):
        if name in self.shapes:
            return self.shapes[name]
        if name in self.consts:
            return list(self.consts[name].shape)
        raise self._err(node, f"the shape of {name!r} is unknown")

    # ------------------------------------------------------------------ run-time ops
    def _value(self, name, node):
        """A run-time value's name; constants used as data become model tensors."""
        if name in self.shapes:
            return name
        if name in self.consts:
            c = self.consts[name]
            if c.dtype.kind != "f":
                raise self._err(node, f"integer constant {name!r} used as data is not supported")
            self.tensors.setdefault(name, np.ascontiguousarray(c))
            self.shapes[name] = list(c.shape)
            self.dtypes[name] = str(c.dtype)
            return name
        if name in self.symvals:
            raise self._err(node, f"shape value {name!r} used as data is not supported")
        raise self._err(node, f"input {name!r} is not produced by any earlier node")

    def _emit(self, op, node, inputs, outputs, attrs, out_shapes, out_dtypes):
        name = node.name or f"{op}_{len(self.nodes)}"
        self.nodes.append(Node(op, name, inputs, outputs, attrs))
        for o, s, d in zip(outputs, out_shapes, out_dtypes):
            if o:
                self.shapes[o] = s
                self.dtypes[o] = d

    def _op_Identity(self, node, ins, a):
        x = self._value(ins[0], node)
        self._emit("Identity", node, [x], [node.output[0]], {}, [self.shapes[x]], [self.dtypes[x]])

    def _op_Dropout(self, node, ins, a):
        if len(node.output) > 1 and node.output[1]:
            raise self._err(node, "the Dropout mask output is not supported (inference only)")
        if len(ins) > 2 and ins[2]:
            training = self._const_input(node, 2, "training_mode")
            if training is not None and bool(np.asarray(training)):
                raise self._err(node, "training_mode=True is not supported (inference only)")
        self._op_Identity(node, ins, a)

    def _op_Cast(self, node, ins, a):
        x = self._value(ins[0], node)
        to = _ELEM.get(a.get("to"))
        if to is None:
            raise self._err(node, f"Cast to element type {a.get('to')} is not supported (float, double, int32, int64)")
        src = self.dtypes[x]
        if to == src:
            self._op_Identity(node, ins, a)
            return
        if to.startswith("float") and src.startswith("float"):
            raise self._err(node, f"Cast from {src} to {to}: a model computes in one float type")
        target = "float" if to.startswith("float") else to
        out_dtype = (self.float_dtype or "float32") if target == "float" else to
        self._emit("Cast", node, [x], [node.output[0]], {"to": target}, [self.shapes[x]], [out_dtype])

    def _op_Transpose(self, node, ins, a):
        x = self._value(ins[0], node)
        shape = self.shapes[x]
        perm = list(a.get("perm", list(range(len(shape)))[::-1]))
        if sorted(perm) != list(range(len(shape))):
            raise self._err(node, f"perm {perm} does not fit a rank-{len(shape)} input")
        self._emit("Transpose", node, [x], [node.output[0]], {"perm": perm}, [[shape[p] for p in perm]],
                   [self.dtypes[x]])

    def _op_Reshape(self, node, ins, a):
        x = self._value(ins[0], node)
        shape_in = self.shapes[x]
        allowzero = a.get("allowzero", 0)
        if ins[1] in self.consts:
            target = [int(v) for v in self.consts[ins[1]].reshape(-1)]
            literal = True
        elif ins[1] in self.symvals:
            target = list(self.symvals[ins[1]][0])
            literal = False
        else:
            raise self._err(node, "the target shape must be a constant or computed from shapes")
        spec, out = self._reshape_spec(node, shape_in, target, literal, allowzero)
        self._emit("Reshape", node, [x], [node.output[0]], {"shape": spec}, [out], [self.dtypes[x]])

    def _reshape_spec(self, node, shape_in, target, literal, allowzero):
        S = self.S
        spec, out = [], []
        for k, t in enumerate(target):
            t = S.norm(t)
            if literal and t == 0 and not allowzero:
                if k >= len(shape_in):
                    raise self._err(node, f"target copies dimension {k} of a rank-{len(shape_in)} input")
                spec.append(0)
                out.append(shape_in[k])
            elif literal and t == -1:
                spec.append(-1)
                out.append(None)
            elif isinstance(t, int):
                if t == 0:
                    raise self._err(node, "allowzero=1 with a zero dimension (an empty tensor) is not supported")
                # a literal equal to the declared size at the same position: keep that dimension free
                if k < len(shape_in) and (S.equal(shape_in[k], t) or self._soft_equal(shape_in[k], t)):
                    spec.append(0)
                    out.append(shape_in[k])
                else:
                    spec.append(t)
                    out.append(t)
            elif k < len(shape_in) and S.equal(shape_in[k], t):
                spec.append(0)
                out.append(shape_in[k])
            else:
                spec.append(-1)
                out.append(t)
        if spec.count(-1) > 1:
            for d in shape_in:
                S.concretize(d)
            for t in target:
                S.concretize(t)
            if any(isinstance(S.norm(t), Dim) for t in target if not (literal and t in (0, -1))) or \
                    sum(1 for t in target if literal and t == -1) > 1:
                raise self._err(node, f"cannot express the target shape {[str(t) for t in target]} statically")
            return self._reshape_spec(node, shape_in, [S.norm(t) for t in target], True, allowzero)
        if -1 in spec:
            i = spec.index(-1)
            known = S.prod([d for j, d in enumerate(out) if j != i])
            total = S.prod(shape_in)
            inferred = S.div(total, known)
            if out[i] is None:
                out[i] = inferred if inferred is not None else S.new("r")
            elif inferred is not None:
                S.unify(out[i], inferred, f"node {node.name!r} (Reshape)")
        else:
            S.unify(S.prod(shape_in), S.prod(out), f"node {node.name!r} (Reshape)")
        return spec, out

    def _soft_equal(self, d, value):
        s = self.S.single_sym(d)
        return s is not None and self.S.soft.get(s) == value

    def _axes(self, node, ins, a, rank, what):
        if len(ins) > 1 and ins[1]:
            axes = self._const_input(node, 1, f"{what} axes")
            axes = [int(v) for v in np.asarray(axes).reshape(-1)]
        else:
            axes = a.get("axes")
            axes = None if axes is None else [int(v) for v in axes]
        if axes is None:
            return None
        out = []
        for ax in axes:
            if not -rank <= ax < rank:
                raise self._err(node, f"axis {ax} out of range for rank {rank}")
            out.append(ax % rank)
        return out

    def _op_Squeeze(self, node, ins, a):
        x = self._value(ins[0], node)
        shape = self.shapes[x]
        axes = self._axes(node, ins, a, len(shape), "Squeeze")
        if axes is None:
            axes = [k for k, d in enumerate(shape) if self.S.norm(d) == 1 or self._soft_equal(d, 1)]
        for k in axes:
            self.S.unify(shape[k], 1, f"node {node.name!r} (Squeeze axis {k})")
        out = [d for k, d in enumerate(shape) if k not in axes]
        self._emit("Squeeze", node, [x], [node.output[0]], {"axes": sorted(axes)}, [out], [self.dtypes[x]])

    def _op_Unsqueeze(self, node, ins, a):
        x = self._value(ins[0], node)
        shape = self.shapes[x]
        n_axes = len(self._const_input(node, 1, "Unsqueeze axes").reshape(-1)) if len(ins) > 1 and ins[1] \
            else len(a.get("axes", []))
        axes = self._axes(node, ins, a, len(shape) + n_axes, "Unsqueeze")
        if not axes:
            raise self._err(node, "Unsqueeze needs axes")
        out = list(shape)
        for k in sorted(axes):
            out.insert(k, 1)
        self._emit("Unsqueeze", node, [x], [node.output[0]], {"axes": sorted(axes)}, [out], [self.dtypes[x]])

    def _op_Concat(self, node, ins, a):
        xs = [self._value(i, node) for i in ins if i]
        rank = len(self.shapes[xs[0]])
        axis = a.get("axis")
        if axis is None or not -rank <= axis < rank:
            raise self._err(node, f"axis {axis} out of range for rank {rank}")
        axis %= rank
        out = list(self.shapes[xs[0]])
        total = self.S.norm(out[axis])
        for x in xs[1:]:
            s = self.shapes[x]
            if len(s) != rank:
                raise self._err(node, "inputs have different ranks")
            for k in range(rank):
                if k != axis:
                    self.S.unify(out[k], s[k], f"node {node.name!r} (Concat dimension {k})")
            d = self.S.norm(s[axis])
            total = total + d if isinstance(total, int) and isinstance(d, int) else None
            if total is None:
                break
        out[axis] = total if total is not None else self.S.new("cat")
        self._emit("Concat", node, xs, [node.output[0]], {"axis": axis}, [out], [self.dtypes[xs[0]]])

    def _slice_params(self, node, ins, a):
        if self.opset < 10:
            starts, ends = list(a["starts"]), list(a["ends"])
            axes = list(a["axes"]) if "axes" in a else None
            steps = None
        else:
            starts = [int(v) for v in self._const_input(node, 1, "Slice starts").reshape(-1)]
            ends = [int(v) for v in self._const_input(node, 2, "Slice ends").reshape(-1)]
            ax = self._const_input(node, 3, "Slice axes") if len(ins) > 3 else None
            st = self._const_input(node, 4, "Slice steps") if len(ins) > 4 else None
            axes = None if ax is None else [int(v) for v in ax.reshape(-1)]
            steps = None if st is None else [int(v) for v in st.reshape(-1)]
        return starts, ends, axes, steps

    def _op_Slice(self, node, ins, a):
        x = self._value(ins[0], node)
        shape = self.shapes[x]
        rank = len(shape)
        starts, ends, axes, steps = self._slice_params(node, ins, a)
        axes = list(range(len(starts))) if axes is None else axes
        steps = [1] * len(starts) if steps is None else steps
        slices = []
        out = list(shape)
        for ax, st, en, sp in zip(axes, starts, ends, steps):
            if not -rank <= ax < rank:
                raise self._err(node, f"axis {ax} out of range for rank {rank}")
            if sp == 0:
                raise self._err(node, "step 0 is invalid")
            ax %= rank
            st_c = None if (sp > 0 and st <= -INT64_BIG) or (sp < 0 and st >= INT64_BIG) else st
            en_c = None if abs(en) >= INT64_BIG else en
            slices.append([ax, st_c, en_c, sp])
            full = st_c in (None, 0) and en_c is None and sp == 1
            if not full:
                self.S.concretize(shape[ax])   # a partial slice depends on the declared size
            d = self.S.norm(shape[ax])
            if isinstance(d, int):
                out[ax] = len(range(*slice(st_c, en_c, sp).indices(d)))
            elif full:
                out[ax] = d
            else:
                out[ax] = self.S.new("slice")
        self._emit("Slice", node, [x], [node.output[0]], {"slices": slices}, [out], [self.dtypes[x]])

    def _op_LSTM(self, node, ins, a):
        self._recurrent("LSTM", node, ins, a)

    def _op_GRU(self, node, ins, a):
        self._recurrent("GRU", node, ins, a)

    def _op_RNN(self, node, ins, a):
        self._recurrent("RNN", node, ins, a)

    def _recurrent(self, op, node, ins, a):
        """LSTM, GRU or RNN -> the canonical node (engine/ops/lstm.py, engine/ops/gru_rnn.py): every attribute made
        explicit, weights stored as tensors of the model's dtype, initial states and sequence_lens checked."""
        G, default_acts, extra_attrs = RECURRENT[op]
        lstm = op == "LSTM"
        n_in = 8 if lstm else 6
        ins = ins + [""] * (n_in - len(ins))
        if len(ins) > n_in:
            raise self._err(node, f"too many inputs ({len(ins)}; {op} takes at most {n_in})")
        X = self._value(ins[0], node)
        W = self._const_input(node, 1, "W")
        R = self._const_input(node, 2, "R")
        if W is None or R is None:
            raise self._err(node, "W and R are required")
        direction = a.get("direction", b"forward")
        direction = direction.decode() if isinstance(direction, bytes) else direction
        if direction not in DIRECTIONS:
            raise self._err(node, f"direction {direction!r} is not one of forward, reverse, bidirectional")
        D = len(DIRECTIONS[direction])
        if (W.ndim != 3 or R.ndim != 3 or W.shape[0] != D or R.shape[0] != D or W.shape[1] % G
                or W.shape[1] != R.shape[1]):
            raise self._err(node, f"W {W.shape} and R {R.shape} do not fit an {op} with {D} direction(s)")
        H = a.get("hidden_size", R.shape[2])
        if W.shape[1] != G * H or R.shape[2] != H:
            raise self._err(node, f"hidden_size {H} does not match W {W.shape} / R {R.shape}")
        layout = a.get("layout", 0)
        if layout not in (0, 1):
            raise self._err(node, f"layout {layout} is not 0 or 1")
        n_acts = len(default_acts)
        names = [n.decode() if isinstance(n, bytes) else n for n in a.get("activations", list(default_acts) * D)]
        if len(names) != n_acts * D:
            raise self._err(node, f"expected {n_acts * D} activations for direction {direction!r}, got {len(names)}")
        try:
            acts = normalize_activations(names, a.get("activation_alpha"), a.get("activation_beta"))
        except ValueError as e:
            raise self._err(node, str(e)) from None
        clip = a.get("clip")
        if clip is not None and not clip > 0:
            raise self._err(node, f"clip must be positive, got {clip}")
        known = {"direction", "hidden_size", "layout", "activations", "activation_alpha", "activation_beta",
                 "clip"} | set(extra_attrs)
        unknown = set(a) - known
        if unknown:
            raise self._err(node, f"unsupported attribute(s) {sorted(unknown)} (an {op} supports {sorted(known)})")
        extra = {}
        for key in extra_attrs:
            value = int(a.get(key, 0))
            if value not in (0, 1):
                raise self._err(node, f"{key} must be 0 or 1, got {value}")
            extra[key] = value
        dtype = self.dtypes[X]
        base = (node.name or f"{op.lower()}{len(self.nodes)}").replace("/", "_")
        tensors = {}
        weights = [("W", 1, W), ("R", 2, R), ("B", 3, self._const_input(node, 3, "B"))]
        if lstm:
            weights.append(("P", 7, self._const_input(node, 7, "P")))
        for key, idx, arr in weights:
            if arr is None:
                continue
            name = f"{base}.{key}"
            while name in self.tensors or name in self.shapes:
                name += "_"
            self.tensors[name] = np.ascontiguousarray(arr.astype(dtype))
            tensors[idx] = name
        Bt = self.tensors.get(tensors.get(3, ""))
        if Bt is not None and Bt.shape != (D, 2 * G * H):
            raise self._err(node, f"B has shape {Bt.shape}, expected {(D, 2 * G * H)}")
        Pt = self.tensors.get(tensors.get(7, ""))
        if Pt is not None and Pt.shape != (D, 3 * H):
            raise self._err(node, f"P has shape {Pt.shape}, expected {(D, 3 * H)}")
        xs = self.shapes[X]
        if len(xs) != 3:
            raise self._err(node, f"X must have rank 3, got rank {len(xs)}")
        T, Bn = (xs[0], xs[1]) if layout == 0 else (xs[1], xs[0])
        what = f"node {node.name!r} ({op})"
        self.S.unify(xs[2], W.shape[2], what + " input size")
        seq = ""
        if ins[4]:
            if ins[4] in self.consts:
                c = self.consts[ins[4]]
                self.tensors.setdefault(ins[4], np.ascontiguousarray(c.astype(np.int32)))
                self.shapes[ins[4]] = list(c.shape)
                self.dtypes[ins[4]] = "int32"
            elif self.dtypes.get(ins[4]) not in ("int32", "int64"):
                raise self._err(node, "sequence_lens must be an int32 tensor")
            seq = ins[4]
            self.S.unify(self.shapes[seq][0] if self.shapes[seq] else 1, Bn, what + " sequence_lens")
        state = []
        for i in ((5, 6) if lstm else (5,)):
            if ins[i]:
                v = self._value(ins[i], node)
                s = self.shapes[v]
                want = [D, Bn, H] if layout == 0 else [Bn, D, H]
                if len(s) != 3:
                    raise self._err(node, "initial state must have rank 3")
                for k in range(3):
                    self.S.unify(s[k], want[k], what + (" initial_h" if i == 5 else " initial_c"))
                state.append(v)
            else:
                state.append("")
        attrs = {"hidden_size": H, "direction": direction, "layout": layout,
                 "activations": [list(x) for x in acts], "clip": None if clip is None else float(clip), **extra}
        inputs = [X, tensors[1], tensors[2], tensors.get(3, ""), seq, *state]
        if lstm:
            attrs["proj_size"] = 0
            inputs += [tensors.get(7, ""), ""]
        while inputs and not inputs[-1]:
            inputs.pop()
        n_out = 3 if lstm else 2
        if len(node.output) > n_out:
            raise self._err(node, f"too many outputs ({len(node.output)}; {op} has at most {n_out})")
        outs = list(node.output) + [""] * (n_out - len(node.output))
        if layout == 0:
            shapes = [[T, D, Bn, H], [D, Bn, H], [D, Bn, H]][:n_out]
        else:
            shapes = [[Bn, T, D, H], [Bn, D, H], [Bn, D, H]][:n_out]
        self._emit(op, node, inputs, outs, attrs, shapes, [dtype] * n_out)
        self.recurrent.append((self.nodes[-1], X, layout))

    # ------------------------------------------------------------------ whole-model ops (engine/ops/layers.py)
    def _data(self, name, node, allow_int=False):
        """Like _value, but a rank-0 constant becomes a (1,) tensor (a float32 array plus a float64 scalar would
        compute in float64) and integer constants may be allowed."""
        if name in self.consts and name not in self.shapes:
            c = self.consts[name]
            if c.dtype.kind not in ("f" + ("iu" if allow_int else "")):
                raise self._err(node, f"constant {name!r} of type {c.dtype} used as data is not supported")
            if c.dtype.kind == "f" and self.float_dtype:
                c = c.astype(self.float_dtype)
            c = np.ascontiguousarray(c.reshape(1) if c.ndim == 0 else c)
            if c.dtype.kind in "iu":
                c = c.astype(np.int64)
            key = name
            while key in self.tensors and self.tensors[key].shape != c.shape:
                key += "_"
            self.tensors.setdefault(key, c)
            self.shapes[key] = list(c.shape)
            self.dtypes[key] = str(c.dtype)
            return key
        return self._value(name, node)

    def _broadcast(self, node, shapes):
        n = max(len(s) for s in shapes)
        out = []
        for k in range(n):
            dims = [s[k - n + len(s)] for s in shapes if k - n + len(s) >= 0]
            for d in dims:   # a size fixed at 1 by the exporter broadcasts: it is a 1, not a run-time dimension
                sym = self.S.single_sym(self.S.norm(d))
                if sym is not None and self.S.soft.get(sym) == 1:
                    self.S.concretize(d)
            real = [d for d in dims if self.S.norm(d) != 1]
            if not real:
                out.append(1)
                continue
            for d in real[1:]:
                self.S.unify(real[0], d, f"node {node.name!r} ({node.op_type} broadcasting, dimension {k})")
            out.append(real[0])
        return out

    def _op_binary(self, node, ins, a):
        if len(ins) != 2:
            raise self._err(node, "takes two inputs")
        xs = [self._data(i, node, allow_int=True) for i in ins]
        kinds = {self.dtypes[x][:3] for x in xs}
        if len(kinds) > 1:
            raise self._err(node, f"mixes {self.dtypes[xs[0]]} and {self.dtypes[xs[1]]} operands")
        out = self._broadcast(node, [self.shapes[x] for x in xs])
        self._emit(node.op_type, node, xs, [node.output[0]], {}, [out], [self.dtypes[xs[0]]])

    _op_Add = _op_Sub = _op_Mul = _op_Div = _op_binary

    def _op_unary(self, node, ins, a):
        x = self._data(ins[0], node)
        if not self.dtypes[x].startswith("float"):
            raise self._err(node, f"needs a float input, got {self.dtypes[x]}")
        self._emit(node.op_type, node, [x], [node.output[0]], {}, [self.shapes[x]], [self.dtypes[x]])

    _op_Relu = _op_Tanh = _op_Sigmoid = _op_Exp = _op_Neg = _op_Sqrt = _op_Abs = _op_unary

    def _matmul_shape(self, node, sa, sb):
        if len(sb) == 1:
            self.S.unify(sa[-1], sb[0], f"node {node.name!r} (MatMul inner dimension)")
            return list(sa[:-1])
        self.S.unify(sa[-1], sb[-2], f"node {node.name!r} (MatMul inner dimension)")
        if len(sb) == 2:
            return list(sa[:-1]) + [sb[1]]
        if len(sa) != len(sb):
            raise self._err(node, f"batched MatMul of ranks {len(sa)} and {len(sb)} is not supported")
        for k in range(len(sa) - 2):
            self.S.unify(sa[k], sb[k], f"node {node.name!r} (MatMul batch dimension {k})")
        return list(sa[:-1]) + [sb[-1]]

    def _op_MatMul(self, node, ins, a):
        xa, xb = self._data(ins[0], node), self._data(ins[1], node)
        sa, sb = self.shapes[xa], self.shapes[xb]
        if len(sa) < 1 or len(sb) < 1 or (len(sa) == 1 and len(sb) != 2):
            raise self._err(node, f"MatMul of ranks {len(sa)} and {len(sb)} is not supported")
        out = self._matmul_shape(node, sa, sb)
        self._emit("MatMul", node, [xa, xb], [node.output[0]], {}, [out], [self.dtypes[xa]])

    def _op_Gemm(self, node, ins, a):
        """Y = alpha * A' B' + beta * C with a constant B: MatMul by the pre-transposed, pre-scaled B, then Add."""
        A = self._value(ins[0], node)
        B = self._const_input(node, 1, "B")
        if B is None or B.ndim != 2:
            raise self._err(node, "B must be a constant matrix")
        alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
        Bm = (B.T if a.get("transB", 0) else B) * alpha
        if len(self.shapes[A]) != 2:
            raise self._err(node, f"A must be a matrix, got rank {len(self.shapes[A])}")
        base = (node.name or f"gemm{len(self.nodes)}").replace("/", "_")
        if a.get("transA", 0):
            sa = self.shapes[A]
            self._emit("Transpose", _Named(base + ".transA"), [A], [base + ".At"], {"perm": [1, 0]},
                       [[sa[1], sa[0]]], [self.dtypes[A]])
            A = base + ".At"
        key = base + ".B"
        self.tensors[key] = np.ascontiguousarray(Bm.astype(self.dtypes[A]))
        self.shapes[key], self.dtypes[key] = list(Bm.shape), self.dtypes[A]
        out = self._matmul_shape(node, self.shapes[A], self.shapes[key])
        C = self._const_input(node, 2, "C") if len(ins) > 2 and ins[2] else None
        y = node.output[0]
        if C is None or beta == 0.0:
            self._emit("MatMul", node, [A, key], [y], {}, [out], [self.dtypes[A]])
            return
        self._emit("MatMul", _Named(base + ".matmul"), [A, key], [base + ".AB"], {}, [out], [self.dtypes[A]])
        ckey = base + ".C"
        c = np.ascontiguousarray((np.asarray(C) * beta).astype(self.dtypes[A]))
        c = c.reshape(1) if c.ndim == 0 else c
        self.tensors[ckey] = c
        self.shapes[ckey], self.dtypes[ckey] = list(c.shape), self.dtypes[A]
        self._emit("Add", node, [base + ".AB", ckey], [y], {}, [self._broadcast(node, [out, list(c.shape)])],
                   [self.dtypes[A]])

    def _op_Softmax(self, node, ins, a):
        x = self._value(ins[0], node)
        rank = len(self.shapes[x])
        axis = a.get("axis", -1 if self.opset >= 13 else 1)
        if not -rank <= axis < rank:
            raise self._err(node, f"axis {axis} out of range for rank {rank}")
        axis %= rank
        if self.opset < 13 and axis != rank - 1:
            raise self._err(node, f"{node.op_type} before opset 13 flattens the axes from {axis} on; only the last "
                                  f"axis is supported (re-export with opset >= 13)")
        self._emit(node.op_type, node, [x], [node.output[0]], {"axis": axis}, [self.shapes[x]], [self.dtypes[x]])

    _op_LogSoftmax = _op_Softmax

    def _op_ReduceMean(self, node, ins, a):
        x = self._value(ins[0], node)
        shape = self.shapes[x]
        rank = len(shape)
        if len(ins) > 1 and ins[1]:
            axes = [int(v) for v in np.asarray(self._const_input(node, 1, "axes")).reshape(-1)]
        else:
            axes = list(a.get("axes", []))
        if not axes:
            if a.get("noop_with_empty_axes", 0):
                self._op_Identity(node, ins[:1], a)
                return
            axes = list(range(rank))
        if any(not -rank <= ax < rank for ax in axes):
            raise self._err(node, f"axes {axes} out of range for rank {rank}")
        axes = sorted({ax % rank for ax in axes})
        keep = int(a.get("keepdims", 1))
        out = [(1 if k in axes else d) for k, d in enumerate(shape)] if keep else \
            [d for k, d in enumerate(shape) if k not in axes]
        self._emit("ReduceMean", node, [x], [node.output[0]], {"axes": axes, "keepdims": keep}, [out],
                   [self.dtypes[x]])

    def _op_Gather(self, node, ins, a):
        data = self._data(ins[0], node)
        shape = self.shapes[data]
        rank = len(shape)
        axis = a.get("axis", 0)
        if not -rank <= axis < rank:
            raise self._err(node, f"axis {axis} out of range for rank {rank}")
        axis %= rank
        attrs = {"axis": axis}
        if ins[1] in self.consts:
            idx = np.asarray(self.consts[ins[1]])
            if idx.dtype.kind not in "iu":
                raise self._err(node, "indices must be integers")
            n = self.S.norm(shape[axis])
            if isinstance(n, int) and (idx.min(initial=0) < -n or idx.max(initial=0) >= n):
                raise self._err(node, f"an index is out of range for axis {axis} of size {n}")
            key = f"{(node.name or 'gather').replace('/', '_')}.indices"
            while key in self.tensors:
                key += "_"
            self.tensors[key] = np.ascontiguousarray(idx.astype(np.int64).reshape(-1))
            self.shapes[key], self.dtypes[key] = [int(idx.size)], "int64"
            attrs["index_shape"] = list(idx.shape)
            idims, index = list(idx.shape), key
        else:
            index = self._value(ins[1], node)
            if self.dtypes[index] not in ("int32", "int64"):
                raise self._err(node, f"indices must be int32 or int64, got {self.dtypes[index]}")
            idims = self.shapes[index]
        out = list(shape[:axis]) + list(idims) + list(shape[axis + 1:])
        self._emit("Gather", node, [data, index], [node.output[0]], attrs, [out], [self.dtypes[data]])

    def _op_Conv(self, node, ins, a):
        x = self._value(ins[0], node)
        W = self._const_input(node, 1, "W")
        xs = self.shapes[x]
        if W is None or W.ndim != 3 or len(xs) != 3:
            raise self._err(node, "only 1-D convolution is supported (X (N, C, L) and a constant W (M, C/group, K))")
        K = W.shape[2]
        if list(a.get("kernel_shape", [K])) != [K]:
            raise self._err(node, f"kernel_shape {a.get('kernel_shape')} does not match W {W.shape}")
        strides = list(a.get("strides", [1]))
        dil = list(a.get("dilations", [1]))
        pads = list(a.get("pads", [0, 0]))
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto == "VALID":
            pads = [0, 0]
        elif auto != "NOTSET":
            if strides != [1]:
                raise self._err(node, f"auto_pad {auto} with a stride is not supported")
            total = dil[0] * (K - 1)
            pads = [total // 2, total - total // 2] if auto == "SAME_UPPER" else [total - total // 2, total // 2]
        group = int(a.get("group", 1))
        self.S.unify(xs[1], W.shape[1] * group, f"node {node.name!r} (Conv input channels)")
        base = (node.name or f"conv{len(self.nodes)}").replace("/", "_")
        wkey = base + ".W"
        self.tensors[wkey] = np.ascontiguousarray(W.astype(self.dtypes[x]))
        self.shapes[wkey], self.dtypes[wkey] = list(W.shape), self.dtypes[x]
        inputs = [x, wkey]
        Bc = self._const_input(node, 2, "B") if len(ins) > 2 and ins[2] else None
        if Bc is not None:
            self.tensors[base + ".B"] = np.ascontiguousarray(Bc.astype(self.dtypes[x]).reshape(-1))
            self.shapes[base + ".B"], self.dtypes[base + ".B"] = [int(Bc.size)], self.dtypes[x]
            inputs.append(base + ".B")
        L = self.S.norm(xs[2])
        Lout = ((L + pads[0] + pads[1] - dil[0] * (K - 1) - 1) // strides[0] + 1 if isinstance(L, int)
                else (xs[2] if pads[0] + pads[1] == dil[0] * (K - 1) and strides == [1] else self.S.new("conv_len")))
        self._emit("Conv", node, inputs, [node.output[0]],
                   {"pads": pads, "strides": strides, "dilations": dil, "group": group},
                   [[xs[0], W.shape[0], Lout]], [self.dtypes[x]])

    def _op_Split(self, node, ins, a):
        x = self._value(ins[0], node)
        shape = self.shapes[x]
        axis = a.get("axis", 0)
        if not -len(shape) <= axis < len(shape):
            raise self._err(node, f"axis {axis} out of range for rank {len(shape)}")
        axis %= len(shape)
        n_out = len(node.output)
        if len(ins) > 1 and ins[1]:
            sizes = [int(v) for v in np.asarray(self._const_input(node, 1, "split")).reshape(-1)]
        elif "split" in a:
            sizes = [int(v) for v in a["split"]]
        else:
            total = self.S.norm(shape[axis])
            if not isinstance(total, int):
                raise self._err(node, f"an equal split of the run-time dimension {total} is not supported")
            parts = int(a.get("num_outputs", n_out))
            step = -(-total // parts)
            sizes = [min(step, total - k * step) for k in range(parts)]
        if len(sizes) != n_out:
            raise self._err(node, f"{len(sizes)} split sizes for {n_out} outputs")
        self.S.unify(shape[axis], sum(sizes), f"node {node.name!r} (Split axis)")
        outs = []
        for size in sizes:
            o = list(shape)
            o[axis] = size
            outs.append(o)
        self._emit("Split", node, [x], list(node.output), {"axis": axis, "sizes": sizes}, outs,
                   [self.dtypes[x]] * n_out)

    def _op_Flatten(self, node, ins, a):
        x = self._value(ins[0], node)
        shape = self.shapes[x]
        axis = a.get("axis", 1)
        if not -len(shape) <= axis <= len(shape):
            raise self._err(node, f"axis {axis} out of range for rank {len(shape)}")
        axis %= len(shape) + 1
        target = [self.S.prod(shape[:axis]), self.S.prod(shape[axis:])]
        spec, out = self._reshape_spec(node, shape, target, False, 0)
        self._emit("Reshape", node, [x], [node.output[0]], {"shape": spec}, [out], [self.dtypes[x]])

    # ------------------------------------------------------------------ streaming
    def _stream_info(self, specs_in, specs_out):
        if not self.recurrent:
            return None
        node, X, layout = self.recurrent[0]
        xs = self.shapes[X]
        t_sym = self.S.single_sym(xs[0] if layout == 0 else xs[1])
        b_sym = self.S.single_sym(xs[1] if layout == 0 else xs[0])
        if t_sym is None:
            return None
        for spec in specs_in:   # token ids (int) may carry the time axis too; sequence_lens has none
            dims = [self.S.single_sym(d) for d in self.shapes[spec.name]]
            if t_sym in dims:
                outputs = {}
                for o in specs_out:
                    odims = [self.S.single_sym(d) for d in self.shapes[o.name]]
                    outputs[o.name] = odims.index(t_sym) if t_sym in odims else None
                return {"input": spec.name, "time_axis": dims.index(t_sym),
                        "batch_axis": dims.index(b_sym) if b_sym in dims else None, "outputs": outputs}
        return None


def _clamp_end(e):
    return None if abs(e) >= INT64_BIG else e
