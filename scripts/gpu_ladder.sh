#!/usr/bin/env bash
# Two GPU rungs of the compute ladder (issue 13, part 5): the CPU ladder's largest rung (r4's shape and its
# control's training FLOPs) and one ~10x larger, on one GPU, so that their points join the CPU fit.
#
#   scripts/gpu_ladder.sh prepare [SRC]   # here: copy the research corpus (or SRC) into gpu_data/ (<= MAX_MIB)
#   scripts/gpu_ladder.sh                 # on the GPU machine: both rungs; results into $OUT (or ./gpu-ladder-<time>)
#   jepagolf ladder --add-points OUT/runs.csv   # back here: the GPU points join the fit
#
# With the device tool: run(command="scripts/gpu_ladder.sh", carry=["gpu_data"], timeout_s=540).
# gpu_data/ is git-ignored; `prepare` keeps tokenizer.model, every val shard and as many train tokens as fit in
# MAX_MIB (default 60 MiB, ~30M tokens; the carry limit is 64 MiB), so the GPU rungs score on the same
# validation split as the CPU ladder.
#
# Budget (one H200, bf16 autocast, eager; NOT MEASURED yet, no GPU was lent when this was written): each rung is
# a FLOP budget (`flops=`), so g4 trains the control exactly as many FLOPs as r4 did on the CPU, and every arm gets
# the seconds that takes the control on this GPU (wall-clock matching, step times calibrated there). Expect a few
# to ~20 s of training per run plus ~10 s of evaluation, GPTQ export and LZMA: 3 arms x 3 seeds x 2 rungs = 18 runs,
# ~5-7 min; the whole ladder runs under `timeout TIME_LIMIT` (default 480 s) so that the call stays under 9 minutes
# of device time, and a ladder cut short keeps its finished rungs (runs.csv is written after each rung).
#
# Settings: R4_FLOPS (the CPU r4's control FLOPs: take them from the CPU ladder's plan.md; default 1.03e13, docs/results/ladder/plan.md), SEEDS_PER_RUNG (3),
# RUNGS (rung specs, replacing g4 and g5), ARMS (arm specs; default: the ladder's three), COMPILE (off),
# TIME_LIMIT, DATA (gpu_data), DEVICE (cuda), VAL_TOKENS (262144, as the CPU ladder), EXTRA (more KEY=VALUE
# overrides), PYTHON.
# Dry run on CPU:  DEVICE=cpu SMALL=1 R4_FLOPS=5e9 SEEDS_PER_RUNG=2 VAL_TOKENS=16384 scripts/gpu_ladder.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/python_env.sh
DATA=${DATA:-gpu_data}

if [[ "${1:-}" == prepare ]]; then
  "$PYTHON" - "${2:-}" "$DATA" "${MAX_MIB:-60}" <<'PY'
import shutil, sys
from pathlib import Path
import numpy as np
from jepagolf.data.shards import HEADER_BYTES, list_shards, load_shard, read_header, write_shard
from jepagolf.research.ladder import default_data_dir
src = Path(sys.argv[1]) if sys.argv[1] else default_data_dir()
dst, budget = Path(sys.argv[2]), int(float(sys.argv[3]) * 2**20)
if not src.is_dir():
    sys.exit(f"error: no corpus at {src}: build it with `jepagolf data research` or pass a folder")
if dst.exists() and any(dst.iterdir()):
    sys.exit(f"error: {dst} is not empty; remove it first (it is a copy made by this script)")
dst.mkdir(parents=True, exist_ok=True)
shutil.copy(src / "tokenizer.model", dst / "tokenizer.model")
used = (dst / "tokenizer.model").stat().st_size
for p in list_shards(src, "val"):
    shutil.copy(p, dst / p.name)
    used += p.stat().st_size
kept = 0
for p in list_shards(src, "train"):
    room = (budget - used - HEADER_BYTES) // 2
    if room <= 0:
        break
    n = read_header(p)
    if n <= room:
        shutil.copy(p, dst / p.name)
    else:
        write_shard(dst / p.name, np.asarray(load_shard(p)[:room]))
        n = room
    kept += n
    used += HEADER_BYTES + 2 * n
print(f"gpu_data: {dst} holds {kept:,} train tokens, every val shard, {used / 2**20:.1f} MiB (limit {budget / 2**20:.0f})")
PY
  exit 0
fi

if [[ -n "${OUT:-}" ]]; then RES=$OUT; else RES=./gpu-ladder-$(date +%Y%m%d-%H%M%S); fi
mkdir -p "$RES"
RES=$(cd "$RES" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
R4_FLOPS=${R4_FLOPS:-1.03e13}
G5_FLOPS=$("$PYTHON" -c "print(f'{10 * float(\"$R4_FLOPS\"):.4g}')")
S=${SEEDS_PER_RUNG:-3}
if [[ -n "${SMALL:-}" ]]; then  # CPU dry run: tiny shapes, same code path
  DEF_RUNGS="g4:num_layers=2,model_dim=32,train_seq_len=64,train_batch_tokens=1024,micro_batch_tokens=1024,flops=$R4_FLOPS,seeds=$S
g5:num_layers=2,model_dim=64,train_seq_len=64,train_batch_tokens=1024,micro_batch_tokens=1024,flops=$G5_FLOPS,seeds=$S"
else
  DEF_RUNGS="g4:num_layers=4,model_dim=192,num_heads=4,num_kv_heads=2,train_seq_len=256,train_batch_tokens=8192,micro_batch_tokens=8192,flops=$R4_FLOPS,seeds=$S
g5:num_layers=6,model_dim=384,num_heads=6,num_kv_heads=3,train_seq_len=256,train_batch_tokens=16384,micro_batch_tokens=16384,flops=$G5_FLOPS,seeds=$S"
fi
args=(--data "$DATA" --out "$WORK/ladder" --set "device=${DEVICE:-cuda}" --set "compile=${COMPILE:-off}"
      --val-tokens "${VAL_TOKENS:-262144}")
for r in ${RUNGS:-$DEF_RUNGS}; do args+=(--rung "$r"); done
for a in ${ARMS:-}; do args+=(--arm "$a"); done
for kv in ${EXTRA:-}; do args+=(--set "$kv"); done

"$PYTHON" - <<'PY'
import torch
print(f"torch {torch.__version__} cuda {torch.version.cuda} available {torch.cuda.is_available()}"
      + (f" gpu {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))
PY
echo "== gpu ladder: ${args[*]}"
rc=0
timeout -k 10 "${TIME_LIMIT:-480}" "$PYTHON" -m jepagolf ladder "${args[@]}" || rc=$?
[[ $rc -eq 0 ]] || echo "!! ladder exited $rc (124: TIME_LIMIT reached; finished rungs are kept)"
# Results only (not the artifacts): the ladder's report and each run's summary, config and log.
(cd "$WORK/ladder" 2>/dev/null && find . \( -name '*.csv' -o -name '*.md' -o -name '*.json' -o -name '*.png' \
   -o -name train.log \) -type f -print0 | xargs -0 -r cp --parents -t "$RES") || true
echo "results: $RES (add here with: jepagolf ladder --add-points $RES/runs.csv)"
exit $rc
