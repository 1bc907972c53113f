"""Train the zoo's character-level LSTM language model on the Python standard library's own source code.

    python -m bench.zoo.train_charlm [--epochs N] [--seed S]

Data: a fixed, sorted list of .py files from ``sysconfig.get_paths()["stdlib"]`` (the running interpreter's own
standard library, so nothing is downloaded); a separate fixed list of files is held out for validation. Vocabulary:
the ASCII characters that occur at least MIN_COUNT times in the training text; everything else (non-ASCII, rare)
maps to token 0, the unknown token. Model: Embedding(V, 48) -> LSTM(48, 192, 1 layer) -> Linear(192, V), trained
with truncated back-propagation through time over 64 parallel streams carrying the state between chunks.

Writes engine/data/zoo/charlm.onnx (inputs tokens (T, B) int64, h0/c0 (1, B, 192); outputs logits (T, B, V),
h_n, c_n) and engine/data/zoo/charlm.json (vocabulary, seed prompt, quality vs. unigram/bigram baselines).
"""
import argparse
import collections
import hashlib
import math
import os
import sysconfig

import numpy as np
import torch
from torch import nn

from . import common
from .common import log

TRAIN_FILES = [
    "argparse.py", "ast.py", "base64.py", "bdb.py", "calendar.py", "cmd.py", "codecs.py", "configparser.py",
    "contextlib.py", "copy.py", "csv.py", "dataclasses.py", "difflib.py", "dis.py", "enum.py", "fileinput.py",
    "fractions.py", "ftplib.py", "functools.py", "gettext.py", "glob.py", "gzip.py", "heapq.py", "inspect.py",
    "ipaddress.py", "mimetypes.py", "pickle.py", "pprint.py", "queue.py", "random.py", "selectors.py",
    "shlex.py", "shutil.py", "socketserver.py", "statistics.py", "string.py", "tempfile.py", "textwrap.py",
    "threading.py", "tokenize.py", "traceback.py", "weakref.py",
]
VALID_FILES = [
    "colorsys.py", "filecmp.py", "getopt.py", "graphlib.py", "hmac.py", "linecache.py", "numbers.py",
    "operator.py", "sched.py", "tabnanny.py", "timeit.py", "zipapp.py",
]
MIN_COUNT = 5
UNK = "\ufffd"          # vocab[0]: what the unknown token decodes to
SEED_PROMPT = "def "

EMBED, HIDDEN, LAYERS = 48, 192, 1
STREAMS, CHUNK = 64, 64    # batch of parallel streams, truncated-BPTT length
LR, LR_MIN, CLIP = 3e-3, 1e-4, 1.0


class CharLSTM(nn.Module):
    def __init__(self, vocab_size, embed=EMBED, hidden=HIDDEN, layers=LAYERS):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed)
        self.lstm = nn.LSTM(embed, hidden, num_layers=layers)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, tokens, h0, c0):
        out, (h_n, c_n) = self.lstm(self.embed(tokens), (h0, c0))
        return self.head(out), h_n, c_n


def read_files(names):
    stdlib = sysconfig.get_paths()["stdlib"]
    texts = {}
    for name in names:
        path = os.path.join(stdlib, name)
        if not os.path.isfile(path):   # a module turned into a package in a later Python (string in 3.14)
            path = os.path.join(stdlib, name[:-3], "__init__.py")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} is missing: this Python's stdlib differs from the one the list was made for")
        with open(path, encoding="utf-8") as f:
            texts[name] = f.read()
    return texts


def build_vocab(text):
    counts = collections.Counter(text)
    chars = sorted(ch for ch, n in counts.items()
                   if n >= MIN_COUNT and (ch == "\n" or ch == "\t" or 32 <= ord(ch) < 127))
    return [UNK] + chars


def encode(text, index):
    return np.array([index.get(ch, 0) for ch in text], dtype=np.int64)


def ngram_baselines(train_ids, valid_seqs, V):
    """Held-out bits/char and accuracy of add-one-smoothed unigram and bigram models fitted on the training text."""
    uni = np.bincount(train_ids, minlength=V).astype(np.float64) + 1.0
    uni /= uni.sum()
    bi = np.ones((V, V), dtype=np.float64)
    np.add.at(bi, (train_ids[:-1], train_ids[1:]), 1.0)
    bi /= bi.sum(axis=1, keepdims=True)
    n = bits_u = bits_b = hit_u = hit_b = 0
    for seq in valid_seqs:
        # the first character of each file is predicted with the unigram model in both
        bits_u += -np.log2(uni[seq]).sum()
        bits_b += -np.log2(uni[seq[0]]) - np.log2(bi[seq[:-1], seq[1:]]).sum()
        hit_u += int((seq == np.argmax(uni)).sum())
        hit_b += int(seq[0] == np.argmax(uni)) + int((np.argmax(bi, axis=1)[seq[:-1]] == seq[1:]).sum())
        n += len(seq)
    return ({"bits_per_char": float(bits_u / n), "next_char_accuracy": float(hit_u / n)},
            {"bits_per_char": float(bits_b / n), "next_char_accuracy": float(hit_b / n)})


@torch.no_grad()
def evaluate(model, valid_seqs):
    """Bits/char and next-char accuracy over whole held-out files, each read from a zero state."""
    model.eval()
    nll = 0.0
    hits = n = 0
    for seq in valid_seqs:
        x = torch.from_numpy(seq[:-1]).unsqueeze(1)
        y = torch.from_numpy(seq[1:])
        h = torch.zeros(LAYERS, 1, HIDDEN)
        logits, _, _ = model(x, h, h.clone())
        logits = logits[:, 0]
        nll += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        hits += int((logits.argmax(1) == y).sum())
        n += len(y)
    model.train()
    return {"bits_per_char": nll / n / math.log(2), "next_char_accuracy": hits / n, "predicted_chars": n}


@torch.no_grad()
def sample(model, vocab, prompt, n_chars, seed=0, temperature=0.8):
    index = {ch: i for i, ch in enumerate(vocab)}
    gen = torch.Generator().manual_seed(seed)
    model.eval()
    h = torch.zeros(LAYERS, 1, HIDDEN)
    c = torch.zeros(LAYERS, 1, HIDDEN)
    logits, h, c = model(torch.from_numpy(encode(prompt, index)).unsqueeze(1), h, c)
    out = []
    last = logits[-1, 0]
    for _ in range(n_chars):
        tok = int(torch.multinomial(torch.softmax(last / temperature, 0), 1, generator=gen))
        out.append(vocab[tok])
        logits, h, c = model(torch.tensor([[tok]]), h, c)
        last = logits[-1, 0]
    model.train()
    return prompt + "".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=7)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    common.setup(args.seed, threads=1)
    timer = common.Timer()

    train_texts = read_files(TRAIN_FILES)
    valid_texts = read_files(VALID_FILES)
    train_text = "".join(train_texts[k] for k in TRAIN_FILES)
    vocab = build_vocab(train_text)
    index = {ch: i for i, ch in enumerate(vocab)}
    V = len(vocab)
    train_ids = encode(train_text, index)
    valid_seqs = [encode(valid_texts[k], index) for k in VALID_FILES]
    n_valid = sum(len(s) - 1 for s in valid_seqs)
    unk_train = float((train_ids == 0).mean())
    unk_valid = float(np.mean(np.concatenate(valid_seqs) == 0))
    log(f"stdlib: {sysconfig.get_paths()['stdlib']}")
    log(f"train: {len(TRAIN_FILES)} files, {len(train_ids)} chars; valid: {len(VALID_FILES)} files, "
        f"{n_valid} predicted chars; vocab {V} (unknown rate train {unk_train:.2e}, valid {unk_valid:.2e})")
    unigram, bigram = ngram_baselines(train_ids, valid_seqs, V)
    log(f"baselines on held-out: unigram {unigram['bits_per_char']:.3f} bits/char "
        f"(acc {unigram['next_char_accuracy']:.3f}), bigram {bigram['bits_per_char']:.3f} bits/char "
        f"(acc {bigram['next_char_accuracy']:.3f})")

    # TBPTT: STREAMS contiguous streams, read CHUNK characters at a time, state carried (detached) between chunks.
    per_stream = (len(train_ids) - 1) // STREAMS
    steps_per_epoch = per_stream // CHUNK
    data = torch.from_numpy(train_ids[:per_stream * STREAMS + 1])
    xs = data[:-1].view(STREAMS, per_stream).t().contiguous()      # (per_stream, STREAMS)
    ys = data[1:].view(STREAMS, per_stream).t().contiguous()
    total_steps = steps_per_epoch * args.epochs

    model = CharLSTM(V)
    log(f"model: {model} ({common.count_params(model)} parameters)")
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps, eta_min=LR_MIN)
    history = []
    step = 0
    for epoch in range(args.epochs):
        # a different (deterministic) offset each epoch so that chunk boundaries move
        offset = (epoch * 37) % CHUNK
        h = torch.zeros(LAYERS, STREAMS, HIDDEN)
        c = torch.zeros(LAYERS, STREAMS, HIDDEN)
        run_loss = 0.0
        for i in range(steps_per_epoch - (1 if offset else 0)):
            a = offset + i * CHUNK
            x, y = xs[a:a + CHUNK], ys[a:a + CHUNK]
            logits, h, c = model(x, h.detach(), c.detach())
            loss = nn.functional.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), CLIP)
            opt.step()
            sched.step()
            step += 1
            run_loss += float(loss.detach())
            if step % 100 == 0:
                log(f"  step {step}/{total_steps}  train {run_loss / (i + 1) / math.log(2):.3f} bits/char  "
                    f"lr {sched.get_last_lr()[0]:.2e}  {timer():.0f}s")
        q = evaluate(model, valid_seqs)
        history.append({"epoch": epoch + 1, "train_bits_per_char": run_loss / (i + 1) / math.log(2),
                        "valid_bits_per_char": q["bits_per_char"], "valid_accuracy": q["next_char_accuracy"],
                        "wall_s": round(timer(), 1)})
        log(f"epoch {epoch + 1}/{args.epochs}: valid {q['bits_per_char']:.3f} bits/char, "
            f"acc {q['next_char_accuracy']:.3f}  ({timer():.0f}s)")
    train_wall = timer()
    quality = evaluate(model, valid_seqs)
    log(f"held-out: {quality['bits_per_char']:.3f} bits/char, next-char accuracy {quality['next_char_accuracy']:.3f} "
        f"(unigram {unigram['bits_per_char']:.3f}, bigram {bigram['bits_per_char']:.3f})")
    text = sample(model, vocab, SEED_PROMPT, 300, seed=args.seed)
    log("sample (temperature 0.8):\n" + text)

    # Export; check onnxruntime against torch on the held-out files (first 512 chars of each as one batch) and
    # on one file read one character at a time with the state carried.
    model.eval()
    path = common.zoo_path("charlm.onnx")
    T0, B0 = 8, 2
    dummy = (torch.zeros(T0, B0, dtype=torch.int64), torch.zeros(LAYERS, B0, HIDDEN), torch.zeros(LAYERS, B0, HIDDEN))
    common.export_onnx(model, dummy, path, ["tokens", "h0", "c0"], ["logits", "h_n", "c_n"],
                       {"tokens": {0: "T", 1: "B"}, "h0": {1: "B"}, "c0": {1: "B"},
                        "logits": {0: "T", 1: "B"}, "h_n": {1: "B"}, "c_n": {1: "B"}})
    T1 = 512
    tok = np.stack([s[:T1] for s in valid_seqs], axis=1)               # (T1, n_files)
    h0 = np.zeros((LAYERS, tok.shape[1], HIDDEN), np.float32)
    with torch.no_grad():
        lg, hn, cn = model(torch.from_numpy(tok), torch.from_numpy(h0), torch.from_numpy(h0))
    diffs = common.check_onnx(path, {"tokens": tok, "h0": h0, "c0": h0},
                              {"logits": lg.numpy(), "h_n": hn.numpy(), "c_n": cn.numpy()}, scaled=("c_n",))
    max_abs_c = float(cn.abs().max())
    import onnxruntime as ort
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    seq = valid_seqs[0][:128]
    h = np.zeros((LAYERS, 1, HIDDEN), np.float32)
    c = h.copy()
    steps = []
    for t in range(len(seq)):
        out, h, c = sess.run(None, {"tokens": seq[t:t + 1].reshape(1, 1), "h0": h, "c0": c})
        steps.append(out[0, 0])
    with torch.no_grad():
        ref = model(torch.from_numpy(seq).unsqueeze(1), torch.zeros(LAYERS, 1, HIDDEN), torch.zeros(LAYERS, 1, HIDDEN))[0]
    step_diff = float(np.max(np.abs(np.stack(steps) - ref[:, 0].numpy())))
    log(f"onnxruntime one char at a time (state carried, 128 steps) vs torch whole sequence: max|diff|={step_diff:.2e}")
    if not step_diff <= common.TOLERANCE:
        raise AssertionError(f"charlm.onnx step-by-step differs from torch by {step_diff}")

    stdlib = sysconfig.get_paths()["stdlib"]
    digest = hashlib.sha256(train_text.encode("utf-8")).hexdigest()
    meta = {
        "description": "Character-level LSTM language model of Python source code; run it one character at a time "
                       "(T=1) with h/c carried between calls to generate text.",
        "data": {
            "source": "the Python standard library's own source (sysconfig.get_paths()['stdlib'])",
            "python_stdlib": stdlib,
            "train_files": TRAIN_FILES, "train_chars": int(len(train_ids)),
            "valid_files": VALID_FILES, "valid_predicted_chars": int(n_valid),
            "train_text_sha256": digest,
            "unknown_rate": {"train": unk_train, "valid": unk_valid},
        },
        "architecture": {"embedding": [V, EMBED], "lstm": {"input_size": EMBED, "hidden_size": HIDDEN,
                                                            "num_layers": LAYERS, "batch_first": False},
                         "linear": [HIDDEN, V], "parameters": common.count_params(model),
                         "torch": str(model)},
        "training": {"epochs": args.epochs, "seed": args.seed, "optimizer": "Adam", "lr": LR, "lr_min": LR_MIN,
                     "schedule": "cosine per step", "grad_clip": CLIP, "streams": STREAMS, "bptt_chunk": CHUNK,
                     "steps": step, "torch_threads": 1, "deterministic": True,
                     "train_wall_s": round(train_wall, 1), "total_wall_s": None, "history": history},
        "quality": {
            "heldout": {"bits_per_char": quality["bits_per_char"], "next_char_accuracy": quality["next_char_accuracy"],
                        "predicted_chars": quality["predicted_chars"],
                        "protocol": "each held-out file read from a zero state; the first char is context only"},
            "baselines": {"unigram_add_one": unigram, "bigram_add_one": bigram},
        },
        "io": {
            "inputs": {"tokens": {"dtype": "int64", "shape": ["T", "B"]},
                       "h0": {"dtype": "float32", "shape": [LAYERS, "B", HIDDEN]},
                       "c0": {"dtype": "float32", "shape": [LAYERS, "B", HIDDEN]}},
            "outputs": {"logits": {"dtype": "float32", "shape": ["T", "B", V]},
                        "h_n": {"dtype": "float32", "shape": [LAYERS, "B", HIDDEN]},
                        "c_n": {"dtype": "float32", "shape": [LAYERS, "B", HIDDEN]}},
        },
        "demo": {"vocab": vocab, "unk_index": 0, "unk_char": UNK, "seed_prompt": SEED_PROMPT,
                 "temperature": 0.8, "num_layers": LAYERS, "hidden_size": HIDDEN,
                 "encode": "token = vocab.index(ch) if ch in vocab else 0",
                 "sample_torch": text},
        "onnx": {"max_abs_diff_vs_torch": diffs, "max_abs_diff_step_by_step": step_diff,
                 "check": "first 512 chars of each held-out file as one batch (T=512, B=12); logits and h_n "
                          "within 1e-5 absolute, c_n within 1e-5 * max|c_n| (max|c_n| = %.2f)" % max_abs_c},
    }
    meta["training"]["total_wall_s"] = round(timer(), 1)
    common.write_metadata("charlm", meta)
    log(f"done in {timer():.0f}s; {path} is {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
