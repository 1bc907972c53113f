"""The canonical model: an in-memory graph and its versioned file format.

A model file is a safetensors file (named, aligned tensors; no code runs on load) whose metadata holds one key,
``lstm_engine``, a JSON document:

    {"format": "lstm-engine", "format_version": 1, "dtype": "float32",
     "inputs":  [{"name": "X", "shape": ["T", "B", 8], "dtype": "float32", "optional": false}, ...],
     "outputs": [{"name": "Y", "shape": ["T", 1, "B", 16], "dtype": "float32"}, ...],
     "nodes":   [{"op": "LSTM", "name": "lstm0", "inputs": [...], "outputs": [...], "attrs": {...}}, ...],
     "stream":  {"input": "X", "time_axis": 0} or null; time_axis null: each call is one step (a cell model),
     "origin":  {"source": "onnx", ...},
     "weight_encodings": {"lstm0.W": {"encoding": "int8", "scales": "lstm0.W.scales"}, ...}}   (version 2 only)

Version 2 adds ``weight_encodings``: recurrent W and R matrices stored in bfloat16 (as uint16 bits) or int8 with
float32 scales (engine/quant.py). A file without encoded weights is written as version 1, so that older engines
still read it; an older engine refuses a version-2 file with a FormatVersionError that says to upgrade.

Node inputs name graph inputs, tensors stored in the file, or outputs of earlier nodes; "" marks an absent optional
input. Nodes are in execution order. Shapes use ints for fixed dimensions and strings for symbolic ones.

The recurrent ops follow ONNX semantics with every attribute filled in and weights in ONNX gate order; the
converters resolve all framework quirks (PyTorch gate order, split biases, exporter subgraphs) before a file is
written, so the engine never asks where the weights came from. The ops' canonical nodes are described in
engine/ops/recurrent.py, glue.py and layers.py.
"""
from __future__ import annotations

import contextlib
import json
import math
import mmap
import os
import struct
import tempfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import EngineError, FormatVersionError, ModelFileError, UnsupportedModelError

FORMAT_NAME = "lstm-engine"
FORMAT_VERSION = 2          # the newest version this engine reads (2: weight_encodings)
METADATA_KEY = "lstm_engine"
SUPPORTED_DTYPES = ("float32", "float64")
INPUT_DTYPES = ("float16", "float32", "float64", "int32", "int64")
OUTPUT_DTYPES = INPUT_DTYPES + ("bool",)    # a comparison's result (int 0/1 in the engine, np.bool_ when returned)
# Header size guard: safetensors headers of real models are a few KiB; refuse absurd values before reading them.
MAX_HEADER_BYTES = 64 * 1024 * 1024


@dataclass
class TensorSpec:
    name: str
    shape: list  # ints for fixed dims, strings for symbolic dims
    dtype: str = "float32"
    optional: bool = False

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "optional": self.optional}

    @classmethod
    def from_json(cls, d: dict) -> "TensorSpec":
        return cls(name=d["name"], shape=d["shape"], dtype=d.get("dtype", "float32"),
                   optional=d.get("optional", False))


BRANCHES = ("then", "else")   # the subgraphs of an If node


@dataclass
class Node:
    op: str
    name: str
    inputs: list
    outputs: list
    attrs: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        attrs = self.attrs
        if self.op == "If":
            attrs = dict(attrs, **{key: {"nodes": [n.to_json() for n in attrs[key]["nodes"]],
                                         "outputs": list(attrs[key]["outputs"])} for key in BRANCHES})
        return {"op": self.op, "name": self.name, "inputs": list(self.inputs), "outputs": list(self.outputs),
                "attrs": attrs}

    @classmethod
    def from_json(cls, d: dict) -> "Node":
        attrs = d.get("attrs", {})
        if d["op"] == "If" and isinstance(attrs, dict):
            attrs = dict(attrs)
            for key in BRANCHES:
                br = attrs.get(key)
                if not isinstance(br, dict) or not isinstance(br.get("nodes"), list) or \
                        not all(isinstance(n, dict) for n in br["nodes"]):
                    raise ModelFileError(f"node {d['name']!r} (If): branch {key!r} must hold a list of nodes")
                attrs[key] = {"nodes": [cls.from_json(n) for n in br["nodes"]], "outputs": br.get("outputs")}
        return cls(op=d["op"], name=d["name"], inputs=d["inputs"], outputs=d["outputs"], attrs=attrs)

    def branches(self) -> list:
        """The node lists of an If's branches (none for other ops)."""
        return [self.attrs[key]["nodes"] for key in BRANCHES] if self.op == "If" else []


@dataclass
class Model:
    """A validated graph plus its tensors. ``tensors`` maps names to numpy arrays (weights, constants)."""

    inputs: list
    outputs: list
    nodes: list
    tensors: dict
    dtype: str = "float32"
    origin: dict = field(default_factory=dict)
    stream: dict | None = None
    format_version: int = 1   # 2 once weight_encodings are set (engine/quant.py)
    weight_encodings: dict = field(default_factory=dict)   # {tensor name: {"encoding": ..., "scales": ...}}
    released: bool = False    # a Session packed the float weights and let go of them (see Session)

    # ------------------------------------------------------------------ queries
    def input(self, name: str) -> TensorSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def recurrent_nodes(self) -> list:
        """The recurrent nodes of the main graph (those inside If branches are not streamed with an inner state)."""
        from .ops import RECURRENT_OP_NAMES
        return [n for n in self.nodes if n.op in RECURRENT_OP_NAMES]

    def all_nodes(self) -> list:
        """Every node, those inside If branches included (each right after its If), in a fixed order: the index of
        a node in this list is how the executor names a node in an error."""
        out = []

        def walk(nodes):
            for n in nodes:
                out.append(n)
                for branch in n.branches():
                    walk(branch)
        walk(self.nodes)
        return out

    def node_index(self, node) -> int:
        index = self.__dict__.get("_node_index")
        if index is None:
            index = self.__dict__["_node_index"] = {id(n): k for k, n in enumerate(self.all_nodes())}
        return index[id(node)]

    def parameter_count(self) -> int:
        """Weights of the model, encoded ones included (not their int8 scales)."""
        scales = {e.get("scales") for e in self.weight_encodings.values()}
        return int(sum(t.size for name, t in self.tensors.items()
                       if (t.dtype.kind == "f" and name not in scales) or name in self.weight_encodings))

    def release_pages(self, arr) -> None:
        """Let the pages of ``arr`` (a contiguous view of a tensor) go from the process's memory when the model reads
        its file through a mapping (``read_source(mapped=True)``): they stay in the page cache and come back from the
        file if read again. What packing calls once it has read a weight, so that loading holds the file's copy of
        one tensor at a time at most. Anything else is left alone."""
        mapping = self.__dict__.get("_mapping")
        if mapping is None or not hasattr(mmap.mmap, "madvise") or not arr.flags.c_contiguous:
            return
        mm, base, size = mapping
        start, end = arr.ctypes.data - base, arr.ctypes.data - base + arr.nbytes
        if start < 0 or end > size:
            return
        first, last = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE, end // mmap.PAGESIZE * mmap.PAGESIZE
        if last > first:
            mm.madvise(mmap.MADV_DONTNEED, first, last - first)

    def with_weights_released(self) -> "Model":
        """A copy whose float (and encoded) tensors are zero-stride stand-ins of the same shapes and dtypes (no
        memory), marked ``released`` so that nothing can run it by mistake: what a Session keeps once its weights are
        packed. The other tensors (ints, small) are copied, so that nothing keeps a mapped file alive."""
        stand_ins = {name: (np.broadcast_to(np.zeros((), t.dtype), t.shape)
                            if t.dtype.kind == "f" or name in self.weight_encodings else np.array(t))
                     for name, t in self.tensors.items()}
        return Model(inputs=self.inputs, outputs=self.outputs, nodes=self.nodes, tensors=stand_ins,
                     dtype=self.dtype, origin=self.origin, stream=self.stream, format_version=self.format_version,
                     weight_encodings=self.weight_encodings, released=True)

    def metadata(self) -> dict:
        return {
            "format": FORMAT_NAME,
            # encoded weights need version 2 (a Model built in code may not say so); without them a file keeps the
            # version it was read with, 1 for new ones, which older engines read
            "format_version": max(self.format_version, 2) if self.weight_encodings else self.format_version,
            "dtype": self.dtype,
            "inputs": [s.to_json() for s in self.inputs],
            "outputs": [s.to_json() for s in self.outputs],
            "nodes": [n.to_json() for n in self.nodes],
            "stream": self.stream,
            "origin": self.origin,
            **({"weight_encodings": self.weight_encodings} if self.weight_encodings else {}),
        }

    # ------------------------------------------------------------------ validation
    def validate(self) -> "Model":
        """Check that the graph is well formed: names resolve, ops are known, tensors have the shapes ops expect."""
        if self.released:
            raise EngineError("this Model's weights were released by the Session that loaded it (Session.model "
                              "keeps only their shapes); load the file again with engine.load(path), or pass the "
                              "path to Session")

        if self.dtype not in SUPPORTED_DTYPES:
            raise UnsupportedModelError(f"model dtype {self.dtype!r} is not supported (supported: float32, float64)")
        for what, specs in (("inputs", self.inputs), ("outputs", self.outputs), ("nodes", self.nodes)):
            if not isinstance(specs, list):
                raise ModelFileError(f"the model's {what} must be a list")
        if not self.inputs:
            raise ModelFileError("model has no inputs")
        if not self.outputs:
            raise ModelFileError("model has no outputs")
        known = set()
        for spec in self.inputs:
            _check_spec(spec, "input")
            if spec.name in known:
                raise ModelFileError(f"input name {spec.name!r} is used twice")
            known.add(spec.name)
        for name, arr in self.tensors.items():
            if not isinstance(arr, np.ndarray):
                raise ModelFileError(f"tensor {name!r} is not an array")
            if name in known:
                raise ModelFileError(f"tensor {name!r} has the same name as a graph input")
            known.add(name)
        from .quant import check_encoded_readers, check_encodings
        check_encodings(self)                # before the nodes: their checks read the tensors' dtypes
        check_encoded_readers(self)
        _check_nodes(self, self.nodes, known, set())
        for spec in self.outputs:
            _check_spec(spec, "output")
            if spec.name not in known:
                raise ModelFileError(f"graph output {spec.name!r} is not produced by any node")
            if spec.name in self.tensors:
                raise ModelFileError(f"graph output {spec.name!r} is a constant tensor: nothing to compute")
        if self.stream is not None:
            _check_stream(self.stream, self.inputs, self.outputs)
        return self


MAX_IF_DEPTH = 32   # If nodes inside If branches (exporters nest one or two; planning recurses once per level)
MAX_DIM = 2 ** 62   # larger dimensions cannot be described to the executor (int64), let alone allocated


def _check_nodes(model, nodes, known, packed_names, depth=0, hidden=frozenset()) -> None:
    """Check a node list in order, recursing into If branches; ``known`` gains the names the list defines,
    ``packed_names`` the names of the nodes whose weights are packed (by name). A branch sees the graph inputs, the
    tensors, the values its If lists among its inputs and its own; the other values computed outside (``hidden``)
    are not kept alive for it by the planner, so reading one is an error."""
    from .ops import OPS
    for node in nodes:
        _check_node(node)
        if node.op not in OPS:
            raise UnsupportedModelError(
                f"node {node.name!r}: op {node.op!r} is not supported by this engine "
                f"(supported: {', '.join(sorted(OPS))})")
        if OPS[node.op].recurrent or OPS[node.op].packed_inputs:
            # packed weights and stream state are found by node name
            if node.name in packed_names:
                kind = "recurrent nodes" if OPS[node.op].recurrent else "nodes with packed weights"
                raise ModelFileError(f"two {kind} are named {node.name!r}")
            packed_names.add(node.name)
        for i, name in enumerate(node.inputs):
            if name and name in hidden:
                raise ModelFileError(f"node {node.name!r} input {i} reads {name!r} from outside its If branch, but "
                                     f"the If does not list it among its inputs")
            if name and name not in known:
                raise ModelFileError(f"node {node.name!r} input {i} refers to unknown value {name!r}")
        unknown = sorted(set(node.attrs) - OPS[node.op].attrs)
        if unknown:
            raise ModelFileError(
                f"node {node.name!r} ({node.op}): attribute(s) {unknown} are not ones this engine reads for "
                f"{node.op} ({', '.join(sorted(OPS[node.op].attrs)) or 'none'}); the file was probably written by a "
                f"newer lstm-engine: upgrade lstm-engine, or convert the model again with this version")
        OPS[node.op].validate(node, model)
        if node.op == "If" and depth >= MAX_IF_DEPTH:
            raise ModelFileError(f"node {node.name!r} (If): If nodes are nested more than {MAX_IF_DEPTH} deep")
        for key in BRANCHES if node.op == "If" else ():
            inner = {n for n in node.inputs if n} | {s.name for s in model.inputs} | set(model.tensors)
            outside = (known | hidden) - inner
            _check_nodes(model, node.attrs[key]["nodes"], inner, packed_names, depth + 1, outside)
            for name in node.attrs[key]["outputs"]:
                if name in outside:
                    raise ModelFileError(f"node {node.name!r} (If): branch {key!r} output {name!r} is a value from "
                                         f"outside that the If does not list among its inputs")
                if name not in inner:
                    raise ModelFileError(f"node {node.name!r} (If): branch {key!r} output {name!r} is not defined")
        for name in node.outputs:
            if name:
                if name in known or name in hidden:
                    raise ModelFileError(f"value {name!r} is produced twice (node {node.name!r})")
                known.add(name)


def _check_node(node) -> None:
    if not isinstance(node, Node):
        raise ModelFileError(f"graph node {node!r} is not a Node")
    if not isinstance(node.name, str) or not isinstance(node.op, str):
        raise ModelFileError(f"node {node.name!r}: its name and op must be strings")
    for what in ("inputs", "outputs"):
        names = getattr(node, what)
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
            raise ModelFileError(f"node {node.name!r} ({node.op}): {what} must be a list of names")
    if not isinstance(node.attrs, dict):
        raise ModelFileError(f"node {node.name!r} ({node.op}): attrs must be a JSON object")


def _check_stream(stream, inputs, outputs) -> None:
    """The stream description: {"input": name, "time_axis": int or null, "batch_axis": int or null,
    "outputs": {output name: time axis or null}, "state": [[input, output], ...] (optional)}, every axis within its
    tensor's rank."""
    def bad(why):
        return ModelFileError(f"stream description {stream!r} is invalid: {why}")

    def axis_ok(v, rank):
        return v is None or (isinstance(v, int) and not isinstance(v, bool) and 0 <= v < rank)

    if not isinstance(stream, dict) or "input" not in stream or "time_axis" not in stream:
        raise bad("it needs at least 'input' and 'time_axis' (null for a model without a time axis)")
    spec = next((s for s in inputs if s.name == stream.get("input")), None)
    if spec is None:
        raise bad("it does not name a graph input")
    rank = len(spec.shape)
    time_axis, batch_axis = stream.get("time_axis"), stream.get("batch_axis")
    if not axis_ok(time_axis, rank) or not axis_ok(batch_axis, rank):
        raise bad(f"time_axis and batch_axis must be null or axes of the rank-{rank} input")
    if time_axis is not None and time_axis == batch_axis:
        raise bad("time_axis and batch_axis are the same axis")
    outs = stream.get("outputs", {})
    ranks = {s.name: len(s.shape) for s in outputs}
    if not isinstance(outs, dict) or not all(k in ranks and axis_ok(v, ranks[k]) for k, v in outs.items()):
        raise bad("outputs must map graph outputs to their time axis (or null)")
    pairs = stream.get("state", [])
    specs_in = {s.name: s for s in inputs}
    specs_out = {s.name: s for s in outputs}
    if not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2 and p[0] in specs_in and p[1] in specs_out and p[0] != stream["input"]
            and len(specs_in[p[0]].shape) == len(specs_out[p[1]].shape) and specs_in[p[0]].dtype.startswith("float")
            for p in pairs) or len({p[0] for p in pairs}) != len(pairs):
        raise bad("state must list [input, output] pairs of float inputs (not the stream input) and outputs of the "
                  "same rank")


def _check_spec(spec: TensorSpec, what: str) -> None:
    if not isinstance(spec, TensorSpec):
        raise ModelFileError(f"graph {what} {spec!r} is not a TensorSpec")
    if not isinstance(spec.name, str) or not spec.name:
        raise ModelFileError(f"graph {what} without a name")
    if not isinstance(spec.shape, (list, tuple)):
        raise ModelFileError(f"graph {what} {spec.name!r} has a shape that is not a list: {spec.shape!r}")
    for d in spec.shape:
        if not (isinstance(d, str) or (isinstance(d, int) and not isinstance(d, bool) and 0 <= d < MAX_DIM)):
            raise ModelFileError(f"graph {what} {spec.name!r} has an invalid dimension {d!r}")
    if spec.dtype not in (OUTPUT_DTYPES if what == "output" else INPUT_DTYPES):
        raise ModelFileError(f"graph {what} {spec.name!r} has unsupported dtype {spec.dtype!r}")
    if not isinstance(spec.optional, bool):
        raise ModelFileError(f"graph {what} {spec.name!r}: optional must be true or false")


# ---------------------------------------------------------------------- file I/O
def _contiguous(tensors):
    """The tensors as C-contiguous arrays, rank 0 kept (np.ascontiguousarray makes a rank-0 array rank 1)."""
    return {name: np.asarray(arr, order="C") for name, arr in tensors.items()}


def save(model: Model, path: str | os.PathLike) -> None:
    """Write ``model`` as an lstm-engine file (safetensors with our metadata).

    The file is written beside ``path`` under a temporary name and then renamed over it: a reader never sees half a
    file, and a Session that memory-mapped the old file keeps the old contents rather than crashing. It gets the
    permissions of any new file (0666 less the umask; safetensors alone writes 0600, which a service running as
    another user cannot read)."""
    from safetensors.numpy import save_file

    model.validate()
    tensors = _contiguous(model.tensors)
    dst = os.path.abspath(os.fspath(path))
    if os.path.isdir(dst):
        raise ModelFileError(f"cannot write the model file {dst}: it is a directory; give the file's path")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".lstm-engine-", suffix=".tmp", dir=os.path.dirname(dst))
    except OSError as e:
        raise ModelFileError(f"cannot write the model file {dst}: {e.strerror} ({os.path.dirname(dst)})") from None
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={METADATA_KEY: json.dumps(model.metadata())})
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, dst)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise ModelFileError(f"cannot write the model file {dst}: {e.strerror or e}") from None
        raise


def _umask() -> int:
    """The process's umask: from /proc where Linux shows it (reading it with os.umask means setting it, for a
    moment, for every thread of the process)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def to_bytes(model: Model) -> bytes:
    from safetensors.numpy import save

    model.validate()
    tensors = _contiguous(model.tensors)
    return save(tensors, metadata={METADATA_KEY: json.dumps(model.metadata())})


def read_source(source, mapped: bool = False) -> tuple:
    """(contents, where) of a path or bytes. A file is read whole, or with ``mapped`` memory-mapped read-only: for a
    Session, which packs the weights and lets the mapping go (a mapped file rewritten in place while a model still
    refers to it would crash the process on the next access, so a Model that outlives its load is never mapped).
    A file that cannot be mapped (empty, a pipe) is read."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return memoryview(source).cast("B"), "<bytes>"
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"expected a path, bytes or Model, got {type(source).__name__}")
    where = os.fspath(source)
    try:
        with open(where, "rb") as f:
            if mapped:
                try:
                    return memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)), where
                except (OSError, ValueError):
                    pass
            return memoryview(f.read()), where
    except FileNotFoundError:
        raise ModelFileError(f"model file not found: {where}") from None
    except IsADirectoryError:
        raise ModelFileError(f"{where} is a directory, not a model file") from None
    except (OSError, ValueError) as e:
        raise ModelFileError(f"cannot read {where}: {getattr(e, 'strerror', None) or e}") from None


def is_model_file_bytes(head: bytes) -> bool:
    """True if ``head`` (the first bytes of a file) looks like a safetensors file."""
    return len(head) >= 9 and head[8:9] == b"{"


def load(source: str | os.PathLike | bytes) -> Model:
    """Read and validate an lstm-engine file (a path or the file's bytes).

    Every failure is a ``ModelFileError`` (or ``FormatVersionError``) that says what is wrong; nothing is executed.
    """
    return load_from(*read_source(source))


def load_from(data, where: str) -> Model:
    """``load`` of contents already read (``read_source``); ``where`` names them in messages."""
    header, tensors = _parse_safetensors(data, where)
    mapping = data.obj if isinstance(data, memoryview) and isinstance(data.obj, mmap.mmap) else None
    meta_text = header.get("__metadata__", {}).get(METADATA_KEY) if isinstance(header.get("__metadata__"), dict) else None
    if meta_text is None:
        raise ModelFileError(f"{where}: a safetensors file, but not an lstm-engine model (no {METADATA_KEY!r} metadata)")
    if not isinstance(meta_text, str):
        raise ModelFileError(f"{where}: the model description is not a JSON string")
    try:
        meta = json.loads(meta_text)
    except json.JSONDecodeError as e:
        raise ModelFileError(f"{where}: the model description is not valid JSON ({e.msg})") from None
    except RecursionError:
        raise ModelFileError(f"{where}: the model description is nested too deeply") from None
    model = model_from_metadata(meta, tensors, where)
    if mapping is not None:
        model.__dict__["_mapping"] = (mapping, np.frombuffer(data, np.uint8, count=1).ctypes.data, len(data))
    return model


def model_from_metadata(meta: Any, tensors: dict, where: str = "<model>") -> Model:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{where}: not an lstm-engine model (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    version = meta.get("format_version")
    if not isinstance(version, int):
        raise ModelFileError(f"{where}: format_version is missing or not an integer")
    if version > FORMAT_VERSION:
        raise FormatVersionError(
            f"{where}: written in lstm-engine format version {version}, but this engine reads versions up to "
            f"{FORMAT_VERSION}; upgrade lstm-engine or convert the model again with this version")
    if version < 1:
        raise FormatVersionError(f"{where}: unknown format version {version}")
    for key in ("inputs", "outputs", "nodes"):
        if not isinstance(meta.get(key), list) or not all(isinstance(d, dict) for d in meta[key]):
            raise ModelFileError(f"{where}: the model description's {key!r} must be a list of JSON objects")
    try:
        model = Model(
            inputs=[TensorSpec.from_json(d) for d in meta["inputs"]],
            outputs=[TensorSpec.from_json(d) for d in meta["outputs"]],
            nodes=[Node.from_json(d) for d in meta["nodes"]],
            tensors=tensors,
            dtype=meta.get("dtype", "float32"),
            origin=meta.get("origin", {}) or {},
            stream=meta.get("stream"),
            format_version=version,
            weight_encodings=meta.get("weight_encodings", {}) if version >= 2 else {},
        )
    except (KeyError, TypeError, AttributeError) as e:
        raise ModelFileError(f"{where}: the model description is malformed ({type(e).__name__}: {e})") from None
    if not isinstance(model.origin, dict):
        raise ModelFileError(f"{where}: the model description's origin must be a JSON object")
    try:
        return model.validate()
    except (KeyError, TypeError, IndexError, AttributeError, ValueError, OverflowError) as e:
        raise ModelFileError(f"{where}: the model description is malformed ({type(e).__name__}: {e})") from None


_ST_DTYPES = {"F32": np.float32, "F64": np.float64, "I32": np.int32, "I64": np.int64, "F16": np.float16,
              "I8": np.int8, "U8": np.uint8, "U16": np.uint16, "BOOL": np.bool_}


def _parse_safetensors(data, where: str) -> tuple:
    """Parse a safetensors buffer ourselves so that every defect gets a precise message (and nothing is trusted)."""
    if len(data) < 8:
        raise ModelFileError(f"{where}: file is truncated ({len(data)} bytes); not an lstm-engine model")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > MAX_HEADER_BYTES or header_len < 2:
        raise ModelFileError(f"{where}: not an lstm-engine model (invalid header length {header_len})")
    if 8 + header_len > len(data):
        raise ModelFileError(f"{where}: file is truncated (header needs {header_len} bytes, file has {len(data) - 8})")
    try:
        header = json.loads(bytes(data[8:8 + header_len]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ModelFileError(f"{where}: not an lstm-engine model (header is not valid JSON)") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{where}: not an lstm-engine model (header is not a JSON object)")
    body = memoryview(data)[8 + header_len:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = _ST_DTYPES[info["dtype"]]
            shape, offsets = info["shape"], info["data_offsets"]
        except (KeyError, TypeError):
            raise ModelFileError(f"{where}: tensor {name!r} has a malformed entry in the header") from None
        if not (isinstance(shape, list) and isinstance(offsets, list) and len(offsets) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) for v in shape + offsets)):
            raise ModelFileError(f"{where}: tensor {name!r} has a malformed entry in the header")
        if any(d < 0 for d in shape):
            raise ModelFileError(f"{where}: tensor {name!r} has a negative dimension")
        start, end = offsets
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize     # Python ints: a claimed size cannot overflow
        if not (0 <= start <= end) or end - start != nbytes:
            raise ModelFileError(f"{where}: tensor {name!r} has inconsistent data offsets")
        if end > len(body):
            raise ModelFileError(f"{where}: file is truncated (tensor {name!r} ends at byte {end}, data has {len(body)})")
        arr = np.frombuffer(body[start:end], dtype=dtype).reshape(shape)
        tensors[name] = arr  # read-only view into the file's bytes: weights are never written through
    return header, tensors
