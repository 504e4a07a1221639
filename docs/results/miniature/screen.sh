#!/usr/bin/env bash
# Issue 19, item 6, stage 1: the screen (plan: docs/results/miniature-plan.md). Rung m1 at equal steps, seeds 101
# and 102 (never reused), all seven arms, as two one-rung ladders side by side with one thread each (steps-matched
# runs do not depend on timing). The ladder's seeds vary data by their place in --seeds, so the two ladders split
# the arms, not the seeds, and each carries the control: its runs in both are the same run twice (a check).
# Resumable: rerun and every finished run is kept.
set -euo pipefail
OUT=${OUT:-runs/mini/screen}
M1=m1:num_layers=2,model_dim=64,num_heads=2,num_kv_heads=1,train_seq_len=128,train_batch_tokens=2048,micro_batch_tokens=2048,steps=4000,seeds=2
common=(--arm ce:jepa=false --match steps --rung "$M1" --seeds 101,102 --vary all+data --val-tokens 0
        --set diag_every=800 --threads 1)
mkdir -p "$OUT"
half() {  # NAME ARM...
  local name=$1; shift
  python -m jepagolf ladder "${common[@]}" "$@" --out "$OUT/$name" >> "$OUT/$name.log" 2>&1
}
half a --arm v3: --arm v3-fix:jepa_recipe=v3-fix &
half b --arm fast:jepa_target=online,jepa_batch_fraction=0.25,jepa_batched=true \
  --arm multi-horizon:jepa_recipe=multi-horizon --arm nextlat:jepa_recipe=nextlat \
  --arm nextlat-kl:jepa_recipe=nextlat-kl &
wait
