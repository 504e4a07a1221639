"""Seed-paired ablations: every arm with every seed, matched compute, scored on the final artifact.

``jepagolf ablate --preset P --arm ce:jepa=false --arm jepa: --seeds 1337,42,2025 --out DIR``

- The first arm is the control. An arm is ``NAME:KEY=VAL,KEY=VAL`` (config overrides applied on top
  of the preset and the common ``--set`` values; ``NAME:`` alone is the preset as is).
- Pairing: for a given seed every arm starts from the same GPT init (the GPT is built first, right
  after seeding, so the JEPA-only modules do not shift it), reads the same token stream (the train
  shards in order) and, when JEPA is on, draws the same span masks (seeded by seed, step and
  micro-batch index). tests/test_ablate.py checks all three.
- Score: the number the challenge would score, ``score_val_bpb`` of the run's summary: the round-trip val_bpb of
  the final, post-warmdown, quantised (int5/int6 + LZMA) artifact over the whole validation split, by sliding
  windows when ``eval_stride`` is set (v3), else non-overlapping (``jepagolf.summary``; a summary written before
  the score was named is read as its round trip, and a finished run scored differently from the plan is refused).
- Environment variables such as ``NUM_LAYERS`` are ignored here: an ablation is fully described by
  its command line (and recorded in ``DIR/ablation.json``).

Compute matching (``--match``):

- ``steps``: every arm runs the control's ``iterations`` (an arm may not change them).
- ``flops``: arm a runs ``round(iterations * F_control / F_a)`` steps, F = analytic training FLOPs per
  step (``flops.train_flops_per_token`` x ``train_batch_tokens``: the JEPA context pass, target pass
  and predictor counted), and its ``warmdown_iters`` is scaled by the same ratio.
- ``wallclock``: every arm gets the control's ``max_wallclock_seconds`` S. A wall-clock warmdown
  (what a plain capped run does) would depend on the machine's speed at that moment, and a slow
  machine hits the cap mid-run; instead each arm's mean step time t_a is measured on this machine in
  a short calibration (``--calib-steps`` timed steps after 2 warm-up steps, saved to
  ``DIR/calibration.json`` so a resumed ablation reuses it), the arm runs
  ``min(iterations, floor(S / t_a))`` steps with ``warmdown_mode=steps``, so it always warms down
  completely; ``max_wallclock_seconds`` becomes 0 and ``guard_seconds`` ``S * (1 + slack)``: a guard
  against a machine that slows down a lot, not the budget and not the challenge's cap (so no GPTQ
  calibration reserve is taken from it, and no schedule follows the clock). Each run's real training
  seconds are reported; a run that the guard stopped early is trained again once, then flagged in
  ablation.md.

What the seeds vary (``--vary``): ``all`` (the default) lets each seed drive the model init and the JEPA span
masks (and SIGReg directions) together, every seed reading the same training tokens in the same order; ``init``
and ``masks`` vary that factor alone (``init_seed`` / ``mask_seed``), the other pinned to the first seed's;
``data`` varies only the training tokens (``data_offset``: seed k starts k x the longest run's tokens into the
stream), init and masks pinned. The paired sd of each design is that factor's share of the seed-to-seed noise
(docs/results/noise-plan.md). runs.csv records each run's resolved init seed, mask seed and data offset.

Both steps and flops matching need ``max_wallclock_seconds=0`` (a cap would decide the step counts).

Resume: a run is finished when its ``summary.json`` exists and its config hash and data section
match the plan; finished runs are skipped, unfinished run folders are removed and restarted. A
finished run with a different configuration stops the ablation with an error rather than being
overwritten.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jepagolf.config import build_config, field_index
from jepagolf.research.ablate_plan import (
    VARY_NOTES,
    AblationError,
    AblationPlan,
    Arm,
    _canonical,
    interleaved_step_seconds,
    measure_step_seconds,
    parse_arm,
    parse_seeds,
    plan_ablation,
    plan_calibrated,
    with_fast_path,
)
from jepagolf.research.ablate_report import compare, finalize
from jepagolf.research.ablate_run import TrainFn, refuse_foreign_folder, run_ablation


def default_ablation_dir(preset: str) -> Path:
    return Path("runs") / f"ablate-{preset}-{time.strftime('%Y%m%d-%H%M%S')}"


def ignored_environment(environ: Mapping[str, str] | None = None) -> list[str]:
    """Config-like environment variables that ``ablate`` ignores (it reads only its command line)."""
    env = os.environ if environ is None else environ
    return sorted(name.upper() for name in field_index() if name.upper() in env)

def main_ablate(
    preset: str, arm_specs: Sequence[str], seeds_text: str, match: str, common: Mapping[str, str], out: Path,
    calib_steps: int = 20, wallclock_slack: float = 0.25, train_fn: TrainFn | None = None, rt: Any = None,
    vary: str = "all",
) -> str:
    """The whole ``jepagolf ablate`` command; returns the printed tables."""
    from jepagolf.train.runtime import setup_runtime

    arms = [parse_arm(s) for s in arm_specs]
    seeds = parse_seeds(seeds_text)
    refuse_foreign_folder(out)
    if calib_steps < 1 or wallclock_slack < 0:
        raise AblationError("--calib-steps must be >= 1 and --wallclock-slack >= 0")
    ignored = ignored_environment()
    if ignored:
        print(f"note: ablate ignores config environment variables ({', '.join(ignored)}); use --set",
              file=sys.stderr)
    first = build_config(preset, {**_canonical(common), **_canonical(arms[0].overrides)}, environ={})
    if match in ("steps", "flops"):  # the control's steps are known now (wallclock: only after calibrating)
        common = with_fast_path(preset, common, arms, first.train.iterations)
    rt = rt or setup_runtime(first.train.device)
    log = print if rt.is_main else (lambda _msg: None)
    plan = plan_calibrated(preset, arms, seeds, match, common, out, rt, log, calib_steps=calib_steps,
                           wallclock_slack=wallclock_slack, vary=vary)
    log(f"seeds vary: {plan.vary} ({VARY_NOTES[plan.vary]})")
    for a in plan.arms:
        log(f"arm {a.name}: {a.spec()}  budget: {plan.notes[a.name]}")
    rows = run_ablation(plan, out, rt, train_fn=train_fn, log=log)
    if not rt.is_main:
        return ""
    return finalize(rows, plan, out)


__all__ = [
    "AblationError", "AblationPlan", "Arm", "compare", "finalize", "interleaved_step_seconds", "main_ablate",
    "measure_step_seconds", "parse_arm", "parse_seeds", "plan_ablation", "plan_calibrated", "run_ablation",
]
