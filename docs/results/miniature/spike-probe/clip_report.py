"""The clip screen's table and decision (plan: docs/results/miniature-plan.md, "Clip screen"):

    python docs/results/miniature/spike-probe/clip_report.py STEPS CLIP [--csv clip-runs.csv] > clip.md

STEPS: stage 2's output (its m1 runs: the unclipped control of each seed); CLIP: clip-screen.sh's output. Prints
the paired Δ of each clipped JEPA arm against the clipped control (round-trip val loss, nats/token), the clip's
effect on the control itself, the runs that spiked, and each arm's decision by the rule fixed before the runs.
``--csv`` also writes the clipped runs' scores, one row per run.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from jepagolf.jsonfile import read_json_object
from jepagolf.research.ablate_run import write_runs_csv
from jepagolf.research.report import by_seed, load_run
from jepagolf.research.stats import paired_t_test
from jepagolf.research.stepwise import paired_spikes

SEEDS = (1001, 1002, 1003, 1004)
ARMS = ("fast", "v3")
ADVANCE_BELOW = 0.01  # the rule: no spike, and a mean Δ against the clipped control below this (nats/token)


def val_loss(run: Path) -> float:
    path = run / "summary.json"
    if not path.is_file():
        sys.exit(f"error: {path} is missing: has the run finished? (rerun clip-screen.sh: it resumes)")
    v = read_json_object(path).get("val_loss")
    if not isinstance(v, float) or not math.isfinite(v):
        sys.exit(f"error: {path}: val_loss {v!r} is not a finite number")
    return v


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("steps", type=Path)
    ap.add_argument("clip", type=Path)
    ap.add_argument("--csv", type=Path, help="also write the clipped runs' scores here")
    a = ap.parse_args(argv)
    stage2 = a.steps / "m1" / "rungs" / "m1" / "runs"
    ctrl = [val_loss(a.clip / f"ce-seed{s}") for s in SEEDS]
    ctrl_steps = by_seed([load_run(a.clip / f"ce-seed{s}") for s in SEEDS])
    t = paired_t_test([val_loss(stage2 / f"ce-seed{s}") for s in SEEDS], ctrl)
    print(f"The clip's effect on the control (ce with grad_clip_norm=1.0 − ce, {t.n} seeds): {t.mean:+.4f} "
          f"[{t.ci_low:+.4f}, {t.ci_high:+.4f}], p {t.p_two_sided:.3g}; per seed "
          + ", ".join(f"{d:+.4f}" for d in t.diffs) + "\n")
    print("| arm (both clipped) | Δ vs ce | 95% CI | paired t p | per seed | runs that spiked | decision |")
    print("|---|---|---|---|---|---|---|")
    for arm in ARMS:
        t = paired_t_test(ctrl, [val_loss(a.clip / f"{arm}-seed{s}") for s in SEEDS])
        spikes = paired_spikes(ctrl_steps, by_seed([load_run(a.clip / f"{arm}-seed{s}") for s in SEEDS]), arm)
        spiked = ", ".join(f"seed {sp.seed} at step {sp.step} ({sp.jump:+.2f})" for sp in spikes) or "none"
        advance = not spikes and t.mean < ADVANCE_BELOW
        print(f"| {arm} | {t.mean:+.4f} | [{t.ci_low:+.4f}, {t.ci_high:+.4f}] | {t.p_two_sided:.3g} | "
              + ", ".join(f"{d:+.4f}" for d in t.diffs)
              + f" | {spiked} | {'advances to fresh seeds' if advance else 'stops here'} |")
    if a.csv:
        rows = []
        for s in SEEDS:
            for arm in ("ce", *ARMS):
                summary = read_json_object(a.clip / f"{arm}-seed{s}" / "summary.json")
                rows.append({"arm": arm, "seed": s, "val_loss": val_loss(a.clip / f"{arm}-seed{s}"),
                             **{k: summary.get(k) for k in ("prequant_val_loss", "steps", "config_hash")}})
        write_runs_csv(rows, a.csv, ("arm", "seed", "val_loss", "prequant_val_loss", "steps", "config_hash"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
