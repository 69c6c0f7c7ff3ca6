#!/usr/bin/env bash
# Table 3 (one-hot vs WordNet word-vector labels, PSE and PSE*, paper protocol) and zero-shot runs.
# Usage: scripts/words-protocol.sh OUT_DIR [SEEDS...]   (default seeds 0 1 2 3 4)
# Finished runs (with eval.json) are skipped, so the script can be re-run after an interruption.
set -euo pipefail
out=${1:-runs/words}; shift || true
seeds=${*:-0 1 2 3 4}
probsem() { node --import tsx src/cli/main.ts "$@"; }
run() { # name, eval args, train args...
  local name=$1 evalargs=$2; shift 2
  local dir="$out/$name"
  [[ -f "$dir/eval.json" ]] && return 0
  local again=--force
  [[ -f "$dir/checkpoint.bin" && ! -f "$dir/model.json" ]] && again=--resume
  probsem train --dataset fashion-mnist --latent 10 --steps 2000 --batch 100 --lr 0.001 --out "$dir" $again --quiet "$@"
  probsem eval --run "$dir" $evalargs --json > "$dir/eval.json.tmp" && mv "$dir/eval.json.tmp" "$dir/eval.json"
  echo "done $name"
}
for s in $seeds; do
  for m in pse-star pse; do
    run "$m-words-s$s" --no-generation --model "$m" --labels words --seed "$s"
  done
done
for s in $seeds; do
  for m in pse-star pse; do
    run "$m-onehot-s$s" --no-generation --model "$m" --labels onehot --seed "$s"
  done
done
for pair in "Sneaker,Trouser" "Ankle boot,Pullover" "Bag,Dress"; do
  tag=$(echo "$pair" | tr 'A-Z ,' 'a-z_-')
  run "zeroshot-pse-star-words-$tag-s0" --no-generation --model pse-star --labels words --holdout "$pair" --seed 0
done
