#!/usr/bin/env bash
# One-call GPU check: `jepagolf bench` on the v3 shape (issue 8), then the trainer's throughput for the
# baseline and v3 shapes, JEPA on and off (issue 4), on one GPU.
#
#   scripts/gpu_check.sh                 # benches, then 4 configs x 60 s of timed training each
#   BENCH= scripts/gpu_check.sh          # throughput only
#   BENCH="eager" CONFIGS= scripts/gpu_check.sh   # only the eager bench of all variants
#   SECONDS_PER_RUN=30 scripts/gpu_check.sh
#   CONFIGS="v3:on v3:off" scripts/gpu_check.sh
#   EXTRA="micro_batch_tokens=32768" scripts/gpu_check.sh   # extra config overrides (e.g. after an OOM)
#   BENCH_TIMEOUT=240 RUN_TIMEOUT=120 scripts/gpu_check.sh   # seconds allowed per bench / per config
#   DEVICE=cpu BENCH_PRESET=smoke CONFIGS="smoke:on" SECONDS_PER_RUN=3 scripts/gpu_check.sh   # dry run on CPU
#
# Needs only a python with torch, numpy, sentencepiece and tqdm (PYTHON, default: .venv/bin/python if
# present, else python3); the package is used from this checkout (PYTHONPATH), not installed. It builds
# the offline demo corpus with jepagolf's own data writer into a temporary folder (real tokens and
# tokenizer; the train split wraps around, which does not change throughput), then runs
# scripts/gpu_check.py once per config, each in its own process, and prints one JSON line per config
# plus a table. Results are appended as they come to $OUT/gpu_check.jsonl (or a new
# ./gpu_check-<time>.jsonl), so a run cut short keeps what it measured. Expect ~1-2 min per config: compile warm-up, then the run.
# BENCH lists the bench runs, each writing bench-<preset>-<kind>.json beside the results: "eager" times every
# variant with compile off (cheap); "compiled" times BENCH_COMPILED_VARIANTS as training runs them, compiled
# (each variant's graphs are compiled once more, so the two batched variants, which need graphs of their own,
# are left out by default).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/python_env.sh
SECS=${SECONDS_PER_RUN:-60}
CONFIGS=${CONFIGS-"baseline:off baseline:on v3:on v3:off"}
BENCH=${BENCH-"eager compiled"}
BENCH_PRESET=${BENCH_PRESET:-v3}
BENCH_COMPILED_VARIANTS=${BENCH_COMPILED_VARIANTS:-"v3,online,frac25,every4,online+frac25"}
if [[ -n "${OUT:-}" ]]; then RESULTS=$OUT/gpu_check.jsonl; else RESULTS=./gpu_check-$(date +%Y%m%d-%H%M%S).jsonl; fi
RESDIR=$(dirname "$RESULTS")
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

"$PYTHON" - <<'PY'
import torch
print(f"torch {torch.__version__} cuda {torch.version.cuda} available {torch.cuda.is_available()}"
      + (f" gpu {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))
PY
"$PYTHON" -m jepagolf data demo --out "$WORK/data" >/dev/null
echo "data: $WORK/data (demo corpus), results: $RESULTS"

dev_sets=()
[[ -n "${DEVICE:-}" ]] && dev_sets+=(--set "device=$DEVICE")
for kind in $BENCH; do
  case $kind in
    eager) bench_args=(--set compile=off --export-repeats 1) ;;
    compiled) bench_args=(--variants "$BENCH_COMPILED_VARIANTS" --export-repeats 0) ;;
    *) echo "!! unknown bench kind $kind (eager | compiled)"; continue ;;
  esac
  echo "== bench $BENCH_PRESET $kind"
  timeout -k 10 "${BENCH_TIMEOUT:-0}" "$PYTHON" -m jepagolf bench --preset "$BENCH_PRESET" --data "$WORK/data" "${dev_sets[@]}" "${bench_args[@]}" \
    --out "$RESDIR/bench-$BENCH_PRESET-$kind.json" || echo "!! bench $kind failed (exit $?)"
done

for c in $CONFIGS; do
  preset=${c%%:*}; jepa=${c##*:}
  sets=(--set "jepa=$([[ $jepa == on ]] && echo true || echo false)")
  sets+=("${dev_sets[@]}")
  [[ -n "${COMPILE:-}" ]] && sets+=(--set "compile=$COMPILE")
  [[ -n "${WARMUP_STEPS:-}" ]] && sets+=(--set "compile_warmup_steps=$WARMUP_STEPS")
  for kv in ${EXTRA:-}; do sets+=(--set "$kv"); done
  echo "== $preset jepa:$jepa (${SECS}s)"
  timeout -k 10 "${RUN_TIMEOUT:-0}" "$PYTHON" scripts/gpu_check.py --preset "$preset" --data "$WORK/data" --seconds "$SECS" \
    --jsonl "$RESULTS" "${sets[@]}" || echo "!! $preset jepa:$jepa failed (exit $?)"
done

[[ -s "$RESULTS" ]] || exit 0
"$PYTHON" - "$RESULTS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"{'preset':9} {'jepa':5} {'tokens/s':>10} {'step_ms':>9} {'TFLOP/s':>8} {'MFU':>6} {'peak_MiB':>9} syncs")
for r in rows:
    mfu = f"{r['mfu']:.3f}" if r["mfu"] is not None else "n/a"
    mem = f"{r['peak_memory_mib']:.0f}" if r["peak_memory_mib"] is not None else "n/a"
    print(f"{r['preset']:9} {str(r['jepa']):5} {r['tokens_per_s']:>10} {r['step_ms']:>9} {r['tflops']:>8} "
          f"{mfu:>6} {mem:>9} {r['host_syncs_in_step']}")
print("MFU assumes a dense bf16 peak of", {r["peak_tflops_assumed"] for r in rows}, "TFLOP/s")
PY
