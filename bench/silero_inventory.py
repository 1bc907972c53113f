"""Inventory of the Silero VAD ONNX files: what an engine must support to run them.

    python -m bench.silero_inventory                 # the six files of the installed silero-vad package
    python -m bench.silero_inventory a.onnx b.onnx   # other files
    python -m bench.silero_inventory --no-trace      # static part only (no reference-evaluator runs)

For every file it prints (as Markdown): opsets and domains, the input/output signature, the dtypes of all
tensors (initializers and Constant nodes, nested subgraphs included; whether float16 occurs, and whether the
float32 weights happen to be exactly representable in float16), the op counts per graph, every attribute value
used per op type, per-node details of the ops that matter for an implementation (Pad, Conv, LSTM, Gemm, Split,
Slice, Gather, Reshape, Squeeze/Unsqueeze, ReduceMean, ...), with their parameter tensors folded where they are
constant and otherwise labelled by what they depend on, every If node with its condition written out and what
that condition depends on, and the values that depend only on the `sr` input.

Then, unless --no-trace, it runs each file in onnx's ReferenceEvaluator on the feeds silero-vad's own
OnnxWrapper uses (batch 1, 64 + 512 samples at 16 kHz, 32 + 256 at 8 kHz where the file takes 8 kHz) and prints
which branch every If took, the run-time values of Pad's pads and Slice's parameters, and the op sequence that
actually executed; finally a cross-file table of the weight tensors that are byte-identical between files.

Needs onnx and numpy; silero-vad only to locate its files when none are given.
"""
from __future__ import annotations

import argparse
import hashlib
import os
from collections import Counter, defaultdict

import numpy as np
import onnx
from onnx import AttributeProto, numpy_helper

SILERO_FILES = [
    "silero_vad.onnx",
    "silero_vad_16k_op15.onnx",
    "silero_vad_half.onnx",
    "silero_vad_op18_ifless.onnx",
    "silero_vad_openvino_16k.onnx",
    "silero_vad_16k_sequence.onnx",
]

DTYPE = {v: k for k, v in onnx.TensorProto.DataType.items()}


def silero_data_dir() -> str:
    import importlib.util

    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("silero-vad is not installed: pip install --no-deps silero-vad==6.2.3")
    return os.path.join(list(spec.submodule_search_locations)[0], "data")


# ---------------------------------------------------------------- helpers

def short(name: str, n: int = 48) -> str:
    """Exporter names are long (If_0_then_branch__Inline_0__/decoder/rnn/...): keep the informative tail."""
    for p in ("If_0_then_branch__Inline_0_", "If_0_else_branch__Inline_0_"):
        name = name.replace(p, "T" if "then" in p else "E")
    if "::" in name:
        name = name.split("::", 1)[1].replace("If_0_then_branch__Inline_0_", "T")
    return name if len(name) <= n else "..." + name[-(n - 3):]


def attr_value(a: AttributeProto):
    if a.type == AttributeProto.GRAPH:
        return f"<graph {len(a.g.node)} nodes>"
    if a.type == AttributeProto.TENSOR:
        arr = numpy_helper.to_array(a.t)
        if arr.size <= 4:
            return f"{arr.dtype}{list(arr.shape)} {arr.tolist()}"
        return f"<{arr.dtype}{list(arr.shape)}>"
    v = onnx.helper.get_attribute_value(a)
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, list):
        v = [x.decode() if isinstance(x, bytes) else x for x in v]
    if a.name == "to":
        v = f"{v} ({DTYPE.get(v, '?')})"
    return v


def fmt_arr(v) -> str:
    if v is None:
        return "?"
    a = np.asarray(v)
    if a.size > 8:
        return f"<{a.dtype}{list(a.shape)}>"
    lst = a.tolist()
    if isinstance(lst, list):
        lst = [("INT64_MAX" if x == 2**63 - 1 else "-INT64_MAX" if x == -(2**63 - 1) else x) for x in lst]
    return str(lst)


def type_str(t: onnx.TypeProto) -> str:
    tt = t.tensor_type
    dims = []
    for d in tt.shape.dim:
        dims.append(str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?"))
    name = DTYPE[tt.elem_type].lower()
    return f"{name}[{', '.join(dims)}]" if tt.HasField("shape") else f"{name}[?rank]"


def walk(graph, path="main", depth=0):
    """Yield (path, depth, graph) for the graph and every nested subgraph; a path reads e.g.
    main/If#1.then/If#2.else (the k-th If node of its graph, counted from 1)."""
    yield path, depth, graph
    count = Counter()
    for node in graph.node:
        count[node.op_type] += 1
        for a in node.attribute:
            subs = [a.g] if a.type == AttributeProto.GRAPH else list(a.graphs)
            for g in subs:
                yield from walk(g, f"{path}/{node.op_type}#{count[node.op_type]}.{a.name.replace('_branch', '')}",
                                depth + 1)


def all_nodes(graph):
    for path, depth, g in walk(graph):
        for node in g.node:
            yield path, depth, node


# ---------------------------------------------------------------- static analysis

class Static:
    """Constant folding of the small integer subgraphs, and what every value depends on."""

    FOLD = {"Constant", "Identity", "Concat", "Reshape", "Slice", "Transpose", "Cast", "Unsqueeze", "Squeeze",
            "ConstantOfShape", "Mul", "Sub", "Add", "Gather", "Shape", "Equal", "Not", "Size"}

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.const: dict[str, np.ndarray] = {}
        self.deps: dict[str, frozenset] = {}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.inputs = [i.name for i in model.graph.input]
        for i in self.inputs:
            self.deps[i] = frozenset({(i, "value")})
        self._graph(model.graph)

    def _graph(self, g):
        for t in g.initializer:
            self.const[t.name] = numpy_helper.to_array(t)
            self.deps[t.name] = frozenset()
        for node in g.node:
            for o in node.output:
                self.producer[o] = node
            sub_deps = frozenset()
            for a in node.attribute:
                subs = [a.g] if a.type == AttributeProto.GRAPH else list(a.graphs)
                for sg in subs:
                    self._graph(sg)
                    for o in sg.output:
                        sub_deps |= self.deps.get(o.name, frozenset())
            ins = [self.deps.get(i, frozenset()) for i in node.input if i]
            d = frozenset().union(*ins) if ins else frozenset()
            if node.op_type in ("Shape", "Size"):
                d = frozenset((n, "shape") for n, _ in d)
            d |= sub_deps
            for o in node.output:
                self.deps[o] = d
            self._fold(node)

    def _fold(self, node):
        if node.op_type not in self.FOLD:
            return
        ins = [self.const.get(i) if i else None for i in node.input]
        at = {a.name: a for a in node.attribute}
        try:
            if node.op_type == "Constant":
                out = numpy_helper.to_array(at["value"].t) if "value" in at else None
            elif node.op_type == "Shape" and ins[0] is not None:
                out = np.array(ins[0].shape, dtype=np.int64)
            elif any(x is None for i, x in zip(node.input, ins) if i):
                return
            elif node.op_type == "Identity":
                out = ins[0]
            elif node.op_type == "Concat":
                out = np.concatenate([np.atleast_1d(x) for x in ins], axis=at["axis"].i)
            elif node.op_type == "Reshape":
                shape = [d if d != 0 else ins[0].shape[k] for k, d in enumerate(ins[1].tolist())]
                out = ins[0].reshape(shape)
            elif node.op_type == "Slice":
                data, starts, ends = ins[0], ins[1], ins[2]
                axes = ins[3] if len(ins) > 3 and ins[3] is not None else np.arange(len(starts))
                steps = ins[4] if len(ins) > 4 and ins[4] is not None else np.ones(len(starts), np.int64)
                sl = [slice(None)] * data.ndim
                for s, e, ax, st in zip(starts.tolist(), ends.tolist(), axes.tolist(), steps.tolist()):
                    sl[ax] = slice(s, e, st)
                out = data[tuple(sl)]
            elif node.op_type == "Transpose":
                out = np.transpose(ins[0], [int(p) for p in at["perm"].ints])
            elif node.op_type == "Cast":
                out = ins[0].astype(onnx.helper.tensor_dtype_to_np_dtype(at["to"].i))
            elif node.op_type in ("Unsqueeze", "Squeeze"):
                if len(ins) > 1 and ins[1] is not None:
                    axes = ins[1].tolist()
                else:
                    axes = list(at["axes"].ints) if "axes" in at else None
                x = ins[0]
                if node.op_type == "Unsqueeze":
                    for ax in sorted(a % (x.ndim + len(axes)) for a in axes):
                        x = np.expand_dims(x, ax)
                    out = x
                else:
                    out = np.squeeze(x, axis=tuple(axes) if axes is not None else None)
            elif node.op_type == "ConstantOfShape":
                v = numpy_helper.to_array(at["value"].t) if "value" in at else np.zeros(1, np.float32)
                out = np.full(ins[0].tolist(), v.reshape(-1)[0], dtype=v.dtype)
            elif node.op_type in ("Mul", "Sub", "Add", "Equal"):
                f = {"Mul": np.multiply, "Sub": np.subtract, "Add": np.add, "Equal": np.equal}[node.op_type]
                out = np.asarray(f(ins[0], ins[1]))
            elif node.op_type == "Not":
                out = np.logical_not(ins[0])
            elif node.op_type == "Size":
                out = np.array(ins[0].size, np.int64)
            elif node.op_type == "Gather":
                out = np.take(ins[0], ins[1], axis=at["axis"].i if "axis" in at else 0)
            else:
                return
        except Exception:  # a fold that does not apply: leave the value unknown
            return
        if out is not None:
            self.const[node.output[0]] = np.asarray(out)

    def label(self, name: str) -> str:
        """What a value depends on: const, or e.g. 'value(sr)', 'shape(input)'."""
        if not name:
            return "-"
        if name in self.const and not self.deps.get(name):
            return "const"
        d = self.deps.get(name, frozenset())
        if not d:
            return "const"
        parts = sorted(f"{k}({n})" for n, k in d)
        return " + ".join(parts)

    def param(self, name: str) -> str:
        """A parameter input: its folded value, or what it depends on."""
        if not name:
            return "-"
        if name in self.const and not self.deps.get(name):
            return fmt_arr(self.const[name])
        return f"run-time[{self.label(name)}]"

    def expr(self, name: str, depth: int = 7) -> str:
        """The expression that computes a (small) value, back to graph inputs and constants."""
        if name in self.inputs:
            return name
        if name in self.const and not self.deps.get(name):
            return fmt_arr(self.const[name])
        node = self.producer.get(name)
        if node is None:
            return short(name, 30)
        if depth == 0:
            return f"{node.op_type}(...)"
        extra = ""
        for a in node.attribute:
            if a.name in ("axis", "to", "perm"):
                extra += f", {a.name}={attr_value(a)}"
        if node.op_type == "If":
            return f"If({self.expr(node.input[0], depth - 1)})->{short(name, 24)}"
        args = ", ".join(self.expr(i, depth - 1) for i in node.input if i)
        return f"{node.op_type}({args}{extra})"


# ---------------------------------------------------------------- report

DETAIL_OPS = ["Pad", "Conv", "LSTM", "Gemm", "Split", "Slice", "Gather", "Reshape", "Squeeze", "Unsqueeze",
              "ReduceMean", "Transpose", "Concat", "ConstantOfShape", "Pow", "Shape", "Size", "Cast", "Mul",
              "Sub", "Add", "Equal", "Not"]


def tensor_inventory(model, st: Static, out):
    tensors = []  # (where, name, array)
    for t in model.graph.initializer:
        tensors.append(("initializer", t.name, numpy_helper.to_array(t)))
    for path, depth, node in all_nodes(model.graph):
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.type == AttributeProto.TENSOR:
                    tensors.append((f"Constant@{path}", node.output[0], numpy_helper.to_array(a.t)))
                elif a.name != "value":
                    tensors.append((f"Constant.{a.name}@{path}", node.output[0], np.asarray(attr_value(a))))
        for a in node.attribute:  # tensor attributes of other ops (ConstantOfShape value)
            if a.type == AttributeProto.TENSOR and node.op_type != "Constant":
                tensors.append((f"{node.op_type}.{a.name}", node.output[0], numpy_helper.to_array(a.t)))
    by_dtype = Counter()
    elems = Counter()
    for where, _, arr in tensors:
        kind = "initializer" if where == "initializer" else "Constant" if where.startswith("Constant") else "attr"
        by_dtype[(kind, str(arr.dtype))] += 1
        elems[(kind, str(arr.dtype))] += arr.size
    out.append("**Tensors** (initializers, Constant nodes and tensor attributes, all graphs):\n")
    out.append("| held as | dtype | count | elements |")
    out.append("|---|---|---|---|")
    for (kind, dt), n in sorted(by_dtype.items()):
        out.append(f"| {kind} | {dt} | {n} | {elems[(kind, dt)]} |")
    weights = [(w, n, a) for w, n, a in tensors if a.dtype == np.float32 and a.size >= 100]
    n16 = sum(a.dtype == np.float16 for _, _, a in tensors)
    total = sum(a.size for _, _, a in weights)
    exact = sum(int(np.sum(a.astype(np.float16).astype(np.float32) == a)) for _, _, a in weights)
    out.append(f"\nfloat16 tensors: {n16}. float32 weight tensors (>=100 elements): {len(weights)}, "
               f"{total} elements; exactly representable in float16: {exact}/{total} "
               f"({100.0 * exact / max(total, 1):.1f}%).")
    big = [(w, n, a) for w, n, a in tensors if a.size >= 100]
    out.append("\nWeight tensors (>=100 elements): " + ", ".join(
        f"`{short(n, 40)}` {a.dtype}{list(a.shape)}" for _, n, a in big) + "\n")
    return big


def report_file(path: str, trace: bool) -> tuple[list[str], list]:
    model = onnx.load(path)
    g = model.graph
    st = Static(model)
    out = [f"## {os.path.basename(path)}\n"]
    out.append(f"ir_version {model.ir_version}; opset imports "
               + ", ".join(f"`{d.domain or 'ai.onnx'}` {d.version}" for d in model.opset_import)
               + f"; producer `{model.producer_name} {model.producer_version}`; "
               + f"{os.path.getsize(path)} bytes\n")
    out.append("| | name | type |")
    out.append("|---|---|---|")
    for i in g.input:
        out.append(f"| input | `{i.name}` | {type_str(i.type)} |")
    for o in g.output:
        out.append(f"| output | `{o.name}` | {type_str(o.type)} |")
    out.append("")

    big = tensor_inventory(model, st, out)

    # graphs
    out.append("**Graphs**:\n")
    out.append("| graph | depth | nodes | ops (excluding Constant) |")
    out.append("|---|---|---|---|")
    for p, depth, sg in walk(g):
        c = Counter(n.op_type for n in sg.node if n.op_type != "Constant")
        out.append(f"| {p} | {depth} | {len(sg.node)} | {', '.join(f'{k} {v}' for k, v in sorted(c.items()))} |")
    out.append("")

    # op counts + attributes
    total = Counter()
    main = Counter()
    attrs = defaultdict(lambda: defaultdict(set))
    for p, depth, node in all_nodes(g):
        total[node.op_type] += 1
        if depth == 0:
            main[node.op_type] += 1
        for a in node.attribute:
            if a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS):
                attrs[node.op_type][a.name].add("<graph>")
            elif node.op_type == "Constant" and a.type == AttributeProto.TENSOR:
                arr = numpy_helper.to_array(a.t)
                attrs[node.op_type][a.name].add(f"{arr.dtype} rank {arr.ndim}")
            elif node.op_type == "Constant":
                attrs[node.op_type][a.name].add(str(attr_value(a)))
            else:
                attrs[node.op_type][a.name].add(str(attr_value(a)))
    out.append("**Op types** (all graphs; attributes: every distinct value used):\n")
    out.append("| op | total | main graph | in subgraphs | attributes |")
    out.append("|---|---|---|---|---|")
    for op in sorted(total):
        at = "; ".join(f"{k}: {', '.join(sorted(v))}" for k, v in sorted(attrs[op].items())) or "(none)"
        out.append(f"| {op} | {total[op]} | {main[op]} | {total[op] - main[op]} | {at} |")
    out.append("")

    # details
    out.append("**Node details** (parameters folded where constant; otherwise `run-time[what it depends on]`; "
               "data = what the data input depends on):\n")
    rows = []
    for p, depth, node in all_nodes(g):
        op = node.op_type
        if op not in DETAIL_OPS:
            continue
        at = {a.name: attr_value(a) for a in node.attribute}
        data = st.label(node.input[0]) if node.input else "-"
        inp = list(node.input) + [""] * 8
        if op == "Pad":
            d = (f"mode={at.get('mode', 'constant')} pads={st.param(inp[1])} constant_value={st.param(inp[2])} "
                 f"axes={st.param(inp[3])}")
        elif op == "Conv":
            w = st.const.get(inp[1])
            d = (f"W={list(w.shape) if w is not None else st.param(inp[1])} bias={'yes' if inp[2] else 'no'} "
                 + " ".join(f"{k}={v}" for k, v in sorted(at.items())))
        elif op == "LSTM":
            shapes = []
            for k, nm in zip(["X", "W", "R", "B", "seq_lens", "h0", "c0", "P"], inp[:8]):
                if not nm:
                    continue
                c = st.const.get(nm)
                shapes.append(f"{k}={list(c.shape)}" if c is not None else f"{k}=run-time[{st.label(nm)}]")
            used = [o for o in node.output]
            d = " ".join(shapes) + " " + " ".join(f"{k}={v}" for k, v in sorted(at.items())) + \
                f" outputs={['Y' if i == 0 else 'Y_h' if i == 1 else 'Y_c' for i, o in enumerate(used) if o]}"
        elif op == "Gemm":
            d = f"B={st.param(inp[1])} C={st.param(inp[2])} " + " ".join(f"{k}={v}" for k, v in sorted(at.items()))
        elif op == "Slice":
            d = f"starts={st.param(inp[1])} ends={st.param(inp[2])} axes={st.param(inp[3])} steps={st.param(inp[4])}"
        elif op == "Gather":
            d = f"axis={at.get('axis', 0)} indices={st.param(inp[1])}"
        elif op == "Reshape":
            d = f"shape={st.param(inp[1])} allowzero={at.get('allowzero', 0)}"
        elif op in ("Squeeze", "Unsqueeze", "ReduceMean"):
            axes = st.param(inp[1]) if inp[1] else at.get("axes", "none")
            d = f"axes={axes}" + "".join(f" {k}={v}" for k, v in sorted(at.items()) if k != "axes")
        elif op == "Split":
            d = f"split={st.param(inp[1])} " + " ".join(f"{k}={v}" for k, v in sorted(at.items()))
        elif op == "ConstantOfShape":
            d = f"shape={st.param(inp[0])} value={at.get('value')}"
        elif op == "Pow":
            d = f"exponent={st.param(inp[1])}"
        elif op in ("Mul", "Sub", "Add", "Equal", "Concat"):
            d = "inputs: " + ", ".join(st.param(i) if st.label(i) == "const" else f"<{st.label(i)}>"
                                       for i in node.input)
            d += "".join(f" {k}={v}" for k, v in sorted(at.items()))
        else:
            d = " ".join(f"{k}={v}" for k, v in sorted(at.items()))
        folded = node.output[0] in st.const and not st.deps.get(node.output[0])
        if folded and op not in ("Conv", "LSTM", "Gemm"):
            continue  # pure constant arithmetic: not an op the engine runs on data
        rows.append((op, depth, short(node.output[0], 44), data, d))
    groups = defaultdict(list)
    for op, depth, name, data, d in rows:
        groups[(op, data, d)].append((depth, name))
    out.append("| op | n | depth | e.g. output | data | details |")
    out.append("|---|---|---|---|---|---|")
    for (op, data, d), items in sorted(groups.items(), key=lambda kv: (DETAIL_OPS.index(kv[0][0]), min(kv[1]))):
        depths = ",".join(str(x) for x in sorted({dp for dp, _ in items}))
        out.append(f"| {op} | {len(items)} | {depths} | `{items[0][1]}` | {data} | {d} |")
    n_folded = sum(1 for p, dpt, n in all_nodes(g) if n.op_type in st.FOLD and n.op_type != "Constant"
                   and n.output[0] in st.const and not st.deps.get(n.output[0]))
    out.append(f"\n({n_folded} further nodes compute constants only (weight gate reordering, pads vectors, ...) "
               "and are left out above.)\n")

    # If nodes
    ifs = [(p, depth, n) for p, depth, n in all_nodes(g) if n.op_type == "If"]
    if ifs:
        out.append("**If nodes** (condition written out; 'then'/'else' list the ops of each branch):\n")
        out.append("| depth | outputs | condition | depends on | then | else |")
        out.append("|---|---|---|---|---|---|")
        for p, depth, n in ifs:
            br = {}
            for a in n.attribute:
                c = Counter(x.op_type for x in a.g.node if x.op_type != "Constant")
                br[a.name] = ", ".join(f"{k} {v}" for k, v in sorted(c.items()))
            out.append(f"| {depth} | `{', '.join(short(o, 30) for o in n.output)}` | `{st.expr(n.input[0])}` | "
                       f"{st.label(n.input[0])} | {br.get('then_branch', '')} | {br.get('else_branch', '')} |")
        out.append("")
    else:
        out.append("**If nodes**: none.\n")

    # sr dependence
    if "sr" in st.inputs:
        sr_only = []
        sr_any = []
        for p, depth, n in all_nodes(g):
            for o in n.output:
                d = st.deps.get(o, frozenset())
                if d and all(x == ("sr", "value") for x in d):
                    sr_only.append(f"`{short(o, 40)}` = {n.op_type}")
                elif ("sr", "value") in d and n.op_type not in ("If",):
                    sr_any.append(n.op_type)
        out.append("**Values that depend only on `sr`** (and constants): " + "; ".join(sr_only) + ".")
        outs_dep = {o.name: st.label(o.name) for o in g.output}
        out.append("Graph outputs depend on: " + "; ".join(f"`{k}`: {v}" for k, v in outs_dep.items()))
        if sr_any:
            out.append(f"Nodes mixing `sr` with other inputs: {dict(Counter(sr_any))}")
        out.append("")
    rt_shape = [(n.op_type, short(n.input[0], 40), st.label(n.input[0])) for p, d, n in all_nodes(g)
                if n.op_type in ("Shape", "Size") and st.label(n.input[0]) != "const"]
    if rt_shape:
        out.append("**Shape/Size of run-time tensors**: "
                   + "; ".join(f"{o}(`{i}`) [{lab}]" for o, i, lab in rt_shape) + "\n")

    if trace:
        out.extend(trace_runs(model, path, st))
    return out, big


# ---------------------------------------------------------------- traced runs

def traced_evaluator(model):
    from onnx.reference import ReferenceEvaluator
    from onnx.reference.ops import load_op

    log = []
    version = {d.domain: d.version for d in model.opset_import}[""]
    ops = sorted({n.op_type for _, _, n in all_nodes(model.graph)})
    new_ops = []
    for op in ops:
        base = load_op("", op, version)

        def run(self, *args, _base=base, **kw):
            res = _base.run(self, *args, **kw)
            log.append((self.onnx_node, args, res))
            return res

        schema = onnx.defs.get_schema(op, version, "")
        new_ops.append(type(op, (base,), {"op_domain": "", "run": run, "op_schema": schema}))
    return ReferenceEvaluator(model, new_ops=new_ops), log


def has_8k_path(model, st: Static) -> bool:
    """True when some If chooses on the value of `sr` (the file holds an 8 kHz model besides the 16 kHz one)."""
    return any(n.op_type == "If" and ("sr", "value") in st.deps.get(n.input[0], ())
               for _, _, n in all_nodes(model.graph))


def feeds_for(model, st: Static):
    names = {i.name: i for i in model.graph.input}
    rng = np.random.default_rng(0)
    cases = []
    rates = [16000, 8000] if has_8k_path(model, st) else [16000]
    for sr in rates:
        ctx, n = (64, 512) if sr == 16000 else (32, 256)
        width = ctx + n
        dims = names["input"].type.tensor_type.shape.dim
        if len(dims) == 2 and dims[1].HasField("dim_value") and dims[1].dim_value != width:
            continue
        feed = {}
        if "state" in names:
            feed["input"] = (rng.standard_normal((1, width)) * 0.1).astype(np.float32)
            feed["state"] = (rng.standard_normal((2, 1, 128)) * 0.1).astype(np.float32)
        else:  # the sequence file: frames are the rows, h and c separate
            feed["input"] = (rng.standard_normal((3, width)) * 0.1).astype(np.float32)
            feed["h"] = np.zeros((1, 1, 128), np.float32)
            feed["c"] = np.zeros((1, 1, 128), np.float32)
        if "sr" in names:
            feed["sr"] = np.array(sr, dtype=np.int64)
        cases.append((sr, feed))
    return cases


def trace_runs(model, path, st: Static):
    out = ["**Traced runs** (onnx ReferenceEvaluator, feeds as silero-vad's OnnxWrapper builds them; "
           "nodes whose inputs are all constants - weight gate reordering and the like - are counted apart):\n"]
    if "sr" in st.inputs and not has_8k_path(model, st):
        out.append("- no If chooses on `sr`: the file has only the 16 kHz model, whatever `sr` says.")
    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
    for sr, feed in feeds_for(model, st):
        ev, log = traced_evaluator(model)
        res = ev.run(None, feed)
        desc = ", ".join(f"{k} {list(v.shape)}" if v.ndim else f"{k}={int(v)}" for k, v in feed.items())
        line = f"- sr {sr} ({desc}): outputs " + ", ".join(f"{list(np.asarray(r).shape)}" for r in res)
        if ort is not None:
            sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            ref = sess.run(None, feed)
            worst = max(float(np.max(np.abs(a - b))) for a, b in zip(res, ref))
            line += f"; max |ReferenceEvaluator - onnxruntime| = {worst:.1e}"
        out.append(line)
        ifs = []
        seq = []
        const_only = Counter()
        for node, args, r in log:
            if node.op_type not in ("If", "Constant") and not any(st.deps.get(i) for i in node.input if i):
                const_only[node.op_type] += 1
                continue
            if node.op_type == "If":
                cond = bool(np.asarray(args[0]).item())
                ifs.append(f"{short(node.output[0], 28)}:{'then' if cond else 'else'}")
            elif node.op_type == "Pad":
                seq.append(f"Pad({node.attribute[0].s.decode() if node.attribute else 'constant'}, "
                           f"in {list(args[0].shape)} pads={np.asarray(args[1]).tolist()})")
            elif node.op_type == "Conv":
                at = {a.name: attr_value(a) for a in node.attribute}
                bias = " +b" if len(args) > 2 and args[2] is not None else ""
                seq.append(f"Conv(in {list(args[0].shape)} W {list(args[1].shape)} s{at.get('strides')} "
                           f"p{at.get('pads')}{bias} -> {list(r[0].shape)})")
            elif node.op_type == "LSTM":
                seq.append(f"LSTM(X {list(args[0].shape)} W {list(args[1].shape)} "
                           f"B {list(args[3].shape) if len(args) > 3 and args[3] is not None else None} "
                           f"h0 {list(args[5].shape) if len(args) > 5 and args[5] is not None else None})")
            elif node.op_type in ("Slice",) and args[0].dtype == np.float32 and args[0].size > 16:
                seq.append(f"Slice(in {list(args[0].shape)} {np.asarray(args[1]).tolist()}:"
                           f"{fmt_arr(args[2])} axes {fmt_arr(args[3]) if len(args) > 3 else None} "
                           f"-> {list(r[0].shape)})")
            elif node.op_type in ("Gather",) and args[0].dtype == np.float32:
                seq.append(f"Gather(in {list(args[0].shape)} idx {np.asarray(args[1]).tolist()} "
                           f"axis {node.attribute[0].i if node.attribute else 0} -> {list(r[0].shape)})")
            elif node.op_type in ("Squeeze", "Unsqueeze", "Reshape", "Transpose", "ReduceMean", "Concat", "Split",
                                  "Gemm", "Sigmoid") and args[0].dtype == np.float32 and \
                    not (node.op_type in ("Concat",) and all(a is not None and a.size <= 1 for a in args)):
                seq.append(f"{node.op_type}({list(args[0].shape)}->{list(r[0].shape)})")
            elif node.op_type in ("Relu", "Sigmoid", "Tanh", "Sqrt", "Pow", "Add", "Mul", "Cast") and \
                    args[0].dtype == np.float32:
                seq.append(node.op_type)
        # compress repeated op names
        comp = []
        for s in seq:
            if comp and comp[-1][0] == s:
                comp[-1][1] += 1
            else:
                comp.append([s, 1])
        out.append(f"  - If branches taken: {', '.join(ifs) if ifs else 'none'}")
        out.append("  - float ops executed, in order: " + " → ".join(s if k == 1 else f"{s}×{k}" for s, k in comp))
        executed = Counter(n.op_type for n, _, _ in log)
        out.append(f"  - nodes executed: {sum(executed.values())} "
                   f"({', '.join(f'{k} {v}' for k, v in sorted(executed.items()))})"
                   f"; of these on constants only: {sum(const_only.values())} "
                   f"({', '.join(f'{k} {v}' for k, v in sorted(const_only.items()))})")
    out.append("")
    return out


def shared_weights(per_file: dict[str, list]) -> list[str]:
    owners = defaultdict(list)
    for f, big in per_file.items():
        for _, name, arr in big:
            h = hashlib.sha1(np.ascontiguousarray(arr).tobytes()).hexdigest()[:10]
            owners[(h, tuple(arr.shape))].append((f, short(name, 36)))
    out = ["## Weight tensors shared between files (byte-identical, >=100 elements)\n"]
    files = list(per_file)
    out.append("| shape | sha1 | " + " | ".join(f.replace('.onnx', '') for f in files) + " |")
    out.append("|---|---|" + "---|" * len(files))
    for (h, shape), own in sorted(owners.items(), key=lambda kv: (-len({f for f, _ in kv[1]}), kv[0][1])):
        present = {f for f, _ in own}
        out.append(f"| {list(shape)} | {h} | " + " | ".join("x" if f in present else "" for f in files) + " |")
    out.append("")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="*", help="ONNX files (default: the six files of the installed silero-vad)")
    ap.add_argument("--no-trace", action="store_true", help="skip the ReferenceEvaluator runs")
    args = ap.parse_args(argv)
    files = args.files or [os.path.join(silero_data_dir(), f) for f in SILERO_FILES]
    per_file = {}
    for f in files:
        lines, big = report_file(f, trace=not args.no_trace)
        print("\n".join(lines))
        per_file[os.path.basename(f)] = big
    if len(files) > 1:
        print("\n".join(shared_weights(per_file)))


if __name__ == "__main__":
    main()
