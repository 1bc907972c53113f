"""Shared helpers for the tests: building single-node ONNX recurrent graphs (LSTM, GRU, RNN), running
onnxruntime, comparing the engine with it."""
from __future__ import annotations

import warnings

import numpy as np
import onnx
from hypothesis import HealthCheck, settings
from onnx import TensorProto, helper, numpy_helper

# hypothesis settings of the randomized comparisons: few examples (each structure is one compile), reproducible runs
SETTINGS = settings(max_examples=6, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

WEIGHT_INPUTS = {"LSTM": {1: "W", 2: "R", 3: "B", 7: "P"}, "GRU": {1: "W", 2: "R", 3: "B"},
                 "RNN": {1: "W", 2: "R", 3: "B"}}


def tolerance(T: int) -> float:
    """The project's fp32 tolerance: 1e-5 up to 100 steps, 1e-4 up to 1000."""
    return 1e-5 if T <= 100 else 1e-4


def max_abs_diff(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, f"shapes differ: {a.shape} vs {b.shape}"
    if a.size == 0:
        return 0.0
    a, b = a.reshape(-1), b.reshape(-1)     # (rank 0 too)
    same_nan = np.isnan(a) & np.isnan(b)
    same_inf = np.isinf(a) & np.isinf(b) & (np.sign(a) == np.sign(b))
    with np.errstate(invalid="ignore"):
        d = np.abs(a - b)
    d[same_nan | same_inf] = 0.0
    return float(np.nan_to_num(d, nan=np.inf).max())


def weights_to_initializers(model: onnx.ModelProto, feeds: dict) -> tuple:
    """Conformance graphs pass W/R/B/P as graph inputs (the engine packs them on the call); this gives the same
    graph on the constant-weights path: a copy of the model with those inputs turned into initializers, and the
    remaining feeds."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    node = m.graph.node[0]
    weight_names = {node.input[i] for i in WEIGHT_INPUTS.get(node.op_type, {}) if i < len(node.input) and node.input[i]}
    keep = [vi for vi in m.graph.input if vi.name not in weight_names]
    for name in weight_names:
        m.graph.initializer.append(numpy_helper.from_array(np.asarray(feeds[name]), name))
    del m.graph.input[:]
    m.graph.input.extend(keep)
    return m, {k: v for k, v in feeds.items() if k not in weight_names}


def weights_to_inputs(model: onnx.ModelProto, names=None, dims=None) -> onnx.ModelProto:
    """The reverse of ``weights_to_initializers``: a copy of ``model`` whose initializers ``names`` (default: every
    weight of its recurrent node) are graph inputs fed at run time, declared with their shapes or with ``dims[name]``
    (ints and dim_param names), as onnxruntime-style graphs and the ONNX node tests have them."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    node = m.graph.node[0]
    if names is None:
        names = [node.input[i] for i in WEIGHT_INPUTS[node.op_type] if i < len(node.input) and node.input[i]]
    moved = {init.name: numpy_helper.to_array(init) for init in m.graph.initializer if init.name in names}
    assert set(moved) == set(names), f"not initializers: {set(names) - set(moved)}"
    kept = [init for init in m.graph.initializer if init.name not in moved]
    del m.graph.initializer[:]
    m.graph.initializer.extend(kept)
    for name in names:
        elem = helper.np_dtype_to_tensor_dtype(moved[name].dtype)
        m.graph.input.append(helper.make_tensor_value_info(name, elem, list((dims or {}).get(name, moved[name].shape))))
    return m


def ort_session(model: onnx.ModelProto, threads: int = 1):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def rnn_model(op: str, *, I: int, H: int, D: int, T, B, rng, attrs: dict, with_B=True, with_P=False,
              inputs=("X",), outputs=("Y", "Y_h", "Y_c"), dtype=np.float32, opset=22, weight_scale=0.5):
    """A single recurrent node graph with its weights as initializers.

    ``inputs`` names which optional run-time inputs exist: any of sequence_lens, initial_h, initial_c.
    Returns (model, weights dict).
    """
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    W = (rng.standard_normal((D, gates * H, I)) * weight_scale).astype(dtype)
    R = (rng.standard_normal((D, gates * H, H)) * weight_scale).astype(dtype)
    Bw = (rng.standard_normal((D, 2 * gates * H)) * weight_scale).astype(dtype)
    P = (rng.standard_normal((D, 3 * H)) * weight_scale).astype(dtype)
    layout = attrs.get("layout", 0)
    inits = [numpy_helper.from_array(W, "W"), numpy_helper.from_array(R, "R")]
    names = ["X", "W", "R", ""]
    if with_B:
        inits.append(numpy_helper.from_array(Bw, "B"))
        names[3] = "B"
    names += ["sequence_lens" if "sequence_lens" in inputs else "",
              "initial_h" if "initial_h" in inputs else ""]
    if op == "LSTM":
        names += ["initial_c" if "initial_c" in inputs else "", "P" if with_P else ""]
        if with_P:
            inits.append(numpy_helper.from_array(P, "P"))
    while names and not names[-1]:
        names.pop()
    x_shape = [T, B, I] if layout == 0 else [B, T, I]
    st_shape = [D, B, H] if layout == 0 else [B, D, H]
    graph_inputs = [helper.make_tensor_value_info("X", elem, x_shape)]
    if "sequence_lens" in inputs:
        graph_inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, [B]))
    for n in ("initial_h", "initial_c"):
        if n in inputs:
            graph_inputs.append(helper.make_tensor_value_info(n, elem, st_shape))
    out_names = [o if o in outputs else "" for o in ["Y", "Y_h", "Y_c"][: (3 if op == "LSTM" else 2)]]
    while out_names and not out_names[-1]:
        out_names.pop()
    node = helper.make_node(op, names, out_names, hidden_size=H, **attrs)
    graph_outputs = [helper.make_tensor_value_info(o, elem, None) for o in out_names if o]
    g = helper.make_graph([node], "rnn", graph_inputs, graph_outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m, {"W": W, "R": R, "B": Bw, "P": P}


def to_layout0(model: onnx.ModelProto) -> onnx.ModelProto:
    """The equivalent layout=0 graph of a layout=1 single-node graph (onnxruntime rejects layout=1)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    node = m.graph.node[0]
    for a in node.attribute:
        if a.name == "layout":
            a.i = 0
    for vi in m.graph.input:
        dims = vi.type.tensor_type.shape.dim
        if vi.name in ("X", "initial_h", "initial_c") and len(dims) == 3:
            d0, d1 = dims[0].dim_value, dims[1].dim_value
            dims[0].dim_value, dims[1].dim_value = d1, d0
    return m


def silence():
    warnings.filterwarnings("ignore")


def state_inputs(op: str) -> tuple:
    """The initial-state inputs an op has: initial_h and initial_c for LSTM, initial_h alone for GRU and RNN."""
    return ("initial_h", "initial_c") if op == "LSTM" else ("initial_h",)


def all_outputs(op: str) -> tuple:
    """The outputs an op has: Y, Y_h and Y_c for LSTM, Y and Y_h for GRU and RNN."""
    return ("Y", "Y_h", "Y_c") if op == "LSTM" else ("Y", "Y_h")


def make_feeds(inputs, T, B, I, H, D, rng, layout=0, op="LSTM", min_len=1):
    """Random run-time feeds for a graph from ``rnn_model`` with the optional ``inputs`` (sequence_lens,
    initial_h, initial_c; initial_c only for LSTM). sequence_lens are drawn from [min_len, T], the first one T
    (onnxruntime sizes Y by the longest sequence); min_len=0 allows empty sequences."""
    if op != "LSTM":
        assert "initial_c" not in inputs, f"{op} has no initial_c"
    feeds = {"X": rng.standard_normal((T, B, I) if layout == 0 else (B, T, I)).astype(np.float32)}
    st_shape = (D, B, H) if layout == 0 else (B, D, H)
    if "initial_h" in inputs:
        feeds["initial_h"] = rng.standard_normal(st_shape).astype(np.float32)
    if "initial_c" in inputs:
        feeds["initial_c"] = rng.standard_normal(st_shape).astype(np.float32)
    if "sequence_lens" in inputs:
        lens = rng.integers(min_len, T + 1, size=B).astype(np.int32)
        lens[0] = T   # onnxruntime sizes Y by the longest sequence
        feeds["sequence_lens"] = lens
    return feeds


def ort_reference(model: onnx.ModelProto, feeds: dict, names, layout=0) -> list:
    """onnxruntime's outputs ``names`` for the feeds; layout=1 runs the equivalent layout=0 graph on transposed
    data and transposes the results back (onnxruntime rejects layout=1)."""
    if layout != 1:
        return ort_session(model).run(names, feeds)
    ref_feeds = {k: (np.ascontiguousarray(v.transpose(1, 0, 2)) if k in ("X", "initial_h", "initial_c") else v)
                 for k, v in feeds.items()}
    ref = ort_session(to_layout0(model)).run(names, ref_feeds)
    return [np.ascontiguousarray(r.transpose(2, 0, 1, 3)) if n == "Y" else np.ascontiguousarray(r.transpose(1, 0, 2))
            for n, r in zip(names, ref)]


def compare(model, feeds, T, layout=0, rel=0.0, ref_model=None):
    """Run the engine and onnxruntime (layout=1: on the equivalent layout=0 graph) on every output of the graph,
    assert they agree within the project's tolerance and return the largest diff. Works for LSTM, GRU and RNN.

    rel > 0 scales the tolerance with the reference's magnitude (tol + rel * |ref|), for unbounded activations
    whose values grow far beyond 1, where fp32 rounding alone exceeds a fixed absolute tolerance.
    ref_model: the graph onnxruntime runs instead of ``model`` (a float32 twin of a float64 model); the feeds
    are then given to onnxruntime as float32."""
    import engine
    sess = engine.Session(model.SerializeToString())
    names = [o.name for o in model.graph.output]
    got = sess.run(names, feeds)
    for g, o in zip(got, model.graph.output):
        assert g.dtype == helper.tensor_dtype_to_np_dtype(o.type.tensor_type.elem_type), (o.name, g.dtype)
    if ref_model is None:
        ref = ort_reference(model, feeds, names, layout)
    else:
        ref_feeds = {k: (v.astype(np.float32) if v.dtype == np.float64 else v) for k, v in feeds.items()}
        ref = ort_reference(ref_model, ref_feeds, names, layout)
    assert len(got) == len(ref) == len(names)
    diff = max(max_abs_diff(g, r) for g, r in zip(got, ref))
    scale = max(float(np.nanmax(np.abs(np.where(np.isinf(r), 0, r)), initial=0.0)) for r in ref)
    assert diff <= tolerance(T) + rel * scale, f"max abs diff {diff:.2e} against onnxruntime (|ref| up to {scale:.1f})"
    return diff


def to_double(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same graph with float64 initializers, inputs and outputs (the weights exactly the float32 values)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for i, init in enumerate(m.graph.initializer):
        if init.data_type != TensorProto.FLOAT:
            continue
        m.graph.initializer[i].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float64),
                                                                init.name))
    for vi in list(m.graph.input) + list(m.graph.output):
        if vi.type.tensor_type.elem_type == TensorProto.FLOAT:
            vi.type.tensor_type.elem_type = TensorProto.DOUBLE
    return m


def whole_onnx_model(rng, T=7, B=2):
    """A small whole model and its feed: token ids (T, B) -> Gather(embedding) -> LSTM -> Squeeze -> MatMul -> Add ->
    Softmax."""
    V, E, H, K = 11, 6, 8, 5
    emb = rng.standard_normal((V, E)).astype(np.float32)
    W = (rng.standard_normal((1, 4 * H, E)) * 0.4).astype(np.float32)
    R = (rng.standard_normal((1, 4 * H, H)) * 0.4).astype(np.float32)
    head = rng.standard_normal((H, K)).astype(np.float32)
    bias = rng.standard_normal((K,)).astype(np.float32)
    nodes = [helper.make_node("Gather", ["emb", "ids"], ["e"], axis=0),
             helper.make_node("LSTM", ["e", "W", "R"], ["y"], hidden_size=H),
             helper.make_node("Squeeze", ["y", "axes"], ["ys"]),
             helper.make_node("MatMul", ["ys", "head"], ["logits0"]),
             helper.make_node("Add", ["logits0", "bias"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probs"], axis=-1)]
    inits = [numpy_helper.from_array(a, n) for a, n in
             [(emb, "emb"), (W, "W"), (R, "R"), (head, "head"), (bias, "bias"), (np.array([1], np.int64), "axes")]]
    g = helper.make_graph(nodes, "whole", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["T", "B"])],
                          [helper.make_tensor_value_info("probs", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m, {"ids": rng.integers(0, V, (T, B)).astype(np.int64)}
