"""Reduced-precision weights: how the recurrent W and R matrices are encoded in a model file, and decoded.

A model file may store the W and R inputs of its LSTM, GRU and RNN nodes in fewer bits than float32 (smaller files
for devices, fewer bytes streamed per step). The metadata's ``weight_encodings`` maps such a tensor's name to its
encoding (format version 2; a file without it is version 1 and reads as before):

    "bfloat16"  {"encoding": "bfloat16"}: the tensor is uint16, the upper half of each float32 (rounded to nearest,
                ties to even); decoding is a 16-bit left shift.
    "int8"      {"encoding": "int8", "scales": name}: the tensor is int8, symmetric per output channel (per row of
                W (D, G*H, I) or R (D, G*H, Hout), i.e. per gate unit): w = q * scales[d, row], q in [-127, 127];
                ``scales`` names a float32 tensor (D, G*H).

Biases, peepholes and projections stay float32. This module is plain numpy (no Numba): the converter encodes with
it, the loader checks with it, and ops that have no reduced kernel (float64 compute, custom LSTM activations,
projections) decode with it at packing time.
"""
from __future__ import annotations

import numpy as np

from .errors import ConversionError, ModelFileError

ENCODINGS = ("float32", "bfloat16", "int8")     # what --weights accepts; float32 means "not encoded"
REDUCED = ENCODINGS[1:]
STORED_DTYPE = {"bfloat16": np.uint16, "int8": np.int8}
FORMAT_VERSION_REDUCED = 2                     # the first format version that can hold encoded weights


class StoredBytes(np.ndarray):
    """A packed array that the weight buffer (engine/plan.py Weights) holds as its bytes, read back by the kernels
    through a view of their own dtype (uint16, int8, int32): what the reduced-weight ops pack. Every other packed
    array is converted to the compute dtype."""


def stored_bytes(arr):
    return np.ascontiguousarray(arr).view(StoredBytes)


# ---------------------------------------------------------------------- encoding (the converter's side)
def to_bfloat16(w):
    """float32 array -> uint16 bfloat16 bits, rounded to nearest, ties to even; NaN stays NaN (quiet)."""
    u = np.ascontiguousarray(w, dtype=np.float32).view(np.uint32)
    rounded = ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype(np.uint16)
    nan = np.isnan(np.asarray(w, dtype=np.float32))
    return np.where(nan, ((u >> np.uint32(16)) | np.uint32(0x40)).astype(np.uint16), rounded)


def from_bfloat16(bits, dtype=np.float32):
    """uint16 bfloat16 bits -> float array."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32).astype(dtype,
                                                                                                        copy=False)


def to_int8(w):
    """float array (..., K) -> (q int8 (..., K), scales float32 (...)): symmetric per row, q = round(w / scale),
    scale = max |w| / 127 (0 for a row of zeros)."""
    w = np.asarray(w, dtype=np.float32)
    if not np.isfinite(w).all():
        raise ConversionError("weights with NaN or inf cannot be stored as int8")
    amax = np.abs(w).max(axis=-1)
    scales = (amax / np.float32(127)).astype(np.float32)
    safe = np.where(scales > 0, scales, np.float32(1))
    q = np.clip(np.rint(w / safe[..., None]), -127, 127).astype(np.int8)
    return q, scales


def from_int8(q, scales, dtype=np.float32):
    return (np.asarray(q, np.float32) * np.asarray(scales, np.float32)[..., None]).astype(dtype, copy=False)


# ---------------------------------------------------------------------- reading (the engine's side)
def encoding_of(model, name) -> str:
    """The encoding of tensor ``name``: "float32" (as stored: float32 or float64), "bfloat16" or "int8"."""
    enc = getattr(model, "weight_encodings", {}).get(name) if name else None
    return enc["encoding"] if enc else "float32"


def decoded(model, name, dtype=None):
    """Tensor ``name`` as a float array, whatever its encoding: of ``dtype``, or (None) as stored when it is not
    encoded and float32 when it is."""
    t = model.tensors[name]
    enc = encoding_of(model, name)
    if enc == "bfloat16":
        return from_bfloat16(t, dtype or np.float32)
    if enc == "int8":
        return from_int8(t, model.tensors[model.weight_encodings[name]["scales"]], dtype or np.float32)
    return t if dtype is None else np.asarray(t, dtype)


def scales_of(model, name):
    return model.tensors[model.weight_encodings[name]["scales"]]


def check_encodings(model) -> None:
    """The ``weight_encodings`` of a model: known encodings, stored dtypes and scales that match
    (check_encoded_readers: who reads them). Every defect is a ModelFileError naming the tensor."""
    encs = model.weight_encodings
    if not isinstance(encs, dict):
        raise ModelFileError("weight_encodings must map tensor names to their encodings")
    scale_names = set()
    for name, enc in encs.items():
        if not isinstance(enc, dict) or not isinstance(enc.get("encoding"), str):
            raise ModelFileError(f"weight encoding of {name!r} must be a JSON object with an 'encoding'")
        kind = enc["encoding"]
        if kind not in REDUCED:
            raise ModelFileError(f"tensor {name!r} has weight encoding {kind!r}, which this engine does not know "
                                 f"(it reads {', '.join(REDUCED)}); upgrade lstm-engine or convert the model again")
        t = model.tensors.get(name)
        if t is None:
            raise ModelFileError(f"weight encoding given for {name!r}, which is not a tensor of the model")
        if t.dtype != STORED_DTYPE[kind] or t.ndim != 3:
            raise ModelFileError(f"tensor {name!r} ({kind}) must be a rank-3 {np.dtype(STORED_DTYPE[kind])} tensor, "
                                 f"got {t.dtype} with shape {t.shape}")
        if kind == "int8":
            s_name = enc.get("scales")
            s = model.tensors.get(s_name) if isinstance(s_name, str) else None
            if s is None:
                raise ModelFileError(f"int8 tensor {name!r}: its scales {s_name!r} are not a tensor of the model")
            if s.dtype != np.float32 or s.shape != t.shape[:2]:
                raise ModelFileError(f"int8 tensor {name!r}: scales {s_name!r} must be float32 of shape "
                                     f"{t.shape[:2]}, got {s.dtype} {s.shape}")
            if not np.isfinite(s).all() or (s < 0).any():
                raise ModelFileError(f"int8 tensor {name!r}: scales {s_name!r} must be finite and not negative")
            scale_names.add(s_name)


def check_encoded_readers(model) -> None:
    """Encoded tensors and their scales are read only as the W and R inputs of recurrent nodes whose weights are all
    stored in the model (before the nodes' own checks, whose messages would be about dtypes and shapes)."""
    from .ops import RECURRENT_OP_NAMES
    encs = model.weight_encodings
    if not encs:
        return
    scale_names = {e.get("scales") for e in encs.values()} - {None}
    for node in model.all_nodes():
        for i, name in enumerate(node.inputs if isinstance(node.inputs, (list, tuple)) else ()):
            if not isinstance(name, str):
                continue
            if name in scale_names:
                raise ModelFileError(f"node {node.name!r} reads {name!r}, the scales of an int8 tensor")
            if name in encs and not (node.op in RECURRENT_OP_NAMES and i in (1, 2)):
                raise ModelFileError(f"node {node.name!r} ({node.op}) input {i} reads {name!r}, stored as "
                                     f"{encs[name]['encoding']}: only the W and R inputs of LSTM, GRU and RNN nodes "
                                     f"may be encoded")
            if name in encs and not constant_weights(node, model):
                raise ModelFileError(f"node {node.name!r} reads {name!r}, stored as {encs[name]['encoding']}, but "
                                     f"some of its other weights are inputs of the call: encoded weights need every "
                                     f"weight of their node stored in the model")


def constant_weights(node, model) -> bool:
    """Whether every weight input of a recurrent node (W, R, B, P, W_proj) is a tensor stored in the model."""
    from .ops import OPS
    return all(not name or name in model.tensors
               for i, name in enumerate(node.inputs) if i in OPS[node.op].packed_inputs)


def summary(model) -> str:
    """One line for inspect and convert: "float32", or which encodings hold how many tensors."""
    kinds = sorted({e["encoding"] for e in model.weight_encodings.values()})
    if not kinds:
        return "float32"
    return f"{'/'.join(kinds)} recurrent W and R ({len(model.weight_encodings)} tensors), other weights float32"
