"""The suite runs on the JIT runtime unless LSTM_ENGINE_RUNTIME says otherwise, so that an ahead-of-time runtime a
developer built into the default location does not change what the tests exercise (tests/test_aot_runtime.py builds
and checks its own). ``LSTM_ENGINE_RUNTIME=DIR python -m pytest`` runs the whole suite on the runtime in DIR."""
import os

os.environ.setdefault("LSTM_ENGINE_RUNTIME", "jit")
