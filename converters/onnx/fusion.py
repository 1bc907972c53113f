"""Fusions of the converted graph: computations an exporter spells out in many small nodes that the engine runs as
one instruction. They run once, after every node is converted (importer.convert), over the top-level nodes and
each If branch. A rewrite applies only where every intermediate value is read by the pattern alone (not by another
node, a branch or a graph output), and computes the same function up to float32 rounding.

* ``stft_magnitude``: a Conv whose weights are a windowed DFT basis, the real and imaginary halves sliced off its
  output (the same frames of both), each squared (Pow 2 or x * x), added, Sqrt: one Conv with ``magnitude`` (an FFT
  that writes the magnitudes; engine/ops/layers.py); frames dropped from the start become its ``first_output``
  (never computed), any other slice stays a Slice after it. Silero VAD's STFT.
* ``reflect_pad``: a reflect Pad of the last axis in front of a Conv without pads (an Unsqueeze between them
  allowed): the Conv's own pads, mirrored (pad_mode reflect).
* ``conv_relu``: a Relu after a Conv (1-D) or Conv2D: its ``relu``.
* ``gather_before_transpose``: a Transpose read only by a Gather of one constant index (torch's batch_first
  ``output[:, -1]``: the LSTM's (T, B, H) output transposed to (B, T, H), then one time step taken): the Gather
  takes that index on the Transpose's input instead, and only what is left is transposed, when anything is (a
  Gather of one index on the outer axis is a view; the Transpose copied all T steps to keep one).
* ``lstm_cell``: an LSTM cell written out, as torch exports ``nn.LSTMCell`` or a hand-written cell: the products
  x @ Wx (+ bx) and h @ Wh (+ bh) added, split in four, three Sigmoids and a Tanh, c' = f * c + i * g and
  h' = o * tanh(c'): one LSTM node of one step (Silero VAD's ifless export). The gates' roles are read off the
  graph's structure, not their order in the split.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from engine import recurrent_spec
from engine.model import BRANCHES, Node
from engine.ops.layers import dft_basis


def fuse(ctx):
    """Apply every fusion to ctx.nodes and the If branches in it, in place."""
    reads = _reads(ctx)
    for nodes in _node_lists(ctx.nodes):
        _Rewriter(ctx, nodes, reads).run()


def _whole(entry):
    """A slice [axis, start, end, step] that keeps its whole axis (exporters write 0:INT64_MAX)."""
    _, start, end, step = entry
    return start in (0, None) and (end is None or end >= 2 ** 31 - 1) and step == 1


def _node_lists(nodes):
    yield nodes
    for n in nodes:
        if n.op == "If":
            for key in BRANCHES:
                yield from _node_lists(n.attrs[key]["nodes"])


def _reads(ctx) -> Counter:
    """How many times each value is read: node inputs (If nodes list what their branches read), branch outputs and
    graph outputs."""
    reads = Counter(vi.name for vi in ctx.graph.output)

    def walk(nodes):
        for n in nodes:
            reads.update(i for i in n.inputs if i)
            if n.op == "If":
                for key in BRANCHES:
                    reads.update(n.attrs[key]["outputs"])
                    walk(n.attrs[key]["nodes"])
    walk(ctx.nodes)
    return reads


class _Rewriter:
    def __init__(self, ctx, nodes, reads):
        self.ctx, self.nodes, self.reads = ctx, nodes, reads
        self.producer = {o: n for n in nodes for o in n.outputs if o}
        self.removed = set()                 # ids of the nodes rewrites took

    def run(self):
        for node in list(self.nodes):
            if id(node) in self.removed:
                continue
            if node.op == "Conv":
                self._reflect_pad(node)
            elif node.op == "Relu":
                self._conv_relu(node)
            elif node.op == "Sqrt":
                self._stft_magnitude(node)
            elif node.op == "Split" and len(node.outputs) == 4:
                self._lstm_cell(node)
            elif node.op == "Gather":
                self._gather_before_transpose(node)

    # ------------------------------------------------------------------ helpers
    def _only(self, name, op=None):
        """The node of this list producing ``name`` (of op ``op``), if the pattern is its only reader."""
        n = self.producer.get(name)
        if n is None or self.reads[name] != 1 or (op is not None and n.op not in op):
            return None
        return n

    def _const(self, name):
        return self.ctx.tensors.get(name)

    def _replace(self, remove, at, new):
        """Drop the nodes ``remove`` and put ``new`` where ``at`` was."""
        gone = {id(n) for n in remove} | {id(at)}
        self.removed |= gone
        kept = []
        for n in self.nodes:
            if n is at:
                kept.extend(new)
            elif id(n) not in gone:
                kept.append(n)
        self.nodes[:] = kept
        for n in new:
            for o in n.outputs:
                if o:
                    self.producer[o] = n

    def _squared(self, name):
        """(x, node) when ``name`` is x ** 2 (Pow by a constant 2, or x * x) read only here."""
        n = self._only(name, ("Pow", "Mul"))
        if n is None or len(n.inputs) != 2:
            return None
        if n.op == "Mul":
            return (n.inputs[0], n) if n.inputs[0] == n.inputs[1] else None
        e = self._const(n.inputs[1])
        return (n.inputs[0], n) if e is not None and e.size == 1 and float(e.reshape(-1)[0]) == 2.0 else None

    # ------------------------------------------------------------------ Conv: reflect pads, Relu
    def _reflect_pad(self, conv):
        """Pad(reflect, the last axis only) [-> Unsqueeze(axes [1]) of a rank-2 value] -> Conv with no pads: the
        Conv pads with pad_mode reflect."""
        if conv.attrs.get("pads") != [0, 0] or conv.attrs.get("pad_mode", "constant") != "constant":
            return
        chain = []
        src = conv.inputs[0]
        n = self._only(src, ("Unsqueeze",))
        if n is not None:
            if n.attrs.get("axes") != [1] or len(self.ctx.shapes.get(n.inputs[0], [])) != 2:
                return
            chain.append(n)
            src = n.inputs[0]
        pad = self._only(src, ("Pad",))
        if pad is None or pad.attrs.get("mode") != "reflect" or "pads" not in pad.attrs or len(pad.inputs) != 1:
            return
        rank = len(self.ctx.shapes[pad.inputs[0]])
        axes = [ax + rank if ax < 0 else ax for ax in pad.attrs.get("axes", list(range(rank)))]
        pads = pad.attrs["pads"]
        if len(pads) != 2 * len(axes):
            return
        begin = dict(zip(axes, pads[:len(axes)]))
        end = dict(zip(axes, pads[len(axes):]))
        last = rank - 1
        if any(begin[ax] or end[ax] for ax in axes if ax != last) or min(begin.get(last, 0), end.get(last, 0)) < 0:
            return
        x = pad.inputs[0]
        if chain:                            # the Unsqueeze now reads the unpadded input
            u = chain[0]
            u.inputs[0] = x
            self.ctx.shapes[u.outputs[0]] = [self.ctx.shapes[x][0], 1, self.ctx.shapes[x][1]]
        else:
            conv.inputs[0] = x
        conv.attrs.update(pads=[begin.get(last, 0), end.get(last, 0)], pad_mode="reflect")
        self._drop(pad)

    def _conv_relu(self, relu):
        conv = self._only(relu.inputs[0], ("Conv", "Conv2D"))
        if conv is None or conv.attrs.get("relu"):
            return
        conv.attrs["relu"] = True
        conv.outputs[0] = relu.outputs[0]
        self.producer[relu.outputs[0]] = conv
        self._drop(relu)

    # ------------------------------------------------------------------ Gather through Transpose
    def _gather_before_transpose(self, gather):
        """Transpose(perm) -> Gather(axis, one constant index): Gather(perm[axis]) on the Transpose's input, then
        the Transpose of the other axes (perm without perm[axis], renumbered), left out when it keeps their order.
        The same values: gathering one index moves no element of the rest."""
        if gather.attrs.get("index_shape") != [] or len(gather.inputs) != 2 or self._const(gather.inputs[1]) is None:
            return
        tr = self._only(gather.inputs[0], ("Transpose",))
        if tr is None:
            return
        perm, axis = list(tr.attrs["perm"]), gather.attrs["axis"]
        picked = perm[axis]
        rest = [p - (p > picked) for p in perm if p != picked]
        x, out = tr.inputs[0], gather.outputs[0]
        ctx = self.ctx
        if rest == sorted(rest):
            self._replace([tr], gather, [Node("Gather", gather.name, [x, gather.inputs[1]], [out],
                                              dict(gather.attrs, axis=picked))])
            return
        mid = self._value(f"{x}.gathered")
        shape = list(ctx.shapes[x])
        ctx.shapes[mid], ctx.dtypes[mid] = shape[:picked] + shape[picked + 1:], ctx.dtypes[x]
        self._replace([tr], gather, [Node("Gather", gather.name, [x, gather.inputs[1]], [mid],
                                          dict(gather.attrs, axis=picked)),
                                     Node("Transpose", tr.name, [mid], [out], {"perm": rest})])

    def _drop(self, node):
        self.removed.add(id(node))
        self.nodes[:] = [n for n in self.nodes if n is not node]

    # ------------------------------------------------------------------ STFT magnitude
    def _slices_to(self, name):
        """(the value a chain of Slice and Identity nodes starts from, the chain's nodes, its [axis, start, end,
        step] entries, slices of a whole axis left out)."""
        chain, entries = [], []
        n = self.producer.get(name)
        while n is not None and n.op in ("Slice", "Identity"):
            chain.append(n)
            if n.op == "Slice":
                entries = [list(e) for e in n.attrs["slices"] if not _whole(e)] + entries
            name = n.inputs[0]
            n = self.producer.get(name)
        return name, chain, entries

    def _closed(self, nodes, out):
        """Every value the ``nodes`` make, but ``out``, is read by them alone."""
        made = {o for n in nodes for o in n.outputs if o and o != out}
        return all(self.reads[v] == sum(n.inputs.count(v) for n in nodes) for v in made)

    def _stft_magnitude(self, sqrt):
        add = self._only(sqrt.inputs[0], ("Add",))
        if add is None or len(add.inputs) != 2:
            return
        squares = [self._squared(v) for v in add.inputs]
        if None in squares:
            return
        (src, chain_a, ent_a), (src_b, chain_b, ent_b) = (self._slices_to(x) for x, _ in squares)
        conv = self.producer.get(src)
        if src != src_b or conv is None or conv.op != "Conv" or conv.attrs.get("magnitude") or \
                conv.attrs.get("group") != 1 or conv.attrs.get("dilations") != [1]:
            return
        W = self._const(conv.inputs[1])
        if W is None or dft_basis(W) is None:
            return
        M = W.shape[0]
        nb = M // 2
        halves = []
        for entries in (ent_a, ent_b):
            if len({e[0] for e in entries}) != len(entries):
                return                       # two slices of one axis: not composed here
            ch = [e for e in entries if e[0] == 1]
            if len(ch) != 1:
                return
            halves.append(slice(*ch[0][1:]).indices(M))
        others = [sorted(tuple(e) for e in entries if e[0] != 1) for entries in (ent_a, ent_b)]
        pattern = list({id(n): n for n in [conv, *chain_a, *chain_b, *(n for _, n in squares), add, sqrt]}.values())
        if sorted(halves) != [(0, nb, 1), (nb, M, 1)] or others[0] != others[1] or \
                not self._closed(pattern, sqrt.outputs[0]):
            return
        ctx = self.ctx
        attrs = dict(conv.attrs, magnitude=True)
        rest = []
        for e in others[0]:
            if e[0] == 2 and e[3] == 1 and e[1] is not None and e[1] >= 0 and (e[2] is None or e[2] >= 2 ** 31 - 1):
                attrs["first_output"] = attrs.get("first_output", 0) + e[1]    # frames k: on: not computed
            else:
                rest.append(e)
        others = [rest]
        out = sqrt.outputs[0]
        mid = out if not others[0] else self._value(f"{src}.magnitude")
        shape = list(ctx.shapes[src])
        ctx.shapes[mid], ctx.dtypes[mid] = [shape[0], nb, shape[2]], ctx.dtypes[src]
        new = [Node("Conv", conv.name, list(conv.inputs), [mid], attrs)]
        if others[0]:
            new.append(Node("Slice", self.ctx.node_name(f"{sqrt.name}/frames"), [mid], [out],
                            {"slices": [list(e) for e in others[0]]}))
        self._replace(pattern, sqrt, new)

    def _value(self, base):
        name, k = base, 1
        while name in self.ctx.shapes or name in self.ctx.tensors or name in self.producer:
            k += 1
            name = f"{base}#{k}"
        return name

    # ------------------------------------------------------------------ LSTM cell
    def _affine(self, name):
        """(v, W (In, G), b (G,) or None, nodes) when ``name`` is v @ W (+ b), W and b constants, read only here."""
        n = self._only(name, ("Add", "MatMul"))
        if n is None or len(n.inputs) != 2:
            return None
        b, nodes = None, [n]
        if n.op == "Add":
            for k in (0, 1):
                bias = self._const(n.inputs[k])
                mm = self._only(n.inputs[1 - k], ("MatMul",))
                if bias is not None and mm is not None and bias.ndim == 1:
                    b, n = bias, mm
                    nodes.append(mm)
                    break
            else:
                return None
        W = self._const(n.inputs[1])
        if W is None or W.ndim != 2 or W.dtype.kind != "f" or n.inputs[0] in self.ctx.tensors or \
                (b is not None and b.shape != (W.shape[1],)):
            return None
        return n.inputs[0], W, b, nodes

    def _readers_in_list(self, name):
        return [n for n in self.nodes if name in n.inputs and id(n) not in self.removed]

    def _mul_with(self, name, want):
        """The Mul reading ``name`` (its only reader), and its other operand, when that operand is in ``want``
        (a dict value -> anything) or ``want`` is None."""
        rs = self._readers_in_list(name)
        if len(rs) != 1 or self.reads[name] != 1 or rs[0].op != "Mul" or len(rs[0].inputs) != 2:
            return None, None
        m = rs[0]
        other = m.inputs[1] if m.inputs[0] == name else m.inputs[0]
        if other == name or (want is not None and other not in want):
            return None, None
        return m, other

    def _lstm_cell(self, split):
        ctx = self.ctx
        x = split.inputs[0]
        xs = ctx.shapes.get(x)
        sizes = split.attrs.get("sizes")
        if xs is None or len(xs) != 2 or split.attrs.get("axis") not in (1, -1) or len(set(sizes)) != 1:
            return
        H = sizes[0]
        total = self._only(x, ("Add",))
        if total is None or len(total.inputs) != 2:
            return
        terms = [self._affine(v) for v in total.inputs]
        if None in terms or any(W.shape[1] != 4 * H for _, W, _, _ in terms):
            return
        acts = {}                             # split output -> (activation node, its output)
        for s in split.outputs:
            a = self._readers_in_list(s)
            if self.reads[s] != 1 or len(a) != 1 or a[0].op not in ("Sigmoid", "Tanh"):
                return
            acts[s] = a[0]
        tanhs = [s for s in split.outputs if acts[s].op == "Tanh"]
        if len(tanhs) != 1:
            return
        sig = {acts[s].outputs[0]: s for s in split.outputs if acts[s].op == "Sigmoid"}
        g = tanhs[0]
        m_ig, i_out = self._mul_with(acts[g].outputs[0], sig)            # i * g
        if m_ig is None:
            return
        rs = self._readers_in_list(m_ig.outputs[0])
        c_add = rs[0] if len(rs) == 1 and self.reads[m_ig.outputs[0]] == 1 and rs[0].op == "Add" else None
        if c_add is None or len(c_add.inputs) != 2:
            return
        fc = c_add.inputs[1] if c_add.inputs[0] == m_ig.outputs[0] else c_add.inputs[0]
        m_fc = self._only(fc, ("Mul",))                                   # f * c
        if m_fc is None or len(m_fc.inputs) != 2:
            return
        f_out = next((v for v in m_fc.inputs if v in sig and v != i_out), None)
        if f_out is None:
            return
        c_prev = m_fc.inputs[1] if m_fc.inputs[0] == f_out else m_fc.inputs[0]
        c_new = c_add.outputs[0]
        tc = [n for n in self._readers_in_list(c_new) if n.op == "Tanh"]
        if len(tc) != 1:
            return
        m_oh, o_out = self._mul_with(tc[0].outputs[0], {v: 0 for v in sig if v not in (i_out, f_out)})
        if m_oh is None:
            return
        h_new = m_oh.outputs[0]
        roles = {"i": sig[i_out], "o": sig[o_out], "f": sig[f_out], "c": g}   # ONNX gate order i, o, f, c
        cols = {s: slice(k * H, (k + 1) * H) for k, s in enumerate(split.outputs)}
        # which product is the step's input and which the previous h: for one step either works; the state must
        # have H columns and every operand the split's batch
        order = sorted(range(2), key=lambda k: terms[k][1].shape[0] == H)
        (xv, Wx, bx, _), (hv, Wh, bh, _) = terms[order[0]], terms[order[1]]
        if Wh.shape[0] != H or c_prev in ctx.tensors:
            return
        for v in (xv, hv, c_prev):
            vs = ctx.shapes.get(v)
            if vs is None or len(vs) != 2 or not ctx.S.equal(vs[0], xs[0]):
                return
        for v in (c_prev, hv):               # H columns: fixed, or a size the file declares as H (bound now)
            d = ctx.shapes[v][1]
            if not (ctx.S.equal(d, H) or ctx.soft_equal(d, H)):
                return
        for v in (c_prev, hv):
            ctx.S.unify(ctx.shapes[v][1], H, f"node {split.name!r} (an LSTM cell's state)")
        dtype = ctx.dtypes[x]

        def gates(M):                          # (rows, 4H) in the split's order -> (4H, rows) in ONNX's
            return np.concatenate([M[..., cols[roles[r]]] for r in "iofc"], axis=-1).T

        zeros = np.zeros(4 * H)
        B = np.concatenate([gates(bx if bx is not None else zeros), gates(bh if bh is not None else zeros)])
        base = ctx.base_name(split, f"lstm_cell{len(ctx.nodes)}")
        W = ctx.store(base + ".W", np.ascontiguousarray(gates(Wx)[None].astype(dtype)))
        R = ctx.store(base + ".R", np.ascontiguousarray(gates(Wh)[None].astype(dtype)))
        Bt = ctx.store(base + ".B", np.ascontiguousarray(B[None].astype(dtype)))
        X3, h0, c0, hN, cN = (self._value(f"{base}.{k}") for k in ("X", "h0", "c0", "Y_h", "Y_c"))
        Bn = xs[0]
        for v, src, last in ((X3, xv, ctx.shapes[xv][1]), (h0, hv, H), (c0, c_prev, H), (hN, None, H),
                             (cN, None, H)):
            ctx.shapes[v], ctx.dtypes[v] = [1, Bn, last], dtype
        attrs = recurrent_spec.canonical("LSTM", {"hidden_size": H})
        new = [Node("Unsqueeze", ctx.node_name(f"{base}/X"), [xv], [X3], {"axes": [0]}),
               Node("Unsqueeze", ctx.node_name(f"{base}/h0"), [hv], [h0], {"axes": [0]}),
               Node("Unsqueeze", ctx.node_name(f"{base}/c0"), [c_prev], [c0], {"axes": [0]}),
               Node("LSTM", ctx.node_name(base), [X3, W, R, Bt, "", h0, c0], ["", hN, cN], attrs),
               Node("Squeeze", ctx.node_name(f"{base}/h"), [hN], [h_new], {"axes": [0]}),
               Node("Squeeze", ctx.node_name(f"{base}/c"), [cN], [c_new], {"axes": [0]})]
        remove = [*(n for t in terms for n in t[3]), total, split, *acts.values(), m_ig, m_fc, c_add, tc[0], m_oh]
        self._replace(remove, c_add, new)
