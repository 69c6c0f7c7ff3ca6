#!/usr/bin/env bash
# The PSE paper's protocol on full Fashion-MNIST: 2000 steps, batch 100, Adam 1e-3, latent 10,
# three seeds, for PSE* and PSE; then full evaluation (generation: 1000 samples/label × 10 repeats).
# Usage: scripts/paper-protocol.sh [runs-dir]   (needs Debian's dataset-fashion-mnist or --data)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-runs/paper}"
mkdir -p "$RUNS"
probsem() { node --import tsx src/cli/main.ts "$@"; }
probsem judge --dataset fashion-mnist --quiet
for model in pse-star pse; do
  for seed in 0 1 2; do
    out="$RUNS/$model-10d-s$seed"
    [ -f "$out/model.json" ] || probsem train --model "$model" --dataset fashion-mnist --latent 10 --steps 2000 \
      --batch 100 --lr 0.001 --seed "$seed" --out "$out" --quiet
    probsem eval --run "$out" --samples 1000 --repeats 10 --json > "$out/eval.json"
  done
done
npx tsx scripts/summarize.ts "$RUNS"
