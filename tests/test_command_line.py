"""The lstm-engine command line, run as a subprocess the way a user runs it.

The tests of conversion and of the demo need torch and onnxruntime (slow); help, inspect, run and their errors are
tried on a model file built with engine.Model (tests/built_models.py).
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import engine
from built_models import recurrent_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "engine.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600)


def no_traceback(p):
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout, p.stderr


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    import torch
    d = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    m = torch.nn.LSTM(3, 4, num_layers=2, batch_first=True).eval()
    torch.save(m.state_dict(), d / "state.pt")
    import io
    import warnings
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (torch.randn(2, 5, 3),), buf, dynamo=False, input_names=["input"],
                          output_names=["output", "h_n", "c_n"], dynamic_axes={"input": {0: "B", 1: "T"}})
    (d / "model.onnx").write_bytes(buf.getvalue())
    x = np.random.default_rng(0).standard_normal((2, 6, 3)).astype(np.float32)
    np.save(d / "x.npy", x)
    return d, m, x


def test_help_for_every_command():
    p = cli("--help")
    assert p.returncode == 0 and "convert" in p.stdout and "examples:" in p.stdout
    for cmd in ("convert", "inspect", "run", "demo", "bench"):
        p = cli(cmd, "--help")
        assert p.returncode == 0 and "usage: lstm-engine " + cmd in p.stdout, cmd
    p = cli()
    assert p.returncode == 2 and "usage" in p.stdout
    p = cli("--version")
    assert p.returncode == 0 and p.stdout.strip() == f"lstm-engine {engine.__version__}"


@pytest.fixture(scope="module")
def built_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli-built")
    model, reference = recurrent_model("GRU", I=3, H=4, direction="bidirectional", clip=2.0)
    engine.save(model, d / "gru.lstm")
    x = np.random.default_rng(0).standard_normal((6, 2, 3)).astype(np.float32)
    np.save(d / "x.npy", x)
    return d, reference, x


def test_inspect_and_run_a_model_file(built_file):
    d, reference, x = built_file
    p = cli("inspect", d / "gru.lstm")
    no_traceback(p)
    assert p.returncode == 0, p.stderr
    assert "lstm-engine v1" in p.stdout and "GRU bidirectional input=3 hidden=4" in p.stdout and "clip=2.0" in p.stdout
    meta = json.loads(cli("inspect", d / "gru.lstm", "--json").stdout)
    assert meta["nodes"][0]["op"] == "GRU" and meta["parameter_count"] == 2 * (12 * 3 + 12 * 4 + 24)
    p = cli("run", d / "gru.lstm", "--input", f"X={d / 'x.npy'}", "-o", d / "out.npz", "--threads", "1")
    assert p.returncode == 0, p.stderr
    out = np.load(d / "out.npz")
    assert sorted(out.files) == ["Y", "Y_h"]
    for name, ref in zip(("Y", "Y_h"), reference({"X": x})):
        assert np.abs(out[name] - ref).max() <= 1e-5


def test_warmup_compiles_the_executor_and_writes_the_bytecode():
    """`lstm-engine warmup` readies the executor and writes the package's bytecode (an editable install under
    PYTHONDONTWRITEBYTECODE would otherwise compile every module at every start)."""
    import importlib.util
    pyc = importlib.util.cache_from_source(os.path.join(ROOT, "engine", "errors.py"))
    if os.path.exists(pyc):
        os.remove(pyc)
    p = cli("warmup", "--precision", "float32")
    no_traceback(p)
    assert p.returncode == 0, p.stderr
    assert "bytecode: written" in p.stdout and "executor (float32) ready in" in p.stdout, p.stdout
    assert os.path.exists(pyc)


def test_output_cut_short_by_its_reader_ends_quietly(tmp_path):
    """`lstm-engine inspect big.onnx --json | head`: the reader goes away; the command stops without a traceback."""
    import onnx
    from onnx import TensorProto, helper
    nodes = [helper.make_node("Relu", [f"v{k}"], [f"v{k + 1}"]) for k in range(3000)]   # ~0.5 MB of JSON
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("v0", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("v3000", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "chain.onnx")
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    p = subprocess.Popen([sys.executable, "-m", "engine.cli", "inspect", str(tmp_path / "chain.onnx"), "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert len(p.stdout.read(10)) == 10
    p.stdout.close()                                     # the reader goes away after 10 bytes
    err = p.stderr.read().decode()
    rc = p.wait(timeout=600)
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert rc == 141, (rc, err)


CLI_ERRORS = [
    (("convert", "missing.onnx", "-o", "x.lstm"), "not found"),
    (("inspect", "missing.lstm"), "not found"),
    (("run", "{d}/gru.lstm", "--input", "X={d}/missing.npy", "-o", "o.npz"), "file not found"),
    (("run", "{d}/gru.lstm", "--input", "oops", "-o", "o.npz"), "NAME=FILE.npy"),
    (("run", "{d}/gru.lstm", "--input", "nope={d}/x.npy", "-o", "o.npz"), "unknown input"),
    (("run", "{d}/gru.lstm", "-o", "o.npz"), "missing required input"),
    (("run", "{d}/gru.lstm", "--input", "X={d}/x.npy", "-o", "o.npz", "--outputs", "Z"), "unknown output"),
    (("inspect", "{d}/x.npy"), "neither an lstm-engine model"),
    (("convert", "{d}/gru.lstm", "-o", "{d}/again.lstm"), "already an lstm-engine model"),
]


@pytest.mark.parametrize("args,message", CLI_ERRORS, ids=[f"{a[0]}-{m.replace(' ', '-')}" for a, m in CLI_ERRORS])
def test_errors_on_a_model_file_are_one_clear_line(built_file, args, message):
    d, _, _ = built_file
    p = cli(*[a.format(d=d) for a in args], cwd=d)
    assert p.returncode == 2, p.stdout
    no_traceback(p)
    assert message in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr


@pytest.mark.slow
def test_convert_inspect_run_onnx(files):
    import torch
    d, m, x = files
    p = cli("convert", d / "model.onnx", "-o", d / "from_onnx.lstm")
    assert p.returncode == 0, p.stderr
    assert "2 recurrent layer(s)" in p.stdout
    p = cli("inspect", d / "from_onnx.lstm")
    assert p.returncode == 0 and "lstm-engine v1" in p.stdout and "parameters:" in p.stdout and "LSTM" in p.stdout
    p = cli("inspect", d / "from_onnx.lstm", "--json")
    meta = json.loads(p.stdout)
    assert meta["format"] == "lstm-engine" and meta["parameter_count"] > 0
    p = cli("run", d / "from_onnx.lstm", "--input", f"input={d / 'x.npy'}", "-o", d / "out.npz")
    assert p.returncode == 0, p.stderr
    out = np.load(d / "out.npz")
    ref = engine.Session(d / "from_onnx.lstm").run(None, {"input": x})
    assert sorted(out.files) == ["c_n", "h_n", "output"]
    assert np.array_equal(out["output"], ref[0]) and np.array_equal(out["h_n"], ref[1])
    with torch.no_grad():
        assert float(np.abs(out["output"] - m(torch.from_numpy(x))[0].numpy()).max()) <= 1e-5
    for target, message in ((d, "it is a directory"), (d / "missing" / "m.lstm", "No such file or directory")):
        p = cli("convert", d / "model.onnx", "-o", target)      # an output that cannot be written: said, no trace
        no_traceback(p)
        assert p.returncode == 2 and "cannot write the model file" in p.stderr and message in p.stderr, p.stderr


@pytest.mark.slow
def test_convert_state_dict_with_batch_first(files):
    import torch
    d, m, x = files
    p = cli("convert", d / "state.pt", "-o", d / "from_sd.lstm", "--batch-first")
    assert p.returncode == 0, p.stderr
    got = engine.Session(d / "from_sd.lstm").run(None, {"input": x})[0]
    with torch.no_grad():
        assert float(np.abs(got - m(torch.from_numpy(x))[0].numpy()).max()) <= 1e-5
    p = cli("run", d / "from_sd.lstm", "-i", f"input={d / 'x.npy'}", "-o", d / "o.npz", "--outputs", "h_n")
    assert p.returncode == 0 and np.load(d / "o.npz").files == ["h_n"]


@pytest.mark.slow
def test_demo_runs_every_zoo_model_and_checks_against_onnxruntime(tmp_path):
    p = cli("demo", "--repeats", "5", "--out", tmp_path / "out", cwd=tmp_path)
    no_traceback(p)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    out = p.stdout
    # the four zoo models, and Silero VAD on espeak-ng speech (silero-vad is in the test extra; CI installs
    # espeak-ng and sox)
    from engine.speech import tools_missing
    vad = not tools_missing()
    assert out.count("every output matches onnxruntime") == 4 + vad and "all outputs match onnxruntime" in out
    assert "bits/char" in out and "RMSE" in out and "test accuracy 0.98" in out and "character accuracy" in out
    for label in ("charlm: one character (streaming)", "co2: one forecast", "digits: one image",
                  "crnn: one text line"):
        assert label in out
    if vad:
        assert "5 of 5 sentences found" in out and "vad: one 32 ms chunk (stream.step)" in out
        assert (tmp_path / "out" / "vad.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert "skipped: the demo speaks its test audio with espeak-ng and sox" in out
    png = (tmp_path / "out" / "co2_forecast.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert "demo: convert + load" in p.stderr            # the progress bar
    # which says what a first run's minute of compiling is before it starts, then that it is over
    told, ready = p.stderr.find("compiling it (once per install"), p.stderr.find("executor ready in")
    assert 0 <= told < ready


@pytest.mark.parametrize("args,message", [(["--models", "nope"], "unknown demo model"),
                                          (["--repeats", "0"], "--repeats must be at least 1")])
def test_demo_argument_errors(args, message):
    p = cli("demo", *args)
    no_traceback(p)
    assert p.returncode == 2 and message in p.stderr


@pytest.mark.slow
@pytest.mark.parametrize("module,kwargs,args,state_names", [
    ("GRU", {"num_layers": 2}, [], ["h0"]),
    ("RNN", {"nonlinearity": "relu"}, ["--nonlinearity", "relu"], ["h0"]),
    ("GRUCell", {}, [], None),
])
def test_convert_gru_rnn_and_cell_state_dicts(tmp_path, module, kwargs, args, state_names):
    import torch
    torch.manual_seed(1)
    m = getattr(torch.nn, module)(3, 4, **kwargs).eval()
    torch.save(m.state_dict(), tmp_path / "sd.pt")
    p = cli("convert", tmp_path / "sd.pt", "-o", tmp_path / "m.lstm", *args)
    no_traceback(p)
    assert p.returncode == 0, p.stderr
    sess = engine.Session(str(tmp_path / "m.lstm"))
    if state_names is None:                       # a cell: input (B, I) -> h' (B, H)
        x = torch.randn(2, 3)
        with torch.no_grad():
            ref = m(x).numpy()
        assert np.abs(sess.run(None, {"input": x.numpy()})[0] - ref).max() <= 1e-5
    else:
        x = torch.randn(5, 2, 3)
        with torch.no_grad():
            ref = m(x)[0].numpy()
        assert [i.name for i in sess.get_inputs()] == ["input", *state_names]
        assert np.abs(sess.run(None, {"input": x.numpy()})[0] - ref).max() <= 1e-5
