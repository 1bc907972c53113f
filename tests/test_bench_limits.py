"""bench/limits.py: the floors are the arithmetic its docstring states, the verdicts follow from them, and the
measurement and the command run end to end (tiny sizes: the figures themselves are the bench's business)."""
import json

import pytest

from bench import limits

# a made-up machine: 200 GB/s up to 64 KiB, 100 up to 1 MiB, 50 beyond; 100 GFLOP/s (50 G float MACs/s);
# 200 G int8 MACs/s
MACHINE = {"bandwidth_gbs": {"16": 200.0, "64": 200.0, "1024": 50.0, "256": 100.0}, "float32_gflops": 100.0,
           "int8_gmacs": 200.0, "vnni": True}
LSTM256 = {"T": 100, "B": 1, "I": 256, "H": 256, "layers": 1, "bidirectional": False, "cell": "lstm"}


def test_bandwidth_is_the_largest_measured_size_not_above_the_working_set():
    assert limits.bandwidth_at(MACHINE, 8 * 1024) == 200e9          # below the smallest size: the smallest's
    assert limits.bandwidth_at(MACHINE, 300 * 1024) == 100e9
    assert limits.bandwidth_at(MACHINE, 1024 * 1024) == 50e9
    dip = {"bandwidth_gbs": {"16": 150.0, "32": 180.0, "1024": 60.0, "4096": 80.0, "16384": 50.0}}
    assert limits.bandwidth_at(dip, 16 * 1024) == 180e9                # a larger set read faster: at least that
    assert limits.bandwidth_at(dip, 2048 * 1024) == 80e9
    assert limits.bandwidth_at(dip, 64 * 1024 * 1024) == 50e9


def test_sequence_floor_is_the_larger_of_all_multiply_adds_and_all_bytes():
    mib = 1024 * 1024                                               # W and R are 4H x H float32: 1 MiB each
    compute = 100 * (256 + 256) * 1024 / 50e9                       # projection and recurrence, 50 G MACs/s
    memory = mib / 50e9 + 100 * mib / 50e9                          # W once, R every step
    assert memory > compute
    assert limits.floor_seconds(LSTM256, 1, MACHINE) == pytest.approx(memory)
    # two threads: half of each, and half of R (512 KiB per core) streams at the 256 KiB figure
    two = max(compute / 2, mib / 2 / 100e9 + 100 * mib / 2 / 100e9)
    assert limits.floor_seconds(LSTM256, 2, MACHINE) == pytest.approx(two)
    # at a batch the multiply-adds win
    big = dict(LSTM256, B=64)
    assert limits.floor_seconds(big, 1, MACHINE) == pytest.approx(64 * compute)


def test_int8_bidirectional_stacked_and_stream_floors():
    q = 256 * 1024                                                   # int8 W and R: 256 KiB each
    int8 = max(100 * 512 * 1024 / 200e9, q / 100e9 + 100 * q / 100e9)
    assert limits.floor_seconds(LSTM256, 1, MACHINE, "int8") == pytest.approx(int8)
    bi2 = dict(LSTM256, layers=2, bidirectional=True)               # layer 2 reads 2H inputs
    w2 = 4 * 256 * 512 * 4
    layer2 = max(100 * (512 + 256) * 1024 / 50e9, w2 / 50e9 + 100 * 1024 * 1024 / 50e9)
    assert limits.floor_seconds(bi2, 1, MACHINE) == pytest.approx(2 * limits.floor_seconds(LSTM256, 1, MACHINE)
                                                                 + 2 * layer2)
    stream = dict(LSTM256, T=1, cell="gru", H=64, I=64)             # W + R read every call: 3H x 2H floats, 96 KiB
    assert limits.floor_seconds(stream, 1, MACHINE) == pytest.approx(96 * 1024 / 200e9)


def test_verdicts_and_flags():
    bench = {"points": [
        {"scenario": "seq/T100/H256", "threads": 1, "config": LSTM256,
         "timings": {"onnxruntime": {"median_s": 3.2e-3}, "engine": {"median_s": 3.0e-3}}},
        {"scenario": "seq/T100/H256", "threads": 2, "config": LSTM256,
         "timings": {"onnxruntime": {"median_s": 0.5e-3}, "engine": {"median_s": 0.45e-3}}},
        {"scenario": "seq/T100/H512", "threads": 1, "config": LSTM256,       # ceiling 1.06: 1.1 within 5%
         "timings": {"onnxruntime": {"median_s": 2.25e-3}, "engine": {"median_s": 2.2e-3}}},
        {"scenario": "batch/B32/H256", "threads": 1, "config": dict(LSTM256, B=32),
         "timings": {"onnxruntime": {"median_s": 1.0}, "engine": {"median_s": 0.5}}}]}
    rows = limits.table(bench, None, MACHINE)
    one, two, margin, batch = rows
    assert one["ceiling"] == pytest.approx(3.2e-3 / limits.floor_seconds(LSTM256, 1, MACHINE))
    assert one["ceiling"] > 1.1 * 1.05 and one["verdict"] == "not excluded by the floor" and one["below_floor"] == []
    assert two["ceiling"] < 1.2 and two["verdict"] == "excluded by the floor"
    assert two["below_floor"] == ["onnxruntime", "engine"]          # both faster than this made-up machine allows
    assert 1.1 / 1.05 < margin["ceiling"] < 1.1 and margin["verdict"] == "at the floor, within its margin"
    assert batch["verdict"] == "met" and batch["ratio"] == 2.0
    md = limits.markdown(MACHINE, rows, "test machine")
    assert "| seq/T100/H256 | 2 | engine |" in md and "(onnxruntime and engine below the floor)" in md


def test_measure_and_the_command(tmp_path):
    got = limits.measure(0.01, (16, 64))
    assert sorted(got["bandwidth_gbs"]) == [16, 64] and all(v > 0 for v in got["bandwidth_gbs"].values())
    assert got["float32_gflops"] > 0 and got["int8_gmacs"] > 0 and got["fma16_per_s"] > 0
    # a tile cannot beat the core's own FMA rate (32 flops an instruction); generous, for a busy machine
    assert got["float32_gflops"] * 1e9 < 1.5 * 32 * got["fma16_per_s"]
    assert (got["vpdpbusd_per_s"] is None) == (not got["vnni"])
    bench = tmp_path / "latest.json"
    bench.write_text(json.dumps({"points": [{"scenario": "seq/T100/H256", "threads": 1, "config": LSTM256,
                                             "timings": {"onnxruntime": {"median_s": 3e-3},
                                                         "engine": {"median_s": 2e-3}}}]}))
    out = tmp_path / "limits.json"
    assert limits.main(["--bench", str(bench), "--reduced", str(tmp_path / "none.json"), "--out", str(out),
                        "--quick"]) == 0
    data = json.loads(out.read_text())
    assert [r["point"] for r in data["rows"]] == ["seq/T100/H256"] and data["reduced"] is None
    assert "| seq/T100/H256 | 1 | engine |" in (tmp_path / "limits.md").read_text()
