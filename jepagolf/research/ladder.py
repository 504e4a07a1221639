"""Compute ladder: arms x rungs x seeds on CPU, a fit of the effect against compute, and its extrapolation
to the challenge's compute.

``jepagolf ladder [--data DIR] [--out DIR]`` runs every arm (the first is the control) with every seed
of every rung, where a rung is a model shape and a budget (wall-clock seconds, or the control's FLOPs, steps
or training tokens per parameter). Each rung is a seed-paired ablation (``ablate_plan``, ``ablate_run``) in
``OUT/rungs/<rung>/``, matched by wall-clock (every arm the rung's seconds, steps calibrated on this machine
with the arms timed in interleaved rounds (``ablate_plan.measure_step_seconds``)), with ``--match flops`` by
training FLOPs (the control gets its steps, the other arms the same FLOPs) or with ``--match steps`` by
steps (every arm the control's). Every run's schedules scale with its length (warmdown over the last
``WARMDOWN_FRACTION``) and its export is a stated choice (``LADDER_COMMON``: int8 + zlib). The planning is
in ``ladder_plan``, the fits in ``ladder_fit``, the report in ``ladder_report``; this module is the command.
Rerunning the same command resumes: finished runs are kept, calibrations reused.

The analysis: per rung and arm, Δ = val_loss(arm) - val_loss(control) in nats per validation token
(round-trip artifact, paired by seed), its mean, 95% CI and the minimal detectable effect of the paired
t-test (80% power, alpha 0.05 two-sided, from the measured paired sd); then a weighted least-squares line
Δ = a + b log10(training FLOPs) (weights 1/SE², x = the control's training FLOPs in the budget) and its
value at the challenge's compute with a 95% prediction interval. ``OUT/ladder.md`` says what that means,
``OUT/ladder.png`` shows it, ``OUT/runs.csv`` has one row per run (``--add-points`` merges other ladders'
runs.csv files, e.g. the GPU rungs of scripts/gpu_ladder.sh), ``OUT/ladder.json`` every number.

Default ladder sizing (README, "Compute ladder"), from the step times calibrated on the idle 2-core machine
(docs/results/ladder/plan.md): the control trains 1.9e11, 3.8e11, 2.2e12, 5.5e12 and 1.0e13 FLOPs on r0..r4
(55x). Wall time with the three default arms = sum over rungs of 3 x seeds x (seconds + overhead), the
overhead being model build, three exact evaluations of the 262,144 scored validation tokens, GPTQ and LZMA
(measured per run for that ladder, before its export became int8 + zlib without GPTQ: 17, 23, 54, 127 and 192
s in all): 3 x (12 x 17 + 8 x 23 + 14 x 54 + 3 x 127 + 3 x 192) s = 6,303 s ~ 1.75 h, plus ~6 min of
calibration. r2 carries the MDE: the first ladder measured paired sds of ~0.02 nats at r0-r1 (v3) but
0.003-0.006 at r2 (from 3 seeds each), and 14 seeds put r2's MDE below 0.005 nats for a paired sd up to 0.006.
``--plan-only`` measures the step times on the machine and prints this estimate.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jepagolf.config import build_config
from jepagolf.data.shards import split_tokens
from jepagolf.outputs import MARKER, claim_dir, owns
from jepagolf.research.ablate import ignored_environment
from jepagolf.research.ablate_plan import MOVES_DATA, VARY_MODES, VARY_NOTES, Arm, parse_arm, parse_seeds, plan_ablation
from jepagolf.research.ablate_report import finalize
from jepagolf.research.ablate_run import run_ablation, write_runs_csv
from jepagolf.research.ladder_fit import (
    CSV_COLUMNS,
    challenge_flops,
    compute_models,
    extrapolate,
    ladder_rows,
    load_points,
    rung_results,
)
from jepagolf.research.ladder_plan import (
    BAR_NATS,
    DEFAULT_ARMS,
    DEFAULT_RUNGS,
    DEFAULT_SEEDS,
    DEFAULT_VAL_TOKENS,
    LADDER_MATCHES,
    RESEARCH_EXPORT_NOTE,
    SMOKE_RUNGS,
    LadderError,
    Rung,
    RungPlan,
    check_epochs,
    data_view,
    default_data_dir,
    parse_rung,
    plan_rung,
    plan_table,
    rung_common,
    rung_run_seconds,
)
from jepagolf.research.ladder_report import (
    analyse,
    comparison_line,
    compute_model_markdown,
    unequal_time_warnings,
    verdict,
)
from jepagolf.research.progress import Progress, format_duration
from jepagolf.train.logger import atomic_write_text

# ----- the command --------------------------------------------------------------------------------


def plan_notes(plans: Sequence[RungPlan]) -> list[str]:
    """What every run of the ladder shares that the tables do not show: the export scored, the schedules."""
    rp = plans[0]
    out = [f"export (the round trip scored): {rp.plan.export_note()}"
           + (f" = {RESEARCH_EXPORT_NOTE}" if rp.plan.export_note() == "int8-zlib" else ""),
           "verdict and fits rest on the round trip (the score); the pre-quantisation Δ is reported beside it"]
    for p in plans:
        out.append(f"{p.rung.name} ({p.rung.budget_kind} budget): " + "; ".join(
            f"{a.name} {p.plan.schedule_note(a)}" for a in p.plan.arms))
    return out


LADDER_COMMAND = "jepagolf ladder"  # names the ladder folder's ownership marker (outputs.claim_dir)


def check_ladder_out(out: Path) -> None:
    """A ladder writes only into a new or empty folder, or resumes in its own (outputs.owns): it adds to
    the folder over a run of hours, so a folder it did not create is refused, not written into."""
    if out.exists() and not out.is_dir():
        raise LadderError(f"--out {out} is a file, not a folder; choose a folder for the ladder")
    if out.is_dir() and any(p.name != MARKER for p in out.iterdir()) and not owns(out, LADDER_COMMAND):
        raise LadderError(f"--out {out} is not empty and was not created by jepagolf ladder (no valid marker "
                          f"{MARKER}); a ladder writes only into a new folder or resumes its own: choose another --out")


def claim_ladder_out(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if not owns(out, LADDER_COMMAND):
        claim_dir(out, LADDER_COMMAND, complete=False)  # checked empty above: what it holds from now is ours


def main_ladder(
    arm_specs: Sequence[str] | None, rung_specs: Sequence[str] | None, seeds_text: str, common: Mapping[str, str],
    out: Path, *, data: str | None, smoke: bool = False, match: str = "wallclock", calib_steps: int = 20,
    max_epochs: float = 1.0, add_points: Sequence[Path] = (), plan_only: bool = False, train_fn: Any = None,
    rt: Any = None, val_tokens: int = DEFAULT_VAL_TOKENS, wallclock_slack: float = 1.0, vary: str = "all",
) -> str:
    """The whole ``jepagolf ladder`` command; returns what it prints at the end."""
    from jepagolf.data.dataset import resolve_dataset
    from jepagolf.train.runtime import setup_runtime

    if match not in LADDER_MATCHES:
        raise LadderError(f"--match {match!r}: a ladder matches wallclock (the challenge's currency), flops or steps "
                          "(the organisers' first test)")
    if vary not in VARY_MODES:
        raise LadderError(f"--vary {vary!r}: use one of {', '.join(VARY_MODES)}")
    check_ladder_out(out)  # before any calibration or training
    if calib_steps < 1 or not max_epochs > 0 or val_tokens < 0 or wallclock_slack < 0:
        raise LadderError("--calib-steps must be >= 1, --max-epochs > 0, --val-tokens and --wallclock-slack >= 0")
    preset = "smoke" if smoke else "cpu-demo"
    arms = [parse_arm(s) for s in (arm_specs or DEFAULT_ARMS)]
    rungs = [parse_rung(s) for s in rung_specs] if rung_specs else list(SMOKE_RUNGS if smoke else DEFAULT_RUNGS)
    if len({r.name for r in rungs}) != len(rungs):
        raise LadderError("rung names must be distinct")
    seeds = parse_seeds(seeds_text)
    extra_rows = [row for p in add_points for row in load_points(Path(p))]
    clash = {r["rung"] for r in extra_rows} & {r.name for r in rungs}
    if clash:
        raise LadderError(f"--add-points rungs {sorted(clash)} have the names of this ladder's rungs; rename them")
    other = sorted({str(r["match"]) for r in extra_rows if r.get("match") and r["match"] != match})
    if other:
        raise LadderError(f"--add-points holds runs matched by {', '.join(other)}, this ladder matches {match}: "
                          "rungs of different comparisons do not share one fit; analyse them apart")
    common = dict(common)
    if data:
        common["data_path"] = str(Path(data).resolve())
    elif not smoke:
        research = default_data_dir()
        if not research.is_dir():
            raise LadderError(f"no research corpus at {research}: build it with `jepagolf data research` "
                              "(or pass --data DIR, or --smoke for the demo corpus)")
        common["data_path"] = str(research)
    ignored = ignored_environment()
    if ignored:
        print(f"note: ladder ignores config environment variables ({', '.join(ignored)}); use --set", file=sys.stderr)
    first = build_config(preset, {**rung_common(rungs[0], common), **arms[0].overrides}, environ={})
    paths = resolve_dataset(first.data.data_path or None, first.data.tokenizer_path or None)
    rt = rt or setup_runtime(first.train.device)
    log = print if rt.is_main else (lambda _msg: None)
    if rt.is_main:
        claim_ladder_out(out)
    if 0 < val_tokens < split_tokens(paths.data_dir, "val"):
        view = data_view(paths.data_dir, paths.tokenizer, out, val_tokens)
        log(f"data: scoring on the first {val_tokens:,} validation tokens of {paths.data_dir} ({view})")
        common["data_path"], common["tokenizer_path"] = str(view.resolve()), str((view / "tokenizer.model").resolve())
        paths = resolve_dataset(common["data_path"], common["tokenizer_path"], announce=False)
    train_tokens, val_tokens = split_tokens(paths.data_dir, "train"), split_tokens(paths.data_dir, "val")
    log(f"ladder: {len(rungs)} rungs x {len(arms)} arms, data {paths.data_dir} ({train_tokens:,} train / "
        f"{val_tokens:,} val tokens), match {match}, out {out}")
    plans = []
    for rung in rungs:
        rp = plan_rung(preset, arms, rung, seeds, common, match, out, rt, log, calib_steps, wallclock_slack, vary)
        plans.append(rp)
    notes = [comparison_line([match]).replace("**", ""), f"seeds vary: {vary} ({VARY_NOTES[vary]})",
             *plan_notes(plans), *check_epochs(plans, train_tokens,
                                                                                           max_epochs)]
    if vary in MOVES_DATA:  # the seeds read disjoint windows of the stream while the corpus holds them all
        for rp in plans:
            spread = len(rp.plan.seeds) * rp.plan.data_stride()
            overlap = "; the windows overlap" if spread > train_tokens else ""
            notes.append(f"{rp.rung.name}: --vary {vary} spreads its seeds over {spread:,} tokens "
                         f"({spread / train_tokens:.3f} epochs{overlap})")
    table, total_s = plan_table(plans, train_tokens, val_tokens)
    text = table + "\n\n" + "\n".join(f"- {n}" for n in notes)
    log("\n" + text + f"\n\nestimated wall time: {total_s / 60:.1f} min ({total_s / 3600:.2f} h)")
    if rt.is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "plan.md", text + f"\n\nestimated wall time: {total_s / 3600:.2f} h\n")
    if plan_only:
        return table
    rows: list[dict[str, Any]] = []
    estimates = [s for rp in plans for s in rung_run_seconds(rp, val_tokens)]
    progress = Progress(estimates)
    first_run = 0
    for i, rp in enumerate(plans, start=1):
        log(f"== rung {rp.rung.name} ({i}/{len(plans)}): {len(rp.plan.arms) * len(rp.plan.seeds)} runs; ladder "
            f"{format_duration(time.monotonic() - progress.start)} in, {progress.left_text()} (estimate)")
        rung_rows = run_ablation(rp.plan, rp.out, rt, train_fn=train_fn,
                                 log=lambda m, n=rp.rung.name: log(f"rung {n} {m}"), progress=progress,
                                 first=first_run)
        first_run += len(rung_rows)
        if rt.is_main:
            finalize(rung_rows, rp.plan, rp.out)  # the rung's ablation.md, runs.csv and plots/
            rows += ladder_rows(rp, rung_rows)
            write_runs_csv(rows, out / "runs.csv", CSV_COLUMNS)  # a ladder cut short keeps its finished rungs
    if not rt.is_main:
        return ""
    warnings = [f"rung {rp.rung.name}: every run of it was stopped by the guard cap" for rp in plans
                if all(r["steps"] < rp.steps(r["arm"]) for r in rows if r["rung"] == rp.rung.name)]
    over = {a.name: a.overrides for a in arms}
    return analyse(rows + extra_rows, arms[0].name, out, notes, over, warnings)


__all__ = [
    "BAR_NATS", "DEFAULT_RUNGS", "DEFAULT_SEEDS", "Arm", "LadderError", "Rung", "RungPlan", "analyse",
    "challenge_flops", "check_epochs", "compute_model_markdown", "compute_models", "default_data_dir", "extrapolate",
    "load_points", "main_ladder", "parse_rung", "parse_seeds", "plan_ablation", "plan_rung", "rung_results",
    "unequal_time_warnings", "verdict",
]
