#!/usr/bin/env python3
"""PyTorch reference timing for one training step of PSE* / PSE / VAE / JMVAE / a conv VAE.

Used by the benchmark harness as a subprocess; the LAST stdout line is JSON.
Model: the PSE paper's Appendix A (see bench docs). Only the step is timed
(forward, backward, optimizer.step, zero_grad) on a fixed pool of synthetic
batches, so data generation does not pollute the numbers.
"""
import argparse
import ctypes
import json
import os
import statistics
import sys
import time

D, C, POOL = 784, 10, 10  # pixels, classes, number of pre-generated batches


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="pse-star", choices=["pse-star", "pse", "vae", "jmvae", "vae-conv"])
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--latent", type=int, default=10)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


ARGS = parse_args()
if ARGS.threads is not None:
    # Debian's torch does its GEMMs in the system BLAS (OpenBLAS pthread), whose
    # thread pool torch.set_num_threads does not reach; OpenBLAS reads this
    # variable only when it is loaded, so it must be set before importing torch.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(ARGS.threads))
    # Idle OpenMP workers otherwise spin and starve OpenBLAS's own threads
    # (measured: ~5x slower at 2 threads on a 2-core box).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except Exception as e:  # harness expects a JSON error line and exit code 3
    print(json.dumps({"error": f"torch not available: {e}"}))
    sys.exit(3)


def blas_threads():
    """OpenBLAS's thread count, or None when the BLAS is not OpenBLAS."""
    try:
        return ctypes.CDLL("libopenblas.so.0").openblas_get_num_threads()
    except (OSError, AttributeError):
        return None


def mlp(*sizes):
    """Dense layers with ReLU between them (none after the last)."""
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class Model(nn.Module):
    def __init__(self, kind, k):
        super().__init__()
        self.kind, self.k = kind, k
        if kind == "vae-conv":
            # probsem's encoderConv [32, 64], kernel 5, stride 2, "same" padding: 28 -> 14 -> 7.
            self.enc = nn.Sequential(
                nn.Unflatten(1, (1, 28, 28)),
                nn.Conv2d(1, 32, 5, stride=2, padding=2), nn.ReLU(),
                nn.Conv2d(32, 64, 5, stride=2, padding=2), nn.ReLU(),
                nn.Flatten(), mlp(7 * 7 * 64, 512, 64, 2 * k))
        else:
            self.enc = mlp(D, 512, 64, 2 * k)       # image -> (mu, logvar)
        self.dec = mlp(k, 64, 512, D)               # z -> Bernoulli logits
        if kind in ("pse", "pse-star"):
            self.lab = nn.Linear(C, 2 * k)          # one-hot -> (mu, logvar)
        if kind == "pse-star":
            self.cls = mlp(D, 512, 64, C)           # reconstruction -> class logits
        if kind == "jmvae":
            self.joint = mlp(D + C, 512, 64, 2 * k)  # image + one-hot -> (mu, logvar)
            self.lab = nn.Linear(C, 2 * k)
            self.labdec = nn.Linear(k, C)             # z -> class logits

    @staticmethod
    def kl(mu, lv, mu2, lv2):
        """KL(N(mu, var) || N(mu2, var2)) for diagonal Gaussians, summed over dimensions."""
        return 0.5 * (lv2 - lv + (torch.exp(lv) + (mu - mu2) ** 2) / torch.exp(lv2) - 1.0).sum(1)

    def jmvae_loss(self, x, y, y1h, alpha=0.1):
        k = self.k
        hj = self.joint(torch.cat([x, y1h], 1))
        mu, lv = hj[:, :k], hj[:, k:]
        z = mu + torch.exp(0.5 * lv) * torch.randn_like(mu)
        nll = F.binary_cross_entropy_with_logits(self.dec(z), x, reduction="none").sum(1)
        lnll = F.cross_entropy(self.labdec(z), y, reduction="none")
        kl0 = 0.5 * (torch.exp(lv) + mu * mu - 1.0 - lv).sum(1)
        hx, hl = self.enc(x), self.lab(y1h)
        klx = self.kl(mu, lv, hx[:, :k], hx[:, k:])
        kll = self.kl(mu, lv, hl[:, :k], hl[:, k:])
        return (nll + lnll + kl0 + alpha * (klx + kll)).mean()

    def loss(self, x, y, y1h):
        if self.kind == "jmvae":
            return self.jmvae_loss(x, y, y1h)
        k = self.k
        h = self.enc(x)
        mu, lv = h[:, :k], h[:, k:]
        z = mu + torch.exp(0.5 * lv) * torch.randn_like(mu)
        logits = self.dec(z)
        # Bernoulli NLL summed over pixels (targets are grey values).
        nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)
        if self.kind in ("vae", "vae-conv"):
            # KL(N(mu, var) || N(0, I))
            kl = 0.5 * (torch.exp(lv) + mu * mu - 1.0 - lv).sum(1)
        else:
            hl = self.lab(y1h)
            mu2, lv2 = hl[:, :k], hl[:, k:]
            # KL(N(mu, var) || N(mu2, var2)), diagonal
            kl = 0.5 * (lv2 - lv + (torch.exp(lv) + (mu - mu2) ** 2) / torch.exp(lv2) - 1.0).sum(1)
        total = nll + kl
        if self.kind == "pse-star":
            ce = F.cross_entropy(self.cls(torch.sigmoid(logits)), y, reduction="none")
            total = total + ce
        return total.mean()


def main():
    a = ARGS

    if a.threads is not None:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    model = Model(a.model, a.latent)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    # Synthetic data made once up front: uniform images, random labels.
    pool = []
    for _ in range(POOL):
        x = torch.rand(a.batch, D)
        y = torch.randint(0, C, (a.batch,))
        pool.append((x, y, F.one_hot(y, C).float()))

    i = 0

    def step():
        nonlocal i
        x, y, y1h = pool[i % POOL]
        i += 1
        loss = model.loss(x, y, y1h)
        loss.backward()
        opt.step()
        opt.zero_grad()

    for _ in range(a.warmup):  # let allocator/thread pools settle
        step()

    reps = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        for _ in range(a.steps):
            step()
        reps.append((time.perf_counter() - t0) * 1000.0 / a.steps)

    print(json.dumps({
        "model": a.model, "batch": a.batch, "latent": a.latent,
        "threads": a.threads, "msPerStep": round(statistics.median(reps), 4),
        "repeatsMs": [round(r, 4) for r in reps],
        "torch": torch.__version__, "numThreads": torch.get_num_threads(),
        "blasThreads": blas_threads(),
    }))


if __name__ == "__main__":
    main()
