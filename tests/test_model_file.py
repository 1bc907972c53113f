"""The model file: round trip, detection by content, version checks, and every kind of damage -> ModelFileError.

The file is written from a model built with engine.Model (tests/built_models.py): no torch needed.
"""
import json
import os
import struct

import numpy as np
import pytest

import engine
from built_models import recurrent_model
from engine.errors import FormatVersionError, ModelFileError
from engine.model import FORMAT_VERSION, METADATA_KEY


@pytest.fixture(scope="module")
def lstm_file(tmp_path_factory):
    """A bidirectional LSTM with peepholes: X (T, B, 4) -> Y (T, 2, B, 5), Y_h, Y_c."""
    model, reference = recurrent_model("LSTM", I=4, H=5, direction="bidirectional", peepholes=True)
    path = tmp_path_factory.mktemp("m") / "model.lstm"
    engine.save(model, path)
    return reference, path


def _header(data):
    n = struct.unpack("<Q", data[:8])[0]
    return n, json.loads(data[8:8 + n])


def _rewrite(data, mutate):
    """Re-encode a file after changing its header JSON (keeps the tensor bytes)."""
    n, header = _header(data)
    mutate(header)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + data[8 + n:]


def _meta(header):
    return json.loads(header["__metadata__"][METADATA_KEY])


def _set_meta(header, meta):
    header["__metadata__"][METADATA_KEY] = json.dumps(meta)


def test_round_trip_is_bit_exact(lstm_file, tmp_path):
    _, path = lstm_file
    model = engine.load(path)
    assert model.format_version == FORMAT_VERSION
    assert model.origin["source"] == "tests/built_models.py"
    engine.save(model, tmp_path / "again.lstm")
    again = engine.load(tmp_path / "again.lstm")
    assert again.metadata() == model.metadata()
    for name, t in model.tensors.items():
        assert t.dtype == again.tensors[name].dtype and np.array_equal(t, again.tensors[name])


def test_session_from_path_and_bytes_detected_by_content(lstm_file, tmp_path):
    reference, path = lstm_file
    x = np.random.default_rng(0).standard_normal((3, 2, 4)).astype(np.float32)
    ref = engine.Session(path).run(None, {"X": x})
    assert max(float(np.abs(a - b).max()) for a, b in zip(ref, reference({"X": x}))) <= 1e-5
    odd_name = tmp_path / "weights.onnx"           # an lstm-engine file with a misleading extension
    odd_name.write_bytes(path.read_bytes())
    for src in (path, str(path), path.read_bytes(), odd_name):
        out = engine.Session(src).run(None, {"X": x})
        assert all(np.array_equal(a, b) for a, b in zip(out, ref))


def test_onnx_file_with_our_extension_is_detected_by_content(tmp_path):
    from lstm_util import rnn_model
    model, _ = rnn_model("LSTM", I=4, H=5, D=1, T="T", B="B", rng=np.random.default_rng(0), attrs={})
    x = np.random.default_rng(1).standard_normal((3, 2, 4)).astype(np.float32)
    onnx_as_lstm = tmp_path / "model.lstm"        # an ONNX file with our extension
    onnx_as_lstm.write_bytes(model.SerializeToString())
    out = engine.Session(onnx_as_lstm).run(None, {"X": x})
    ref = engine.Session(model.SerializeToString()).run(None, {"X": x})
    assert all(np.array_equal(a, b) for a, b in zip(out, ref))


def test_newer_format_version_is_refused(lstm_file, tmp_path):
    data = lstm_file[1].read_bytes()

    def newer(header):
        meta = _meta(header)
        meta["format_version"] = FORMAT_VERSION + 1
        _set_meta(header, meta)

    p = tmp_path / "newer.lstm"
    p.write_bytes(_rewrite(data, newer))
    with pytest.raises(FormatVersionError, match="upgrade lstm-engine"):
        engine.Session(p)


@pytest.mark.parametrize("cut", [0, 4, 8, 20, "header-1", "half", "end-1"])
def test_truncated_files_are_refused(lstm_file, tmp_path, cut):
    data = lstm_file[1].read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    upto = {"header-1": 8 + n - 1, "half": len(data) // 2, "end-1": len(data) - 1}.get(cut, cut)
    p = tmp_path / "cut.lstm"
    p.write_bytes(data[:upto])
    with pytest.raises(ModelFileError):
        engine.Session(p)


def _corruptions():
    def bad_json(data):
        return data[:8] + b"{not json" + data[17:]

    def huge_header(data):
        return struct.pack("<Q", 2 ** 40) + data[8:]

    def offsets_out_of_range(data):
        def f(h):
            name = next(k for k in h if k != "__metadata__")
            h[name]["data_offsets"] = [0, 10 ** 9]
        return _rewrite(data, f)

    def inconsistent_offsets(data):
        def f(h):
            name = next(k for k in h if k != "__metadata__")
            h[name]["data_offsets"][1] -= 4
        return _rewrite(data, f)

    def missing_tensor(data):
        def f(h):
            meta = _meta(h)
            w = next(n for n in meta["nodes"] if n["op"] == "LSTM")["inputs"][1]
            del h[w]
        return _rewrite(data, f)

    def misshapen_tensor(data):
        def f(h):
            meta = _meta(h)
            w = next(n for n in meta["nodes"] if n["op"] == "LSTM")["inputs"][2]
            shape = h[w]["shape"]
            h[w]["shape"] = [shape[0], shape[1] * shape[2], 1]
        return _rewrite(data, f)

    def not_ours(data):
        def f(h):
            del h["__metadata__"][METADATA_KEY]
        return _rewrite(data, f)

    def unknown_op(data):
        def f(h):
            meta = _meta(h)
            meta["nodes"][0]["op"] = "Bogus"
            _set_meta(h, meta)
        return _rewrite(data, f)

    def dangling_input(data):
        def f(h):
            meta = _meta(h)
            meta["nodes"][0]["inputs"][0] = "nowhere"
            _set_meta(h, meta)
        return _rewrite(data, f)

    def malformed_description(data):
        def f(h):
            meta = _meta(h)
            del meta["inputs"]
            _set_meta(h, meta)
        return _rewrite(data, f)

    def bad_dtype(data):
        def f(h):
            name = next(k for k in h if k != "__metadata__")
            h[name]["dtype"] = "Q99"
        return _rewrite(data, f)

    return [bad_json, huge_header, offsets_out_of_range, inconsistent_offsets, missing_tensor, misshapen_tensor,
            not_ours, unknown_op, dangling_input, malformed_description, bad_dtype]


@pytest.mark.parametrize("corrupt", _corruptions(), ids=lambda f: f.__name__)
def test_corrupt_files_are_refused_clearly(lstm_file, tmp_path, corrupt):
    p = tmp_path / "bad.lstm"
    p.write_bytes(corrupt(lstm_file[1].read_bytes()))
    with pytest.raises(engine.EngineError) as info:
        engine.Session(p)
    assert isinstance(info.value, (ModelFileError, engine.UnsupportedModelError))
    assert str(info.value)


@pytest.mark.parametrize("content", [b"", b"\x00" * 64, os.urandom(4096), b"hello world, not a model"],
                         ids=["empty", "zeros", "random", "text"])
def test_garbage_files_are_refused(tmp_path, content):
    p = tmp_path / "garbage.bin"
    p.write_bytes(content)
    with pytest.raises(engine.EngineError):
        engine.Session(p)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        engine.Session(tmp_path / "nope.lstm")
    with pytest.raises(ModelFileError, match="directory"):
        engine.Session(tmp_path)


def test_loading_never_unpickles(lstm_file, monkeypatch):
    import pickle

    def boom(*a, **k):
        raise AssertionError("pickle used while loading a model")

    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(np, "load", boom)
    engine.load(lstm_file[1])
