"""Export the demo model bundled with the engine (engine/data/demo_lstm.onnx) with PyTorch's exporter.

A 2-layer LSTM (input 64, hidden 128) with a fixed seed, exported with torch.onnx.export(dynamo=False) and dynamic
batch and time axes. Run: python bench/make_demo_model.py
"""
import os
import warnings

import torch

OUT = os.path.join(os.path.dirname(__file__), "..", "engine", "data", "demo_lstm.onnx")


def main():
    torch.manual_seed(1234)
    model = torch.nn.LSTM(64, 128, num_layers=2).eval()
    x = torch.randn(10, 1, 64)
    h0 = torch.zeros(2, 1, 128)
    c0 = torch.zeros(2, 1, 128)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x, (h0, c0)), OUT, dynamo=False, input_names=["input", "h0", "c0"],
                          output_names=["output", "h_n", "c_n"],
                          dynamic_axes={"input": {0: "T", 1: "B"}, "h0": {1: "B"}, "c0": {1: "B"},
                                        "output": {0: "T", 1: "B"}, "h_n": {1: "B"}, "c_n": {1: "B"}})
    print(f"wrote {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
