"""A small model zoo: three real LSTM models trained on data shipped with installed packages.

    python -m bench.zoo.train_charlm    # character LSTM language model on the stdlib's own source
    python -m bench.zoo.train_co2       # LSTM forecaster of the Mauna Loa CO2 record (statsmodels)
    python -m bench.zoo.train_digits    # bidirectional LSTM classifier of sklearn's 8x8 digits

Each writes engine/data/zoo/NAME.onnx and engine/data/zoo/NAME.json (see bench/zoo/README.md).
"""
