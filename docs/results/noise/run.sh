#!/usr/bin/env bash
# Issue 19, item 5: the noise study at rung n1 (plan: docs/results/noise-plan.md). Four one-rung ladders at
# equal steps, each a design in which the seeds vary one thing; two designs at a time, one thread each
# (steps-matched runs do not depend on timing, so running side by side changes no result). Resumable:
# rerun this script and every finished run is kept. Then:
#   python scripts/noise_study.py "$OUT" --report docs/results/noise
set -euo pipefail
OUT=${OUT:-runs/noise}
RUNG=n1:num_layers=2,model_dim=64,num_heads=2,num_kv_heads=1,train_seq_len=128,train_batch_tokens=2048,micro_batch_tokens=2048,steps=4000,seeds=4
common=(--arm ce:jepa=false --arm v3: --match steps --rung "$RUNG" --seeds 1337,42,2025,1 --threads 1)
mkdir -p "$OUT"
design() {  # NAME VARY [--set ...]
  local name=$1 vary=$2; shift 2
  python -m jepagolf ladder "${common[@]}" --vary "$vary" --out "$OUT/$name" "$@" >> "$OUT/$name.log" 2>&1
}
# The first pair answers the question the ladder most needs (init vs masks); the data design goes last
# (dropped first when the budget is short: the ladder can vary data in every seed instead).
design init init & design masks masks & wait
design all-int5 all --set export_scheme=int6-lzma --set gptq=true & design data data & wait
