#!/usr/bin/env bash
# Issue 19, item 6, stage 2: equal steps on fresh seeds (plan: docs/results/miniature-plan.md). Arms from the
# screen (screen.md): ce, v3, fast, multi-horizon, nextlat. Seeds 1001-1024, never used before; a rung with N seeds
# takes the first N. Two ladders side by side, one thread each: "m1" (the power rung, 24 seeds) and "m0m2" (m0
# and m2, 4 seeds each). Every run trains on the compiled step (step_compile=on: 16% less time per seed at m1,
# docs/results/ladder-shapes/). Resumable: rerun this script and every finished run is kept; the last command
# reports all three rungs together (the m1 ladder's runs.csv added to the m0m2 ladder's fit).
set -euo pipefail
OUT=${OUT:-runs/mini/steps}
SEEDS=$(seq -s, 1001 1024)
SHAPE=num_heads=2,num_kv_heads=1,train_seq_len=128
M0=m0:num_layers=2,model_dim=48,$SHAPE,train_batch_tokens=1024,micro_batch_tokens=1024,steps=4000,seeds=4
M1=m1:num_layers=2,model_dim=64,$SHAPE,train_batch_tokens=2048,micro_batch_tokens=2048,steps=4000,seeds=24
M2=m2:num_layers=3,model_dim=96,$SHAPE,train_batch_tokens=4096,micro_batch_tokens=4096,steps=4000,seeds=4
common=(--arm ce:jepa=false --arm v3: --arm fast:jepa_target=online,jepa_batch_fraction=0.25,jepa_batched=true
        --arm multi-horizon:jepa_recipe=multi-horizon --arm nextlat:jepa_recipe=nextlat
        --match steps --seeds "$SEEDS" --vary all+data --val-tokens 0 --set diag_every=800 --set step_compile=on
        --threads 1)
mkdir -p "$OUT"
python -m jepagolf ladder "${common[@]}" --rung "$M1" --out "$OUT/m1" >> "$OUT/m1.log" 2>&1 &
python -m jepagolf ladder "${common[@]}" --rung "$M0" --rung "$M2" --out "$OUT/m0m2" >> "$OUT/m0m2.log" 2>&1 &
wait
python -m jepagolf ladder "${common[@]}" --rung "$M0" --rung "$M2" --out "$OUT/m0m2" --add-points "$OUT/m1/runs.csv"
