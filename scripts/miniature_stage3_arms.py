"""Stage 3's arms by the rule docs/results/miniature-plan.md fixed before stage 2 ended: an arm is dropped when its
round-trip Δ against ce at m1 (all of stage 2's seeds) is positive with paired-t p < 0.05.

    python scripts/miniature_stage3_arms.py docs/results/miniature/steps-m1/runs.csv

Prints each arm's Δ, p and the decision, then the ARMS line that docs/results/miniature/stage3.sh reads (it runs
this script itself and keeps its output as arms.txt). Exit status 2 when m1 is not complete (not every arm has
every seed).
"""

from __future__ import annotations

import sys
from pathlib import Path

from jepagolf.research.ablate_plan import AblationError
from jepagolf.research.ablate_run import read_runs_csv
from jepagolf.research.stats import paired_t_test

# The arm specs of stage2.sh, in its order: stage 3 keeps them unchanged.
SPECS = {
    "ce": "ce:jepa=false",
    "v3": "v3:",
    "fast": "fast:jepa_target=online,jepa_batch_fraction=0.25,jepa_batched=true",
    "multi-horizon": "multi-horizon:jepa_recipe=multi-horizon",
    "nextlat": "nextlat:jepa_recipe=nextlat",
}
SEEDS = 24
DROP_P = 0.05


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    path = Path(argv[0])
    if not path.is_file():
        print(f"error: {path} does not exist: has rung m1 finished and been collected (collect-stage2.sh)?",
              file=sys.stderr)
        return 2
    try:
        rows = read_runs_csv(path)
    except AblationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    loss = {(r["arm"], r["seed"]): r["val_loss"] for r in rows}
    seeds = sorted({s for a, s in loss if a == "ce"})
    missing = [(a, s) for a in SPECS for s in seeds if (a, s) not in loss]
    if len(seeds) < SEEDS or missing:
        print(f"error: m1 is not complete: {len(seeds)} control seeds of {SEEDS}, {len(missing)} runs missing",
              file=sys.stderr)
        return 2
    keep = ["ce"]
    for arm in list(SPECS)[1:]:
        t = paired_t_test([loss["ce", s] for s in seeds], [loss[arm, s] for s in seeds])
        drop = t.mean > 0 and t.p_two_sided < DROP_P
        print(f"{arm}: Δ {t.mean:+.4f} [{t.ci_low:+.4f}, {t.ci_high:+.4f}], p {t.p_two_sided:.3g}: "
              f"{'dropped' if drop else 'kept'}")
        if not drop:
            keep.append(arm)
    print("ARMS=(" + " ".join(f"--arm {SPECS[a]}" for a in keep) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
