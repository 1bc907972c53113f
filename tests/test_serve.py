"""``lstm-engine serve`` (engine/serve.py) through the real Triton client, ``tritonclient[http]``: metadata, whole
sequences (JSON and binary tensors) equal to Session.run, 64 concurrent stateful sequences whose every step equals
the local full-sequence run, and malformed requests each answered with a 4xx and a message while the server keeps
serving. The server runs in-process on a free 127.0.0.1 port."""
import http.client
import json
import threading
import time

import numpy as np
import pytest

tritonclient_http = pytest.importorskip("tritonclient.http")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

import converters  # noqa: E402
import engine  # noqa: E402
from engine.serve import Server, ServedModel  # noqa: E402
from lstm_util import max_abs_diff, rnn_model  # noqa: E402
from test_concurrency import _whole_model_with_int_output  # noqa: E402

I, H = 5, 16
LIMIT = 256 << 10      # the test server's --max-request-bytes


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("serve")
    rng = np.random.default_rng(5)
    lstm, _ = rnn_model("LSTM", I=I, H=H, D=1, T="T", B="B", rng=rng, attrs={})
    with_h0, _ = rnn_model("RNN", I=I, H=H, D=1, T="T", B="B", rng=rng, attrs={}, inputs=("X", "initial_h"))
    bidir, _ = rnn_model("GRU", I=I, H=8, D=2, T="T", B="B", rng=rng, attrs={"direction": "bidirectional"})
    converters.from_onnx(lstm.SerializeToString(), str(d / "lstm.lstm"))
    converters.from_onnx(with_h0.SerializeToString(), str(d / "rnn_h0.lstm"))
    converters.from_onnx(_whole_model_with_int_output(rng).SerializeToString(), str(d / "charlm.lstm"))
    (d / "bidir.onnx").write_bytes(bidir.SerializeToString())          # an ONNX file, converted at load
    return {name: ServedModel(str(d / f"{name}.{ext}")) for name, ext in
            (("lstm", "lstm"), ("charlm", "lstm"), ("bidir", "onnx"), ("rnn_h0", "lstm"))}


@pytest.fixture(scope="module")
def server(models):
    with Server(list(models.values()), workers=2, max_sequences=100, max_request_bytes=LIMIT) as srv:
        yield srv


def client(srv):
    return tritonclient_http.InferenceServerClient(srv.url, connection_timeout=30, network_timeout=30)


def tensor(name, x, binary):
    datatype = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64", np.dtype(np.float64): "FP64"}[x.dtype]
    t = tritonclient_http.InferInput(name, list(x.shape), datatype)
    t.set_data_from_numpy(x, binary_data=binary)
    return t


def outputs(names, binary):
    return [tritonclient_http.InferRequestedOutput(n, binary_data=binary) for n in names]


# ---------------------------------------------------------------------- metadata
def test_health_and_metadata(server):
    c = client(server)
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready("lstm") and c.is_model_ready("bidir") and not c.is_model_ready("nope")
    meta = c.get_model_metadata("lstm")
    assert meta["name"] == "lstm" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, -1, I]}]
    assert [(o["name"], o["datatype"]) for o in meta["outputs"]] == [("Y", "FP32"), ("Y_h", "FP32"), ("Y_c", "FP32")]
    meta = c.get_model_metadata("charlm", model_version="1")
    assert meta["inputs"] == [{"name": "ids", "datatype": "INT64", "shape": [-1, -1]}]
    assert [(o["name"], o["datatype"]) for o in meta["outputs"]] == [("probs", "FP32"), ("ids_out", "INT64")]
    assert "binary_tensor_data" in c.get_server_metadata()["extensions"]


# ---------------------------------------------------------------------- whole sequences
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_whole_sequences_equal_session_run(server, models, binary):
    c = client(server)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((7, 3, I)).astype(np.float32)
    want = models["lstm"].session.run(None, {"X": x})
    r = c.infer("lstm", [tensor("X", x, binary)], outputs=outputs(["Y", "Y_h", "Y_c"], binary))
    for name, w in zip(["Y", "Y_h", "Y_c"], want):
        assert r.as_numpy(name).dtype == np.float32 and np.array_equal(r.as_numpy(name), w)
    r = c.infer("lstm", [tensor("X", x, binary)], outputs=outputs(["Y_c"], binary))       # a subset
    assert [o["name"] for o in r.get_response()["outputs"]] == ["Y_c"] and np.array_equal(r.as_numpy("Y_c"), want[2])
    ids = rng.integers(0, 13, (9, 2)).astype(np.int64)
    probs, ids_out = models["charlm"].session.run(None, {"ids": ids})
    r = c.infer("charlm", [tensor("ids", ids, binary)], outputs=outputs(["probs", "ids_out"], binary), request_id="r1")
    assert np.array_equal(r.as_numpy("probs"), probs) and np.array_equal(r.as_numpy("ids_out"), ids_out)
    assert r.as_numpy("ids_out").dtype == np.int64 and r.get_response()["id"] == "r1"
    r = c.infer("bidir", [tensor("X", x, binary)])          # no outputs named: all, binary (the client's default)
    for name, w in zip(["Y", "Y_h"], models["bidir"].session.run(None, {"X": x})):
        assert np.array_equal(r.as_numpy(name), w)


# ---------------------------------------------------------------------- stateful sequences
def test_64_concurrent_sequences_every_step_equals_the_full_run(server, models):
    """16 client threads, 4 sequences each, interleaved step by step: 64 live at once. Sequences differ in batch
    size, model (float frames and token ids), single steps or chunks, JSON or binary; every step's output is compared
    with the same positions of Session.run on the whole sequence."""
    rng = np.random.default_rng(2)
    T = 12
    plans = []
    for k in range(64):
        if k % 4 == 3:
            x = rng.integers(0, 13, (T, 1 + k % 2)).astype(np.int64)
            model, name, out = "charlm", "ids", "probs"
        else:
            x = rng.standard_normal((T, 1 + k % 3, I)).astype(np.float32)
            model, name, out = "lstm", "X", "Y"
        full = models[model].session.run([out], {name: x})[0]
        cuts = [0, 1, 2, 5, 6, 9, 12] if k % 5 == 0 else list(range(T + 1))          # chunks or single steps
        plans.append((f"seq-{k}" if k % 2 else 1000 + k, model, name, out, x, full, cuts, k % 3 == 0))
    failures, live_at_once = [], []
    barrier = threading.Barrier(16)

    def drive(mine):
        c = client(server)
        try:
            steps = max(len(p[6]) - 1 for p in mine)
            for s in range(steps):
                if s == 1:
                    barrier.wait(timeout=60)            # every sequence has started
                    live_at_once.append(len(server.sequences))
                for seq_id, model, name, out, x, full, cuts, binary in mine:
                    if s >= len(cuts) - 1:
                        continue
                    a, b = cuts[s], cuts[s + 1]
                    r = c.infer(model, [tensor(name, x[a:b], binary)], outputs=outputs([out], binary),
                                sequence_id=seq_id, sequence_start=s == 0, sequence_end=b == len(x))
                    got = r.as_numpy(out)
                    if got.shape != full[a:b].shape or max_abs_diff(got, full[a:b]) > 1e-5:
                        failures.append((seq_id, a, b))
        except Exception as e:      # noqa: BLE001 - reported below
            failures.append(repr(e))
            barrier.abort()

    threads = [threading.Thread(target=drive, args=(plans[k::16],)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:5]
    assert min(live_at_once) >= 64
    assert len(server.sequences) == 0             # every sequence_end dropped its state


def test_sequence_restart_limit_and_idle_timeout(models):
    with Server([models["lstm"]], max_sequences=2, sequence_timeout=0.3) as srv:
        c = client(srv)
        x = np.random.default_rng(3).standard_normal((4, 1, I)).astype(np.float32)
        full = models["lstm"].session.run(["Y"], {"X": x})[0]

        def step(sid, t, **kw):
            return c.infer("lstm", [tensor("X", x[t:t + 1], False)], outputs=outputs(["Y"], False), sequence_id=sid,
                           **kw).as_numpy("Y")

        assert np.allclose(step(1, 0, sequence_start=True), full[0:1], atol=1e-5)
        assert np.allclose(step(1, 1), full[1:2], atol=1e-5)
        assert np.allclose(step(1, 0, sequence_start=True), full[0:1], atol=1e-5)      # a start begins afresh
        step(2, 0, sequence_start=True)
        with pytest.raises(tritonclient_http.InferenceServerException, match="too many live sequences") as e:
            step(3, 0, sequence_start=True)
        assert e.value.status() == "429"
        step(2, 1, sequence_end=True)                                                 # frees a place
        step(3, 0, sequence_start=True)
        time.sleep(1.5)                                                               # both idle > 0.3 s
        assert len(srv.sequences) == 0
        with pytest.raises(tritonclient_http.InferenceServerException, match="not live") as e:
            step(1, 1)
        assert e.value.status() == "400"


# ---------------------------------------------------------------------- malformed requests
def _raw(srv, path, body=b"", headers=None, method="POST"):
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def _infer_json(inputs, **extra):
    return json.dumps({"inputs": inputs, **extra}).encode()


X_OK = {"name": "X", "shape": [2, 1, I], "datatype": "FP32", "data": [0.5] * (2 * I)}


@pytest.mark.parametrize("case", [
    "wrong-rank", "wrong-size", "wrong-dim", "wrong-dtype", "int-data-for-float", "unknown-input",
    "missing-input", "unknown-output", "unknown-model", "bad-version", "bad-json", "not-an-object", "no-inputs",
    "bad-header-length", "binary-size-mismatch", "oversize-body", "oversize-chunked", "compressed",
    "unknown-sequence", "sequence-extra-input", "sequence-two-outputs", "sequence-on-bidirectional",
    "bad-sequence-id", "start-without-id", "token-out-of-range", "unknown-route", "wrong-method"])
def test_malformed_requests_get_a_4xx_with_a_message_and_the_server_keeps_serving(server, case):
    x2 = {**X_OK}
    path, body, headers, method = "/v2/models/lstm/infer", None, {}, "POST"
    if case == "wrong-rank":
        body = _infer_json([{**x2, "shape": [2 * I]}])
    elif case == "wrong-size":
        body = _infer_json([{**x2, "shape": [3, 1, I]}])
    elif case == "wrong-dim":
        body = _infer_json([{**x2, "shape": [2, 1, I + 1], "data": [0.5] * (2 * (I + 1))}])
    elif case == "wrong-dtype":
        body = _infer_json([{**x2, "datatype": "FP64"}])
    elif case == "int-data-for-float":
        body = _infer_json([{**x2, "data": ["a"] * (2 * I)}])
    elif case == "unknown-input":
        body = _infer_json([x2, {**x2, "name": "Z"}])
    elif case == "missing-input":
        path = "/v2/models/rnn_h0/infer"           # initial_h is a required input of this graph
        body = _infer_json([x2])
    elif case == "unknown-output":
        body = _infer_json([x2], outputs=[{"name": "nope"}])
    elif case == "unknown-model":
        path = "/v2/models/nope/infer"
        body = _infer_json([x2])
    elif case == "bad-version":
        path = "/v2/models/lstm/versions/7/infer"
        body = _infer_json([x2])
    elif case == "bad-json":
        body = b'{"inputs": [{"name": "X", '
    elif case == "not-an-object":
        body = b"[1, 2, 3]"
    elif case == "no-inputs":
        body = b'{"inputs": []}'
    elif case == "bad-header-length":
        body = _infer_json([x2])
        headers = {"Inference-Header-Content-Length": str(len(body) + 10)}
    elif case == "binary-size-mismatch":
        head = _infer_json([{"name": "X", "shape": [2, 1, I], "datatype": "FP32",
                             "parameters": {"binary_data_size": 2 * I * 4}}])
        body = head + b"\0" * (2 * I * 4 - 3)
        headers = {"Inference-Header-Content-Length": str(len(head))}
    elif case == "oversize-body":
        n = LIMIT // 4 + 16
        head = _infer_json([{"name": "X", "shape": [n, 1, 1], "datatype": "FP32",
                             "parameters": {"binary_data_size": n * 4}}])
        body = head + b"\0" * (n * 4)
        headers = {"Inference-Header-Content-Length": str(len(head))}
    elif case == "oversize-chunked":
        body = iter([b'{"inputs": [' + b" " * (64 << 10)] * 8)      # no Content-Length: sent chunked
    elif case == "compressed":
        body, headers = _infer_json([x2]), {"Content-Encoding": "gzip"}
    elif case == "unknown-sequence":
        body = _infer_json([x2], parameters={"sequence_id": 424242})
    elif case == "sequence-extra-input":
        path = "/v2/models/rnn_h0/infer"
        h0 = {"name": "initial_h", "shape": [1, 1, H], "datatype": "FP32", "data": [0.0] * H}
        body = _infer_json([x2, h0], parameters={"sequence_id": 9, "sequence_start": True})
    elif case == "sequence-two-outputs":
        body = _infer_json([x2], parameters={"sequence_id": 9, "sequence_start": True},
                           outputs=[{"name": "Y"}, {"name": "Y_c"}])
    elif case == "sequence-on-bidirectional":
        path = "/v2/models/bidir/infer"
        body = _infer_json([x2], parameters={"sequence_id": 9, "sequence_start": True})
    elif case == "bad-sequence-id":
        body = _infer_json([x2], parameters={"sequence_id": [1], "sequence_start": True})
    elif case == "start-without-id":
        body = _infer_json([x2], parameters={"sequence_start": True})
    elif case == "token-out-of-range":
        path = "/v2/models/charlm/infer"
        body = _infer_json([{"name": "ids", "shape": [1, 1], "datatype": "INT64", "data": [99]}])
    elif case == "unknown-route":
        path, body, method = "/v2/nothing/here", b"", "GET"
    elif case == "wrong-method":
        path, body, method = "/v2/models/lstm/infer", b"", "GET"
    status, payload = _raw(server, path, body, headers, method)
    assert 400 <= status < 500, (status, payload)
    message = json.loads(payload)["error"]
    assert message and "Traceback" not in message and "File \"" not in message
    # and the server keeps serving
    status, payload = _raw(server, "/v2/models/lstm/infer", _infer_json([X_OK]))
    assert status == 200 and json.loads(payload)["outputs"][0]["name"] == "Y"
    assert len(server.sequences) == 0                  # a refused start leaves no sequence behind


def test_oversize_body_through_the_triton_client(server):
    c = client(server)
    x = np.zeros((LIMIT // (4 * I) + 8, 1, I), np.float32)
    with pytest.raises(tritonclient_http.InferenceServerException, match="larger than the server's limit") as e:
        c.infer("lstm", [tensor("X", x, True)])
    assert e.value.status() == "413"
    assert c.infer("lstm", [tensor("X", x[:3], True)]).as_numpy("Y").shape == (3, 1, 1, H)


def test_command_line_serves_until_interrupted(models, tmp_path):
    """``lstm-engine serve MODEL --port P`` as a subprocess: ready, answers, exits cleanly on SIGINT."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = subprocess.Popen([sys.executable, "-m", "engine.cli", "serve", models["lstm"].path, "--port", str(port),
                          "--workers", "1"], cwd=root, env={**os.environ, "PYTHONPATH": root},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        c = tritonclient_http.InferenceServerClient(f"127.0.0.1:{port}")
        deadline = time.monotonic() + 60
        while True:
            try:
                if c.is_server_ready():
                    break
            except Exception:   # noqa: BLE001 - not listening yet
                pass
            assert p.poll() is None and time.monotonic() < deadline, p.stdout.read() if p.poll() is not None else ""
            time.sleep(0.2)
        x = np.ones((2, 1, I), np.float32)
        assert c.infer("lstm", [tensor("X", x, True)]).as_numpy("Y").shape == (2, 1, 1, H)
    finally:
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=30)
    assert p.returncode == 0, out
    assert "model 'lstm'" in out and "Traceback" not in out


def test_command_line_rejects_bad_options_and_files(tmp_path):
    from engine.cli import main
    assert main(["serve", str(tmp_path / "missing.lstm")]) == 2
    assert main(["serve", "x.lstm", "--max-sequences", "0"]) == 2


def test_slow_bodies_time_out_and_wait_their_turn(models, monkeypatch):
    """A body that stalls gets 408 after BODY_TIMEOUT; with MAX_BODIES=1 the next request waits for it."""
    import socket

    import engine.serve
    monkeypatch.setattr(engine.serve, "BODY_TIMEOUT", 1.0)
    monkeypatch.setattr(engine.serve, "MAX_BODIES", 1)
    with Server([models["lstm"]]) as srv:
        slow = socket.create_connection((srv.host, srv.port))
        slow.sendall(b"POST /v2/models/lstm/infer HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"inp")
        time.sleep(0.2)                                   # the slow request holds the one place
        t0 = time.monotonic()
        status, payload = _raw(srv, "/v2/models/lstm/infer", _infer_json([X_OK]))
        waited = time.monotonic() - t0
        slow.settimeout(10)
        answer = slow.recv(4096)
        slow.close()
    assert status == 200 and waited >= 0.5, (status, waited)
    assert b" 408 " in answer.split(b"\r\n")[0] and b"did not arrive" in answer


def test_our_bugs_are_a_500_without_a_traceback(models, caplog):
    broken = ServedModel(models["lstm"].path)
    broken.run = lambda *args: 1 / 0
    with Server([broken]) as srv:
        status, payload = _raw(srv, "/v2/models/lstm/infer", _infer_json([X_OK]))
        assert status == 500 and json.loads(payload) == {
            "error": "internal error while running the model (see the server's log)"}
        ok, _ = _raw(srv, "/v2/models/lstm/infer", _infer_json([X_OK], parameters={"sequence_id": 1,
                                                                                   "sequence_start": True}))
        assert ok == 200                                  # sequences do not use run(); the server still serves
    assert "ZeroDivisionError" in caplog.text             # the traceback is in the server's log


@pytest.mark.slow       # test_float16 imports onnxruntime
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_float16_model_served_as_fp16(tmp_path, binary):
    from test_float16 import _graph
    path = tmp_path / "half.lstm"
    converters.from_onnx(_graph(np.float16).SerializeToString(), str(path))
    with Server([ServedModel(str(path))], workers=1) as srv:
        c = client(srv)
        meta = c.get_model_metadata("half")
        assert meta["inputs"][0]["datatype"] == "FP16" and meta["outputs"][0]["datatype"] == "FP16"
        x = np.random.default_rng(3).standard_normal((4, 2, 8)).astype(np.float16)
        t = tritonclient_http.InferInput("X", list(x.shape), "FP16")
        t.set_data_from_numpy(x, binary_data=binary)
        r = c.infer("half", [t], outputs=outputs(["out"], binary))
        y = r.as_numpy("out")
        assert y.dtype == np.float16 and np.array_equal(y, engine.Session(str(path)).run(None, {"X": x})[0])
