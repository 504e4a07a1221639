"""What the logged steps show around each of rung m2's four spikes (steps-m2/plots/delta_by_step.md), from stage 2's
own metrics (logged every 100 steps; nothing is trained):

    python docs/results/miniature/spike-probe/around.py STEPS > docs/results/miniature/spike-probe/around-m2.md
    python docs/results/miniature/spike-probe/around.py STEPS --probe runs/mini/spike-m2 > .../probe-m2.md

STEPS: stage 2's output. For each run, the logged steps from 200 before its spike to 200 after: the CE minus the
control's on the same batch, the JEPA loss, the predictor's output std and the targets' std. With ``--probe OUT``
(probe-m2.sh's output: fast seed 1002 and its control, logged at every step): first the check that the rerun equals
the ladder's run at every logged step, then every step from 2,940 to 3,000 and the largest JEPA loss after 2,800.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jepagolf.research.report import load_run

SPIKES = (("fast", 1003, 1800), ("fast", 1002, 3200), ("v3", 1001, 2500), ("v3", 1004, 2300))  # steps-m2's list


def logged(run: Path, finished: bool = True) -> dict[int, dict]:
    if finished and not (run / "summary.json").is_file():
        sys.exit(f"error: {run} has not finished (no summary.json)")
    return {int(r["step"]): r for r in load_run(run).rows if r.get("kind") == "train"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("steps", type=Path)
    ap.add_argument("--probe", type=Path)
    a = ap.parse_args(argv)
    runs = a.steps / "m0m2" / "rungs" / "m2" / "runs"
    if a.probe:
        return probe_table(runs, a.probe)
    print("# Rung m2's spikes at the logged steps (around.py)\n")
    print("| run | step | CE − control | JEPA loss | pred_std | target_std |")
    print("|---|---|---|---|---|---|")
    for arm, seed, at in SPIKES:
        r, c = logged(runs / f"{arm}-seed{seed}"), logged(runs / f"ce-seed{seed}")
        for t in sorted(t for t in r if at - 200 <= t <= at + 200 and t in c):
            x = r[t]
            print(f"| {arm} seed {seed} | {t} | {x['ce_loss'] - c[t]['ce_loss']:+.3f} | {x['jepa_loss']:.3g} | "
                  f"{x['pred_std']:.3g} | {x['target_std']:.3g} |")
    return 0


def probe_table(runs: Path, out: Path) -> int:
    p, c = logged(out / "p0", finished=False), logged(out / "c0", finished=False)  # probes stop at 3,200
    ladder = logged(runs / "fast-seed1002")
    same = [t for t in ladder if t in p]
    equal = all(p[t]["ce_loss"] == ladder[t]["ce_loss"] for t in same)
    peak = max((t for t in p if t > 2800), key=lambda t: p[t]["jepa_loss"])
    print("# Rung m2's fast seed 1002, logged at every step (probe-m2.sh, around.py --probe)\n")
    print(f"The rerun's CE equals the ladder's at all {len(same)} logged steps up to 3,200: {equal}. Largest JEPA "
          f"loss after step 2,800: {p[peak]['jepa_loss']:.3g} at step {peak} (pred_std {p[peak]['pred_std']:.3g}).\n")
    print("| step | CE − control | JEPA loss | pred_std | target_std |")
    print("|---|---|---|---|---|")
    for t in range(2940, 3001):
        x = p[t]
        print(f"| {t} | {x['ce_loss'] - c[t]['ce_loss']:+.3f} | {x['jepa_loss']:.3g} | {x['pred_std']:.3g} | "
              f"{x['target_std']:.3g} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
