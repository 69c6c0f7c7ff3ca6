"""Writes test/fixtures/distances-torch.json: reference values of the index's distances (src/index/distances.ts)
for a few query/item pairs, computed with PyTorch in float64 independently of probsem's code.

Not a dependency: run by hand when the definitions change, with Debian's python3-torch:
    /usr/bin/python3 scripts/distance-fixture.py

KL(q‖x) and KL(x‖q) come from torch.distributions.kl_divergence; torch has no function for the
others, so they are its tensor algebra on the textbook formulas (d = μx − μq):
  bhattacharyya  ⅛ dᵀΣ⁻¹d + ½ log(|Σ| / √(|Σq||Σx|)), Σ = (Σq + Σx)/2      (slogdet, solve)
  w2             ‖d‖² + tr Σq + tr Σx − 2 tr((Σx^½ Σq Σx^½)^½)               (matrix roots by eigh)
  elk            −MultivariateNormal(μx, Σq + Σx).log_prob(μq)
  csd            ‖d‖² + tr Σq + tr Σx                                         (PCME++, Chun 2024)
Item parameters are rounded to float32 first (the index stores them so); all arithmetic is float64.
"""
import json
import torch
from torch.distributions import MultivariateNormal, Normal, Independent, kl_divergence

torch.manual_seed(25)
D = torch.float64


def sqrtm(a):
    w, v = torch.linalg.eigh(a)
    return v @ torch.diag(w.clamp(min=0).sqrt()) @ v.T


def others(mq, cq, mx, cx):
    d = mx - mq
    s = (cq + cx) / 2
    bh = d @ torch.linalg.solve(s, d) / 8 + 0.5 * (torch.linalg.slogdet(s)[1] - 0.5 * (torch.linalg.slogdet(cq)[1] + torch.linalg.slogdet(cx)[1]))
    rx = sqrtm(cx)
    w2 = d @ d + torch.trace(cq) + torch.trace(cx) - 2 * torch.trace(sqrtm(rx @ cq @ rx))
    elk = -MultivariateNormal(mx, covariance_matrix=cq + cx).log_prob(mq)
    csd = d @ d + torch.trace(cq) + torch.trace(cx)
    return {'bhattacharyya': bh.item(), 'w2': w2.item(), 'elk': elk.item(), 'csd': csd.item()}


def f32(t):
    return t.to(torch.float32).to(D)


cases = []
# Diagonal items against diagonal queries (Independent Normals, as the diag/diag KL is registered in torch).
for _ in range(6):
    k = 5
    mq = torch.randn(k, dtype=D)
    vq = torch.exp(torch.empty(k, dtype=D).uniform_(-3, 1))
    mx = f32(torch.randn(k, dtype=D))
    vx = f32(torch.exp(torch.empty(k, dtype=D).uniform_(-3, 1)))
    q = Independent(Normal(mq, vq.sqrt()), 1)
    x = Independent(Normal(mx, vx.sqrt()), 1)
    ref = {'kl': kl_divergence(q, x).item(), 'kl-reverse': kl_divergence(x, q).item()}
    ref['kl-sym'] = ref['kl'] + ref['kl-reverse']
    ref.update(others(mq, torch.diag(vq), mx, torch.diag(vx)))
    cases.append({'kind': 'diag', 'dim': k, 'queryMean': mq.tolist(), 'queryCov': torch.diag(vq).flatten().tolist(),
                  'itemMean': mx.tolist(), 'itemVariance': vx.tolist(), 'expected': ref})
# Full items against full queries.
for _ in range(6):
    k = 4
    a = torch.randn(k, k, dtype=D)
    cq = a @ a.T / k + 0.1 * torch.eye(k, dtype=D)
    mq = torch.randn(k, dtype=D)
    lx = torch.tril(torch.randn(k, k, dtype=D) * 0.4, -1) + torch.diag(torch.exp(torch.empty(k, dtype=D).uniform_(-1.5, 0.5)))
    lx = f32(lx)
    mx = f32(torch.randn(k, dtype=D))
    cx = lx @ lx.T
    q = MultivariateNormal(mq, covariance_matrix=cq)
    x = MultivariateNormal(mx, scale_tril=lx)
    ref = {'kl': kl_divergence(q, x).item(), 'kl-reverse': kl_divergence(x, q).item()}
    ref['kl-sym'] = ref['kl'] + ref['kl-reverse']
    ref.update(others(mq, cq, mx, cx))
    cases.append({'kind': 'full', 'dim': k, 'queryMean': mq.tolist(), 'queryCov': cq.flatten().tolist(),
                  'itemMean': mx.tolist(), 'itemScaleTril': lx.flatten().tolist(), 'expected': ref})

out = {'generator': 'scripts/distance-fixture.py', 'torch': torch.__version__, 'cases': cases}
with open('test/fixtures/distances-torch.json', 'w') as f:
    # One case per line: short diffs when a case changes.
    head = json.dumps({k: v for k, v in out.items() if k != 'cases'})[:-1]
    f.write(head + ', "cases": [\n' + ',\n'.join(json.dumps(c) for c in cases) + '\n]}\n')
print(f'wrote {len(cases)} cases')
