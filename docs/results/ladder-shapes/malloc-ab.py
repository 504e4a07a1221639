"""Process pairs: CPU training steps with glibc's freed memory kept in the process (retain_freed_memory, the
package's default on the CPU since 35a0380) and without it (glibc's own behaviour).

Usage (from the repository root, on an otherwise idle machine):

    python docs/results/ladder-shapes/malloc-ab.py [--pairs 5] [--shape cpu-demo] [--steps 20] [--out FILE]

The setting is process-wide and glibc's default (a threshold that adapts to the process's history) cannot be put
back once changed, so the two arms cannot alternate in one process as in ab_harness.py: each pair runs two fresh
processes, one per arm, in alternating order. Each reports its median step time and its minor page faults per step
over ``--steps`` steps after the warm-up. The page faults are the mechanism; a pair's time ratio carries the
machine's drift between the two processes.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jepagolf.train.logger import atomic_write_text


def child(shape: str, steps: int, retain: bool) -> None:
    from ab_harness import timed_steps, trainers

    import jepagolf.train.loop as loop

    if not retain:
        loop.retain_freed_memory = lambda: False  # the trainer leaves glibc as it is
    with tempfile.TemporaryDirectory(prefix="malloc-ab-") as tmp:
        tr = trainers({"arm": {}}, shape, 2, "on", Path(tmp))["arm"]
        batch = tr.stream.take(tr.cfg.train.micro_batch_tokens + 1)
        timed_steps(tr, batch, 3)
        times, faults = [], []
        for _ in range(steps):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            times.append(timed_steps(tr, batch, 1))
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(json.dumps({"step_ms": 1000 * statistics.median(times), "faults_per_step": statistics.median(faults)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--shape", default="cpu-demo", help="cpu-demo, r1 or r2")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", type=Path, default=None, help="JSON file for the results")
    ap.add_argument("--child", choices=("retain", "default"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.shape, args.steps, args.child == "retain")
        return
    rows = []
    for p in range(args.pairs):
        row = {}
        for arm in (("default", "retain") if p % 2 == 0 else ("retain", "default")):
            out = subprocess.run([sys.executable, __file__, "--child", arm, "--shape", args.shape,
                                  "--steps", str(args.steps)], capture_output=True, text=True, check=True)
            row[arm] = json.loads(out.stdout.strip().splitlines()[-1])
        row["retain_over_default"] = row["retain"]["step_ms"] / row["default"]["step_ms"]
        rows.append(row)
        print(f"pair {p + 1}: default {row['default']['step_ms']:.1f} ms ({row['default']['faults_per_step']:.0f} "
              f"faults/step)  retain {row['retain']['step_ms']:.1f} ms ({row['retain']['faults_per_step']:.0f})  "
              f"ratio {row['retain_over_default']:.3f}", flush=True)
    ratios = [r["retain_over_default"] for r in rows]
    print(f"median ratio {statistics.median(ratios):.3f} ({min(ratios):.3f}..{max(ratios):.3f})")
    if args.out:
        atomic_write_text(args.out, json.dumps({"shape": args.shape, "steps": args.steps, "pairs": rows,
                                        "median_ratio": statistics.median(ratios),
                                        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=1) + "\n")


if __name__ == "__main__":
    main()
