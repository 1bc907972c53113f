"""Train the zoo's LSTM forecaster of the Mauna Loa CO2 record (the copy shipped with statsmodels).

    python -m bench.zoo.train_co2 [--epochs N] [--seed S]

Data: ``statsmodels.datasets.co2.load_pandas()`` (weekly means 1958-03 .. 2001-12 with gaps), resampled to
monthly means and linearly interpolated where a month has no data. Normalised with the mean/std of the training
months. The last 10 years (1992-01 .. 2001-12, 120 months) are held out.

Model: the last WINDOW months x (B, T, 1), normalised, go into an LSTM(1, 48) (batch_first) after subtracting the
window's last value (so that the model sees the shape of the recent past, not its level, and extrapolates the
rising trend); a Linear(48, 1) of the last step's output is added back to the last value:
``y = x[:, -1] + Linear(LSTM(x - x[:, -1:])[:, -1])``, the next month, normalised.

Writes engine/data/zoo/co2.onnx (input x (B, T, 1) float32; output y (B, 1) float32), engine/data/zoo/co2.json,
and engine/data/zoo/co2_heldout.npz (the monthly series, the held-out part, the context that precedes it, and the
torch model's forecasts).
"""
import argparse
import os

import numpy as np
import torch
from torch import nn

from . import common
from .common import log

WINDOW = 36
HOLDOUT_MONTHS = 120
HIDDEN = 48
BATCH = 32
LR, LR_MIN = 5e-3, 1e-4
HORIZON = 12


class CO2LSTM(nn.Module):
    def __init__(self, hidden=HIDDEN):
        super().__init__()
        self.lstm = nn.LSTM(1, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):
        last = x[:, -1, :]                                    # (B, 1)
        out, _ = self.lstm(x - last.unsqueeze(1))
        return last + self.head(out[:, -1, :])                # (B, 1)


def load_monthly():
    import statsmodels.datasets.co2 as co2

    weekly = co2.load_pandas().data["co2"]
    monthly = weekly.resample("MS").mean()
    missing = monthly.isna().to_numpy()
    monthly = monthly.interpolate(method="linear")
    months = np.array([d.strftime("%Y-%m") for d in monthly.index])
    return months, monthly.to_numpy(dtype=np.float64), missing


def windows(series, start, stop, w):
    """Inputs series[t-w:t] and targets series[t] for t in [start, stop)."""
    idx = np.arange(max(start, w), stop)
    x = np.stack([series[t - w:t] for t in idx])[:, :, None]
    return x.astype(np.float32), series[idx].astype(np.float32)[:, None], idx


def rmse(a, b):
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


@torch.no_grad()
def predict(model, x):
    model.eval()
    y = model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()
    model.train()
    return y


def recursive(model, context, steps):
    """Forecast ``steps`` months after ``context`` (normalised, 1-D), feeding each prediction back."""
    buf = [float(v) for v in context]
    out = []
    for _ in range(steps):
        y = float(predict(model, np.array(buf[-WINDOW:], np.float32)[None, :, None])[0, 0])
        out.append(y)
        buf.append(y)
    return np.array(out)


def recursive_batch(model, contexts, steps):
    """``recursive`` for many contexts at once: contexts (N, WINDOW) normalised -> (N, steps)."""
    buf = np.asarray(contexts, np.float32)
    out = []
    for _ in range(steps):
        y = predict(model, buf[:, -WINDOW:, None])[:, 0]
        out.append(y)
        buf = np.concatenate([buf, y[:, None]], axis=1)
    return np.stack(out, axis=1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    common.setup(args.seed, threads=1)
    timer = common.Timer()

    months, ppm, missing = load_monthly()
    n = len(ppm)
    split = n - HOLDOUT_MONTHS
    mean, std = float(ppm[:split].mean()), float(ppm[:split].std())
    z = (ppm - mean) / std
    log(f"CO2: {n} months {months[0]} .. {months[-1]} ({int(missing.sum())} interpolated); train up to "
        f"{months[split - 1]}, held out {months[split]} .. {months[-1]}; mean {mean:.3f} ppm, std {std:.3f} ppm")

    x_tr, y_tr, _ = windows(z, 0, split, WINDOW)
    x_te, y_te, idx_te = windows(z, split, n, WINDOW)
    log(f"training windows {len(x_tr)}, held-out one-step windows {len(x_te)}")
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)

    model = CO2LSTM()
    log(f"model: {model} ({common.count_params(model)} parameters)")
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    steps_per_epoch = (len(x_tr) + BATCH - 1) // BATCH
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs * steps_per_epoch, eta_min=LR_MIN)
    gen = torch.Generator().manual_seed(args.seed)
    history = []
    for epoch in range(args.epochs):
        perm = torch.randperm(len(x_tr), generator=gen)
        total = 0.0
        for i in range(0, len(x_tr), BATCH):
            idx = perm[i:i + BATCH]
            # loss in ppm^2 so that the numbers printed mean something
            loss = nn.functional.mse_loss(model(xt[idx]) * std, yt[idx] * std)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        if (epoch + 1) % 10 == 0 or epoch == 0:
            tr = float(np.sqrt(total / len(x_tr)))
            te = rmse(predict(model, x_te) * std, y_te * std)
            history.append({"epoch": epoch + 1, "train_rmse_ppm": tr, "heldout_onestep_rmse_ppm": te,
                            "wall_s": round(timer(), 1)})
            log(f"epoch {epoch + 1}/{args.epochs}: train RMSE {tr:.3f} ppm  held-out one-step RMSE {te:.3f} ppm  "
                f"({timer():.0f}s)")
    train_wall = timer()

    # --- held-out quality, in ppm -------------------------------------------------------------------------------
    actual = ppm[split:]
    onestep = predict(model, x_te)[:, 0] * std + mean
    onestep_rmse = rmse(onestep, actual)
    snaive_onestep = ppm[split - 12:n - 12]                              # y(t-12)
    persist_onestep = ppm[split - 1:n - 1]                               # y(t-1)
    train_onestep_rmse = rmse(predict(model, x_tr)[:, 0] * std + mean, y_tr[:, 0] * std + mean)

    # one forecast of all 120 held-out months from the WINDOW months before them
    rec = recursive(model, z[split - WINDOW:split], HOLDOUT_MONTHS) * std + mean
    rec_rmse = rmse(rec, actual)
    last_year = ppm[split - 12:split]
    snaive_rec = np.tile(last_year, HOLDOUT_MONTHS // 12 + 1)[:HOLDOUT_MONTHS]
    drift = float(np.mean(ppm[split - 12:split] - ppm[split - 24:split - 12]))   # last year's annual increase
    snaive_drift_rec = snaive_rec + drift * (np.arange(HOLDOUT_MONTHS) // 12 + 1)

    # 12-month recursive forecasts from every origin in the held-out part with 12 months after it
    origins = np.arange(split, n - HORIZON + 1)
    ctx = np.stack([z[o - WINDOW:o] for o in origins])
    roll = recursive_batch(model, ctx, HORIZON) * std + mean                 # (N, 12)
    truth = np.stack([ppm[o:o + HORIZON] for o in origins])
    roll_sn = np.stack([ppm[o - 12:o] for o in origins])
    roll_sn_drift = roll_sn + np.array([float(np.mean(ppm[o - 12:o] - ppm[o - 24:o - 12])) for o in origins])[:, None]
    roll_rmse = rmse(roll, truth)
    roll_by_h = [rmse(roll[:, h], truth[:, h]) for h in range(HORIZON)]

    q = {
        "onestep": {"rmse_ppm": onestep_rmse, "mae_ppm": float(np.mean(np.abs(onestep - actual))),
                    "n_months": int(len(actual)),
                    "baselines": {"seasonal_naive_rmse_ppm": rmse(snaive_onestep, actual),
                                  "persistence_rmse_ppm": rmse(persist_onestep, actual)},
                    "train_rmse_ppm": train_onestep_rmse},
        "recursive_12_months_rolling": {
            "rmse_ppm": roll_rmse, "rmse_ppm_by_horizon": roll_by_h, "n_origins": int(len(origins)),
            "baselines": {"seasonal_naive_rmse_ppm": rmse(roll_sn, truth),
                          "seasonal_naive_with_drift_rmse_ppm": rmse(roll_sn_drift, truth)}},
        "recursive_120_months": {
            "rmse_ppm": rec_rmse, "end_error_ppm": float(rec[-1] - actual[-1]),
            "baselines": {"seasonal_naive_rmse_ppm": rmse(snaive_rec, actual),
                          "seasonal_naive_with_drift_rmse_ppm": rmse(snaive_drift_rec, actual)}},
    }
    log(f"held-out one-step RMSE {onestep_rmse:.3f} ppm (seasonal naive "
        f"{q['onestep']['baselines']['seasonal_naive_rmse_ppm']:.3f}, persistence "
        f"{q['onestep']['baselines']['persistence_rmse_ppm']:.3f}); train {train_onestep_rmse:.3f}")
    log(f"12-month recursive forecasts from {len(origins)} origins: RMSE {roll_rmse:.3f} ppm (seasonal naive "
        f"{q['recursive_12_months_rolling']['baselines']['seasonal_naive_rmse_ppm']:.3f}, with drift "
        f"{q['recursive_12_months_rolling']['baselines']['seasonal_naive_with_drift_rmse_ppm']:.3f}); by horizon "
        + " ".join(f"{v:.2f}" for v in roll_by_h))
    log(f"120-month recursive forecast: RMSE {rec_rmse:.3f} ppm, error at {months[-1]} {rec[-1] - actual[-1]:+.2f} "
        f"ppm (seasonal naive {q['recursive_120_months']['baselines']['seasonal_naive_rmse_ppm']:.3f}, with drift "
        f"{q['recursive_120_months']['baselines']['seasonal_naive_with_drift_rmse_ppm']:.3f})")

    npz = common.zoo_path("co2_heldout.npz")
    np.savez_compressed(
        npz, months=months, ppm=ppm, interpolated=missing, heldout_start=np.int64(split), window=np.int64(WINDOW),
        mean=np.float64(mean), std=np.float64(std),
        context=ppm[split - WINDOW:split], context_months=months[split - WINDOW:split],
        heldout=actual, heldout_months=months[split:],
        onestep_pred_torch=onestep, recursive_pred_torch=rec)
    log(f"wrote {os.path.relpath(npz, common.ROOT)}")

    # --- export and check ---------------------------------------------------------------------------------------
    model.eval()
    path = common.zoo_path("co2.onnx")
    common.export_onnx(model, (torch.zeros(2, WINDOW, 1),), path, ["x"], ["y"], {"x": {0: "B", 1: "T"},
                                                                                 "y": {0: "B"}})
    with torch.no_grad():
        ref = model(torch.from_numpy(x_te)).numpy()
        x48 = np.stack([z[t - 48:t] for t in idx_te])[:, :, None].astype(np.float32)
        ref48 = model(torch.from_numpy(x48)).numpy()
    diffs = common.check_onnx(path, {"x": x_te}, {"y": ref})
    diffs48 = common.check_onnx(path, {"x": x48}, {"y": ref48})

    meta = {
        "description": "LSTM forecaster of the monthly Mauna Loa CO2 concentration: reads the last WINDOW months "
                       "(normalised) and predicts the next month (normalised); forecast further by feeding "
                       "predictions back.",
        "data": {"source": "statsmodels.datasets.co2 (Mauna Loa weekly CO2, ppm, 1958-03 .. 2001-12)",
                 "preprocessing": "weekly -> monthly means (resample 'MS'), linear interpolation of empty months; "
                                  "z = (ppm - mean) / std with the training months' mean and std",
                 "months": int(n), "first_month": str(months[0]), "last_month": str(months[-1]),
                 "interpolated_months": [str(m) for m in months[missing]],
                 "train_months": [str(months[0]), str(months[split - 1])],
                 "heldout_months": [str(months[split]), str(months[-1])],
                 "n_train_windows": int(len(x_tr)), "heldout_file": "co2_heldout.npz"},
        "architecture": {"lstm": {"input_size": 1, "hidden_size": HIDDEN, "num_layers": 1, "batch_first": True},
                         "formula": "y = x[:, -1] + Linear(48, 1)(LSTM(x - x[:, -1:])[:, -1])",
                         "parameters": common.count_params(model), "torch": str(model)},
        "training": {"epochs": args.epochs, "seed": args.seed, "optimizer": "Adam", "lr": LR, "lr_min": LR_MIN,
                     "schedule": "cosine per step", "batch_size": BATCH, "loss": "MSE in ppm^2",
                     "torch_threads": 1, "deterministic": True, "train_wall_s": round(train_wall, 1),
                     "total_wall_s": None, "history": history},
        "quality": q,
        "io": {"inputs": {"x": {"dtype": "float32", "shape": ["B", "T", 1],
                                "meaning": "the last T months, (ppm - mean) / std, oldest first; trained with "
                                           f"T = {WINDOW}"}},
               "outputs": {"y": {"dtype": "float32", "shape": ["B", 1],
                                 "meaning": "the next month, (ppm - mean) / std"}}},
        "demo": {"mean": mean, "std": std, "window": WINDOW, "heldout_start": str(months[split]),
                 "heldout_start_index": int(split), "heldout_file": "co2_heldout.npz",
                 "heldout_file_arrays": {
                     "months": "'YYYY-MM' of every month", "ppm": "the whole monthly series (float64)",
                     "interpolated": "months filled by interpolation", "heldout_start": "index of the first "
                     "held-out month", "context": "the WINDOW months (ppm) before the held-out part",
                     "heldout": "the 120 held-out months (ppm)", "onestep_pred_torch": "one-step forecasts "
                     "(ppm) of the held-out months from true windows", "recursive_pred_torch": "the 120-month "
                     "recursive forecast (ppm) from the context", "window": "", "mean": "", "std": ""}},
        "onnx": {"max_abs_diff_vs_torch": diffs, "max_abs_diff_vs_torch_T48": diffs48,
                 "check": f"all {len(x_te)} held-out windows as one batch, at T={WINDOW} and T=48 "
                          "(normalised units)"},
    }
    meta["training"]["total_wall_s"] = round(timer(), 1)
    common.write_metadata("co2", meta)
    log(f"done in {timer():.0f}s; {path} is {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
