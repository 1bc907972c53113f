"""Two tiers: ``python -m pytest -q`` runs everything (what CI runs); ``python -m pytest -m "not slow" -q`` is the
fast tier, which must not import torch or onnxruntime.

A test that needs torch or onnxruntime, or compiles many models, is marked ``slow``; a module that is slow as a whole
says so with ``pytestmark = pytest.mark.slow`` on a line of its own. Such modules import torch at the top, so when
a run deselects slow tests they are not even imported; and a run that deselects them fails if torch or onnxruntime
got imported all the same.

The suite runs on the JIT runtime unless LSTM_ENGINE_RUNTIME says otherwise, so that an ahead-of-time runtime a
developer built into the default location does not change what the tests exercise (tests/test_aot_runtime.py builds
and checks its own). ``LSTM_ENGINE_RUNTIME=DIR python -m pytest`` runs the whole suite on the runtime in DIR.
"""
import os
import re
import sys

import pytest

SLOW_MODULE = re.compile(r"^pytestmark = pytest\.mark\.slow\b", re.M)
NOT_IN_THE_FAST_TIER = ("torch", "onnxruntime")

os.environ.setdefault("LSTM_ENGINE_RUNTIME", "jit")


def pytest_sessionstart(session):
    """Drop Numba cache files written for other engine sources before any test runs. A Session does this on its
    first use (engine/_cache.py), but a kernel test that calls a jitted function directly would otherwise load a
    kernel cached before a change to a module it calls (tiles.py, numeric.py): Numba checks only the function's
    own file."""
    from engine import _cache
    _cache.ensure_fresh()


def _slow_deselected(config) -> bool:
    """Whether the -m expression deselects a test marked slow (and nothing else)."""
    expr = config.getoption("markexpr")
    if not expr:
        return False
    from _pytest.mark.expression import Expression
    return not Expression.compile(expr).evaluate(lambda name, **kwargs: name == "slow")


def pytest_ignore_collect(collection_path, config):
    if collection_path.suffix == ".py" and collection_path.name.startswith("test_") and _slow_deselected(config):
        if SLOW_MODULE.search(collection_path.read_text(encoding="utf-8")):
            return True
    return None


def pytest_sessionfinish(session, exitstatus):
    if not _slow_deselected(session.config):
        return
    heavy = [m for m in NOT_IN_THE_FAST_TIER if m in sys.modules]
    if heavy:
        message = f"the fast tier imported {', '.join(heavy)}: mark the test that needs it slow"
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(message, red=True)
        else:
            print(message, file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
