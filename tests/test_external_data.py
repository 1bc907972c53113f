"""ONNX files whose weights live in an external data file beside them (torch's exporter writes ``model.onnx.data``
for models over ~1 MB): they load from any working directory, through Session, from_onnx and the CLI; a missing,
truncated or escaping data file, or bytes that refer to one, is a ModelFileError that says so."""
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest

import converters
import engine
from lstm_util import rnn_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture()
def external(tmp_path):
    """(model with inline weights, path of the same model saved with its weights in model.onnx.data)."""
    model, _ = rnn_model("LSTM", I=6, H=9, D=2, T="T", B="B", rng=np.random.default_rng(0),
                         attrs={"direction": "bidirectional"})
    folder = tmp_path / "model dir"
    folder.mkdir()
    path = folder / "model.onnx"
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    onnx.save_model(copy, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.onnx.data", size_threshold=0)
    assert (folder / "model.onnx.data").stat().st_size > 0
    return model, path


def test_loads_from_any_working_directory(external, tmp_path, monkeypatch):
    model, path = external
    x = np.random.default_rng(1).standard_normal((5, 2, 6)).astype(np.float32)
    want = engine.Session(model.SerializeToString()).run(None, {"X": x})
    monkeypatch.chdir(tmp_path)                      # not the model's directory
    for sess in (engine.Session(path), engine.Session(str(path)), engine.Session(converters.from_onnx(path))):
        assert all(np.array_equal(a, b) for a, b in zip(sess.run(None, {"X": x}), want))
    out = tmp_path / "m.lstm"
    p = subprocess.run([sys.executable, "-m", "engine.cli", "convert", str(path), "-o", str(out), "--quiet"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": ROOT})
    assert p.returncode == 0, p.stderr
    assert all(np.array_equal(a, b) for a, b in zip(engine.Session(out).run(None, {"X": x}), want))


def test_a_missing_or_truncated_data_file_is_named(external):
    _, path = external
    data = path.parent / "model.onnx.data"
    content = data.read_bytes()
    data.write_bytes(content[:len(content) // 2])
    with pytest.raises(engine.ModelFileError, match="truncated"):
        engine.Session(path)
    data.unlink()
    with pytest.raises(engine.ModelFileError, match="model.onnx.data.*missing"):
        engine.Session(path)
    with pytest.raises(engine.ModelFileError, match="missing"):
        converters.from_onnx(path)


def test_bytes_that_refer_to_external_data_ask_for_the_path(external):
    _, path = external
    with pytest.raises(engine.ModelFileError, match="from its path"):
        engine.Session(path.read_bytes())


def test_a_location_outside_the_model_directory_is_refused(external):
    _, path = external
    m = onnx.load_model(str(path), load_external_data=False)
    for init in m.graph.initializer:
        for entry in init.external_data:
            if entry.key == "location":
                entry.value = "../secret.bin"
    (path.parent.parent / "secret.bin").write_bytes(b"\0" * 100000)
    path.write_bytes(m.SerializeToString())
    with pytest.raises(engine.ModelFileError, match="outside the model's directory"):
        engine.Session(path)


EXPORT = r"""
import sys, numpy as np, torch
torch.manual_seed(0)
m = torch.nn.LSTM(256, 256, num_layers=2).eval()
x = torch.randn(7, 1, 256)
torch.onnx.export(m, (x,), sys.argv[1], dynamo=True, input_names=["x"], external_data=True)
with torch.no_grad():
    np.savez(sys.argv[2], x=x.numpy(), y=m(x)[0].numpy())
"""


@pytest.mark.slow
def test_torch_exporter_external_data(tmp_path, monkeypatch):
    """torch.onnx.export(dynamo=True) of a model over the size threshold writes model.onnx.data. The export runs in
    a child process: the exporter keeps state between exports that changes what later exports in this process
    write (tests/test_from_torch.py relies on what a first export writes)."""
    pytest.importorskip("torch")
    path = tmp_path / "export" / "model.onnx"
    path.parent.mkdir()
    p = subprocess.run([sys.executable, "-c", EXPORT, str(path), str(tmp_path / "ref.npz")], capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    if not (path.parent / "model.onnx.data").exists():
        pytest.skip("this torch version inlined the weights")
    ref = np.load(tmp_path / "ref.npz")
    monkeypatch.chdir(tmp_path)
    got = engine.Session(path).run(None, {"x": ref["x"]})[0]
    assert np.abs(got - ref["y"]).max() <= 1e-5
