"""The clip confirmation's report (plan: docs/results/miniature-plan.md, "Clip confirmation", fixed before its runs):

    python docs/results/miniature/spike-probe/clip_confirm.py STEPS CONFIRM > confirm.md

STEPS: stage 2's output (its m2 runs: `v3` and `fast` without the clip, seeds 1001-1004), or, where those run
folders are gone, stage 2's committed record of m2 (docs/results/miniature/steps-m2: the round trip's val_loss from
its runs.csv, the spikes from the "Runs that spiked" table of plots/delta_by_step.md, which the same rule wrote
from the same logs); CONFIRM: clip-confirm.sh's
output (m2 with grad_clip_norm=1.0 on every arm, seeds 3001-3008; the seeds whose three runs have all finished are
used, in order). A JEPA run *failed* when it spiked (`jepagolf report`'s rule: its CE on one logged batch more than
0.5 nats above its control's) or ended more than 0.05 nats/token behind its control (round trip). Prints:
1. the failures with and without the clip, and Fisher's exact test, one-sided (the clip lowers the rate);
2. each clipped JEPA arm's Δ against the clipped control: paired CI, p, Wilcoxon p and MDE.
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import sys
from pathlib import Path

from scipy.stats import fisher_exact

from jepagolf.jsonfile import read_json_object
from jepagolf.research.report import by_seed, load_run
from jepagolf.research.stats import paired_mde, paired_t_test
from jepagolf.research.stepwise import paired_spikes

ARMS = ("v3", "fast")
STAGE2_SEEDS = (1001, 1002, 1003, 1004)
CONFIRM_SEEDS = tuple(range(3001, 3009))
BEHIND = 0.05  # nats/token: a run that ends further behind its control failed (the ladder's "runs worse by")
CLAIM_P = 0.01


def val_loss(run: Path) -> float:
    v = read_json_object(run / "summary.json").get("val_loss")
    if not isinstance(v, float) or not math.isfinite(v):
        sys.exit(f"error: {run / 'summary.json'}: val_loss {v!r} is not a finite number")
    return v


def finished(runs: Path, seed: int) -> bool:
    return all((runs / f"{arm}-seed{seed}" / "summary.json").is_file() for arm in ("ce", *ARMS))


def judged(loss: dict[tuple[str, int], float], spiked: dict[tuple[str, int], tuple[int, float]],
           seeds: tuple[int, ...]) -> list[str]:
    """Each failed JEPA run of these seeds, with why: ``loss`` the round trip's val_loss by (arm, seed), ``spiked``
    the (step, jump) of each (arm, seed) that spiked."""
    out = []
    for arm in ARMS:
        for s in seeds:
            behind = loss[arm, s] - loss["ce", s]
            why = [f"spiked at step {spiked[arm, s][0]} ({spiked[arm, s][1]:+.2f})"] if (arm, s) in spiked else []
            why += [f"ended {behind:+.3f} behind"] if behind > BEHIND else []
            if why:
                out.append(f"{arm} seed {s}: " + ", ".join(why))
    return out


def failures(runs: Path, seeds: tuple[int, ...]) -> list[str]:
    """judged() from the run folders: val_loss from each summary.json, spikes by paired_spikes on the logs."""
    ctrl_steps = by_seed([load_run(runs / f"ce-seed{s}") for s in seeds])
    spiked = {(arm, sp.seed): (sp.step, sp.jump) for arm in ARMS for sp in
              paired_spikes(ctrl_steps, by_seed([load_run(runs / f"{arm}-seed{s}") for s in seeds]), arm)}
    loss = {(arm, s): val_loss(runs / f"{arm}-seed{s}") for arm in ("ce", *ARMS) for s in seeds}
    return judged(loss, spiked, seeds)


def record_failures(record: Path, seeds: tuple[int, ...]) -> list[str]:
    """judged() from a collected rung (runs.csv + plots/delta_by_step.md) instead of its run folders."""
    with open(record / "runs.csv", newline="") as f:
        loss = {(r["arm"], int(r["seed"])): float(r["val_loss"]) for r in csv.DictReader(f)}
    if not all((arm, s) in loss for arm in ("ce", *ARMS) for s in seeds):
        sys.exit(f"error: {record / 'runs.csv'} lacks some of the runs of ce, v3 and fast for seeds {seeds}")
    text = (record / "plots" / "delta_by_step.md").read_text()
    table = text.split("## Runs that spiked", 1)
    if len(table) != 2:
        sys.exit(f"error: {record / 'plots' / 'delta_by_step.md'} has no 'Runs that spiked' section")
    section = table[1].split("\n## ", 1)[0]
    spiked = {(m[1], int(m[2])): (int(m[3]), float(m[4]))
              for m in re.finditer(r"^\| ([\w-]+) \| (\d+) \| (\d+) \| ([+-][\d.]+) \|", section, re.M)}
    return judged(loss, spiked, seeds)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("steps", type=Path)
    ap.add_argument("confirm", type=Path)
    a = ap.parse_args(argv)
    stage2 = a.steps / "m0m2" / "rungs" / "m2" / "runs"
    clip = a.confirm / "rungs" / "m2" / "runs"
    from_record = (a.steps / "runs.csv").is_file() and not stage2.is_dir()
    if not from_record and not all(finished(stage2, s) for s in STAGE2_SEEDS):
        sys.exit(f"error: {stage2} lacks some of stage 2's m2 runs (seeds 1001-1004)")
    seeds = tuple(s for s in CONFIRM_SEEDS if finished(clip, s))
    if len(seeds) < 2:
        sys.exit(f"error: {clip} holds {len(seeds)} finished seed(s) of ce, v3 and fast; the report needs 2")
    n2, nc = len(ARMS) * len(STAGE2_SEEDS), len(ARMS) * len(seeds)
    f2 = record_failures(a.steps, STAGE2_SEEDS) if from_record else failures(stage2, STAGE2_SEEDS)
    fc = failures(clip, seeds)
    p = fisher_exact([[len(fc), nc - len(fc)], [len(f2), n2 - len(f2)]], alternative="less").pvalue
    print(f"# Clip confirmation at m2: seeds {seeds[0]}-{seeds[-1]} ({len(seeds)} of {len(CONFIRM_SEEDS)})\n")
    print("A JEPA run failed when its CE on one logged batch rose more than 0.5 nats above its control's, or it "
          f"ended more than {BEHIND} nats/token behind it (round trip). Generated by clip_confirm.py.\n")
    print("| JEPA runs (v3, fast) | runs | failed | which |")
    print("|---|---|---|---|")
    print(f"| stage 2, no clip, seeds 1001-1004 | {n2} | {len(f2)} | {'; '.join(f2) or 'none'} |")
    print(f"| grad_clip_norm=1.0, seeds {seeds[0]}-{seeds[-1]} | {nc} | {len(fc)} | {'; '.join(fc) or 'none'} |")
    verdict = "a claim" if p < CLAIM_P else f"not a claim (p >= {CLAIM_P})"
    print(f"\nFisher's exact test, one-sided (the clip lowers the failure rate): p = {p:.3g}: {verdict}.\n")
    ctrl = [val_loss(clip / f"ce-seed{s}") for s in seeds]
    print("| arm − ce (both clipped) | seeds | Δ nats/token | 95% CI | paired t p | Wilcoxon p | MDE | per seed |")
    print("|---|---|---|---|---|---|---|---|")
    for arm in ARMS:
        t = paired_t_test(ctrl, [val_loss(clip / f"{arm}-seed{s}") for s in seeds])
        print(f"| {arm} | {t.n} | {t.mean:+.4f} | [{t.ci_low:+.4f}, {t.ci_high:+.4f}] | {t.p_two_sided:.3g} | "
              f"{t.p_wilcoxon:.3g} | {paired_mde(t.sd, t.n):.4f} | " + ", ".join(f"{d:+.4f}" for d in t.diffs) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
