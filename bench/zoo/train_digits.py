"""Train the zoo's bidirectional LSTM classifier of scikit-learn's 8x8 handwritten digits.

    python -m bench.zoo.train_digits [--epochs N] [--seed S]

Data: ``sklearn.datasets.load_digits`` (1797 images of 8x8 pixels with values 0..16, shipped with scikit-learn).
Each image is read row by row: T=8 steps of 8 pixels, scaled to [0, 1]. Split: ``train_test_split(test_size=0.2,
random_state=0, stratify=y)``. Model: bidirectional LSTM(8, 48) (batch_first) -> concatenation of the final
forward and backward hidden states -> Linear(96, 10).

Writes engine/data/zoo/digits.onnx (input image_rows (B, 8, 8) float32; output logits (B, 10)),
engine/data/zoo/digits.json and engine/data/zoo/digits_test.npz (the test images as uint8 0..16 and labels).
"""
import argparse
import os

import numpy as np
import torch
from torch import nn

from . import common
from .common import log

HIDDEN = 48
BATCH = 32
LR, LR_MIN, WEIGHT_DECAY = 1e-2, 1e-4, 1e-4
LABEL_SMOOTHING = 0.1   # keeps the logits moderate (|logit| < ~10), so float32 rounding stays far below 1e-5
PIXEL_MAX = 16.0


class DigitsBiLSTM(nn.Module):
    def __init__(self, hidden=HIDDEN):
        super().__init__()
        self.lstm = nn.LSTM(8, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, 10)

    def forward(self, image_rows):
        _, (h_n, _) = self.lstm(image_rows)                  # h_n: (2, B, H): final forward, final backward
        return self.head(torch.cat([h_n[0], h_n[1]], dim=1))


def load_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    images = d.images.astype(np.uint8)                        # (1797, 8, 8), values 0..16
    return train_test_split(images, d.target.astype(np.int64), test_size=0.2, random_state=0, stratify=d.target)


def to_input(images_uint8):
    return torch.from_numpy(images_uint8.astype(np.float32) / np.float32(PIXEL_MAX))


@torch.no_grad()
def accuracy(model, x, y):
    model.eval()
    logits = model(x)
    model.train()
    return int((logits.argmax(1) == y).sum()) / len(y), logits


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    common.setup(args.seed, threads=1)
    timer = common.Timer()

    img_tr, img_te, y_tr, y_te = load_split()
    x_tr, x_te = to_input(img_tr), to_input(img_te)
    t_tr, t_te = torch.from_numpy(y_tr), torch.from_numpy(y_te)
    log(f"digits: train {len(y_tr)}, test {len(y_te)} images of 8x8")
    majority = float(np.mean(y_te == np.bincount(y_tr).argmax()))

    # a simple non-recurrent baseline for reference: multinomial logistic regression on the 64 pixels
    from sklearn.linear_model import LogisticRegression
    logreg = LogisticRegression(max_iter=5000).fit(img_tr.reshape(len(img_tr), -1) / PIXEL_MAX, y_tr)
    logreg_acc = float(logreg.score(img_te.reshape(len(img_te), -1) / PIXEL_MAX, y_te))
    log(f"baselines: majority class {majority:.4f}, logistic regression on pixels {logreg_acc:.4f}")

    model = DigitsBiLSTM()
    log(f"model: {model} ({common.count_params(model)} parameters)")
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    steps_per_epoch = (len(y_tr) + BATCH - 1) // BATCH
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs * steps_per_epoch, eta_min=LR_MIN)
    gen = torch.Generator().manual_seed(args.seed)
    history = []
    for epoch in range(args.epochs):
        perm = torch.randperm(len(y_tr), generator=gen)
        total = 0.0
        for i in range(0, len(y_tr), BATCH):
            idx = perm[i:i + BATCH]
            loss = nn.functional.cross_entropy(model(x_tr[idx]), t_tr[idx], label_smoothing=LABEL_SMOOTHING)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        if (epoch + 1) % 5 == 0 or epoch == 0:
            train_acc, _ = accuracy(model, x_tr, t_tr)
            test_acc, _ = accuracy(model, x_te, t_te)
            history.append({"epoch": epoch + 1, "train_loss": total / len(y_tr), "train_accuracy": train_acc,
                            "test_accuracy": test_acc, "wall_s": round(timer(), 1)})
            log(f"epoch {epoch + 1}/{args.epochs}: loss {total / len(y_tr):.4f}  train acc {train_acc:.4f}  "
                f"test acc {test_acc:.4f}  ({timer():.0f}s)")
    train_wall = timer()
    test_acc, logits = accuracy(model, x_te, t_te)
    train_acc, _ = accuracy(model, x_tr, t_tr)
    pred = logits.argmax(1).numpy()
    confusion = np.zeros((10, 10), dtype=np.int64)
    np.add.at(confusion, (y_te, pred), 1)
    max_logit = float(logits.abs().max())
    log(f"test accuracy {test_acc:.4f} ({int((pred == y_te).sum())}/{len(y_te)}); train accuracy {train_acc:.4f}")

    npz = common.zoo_path("digits_test.npz")
    np.savez_compressed(npz, images=img_te, labels=y_te)
    log(f"wrote {os.path.relpath(npz, common.ROOT)} (images uint8 (N, 8, 8) 0..16; divide by 16 for the model)")

    model.eval()
    path = common.zoo_path("digits.onnx")
    common.export_onnx(model, (torch.zeros(2, 8, 8),), path, ["image_rows"], ["logits"],
                       {"image_rows": {0: "B"}, "logits": {0: "B"}})
    diffs = common.check_onnx(path, {"image_rows": x_te.numpy()}, {"logits": logits.numpy()})
    diffs1 = common.check_onnx(path, {"image_rows": x_te[:1].numpy()}, {"logits": logits[:1].numpy()})

    meta = {
        "description": "Bidirectional LSTM classifier of 8x8 handwritten digits read row by row (8 steps of 8 "
                       "pixels).",
        "data": {"source": "sklearn.datasets.load_digits (UCI optical recognition of handwritten digits, "
                           "shipped with scikit-learn)",
                 "split": "sklearn.model_selection.train_test_split(test_size=0.2, random_state=0, "
                          "stratify=target)",
                 "n_train": int(len(y_tr)), "n_test": int(len(y_te)),
                 "preprocessing": "image_rows = images / 16.0 (float32), images[b, t] is row t",
                 "test_set_file": "digits_test.npz (images: uint8 (N, 8, 8) 0..16, labels: int64 (N,))"},
        "architecture": {"lstm": {"input_size": 8, "hidden_size": HIDDEN, "num_layers": 1, "bidirectional": True,
                                  "batch_first": True},
                         "readout": "concat(h_n[0] forward final, h_n[1] backward final) -> Linear(96, 10)",
                         "parameters": common.count_params(model), "torch": str(model)},
        "training": {"epochs": args.epochs, "seed": args.seed, "optimizer": "AdamW", "lr": LR, "lr_min": LR_MIN,
                     "weight_decay": WEIGHT_DECAY, "label_smoothing": LABEL_SMOOTHING,
                     "schedule": "cosine per step", "batch_size": BATCH,
                     "torch_threads": 1, "deterministic": True, "train_wall_s": round(train_wall, 1),
                     "total_wall_s": None, "history": history},
        "quality": {"test_accuracy": test_acc, "test_correct": int((pred == y_te).sum()), "n_test": int(len(y_te)),
                    "train_accuracy": train_acc, "confusion_matrix_rows_true_cols_pred": confusion.tolist(),
                    "baselines": {"majority_class_accuracy": majority,
                                  "logistic_regression_pixels_accuracy": logreg_acc}},
        "io": {"inputs": {"image_rows": {"dtype": "float32", "shape": ["B", 8, 8]}},
               "outputs": {"logits": {"dtype": "float32", "shape": ["B", 10]}}},
        "demo": {"test_set": "digits_test.npz", "pixel_scale": PIXEL_MAX, "classes": list(range(10))},
        "onnx": {"max_abs_diff_vs_torch": diffs, "max_abs_logit": max_logit, "max_abs_diff_vs_torch_batch1": diffs1},
    }
    meta["training"]["total_wall_s"] = round(timer(), 1)
    common.write_metadata("digits", meta)
    log(f"done in {timer():.0f}s; {path} is {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
