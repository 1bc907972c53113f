"""PyTorch recurrent modules (``nn.LSTM``, ``nn.GRU``, ``nn.RNN`` and the cells ``nn.LSTMCell``, ``nn.GRUCell``,
``nn.RNNCell``; module, state dict, or a saved state dict) -> lstm-engine model.

The model keeps torch's names and conventions: layers take ``input`` (T, B, I) or (B, T, I) with ``batch_first``,
optional ``h0`` (L*D, B, Hout) and, for LSTM, ``c0`` (L*D, B, H); they return ``output`` (T, B, D*Hout), ``h_n``
[, ``c_n``]. Cells take ``input`` (B, I), optional ``hx`` [, ``cx``] (B, H) and return ``h'`` [, ``c'``].
``proj_size`` (which no ONNX exporter can express) is supported.

Gate orders: PyTorch's LSTM stores i, f, g, o and the model file ONNX's i, o, f, c; PyTorch's GRU stores r, z, n and
ONNX z, r, h, with n computed as ONNX's linear_before_reset=1. Torch's two biases (b_ih, b_hh) map to ONNX's Wb and
Rb as they are.
"""
from __future__ import annotations

import os
import re

import numpy as np

from engine import recurrent_spec
from engine.errors import ConversionError
from engine.model import Model, Node, TensorSpec

# torch gate blocks (i, f, g, o) reordered to ONNX (i, o, f, c)
TORCH_TO_ONNX_GATES = (0, 3, 1, 2)
_KEY = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(\d+)(_reverse)?$")
_CELL_KEY = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh)$")


def reorder_gates(w: np.ndarray, n_gates: int, order) -> np.ndarray:
    """Reorder the gate blocks along axis 0 of a (n_gates*H, ...) array."""
    blocks = np.split(w, n_gates, axis=0)
    return np.concatenate([blocks[k] for k in order], axis=0)


def load_state_dict(source) -> dict:
    """A state dict as numpy arrays, from a module, a dict, or a file (torch.save'd or safetensors). No pickle code
    runs: torch files are read with ``weights_only=True``."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise ConversionError(f"state dict file not found: {path}")
        with open(path, "rb") as f:
            head = f.read(16)
        if len(head) > 8 and head[8:9] == b"{":
            from safetensors.numpy import load_file
            try:
                return dict(load_file(path))
            except Exception as e:
                raise ConversionError(f"{path}: cannot read safetensors state dict: {e}") from e
        try:
            import torch
        except ImportError:
            raise ConversionError(f"{path} is a torch.save file; reading it needs torch "
                                  f"(or save the state dict as safetensors)") from None
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ConversionError(f"{path}: cannot load with torch.load(weights_only=True): "
                                  f"{str(e).splitlines()[0]}") from e
        if hasattr(obj, "state_dict") and not isinstance(obj, dict):
            obj = obj.state_dict()
        if not isinstance(obj, dict):
            raise ConversionError(f"{path} does not hold a state dict (got {type(obj).__name__})")
        return {k: _to_numpy(v) for k, v in obj.items()}
    if hasattr(source, "state_dict") and callable(source.state_dict):
        return {k: _to_numpy(v) for k, v in source.state_dict().items()}
    if isinstance(source, dict):
        return {k: _to_numpy(v) for k, v in source.items()}
    raise ConversionError(f"expected a torch recurrent module (nn.LSTM, nn.GRU, nn.RNN or a cell), a state dict or "
                          f"a path, got {type(source).__name__}")


def _to_numpy(v):
    if hasattr(v, "detach"):
        v = v.detach().cpu()
        if str(v.dtype) == "torch.bfloat16":
            v = v.float()
        return v.numpy()
    return np.asarray(v)


def _strip_prefix(sd: dict) -> tuple:
    """Accept a state dict whose recurrent keys sit under one prefix (``lstm.weight_ih_l0``, ``cell.weight_ih``).
    Returns (the recurrent entries without the prefix, whether they are a cell's)."""
    found = {}
    for k in sd:
        last = k.split(".")[-1]
        for regex, cell in ((_KEY, False), (_CELL_KEY, True)):
            if regex.match(last):
                found.setdefault(k[: -len(last)], cell)
    if not found:
        raise ConversionError("no recurrent weights (weight_ih_l0, weight_hh_l0, ... of a layer, or weight_ih, "
                              "weight_hh of a cell) in this state dict")
    if len(found) > 1:
        raise ConversionError(f"the state dict holds several recurrent layers ({sorted(found)}); pass the "
                              f"sub-module or a state dict with one of them")
    prefix, cell = found.popitem()
    regex = _CELL_KEY if cell else _KEY
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix) and regex.match(k[len(prefix):])}, cell


# module class -> (kind, is a cell)
MODULES = {"LSTM": ("lstm", False), "GRU": ("gru", False), "RNN": ("rnn", False),
           "LSTMCell": ("lstm", True), "GRUCell": ("gru", True), "RNNCell": ("rnn", True)}
KINDS = ("lstm", "gru", "rnn", "lstm_cell", "gru_cell", "rnn_cell")
# per kind: (ONNX op, gates, torch gate blocks in ONNX order)
# LSTM: torch i, f, g, o -> ONNX i, o, f, c; GRU: torch r, z, n -> ONNX z, r, h; RNN: one block
KIND_SPECS = {kind: (op, recurrent_spec.SPECS[op].n_gates, order) for kind, op, order in
              (("lstm", "LSTM", TORCH_TO_ONNX_GATES), ("gru", "GRU", (1, 0, 2)), ("rnn", "RNN", (0,)))}


def _infer_kind(sd: dict, cell: bool) -> str:
    w_hh = sd.get("weight_hh" if cell else "weight_hh_l0")
    if w_hh is None or np.ndim(w_hh) != 2:
        raise ConversionError(f"{'weight_hh' if cell else 'weight_hh_l0'} missing from the state dict")
    rows, cols = np.shape(w_hh)
    if "weight_hr_l0" in sd:
        return "lstm"
    if rows % cols == 0 and rows // cols in (4, 3, 1):
        return {4: "lstm", 3: "gru", 1: "rnn"}[rows // cols]
    raise ConversionError(f"cannot tell the kind of recurrent layer from weight_hh of shape {(rows, cols)}; "
                          f"pass kind= (one of {', '.join(KINDS)})")


def torch_to_model(source, *, batch_first: bool | None = None, kind: str | None = None,
                   nonlinearity: str | None = None, dtype: str = "float32", name: str | None = None) -> Model:
    """Convert ``nn.LSTM``, ``nn.GRU``, ``nn.RNN``, ``nn.LSTMCell``, ``nn.GRUCell``, ``nn.RNNCell``, or a state dict
    of one of them (a dict, or a path to a torch.save or safetensors file).

    Layers keep torch's names and shapes: inputs ``input``, ``h0`` [, ``c0``] -> outputs ``output``, ``h_n``
    [, ``c_n``]. Cells: inputs ``input`` (B, I), ``hx`` [, ``cx``] (B, H) -> outputs ``h'`` [, ``c'``]. The state
    inputs are optional (zeros, as in torch).

    What torch keeps outside the weights is taken from the module, or given for a bare state dict:
    batch_first (default False), kind (default: inferred from the keys and weight shapes; one of lstm, gru, rnn,
    lstm_cell, gru_cell, rnn_cell) and, for RNNs, nonlinearity ("tanh", the default, or "relu").
    """
    module_kind = None
    if hasattr(source, "state_dict") and callable(source.state_dict) and not isinstance(source, dict):
        module_kind = type(source).__name__
        if module_kind not in MODULES:
            raise ConversionError(f"from_torch converts nn.LSTM, nn.GRU, nn.RNN, nn.LSTMCell, nn.GRUCell and "
                                  f"nn.RNNCell (or their state dicts); got {module_kind}")
        base_kind, cell = MODULES[module_kind]
        module_kind_name = base_kind + ("_cell" if cell else "")
        if kind is not None and kind.lower() != module_kind_name:
            raise ConversionError(f"kind {kind!r} does not match the module ({module_kind})")
        kind = module_kind_name
        if batch_first is None:
            batch_first = bool(getattr(source, "batch_first", False))
        if base_kind == "rnn":
            module_nl = getattr(source, "nonlinearity", "tanh")
            if nonlinearity is not None and nonlinearity != module_nl:
                raise ConversionError(f"nonlinearity {nonlinearity!r} does not match the module's ({module_nl!r})")
            nonlinearity = module_nl
    sd, cell = _strip_prefix(load_state_dict(source))
    if kind is None:
        kind = _infer_kind(sd, cell) + ("_cell" if cell else "")
    kind = str(kind).lower()
    if kind not in KINDS:
        raise ConversionError(f"kind {kind!r} is not supported (supported: {', '.join(KINDS)})")
    if kind.endswith("_cell") != cell:
        raise ConversionError(f"kind {kind!r} does not fit this state dict, which holds a "
                              f"{'cell' if cell else 'layer'} ({'weight_ih' if cell else 'weight_ih_l0'}, ...)")
    base_kind = kind[:-5] if cell else kind
    if base_kind == "rnn":
        nonlinearity = (nonlinearity or "tanh").lower()
        if nonlinearity not in ("tanh", "relu"):
            raise ConversionError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    elif nonlinearity is not None:
        raise ConversionError(f"nonlinearity applies to RNNs only, not to kind {kind!r}")
    if cell and batch_first:
        raise ConversionError("batch_first does not apply to a cell (its input is (batch, input_size))")
    name = name or base_kind
    if cell:
        model = _cell_model(sd, base_kind, nonlinearity, dtype, name)
    else:
        model = _layer_model(sd, base_kind, nonlinearity, bool(batch_first), dtype, name)
    model.origin = {"source": "torch", "module": module_kind or "state_dict", "kind": kind, **model.origin}
    return model.validate()


def _node_attrs(base_kind, H, D, nonlinearity, proj=0):
    """The canonical attributes (engine/recurrent_spec.py) of torch's layer: ONNX's defaults but for these."""
    attrs = {"hidden_size": H, "direction": "bidirectional" if D == 2 else "forward"}
    if base_kind == "rnn" and nonlinearity == "relu":
        attrs["activations"] = ["Relu"] * D
    if base_kind == "lstm":
        attrs["proj_size"] = proj
    elif base_kind == "gru":
        attrs["linear_before_reset"] = 1   # torch's GRU: n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    return recurrent_spec.canonical(KIND_SPECS[base_kind][0], attrs, D)


def _getter(sd, np_dtype):
    def get(full, shape):
        if full not in sd:
            raise ConversionError(f"{full} missing from the state dict")
        arr = np.asarray(sd[full], dtype=np_dtype)
        if arr.shape != shape:
            raise ConversionError(f"{full} has shape {arr.shape}, expected {shape}")
        return arr
    return get


def _sizes(sd, first_key, G):
    w_ih0 = sd.get(first_key)
    hh_key = first_key.replace("weight_ih", "weight_hh")
    if w_ih0 is None or hh_key not in sd:
        raise ConversionError(f"{first_key} / {hh_key} missing from the state dict")
    if w_ih0.ndim != 2 or w_ih0.shape[0] % G:
        raise ConversionError(f"{first_key} has shape {w_ih0.shape}; this kind's is ({G}*hidden_size, input_size)")
    return w_ih0.shape[0] // G, w_ih0.shape[1]


def _direction_weights(get, sfx, op_kind, H, in_size, Hout, has_bias, has_proj):
    """One direction's W, R, B (ONNX gate order) and W_proj from torch's tensors with suffix sfx."""
    _, G, order = KIND_SPECS[op_kind]
    W = reorder_gates(get("weight_ih" + sfx, (G * H, in_size)), G, order)
    R = reorder_gates(get("weight_hh" + sfx, (G * H, Hout)), G, order)
    B = (np.concatenate([reorder_gates(get("bias_ih" + sfx, (G * H,)), G, order),
                         reorder_gates(get("bias_hh" + sfx, (G * H,)), G, order)]) if has_bias else None)
    P = get("weight_hr" + sfx, (Hout, H)) if has_proj else None
    return W, R, B, P


def _layer_model(sd, base_kind, nonlinearity, batch_first, dtype, name):
    op, G, _ = KIND_SPECS[base_kind]
    lstm = base_kind == "lstm"
    if not lstm and any(k.startswith("weight_hr") for k in sd):
        raise ConversionError("weight_hr (proj_size) exists only for LSTMs")
    layers = sorted({int(_KEY.match(k).group(2)) for k in sd})
    L = len(layers)
    if layers != list(range(L)):
        raise ConversionError(f"layer indices {layers} are not 0..{L - 1}")
    bidir = any(k.endswith("_reverse") for k in sd)
    D = 2 if bidir else 1
    has_bias = "bias_ih_l0" in sd
    has_proj = "weight_hr_l0" in sd
    H, I = _sizes(sd, "weight_ih_l0", G)
    Hout = sd["weight_hr_l0"].shape[0] if has_proj else H
    get = _getter(sd, np.dtype(dtype))

    tensors, nodes = {}, []
    x = "input"
    if batch_first:
        nodes.append(Node("Transpose", "input_to_time_major", ["input"], ["x_tbi"], {"perm": [1, 0, 2]}))
        x = "x_tbi"
    yh, yc = [], []
    for l in range(L):
        in_size = I if l == 0 else D * Hout
        parts = [_direction_weights(get, f"_l{l}" + ("_reverse" if d else ""), base_kind, H, in_size, Hout,
                                    has_bias, has_proj) for d in range(D)]
        base = f"{name}.l{l}"
        tensors[f"{base}.W"] = np.stack([p[0] for p in parts])           # (D, G*H, in)  ONNX gate order
        tensors[f"{base}.R"] = np.stack([p[1] for p in parts])           # (D, G*H, Hout)
        if has_bias:
            tensors[f"{base}.B"] = np.stack([p[2] for p in parts])       # (D, 2*G*H)
        if has_proj:
            tensors[f"{base}.W_proj"] = np.stack([p[3] for p in parts])  # (D, Hout, H)
        h_l, c_l = f"h0_l{l}", f"c0_l{l}"
        nodes.append(Node("Slice", f"{base}.h0", ["h0"], [h_l], {"slices": [[0, l * D, (l + 1) * D, 1]]}))
        y, h_out, c_out = f"y_l{l}", f"h_n_l{l}", f"c_n_l{l}"
        B_name = f"{base}.B" if has_bias else ""
        if lstm:
            nodes.append(Node("Slice", f"{base}.c0", ["c0"], [c_l], {"slices": [[0, l * D, (l + 1) * D, 1]]}))
            nodes.append(Node("LSTM", base, [x, f"{base}.W", f"{base}.R", B_name, "", h_l, c_l, "",
                                             f"{base}.W_proj" if has_proj else ""],
                              [y, h_out, c_out], _node_attrs("lstm", H, D, None, Hout if has_proj else 0)))
        else:
            nodes.append(Node(op, base, [x, f"{base}.W", f"{base}.R", B_name, "", h_l], [y, h_out],
                              _node_attrs(base_kind, H, D, nonlinearity)))
        # Y (T, D, B, Hout) -> (T, B, D*Hout): the directions side by side, as torch returns them
        nodes.append(Node("Transpose", f"{base}.y_tbdh", [y], [y + "_tbdh"], {"perm": [0, 2, 1, 3]}))
        nodes.append(Node("Reshape", f"{base}.y_merge", [y + "_tbdh"], [y + "_out"], {"shape": [0, 0, -1]}))
        x = y + "_out"
        yh.append(h_out)
        yc.append(c_out)
    if batch_first:
        nodes.append(Node("Transpose", "output_to_batch_major", [x], ["output"], {"perm": [1, 0, 2]}))
    else:
        nodes.append(Node("Identity", "output", [x], ["output"]))
    nodes.append(Node("Concat", "h_n", yh, ["h_n"], {"axis": 0}))
    seq_shape = ["B", "T", I] if batch_first else ["T", "B", I]
    out_shape = ["B", "T", D * Hout] if batch_first else ["T", "B", D * Hout]
    inputs = [TensorSpec("input", seq_shape, dtype), TensorSpec("h0", [L * D, "B", Hout], dtype, optional=True)]
    outputs = [TensorSpec("output", out_shape, dtype), TensorSpec("h_n", [L * D, "B", Hout], dtype)]
    stream_outputs = {"output": 1 if batch_first else 0, "h_n": None}
    if lstm:
        nodes.append(Node("Concat", "c_n", yc, ["c_n"], {"axis": 0}))
        inputs.append(TensorSpec("c0", [L * D, "B", H], dtype, optional=True))
        outputs.append(TensorSpec("c_n", [L * D, "B", H], dtype))
        stream_outputs["c_n"] = None
    origin = {"num_layers": L, "bidirectional": bidir, "batch_first": batch_first, "bias": has_bias}
    if lstm:
        origin["proj_size"] = Hout if has_proj else 0
    if base_kind == "rnn":
        origin["nonlinearity"] = nonlinearity
    return Model(inputs=inputs, outputs=outputs, nodes=nodes, tensors=tensors, dtype=dtype, origin=origin,
                 stream={"input": "input", "time_axis": 1 if batch_first else 0,
                         "batch_axis": 0 if batch_first else 1, "outputs": stream_outputs})


def _cell_model(sd, base_kind, nonlinearity, dtype, name):
    """A cell is one step of a one-layer, one-direction layer: input (B, I) -> (1, B, I), hx (B, H) -> (1, B, H),
    and the final state back to (B, H)."""
    op, G, _ = KIND_SPECS[base_kind]
    lstm = base_kind == "lstm"
    has_bias = "bias_ih" in sd
    H, I = _sizes(sd, "weight_ih", G)
    W, R, B, _ = _direction_weights(_getter(sd, np.dtype(dtype)), "", base_kind, H, I, H, has_bias, False)
    tensors = {f"{name}.W": W[None], f"{name}.R": R[None]}
    if has_bias:
        tensors[f"{name}.B"] = B[None]
    B_name = f"{name}.B" if has_bias else ""
    nodes = [Node("Unsqueeze", "input_as_one_step", ["input"], ["x_1bi"], {"axes": [0]}),
             Node("Unsqueeze", "hx_as_state", ["hx"], ["h_1bh"], {"axes": [0]})]
    inputs = [TensorSpec("input", ["B", I], dtype), TensorSpec("hx", ["B", H], dtype, optional=True)]
    outputs = [TensorSpec("h'", ["B", H], dtype)]
    if lstm:
        nodes.append(Node("Unsqueeze", "cx_as_state", ["cx"], ["c_1bh"], {"axes": [0]}))
        nodes.append(Node("LSTM", name, ["x_1bi", f"{name}.W", f"{name}.R", B_name, "", "h_1bh", "c_1bh"],
                          ["", "h_out", "c_out"], _node_attrs("lstm", H, 1, None)))
        nodes.append(Node("Squeeze", "h'", ["h_out"], ["h'"], {"axes": [0]}))
        nodes.append(Node("Squeeze", "c'", ["c_out"], ["c'"], {"axes": [0]}))
        inputs.append(TensorSpec("cx", ["B", H], dtype, optional=True))
        outputs.append(TensorSpec("c'", ["B", H], dtype))
    else:
        nodes.append(Node(op, name, ["x_1bi", f"{name}.W", f"{name}.R", B_name, "", "h_1bh"], ["", "h_out"],
                          _node_attrs(base_kind, H, 1, nonlinearity)))
        nodes.append(Node("Squeeze", "h'", ["h_out"], ["h'"], {"axes": [0]}))
    origin = {"cell": True, "bias": has_bias}
    if base_kind == "rnn":
        origin["nonlinearity"] = nonlinearity
    return Model(inputs=inputs, outputs=outputs, nodes=nodes, tensors=tensors, dtype=dtype, origin=origin,
                 stream={"input": "input", "time_axis": None, "batch_axis": 0,
                         "outputs": {o.name: None for o in outputs}})
