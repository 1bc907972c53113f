"""engine.dask.score on a real distributed.LocalCluster with 2 worker processes: the Dask array it returns equals
one-machine Session.run, for an LSTM (T, B, I) chunked along B, a whole model over token ids with several chunk
sizes, and a DataFrame with one row per batch item (a batch-first model); each worker keeps one Session."""
import os

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import converters  # noqa: E402
import engine  # noqa: E402
import engine.dask  # noqa: E402
from lstm_util import max_abs_diff, rnn_model  # noqa: E402
from test_concurrency import _whole_model_with_int_output  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def client():
    mp = pytest.MonkeyPatch()
    mp.setenv("PYTHONPATH", ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))   # the workers import engine
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None, silence_logs=40)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()
    mp.undo()


@pytest.fixture(scope="module")
def lstm_file(tmp_path_factory):
    m, _ = rnn_model("LSTM", I=5, H=16, D=1, T="T", B="B", rng=np.random.default_rng(8), attrs={})
    path = tmp_path_factory.mktemp("dask") / "lstm.lstm"
    converters.from_onnx(m.SerializeToString(), str(path))
    return str(path)


def test_lstm_over_a_dask_array_equals_session_run(client, lstm_file):
    x = np.random.default_rng(0).standard_normal((20, 64, 5)).astype(np.float32)
    dx = da.from_array(x, chunks=(20, 8, 5))                          # 8 blocks along the batch
    y = engine.dask.score(lstm_file, dx)
    assert isinstance(y, da.Array) and y.shape == (20, 1, 64, 16) and y.chunks[2] == (8,) * 8
    got = y.compute()
    want = engine.Session(lstm_file, threads=1).run(["Y"], {"X": x})[0]
    assert max_abs_diff(got, want) <= 1e-6
    h = engine.dask.score(lstm_file, dx, output="Y_h", chunk_size=16).compute()    # another output, other chunks
    assert max_abs_diff(h, engine.Session(lstm_file).run(["Y_h"], {"X": x})[0]) <= 1e-6
    per_worker = client.run(engine.dask.cached_sessions)
    assert len(per_worker) == 2 and all(len(v) == 1 for v in per_worker.values())   # one Session per worker


def test_whole_model_from_onnx_bytes(client):
    onnx_bytes = _whole_model_with_int_output(np.random.default_rng(4)).SerializeToString()
    ids = np.random.default_rng(1).integers(0, 13, (9, 30)).astype(np.int64)
    want = engine.Session(onnx_bytes).run(None, {"ids": ids})
    for chunk in (7, 30):
        probs = engine.dask.score(onnx_bytes, da.from_array(ids, chunks=(9, chunk)), output="probs")
        assert max_abs_diff(probs.compute(), want[0]) <= 1e-6
    ids_out = engine.dask.score(onnx_bytes, {"ids": da.from_array(ids, chunks=(9, 10))}, output="ids_out").compute()
    assert ids_out.dtype == np.int64 and np.array_equal(ids_out, want[1])


def test_dataframe_rows_are_batch_items(client):
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    m, _ = rnn_model("GRU", I=3, H=8, D=1, T="T", B="B", rng=np.random.default_rng(9), attrs={"layout": 1})
    onnx_bytes = m.SerializeToString()                                 # X: (B, T, I), batch first
    x = np.random.default_rng(2).standard_normal((40, 6, 3)).astype(np.float32)
    frame = dd.from_pandas(pd.DataFrame(x.reshape(40, 18)), npartitions=4)
    y = engine.dask.score(onnx_bytes, frame, output="Y_h")
    want = engine.Session(onnx_bytes).run(["Y_h"], {"X": x})[0]
    assert max_abs_diff(y.compute(), want) <= 1e-6
    # a time-major model (X: (T, B, I)): each row is still one batch item, moved to axis 1
    m, _ = rnn_model("LSTM", I=3, H=8, D=1, T="T", B="B", rng=np.random.default_rng(10), attrs={})
    y = engine.dask.score(m.SerializeToString(), frame, output="Y_h", item_shape=(6, 3))
    want = engine.Session(m.SerializeToString()).run(["Y_h"], {"X": x.transpose(1, 0, 2)})[0]
    assert y.shape == (1, 40, 8) and max_abs_diff(y.compute(), want) <= 1e-6


def test_errors_are_clear():
    x = da.zeros((4, 2, 5), chunks=(4, 1, 5), dtype=np.float32)
    m, _ = rnn_model("LSTM", I=5, H=4, D=1, T="T", B="B", rng=np.random.default_rng(0), attrs={})
    with pytest.raises(engine.InvalidInputError, match="unknown output"):
        engine.dask.score(m.SerializeToString(), x, output="nope")
    with pytest.raises(engine.InvalidInputError, match="rank 3"):
        engine.dask.score(m.SerializeToString(), da.zeros((4, 5), dtype=np.float32))
