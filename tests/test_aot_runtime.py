"""The ahead-of-time runtime (engine/aot.py): ``lstm-engine build-runtime`` builds it, a Session picks it up
(``runtime == "aot"``) in a process where Numba and llvmlite cannot be imported, and its results equal the JIT's.

Two runtimes are built once per test session, side by side (a build takes about 50 s of CPU time): the default one
(BLAS products through SciPy) and a ``--no-blas`` one, which runs where SciPy cannot be imported either: a device with
numpy only. The AOT side of every comparison runs in a child process whose meta path refuses those packages; the JIT
side runs here.
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import converters
import engine
from engine import aot
from lstm_util import make_feeds, max_abs_diff, rnn_model, weights_to_inputs, whole_onnx_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow

CHILD = r"""
import json, sys
BLOCKED = tuple(sys.argv[1].split(","))


class _Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} cannot be imported in this process")


sys.meta_path.insert(0, _Refuse())
import numpy as np
import converters
import engine
report = {}
for src in sys.argv[2:]:
    data = np.load(src, allow_pickle=False)
    feeds = {k[5:]: data[k] for k in data.files if k.startswith("feed:")}
    sess = engine.Session(src[:-4] + ".lstm", threads=int(data["threads"]), precision=str(data["precision"]))
    outs = sess.run(None, feeds)
    extra = {}
    if "step" in data.files:
        stream = sess.stream(1)
        extra["stream"] = np.stack([stream.step(x) for x in data["step"]])
    np.savez(src[:-4] + "-out.npz", *outs, **extra)
    report[src] = {"runtime": sess.runtime, "program": sess.program({k: v.shape for k, v in feeds.items()})}
report["modules"] = sorted({m.split(".")[0] for m in sys.modules})
print(json.dumps(report))
"""


def _build(out_dir, *extra):
    return subprocess.Popen([sys.executable, "-m", "engine.cli", "build-runtime", "-o", str(out_dir), *extra],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="session")
def runtimes(tmp_path_factory):
    """{"blas": dir, "noblas": dir}: both runtimes, built concurrently through the command line."""
    root = tmp_path_factory.mktemp("aot")
    dirs = {"blas": root / "blas", "noblas": root / "noblas"}
    procs = {"blas": _build(dirs["blas"]), "noblas": _build(dirs["noblas"], "--no-blas")}
    for kind, proc in procs.items():
        out, _ = proc.communicate(timeout=1200)
        assert proc.returncode == 0, out[-3000:]
        assert "wrote" in out and "LSTM_ENGINE_RUNTIME=" in out, out
    return dirs


def _run_child(runtime_dir, blocked, paths):
    env = {**os.environ, "PYTHONPATH": ROOT, "LSTM_ENGINE_RUNTIME": str(runtime_dir)}
    p = subprocess.run([sys.executable, "-c", CHILD, ",".join(blocked), *map(str, paths)], env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------- the cases
def _cases():
    """(name, onnx model, feeds, precision, threads, stream steps or None). Batches 1-3 take the blocked products,
    batches >= 4 (and the hoisted input projections of longer sequences) the BLAS ones."""
    rng = np.random.default_rng(11)
    cases = []
    ins = ("X", "sequence_lens", "initial_h", "initial_c")
    for B in (2, 5):
        model, _ = rnn_model("LSTM", I=5, H=9, D=2, T=6, B=B, rng=rng, attrs={"direction": "bidirectional"},
                             inputs=ins, with_P=True)
        cases.append((f"lstm-fast-B{B}", model, make_feeds(ins[1:], 6, B, 5, 9, 2, rng), "float32", 1, None))
    model, _ = rnn_model("LSTM", I=4, H=6, D=1, T=5, B=3, rng=rng, inputs=("X",), outputs=("Y", "Y_h", "Y_c"),
                         attrs={"activations": ["HardSigmoid", "Elu", "Softsign"], "clip": 2.5, "layout": 1})
    cases.append(("lstm-generic-activations", model, {"X": rng.standard_normal((3, 5, 4)).astype(np.float32)},
                  "float32", 1, None))
    model, _ = rnn_model("LSTM", I=5, H=7, D=2, T=6, B=4, rng=rng, attrs={"direction": "bidirectional"},
                         inputs=("X", "sequence_lens"))
    feeds = make_feeds(("sequence_lens",), 6, 4, 5, 7, 2, rng)
    cases.append(("lstm-float64", model, {**feeds, "X": feeds["X"].astype(np.float64)}, "float64", 1, None))
    # hidden size >= PARALLEL_MIN_HIDDEN at batch 1 with two threads: the JIT would take the threaded kernel,
    # the AOT runtime must not (compared with the JIT on one thread, the same kernel)
    model, _ = rnn_model("LSTM", I=8, H=256, D=1, T=4, B=1, rng=rng, attrs={}, inputs=("X",), weight_scale=0.1)
    cases.append(("lstm-wide-2-threads", model, {"X": rng.standard_normal((4, 1, 8)).astype(np.float32)},
                  "float32", 2, None))
    for lbr in (0, 1):
        for B in (2, 6):
            model, _ = rnn_model("GRU", I=5, H=7, D=2, T=6, B=B, rng=rng, inputs=("X", "sequence_lens", "initial_h"),
                                 attrs={"direction": "bidirectional", "linear_before_reset": lbr}, outputs=("Y", "Y_h"))
            cases.append((f"gru-lbr{lbr}-B{B}", model,
                          make_feeds(("sequence_lens", "initial_h"), 6, B, 5, 7, 2, rng, op="GRU"), "float32", 1, None))
    for acts, B in ((["Tanh"], 2), (["Relu"], 5)):
        model, _ = rnn_model("RNN", I=5, H=7, D=1, T=6, B=B, rng=rng, inputs=("X", "initial_h"),
                             attrs={"activations": acts}, outputs=("Y", "Y_h"))
        cases.append((f"rnn-{acts[0].lower()}-B{B}", model, make_feeds(("initial_h",), 6, B, 5, 7, 1, rng, op="RNN"),
                      "float32", 1, None))
    model, _ = rnn_model("LSTM", I=4, H=6, D=1, T="T", B=1, rng=rng, attrs={})
    cases.append(("lstm-stream", model, {"X": rng.standard_normal((5, 1, 4)).astype(np.float32)}, "float32", 1,
                  rng.standard_normal((5, 1, 4)).astype(np.float32)))
    whole, feeds = whole_onnx_model(rng, B=5)
    cases.append(("whole-model", whole, feeds, "float32", 1, None))
    # the weights fed as graph inputs: packed on the call, read from the call's buffer (engine/call_weights.py)
    model, w = rnn_model("LSTM", I=5, H=7, D=2, T=6, B=2, rng=rng, attrs={"direction": "bidirectional"},
                         inputs=("X", "initial_h"), with_P=True)
    feeds = make_feeds(("initial_h",), 6, 2, 5, 7, 2, rng)
    cases.append(("lstm-fed-weights", weights_to_inputs(model), {**feeds, **w}, "float32", 1, None))
    cases.append(("vision", _vision_model(rng), {"x": rng.standard_normal((2, 3, 9, 13)).astype(np.float32)},
                  "float32", 1, None))
    # reduced-precision weights (REDUCED): the runtime's portable integer sums against the JIT's (vpdpbusd where the
    # CPU has it): exact either way
    for name, op, acts in (("lstm-int8", "LSTM", {}), ("gru-bf16", "GRU", {"linear_before_reset": 1}),
                           ("rnn-int8", "RNN", {"activations": ["Relu"]})):
        outs = ("Y", "Y_h", "Y_c") if op == "LSTM" else ("Y", "Y_h")
        model, _ = rnn_model(op, I=5, H=21, D=1, T=7, B=2, rng=rng, inputs=("X",), attrs=acts, outputs=outs,
                             weight_scale=0.3)
        cases.append((name, model, {"X": rng.standard_normal((7, 2, 5)).astype(np.float32)}, "float32", 2, None))
    # int8 at batch 1 from 8 steps, gates in whole groups of 64: sums scaled in registers, the projection pipelined
    model, _ = rnn_model("LSTM", I=5, H=16, D=1, T=9, B=1, rng=rng, inputs=("X",), attrs={},
                         outputs=("Y", "Y_h", "Y_c"), weight_scale=0.3)
    cases.append(("lstm-int8-pipelined", model, {"X": rng.standard_normal((9, 1, 5)).astype(np.float32)}, "float32",
                  1, None))
    return cases


REDUCED = {"lstm-int8": "int8", "gru-bf16": "bfloat16", "rnn-int8": "int8",   # case -> converter's weights=
           "lstm-int8-pipelined": "int8"}


def _vision_model(rng):
    """The vision ops (engine/ops/vision.py): a convolution with a batch norm folded in, a pool, a strided grouped
    convolution, an average pool, LeakyRelu, Clip, ReduceMax."""
    from onnx import TensorProto, helper, numpy_helper
    w = lambda *shape: rng.standard_normal(shape).astype(np.float32)   # noqa: E731
    inits = {"W1": w(4, 3, 3, 3), "s": w(4), "b": w(4), "m": w(4), "v": np.abs(w(4)) + 0.5, "W2": w(6, 2, 3, 2)}
    nodes = [helper.make_node("Conv", ["x", "W1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c1", "s", "b", "m", "v"], ["n1"]),
             helper.make_node("MaxPool", ["n1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
             helper.make_node("Conv", ["p1", "W2"], ["c2"], group=2, strides=[1, 2], pads=[1, 0, 1, 1]),
             helper.make_node("AveragePool", ["c2"], ["p2"], kernel_shape=[2, 1], pads=[1, 0, 0, 0]),
             helper.make_node("LeakyRelu", ["p2"], ["r"], alpha=0.2),
             helper.make_node("Clip", ["r"], ["k"], min=-1.0, max=2.0),
             helper.make_node("ReduceMax", ["k"], ["y"], axes=[2], keepdims=0)]
    g = helper.make_graph(nodes, "vision", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 9, "W"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(a, n) for n, a in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 10)])
    m.ir_version = 8
    return m


def _write_cases(tmp_path, cases):
    paths = []
    for name, model, feeds, precision, threads, steps in cases:
        path = tmp_path / f"{name}.npz"
        converters.from_onnx(model, tmp_path / f"{name}.lstm", weights=REDUCED.get(name, "float32"))
        extra = {"step": steps} if steps is not None else {}
        np.savez(path, precision=precision, threads=threads, **{f"feed:{k}": v for k, v in feeds.items()}, **extra)
        paths.append(path)
    return paths


def _check_against_jit(tmp_path, runtime_dir, blocked):
    """Run every case in a child that cannot import ``blocked``, on the runtime in ``runtime_dir``; compare with the
    JIT here (on one thread: the kernel the AOT runtime runs). Returns {case name: the child's report}."""
    cases = _cases()
    paths = _write_cases(tmp_path, cases)
    report = _run_child(runtime_dir, blocked, paths)
    for package in blocked:
        assert package not in report["modules"]
    for (name, model, feeds, precision, threads, steps), path in zip(cases, paths):
        assert report[str(path)]["runtime"] == "aot", name
        got = np.load(tmp_path / f"{name}-out.npz")
        source = converters.from_onnx(model, weights=REDUCED[name]) if name in REDUCED else model.SerializeToString()
        sess = engine.Session(source, threads=1, precision=precision)
        assert sess.runtime == "jit"
        expected = sess.run(None, feeds)
        assert len(got.files) == len(expected) + (steps is not None), name
        for k, out in enumerate(expected):
            assert got[f"arr_{k}"].dtype == out.dtype, name
            assert max_abs_diff(got[f"arr_{k}"], out) <= 1e-6, name
        if steps is not None:
            stream = sess.stream(1)
            assert max_abs_diff(got["stream"], np.stack([stream.step(x) for x in steps])) <= 1e-6, name
    return {name: report[str(path)] for (name, *_), path in zip(cases, paths)}, report["modules"]


# ---------------------------------------------------------------------- tests
def test_build_writes_a_module_and_a_record_that_fit_this_machine(runtimes):
    info, reason = aot.check(str(runtimes["blas"]))
    assert info is not None, reason
    assert info["fingerprint"] == aot.fingerprint() and info["target"] == "host" and info["blas"]
    assert not info["parallel"]
    assert os.path.exists(os.path.join(runtimes["blas"], info["module"]))
    info, reason = aot.check(str(runtimes["noblas"]))
    assert info is not None and not info["blas"], reason


def test_without_numba_results_equal_the_jit(runtimes, tmp_path):
    """LSTM (fast, with peepholes and sequence lengths; generic activations, layout 1; float64; weights fed as
    inputs), GRU (both linear_before_reset), RNN, a stream and a whole model, at batches on both sides of the BLAS
    threshold."""
    report, _ = _check_against_jit(tmp_path, runtimes["blas"], ("numba", "llvmlite"))
    wide = report["lstm-wide-2-threads"]["program"]
    assert "lstm fast T=" in wide and "threads" not in wide, wide


def test_no_blas_runtime_needs_only_numpy(runtimes, tmp_path):
    """The --no-blas runtime where Numba, llvmlite, SciPy, threadpoolctl, onnx and safetensors (the engine reads
    model files itself; the package only writes them) cannot be imported."""
    _, modules = _check_against_jit(tmp_path, runtimes["noblas"],
                                    ("numba", "llvmlite", "scipy", "threadpoolctl", "onnx", "safetensors"))
    assert "numpy" in modules


def test_the_default_location_is_found_without_configuration(runtimes, tmp_path):
    """build-runtime's default output, $LSTM_ENGINE_CACHE_DIR/runtime, is where a Session looks."""
    cache = tmp_path / "cache"
    shutil.copytree(runtimes["blas"], cache / "runtime")
    env = {k: v for k, v in os.environ.items() if k != "LSTM_ENGINE_RUNTIME"}
    env.update(PYTHONPATH=ROOT, LSTM_ENGINE_CACHE_DIR=str(cache))
    code = "import sys, engine; r = engine.runtime.current(); print(r.name, r.path, 'numba' in sys.modules)"
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    name, path, numba_imported = p.stdout.split()
    assert (name, numba_imported) == ("aot", "False") and path.startswith(str(cache / "runtime")), p.stderr


def test_a_runtime_from_other_sources_is_refused(runtimes, tmp_path):
    stale = tmp_path / "stale"
    shutil.copytree(runtimes["blas"], stale)
    record = stale / aot.RECORD
    info = json.loads(record.read_text())
    info["fingerprint"] = "0" * 16
    record.write_text(json.dumps(info))
    found, reason = aot.check(str(stale))
    assert found is None and "other engine sources" in reason
    # with Numba: a warning and the JIT
    code = ("import warnings, engine; warnings.simplefilter('error', RuntimeWarning)\n"
            "try:\n    engine.runtime.current()\nexcept RuntimeWarning as w:\n    print('warned:', w)\n")
    env = {**os.environ, "PYTHONPATH": ROOT, "LSTM_ENGINE_RUNTIME": str(stale)}
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert "warned:" in p.stdout and "other engine sources" in p.stdout and "falling back to the JIT" in p.stdout
    # without Numba: a clear error, not an ImportError from deep inside
    code = ("import sys\nclass R:\n    def find_spec(self, n, p=None, t=None):\n"
            "        if n.split('.')[0] == 'numba': raise ImportError('no numba here')\n"
            "sys.meta_path.insert(0, R())\nimport warnings, engine\nwarnings.simplefilter('ignore')\n"
            "try:\n    engine.runtime.current()\nexcept engine.EngineError as e:\n    print('error:', e)\n")
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert "error:" in p.stdout and "build-runtime" in p.stdout and "other engine sources" in p.stdout, p.stdout
