"""Weights fed as inputs of the call: packed on the call, and reused while the same weights come back.

ONNX lets a graph take a recurrent node's W, R, B and P as graph inputs, fed at every call (the ONNX backend node
tests do; onnxruntime runs such graphs). The engine packs weights into its kernels' layout (transposed, biases
summed; ``op.pack``) once per Session when they are constants; for a node whose packed inputs
(``op.packed_inputs``) include graph inputs, the same packing runs on the call instead:

* at load, ``Weights`` (engine/plan.py) keeps only the node's constant packed inputs, as they are (``constants``);
* per plan, ``CallLayout`` places everything the node's ``pack`` yields in one buffer (offsets and shapes from a
  dry run of ``pack`` on zero-stride stand-ins of the call's shapes), and the planner gives the op those offsets
  and the space F_CALL instead of F_CONST (``Planner.weight``, ``Planner.weight_space``);
* per call, ``CallWeights`` (one per Session) returns the buffer packed from the call's arrays, and the Session
  passes it to the executor in the argument a stream's state takes (F_CALL is F_STATE: a model whose weights are
  inputs cannot be streamed, Stream refuses it, so the two never meet). Models whose weights are all constants
  never come here: their per-call cost is one ``plan.call is None`` test.

Reuse. numpy arrays are mutable, so neither an array's identity nor its read-only flag says that its contents are
the ones packed before (a read-only array can be a view of a writable one). ``CallWeights`` keeps, per layout, the
dtype, shape and bytes of the arrays the last buffer was packed from, and reuses the buffer when the call's weights
have the same dtype, shape and bytes, whichever array objects hold them; otherwise it packs a new buffer (never
writing into one that another thread may be reading). The buffer is packed from that snapshot, so what is compared
is exactly what was packed. Comparing costs a copy and a memcmp of the weights (from 512 KiB an array is compared
in place), 6-13x less than packing them (LSTM, 130 KiB of weights at H=64: 5 us against 33 us; per call in
README, "Run"). The price is memory: the snapshot is one more copy of the raw weights.
"""
from __future__ import annotations

from collections import ChainMap, OrderedDict
from functools import cached_property

import numpy as np

from ._memory import aligned_empty, round_up
from .ops import OPS

KEEP_LAYOUTS = 8   # packed buffers a Session keeps (one per layout: a combination of weight shapes)
BIG = 1 << 19      # bytes: weight arrays from this size are compared in place (_same_bytes)


class _Tensors:
    """What ``op.pack`` reads of a model, its ``tensors``: here with the call's arrays for the weight inputs."""
    __slots__ = ("tensors",)

    def __init__(self, tensors):
        self.tensors = tensors


def constants(op, node, model):
    """What ``Weights`` keeps at load for a node packed on the call: its constant packed inputs, as they are, under
    ``in<index>`` (a Session lets the model's own arrays go once they are packed)."""
    for i in op.packed_inputs:
        name = node.inputs[i] if i < len(node.inputs) else ""
        if name and name in model.tensors:
            yield f"in{i}", model.tensors[name]


class CallLayout:
    """Where one plan's weights packed on the call go: built by the planner, node by node as it plans them
    (``positions`` and ``key`` are read once the plan is built)."""

    def __init__(self, model, weights, shapes, dtype, threads):
        self.model, self.weights, self.dtype, self.threads = model, weights, np.dtype(dtype), threads
        self.shapes = {name: tuple(shape) for name, shape in shapes.items()}   # the call's input shapes
        self.entries = {}   # node name -> {pack key: (offset, shape)}
        self.nodes = []     # (node, [(input index, name, position among the call's arguments)]), in plan order
        self.size = 0       # elements of the buffer
        self._position = {spec.name: k for k, spec in enumerate(model.inputs)}

    def takes(self, node) -> bool:
        """Whether ``node`` reads weights fed by the call."""
        return bool(OPS[node.op].call_inputs(node, self.model))

    def entry(self, node, key):
        """(offset, shape) of what ``node``'s op packs under ``key``, in the call's buffer."""
        placed = self.entries.get(node.name)
        if placed is None:
            placed = self._place(node)
        return placed[key]

    def _place(self, node):
        op = OPS[node.op]
        fed = [(i, node.inputs[i], self._position[node.inputs[i]]) for i in op.call_inputs(node, self.model)]
        zero = np.zeros((), self.dtype)
        stand_ins = {name: np.broadcast_to(zero, self.shapes[name]) for _, name, _ in fed}
        placed = {}
        for key, arr in op.pack(node, _Tensors(ChainMap(stand_ins, self.model.tensors)), self.dtype, self.threads):
            placed[key] = (self.size, tuple(arr.shape))
            self.size += round_up(max(arr.size, 1))   # each array on a 64-byte boundary, as in Weights
        self.entries[node.name] = placed
        self.nodes.append((node, fed))
        return placed

    @cached_property
    def positions(self):
        """The positions, among the call's arguments, of the arrays packed on the call."""
        return [k for _, fed in self.nodes for _, _, k in fed]

    @cached_property
    def key(self):
        """What the buffer's layout depends on (dtype and threads are the Session's): plans with the same nodes
        and weight shapes share packed buffers."""
        return tuple((node.name, tuple((i, self.shapes[name]) for i, name, _ in fed)) for node, fed in self.nodes)

    def pack(self, arrays, fconst):
        """A new buffer holding every node's weights packed from ``arrays`` (the call's, in ``positions`` order)
        and the constants kept at load (in ``fconst``, the Session's packed buffer)."""
        buf = aligned_empty(max(self.size, 1), self.dtype)
        given = iter(arrays)
        for node, fed in self.nodes:
            op = OPS[node.op]
            tensors = {name: next(given) for _, name, _ in fed}
            for i in op.packed_inputs:
                name = node.inputs[i] if i < len(node.inputs) else ""
                if name and name not in tensors:
                    off, shape = self.weights.entry(node, f"in{i}")
                    tensors[name] = fconst[off:off + int(np.prod(shape))].reshape(shape)
            placed = self.entries[node.name]
            for key, arr in op.pack(node, _Tensors(tensors), self.dtype, self.threads):
                off, shape = placed[key]
                buf[off:off + arr.size] = np.asarray(arr, self.dtype).reshape(-1)
        return buf


class CallWeights:
    """A Session's weights packed on the call: per layout, the buffer packed last and a snapshot of what it was
    packed from (see the module's docstring for why the contents are compared)."""

    def __init__(self):
        self._last = OrderedDict()   # layout key -> (snapshot [(dtype, shape, bytes)], buffer)
        self.packs = 0               # buffers packed so far (for tests and measurements)

    def buffer(self, layout, args, fconst):
        """The packed weights for a call of ``layout``'s plan with ``args`` (one array per model input)."""
        arrays = [args[k] for k in layout.positions]
        key = layout.key
        last = self._last.get(key)
        if last is not None and _same(last[0], arrays):
            return last[1]
        snapshot = [(a.dtype, a.shape, a.tobytes()) for a in arrays]
        buf = layout.pack([np.frombuffer(b, d).reshape(s) for d, s, b in snapshot], fconst)
        self._last[key] = (snapshot, buf)
        self._last.move_to_end(key)
        while len(self._last) > KEEP_LAYOUTS:
            self._last.popitem(last=False)
        self.packs += 1
        return buf


def _same(snapshot, arrays):
    for (dtype, shape, data), a in zip(snapshot, arrays):
        if a.dtype != dtype or a.shape != shape or not _same_bytes(a, data):
            return False
    return True


def _same_bytes(a, data):
    """Whether ``a`` holds ``data``. Copying a small array and comparing the bytes (memcmp) is quickest; a large
    contiguous one is compared 8 bytes at a time in place, which spares the copy (2 MiB: 53 us against 86 us)."""
    if a.nbytes < BIG or not a.flags.c_contiguous or a.nbytes % 8:
        return a.tobytes() == data
    return bool((a.reshape(-1).view(np.uint64) == np.frombuffer(data, np.uint64)).all())
