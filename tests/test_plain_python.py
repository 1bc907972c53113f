"""The engine runs as plain Python under NUMBA_DISABLE_JIT=1 (for debugging with pdb or coverage), with the same
results as the compiled executor: every recurrent kind, both layouts, sequence lengths, a stream, weights fed as
graph inputs, a whole model with an embedding, shape glue and a softmax head, and convolutions. The plain-Python
side runs in a child process, since Numba reads the variable at import."""
import os
import subprocess
import sys

import numpy as np

from lstm_util import make_feeds, max_abs_diff, rnn_model, weights_to_inputs, whole_onnx_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import sys, numpy as np, engine, engine.executor
assert not hasattr(engine.executor.execute, "signatures"), "NUMBA_DISABLE_JIT did not take effect"
for src in sys.argv[1:]:
    data = np.load(src, allow_pickle=False)
    feeds = {k[5:]: data[k] for k in data.files if k.startswith("feed:")}
    sess = engine.Session(bytes(data["model"]), threads=1)
    outs = sess.run(None, feeds)
    extra = {}
    if "step" in data.files:
        stream = sess.stream(1)
        extra["stream"] = np.stack([stream.step(x) for x in data["step"]])
    np.savez(src[:-4] + "-out.npz", *outs, **extra)
"""


def _cases():
    rng = np.random.default_rng(3)
    cases = []
    for op in ("LSTM", "GRU", "RNN"):
        for layout, direction in ((0, "bidirectional"), (1, "forward")):
            inputs = ("X", "sequence_lens", "initial_h")
            model, _ = rnn_model(op, I=5, H=7, D=2 if direction == "bidirectional" else 1, T=6, B=3, rng=rng,
                                 attrs={"direction": direction, "layout": layout}, inputs=inputs,
                                 outputs=("Y", "Y_h"))
            feeds = make_feeds(inputs[1:], 6, 3, 5, 7, 2 if direction == "bidirectional" else 1, rng,
                               layout=layout, op=op)
            cases.append((f"{op}-{direction}-layout{layout}", model, feeds, None))
    model, _ = rnn_model("LSTM", I=4, H=6, D=1, T="T", B=1, rng=rng, attrs={})
    cases.append(("LSTM-stream", model, {"X": rng.standard_normal((5, 1, 4)).astype(np.float32)},
                  rng.standard_normal((5, 1, 4)).astype(np.float32)))
    whole, feeds = whole_onnx_model(rng)
    cases.append(("whole-model", whole, feeds, None))
    model, w = rnn_model("GRU", I=5, H=7, D=1, T=6, B=3, rng=rng, attrs={"linear_before_reset": 1},
                         inputs=("X", "initial_h"), outputs=("Y", "Y_h"))
    feeds = make_feeds(("initial_h",), 6, 3, 5, 7, 1, rng, op="GRU")
    cases.append(("GRU-fed-weights", weights_to_inputs(model), {**feeds, **{k: w[k] for k in ("W", "R", "B")}},
                  None))
    cases.append(("convolutions", _conv_model(rng), {"x": rng.standard_normal((2, 32, 5, 20)).astype(np.float32)},
                  None))
    return cases


def _conv_model(rng):
    """Two 3x3 convolutions: 32 -> 64 channels (the windows read in place, register tiles by window_tiles), then
    64 -> 4 (im2col)."""
    from onnx import TensorProto, helper, numpy_helper

    def weights(*shape):
        return (rng.standard_normal(shape) * 0.1).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in ((weights(64, 32, 3, 3), "w1"), (weights(64), "b1"),
                                                         (weights(4, 64, 3, 3), "w2"))]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["h"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["y"], pads=[0, 1, 1, 0])]
    graph = helper.make_graph(nodes, "convs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 32, 5, 20])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_every_kind_runs_as_plain_python_with_the_compiled_results(tmp_path):
    import engine
    cases = _cases()
    for name, model, feeds, steps in cases:
        args = {"model": np.frombuffer(model.SerializeToString(), np.uint8),
                **{f"feed:{k}": v for k, v in feeds.items()}}
        if steps is not None:
            args["step"] = steps
        np.savez(tmp_path / f"{name}.npz", **args)
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1", "PYTHONPATH": ROOT}
    p = subprocess.run([sys.executable, "-c", CHILD, *[str(tmp_path / f"{c[0]}.npz") for c in cases]], env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    for name, model, feeds, steps in cases:
        plain = np.load(tmp_path / f"{name}-out.npz")
        sess = engine.Session(model.SerializeToString(), threads=1)
        compiled = sess.run(None, feeds)
        # the convolutions' sums of 288 and 576 products (outputs ~2) come in another order from NumPy
        tol = 1e-5 if name == "convolutions" else 1e-6
        for k, out in enumerate(compiled):
            assert max_abs_diff(plain[f"arr_{k}"], out) <= tol, name
        if steps is not None:
            stream = sess.stream(1)
            assert max_abs_diff(plain["stream"], np.stack([stream.step(x) for x in steps])) <= 1e-6
