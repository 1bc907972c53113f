"""CRNN text recognisers in PyTorch, as OCR libraries build them, for tests/test_crnn.py (which exports them in a
child process) and bench/crnn.py: a VGG-style convolutional stack over a grey text-line image (N, 1, 32, W) that
halves the height at every pool and the width at the first two only, a reduction over what is left of the height,
two bidirectional LSTMs each followed by a linear layer, and a CTC head (log-softmax over the classes, blank 0).

The output is (T, N, classes) with T = W // 4: one column of log-probabilities per 4 pixels of width, the layout
``torch.nn.CTCLoss`` takes. Imports torch: only slow tests and the benchmark use it.
"""
from __future__ import annotations

import torch
from torch import nn

HEIGHT = 32


class CRNN(nn.Module):
    """``crnn``: Conv2d + BatchNorm2d + ReLU blocks, MaxPool2d 2x2, 2x2, (2, 1), (2, 1), the mean over the height.
    ``crnn-variant``: the other ops exporters emit for such models: LeakyReLU, ReLU6 (Clip), a grouped and a dilated
    convolution, an AvgPool2d with ceil_mode and count_include_pad, a strided convolution in place of a pool, the
    maximum over the height (ReduceMax)."""

    def __init__(self, variant=False, classes=40, channels=(16, 32, 64, 64), hidden=96):
        super().__init__()
        c1, c2, c3, c4 = channels

        def block(ci, co, act=None, **conv):
            return [nn.Conv2d(ci, co, conv.pop("k", 3), padding=conv.pop("padding", 1), **conv), nn.BatchNorm2d(co),
                    act or nn.ReLU()]

        if not variant:
            layers = [*block(1, c1), nn.MaxPool2d(2, 2), *block(c1, c2), nn.MaxPool2d(2, 2),
                      *block(c2, c3), nn.MaxPool2d((2, 1), (2, 1)), *block(c3, c4), nn.MaxPool2d((2, 1), (2, 1))]
        else:
            layers = [*block(1, c1, nn.LeakyReLU(0.1)), nn.MaxPool2d(2, 2, ceil_mode=True),
                      *block(c1, c2, nn.ReLU6(), groups=4, k=(3, 5), padding=(1, 2)),
                      nn.AvgPool2d(2, 2, padding=1, ceil_mode=True, count_include_pad=True),
                      *block(c2, c3, dilation=2, padding=2),
                      *block(c3, c4, stride=(2, 1), padding=(1, 1)), nn.MaxPool2d((2, 1), (2, 1))]
        self.variant = variant
        self.cnn = nn.Sequential(*layers)
        self.rnn1 = nn.LSTM(c4, hidden, bidirectional=True)
        self.lin1 = nn.Linear(2 * hidden, hidden)
        self.rnn2 = nn.LSTM(hidden, hidden, bidirectional=True)
        self.lin2 = nn.Linear(2 * hidden, classes)

    def forward(self, image):                 # image (N, 1, 32, W)
        f = self.cnn(image)                   # (N, C, H', W')
        f = f.amax(2) if self.variant else f.mean(2)     # (N, C, W')
        f = f.permute(2, 0, 1)                # (T, N, C): the width is the time axis
        y, _ = self.rnn1(f)
        y, _ = self.rnn2(self.lin1(y))
        return self.lin2(y).log_softmax(2)    # (T, N, classes)


def build(name: str, seed: int = 0, **kw) -> CRNN:
    """A CRNN with random weights and random batch-norm statistics (so that folding them is not a no-op), in eval
    mode. The recurrent and linear weights are scaled up from torch's initialisation (x3, x3 and x10 for the last
    layer): at torch's initialisation the log-probabilities stay within 0.1 of uniform, where an error upstream would
    hide; scaled, they spread over ~7 nats, and a change of 0.01 in one weight of the first convolution moves them by
    ~1e-3, ten times the tests' tolerance."""
    torch.manual_seed(seed)
    m = CRNN(variant=name == "crnn-variant", **kw)
    with torch.no_grad():
        for p in [*m.rnn1.parameters(), *m.rnn2.parameters(), m.lin1.weight]:
            p.mul_(3.0)
        m.lin2.weight.mul_(10.0)
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
    return m.eval()
