"""From a model and the shapes of one call to a program the executor runs: shape inference, liveness, buffers.

A Session makes one plan per distinct combination of input shapes (and keeps the recent ones), so that everything
that depends only on shapes is decided here, in Python, once: each node's output shape, which nodes are needed for
the outputs asked for (dead nodes are left out), where every value lives (intermediates share one work buffer,
reused as soon as a value's last reader has run), and which instruction runs each node. Ops describe themselves to
the planner through ``plan(node, p)`` (engine/ops/base.py). No code is generated or compiled per model: the
executor (engine/executor.py) is compiled once per engine version and runs any plan.

Weights are packed once per Session (``Weights``) into one aligned buffer, under names each op chooses
(``pack``); a plan refers to them by offset. Weights that are graph inputs are packed on the call instead
(engine/call_weights.py: ``Plan.call`` lays them out).
"""
from __future__ import annotations

import numpy as np

from . import _memory, call_weights
from .errors import InvalidInputError, ModelFileError, UnsupportedModelError
from .ops import OPS
from .ops.base import contiguous_strides, merge_axes
from .ops.program import (ABSENT, COPY, F_CALL, F_CONST, F_IN, F_IN_SLOTS, F_OUT, F_WORK, FILL_CONST, I_CONST, I_IN,
                          I_WORK, INT_COPY, MAX_RANK, THREADS_AT)
from .quant import StoredBytes

def size_of(shape):
    n = 1
    for d in shape:
        n *= int(d)
    return n


# ---------------------------------------------------------------------- weights
class Weights:
    """Every constant a model's kernels read, packed once into one 64-byte-aligned buffer of the compute dtype.

    ``entry(node, key)`` is (offset, shape) of what ``op.pack`` returned under ``key`` for ``node``; ``raw(name)`` the
    same for a float tensor of the model read as it is (a bias of an Add, a MatMul weight)."""

    def __init__(self, model, dtype, threads):
        self.dtype = np.dtype(dtype)
        self._entries, self._raw = {}, {}
        # Two passes over the ops' packing, so that loading never holds much more than the file and the buffer:
        # the first only learns the shapes (each packed array dropped at once), the second copies each array into
        # its place as it comes. Packing is a few transposes: cheap next to the memory it saves.
        # A model read through a file mapping lets each weight's pages go once packed (Model.release_pages), and
        # each packed array is dropped (del) before the next is made.
        pos = 0
        for where, arr in self._packed(model, threads):
            self._place(where, pos, arr.shape)
            pos += _memory.round_up(max(self._slots(arr), 1))
            del arr
        self.buffer = _memory.aligned_empty(max(pos, 1), self.dtype)
        release = getattr(model, "release_pages", None)
        for where, arr in self._packed(model, threads):
            off, shape = self._lookup(where)
            if isinstance(arr, StoredBytes):   # reduced-precision weights: their bytes, read back as stored
                self.buffer[off:off + self._slots(arr)].view(np.uint8)[:arr.nbytes] = \
                    np.asarray(arr).reshape(-1).view(np.uint8)
            else:
                self.buffer[off:off + arr.size] = np.asarray(arr, dtype=self.dtype).reshape(-1)
            if where[0] == "raw" and release is not None:
                release(arr)
            del arr
        self.nbytes = self.buffer.nbytes

    def _slots(self, arr):
        """Elements of the buffer an array takes: one per value, or for StoredBytes its bytes rounded up."""
        return -(-arr.nbytes // self.dtype.itemsize) if isinstance(arr, StoredBytes) else arr.size

    def _packed(self, model, threads):
        """(("node", node name, key) or ("raw", tensor name), array) for every constant the kernels read."""
        seen = set()
        for node in model.all_nodes():
            op = OPS[node.op]
            packed = call_weights.constants(op, node, model) if op.call_inputs(node, model) else \
                op.pack(node, model, self.dtype, threads)     # weights fed by the call are packed then
            for key, arr in packed:
                yield ("node", node.name, key), arr
            for i, name in enumerate(node.inputs):
                if (name and i not in op.packed_inputs and name in model.tensors and name not in seen
                        and model.tensors[name].dtype.kind == "f"):
                    seen.add(name)
                    yield ("raw", name), model.tensors[name]

    def _place(self, where, off, shape):
        if where[0] == "node":
            self._entries[where[1:]] = (off, tuple(shape))
        else:
            self._raw[where[1]] = (off, tuple(shape))

    def _lookup(self, where):
        return self._entries[where[1:]] if where[0] == "node" else self._raw[where[1]]

    def entry(self, node, key):
        return self._entries[(node.name, key)]

    def has_entry(self, node, key):
        return (node.name, key) in self._entries

    def has_raw(self, name):
        return name in self._raw

    def raw(self, name):
        return self._raw[name]


# ---------------------------------------------------------------------- values and buffers
class _Block:
    """One allocation in a work buffer, shared by a value and its aliases (Reshape, Squeeze, ...)."""
    __slots__ = ("arena", "off", "n", "users")

    def __init__(self, arena, off, n):
        self.arena, self.off, self.n, self.users = arena, off, n, 0


class Val:
    """A value during planning: kind 'f' (compute float) or 'i' (int64), a concrete shape, and where it lives
    (space, offset) or its contents when they are known at plan time (``const``; int values and folded shapes)."""
    __slots__ = ("kind", "shape", "space", "off", "const", "block")

    def __init__(self, kind, shape, space=None, off=0, const=None, block=None):
        self.kind, self.shape, self.space, self.off, self.const, self.block = kind, tuple(shape), space, off, const, block

    @property
    def size(self):
        return size_of(self.shape)

    @property
    def rank(self):
        return len(self.shape)


class _Arena:
    """First-fit allocator over one flat buffer (in elements, 16-element aligned)."""

    def __init__(self, space):
        self.space, self.top, self.peak, self.free = space, 0, 0, []

    def alloc(self, n):
        n = _memory.round_up(max(n, 1))
        for k, (off, m) in enumerate(self.free):
            if m >= n:
                if m == n:
                    del self.free[k]
                else:
                    self.free[k] = (off + n, m - n)
                return off
        off = self.top
        self.top += n
        self.peak = max(self.peak, self.top)
        return off

    def release(self, off, n):
        n = _memory.round_up(max(n, 1))
        self.free.append((off, n))
        self.free.sort()
        merged = []
        for o, m in self.free:
            if merged and merged[-1][0] + merged[-1][1] == o:
                merged[-1] = (merged[-1][0], merged[-1][1] + m)
            else:
                merged.append((o, m))
        if merged and merged[-1][0] + merged[-1][1] == self.top:   # give the tail back
            self.top = merged.pop()[0]
        self.free = merged


class _IConst:
    """A reference into the program's constant region, whose offset is known only when the program is finished."""
    __slots__ = ("off",)

    def __init__(self, off):
        self.off = off


# ---------------------------------------------------------------------- the plan

WORK_POOL_SIZE = 4    # idle work-buffer pairs a plan keeps (take_work / give_work; run's and streams' fast paths
#                       take and give them inline)


class Plan:
    """A program and the sizes of its buffers, for one combination of input shapes."""

    def __init__(self, prog, fwork, iwork, fout, inputs, outputs, listing):
        self.prog = prog                # int64: instructions, then int constants
        self.fwork_size = fwork         # elements of the float work buffer
        self.iwork_size = iwork
        self.fout_size = fout
        self.inputs = inputs            # [(name, kind, offset, size)] in F_IN / I_IN order
        self.outputs = outputs          # [(name, kind, offset, shape)] kind 'f': F_OUT, 'i': I_WORK
        self.listing = listing          # human-readable program (Session.program)
        self._pool = []                 # idle (fwork, iwork) pairs: a call takes one, so threads never share

    def take_work(self, dtype):
        try:
            return self._pool.pop()
        except IndexError:
            return (_memory.aligned_empty(max(self.fwork_size, 1), dtype),
                    _memory.aligned_empty(max(self.iwork_size, 1), np.int64))

    def give_work(self, pair):
        if len(self._pool) < WORK_POOL_SIZE:
            self._pool.append(pair)


MAX_VALUE_INPUT = 8   # int inputs declared with at most this many elements may be planned as known values


class NeedsValue(Exception):
    """An op needs an int value at plan time that may come from the small int inputs ``names`` (Session plans
    again with their values known)."""

    def __init__(self, names):
        super().__init__(", ".join(names))
        self.names = names


class Planner:
    """Builds a Plan. Ops call the methods below from their ``plan(node, p)``."""

    def __init__(self, model, weights, dtype, threads, shapes, wanted, stream=None, values=None):
        self.model, self.weights, self.dtype, self.threads = model, weights, np.dtype(dtype), threads
        # the BLAS's threads while this plan runs: one when a threaded kernel runs its own threads, each calling the
        # BLAS for its own part (a BLAS pool of its own would compete with them for the cores)
        self.blas_threads = threads
        self.values = values or {}      # small int inputs planned as known values (require_known, Session)
        self._input_vals = {}           # id(Val) -> name, for the int inputs read at run time
        self.stream = stream            # None, or {node name: {state index: (state offset, shape)}}
        self.call = call_weights.CallLayout(model, weights, shapes, dtype, threads)   # weights fed by the call
        self.vals = {}
        self.fwork, self.iwork, self.fout_top = _Arena(F_WORK), _Arena(I_WORK), 0
        self.code, self.consts, self.patches, self.listing = [], [], [], []
        self.wanted = list(wanted)
        self._memory_limit = _memory.limit_bytes()
        self.node = None
        self._temps = []
        self._node_index = 0
        live_nodes, reads = self._liveness()
        self.live_nodes = live_nodes
        self.last_use = {}
        for k, node in enumerate(live_nodes):
            for name in OPS[node.op].reads(node, stream is not None):
                self.last_use[name] = k
        for name in self.wanted:
            self.last_use[name] = len(live_nodes)   # outputs live to the end
        # inputs, in the model's order, unread ones left out: the first two float ones each in their own slot
        # (F_IN, F_IN + 1), the others concatenated in the third (F_IN + 2); int ones concatenated in I_IN
        self.inputs = []
        fpos = ipos = nf = 0
        for spec in model.inputs:
            if spec.name not in reads and spec.name not in self.wanted:
                continue
            shape = tuple(shapes[spec.name])
            kind = "f" if spec.dtype.startswith("float") else "i"
            self._check_size(size_of(shape), f"input {spec.name!r} of shape {shape}")
            if spec.name in self.values:
                self.vals[spec.name] = Val("i", shape, const=np.asarray(self.values[spec.name],
                                                                        dtype=np.int64).reshape(shape))
            elif kind == "f":
                slot = min(nf, F_IN_SLOTS - 1)
                off = fpos if slot == F_IN_SLOTS - 1 else 0
                self.vals[spec.name] = Val("f", shape, F_IN + slot, off)
                self.inputs.append((spec.name, "f", off, size_of(shape)))
                if slot == F_IN_SLOTS - 1:
                    fpos += size_of(shape)
                nf += 1
            else:
                self.vals[spec.name] = Val("i", shape, I_IN, ipos)
                if all(isinstance(d, int) for d in spec.shape) and size_of(spec.shape) <= MAX_VALUE_INPUT:
                    # declared small (Silero's rank-0 sr), not just small in this call: a plan per distinct value
                    # of a token-id input would be a plan per call
                    self._input_vals[id(self.vals[spec.name])] = spec.name
                self.inputs.append((spec.name, "i", ipos, size_of(shape)))
                ipos += size_of(shape)

    def _liveness(self):
        """The nodes needed for the wanted outputs (and, in stream mode, every recurrent node, whose state must
        advance), and the names they read."""
        needed = set(self.wanted)
        live = []
        for node in reversed(self.model.nodes):
            if any(o in needed for o in node.outputs if o) or (self.stream is not None and OPS[node.op].recurrent):
                live.append(node)
                needed.update(OPS[node.op].reads(node, self.stream is not None))
        live.reverse()
        return live, needed

    # ------------------------------------------------------------------ building
    def build(self):
        for k, node in enumerate(self.live_nodes):
            self.node = node
            self._node_index = self.model.node_index(node)
            OPS[node.op].plan(node, self)
            for blk in self._temps:
                blk.arena.release(blk.off, blk.n)
            self._temps = []
            for name in set(i for i in node.inputs if i) | set(o for o in node.outputs if o):
                if self.last_use.get(name, -1) <= k and name in self.vals:
                    self._drop(name)
        self.node, self._node_index = _Outputs, -1
        outputs = []
        declared = {spec.name: spec for spec in self.model.outputs}
        for name in self.wanted:
            val = self.vals[name]
            _check_declared(declared[name], val)
            if val.kind == "f" and val.space != F_OUT:
                dst = Val("f", val.shape, F_OUT, self._out_alloc(val.size))
                self.copy(val, dst)
                val = dst
            elif val.kind == "i" and (val.space != I_WORK or val.const is not None):
                dst = self.new_temp_like(val, keep=True)
                self.copy(val, dst)
                val = dst
            outputs.append((name, val.kind, val.off, val.shape))
        itemsize = self.dtype.itemsize
        self._check_size(0, "the buffers of this call", (self.fwork.peak + self.fout_top) * itemsize
                         + self.iwork.peak * 8)
        start = THREADS_AT + 1
        end = start + len(self.code)
        try:
            prog = np.array([start, end, self.blas_threads] + self.code + self.consts, dtype=np.int64)
        except OverflowError:
            raise UnsupportedModelError("a size, offset or attribute of this model does not fit in 64 bits") from None
        for pos in self.patches:
            prog[start + pos] += end
        index = {spec.name: k for k, spec in enumerate(self.model.inputs)}
        dtypes = {spec.name: spec.dtype for spec in self.model.outputs}
        plan = Plan(prog, self.fwork.peak, self.iwork.peak, max(self.fout_top, 1), self.inputs, outputs,
                    self.listing)
        # what a call needs, precomputed: which arguments go to F_IN / I_IN, and the output views
        plan.float_args = [index[name] for name, kind, _, _ in self.inputs if kind == "f"]
        # the arguments of each float input slot: one each for the first two, the rest concatenated in the third
        plan.float_slots = [plan.float_args[k:k + 1] for k in range(F_IN_SLOTS - 1)] + \
            [plan.float_args[F_IN_SLOTS - 1:]]
        plan.int_args = [index[name] for name, kind, _, _ in self.inputs if kind == "i"]
        plan.out_views = [(off, off + size_of(shape), tuple(shape)) for _, _, off, shape in outputs]
        plan.out_kinds = [("h", np.dtype(np.float16)) if kind == "f" and dtypes.get(name) == "float16" else
                          (kind, np.dtype(dtypes.get(name, "int64")) if kind == "i" else None)
                          for name, kind, _, _ in outputs]
        plan.float_outputs = all(kind == "f" for kind, _ in plan.out_kinds)
        plan.call = self.call if self.call.nodes else None
        plan.blas_threads = self.blas_threads
        return plan

    def plan_branch(self, nodes, outputs):
        """Plan a branch of the current node (If) in place: its nodes needed for ``outputs``, each value freed
        after its last reader in the branch, then the node's outputs made aliases of the branch's."""
        parent, parent_index, parent_temps = self.node, self._node_index, self._temps
        streaming = self.stream is not None
        needed, live = set(outputs), []
        for node in reversed(nodes):
            if any(o in needed for o in node.outputs if o):
                live.append(node)
                needed.update(OPS[node.op].reads(node, streaming))
        live.reverse()
        local = {o for node in live for o in node.outputs if o}
        last = {name: len(live) for name in outputs}
        for k, node in enumerate(live):
            for name in OPS[node.op].reads(node, streaming):
                if name in local:
                    last[name] = max(last.get(name, -1), k)
        saved = {name: self.last_use.get(name) for name in local}
        for name in local:
            if name in last:
                self.last_use[name] = len(self.live_nodes)     # needed() asks this table
        try:
            for k, node in enumerate(live):
                self.node, self._node_index, self._temps = node, self.model.node_index(node), []
                OPS[node.op].plan(node, self)
                for blk in self._temps:
                    blk.arena.release(blk.off, blk.n)
                for name in set(i for i in node.inputs if i) | set(o for o in node.outputs if o):
                    if name in local and last.get(name, -1) <= k and name in self.vals:
                        self._drop(name)
        finally:
            self.node, self._node_index, self._temps = parent, parent_index, parent_temps
            for name, v in saved.items():
                if v is None:
                    self.last_use.pop(name, None)
                else:
                    self.last_use[name] = v
        for k, name in enumerate(outputs):
            src = self.vals[name]
            self.alias(k, src, src.shape)
        for name in set(outputs) & local:
            self._drop(name)

    def _drop(self, name):
        val = self.vals.get(name)
        if val is not None and val.block is not None:
            val.block.users -= 1
            if val.block.users == 0:
                val.block.arena.release(val.block.off, val.block.n)
            val.block = None

    def _check_size(self, n, what, nbytes=None):
        """Refuse a buffer of ``n`` elements (or ``nbytes``) before anything is allocated."""
        why = _memory.too_big(n * 8 if nbytes is None else nbytes, self._memory_limit)
        if why:
            if self.node is None or self.node is _Outputs:
                raise InvalidInputError(f"{what} {why}")
            raise self.error(f"{what} {why}")

    def check_size(self, n, what):
        """Refuse (an InvalidInputError naming the node) ``n`` elements too many for this machine, before an op
        builds anything of that size in Python."""
        self._check_size(n, what)

    def _out_alloc(self, n):
        self._check_size(n, f"an output of {n} elements")
        off = self.fout_top
        self.fout_top += _memory.round_up(max(n, 1))
        return off

    # ------------------------------------------------------------------ for ops
    def error(self, msg):
        node = self.node
        return InvalidInputError(f"node {node.name!r} ({node.op}): {msg}")

    def unsupported(self, msg):
        node = self.node
        return UnsupportedModelError(f"node {node.name!r} ({node.op}): {msg}")

    def val(self, name):
        """The value called ``name``: a graph input, a model tensor or an earlier node's output."""
        if name in self.vals:
            return self.vals[name]
        t = self.model.tensors.get(name)
        if t is None:
            raise KeyError(name)
        if t.dtype.kind == "f":
            if not self.weights.has_raw(name):
                raise self.unsupported(f"the constant {name!r} is not available to this op")
            off, shape = self.weights.raw(name)
            v = Val("f", shape, F_CONST, off)         # read by the kernels from the packed buffer only
        else:
            v = Val("i", t.shape, const=np.asarray(t, dtype=np.int64))
        self.vals[name] = v
        return v

    def input(self, index):
        """The node's input ``index`` as a Val, or None when absent."""
        ins = self.node.inputs
        if index >= len(ins) or not ins[index]:
            return None
        return self.val(ins[index])

    def output(self, index, shape, kind="f"):
        """A fresh value for the node's output ``index`` (in F_OUT when it is a graph output the call returns;
        a throwaway buffer when the output is absent or unread)."""
        outs = self.node.outputs
        name = outs[index] if index < len(outs) else ""
        if name and name in self.wanted and kind == "f" and name not in self.vals:
            val = Val("f", shape, F_OUT, self._out_alloc(size_of(shape)))
        else:
            val = self._alloc_val(kind, shape)
            if not name:
                self._temps.append(val.block)     # written by the kernel, read by nobody
        if name:
            self.vals[name] = val                 # freed after its last reader (or at once if it has none)
        return val

    def needed(self, index):
        """Whether output ``index`` of the node is read later or returned (ops may skip computing it if not)."""
        outs = self.node.outputs
        name = outs[index] if index < len(outs) else ""
        return bool(name) and name in self.last_use

    def _alloc_val(self, kind, shape):
        arena = self.fwork if kind == "f" else self.iwork
        n = size_of(shape)
        self._check_size(n, f"a value of shape {tuple(shape)}")
        blk = _Block(arena, arena.alloc(n), n)
        blk.users = 1
        return Val(kind, shape, arena.space, blk.off, block=blk)

    def temp(self, n, kind="f"):
        """Scratch for this node only."""
        val = self._alloc_val(kind, (n,))
        self._temps.append(val.block)
        return val

    def new_temp_like(self, val, keep=False):
        out = self._alloc_val(val.kind, val.shape)
        if not keep:
            self._temps.append(out.block)
        return out

    def alias(self, index, src, shape, offset=0):
        """Output ``index`` is ``src`` with another shape (no copy): Reshape, Squeeze, Unsqueeze, Identity; or,
        with ``offset``, the contiguous part of ``src`` that starts ``offset`` elements in (a Gather of one index)."""
        name = self.node.outputs[index]
        n = size_of(shape)
        if src.const is not None:
            part = src.const.reshape(-1)[offset:offset + n].reshape(shape)
            if src.space is None:
                self.vals[name] = Val(src.kind, shape, const=part)
                return self.vals[name]
        val = Val(src.kind, shape, src.space, src.off + offset, const=None if src.const is None else part,
                  block=src.block)
        if src.block is not None:
            src.block.users += 1
        self.vals[name] = val
        return val

    def fold(self, index, array):
        """Output ``index`` is known now (computed in numpy from known inputs)."""
        array = np.asarray(array)
        kind = "f" if array.dtype.kind == "f" else "i"
        self.vals[self.node.outputs[index]] = Val(kind, array.shape, const=array.astype(
            np.float64 if kind == "f" else np.int64))

    def known(self, val):
        """True when the contents of ``val`` are known at plan time (int constants, folded values)."""
        return val is not None and val.const is not None and val.kind == "i"

    def require_known(self, val, what):
        """The contents of int value ``val``, which this op needs at plan time. If it is computed at run time and
        the model has small int inputs read at run time, NeedsValue (the Session then plans again with their
        values, and keys plans by them); else an UnsupportedModelError."""
        if val is not None and val.const is not None and val.kind == "i":
            return val.const
        # the value may come from small int inputs (Silero's sr reaches its If through Reshape and Gather): plan
        # again with all of them known
        small = [self._input_vals[id(v)] for v in self.vals.values() if id(v) in self._input_vals]
        if small:
            raise NeedsValue(small)
        raise self.unsupported(f"{what} must be known when the model is planned (from shapes, constants or a small "
                               f"integer input), but it is computed from run-time data")

    def float_value(self, val):
        """The numbers of a float value known at plan time (a folded value, or a model tensor in the packed buffer),
        or None."""
        if val is None or val.kind != "f":
            return None
        if val.const is not None and val.space is None:
            return val.const
        if val.space == F_CONST and val.const is None:
            return self.weights.buffer[val.off:val.off + val.size].reshape(val.shape)
        return None

    def fold_value(self, array):
        """A known value that belongs to no node output (a constant an op adds)."""
        array = np.asarray(array)
        kind = "f" if array.dtype.kind == "f" else "i"
        return Val(kind, array.shape, const=array.astype(np.float64 if kind == "f" else np.int64))

    def has_weight(self, key):
        """Whether this node's op packed something under ``key``."""
        return self.weights.has_entry(self.node, key)

    def weight(self, key):
        """(offset, shape) of what this node's op packed under ``key``, in the space ``weight_space()`` names."""
        if self.call.takes(self.node):
            return self.call.entry(self.node, key)
        return self.weights.entry(self.node, key)

    def weight_space(self):
        """Where this node's packed weights are: F_CONST (packed at load), or F_CALL when some of its weights are
        inputs of the call (packed on the call)."""
        return F_CALL if self.call.takes(self.node) else F_CONST

    def state(self, index):
        """Stream mode: (offset, shape) of this node's state ``index`` in the stream's state buffer."""
        return self.stream[self.node.name][index]

    def f64(self, value):
        """A float attribute as an int64 param (its float64 bits)."""
        return int(np.array([value], dtype=np.float64).view(np.int64)[0])

    def ref(self, val):
        """The (space, offset) params of a value, placing plan-time constants where the executor can read them."""
        if val is None:
            return [ABSENT, 0]
        if val.space is None:
            if val.kind == "i":
                val.space, val.off = I_CONST, _IConst(len(self.consts))
                self.consts.extend(int(v) for v in val.const.reshape(-1))
            else:
                dst = self._alloc_val("f", val.shape)
                self._temps.append(dst.block)
                bits = val.const.astype(np.float64).reshape(-1).view(np.int64)
                self.emit(FILL_CONST, "const", *self.ref(dst), int(val.size), *[int(b) for b in bits])
                return [dst.space, dst.off]
        return [val.space, val.off]

    def emit(self, opcode, what, *params):
        """Append one instruction: [opcode, length, node index, params...]."""
        flat = []
        for p in params:
            if isinstance(p, _IConst):
                self.patches.append(len(self.code) + 3 + len(flat))
                flat.append(p.off)
            else:
                flat.append(int(p))
        self.code.extend([opcode, 3 + len(flat), self._node_index, *flat])
        self.listing.append(f"{what:<40s} # node {self.node.name!r} ({self.node.op})")

    def copy(self, src, dst, shape=None, sbase=0, sstrides=None, dbase=0, dstrides=None):
        """dst <- src as a strided copy over ``shape`` (default: src's whole shape, contiguous on both sides);
        ``sbase``/``dbase`` are element offsets added to the two values' own."""
        shape = list(src.shape if shape is None else shape)
        sstrides = contiguous_strides(shape) if sstrides is None else list(sstrides)
        dstrides = contiguous_strides(shape) if dstrides is None else list(dstrides)
        shape, sstrides, dstrides = merge_axes(shape, sstrides, dstrides)
        if len(shape) > MAX_RANK:
            raise self.unsupported(f"tensors of rank {len(shape)} (at most {MAX_RANK})")
        pad = MAX_RANK - len(shape)
        s_space, s_off = self.ref(src)
        d_space, d_off = self.ref(dst)
        self.emit(COPY if src.kind == "f" else INT_COPY, f"copy {tuple(shape)}", s_space, _shift(s_off, sbase),
                  d_space, _shift(d_off, dbase), *([1] * pad + shape), *([0] * pad + sstrides),
                  *([0] * pad + dstrides))


def _check_declared(spec, val):
    """A graph output must be what the model declares: its rank, fixed dimensions and kind (float or int)."""
    kind = "f" if spec.dtype.startswith("float") else "i"
    if val.rank != len(spec.shape) or val.kind != kind or any(
            isinstance(d, int) and d != n for d, n in zip(spec.shape, val.shape)):
        raise ModelFileError(f"graph output {spec.name!r} is declared as {spec.dtype} "
                             f"[{', '.join(map(str, spec.shape))}], but the graph computes "
                             f"{'a float' if val.kind == 'f' else 'an int'} tensor of shape {val.shape}")


def _shift(off, by):
    return _IConst(off.off + by) if isinstance(off, _IConst) else off + by


class _Outputs:
    """Stands in for a node in the listing of the final copies into the output buffer."""
    name, op, inputs, outputs = "outputs", "Output", [], []
