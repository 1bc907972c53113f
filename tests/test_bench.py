"""The benchmark harness (bench/): interleaved timing, targets, the correctness gate, the files it writes, the CLI.

No test here judges speed: timings on a shared machine are noise. They check that the harness measures what it
says, refuses to time outputs that differ from onnxruntime, and writes a complete report. The end-to-end runs need
torch and onnxruntime (slow); the timing, scenario and target logic does not.
"""
import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import engine
from bench import coldstart, peers, report, run, timing
from bench.scenarios import ColdScenario, Scenario, select

TINY = [Scenario("stream/tiny", "stream", T=1, B=1, H=8, I=5, min_ratio=3.0),
        Scenario("seq/tiny", "sequence", T=7, B=2, H=8, min_ratio=1.5),
        Scenario("bidir2/tiny", "bidirectional", T=6, B=1, H=8, layers=2, bidirectional=True)]
FAST = {"repeat_seconds": 0.02}


# ---------------------------------------------------------------------- timing
@pytest.fixture
def steady_clock(monkeypatch):
    """A clock that advances 0.1 ms per reading. On a loaded machine one preempted call can use up a contender's
    whole time and end its rounds early: right for timing, but not for checking the order of the calls."""
    clock = itertools.count()
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(clock) * 1e-4)


def test_measure_interleaves_and_counts_every_call(steady_clock):
    order = []
    contenders = [timing.Contender(name, (lambda n=name: order.append(n))) for name in ("a", "b", "c")]
    stats = timing.measure(contenders, repeat_seconds=0.01, min_calls=50, warmup_seconds=0.0, warmup_calls=2,
                           rounds=4)
    for name in "abc":
        s = stats[name]
        assert s["calls"] >= 50 and s["blocks"] >= 1
        assert order.count(name) == s["calls"] + 2   # 2 warm-up calls each, then the timed ones
        assert s["min_s"] <= s["median_s"] <= s["p90_s"] <= s["max_s"]
    # interleaved: after the warm-up, no contender runs all its calls before another starts
    timed = order[6:]
    first_last = {n: (timed.index(n), len(timed) - 1 - timed[::-1].index(n)) for n in "abc"}
    assert first_last["a"][1] > first_last["b"][0] and first_last["b"][1] > first_last["c"][0]


def test_measure_rotates_the_starting_contender(steady_clock):
    blocks = []   # activate() runs before the warm-up and before each timed block
    contenders = [timing.Contender(n, lambda: None, (lambda n=n: blocks.append(n))) for n in ("a", "b", "c")]
    timing.measure(contenders, repeat_seconds=0.004, min_calls=1, warmup_seconds=0.0, warmup_calls=1, rounds=4)
    timed = blocks[3:]
    assert timed[:9] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]


def test_summarise_statistics():
    s = timing.summarise([3.0, 1.0, 2.0, 4.0, 5.0])
    assert s["calls"] == 5 and s["median_s"] == 3.0 and s["min_s"] == 1.0 and s["max_s"] == 5.0
    assert s["p90_s"] == pytest.approx(4.6) and s["total_s"] == 15.0


# ---------------------------------------------------------------------- scenarios and targets
def test_flops_count_every_layer_and_direction():
    s = Scenario("x", "sequence", T=10, B=2, H=4, I=3, layers=2, bidirectional=True)
    first = 2 * 2 * 10 * 2 * 16 * (3 + 4)
    second = 2 * 2 * 10 * 2 * 16 * (8 + 4)
    assert s.flops_per_call() == first + second
    assert Scenario("t", "sequence", T=100, B=1, H=8).tolerance() == 1e-5
    assert Scenario("t", "sequence", T=1000, B=1, H=8).tolerance() == 1e-4


def test_scenario_selection_by_glob_and_substring():
    chosen, cold = select(["seq/T100/*"])
    assert [s.name for s in chosen] == [f"seq/T100/H{h}" for h in (64, 128, 256, 512, 1024)] and not cold
    chosen, cold = select(["cold"])
    assert not chosen and [c.name for c in cold] == ["cold/engine-warm", "cold/engine-empty", "cold/onnxruntime",
                                                     "cold/openvino", "cold/tract"]
    chosen, _ = select(None)
    assert {s.kind for s in chosen} == {"stream", "sequence", "batched", "bidirectional"}


def test_every_issue_target_is_present():
    chosen, cold = select(None)
    ratios = {s.name: s.min_ratio for s in chosen}
    assert all(ratios[f"stream/H{h}"] == 3.0 for h in (64, 128, 256, 512))
    assert all(ratios[f"seq/T100/H{h}"] == 1.5 for h in (128, 256, 512))
    assert ratios["seq/T100/H64"] == ratios["seq/T100/H1024"] == 1.2
    assert ratios["batch/B32/H256"] == ratios["batch/B64/H512"] == 1.0
    assert {c.name: c.max_seconds for c in cold} == {"cold/engine-warm": 0.3, "cold/engine-empty": 3.0,
                                                     "cold/onnxruntime": None, "cold/openvino": None,
                                                     "cold/tract": None}


def test_parse_threads():
    cores = run.available_cores()
    assert run.parse_threads("1") == [1]
    assert run.parse_threads(None) == sorted({1, cores})
    assert run.parse_threads("all") == [cores]
    for bad in ("0", "x", "", str(cores + 1)):
        with pytest.raises(ValueError):
            run.parse_threads(bad)


def _row(variant, engine, ratio, min_ratio):
    return {"variant": variant, "engine": engine, "ratio_vs_onnxruntime": ratio, "min_ratio": min_ratio}


def test_targets_compare_step_with_run_and_all_cores_with_one():
    points = [
        {"scenario": "s", "threads": 1, "rows": [_row("run (state in/out)", "engine", 3.5, 3.0),
                                                 _row("stream.step", "engine_step", 3.2, 3.0)]},
        {"scenario": "s", "threads": 2, "rows": [_row("run (state in/out)", "engine", 3.4, 3.0),
                                                 _row("stream.step", "engine_step", 2.0, 3.0)]},
    ]
    run.evaluate_targets(points, [1, 2])
    one_run, one_step = points[0]["rows"]
    two_run, two_step = points[1]["rows"]
    assert one_run["met"] is True
    assert one_step["met"] is False and [t["met"] for t in one_step["targets"]] == [True, False]   # slower than run
    assert two_run["met"] is True                          # 3.4 vs 3.5: within the 5% noise band
    assert two_step["met"] is False
    assert {t["id"]: t["met"] for t in two_step["targets"]} == {
        "min_ratio": False, "step_faster_than_run": False, "all_cores_at_least_single": False}


# ---------------------------------------------------------------------- end to end on tiny models
@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    result, status = run.run_benchmark(scenarios=TINY, cold_scenarios=[], threads="1", quick=True,
                                       repeat_seconds=0.02, out_dir=str(out), progress=False,
                                       out=open(os.devnull, "w"))
    return result, status, out


@pytest.mark.slow
def test_tiny_benchmark_checks_then_times_every_runtime(tiny_result):
    result, status, out = tiny_result
    assert status == 0 and result["errors"] == []
    assert [p["scenario"] for p in result["points"]] == [s.name for s in TINY]
    for p in result["points"]:
        assert p["error"] is None and p["check"]["ok"]
        for who, diffs in p["check"]["max_abs_diff"].items():
            assert max(diffs.values()) <= p["check"]["tolerance"], who
        expected = {"onnxruntime", "engine", "torch"} | ({"engine_step"} if p["kind"] == "stream" else set())
        expected |= {name for name, rec in p["peers"].items() if rec["status"] == "timed"}
        assert set(p["timings"]) == expected
        for t in p["timings"].values():
            assert t["calls"] >= 3 and t["median_s"] > 0
        for r in p["rows"]:
            ratio = p["timings"]["onnxruntime"]["median_s"] / p["timings"][r["engine"]]["median_s"]
            assert r["ratio_vs_onnxruntime"] == pytest.approx(ratio)
    stream = result["points"][0]
    assert [r["variant"] for r in stream["rows"]] == ["run (state in/out)", "stream.step"]
    assert set(stream["check"]["max_abs_diff"]) == {"engine", "engine_step", "torch"}


@pytest.mark.slow
def test_tiny_benchmark_writes_json_markdown_and_png(tiny_result):
    result, _, out = tiny_result
    data = json.loads((out / "latest.json").read_text())
    assert data["schema"] == run.SCHEMA
    m = data["machine"]
    assert m["cpu_model"] and m["available_cores"] >= 1 and m["versions"]["onnxruntime"] and m["versions"]["torch"]
    md = (out / "latest.md").read_text()
    assert "seq/tiny" in md and "stream/tiny stream.step" in md and "vs ORT" in md
    png = (out / "latest.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    table = report.terminal_table(result)
    assert "bidir2/tiny" in table and m["cpu_model"] in table


@pytest.mark.slow
def test_a_mismatch_aborts_the_point_and_is_not_timed(tmp_path, monkeypatch):
    import engine

    real_run = engine.Session.run

    def wrong(self, names, feed):
        return [o + 1e-3 for o in real_run(self, names, feed)]

    monkeypatch.setattr(engine.Session, "run", wrong)
    result, status = run.run_benchmark(scenarios=TINY[1:2], cold_scenarios=[], threads="1", quick=True,
                                       repeat_seconds=0.02, out_dir=str(tmp_path), progress=False,
                                       out=open(os.devnull, "w"))
    assert status == 1
    (p,) = result["points"]
    assert p["error"]["kind"] == "mismatch" and "not timed" in p["error"]["message"]
    assert p["timings"] == {} and p["rows"] == [] and p["check"]["ok"] is False
    assert "MISMATCH" in (tmp_path / "latest.md").read_text()
    assert (tmp_path / "latest.png").exists()


@pytest.mark.slow
def test_tiny_benchmark_checks_and_times_the_installed_peers(tiny_result):
    result, status, out = tiny_result
    assert status == 0
    for name, info in result["peers"].items():
        assert info["version"] == peers.BY_NAME[name].version()
    for p in result["points"]:
        assert set(p["peers"]) == {peer.name for peer in peers.PEERS}
        for name, rec in p["peers"].items():
            if not peers.BY_NAME[name].installed():
                assert rec["status"] == "not installed" and name not in p["timings"]
                continue
            # every tiny model (streaming with the state carried, a sequence, two bidirectional layers) runs on both
            assert rec["status"] == "timed", rec["reason"]
            assert max(rec["max_abs_diff"].values()) <= p["check"]["tolerance"]
            ort, theirs = p["timings"]["onnxruntime"]["median_s"], p["timings"][name]["median_s"]
            assert rec["ratio_vs_onnxruntime"] == pytest.approx(ort / theirs)
            for r in p["rows"]:
                assert r[f"ratio_vs_{name}"] == pytest.approx(theirs / p["timings"][r["engine"]]["median_s"])


class OrtPeer(peers.Peer):
    """onnxruntime dressed as a peer, its outputs shifted by ``offset``: a peer that runs but may not match."""

    def __init__(self, name, label, offset):
        self.name, self.label, self.module, self.install, self.offset = name, label, "onnxruntime", "-", offset

    def settings(self, threads):
        return "onnxruntime, shifted"

    def load(self, onnx_path, feed, threads):
        import onnxruntime as ort
        sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        offset = self.offset

        class Shifted(peers.Runner):
            def run(self, f):
                return [o + offset for o in sess.run(None, f)]

            def timed_call(self, f, carry=()):
                return lambda: sess.run(None, f)
        return Shifted()


@pytest.mark.slow
def test_a_peer_that_differs_or_is_missing_is_reported_and_the_run_still_passes(tmp_path):
    missing = FakePeer(name="tract", label="tract", module="lstm_engine_bench_no_such_module")
    result, status = run.run_benchmark(scenarios=TINY[:2], cold_scenarios=[ColdScenario("cold/tract", "tract", None,
                                                                                         None)],
                                       threads="1", quick=True, repeat_seconds=0.02, out_dir=str(tmp_path),
                                       progress=False, out=open(os.devnull, "w"),
                                       peers=[OrtPeer("openvino", "OpenVINO", 1e-3), missing])
    assert status == 0 and result["errors"] == []
    for p in result["points"]:
        assert p["error"] is None
        assert p["peers"]["openvino"]["status"] == "mismatch" and "openvino" not in p["timings"]
        assert p["peers"]["tract"]["status"] == "not installed" and "tract" not in p["timings"]
        assert all(r["ratio_vs_openvino"] is None and r["ratio_vs_tract"] is None for r in p["rows"])
    (cold,) = result["cold_start"]
    assert cold["status"] == "not installed" and cold["runs"] == []
    md = (tmp_path / "latest.md").read_text()
    row = _md_row(md, "seq/tiny", 1)
    assert row["OpenVINO med / p90"] == "MISMATCH" and row["tract med / p90"] == "not installed"
    assert "OpenVINO MISMATCH in seq/tiny (1T): outputs differ from onnxruntime by more than 1e-05" in md


@pytest.mark.slow
def test_a_peer_within_tolerance_is_timed_beside_the_others(tmp_path):
    result, status = run.run_benchmark(scenarios=TINY[:1], cold_scenarios=[], threads="1", quick=True,
                                       repeat_seconds=0.02, out_dir=str(tmp_path), progress=False,
                                       out=open(os.devnull, "w"), peers=[OrtPeer("openvino", "OpenVINO", 0.0)])
    assert status == 0
    (p,) = result["points"]
    assert p["peers"]["openvino"]["status"] == "timed" and p["timings"]["openvino"]["calls"] >= 3
    assert set(result["peers"]) == {"openvino"}


@pytest.mark.slow
def test_fresh_cache_env_is_empty(tmp_path):
    """The bench's empty-cache children: new, empty Numba and engine cache directories (a child with its own
    NUMBA_CACHE_DIR leaves the checkout's kernel caches alone: tests/test_cache.py)."""
    env = coldstart.fresh_cache_env(str(tmp_path))
    assert sorted(env) == ["LSTM_ENGINE_CACHE_DIR", "NUMBA_CACHE_DIR"]
    assert os.listdir(env["NUMBA_CACHE_DIR"]) == []
    assert os.listdir(env["LSTM_ENGINE_CACHE_DIR"]) == []


@pytest.mark.slow      # torch (the model's export) and onnxruntime
def test_cold_start_runs_fresh_processes_and_checks_the_result(tmp_path):
    sc = Scenario("cold-tiny", "sequence", T=5, B=1, H=8)
    from bench.models import build, make_inputs
    import onnxruntime as ort
    built = build(sc, str(tmp_path))
    feed = make_inputs(sc)
    ref = ort.InferenceSession(built.onnx_path, providers=["CPUExecutionProvider"]).run(None, feed)[0]
    cold = [ColdScenario("cold/engine-warm", "engine", "warm", 0.5), ColdScenario("cold/onnxruntime", "onnxruntime",
                                                                                    None, None)]
    installed = [p for p in peers.PEERS if p.installed()]
    cold += [ColdScenario(f"cold/{p.name}", p.name, None, None) for p in installed]
    seen = []
    # the children use this process's caches, which hold the executor after this run: the first child loads it
    # rather than compiling for a minute (the bench's own empty caches: test_fresh_cache_env_is_empty)
    engine.Session(built.engine_path).run(None, feed)
    records = coldstart.measure_cold(cold, built, feed, ref, 1e-5, repeats=1, on_run=seen.append, peers=installed,
                                     cache_env={})
    # the unrecorded cache fill, then one of each
    assert len(seen) == coldstart.planned_runs(cold, 1, installed) == 3 + len(installed)
    for rec in records:
        assert rec["error"] is None, rec["error"]
        assert len(rec["runs"]) == 1 and rec["seconds"] > 0 and rec["max_abs_diff"] <= 1e-5
        # the child's own peak memory, not the parent's (which has torch loaded)
        assert 10 < rec["peak_rss_mib"] < 2000
    assert records[0]["met"] in (True, False) and records[1]["met"] is None


# ---------------------------------------------------------------------- peers
class FakeRunner(peers.Runner):
    """Returns fixed outputs (the reference plus ``offset``); records whether its timed call was asked for."""

    def __init__(self, outputs, offset):
        self.outputs, self.offset, self.timed = outputs, offset, False

    def run(self, feed):
        return [o + self.offset for o in self.outputs]

    def timed_call(self, feed, carry=()):
        self.timed = True
        return lambda: self.outputs


class FakePeer(peers.Peer):
    """A peer without a runtime behind it: 'installed' unless its module does not exist."""

    def __init__(self, name="openvino", label="OpenVINO", module="numpy", offset=0.0, fail=None, one_thread=False):
        self.name, self.label, self.module, self.install = name, label, module, f"pip install {module}"
        self.offset, self.fail, self.one_thread, self.runner = offset, fail, one_thread, None

    def unsupported_threads(self, threads):
        return "one thread only here" if self.one_thread and threads > 1 else None

    def settings(self, threads):
        return f"fake, {threads} threads"

    def load(self, onnx_path, feed, threads):
        if self.fail:
            raise self.fail
        self.runner = FakeRunner(self.reference, self.offset)
        return self.runner


def _plan():
    ref = [np.zeros((3, 1, 4), np.float32), np.ones((1, 1, 4), np.float32)]
    feed = {"input": np.zeros((3, 1, 2), np.float32)}
    return run.PeerPlan(load_feed=feed, check=lambda runner: runner.run(feed), reference=ref, names=["y", "h"],
                        timed_feed=lambda outs: feed)


def _check(peer, threads=1):
    plan = _plan()
    peer.reference = plan.reference
    records, contenders = run.check_peers([peer], "model.onnx", threads, plan, 1e-5)
    return records[peer.name], contenders


def test_a_peer_that_matches_onnxruntime_becomes_a_contender():
    peer = FakePeer(offset=2.0 ** -20)     # ~1e-6, exact in float32 at 0 and at 1
    rec, contenders = _check(peer)
    assert rec["status"] == "timed" and rec["reason"] is None and rec["label"] == "OpenVINO"
    assert [c.name for c in contenders] == ["openvino"] and peer.runner.timed
    assert rec["max_abs_diff"] == {"y": 2.0 ** -20, "h": 2.0 ** -20}


def test_a_peer_whose_outputs_differ_is_reported_and_not_timed():
    peer = FakePeer(offset=1e-3)
    rec, contenders = _check(peer)
    assert rec["status"] == "mismatch" and contenders == [] and not peer.runner.timed
    assert "not timed" in rec["reason"] and "y 0.001" in rec["reason"]
    assert rec["max_abs_diff"]["h"] == pytest.approx(1e-3, rel=1e-3)


def test_a_missing_peer_is_not_installed():
    peer = FakePeer(name="tract", label="tract", module="lstm_engine_bench_no_such_module")
    assert not peer.installed() and peer.version() is None
    rec, contenders = _check(peer)
    assert rec["status"] == "not installed" and contenders == [] and peer.runner is None
    assert "pip install lstm_engine_bench_no_such_module" in rec["reason"]


def test_a_peer_that_fails_or_cannot_use_the_threads_is_na():
    rec, contenders = _check(FakePeer(fail=RuntimeError("Failed analyse\n\nCaused by:\n  bad shape\n\n"
                                                        "Stack backtrace:\n  0: frames")))
    assert rec["status"] == "n/a" and contenders == []
    assert rec["reason"] == "RuntimeError: Failed analyse / bad shape"        # no Rust backtrace
    rec, contenders = _check(FakePeer(one_thread=True), threads=2)
    assert rec["status"] == "n/a" and rec["reason"] == "one thread only here" and contenders == []
    assert rec["short_reason"] == "1 thread only"
    rec, _ = _check(FakePeer(one_thread=True), threads=1)
    assert rec["status"] == "timed"


def test_tract_runs_in_the_one_thread_points_only():
    tract = peers.BY_NAME["tract"]
    assert tract.unsupported_threads(1) is None and "no thread setting" in tract.unsupported_threads(2)
    with pytest.raises(peers.PeerUnavailable):
        tract.load("unused.onnx", {}, 2)
    assert peers.BY_NAME["openvino"].unsupported_threads(2) is None
    assert "INFERENCE_NUM_THREADS=2" in peers.BY_NAME["openvino"].settings(2)
    assert "INFERENCE_PRECISION_HINT=f32" in peers.BY_NAME["openvino"].settings(1)


def test_cold_start_plans_a_process_per_installed_peer_only():
    cold = [ColdScenario("cold/engine-warm", "engine", "warm", 0.3), ColdScenario("cold/onnxruntime", "onnxruntime",
                                                                                    None, None),
            ColdScenario("cold/openvino", "openvino", None, None), ColdScenario("cold/tract", "tract", None, None)]
    here = FakePeer(name="openvino")
    missing = FakePeer(name="tract", module="lstm_engine_bench_no_such_module")
    assert coldstart.planned_runs(cold, 2) == 1 + 2 * 2              # no peers: engine empty run, then warm + ort
    assert coldstart.planned_runs(cold, 2, [here, missing]) == 1 + 2 * 3
    records = coldstart.measure_cold(cold[3:], None, {"x": np.zeros(1)}, np.zeros(1), 1e-5, repeats=1,
                                     peers=[missing])
    assert records == [{**records[0], "status": "not installed", "met": None, "error": None, "runs": []}]
    assert "pip install" in records[0]["reason"]


def _lstm_onnx(path, I=3, H=4, seed=0):
    """A one-node ONNX LSTM (X, W, R, B, initial_h, initial_c -> Y, Y_h, Y_c) written with onnx.helper."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array((0.5 * rng.standard_normal(s)).astype(np.float32), n)
             for n, s in (("W", (1, 4 * H, I)), ("R", (1, 4 * H, H)), ("B", (1, 8 * H)))]
    node = helper.make_node("LSTM", ["input", "W", "R", "B", "", "h0", "c0"], ["output", "h_n", "c_n"],
                            hidden_size=H)
    f = TensorProto.FLOAT
    graph = helper.make_graph(
        [node], "lstm", [helper.make_tensor_value_info("input", f, ["T", "B", I]),
                         helper.make_tensor_value_info("h0", f, [1, "B", H]),
                         helper.make_tensor_value_info("c0", f, [1, "B", H])],
        [helper.make_tensor_value_info("output", f, ["T", 1, "B", H]),
         helper.make_tensor_value_info("h_n", f, [1, "B", H]), helper.make_tensor_value_info("c_n", f, [1, "B", H])],
        inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


@pytest.mark.parametrize("name", ["openvino", "tract"])
def test_a_peers_timed_streaming_call_carries_the_state_like_its_checked_run(name, tmp_path):
    """The check runs ``run``; the timing runs ``timed_call``: the state that call carries must be the one ``run``
    computes, step after step."""
    peer = peers.BY_NAME[name]
    if not peer.installed():
        pytest.skip(f"{name} is not installed ({peer.install})")
    path = str(tmp_path / "lstm.onnx")
    _lstm_onnx(path)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 2, 3), dtype=np.float32)
    h, c = (rng.standard_normal((1, 2, 4), dtype=np.float32) for _ in range(2))
    runner = peer.load(path, {"input": x, "h0": h, "c0": c}, 1)
    expected = {"input": x, "h0": h, "c0": c}
    for _ in range(4):
        y, h_n, c_n = runner.run(expected)
        expected = {"input": x, "h0": h_n, "c0": c_n}
    call = runner.timed_call({"input": x, "h0": h, "c0": c}, carry=[(1, "h0"), (2, "c0")])
    for _ in range(4):
        (y_timed,) = call()
    np.testing.assert_array_equal(np.asarray(y_timed), y)
    y_next = runner.run(expected)[0]
    (y_timed,) = call()
    np.testing.assert_array_equal(np.asarray(y_timed), y_next)
    assert not np.array_equal(y_next, y)     # the state moved: a call that ignored it would not match both


# ---------------------------------------------------------------------- the report, with and without peers
def _timing(seconds):
    return {"calls": 5, "total_s": 5 * seconds, "median_s": seconds, "p90_s": seconds * 1.1, "mean_s": seconds,
            "min_s": seconds, "max_s": seconds * 1.2, "blocks": 1}


def _synthetic_result(with_peers=True):
    """A result as run_benchmark writes it, without running anything: a streaming and a sequence point at 1 and 2
    threads; OpenVINO timed except for one mismatch; tract not installed, or timed at 1 thread only."""
    points = []
    for scenario, kind, ort_s in (("stream/H64", "stream", 13e-6), ("seq/T100/H128", "sequence", 400e-6)):
        for threads in (1, 2):
            timings = {"onnxruntime": _timing(ort_s), "engine": _timing(ort_s / 1.5), "torch": _timing(ort_s * 2)}
            rows = [{"variant": "run (state in/out)" if kind == "stream" else "run", "engine": "engine"}]
            if kind == "stream":
                timings["engine_step"] = _timing(ort_s / 2.5)
                rows.append({"variant": "stream.step", "engine": "engine_step"})
            point = {"scenario": scenario, "kind": kind, "threads": threads,
                     "config": {"T": 1 if kind == "stream" else 100, "B": 1, "I": 64, "H": 64 if kind == "stream"
                                else 128, "layers": 1, "bidirectional": False, "cell": "lstm"},
                     "check": {"reference": "onnxruntime", "tolerance": 1e-5, "ok": True,
                               "max_abs_diff": {"engine": {"output": 2e-7}, "engine_step": {"output": 2e-7},
                                                "torch": {"output": 3e-7}}},
                     "timings": timings, "rows": [], "error": None}
            if with_peers:
                mismatch = scenario == "seq/T100/H128" and threads == 2
                ov = {"label": "OpenVINO", "version": "2026.4.1", "status": "mismatch" if mismatch else "timed",
                      "reason": "outputs differ from onnxruntime by more than 1e-05 (max abs diff: output 0.0017); "
                                "not timed" if mismatch else None}
                if not mismatch:
                    timings["openvino"] = _timing(ort_s * 2)
                    ov["ratio_vs_onnxruntime"] = 0.5
                tract = {"label": "tract", "version": None, "status": "not installed",
                         "reason": "not installed (pip install tract)"}
                point["peers"] = {"openvino": ov, "tract": tract}
            for r in rows:
                median = timings[r["engine"]]["median_s"]
                r.update(ratio_vs_onnxruntime=ort_s / median, ratio_vs_torch=2 * ort_s / median,
                         gflops={k: 1.0 for k in timings}, min_ratio=3.0 if kind == "stream" else 1.5,
                         target_source="test", targets=[{"id": "min_ratio", "text": ">=3x", "met": False}], met=False)
                if with_peers:
                    r["ratio_vs_openvino"] = timings["openvino"]["median_s"] / median if "openvino" in timings else None
                    r["ratio_vs_tract"] = None
            point["rows"] = rows
            points.append(point)
    cold = [{"scenario": "cold/engine-warm", "runtime": "engine", "cache": "warm", "threads": 1, "runs": [{}],
             "max_abs_diff": 2e-7, "tolerance": 1e-5, "target_max_seconds": 0.3, "error": None, "seconds": 0.4,
             "process_seconds": 0.5, "peak_rss_mib": 160.0, "met": False},
            {"scenario": "cold/onnxruntime", "runtime": "onnxruntime", "cache": None, "threads": 1, "runs": [{}],
             "max_abs_diff": 0.0, "tolerance": 1e-5, "target_max_seconds": None, "error": None, "seconds": 0.1,
             "process_seconds": 0.2, "peak_rss_mib": 60.0, "met": None}]
    result = {"schema": run.SCHEMA, "created": "2026-11-25T21:00:00+00:00", "command": "test",
              "settings": {"quick": True, "repeat_seconds": 0.1, "min_calls": 3, "threads": [1, 2], "patterns": []},
              "machine": {"cpu_model": "Test CPU", "available_cores": 2, "memory_gib": 8.0,
                          "load_average_start": [1.0, 1.0, 1.0], "load_average_end": [1.0, 1.0, 1.0],
                          "versions": {"numba": "0", "onnxruntime": "1.32.0", "torch": "2", "numpy": "2"}},
              "points": points, "cold_start": cold, "errors": []}
    if with_peers:
        result["peers"] = {"openvino": {"label": "OpenVINO", "version": "2026.4.1", "install": "pip install openvino",
                                        "settings": "compile_model", "not_timed_at": {}},
                           "tract": {"label": "tract", "version": None, "install": "pip install tract",
                                     "settings": "load", "not_timed_at": {"2": "no thread setting"}}}
        cold.append({"scenario": "cold/tract", "runtime": "tract", "cache": None, "threads": 1, "runs": [],
                     "max_abs_diff": 0.0, "tolerance": 1e-5, "target_max_seconds": None, "error": None,
                     "status": "not installed", "reason": "not installed (pip install tract)", "met": None})
    return result


def _md_row(md, scenario, threads) -> dict:
    """{column header: cell} of the Markdown table's row for this scenario (and variant) and thread count."""
    lines = md.splitlines()
    header = next(line for line in lines if line.startswith("| scenario |"))
    row = next(line for line in lines if line.startswith(f"| {scenario} | {threads} |"))
    split = lambda line: [c.strip() for c in line.strip().strip("|").split(" | ")]   # noqa: E731
    return dict(zip(split(header), split(row)))


def test_the_report_shows_peers_timed_mismatched_and_missing(tmp_path):
    result = _synthetic_result()
    paths = report.write_all(result, str(tmp_path))
    assert [os.path.basename(p) for p in paths] == ["latest.json", "latest.md", "latest.png"]
    md = (tmp_path / "latest.md").read_text()
    assert "OpenVINO med / p90" in md and "vs tract" in md
    seq_2t = _md_row(md, "seq/T100/H128", 2)
    assert seq_2t["OpenVINO med / p90"] == seq_2t["vs OpenVINO"] == "MISMATCH"
    assert seq_2t["tract med / p90"] == seq_2t["vs tract"] == "not installed"
    stream_1t = _md_row(md, "stream/H64 run (state in/out)", 1)
    assert stream_1t["OpenVINO med / p90"] == "26.0us / 28.6us" and stream_1t["vs OpenVINO"] == "3.00x"
    assert "OpenVINO MISMATCH in seq/T100/H128 (2T): outputs differ" in md
    assert "tract not installed in every 1-thread point; every 2-thread point" in md
    assert "| cold/tract | **not installed (pip install tract)** |" in md
    table = report.terminal_table(result)
    assert "OpenVINO 2026.4.1, tract not installed" in table and "peers not timed:" in table
    png = (tmp_path / "latest.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "latest.json").read_text())["peers"]["tract"]["version"] is None


def test_the_chart_groups_by_workload_and_gives_every_runtime_its_bar():
    result = _synthetic_result()
    stream_1t, stream_2t, seq_1t, seq_2t = result["points"]
    assert report.family_of(stream_1t) == "LSTM streaming (T=1, state carried)"
    assert report.family_of(seq_1t) == "LSTM sequences (B=1)"
    assert report.family_of({"scenario": "gru/stream/H128", "kind": "stream"}) == "GRU and RNN streaming (T=1)"
    assert report.short_label(stream_1t) == "H=64" and report.short_label(seq_1t) == "T=100 H=128"
    assert report.bar_values(stream_1t) == {"engine": pytest.approx(1.5), "engine_step": pytest.approx(2.5),
                                            "openvino": 0.5, "tract": "not installed"}
    assert report.bar_values(seq_2t) == {"engine": pytest.approx(1.5), "openvino": "mismatch",
                                         "tract": "not installed"}
    stream_2t["peers"]["tract"].update(status="n/a", reason="no thread setting", short_reason="1 thread only")
    assert report.bar_values(stream_2t)["tract"] == "1 thread only"
    failed = {**seq_1t, "error": {"kind": "mismatch", "message": "differs"}, "rows": [], "peers": {}}
    assert report.bar_values(failed) == {"engine": "MISMATCH"}


def test_results_from_before_the_peers_still_render(tmp_path):
    result = _synthetic_result(with_peers=False)
    report.write_all(result, str(tmp_path))
    md = (tmp_path / "latest.md").read_text()
    row = _md_row(md, "stream/H64 run (state in/out)", 1)
    # no data for the peers (not "not installed": the run predates them), and the engine's figures as before
    assert [row[k] for k in ("OpenVINO med / p90", "tract med / p90", "vs OpenVINO", "vs tract")] == ["-"] * 4
    assert row["vs ORT"] == "1.50x" and row["engine med / p90"] == "8.7us / 9.5us"
    assert "Peers" not in md and "peers not timed" not in report.terminal_table(result)
    assert set(report.bar_values(result["points"][0])) == {"engine", "engine_step"}
    assert (tmp_path / "latest.png").read_bytes()[:4] == b"\x89PNG"


# ---------------------------------------------------------------------- command line
def _cli(*args):
    return subprocess.run([sys.executable, "-m", "engine.cli", "bench", *args], capture_output=True, text=True,
                          timeout=600, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_cli_bench_list_and_help():
    r = _cli("--list")
    assert r.returncode == 0, r.stderr
    assert "stream/H512" in r.stdout and ">= 3x vs onnxruntime" in r.stdout and "cold/engine-empty" in r.stdout
    r = _cli("--help")
    assert r.returncode == 0 and "--quick" in r.stdout and "interleaved" in r.stdout


@pytest.mark.slow   # the command checks that torch and onnxruntime import before it looks at its arguments
@pytest.mark.parametrize("args,message", [(["--scenarios", "nothing-like-this"], "no scenario matches"),
                                          (["--threads", "0"], "thread counts must be positive"),
                                          (["--repeat-seconds", "-1"], "repeat_seconds must be positive")])
def test_cli_bench_errors_are_one_line(args, message):
    r = _cli(*args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_cli_bench_runs_and_writes_the_report(tmp_path):
    r = _cli("--quick", "--scenarios", "stream/H64", "--threads", "1", "--repeat-seconds", "0.02", "--out",
             str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "stream/H64 stream.step" in r.stdout and "bench [" in r.stderr   # the table, and the progress bar
    data = json.loads((tmp_path / "latest.json").read_text())
    (p,) = data["points"]
    assert p["check"]["ok"] and p["rows"][0]["ratio_vs_onnxruntime"] > 0
    assert np.isfinite(p["timings"]["engine"]["median_s"])
