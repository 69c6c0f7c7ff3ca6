#!/usr/bin/env python3
"""Reference check, not a dependency: the PSE paper's protocol (2000 steps, batch 100, Adam 1e-3)
in PyTorch on full Fashion-MNIST, reporting the same metrics probsem reports, so probsem's numbers
can be compared with an independent implementation on this machine.

Usage: python3 bench/pytorch_protocol.py --model pse-star --latent 10 --seed 0 [--classifier-weight 1]
"""
import argparse, gzip, json, os, time
import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--model", default="pse-star", choices=["pse", "pse-star"])
p.add_argument("--latent", type=int, default=10)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--steps", type=int, default=2000)
p.add_argument("--classifier-weight", type=float, default=1.0)
p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
a = p.parse_args()
torch.manual_seed(a.seed); np.random.seed(a.seed)

def idx(path, offset):
    with gzip.open(path) as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)
def load(split):
    x = idx(os.path.join(a.data, f"{split}-images-idx3-ubyte.gz"), 16).reshape(-1, 784).astype(np.float32) / 255
    y = idx(os.path.join(a.data, f"{split}-labels-idx1-ubyte.gz"), 8).astype(np.int64)
    return torch.from_numpy(x), torch.from_numpy(y)
xtr, ytr = load("train"); xte, yte = load("t10k")
K, C = a.latent, 10
mlp = lambda *s: nn.Sequential(*[m for i in range(len(s) - 1) for m in ([nn.Linear(s[i], s[i + 1])] + ([nn.ReLU()] if i < len(s) - 2 else []))])
enc, dec, lab = mlp(784, 512, 64, 2 * K), mlp(K, 64, 512, 784), nn.Linear(C, 2 * K)
cla = mlp(784, 512, 64, C)
params = list(enc.parameters()) + list(dec.parameters()) + list(lab.parameters()) + (list(cla.parameters()) if a.model == "pse-star" else [])
opt = torch.optim.Adam(params, lr=1e-3)

def kl(m1, lv1, m2, lv2):
    return 0.5 * (lv2 - lv1 + (lv1.exp() + (m1 - m2) ** 2) / lv2.exp() - 1).sum(1)

t0 = time.time()
perm = torch.randperm(len(xtr)); pos = 0
for step in range(a.steps):
    if pos + 100 > len(xtr):
        perm = torch.randperm(len(xtr)); pos = 0
    ib = perm[pos:pos + 100]; pos += 100
    x, y = xtr[ib], ytr[ib]
    m, lv = enc(x).chunk(2, 1)
    ml, lvl = lab(F.one_hot(y, C).float()).chunk(2, 1)
    z = m + (0.5 * lv).exp() * torch.randn_like(m)
    logits = dec(z)
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1).mean()
    loss = recon + kl(m, lv, ml, lvl).mean()
    if a.model == "pse-star":
        loss = loss + a.classifier_weight * F.cross_entropy(cla(torch.sigmoid(logits)), y)
    opt.zero_grad(); loss.backward(); opt.step()
with torch.no_grad():
    m, lv = enc(xte).chunk(2, 1)
    z = m + (0.5 * lv).exp() * torch.randn_like(m)
    rs = F.binary_cross_entropy_with_logits(dec(z), xte, reduction="none").sum(1).mean().item()
    rm = F.binary_cross_entropy_with_logits(dec(m), xte, reduction="none").sum(1).mean().item()
    ml, lvl = lab(torch.eye(C)).chunk(2, 1)
    ll = -0.5 * (((m[:, None, :] - ml[None]) ** 2) / lvl.exp()[None] + lvl[None]).sum(2)
    acc = (ll.argmax(1) == yte).float().mean().item()
print(json.dumps({"model": a.model, "latent": K, "seed": a.seed, "classifierWeight": a.classifier_weight,
                  "reconstructionError": rs, "reconstructionErrorMean": rm, "annotationAccuracy": acc, "seconds": time.time() - t0}))
