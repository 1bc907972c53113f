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


def test_save_gives_the_permissions_of_any_new_file_and_replaces_whole(lstm_file, tmp_path):
    """0666 less the umask (safetensors alone writes 0600: a service running as another user could not read the
    model); an existing file is replaced by rename, so a Session that mapped it keeps reading the old contents;
    nothing is left behind beside the file; a directory, or a missing one, is a ModelFileError that says so."""
    _, path = lstm_file
    model = engine.load(path)
    target = tmp_path / "shared.lstm"
    old = os.umask(0o027)
    try:
        engine.save(model, target)
        assert target.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)
    mapped = engine.Session(target)     # the Session packs its weights from a read-only mapping of the file
    first = target.stat().st_ino
    engine.save(model, target)
    assert target.stat().st_ino != first and target.stat().st_mode & 0o777 == 0o666 & ~old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared.lstm"]
    x = np.ones((3, 2, 4), np.float32)
    assert np.array_equal(mapped.run(None, {"X": x})[0], engine.Session(target).run(None, {"X": x})[0])
    with pytest.raises(ModelFileError, match="it is a directory"):
        engine.save(model, tmp_path)
    with pytest.raises(ModelFileError, match="No such file or directory"):
        engine.save(model, tmp_path / "missing" / "m.lstm")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared.lstm"]


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
    assert model.format_version == 1 < FORMAT_VERSION      # float weights: the version older engines read
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


# ---------------------------------------------------------------------- If nodes: round trip and hostile branches
@pytest.fixture(scope="module")
def if_file(tmp_path_factory):
    from built_models import if_model
    model, reference = if_model()
    path = tmp_path_factory.mktemp("m") / "if.lstm"
    engine.save(model, path)
    return reference, path


def test_an_if_model_round_trips_and_runs_both_branches(if_file, tmp_path):
    reference, path = if_file
    model = engine.load(path)
    assert [n.op for n in model.all_nodes()] == ["Equal", "If", "Mul", "Add"]
    engine.save(model, tmp_path / "again.lstm")
    assert engine.load(tmp_path / "again.lstm").metadata() == model.metadata()
    sess = engine.Session(path)
    assert [o.type for o in sess.get_outputs()] == ["tensor(float)", "tensor(bool)"]
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    for sr in (16000, 8000, 16000):
        feed = {"x": x, "sr": np.array(sr, np.int64)}
        y, cond = sess.run(None, feed)
        want_y, want_cond = reference(feed)
        assert np.array_equal(y, want_y) and cond.dtype == np.bool_ and cond.shape == () and cond == want_cond


def _if_node(meta):
    return next(n for n in meta["nodes"] if n["op"] == "If")


def _nested_if_text(depth):
    """A node list JSON holding ``depth`` Ifs, each in the then branch of the one before (written as text: json
    cannot write JSON nested that deep)."""
    inner = '{"op": "Mul", "name": "mul", "inputs": ["x", "two"], "outputs": ["t0"], "attrs": {}}'
    for k in range(depth):
        out = "y" if k == depth - 1 else f"t{k + 1}"
        inner = (f'{{"op": "If", "name": "if{k}", "inputs": ["cond", "x", "two", "one"], "outputs": ["{out}"], '
                 f'"attrs": {{"then": {{"nodes": [{inner}], "outputs": ["t{k}"]}}, "else": {{"nodes": [{{"op": "Add", '
                 f'"name": "add{k}", "inputs": ["x", "one"], "outputs": ["e{k}"], "attrs": {{}}}}], '
                 f'"outputs": ["e{k}"]}}}}}}')
    return inner


def _deeply_nested(depth):
    def bad(data):
        n, header = _header(data)
        meta = _meta(header)
        text = json.dumps(meta)
        header["__metadata__"][METADATA_KEY] = text.replace(json.dumps(_if_node(meta)), _nested_if_text(depth))
        text = json.dumps(header).encode()
        text += b" " * ((8 - len(text) % 8) % 8)
        return struct.pack("<Q", len(text)) + text + data[8 + n:]
    bad.__name__ = f"if_nested_{depth}_deep"
    return bad


def _if_corruptions():
    def edit(name, change):
        def f(data):
            def g(h):
                meta = _meta(h)
                change(meta, _if_node(meta))
                _set_meta(h, meta)
            return _rewrite(data, g)
        f.__name__ = name
        return f

    def unlisted_outer_value(meta, node):      # computed before the If, read by a branch, not an input of the If
        meta["nodes"].insert(1, {"op": "Relu", "name": "relu", "inputs": ["x"], "outputs": ["r"], "attrs": {}})
        node["attrs"]["then"]["nodes"][0]["inputs"][0] = "r"

    def unlisted_outer_output(meta, node):
        meta["nodes"].insert(1, {"op": "Relu", "name": "relu", "inputs": ["x"], "outputs": ["r"], "attrs": {}})
        node["attrs"]["else"]["outputs"] = ["r"]

    def branch_value_read_outside(meta, node):
        meta["nodes"].append({"op": "Relu", "name": "relu", "inputs": ["t"], "outputs": ["r"], "attrs": {}})

    def branch_redefines_an_outer_value(meta, node):
        meta["nodes"].insert(1, {"op": "Relu", "name": "relu", "inputs": ["x"], "outputs": ["r"], "attrs": {}})
        node["inputs"].append("r")
        meta["nodes"].append({"op": "Neg", "name": "neg", "inputs": ["y"], "outputs": ["z"], "attrs": {}})
        meta["nodes"].insert(1, {"op": "Relu", "name": "relu2", "inputs": ["x"], "outputs": ["s"], "attrs": {}})
        node["attrs"]["then"]["nodes"][0]["outputs"] = ["s"]
        node["attrs"]["then"]["outputs"] = ["s"]

    cases = [
        ("then_missing", lambda m, n: n["attrs"].pop("then")),
        ("else_missing", lambda m, n: n["attrs"].pop("else")),
        ("branch_not_an_object", lambda m, n: n["attrs"].update(then=[1, 2])),
        ("nodes_not_a_list", lambda m, n: n["attrs"]["then"].update(nodes={"op": "Mul"})),
        ("nodes_missing", lambda m, n: n["attrs"]["else"].pop("nodes")),
        ("node_not_an_object", lambda m, n: n["attrs"]["else"]["nodes"].append("Add")),
        ("branch_node_malformed", lambda m, n: n["attrs"]["else"]["nodes"][0].pop("inputs")),
        ("outputs_missing", lambda m, n: n["attrs"]["then"].pop("outputs")),
        ("outputs_not_a_list", lambda m, n: n["attrs"]["then"].update(outputs="t")),
        ("too_many_outputs", lambda m, n: n["attrs"]["then"].update(outputs=["t", "t"])),
        ("too_few_outputs", lambda m, n: n["attrs"]["else"].update(outputs=[])),
        ("empty_output_name", lambda m, n: n["attrs"]["else"].update(outputs=[""])),
        ("branch_reads_an_undefined_name",
         lambda m, n: n["attrs"]["else"]["nodes"][0]["inputs"].__setitem__(0, "nowhere")),
        ("branch_output_undefined", lambda m, n: n["attrs"]["then"].update(outputs=["nowhere"])),
        ("branch_output_of_the_other_branch", lambda m, n: n["attrs"]["then"].update(outputs=["e"])),
        ("unknown_op_in_a_branch", lambda m, n: n["attrs"]["then"]["nodes"][0].update(op="Bogus")),
        ("no_condition", lambda m, n: n.update(inputs=[])),
        ("no_outputs", lambda m, n: n.update(outputs=[])),
        ("ranks_malformed", lambda m, n: n["attrs"].update(ranks=[2, 2])),
        ("ranks_not_ints", lambda m, n: n["attrs"].update(ranks=["2"])),
        ("unlisted_outer_value", unlisted_outer_value),
        ("unlisted_outer_output", unlisted_outer_output),
        ("branch_value_read_outside", branch_value_read_outside),
        ("branch_redefines_an_outer_value", branch_redefines_an_outer_value),
    ]
    return [edit(name, change) for name, change in cases] + [_deeply_nested(40), _deeply_nested(300),
                                                             _deeply_nested(5000)]


@pytest.mark.parametrize("corrupt", _if_corruptions(), ids=lambda f: f.__name__)
def test_malformed_if_branches_are_refused(if_file, tmp_path, corrupt):
    p = tmp_path / "bad.lstm"
    p.write_bytes(corrupt(if_file[1].read_bytes()))
    with pytest.raises(engine.EngineError) as info:
        engine.Session(p)
    expected = engine.UnsupportedModelError if "unknown_op" in corrupt.__name__ else ModelFileError
    assert type(info.value) is expected, f"{type(info.value).__name__}: {info.value}"
    assert str(info.value) and "\n" not in str(info.value)


def test_nesting_below_the_limit_is_fine(if_file, tmp_path):
    p = tmp_path / "nested.lstm"
    p.write_bytes(_deeply_nested(30)(if_file[1].read_bytes()))
    sess = engine.Session(p)
    x = np.ones((1, 4), np.float32)
    assert sess.run(["y"], {"x": x, "sr": np.array(16000)})[0].tolist() == [[2.0] * 4]
    assert sess.run(["y"], {"x": x, "sr": np.array(8000)})[0].tolist() == [[2.0] * 4]     # x + 1


def test_two_conv_nodes_of_one_name_are_refused():
    """Regression: packed weights are found by node name, so the second Conv's weights were used by both (a wrong
    result, no error); only recurrent nodes were checked."""
    attrs = {"pads": [0, 0], "strides": [1], "dilations": [1], "group": 1}
    for where in ("main", "branch"):
        second = engine.Node("Conv", "c", ["x", "W2"], ["b"], attrs)
        nodes = [engine.Node("Conv", "c", ["x", "W1"], ["a"], attrs)]
        if where == "main":
            nodes.append(second)
        else:
            nodes = [engine.Node("Equal", "eq", ["sr", "rate"], ["cond"])] + nodes + [engine.Node(
                "If", "if", ["cond", "x", "W2"], ["b"],
                {"then": {"nodes": [second], "outputs": ["b"]},
                 "else": {"nodes": [engine.Node("Conv", "c2", ["x", "W2"], ["e"], attrs)], "outputs": ["e"]}})]
        model = engine.Model(inputs=[engine.TensorSpec("x", ["N", 1, "L"]), engine.TensorSpec("sr", [], "int64")],
                             outputs=[engine.TensorSpec("a", ["N", 2, "T"]), engine.TensorSpec("b", ["N", 2, "T"])],
                             nodes=nodes, tensors={"W1": np.ones((2, 1, 3), np.float32), "rate": np.array(1, np.int64),
                                                   "W2": np.full((2, 1, 3), 10.0, np.float32)})
        with pytest.raises(ModelFileError, match="two nodes with packed weights are named 'c'"):
            model.validate()


def _with_attr(data, attr, where):
    """The file with attribute ``attr`` (a name its op does not read) added to the first node, or to the first node
    of the first If's then branch."""
    def f(h):
        meta = _meta(h)
        node = meta["nodes"][0] if where == "top" else _if_node(meta)["attrs"]["then"]["nodes"][0]
        node["attrs"][attr] = True
        _set_meta(h, meta)
    return _rewrite(data, f)


@pytest.mark.parametrize("where", ["top", "branch"])
def test_a_node_attribute_the_engine_does_not_read_is_refused(lstm_file, if_file, tmp_path, where):
    """A newer converter may write an attribute that changes a node's result (Conv2D's relu was one); an engine
    that ignored it would run the file and answer wrongly, so the file is refused and the message says why."""
    data = (lstm_file if where == "top" else if_file)[1].read_bytes()
    p = tmp_path / "newer.lstm"
    p.write_bytes(_with_attr(data, "fused_future_op", where))
    with pytest.raises(ModelFileError, match=r"\['fused_future_op'\] are not ones this engine reads .*upgrade "
                                             r"lstm-engine") as info:
        engine.Session(p)
    assert "\n" not in str(info.value)


def test_every_attribute_an_op_reads_is_declared():
    """Each op's attrs (what Model.validate lets through) names every attribute its checks and plan read: an
    attribute read but not declared would make every file that has it unloadable."""
    import inspect
    import re

    from engine.ops import OPS
    helpers = {"distinct_axes": "axes", "check_axis_attr": "axis"}       # their default keys
    for name, op in OPS.items():
        source = ""
        for k in op.__mro__:
            if k.__module__.startswith("engine.ops") and k.__name__ != "Op":
                try:
                    source += inspect.getsource(k)
                except OSError:           # a class made by type() (the element-wise families): its base's source
                    pass
        read = set(re.findall(r"""(?:attrs|\ba)(?:\.get\(|\[)\s*["']([a-z_]+)["']""", source))
        read |= set(re.findall(r"""\b(?:_ints|_flag|int_list|distinct_axes|check_axis_attr)\(node, ["']([a-z_]+)["']""",
                               source))
        read |= {key for helper, key in helpers.items() if re.search(rf"\b{helper}\(node\)", source)}
        if name == "MaxPool":
            read.discard("count_include_pad")     # read in the shared validate only when cls is AveragePool
        assert read <= op.attrs, f"{name} reads {sorted(read - op.attrs)} without declaring them"
