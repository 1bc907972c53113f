"""The Numba cache's freshness check (engine/_cache.py): cached kernels of an installation are dropped when its
sources' fingerprint changes, judged by that installation's own marker (another installation's says nothing)."""
import os

from engine import _cache


def _install(root, name):
    """A fake installed engine with one cached kernel: (its directory, the cache file)."""
    engine_dir = os.path.join(root, name, "engine")
    cached = os.path.join(engine_dir, "ops", "__pycache__", "numeric.matmul-200.py311.nbi")
    os.makedirs(os.path.dirname(cached))
    open(cached, "w").close()
    return engine_dir, cached


def test_a_changed_fingerprint_drops_the_installations_cached_kernels(tmp_path):
    engine_dir, cached = _install(str(tmp_path), "venv")
    markers = str(tmp_path / "markers")
    _cache.drop_stale(engine_dir, markers, "old")
    assert not os.path.exists(cached)                  # no marker yet: nothing cached can be trusted
    open(cached, "w").close()
    _cache.drop_stale(engine_dir, markers, "old")
    assert os.path.exists(cached)                      # the same sources: the cache stays
    _cache.drop_stale(engine_dir, markers, "new")
    assert not os.path.exists(cached)
    assert open(_cache.marker_path(markers, engine_dir)).read().strip() == "new"


def test_another_installation_being_fresh_does_not_keep_a_stale_cache(tmp_path):
    """Two virtualenvs share ~/.cache/lstm-engine: one upgraded first records the new fingerprint; the other, upgraded
    over an older engine whose cached executor still sits beside its sources, must drop that executor (it ran on the
    new weight layouts and gave wrong results when one marker served every installation)."""
    a, _ = _install(str(tmp_path), "venv-a")
    b, stale = _install(str(tmp_path), "venv-b")
    markers = str(tmp_path / "markers")
    _cache.drop_stale(b, markers, "old")
    open(stale, "w").close()                           # venv-b's executor, compiled from the old sources
    _cache.drop_stale(a, markers, "new")               # venv-a upgraded and started first
    assert os.path.exists(stale)
    _cache.drop_stale(b, markers, "new")               # venv-b upgraded
    assert not os.path.exists(stale)
    assert _cache.marker_path(markers, a) != _cache.marker_path(markers, b)


def test_a_shared_numba_cache_dir_is_cleaned_too(tmp_path):
    engine_dir, _ = _install(str(tmp_path), "venv")
    shared = tmp_path / "numba-cache" / "x"
    shared.mkdir(parents=True)
    (shared / "executor.execute-24.py311.nbc").write_text("")
    _cache.drop_stale(engine_dir, str(tmp_path / "markers"), "v1", str(tmp_path / "numba-cache"))
    assert not (shared / "executor.execute-24.py311.nbc").exists()


def test_a_process_with_its_own_numba_cache_dir_leaves_the_installations_cache_alone(tmp_path):
    """A profiling or benchmark run with NUMBA_CACHE_DIR set never reads the installation's __pycache__ kernels:
    it must not delete them (the next plain run then compiled the executor again, two minutes), and its fingerprint
    is recorded apart from theirs."""
    engine_dir, cached = _install(str(tmp_path), "venv")
    markers = str(tmp_path / "markers")
    _cache.drop_stale(engine_dir, markers, "v1")                 # a plain run: its cache is fresh
    open(cached, "w").close()
    own = tmp_path / "profiling-cache"
    (own / "sub").mkdir(parents=True)
    (own / "sub" / "executor.execute-24.py311.nbc").write_text("")
    _cache.drop_stale(engine_dir, markers, "v1-profiling", str(own))
    assert not (own / "sub" / "executor.execute-24.py311.nbc").exists()     # its own location: cleared
    assert os.path.exists(cached)                                # the installation's: left alone
    _cache.drop_stale(engine_dir, markers, "v1")                 # the plain run again: still fresh
    assert os.path.exists(cached)
    assert _cache.marker_path(markers, engine_dir) != _cache.marker_path(markers, engine_dir, str(own))


def test_an_unwritable_numba_cache_dir_means_the_installations_cache(tmp_path):
    """Numba falls back to the __pycache__ directories beside the sources when it cannot write NUMBA_CACHE_DIR: the
    check then judges (and clears) those."""
    engine_dir, cached = _install(str(tmp_path), "venv")
    markers = str(tmp_path / "markers")
    blocker = tmp_path / "file"
    blocker.write_text("")
    _cache.drop_stale(engine_dir, markers, "v1", str(blocker / "numba-cache"))
    assert not os.path.exists(cached)
    open(cached, "w").close()
    _cache.drop_stale(engine_dir, markers, "v1")                 # the same location, the same fingerprint
    assert os.path.exists(cached)


def test_an_unwritable_marker_location_only_costs_compile_time(tmp_path):
    engine_dir, cached = _install(str(tmp_path), "venv")
    blocker = tmp_path / "file"
    blocker.write_text("")
    _cache.drop_stale(engine_dir, str(blocker / "markers"), "v1")    # cannot create the directory: no error


def test_the_fingerprint_is_the_sources_unless_a_codegen_switch_is_set(monkeypatch):
    for name in _cache.CODEGEN_SWITCHES:
        monkeypatch.delenv(name, raising=False)
    assert _cache.fingerprint() == _cache.source_hash()
    monkeypatch.setenv("NUMBA_ENABLE_PROFILING", "")         # set but empty: Numba's default, the same code
    assert _cache.fingerprint() == _cache.source_hash()
    monkeypatch.setenv("NUMBA_ENABLE_PROFILING", "1")
    profiling = _cache.fingerprint()
    assert profiling.startswith(_cache.source_hash()) and profiling != _cache.source_hash()
    monkeypatch.delenv("NUMBA_ENABLE_PROFILING")
    monkeypatch.setenv("NUMBA_OPT", "0")
    assert _cache.fingerprint() not in (profiling, _cache.source_hash())


def test_kernels_cached_under_a_codegen_switch_are_dropped_in_a_run_without_it(tmp_path, monkeypatch):
    """NUMBA_ENABLE_PROFILING compiles the activations' loops scalar and Numba's cache key does not record it: a
    kernel cached in a profiling run must not be loaded by the next plain run (nor the other way round)."""
    for name in _cache.CODEGEN_SWITCHES:
        monkeypatch.delenv(name, raising=False)
    engine_dir, cached = _install(str(tmp_path), "venv")
    markers = str(tmp_path / "markers")
    monkeypatch.setenv("NUMBA_ENABLE_PROFILING", "1")
    _cache.drop_stale(engine_dir, markers, _cache.fingerprint())
    open(cached, "w").close()                          # compiled and cached by the profiling run
    _cache.drop_stale(engine_dir, markers, _cache.fingerprint())
    assert os.path.exists(cached)                      # a second profiling run keeps it
    monkeypatch.delenv("NUMBA_ENABLE_PROFILING")
    _cache.drop_stale(engine_dir, markers, _cache.fingerprint())
    assert not os.path.exists(cached)                  # the plain run does not
