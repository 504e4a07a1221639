#!/bin/bash
# The first real ladder (issue 13 part 4) and the confirmation of the screen's two best variants (issue 15 part 3).
cd "$(dirname "$0")/../../.."
exec .venv/bin/jepagolf ladder \
  --arm "ce:jepa=false" --arm "v3:" \
  --arm "fast:jepa_target=online,jepa_batch_fraction=0.25,jepa_batched=true" \
  --arm "multi-horizon:jepa_recipe=multi-horizon" \
  --arm "v3-ln-l1:jepa_target_norm=layernorm,jepa_var_mode=target,jepa_lambda=1.0" \
  --rung "r0:num_layers=2,model_dim=64,num_heads=2,num_kv_heads=1,train_seq_len=128,train_batch_tokens=2048,micro_batch_tokens=2048,seconds=6,seeds=4" \
  --rung "r1:num_layers=2,model_dim=64,num_heads=2,num_kv_heads=1,train_seq_len=128,train_batch_tokens=2048,micro_batch_tokens=2048,seconds=12,seeds=5" \
  --rung "r2:num_layers=3,model_dim=96,num_heads=2,num_kv_heads=1,train_seq_len=128,train_batch_tokens=4096,micro_batch_tokens=4096,seconds=40,seeds=3" \
  --rung "r3:num_layers=4,model_dim=128,num_heads=4,num_kv_heads=2,train_seq_len=256,train_batch_tokens=4096,micro_batch_tokens=4096,seconds=100,seeds=3" \
  --rung "r4:num_layers=4,model_dim=192,num_heads=4,num_kv_heads=2,train_seq_len=256,train_batch_tokens=8192,micro_batch_tokens=8192,seconds=150,seeds=3" \
  --set diag_every=200 --out OUT "$@"
