"""Train the zoo's CRNN text-line recogniser on lines rendered from the DejaVu fonts.

    python -m bench.zoo.train_crnn [--steps N] [--seed S]

Data, made here and nowhere else: text from the English help topics that ship with Python
(``pydoc_data.topics``; the topics are split 80/20 into training and held-out text), cut into lines of 3 to 24
characters of ``ALPHABET``, rendered with PIL in the DejaVu faces of Debian's fonts-dejavu-core (18 faces for
training; 3 more held out), at 19-27 px, then distorted: a small rotation and shear, blur, a random grey level for
ink and paper, Gaussian noise; scaled to height 32 and narrowed (x0.7-0.85, about 3 output columns a character). A
fresh batch is rendered for every step (seeded).

Model (bench/crnn_models.py): Conv2d + BatchNorm2d + ReLU blocks with MaxPool 2x2, 2x2, (2, 1), (2, 1), the mean
over the height, two bidirectional LSTMs of ``HIDDEN`` units each followed by a linear layer, log-softmax over
``ALPHABET`` + the CTC blank (index 0); one output column per 4 pixels of width. CTC loss; greedy decoding
(best class per column, repeats merged, blanks dropped).

Quality: character accuracy (1 - edit distance / characters) and exact lines on 1,000 held-out lines (held-out
text, the training faces) and 500 lines of held-out text in the held-out faces, against a baseline that reads the
trained CRNN's convolutional features column by column with a linear CTC head trained on them (no LSTM: what the
context adds).

Writes engine/data/zoo/crnn.onnx (input ``image`` float32 (N, 1, 32, W), pixels in [-1, 1], ink bright; output
``logp`` float32 (W / 4, N, classes)), crnn.json and crnn_heldout.npz (48 held-out lines: their pixels side by side
as uint8, widths, texts, faces).
"""
from __future__ import annotations

import argparse
import glob
import math
import os
import re

import numpy as np
import torch
from torch import nn

from engine.demo import edit_distance

from . import common
from .common import log

ALPHABET = (" !\"#%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ[]_abcdefghijklmnopqrstuvwxyz{}")
HEIGHT = 32
CHANNELS = (16, 32, 64, 64)
HIDDEN = 64
BATCH = 32
LR, LR_MIN = 3e-3, 5e-5
PROBE_STEPS, PROBE_LR = 600, 3e-3
FONT_DIR = "/usr/share/fonts/truetype/dejavu"
HELD_OUT_FACES = ("DejaVuSansMono-BoldOblique.ttf", "DejaVuSerifCondensed-Italic.ttf", "DejaVuSans-Bold.ttf")
N_HELDOUT, N_HELDOUT_FACES, N_SAVED = 1000, 500, 48


# ---------------------------------------------------------------------- text
def corpus():
    """(training lines' source words, held-out words): the words of pydoc's help topics, topics split 80/20."""
    from pydoc_data.topics import topics
    keys = sorted(topics)
    allowed = set(ALPHABET)
    split = {"train": [], "heldout": []}
    for k, key in enumerate(keys):
        words = [w for w in re.split(r"\s+", topics[key]) if w and all(ch in allowed for ch in w)]
        split["heldout" if k % 5 == 4 else "train"].extend(words)
    return split["train"], split["heldout"]


def make_line(words, rng, target=None):
    """Consecutive words from a random place, cut at ``target`` characters (default: 3 to 24)."""
    target = int(rng.integers(3, 25)) if target is None else target
    i = int(rng.integers(0, len(words)))
    line = words[i]
    while len(line) < target and i + 1 < len(words):
        i += 1
        line += " " + words[i]
    return line[:target].strip() or words[0][:target]


# ---------------------------------------------------------------------- rendering
def faces():
    files = sorted(os.path.basename(f) for f in glob.glob(os.path.join(FONT_DIR, "DejaVu*.ttf")) if "Math" not in f)
    if len(files) < 10:
        raise SystemExit(f"the DejaVu fonts were not found in {FONT_DIR} (apt-get install fonts-dejavu-core)")
    return [f for f in files if f not in HELD_OUT_FACES], [f for f in files if f in HELD_OUT_FACES]


_FONTS = {}


def render(text, face, rng):
    """A text line as a float32 image (32, W) in [-1, 1], ink bright, distorted; and its width."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont
    size = int(rng.integers(19, 28))
    font = _FONTS.get((face, size))
    if font is None:
        font = _FONTS[(face, size)] = ImageFont.truetype(os.path.join(FONT_DIR, face), size)
    left, _, right, _ = font.getbbox(text)
    ascent, descent = font.getmetrics()
    pad_x, pad_y = int(rng.integers(2, 10)), int(rng.integers(1, 5))
    w, h = right - left + 2 * pad_x, ascent + descent + 2 * pad_y       # the face's line box, whatever the text
    img = Image.new("L", (w, h), 0)
    ImageDraw.Draw(img).text((pad_x - left, pad_y), text, fill=255, font=font)
    shear = float(rng.uniform(-0.25, 0.25))
    img = img.transform((w + int(abs(shear) * h), h), Image.AFFINE,
                        (1, shear, -abs(shear) * h if shear > 0 else 0, 0, 1, 0), resample=Image.BILINEAR)
    img = img.rotate(float(rng.uniform(-1.5, 1.5)), resample=Image.BILINEAR, expand=False)
    blur = float(rng.uniform(0, 0.9))
    if blur > 0.3:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    W = max(8, int(round(img.width * HEIGHT / img.height * rng.uniform(0.7, 0.85))))   # ~3 columns a character
    a = np.asarray(img.resize((W, HEIGHT), Image.BILINEAR), np.float32) / 255.0
    paper, ink = rng.uniform(0.0, 0.35), rng.uniform(0.65, 1.0)
    a = paper + (ink - paper) * a + rng.normal(0, rng.uniform(0.0, 0.08), a.shape)
    return np.clip(a * 2 - 1, -1, 1).astype(np.float32)


def batch(texts, face_list, rng):
    """(images (N, 1, 32, Wmax) padded with the background, widths, texts, faces)."""
    fs = [face_list[int(rng.integers(0, len(face_list)))] for _ in texts]
    imgs = [render(t, f, rng) for t, f in zip(texts, fs)]
    Wmax = max(4 * math.ceil(i.shape[1] / 4) for i in imgs)
    x = np.full((len(imgs), 1, HEIGHT, Wmax), -1.0, np.float32)
    for k, i in enumerate(imgs):
        x[k, 0, :, :i.shape[1]] = i
        x[k, 0, :, i.shape[1]:] = i[:, -1:].mean()       # the paper's level, not black
    return x, [i.shape[1] for i in imgs], fs


def encode(text):
    return [ALPHABET.index(ch) + 1 for ch in text]


def greedy(logp):
    """Greedy CTC decoding of (T, classes) log-probabilities: best class per column, repeats merged, blanks
    dropped."""
    best = np.asarray(logp).argmax(-1)
    out, prev = [], 0
    for c in best:
        if c != prev and c != 0:
            out.append(ALPHABET[c - 1])
        prev = c
    return "".join(out)


def score(pairs):
    """Character accuracy (1 - edits / characters) and the share of exact lines over (truth, decoded) pairs."""
    edits = sum(edit_distance(t, d) for t, d in pairs)
    chars = sum(len(t) for t, _ in pairs)
    return {"char_accuracy": 1 - edits / chars, "exact_lines": sum(t == d for t, d in pairs) / len(pairs),
            "lines": len(pairs), "characters": chars, "edits": edits}


# ---------------------------------------------------------------------- models
class ColumnProbe(nn.Module):
    """The baseline: the trained CRNN's convolutional features (frozen), each column read alone by a linear CTC
    head trained on them: the model without the context its LSTMs give."""

    def __init__(self, crnn):
        super().__init__()
        self.cnn = crnn.cnn
        self.head = nn.Linear(CHANNELS[-1], len(ALPHABET) + 1)

    def train(self, mode=True):
        super().train(mode)
        self.cnn.eval()          # the CRNN's batch-norm statistics stay as trained
        return self

    def forward(self, image):
        with torch.no_grad():
            f = self.cnn(image).mean(2).permute(2, 0, 1)
        return self.head(f).log_softmax(2)


def build_crnn():
    from bench.crnn_models import CRNN
    return CRNN(classes=len(ALPHABET) + 1, channels=CHANNELS, hidden=HIDDEN)


def train(model, params, steps, lr, words, face_list, seed, label):
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1,
                                                final_div_factor=lr / LR_MIN)
    ctc = nn.CTCLoss(blank=0, zero_infinity=True)
    timer, history, running = common.Timer(), [], 0.0
    model.train()
    for step in range(steps):
        length = int(rng.integers(3, 25))     # lines of similar lengths in a batch: little padding to compute
        texts = [make_line(words, rng, max(3, length + int(rng.integers(-2, 3)))) for _ in range(BATCH)]
        x, widths, _ = batch(texts, face_list, rng)
        logp = model(torch.from_numpy(x))
        targets = torch.tensor([i for t in texts for i in encode(t)])
        loss = ctc(logp, targets, torch.tensor([w // 4 for w in widths]), torch.tensor([len(t) for t in texts]))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
        running += float(loss.detach())
        if (step + 1) % 250 == 0:
            history.append({"step": step + 1, "ctc_loss": running / 250, "wall_s": round(timer(), 1)})
            log(f"{label} step {step + 1}/{steps}: CTC loss {running / 250:.3f} ({timer():.0f}s)")
            running = 0.0
    model.eval()
    return history, timer()


@torch.no_grad()
def evaluate(model, sets):
    """{set name: score} and, per set, the decoded lines."""
    out, decoded = {}, {}
    for name, (x_list, texts) in sets.items():
        pairs = []
        for x, ts, widths in x_list:
            logp = model(torch.from_numpy(x)).numpy()
            pairs += [(t, greedy(logp[:w // 4, k])) for k, (t, w) in enumerate(zip(ts, widths))]
        out[name], decoded[name] = score(pairs), pairs
    return out, decoded


def heldout_sets(words, train_faces, test_faces, seed):
    rng = np.random.default_rng(seed + 1000)
    sets = {}
    for name, n, face_list in (("heldout_text", N_HELDOUT, train_faces), ("heldout_text_and_faces",
                                                                          N_HELDOUT_FACES, test_faces)):
        texts = [make_line(words, rng) for _ in range(n)]
        chunks = []
        for i in range(0, n, 50):
            x, widths, fs = batch(texts[i:i + 50], face_list, rng)
            chunks.append((x, texts[i:i + 50], widths))
        sets[name] = (chunks, texts)
    return sets


def saved_lines_quality(onnx_path, npz_path):
    """Greedy-decoded quality of the exported model (onnxruntime) on the saved held-out lines, read one at a time
    from their uint8 pixels, as the demo and the tests read them."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    d = np.load(npz_path)
    ends = np.cumsum(d["widths"])
    pairs = []
    for text, a, b in zip(d["texts"], ends - d["widths"], ends):
        x = d["pixels"][None, None, :, a:b].astype(np.float32) / np.float32(127.5) - 1
        pairs.append((str(text), greedy(sess.run(None, {"image": x})[0][:, 0])))
    return score(pairs)


# ---------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    common.setup(args.seed, threads=1)
    timer = common.Timer()
    train_words, held_words = corpus()
    train_faces, test_faces = faces()
    log(f"text: {len(train_words)} training words, {len(held_words)} held-out words; faces: {len(train_faces)} "
        f"for training, held out: {', '.join(test_faces)}")
    sets = heldout_sets(held_words, train_faces, test_faces, args.seed)

    torch.manual_seed(args.seed)
    model = build_crnn()
    log(f"model: {common.count_params(model)} parameters")
    history, train_wall = train(model, model.parameters(), args.steps, LR, train_words, train_faces, args.seed,
                                "crnn")
    quality, decoded = evaluate(model, sets)
    log(f"CRNN: {quality}")

    torch.manual_seed(args.seed)
    probe = ColumnProbe(model)
    b_history, b_wall = train(probe, probe.head.parameters(), PROBE_STEPS, PROBE_LR, train_words, train_faces,
                              args.seed + 1, "baseline")
    model.eval()
    b_quality, _ = evaluate(probe, sets)
    log(f"baseline (the CRNN's convolutional features, no LSTM): {b_quality}")

    # the held-out lines kept for the demo and the tests: their pixels side by side, as uint8
    chunks, texts = sets["heldout_text"]
    x0, _, widths0 = chunks[0]
    keep = list(range(N_SAVED))
    pixels = np.concatenate([x0[k, 0, :, :widths0[k]] for k in keep], axis=1)
    npz = common.zoo_path("crnn_heldout.npz")
    np.savez_compressed(npz, pixels=np.round((pixels + 1) * 127.5).astype(np.uint8),
                        widths=np.array([widths0[k] for k in keep], np.int64),
                        texts=np.array([texts[k] for k in keep]))
    log(f"wrote {os.path.relpath(npz, common.ROOT)} ({os.path.getsize(npz)} bytes)")

    path = common.zoo_path("crnn.onnx")
    common.export_onnx(model, (torch.from_numpy(x0[:2]),), path, ["image"], ["logp"],
                       {"image": {0: "N", 3: "W"}, "logp": {0: "T", 1: "N"}})
    with torch.no_grad():
        expected = model(torch.from_numpy(x0)).numpy()
        one = np.round((pixels[:, :widths0[0]] + 1) * 127.5).astype(np.float32)[None, None] / 127.5 - 1
        expected1 = model(torch.from_numpy(one)).numpy()
    diffs = common.check_onnx(path, {"image": x0}, {"logp": expected}, tol=1e-4)
    diffs1 = common.check_onnx(path, {"image": one}, {"logp": expected1}, tol=1e-4)
    saved = saved_lines_quality(path, npz)
    log(f"the {N_SAVED} saved lines, read from their uint8 pixels by onnxruntime: {saved}")

    examples = [{"truth": t, "decoded": d} for t, d in decoded["heldout_text"][:12]]
    meta = {
        "description": "CRNN text-line recogniser: a VGG-style convolutional stack over a grey line image 32 px "
                       "high, two bidirectional LSTMs, a CTC head; greedy decoding.",
        "data": {"text": "pydoc_data.topics (Python's help topics), topics split 80/20 (every 5th sorted topic "
                         "held out), lines of 3-28 consecutive characters of whole words",
                 "alphabet": ALPHABET, "faces_train": train_faces, "faces_heldout": test_faces,
                 "font_dir": FONT_DIR, "font_package": "fonts-dejavu-core (Debian)",
                 "rendering": "PIL, 19-27 px, shear +-0.25, rotation +-1.5 deg, Gaussian blur 0-0.9 px, paper "
                              "0-0.35 and ink 0.65-1.0 grey, Gaussian noise sigma 0-0.08, height 32, width "
                              "scaled 0.7-0.85 after the height",
                 "preprocessing": "image = pixels / 127.5 - 1 (uint8 pixels, ink bright), shape (N, 1, 32, W); "
                                  "logp[:W // 4, n] are line n's columns",
                 "heldout_file": "crnn_heldout.npz (pixels: uint8 (32, sum of widths), the lines side by side; "
                                 "widths; texts)"},
        "architecture": {"channels": list(CHANNELS), "lstm_hidden": HIDDEN, "classes": len(ALPHABET) + 1,
                         "blank": 0, "parameters": common.count_params(model), "torch": str(model)},
        "training": {"steps": args.steps, "batch_size": BATCH, "seed": args.seed, "optimizer": "Adam",
                     "schedule": f"one-cycle to {LR}, down to {LR_MIN}", "loss": "CTC", "grad_clip": 5.0,
                     "torch_threads": 1, "deterministic": True, "train_wall_s": round(train_wall, 1),
                     "history": history, "baseline": f"ColumnProbe: the CRNN's convolutional features frozen, "
                                                     f"a linear CTC head trained on them for {PROBE_STEPS} steps",
                     "baseline_train_wall_s": round(b_wall, 1), "baseline_history": b_history},
        "quality": {**quality, "baseline_column_probe": b_quality, "saved_lines": saved, "decoding": "greedy CTC",
                    "examples": examples},
        "io": {"inputs": {"image": {"dtype": "float32", "shape": ["N", 1, 32, "W"]}},
               "outputs": {"logp": {"dtype": "float32", "shape": ["W/4", "N", len(ALPHABET) + 1]}}},
        "demo": {"heldout": "crnn_heldout.npz", "alphabet": ALPHABET, "blank": 0, "columns_per_pixel": 0.25},
        "onnx": {"max_abs_diff_vs_torch": diffs, "max_abs_diff_vs_torch_one_line": diffs1},
    }
    meta["training"]["total_wall_s"] = round(timer(), 1)
    common.write_metadata("crnn", meta)
    log(f"done in {timer():.0f}s; {path} is {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
