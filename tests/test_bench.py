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

from bench import coldstart, report, run, timing
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
    assert not chosen and [c.name for c in cold] == ["cold/engine-warm", "cold/engine-empty", "cold/onnxruntime"]
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
                                                     "cold/onnxruntime": None}


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
def test_cold_start_runs_fresh_processes_and_checks_the_result(tmp_path):
    sc = Scenario("cold-tiny", "sequence", T=5, B=1, H=8)
    from bench.models import build, make_inputs
    import onnxruntime as ort
    built = build(sc, str(tmp_path))
    feed = make_inputs(sc)
    ref = ort.InferenceSession(built.onnx_path, providers=["CPUExecutionProvider"]).run(None, feed)[0]
    cold = [ColdScenario("cold/engine-warm", "engine", "warm", 0.5), ColdScenario("cold/onnxruntime", "onnxruntime",
                                                                                    None, None)]
    seen = []
    records = coldstart.measure_cold(cold, built, feed, ref, 1e-5, repeats=1, on_run=seen.append)
    assert len(seen) == coldstart.planned_runs(cold, 1) == 3    # the unrecorded cache fill, then one of each
    for rec in records:
        assert rec["error"] is None, rec["error"]
        assert len(rec["runs"]) == 1 and rec["seconds"] > 0 and rec["max_abs_diff"] <= 1e-5
        # the child's own peak memory, not the parent's (which has torch loaded)
        assert 10 < rec["peak_rss_mib"] < 2000
    assert records[0]["met"] in (True, False) and records[1]["met"] is None


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
