"""Frozen-head variants the toolkit's options do not offer, on the codes of ae-wide-16-onecycle.

Usage: python scripts/frozen_head_variants.py MODE EPOCHS [SEED] [NOISE] [WIDTH] [DROPOUT]

MODE: plain (the codes of the training images), mirrored (plus the codes of their mirror
images, computed once), tta (mirrored, and predictions averaged over each test image and its
mirror), shifted (plus the codes of the images moved one pixel up, down, left and right,
computed once; the result also gives the accuracies with predictions averaged over each image
and its four shifts), full (the training and the validation codes; read the last epoch's
test accuracy, since validation no longer picks anything). NOISE: Gaussian noise of this size
added to the standardised codes in training.
WIDTH, DROPOUT: the head's two hidden layers (the report's: 256, no dropout). The rest is
`fmt clf finetune --schedule onecycle --lr 3e-3 --label-smoothing 0.1 --mixup 0.2 --ema 0.999`
re-written plainly (same split, batch 256, weight decay 1e-5); validation picks the epoch.
Codes are cached in /tmp/exp/codes.pt. With SAVE_LOG_PROBS=DIR the best epoch's log-probabilities
on the validation and test codes go to DIR/lp-SEED.pt. Results: docs/classifier.md.
"""

import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import fmnist_toolkit
from fmnist_toolkit.data.batches import split_indices, to_unit_float
from fmnist_toolkit.data.idx import load_fashion_mnist

torch.manual_seed(0)
mode = sys.argv[1]
epochs = int(sys.argv[2])
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
noise = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
D = str(__import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "fashion-mnist")
ae = fmnist_toolkit.load_model("ae-wide-16-onecycle").eval()
enc = ae.encoder
xi, yi = load_fashion_mnist("train", D)
xt, yt = load_fashion_mnist("test", D)
tr, va = split_indices(60000, 0.1, 0)


def codes(x, flip=False, shift=None):
    out = []
    with torch.inference_mode():
        for i in range(0, len(x), 2000):
            b = to_unit_float(x[i : i + 2000])
            if flip:
                b = b.flip(-1)
            if shift is not None:  # moved by (dy, dx) pixels, zero fill
                dy, dx = shift
                b = F.pad(b, (1, 1, 1, 1))[..., 1 + dy : 29 + dy, 1 + dx : 29 + dx]
            out.append(enc(b).float())
    return torch.cat(out)


t0 = time.time()

os.makedirs("/tmp/exp", exist_ok=True)
if os.path.exists("/tmp/exp/codes.pt"):
    ctr, cva, cte, mtr, mva, mte = torch.load("/tmp/exp/codes.pt")
else:
    ctr, cva, cte = codes(xi[tr]), codes(xi[va]), codes(xt)
    mtr, mva, mte = codes(xi[tr], True), codes(xi[va], True), codes(xt, True)
    torch.save((ctr, cva, cte, mtr, mva, mte), "/tmp/exp/codes.pt")
print("codes", time.time() - t0, flush=True)
ytr, yva = yi[tr], yi[va]
if mode == "shifted":
    SHIFTS = [(1, 0), (-1, 0), (0, 1), (0, -1)]
    if os.path.exists("/tmp/exp/shift-codes.pt"):
        str_, sva, ste = torch.load("/tmp/exp/shift-codes.pt")
    else:
        str_ = [codes(xi[tr], shift=sh) for sh in SHIFTS]
        sva = [codes(xi[va], shift=sh) for sh in SHIFTS]
        ste = [codes(xt, shift=sh) for sh in SHIFTS]
        torch.save((str_, sva, ste), "/tmp/exp/shift-codes.pt")
    print("shifted codes", time.time() - t0, flush=True)
mean, std = ctr.mean(0), ctr.std(0)
if mode == "shifted":
    X = torch.cat([ctr, *str_])
    Y = torch.cat([ytr] * 5)
elif mode == "full":
    X, Y = torch.cat([ctr, cva]), torch.cat([ytr, yva])
elif mode in ("mirrored", "tta"):
    X = torch.cat([ctr, mtr])
    Y = torch.cat([ytr, ytr])
elif mode == "plain":
    X, Y = ctr, ytr
else:
    raise SystemExit(f"unknown MODE {mode!r}: plain, mirrored, tta, shifted or full")


def s(c):
    return (c - mean) / std


torch.manual_seed(seed)
W = int(sys.argv[5]) if len(sys.argv) > 5 else 256
P = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
head = nn.Sequential(
    nn.Linear(16, W),
    nn.ReLU(),
    nn.Dropout(P),
    nn.Linear(W, W),
    nn.ReLU(),
    nn.Dropout(P),
    nn.Linear(W, 128),
    nn.ReLU(),
    nn.Linear(128, 10),
    nn.LogSoftmax(1),
)
ema = torch.optim.swa_utils.AveragedModel(
    head, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(0.999)
)
opt = torch.optim.Adam(head.parameters(), lr=3e-3, weight_decay=1e-5)
bs = 256
steps = epochs * ((len(X) + bs - 1) // bs)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps, pct_start=0.3)
g = torch.Generator().manual_seed(seed)


def acc(model, c, m, y, tta):
    with torch.inference_mode():
        lp = model(s(c))
        if tta:
            lp = torch.logsumexp(torch.stack([lp, model(s(m))]), 0)
        return (lp.argmax(1) == y).float().mean().item()


def shift_tta_acc(model, c, shifted, y):
    with torch.inference_mode():
        lp = torch.logsumexp(torch.stack([model(s(x)) for x in (c, *shifted)]), 0)
        return (lp.argmax(1) == y).float().mean().item()


best = (0, None)
for ep in range(epochs):
    ema.module.train()
    head.train()
    perm = torch.randperm(len(X), generator=g)
    for i in range(0, len(X), bs):
        idx = perm[i : i + bs]
        c = s(X[idx])
        t = F.one_hot(Y[idx], 10).float() * 0.9 + 0.01
        if noise:
            c = c + noise * torch.randn(c.shape, generator=g)
        lam = torch.distributions.Beta(0.2, 0.2).sample().item()
        p = torch.randperm(len(idx), generator=g)
        c = lam * c + (1 - lam) * c[p]
        t = lam * t + (1 - lam) * t[p]
        loss = -(t * head(c)).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        ema.update_parameters(head)
    m = ema.module.eval()
    v = acc(m, cva, mva, yva, mode == "tta")
    if v > best[0]:
        best = (v, ep, acc(m, cte, mte, yt, mode == "tta"), acc(m, cte, mte, yt, False))
        if mode == "shifted":
            shift_tta = (shift_tta_acc(m, cva, sva, yva), shift_tta_acc(m, cte, ste, yt))
        if os.environ.get("SAVE_LOG_PROBS"):  # for scripts/frozen_head_ensemble.py
            with torch.inference_mode():
                log_probs = (m(s(cva)), m(s(cte)), yva, yt)
            torch.save(log_probs, f"{os.environ['SAVE_LOG_PROBS']}/lp-{seed}.pt")
last = ema.module.eval()
print(f"last epoch: test {acc(last, cte, mte, yt, False):.4f}", flush=True)
print(
    mode,
    epochs,
    seed,
    noise,
    W,
    P,
    "best val {:.4f} ep {} test {:.4f} (no-tta {:.4f})".format(*best),
    *(
        ["averaged over shifts: val {:.4f} test {:.4f}".format(*shift_tta)]
        if mode == "shifted"
        else []
    ),
    "time",
    time.time() - t0,
    flush=True,
)
