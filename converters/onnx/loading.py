"""Reading an ONNX model: the protobuf, its opset, its initializers and its graph inputs."""
from __future__ import annotations

import os

from engine.errors import ConversionError, ModelFileError, UnsupportedModelError
from engine.model import TensorSpec

from .dims import Dim

MIN_OPSET = 7
ELEM = {1: "float32", 11: "float64", 6: "int32", 7: "int64"}   # ONNX element type -> the engine's dtype
FLOAT16 = 10   # float16 models compute in float32: weights widened here, inputs and outputs keep float16


def parse(data: bytes, where: str):
    """Bytes -> ModelProto; ModelFileError if they are not an ONNX model."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        proto = onnx.load_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as e:
        raise ModelFileError(f"{where}: neither an lstm-engine model nor a readable ONNX file ({e})") from e
    if not proto.graph.node and not proto.graph.input:
        raise ModelFileError(f"{where}: neither an lstm-engine model nor an ONNX model (empty or unrecognised content)")
    return proto


def read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise ConversionError(f"ONNX file not found: {path}") from None
    except OSError as e:
        raise ConversionError(f"cannot read {path}: {e.strerror}") from None


def check_opset(ctx):
    if ctx.opset is None:
        raise ConversionError(f"{ctx.where}: the model imports no default-domain opset")
    if ctx.opset < MIN_OPSET:
        raise UnsupportedModelError(f"{ctx.where}: opset {ctx.opset} is older than the oldest supported "
                                    f"({MIN_OPSET})")


def to_array(tensor, base_dir: str | None = None):
    """A TensorProto's values, read from its external data file when it has one (torch's exporter writes the
    weights of models over ~1 MB to ``model.onnx.data`` beside ``model.onnx``); ``base_dir`` is the directory of
    the ONNX file, which external data locations are relative to."""
    import onnx
    from onnx import numpy_helper
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        return widen(_external(tensor, base_dir))
    try:
        return widen(numpy_helper.to_array(tensor))
    except Exception as e:
        raise ConversionError(f"tensor {tensor.name!r} cannot be read: {e}") from e


def widen(array):
    """float16 values as float32 (the engine computes float16 models in float32)."""
    return array.astype("float32") if getattr(array, "dtype", None) is not None and array.dtype == "float16" \
        else array


def _external(tensor, base_dir):
    """The values of a tensor stored in an external file: the location must stay inside the model's directory
    (no absolute paths, no ..), and the file must hold every byte the tensor's shape needs."""
    import numpy as np
    from onnx import helper
    info = {e.key: e.value for e in tensor.external_data}
    location = info.get("location", "")
    if base_dir is None:
        raise ModelFileError(f"tensor {tensor.name!r} is stored in the external file {location!r}: load the ONNX "
                             f"model from its path (with the data file beside it), not from bytes")
    path = os.path.normpath(os.path.join(base_dir, location))
    if not location or os.path.isabs(location) or os.path.commonpath([os.path.abspath(base_dir), path]) != \
            os.path.abspath(base_dir):
        raise ModelFileError(f"tensor {tensor.name!r}: external data location {location!r} is outside the "
                             f"model's directory")
    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).newbyteorder("<")
        offset = int(info.get("offset", 0))
        count = int(np.prod(tensor.dims, dtype=np.int64))
        nbytes = count * dtype.itemsize
        if "length" in info and int(info["length"]) != nbytes:
            raise ModelFileError(f"tensor {tensor.name!r}: its external data is {info['length']} bytes, its shape "
                                 f"{list(tensor.dims)} needs {nbytes}")
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(nbytes)
    except FileNotFoundError:
        raise ModelFileError(f"tensor {tensor.name!r} is stored in {location!r}, which is missing (looked for "
                             f"{path})") from None
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise ModelFileError(f"tensor {tensor.name!r}: its external data cannot be read ({e})") from e
    if len(data) != nbytes:
        raise ModelFileError(f"tensor {tensor.name!r}: {location!r} is truncated ({len(data)} of {nbytes} bytes "
                             f"at offset {offset})")
    return np.frombuffer(data, dtype).reshape(tuple(tensor.dims)).astype(dtype.newbyteorder("="))


def load_initializers(ctx):
    for init in ctx.graph.initializer:
        ctx.consts[init.name] = ctx.to_array(init)
    for init in getattr(ctx.graph, "sparse_initializer", []):
        raise UnsupportedModelError(f"{ctx.where}: sparse initializer {init.values.name!r} is not supported")


def load_inputs(ctx) -> list:
    """The graph inputs computed at run time, as TensorSpecs with symbolic dimensions (after load_initializers)."""
    inputs = []
    for vi in ctx.graph.input:
        if vi.name in ctx.consts:
            continue  # IR < 4 lists initializers among the inputs
        inputs.append(_graph_input(ctx, vi))
    ctx.input_names = [s.name for s in inputs]
    floats = {s.dtype for s in inputs if s.dtype.startswith("float")}
    ctx.float_dtype = floats.pop() if len(floats) == 1 else None
    return inputs


def _graph_input(ctx, vi):
    """A fixed dimension becomes a soft symbol (free until the graph relies on its value), a named one a hard
    symbol shared by every input that names it, and an unnamed free one a fresh symbol."""
    t = vi.type
    if not t.HasField("tensor_type"):
        raise UnsupportedModelError(f"graph input {vi.name!r} is not a tensor")
    elem = t.tensor_type.elem_type
    if elem not in ELEM and elem != FLOAT16:
        raise UnsupportedModelError(f"graph input {vi.name!r} has element type "
                                    f"{_elem_name(elem)}; supported: float16, float, double, int32, int64")
    if not t.tensor_type.HasField("shape"):
        raise UnsupportedModelError(f"graph input {vi.name!r} has no shape (rank unknown)")
    S = ctx.S
    dims = []
    for k, d in enumerate(t.tensor_type.shape.dim):
        if d.HasField("dim_value"):
            dims.append(S.new(f"{vi.name}_{k}_", soft_value=d.dim_value))
        elif d.dim_param:
            name = d.dim_param
            if not isinstance(name, str):   # protobuf hands back invalid UTF-8 as bytes
                raise ModelFileError(f"graph input {vi.name!r}: dimension {k} has a name that is not UTF-8 text")
            dims.append(Dim(1, (name,)) if name in S.names else S.new(name))
        else:
            dims.append(S.new(f"{vi.name}_{k}_"))
    ctx.shapes[vi.name] = dims
    ctx.dtypes[vi.name] = "float32" if elem == FLOAT16 else ELEM[elem]
    return TensorSpec(vi.name, dims, "float16" if elem == FLOAT16 else ELEM[elem], optional=False)


def source_dir(path: str) -> str:
    return os.path.dirname(os.path.abspath(path))


def _elem_name(elem) -> str:
    import onnx
    try:
        return onnx.TensorProto.DataType.Name(elem)
    except ValueError:
        return f"number {elem} (unknown)"
