"""PyTorch ``nn.LSTM`` (module, state dict, or a saved state dict) -> lstm-engine model.

The model keeps torch's names and conventions: inputs ``input`` (T, B, I) or (B, T, I) with ``batch_first``,
optional ``h0`` (L*D, B, Hout) and ``c0`` (L*D, B, H); outputs ``output`` (T, B, D*Hout), ``h_n``, ``c_n``.
``proj_size`` (which no ONNX exporter can express) is supported.

Gate order: PyTorch stores i, f, g, o; the model file uses ONNX's i, o, f, c. Torch's two biases (b_ih, b_hh) map
to ONNX's Wb and Rb as they are.
"""
from __future__ import annotations

import os
import re

import numpy as np

from engine.errors import ConversionError
from engine.model import Model, Node, TensorSpec

# torch gate blocks (i, f, g, o) reordered to ONNX (i, o, f, c)
TORCH_TO_ONNX_GATES = (0, 3, 1, 2)
_KEY = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(\d+)(_reverse)?$")


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
                raise ConversionError(f"{path}: cannot read safetensors state dict: {e}") from None
        try:
            import torch
        except ImportError:
            raise ConversionError(f"{path} is a torch.save file; reading it needs torch "
                                  f"(or save the state dict as safetensors)") from None
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ConversionError(f"{path}: cannot load with torch.load(weights_only=True): "
                                  f"{str(e).splitlines()[0]}") from None
        if hasattr(obj, "state_dict") and not isinstance(obj, dict):
            obj = obj.state_dict()
        if not isinstance(obj, dict):
            raise ConversionError(f"{path} does not hold a state dict (got {type(obj).__name__})")
        return {k: _to_numpy(v) for k, v in obj.items()}
    if hasattr(source, "state_dict") and callable(source.state_dict):
        return {k: _to_numpy(v) for k, v in source.state_dict().items()}
    if isinstance(source, dict):
        return {k: _to_numpy(v) for k, v in source.items()}
    raise ConversionError(f"expected an nn.LSTM, a state dict or a path, got {type(source).__name__}")


def _to_numpy(v):
    if hasattr(v, "detach"):
        v = v.detach().cpu()
        if str(v.dtype) == "torch.bfloat16":
            v = v.float()
        return v.numpy()
    return np.asarray(v)


def _strip_prefix(sd: dict) -> dict:
    """Accept a state dict whose recurrent keys sit under one prefix (``lstm.weight_ih_l0``)."""
    prefixes = {k[: -len(m.group(0))] for k in sd for m in [_KEY.search(k.split(".")[-1])] if m}
    if not prefixes:
        raise ConversionError("no recurrent weights (weight_ih_l0, weight_hh_l0, ...) in this state dict")
    if len(prefixes) > 1:
        raise ConversionError(f"the state dict holds several recurrent layers ({sorted(prefixes)}); pass the "
                              f"sub-module or a state dict with one of them")
    prefix = prefixes.pop()
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix) and _KEY.match(k[len(prefix):])}


def torch_to_model(source, *, batch_first: bool | None = None, kind: str | None = None, dtype: str = "float32",
                   name: str = "lstm") -> Model:
    """Convert ``nn.LSTM`` or its state dict.

    batch_first: taken from the module; for a bare state dict it defaults to False (torch keeps it outside the
    weights). kind: "lstm" (default; other recurrent kinds are recognised and refused with a clear message).
    """
    module_kind = None
    if hasattr(source, "state_dict") and callable(source.state_dict) and not isinstance(source, dict):
        module_kind = type(source).__name__
        if module_kind != "LSTM":
            raise ConversionError(f"from_torch supports nn.LSTM; got {module_kind}")
        if batch_first is None:
            batch_first = bool(getattr(source, "batch_first", False))
    kind = (kind or "lstm").lower()
    if kind != "lstm":
        raise ConversionError(f"kind {kind!r} is not supported (supported: lstm)")
    batch_first = bool(batch_first)
    sd = _strip_prefix(load_state_dict(source))
    layers = sorted({int(_KEY.match(k).group(2)) for k in sd})
    L = len(layers)
    if layers != list(range(L)):
        raise ConversionError(f"layer indices {layers} are not 0..{L - 1}")
    bidir = any(k.endswith("_reverse") for k in sd)
    D = 2 if bidir else 1
    has_bias = "bias_ih_l0" in sd
    has_proj = "weight_hr_l0" in sd
    w_ih0 = sd.get("weight_ih_l0")
    if w_ih0 is None or "weight_hh_l0" not in sd:
        raise ConversionError("weight_ih_l0 / weight_hh_l0 missing from the state dict")
    if w_ih0.ndim != 2 or w_ih0.shape[0] % 4:
        raise ConversionError(f"weight_ih_l0 has shape {w_ih0.shape}; an LSTM's is (4*hidden_size, input_size)")
    H = w_ih0.shape[0] // 4
    I = w_ih0.shape[1]
    Hout = sd["weight_hr_l0"].shape[0] if has_proj else H
    np_dtype = np.dtype(dtype)

    tensors, nodes = {}, []
    x = "input"
    if batch_first:
        nodes.append(Node("Transpose", "input_to_time_major", ["input"], ["x_tbi"], {"perm": [1, 0, 2]}))
        x = "x_tbi"
    yh, yc = [], []
    for l in range(L):
        in_size = I if l == 0 else D * Hout
        Ws, Rs, Bs, Ps = [], [], [], []
        for d in range(D):
            sfx = f"_l{l}" + ("_reverse" if d else "")

            def get(key, shape, sfx=sfx):
                full = key + sfx
                if full not in sd:
                    raise ConversionError(f"{full} missing from the state dict")
                arr = np.asarray(sd[full], dtype=np_dtype)
                if arr.shape != shape:
                    raise ConversionError(f"{full} has shape {arr.shape}, expected {shape}")
                return arr

            Ws.append(reorder_gates(get("weight_ih", (4 * H, in_size)), 4, TORCH_TO_ONNX_GATES))
            Rs.append(reorder_gates(get("weight_hh", (4 * H, Hout)), 4, TORCH_TO_ONNX_GATES))
            if has_bias:
                Bs.append(np.concatenate([reorder_gates(get("bias_ih", (4 * H,)), 4, TORCH_TO_ONNX_GATES),
                                          reorder_gates(get("bias_hh", (4 * H,)), 4, TORCH_TO_ONNX_GATES)]))
            if has_proj:
                Ps.append(get("weight_hr", (Hout, H)))
        base = f"{name}.l{l}"
        tensors[f"{base}.W"] = np.stack(Ws)           # (D, 4H, in) i, o, f, c
        tensors[f"{base}.R"] = np.stack(Rs)           # (D, 4H, Hout)
        if has_bias:
            tensors[f"{base}.B"] = np.stack(Bs)       # (D, 8H)
        if has_proj:
            tensors[f"{base}.W_proj"] = np.stack(Ps)  # (D, Hout, H)
        h_l, c_l = f"h0_l{l}", f"c0_l{l}"
        nodes.append(Node("Slice", f"{base}.h0", ["h0"], [h_l], {"slices": [[0, l * D, (l + 1) * D, 1]]}))
        nodes.append(Node("Slice", f"{base}.c0", ["c0"], [c_l], {"slices": [[0, l * D, (l + 1) * D, 1]]}))
        y, h_out, c_out = f"y_l{l}", f"h_n_l{l}", f"c_n_l{l}"
        nodes.append(Node("LSTM", base,
                          [x, f"{base}.W", f"{base}.R", f"{base}.B" if has_bias else "", "", h_l, c_l, "",
                           f"{base}.W_proj" if has_proj else ""],
                          [y, h_out, c_out],
                          {"hidden_size": H, "direction": "bidirectional" if bidir else "forward", "layout": 0,
                           "activations": [["Sigmoid", 0.0, 0.0], ["Tanh", 0.0, 0.0], ["Tanh", 0.0, 0.0]] * D,
                           "clip": None, "input_forget": 0, "proj_size": Hout if has_proj else 0}))
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
    nodes.append(Node("Concat", "c_n", yc, ["c_n"], {"axis": 0}))
    seq_shape = ["B", "T", I] if batch_first else ["T", "B", I]
    out_shape = ["B", "T", D * Hout] if batch_first else ["T", "B", D * Hout]
    model = Model(
        inputs=[TensorSpec("input", seq_shape, dtype),
                TensorSpec("h0", [L * D, "B", Hout], dtype, optional=True),
                TensorSpec("c0", [L * D, "B", H], dtype, optional=True)],
        outputs=[TensorSpec("output", out_shape, dtype), TensorSpec("h_n", [L * D, "B", Hout], dtype),
                 TensorSpec("c_n", [L * D, "B", H], dtype)],
        nodes=nodes, tensors=tensors, dtype=dtype,
        origin={"source": "torch", "module": module_kind or "state_dict", "num_layers": L, "bidirectional": bidir,
                "batch_first": batch_first, "proj_size": Hout if has_proj else 0, "bias": has_bias},
        stream={"input": "input", "time_axis": 1 if batch_first else 0, "batch_axis": 0 if batch_first else 1,
                "outputs": {"output": 1 if batch_first else 0, "h_n": None, "c_n": None}},
    )
    return model.validate()
