"""Batch scoring on Dask: run a model over a Dask array (or DataFrame) chunked along the batch, on the workers.

    from dask.distributed import Client
    import engine.dask
    client = Client("tcp://scheduler:8786")
    y = engine.dask.score("model.lstm", x)          # x: dask array shaped as the model's input, e.g. (T, B, I)
    y.to_zarr(...) / y.compute()                    # equal to engine.Session("model.lstm").run(None, {"X": x})[0]

The model is read (and an ONNX file converted) once, here; its bytes enter the task graph once, as one key that
each worker fetches. Each worker process keeps one Session per model (made from those bytes on its first block,
then reused by every later block and call), so the workers need lstm-engine installed but not the model file.
Every batch item is independent of the others, so each block of the batch is one ``Session.run``; the non-batch
axes (time, features) are one chunk.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np

from .errors import EngineError, InvalidInputError

MAX_CACHED = 4            # Sessions kept per worker process (least recently used dropped)

_sessions: OrderedDict = OrderedDict()
_lock = threading.Lock()


def score(model, data, *, output: str | None = None, chunk_size: int | None = None, batch_axis: int | None = None,
          item_shape=None, threads: int = 1, precision: str | None = None):
    """Run ``model`` on every batch item of ``data`` on the Dask workers; returns a lazy Dask array.

    Parameters
    ----------
    model : path or bytes
        An lstm-engine model file or an ONNX file (converted once, here).
    data : dask array, dask DataFrame, numpy array, or dict {input name: array}
        The model's input, with the batch along its batch axis (the one named like the stream input's batch
        dimension, e.g. axis 1 of an LSTM's (T, B, I)). A dict gives several inputs (token ids and initial states),
        all with the same batch. A DataFrame has one row per batch item, whose values fill the rest of the input's
        shape in C order (``item_shape`` gives that shape when it has more than one unknown dimension).
    output : str, optional
        Which output (default: the model's first).
    chunk_size : int, optional
        Batch items per task (default: the data's own chunks along the batch).
    batch_axis : int, optional
        The batch axis of the (single) input, when the model does not say it.
    threads : int
        Kernel threads per task (default 1: parallelism comes from the workers).
    precision : "float32" or "float64", optional
        As ``Session``.

    The result equals ``Session(model).run([output], inputs)[0]`` on one machine, chunked along the output's batch
    axis like the input.
    """
    import dask
    import dask.array as da

    from .model import to_bytes
    from .session import load_any

    m = load_any(model)
    blob = to_bytes(m)
    digest = hashlib.sha256(blob).hexdigest()[:16]
    out_name = output or m.outputs[0].name
    if out_name not in [s.name for s in m.outputs]:
        raise InvalidInputError(f"unknown output {out_name!r}; the model's outputs are {[s.name for s in m.outputs]}")
    arrays = _as_arrays(m, data, batch_axis, item_shape)
    symbol, axes = _batch_axes(m, arrays, batch_axis)

    # the non-batch axes in one chunk each; the batch chunked as asked (or as the first input), the same for all
    first = next(iter(arrays))
    if chunk_size is not None:
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise EngineError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        batch_chunks = chunk_size
    else:
        batch_chunks = arrays[first].chunks[axes[first]]
    for name, arr in arrays.items():
        arrays[name] = arr.rechunk({ax: (batch_chunks if ax == axes[name] else -1) for ax in range(arr.ndim)})

    sizes = {symbol: None}
    spec_by_name = {s.name: s for s in m.inputs}
    for name, arr in arrays.items():
        for d, n in zip(spec_by_name[name].shape, arr.shape):
            if isinstance(d, str) and d != symbol:
                if sizes.setdefault(d, n) != n:
                    raise InvalidInputError(f"input {name!r}: dimension {d!r} is {n}, another input has {sizes[d]}")
    out_spec = next(s for s in m.outputs if s.name == out_name)
    if symbol not in out_spec.shape:
        raise EngineError(f"output {out_name!r} (shape {out_spec.shape}) has no batch axis {symbol!r}; it cannot be "
                          f"computed block by block along the batch")
    out_axis = out_spec.shape.index(symbol)
    out_index, new_axes = [], {}
    for k, d in enumerate(out_spec.shape):
        if k == out_axis:
            out_index.append("b")
            continue
        letter = f"o{k}"
        out_index.append(letter)
        size = d if isinstance(d, int) else sizes.get(d)
        if size is None:
            raise EngineError(f"output {out_name!r}: the size of its dimension {d!r} cannot be told from the inputs")
        new_axes[letter] = size
    args = []
    for name, arr in arrays.items():
        args += [arr, tuple("b" if ax == axes[name] else f"{name}:{ax}" for ax in range(arr.ndim))]
    dtype = np.dtype(precision if precision and out_spec.dtype.startswith("float") else out_spec.dtype)
    blob_key = dask.delayed(blob, pure=True, name=f"lstm-engine-model-{digest}")
    return da.blockwise(_score_block, tuple(out_index), blob_key, None, digest, None, tuple(arrays), None, out_name,
                        None, threads, None, precision, None, *args, new_axes=new_axes, concatenate=True,
                        dtype=dtype, meta=np.empty((0,) * len(out_index), dtype),
                        name=f"lstm-engine-score-{out_name}")


def _as_arrays(m, data, batch_axis, item_shape):
    """{input name: dask array} from what ``score`` was given."""
    import dask.array as da
    specs = {s.name: s for s in m.inputs}
    if isinstance(data, dict):
        unknown = [k for k in data if k not in specs]
        if unknown:
            raise InvalidInputError(f"unknown input(s) {unknown}; the model's inputs are {list(specs)}")
        return {k: v if isinstance(v, da.Array) else da.from_array(np.asarray(v)) for k, v in data.items()}
    required = [s.name for s in m.inputs if not s.optional]
    name = (m.stream or {}).get("input") or (required[0] if len(required) == 1 else None)
    if name is None or len([n for n in required if n != name]):
        raise InvalidInputError(f"this model has inputs {list(specs)}; pass data as a dict of them")
    if hasattr(data, "to_dask_array"):          # a dask DataFrame: one row per batch item
        return {name: _frame_to_array(m, specs[name], data, batch_axis, item_shape)}
    return {name: data if isinstance(data, da.Array) else da.from_array(np.asarray(data))}


def _frame_to_array(m, spec, frame, batch_axis, item_shape):
    import dask.array as da
    values = frame.to_dask_array(lengths=True)           # (rows, columns)
    axis = batch_axis if batch_axis is not None else (m.stream or {}).get("batch_axis", 0)
    rest = [d for k, d in enumerate(spec.shape) if k != axis]
    columns = values.shape[1]
    if item_shape is None:
        unknown = [k for k, d in enumerate(rest) if not isinstance(d, int)]
        known = int(np.prod([d for d in rest if isinstance(d, int)]))
        if len(unknown) > 1 or (not unknown and known != columns) or (unknown and columns % known):
            raise InvalidInputError(f"a row of {columns} values does not fill input {spec.name!r}'s shape {rest} "
                                    f"(without its batch axis); pass item_shape")
        item_shape = [d if isinstance(d, int) else columns // known for d in rest]
    item_shape = [int(d) for d in item_shape]
    if int(np.prod(item_shape)) != columns:
        raise InvalidInputError(f"item_shape {item_shape} does not hold a row's {columns} values")
    arr = values.reshape((values.shape[0], *item_shape), merge_chunks=True)
    return da.moveaxis(arr, 0, axis) if axis else arr


def _batch_axes(m, arrays, batch_axis):
    """The batch dimension's name and each input's axis for it."""
    specs = {s.name: s for s in m.inputs}
    info = m.stream or {}
    symbol = None
    if info.get("batch_axis") is not None:
        symbol = specs[info["input"]].shape[info["batch_axis"]]
    if batch_axis is not None:
        name = next(iter(arrays))
        if not 0 <= batch_axis < len(specs[name].shape):
            raise InvalidInputError(f"batch_axis {batch_axis} is outside input {name!r}'s rank "
                                    f"{len(specs[name].shape)}")
        symbol = specs[name].shape[batch_axis]
    if not isinstance(symbol, str):
        raise EngineError("the model does not name a batch dimension; pass batch_axis=")
    axes = {}
    for name, arr in arrays.items():
        shape = specs[name].shape
        if arr.ndim != len(shape):
            raise InvalidInputError(f"input {name!r} must have rank {len(shape)} (shape {shape}), got {arr.shape}")
        if symbol not in shape:
            raise InvalidInputError(f"input {name!r} (shape {shape}) has no batch dimension {symbol!r}")
        axes[name] = shape.index(symbol)
    return symbol, axes


# ---------------------------------------------------------------------- on the workers
def _score_block(blob, digest, names, output, threads, precision, *blocks):
    sess = _session(blob, digest, threads, precision)
    return sess.run([output], dict(zip(names, blocks)))[0]


def _session(blob, digest, threads, precision):
    """This process's Session for the model ``digest``, made from ``blob`` the first time."""
    from .session import Session
    key = (digest, threads, precision)
    with _lock:
        sess = _sessions.get(key)
        if sess is None:
            sess = Session(bytes(blob), threads=threads, precision=precision)
            _sessions[key] = sess
            while len(_sessions) > MAX_CACHED:
                _sessions.popitem(last=False)
        else:
            _sessions.move_to_end(key)
    return sess


def cached_sessions() -> list:
    """The (digest, threads, precision) of the Sessions this process keeps (``client.run(cached_sessions)`` lists
    each worker's)."""
    with _lock:
        return list(_sessions)
