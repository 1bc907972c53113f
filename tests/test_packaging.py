"""What a user installs and what running a model imports: the wheel holds ``engine`` (with its ops and the zoo data)
and ``converters`` (with any subpackage), not ``bench`` (a PyPI distribution of that name exists; the benchmark runs
from a checkout); running a model file imports no converter and no framework.
"""
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

import engine
from built_models import recurrent_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAMEWORKS = ("converters", "onnx", "torch", "matplotlib", "onnxruntime", "bench")


def child_env(*paths):
    return {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel built from a copy of this checkout (whose converters have subpackages: converters/onnx/handlers)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info",
                                                             "__pycache__", ".pytest_cache", ".hypothesis", "tests",
                                                             "results"))
    # no build isolation: the installed setuptools builds it, without network
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "-w", str(tmp / "dist"), "--no-deps",
                        "--no-build-isolation", "-q"], capture_output=True, text=True, timeout=600, cwd=tmp)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    (path,) = (tmp / "dist").glob("lstm_engine-*.whl")
    return path, src


def test_the_wheel_holds_engine_and_converters_only(wheel):
    path, src = wheel
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        entry_points = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    top = {n.split("/")[0] for n in names if ".dist-info/" not in n}
    assert top == {"engine", "converters"}
    sources = {os.path.relpath(os.path.join(d, f), src).replace(os.sep, "/")
               for package in ("engine", "converters") for d, _, files in os.walk(src / package)
               for f in files if f.endswith(".py")}
    assert "converters/onnx/handlers/recurrent.py" in sources and "engine/ops/lstm_fast.py" in sources
    assert sources <= set(names), f"missing from the wheel: {sorted(sources - set(names))}"
    zoo = sorted(f"engine/data/zoo/{f}" for f in os.listdir(src / "engine" / "data" / "zoo"))
    assert zoo and set(zoo) <= set(names)
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".nbi", ".nbc"))]
    assert "lstm-engine = engine.cli:main" in entry_points


def test_bench_outside_a_checkout_says_how_to_run_it(wheel, tmp_path):
    path, _ = wheel
    site = tmp_path / "site"
    with zipfile.ZipFile(path) as z:
        z.extractall(site)
    p = subprocess.run([sys.executable, "-c", "import sys; from engine.cli import main; sys.exit(main())", "bench",
                        "--list"], capture_output=True, text=True, timeout=600, cwd=tmp_path, env=child_env(str(site)))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    for step in ("clone the repository", 'pip install -e ".[bench]"', "python -m bench"):
        assert step in p.stderr


def test_running_a_model_file_imports_no_converter_or_framework(tmp_path):
    model, _ = recurrent_model("LSTM", I=3, H=4, direction="bidirectional")
    engine.save(model, tmp_path / "model.lstm")
    code = ("import json, sys\n"
            "import numpy as np\n"
            "import engine\n"
            "sess = engine.Session(sys.argv[1])\n"
            "y = sess.run(None, {'X': np.ones((5, 2, 3), np.float32)})[0]\n"
            "assert y.shape == (5, 2, 2, 4)\n"
            f"print(json.dumps([m for m in {FRAMEWORKS!r} if m in sys.modules]))\n")
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path / "model.lstm")], capture_output=True, text=True,
                       timeout=600, cwd=tmp_path, env=child_env(ROOT))
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads(p.stdout.strip().splitlines()[-1]) == []
