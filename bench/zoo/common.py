"""Helpers shared by the zoo's training scripts: seeding, deterministic torch, ONNX export and check, metadata."""
import collections
import datetime
import json
import os
import platform
import random
import time
import warnings

import numpy as np
import torch

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
ZOO_DIR = os.path.join(ROOT, "engine", "data", "zoo")
OPSET = 17
TOLERANCE = 1e-5


def zoo_path(name):
    """Absolute path of a file in engine/data/zoo/ (the directory is created if needed)."""
    os.makedirs(ZOO_DIR, exist_ok=True)
    return os.path.join(ZOO_DIR, name)


def setup(seed, threads=1):
    """Seed every RNG, make torch deterministic and single-threaded (so that a rerun gives the same model)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass
    torch.use_deterministic_algorithms(True)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


class Timer:
    """Wall time since construction, in seconds."""

    def __init__(self):
        self.start = time.perf_counter()

    def __call__(self):
        return time.perf_counter() - self.start


def log(msg):
    print(msg, flush=True)


def export_onnx(model, args, path, input_names, output_names, dynamic_axes, opset=OPSET):
    """Export ``model`` with the TorchScript exporter (dynamo=False) and check the file with onnx.checker."""
    import onnx

    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, path, dynamo=False, opset_version=opset, input_names=input_names,
                          output_names=output_names, dynamic_axes=dynamic_axes, do_constant_folding=True)
    onnx.checker.check_model(onnx.load(path))
    return path


def onnx_summary(path):
    """Op-type counts and the declared inputs/outputs (name, dtype, shape with symbolic dims) of an ONNX file."""
    import onnx

    m = onnx.load(path)

    def describe(vi):
        t = vi.type.tensor_type
        dims = [d.dim_param if d.dim_param else d.dim_value for d in t.shape.dim]
        return {"name": vi.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name, "shape": dims}

    inits = {i.name for i in m.graph.initializer}
    return {
        "opset": max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")),
        "op_types": dict(sorted(collections.Counter(n.op_type for n in m.graph.node).items())),
        "inputs": [describe(v) for v in m.graph.input if v.name not in inits],
        "outputs": [describe(v) for v in m.graph.output],
        "file_bytes": os.path.getsize(path),
    }


def check_onnx(path, feeds, expected, tol=TOLERANCE, scaled=()):
    """Run the ONNX file with onnxruntime on ``feeds`` and compare each output with ``expected`` (name -> array).

    Raises AssertionError (fails loudly) when any max abs difference exceeds ``tol``; returns the differences.
    For the outputs named in ``scaled`` (unbounded states such as an LSTM's cell state c_n) the bound is
    ``tol * max(1, max|expected|)``, float32 rounding being relative.
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    names = list(expected)
    got = sess.run(names, feeds)
    diffs = {}
    for name, g in zip(names, got):
        e = np.asarray(expected[name])
        if g.shape != e.shape:
            raise AssertionError(f"{os.path.basename(path)}: output {name!r} has shape {g.shape}, torch {e.shape}")
        diffs[name] = float(np.max(np.abs(g.astype(np.float64) - e.astype(np.float64)))) if g.size else 0.0
    log(f"onnxruntime vs torch on {os.path.basename(path)}: "
        + ", ".join(f"{k} max|diff|={v:.2e}" for k, v in diffs.items()))
    bound = {k: tol * (max(1.0, float(np.max(np.abs(expected[k])))) if k in scaled else 1.0) for k in diffs}
    bad = {k: (v, bound[k]) for k, v in diffs.items() if not v <= bound[k]}
    if bad:
        raise AssertionError(f"{os.path.basename(path)}: onnxruntime differs from torch (name: (diff, bound)): {bad}")
    return diffs


def environment():
    import onnx
    import onnxruntime

    return {"python": platform.python_version(), "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
            "torch_threads": torch.get_num_threads()}


def write_metadata(name, meta):
    """Write engine/data/zoo/NAME.json (adds the ONNX summary, the environment and a timestamp)."""
    onnx_file = zoo_path(f"{name}.onnx")
    out = {"name": name, "onnx_file": f"{name}.onnx"}
    out.update(meta)
    out.setdefault("onnx", {}).update(onnx_summary(onnx_file))
    out["environment"] = environment()
    out["created"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    path = zoo_path(f"{name}.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=2, ensure_ascii=True)
        f.write("\n")
    log(f"wrote {os.path.relpath(path, ROOT)}")
    return path


def count_params(model):
    return int(sum(p.numel() for p in model.parameters()))
