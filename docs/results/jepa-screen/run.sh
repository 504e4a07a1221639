#!/bin/bash
# Issue 15 screen: every variant at rung r1 of the default ladder, 3 seeds, equal wall-clock, diagnostics on.
cd /work/main
args=()
while read -r a; do [ -n "$a" ] && args+=(--arm "$a"); done < /work/exp/screen/arms.txt
exec .venv/bin/jepagolf ladder "${args[@]}" \
  --rung "screen:num_layers=2,model_dim=64,num_heads=2,num_kv_heads=1,train_seq_len=128,train_batch_tokens=2048,micro_batch_tokens=2048,seconds=12,seeds=3" \
  --set diag_every=50 --calib-steps 30 --out /work/exp/screen/out
