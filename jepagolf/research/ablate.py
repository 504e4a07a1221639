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
  completely, and ``max_wallclock_seconds`` becomes ``S * (1 + slack)``: a guard against a machine
  that slows down a lot, not the budget. Each run's real training seconds are reported; a run that
  the guard stopped early is flagged in ablation.md.

Both steps and flops matching need ``max_wallclock_seconds=0`` (a cap would decide the step counts).

Resume: a run is finished when its ``summary.json`` exists and its config hash and data section
match the plan; finished runs are skipped, unfinished run folders are removed and restarted. A
finished run with a different configuration stops the ablation with an error rather than being
overwritten.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jepagolf.config import Config, build_config, field_index, resolve_key
from jepagolf.jepa.diagnostics import share_group_order
from jepagolf.jsonfile import read_json_object
from jepagolf.outputs import is_locked
from jepagolf.research import stats
from jepagolf.research.flops import mask_setting, train_flops_per_token
from jepagolf.summary import read_scores, score_kind
from jepagolf.train.logger import atomic_write_text

MATCH_MODES = ("steps", "flops", "wallclock")
BAR_NATS = 0.005  # the challenge's record bar: >= 0.005 nats better ...
BAR_P = 0.01  # ... at p < 0.01
CALIB_WARMUP_STEPS = 2
CALIB_ROUNDS = 5  # the timed steps are split into this many interleaved rounds (see measure_step_seconds)
CSV_COLUMNS = ("arm", "seed", "val_bpb", "prequant_val_bpb", "val_loss", "steps", "tokens", "seconds",
               "artifact_bytes", "config_hash", "run_dir", "score_kind")
_ARM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


class AblationError(ValueError):
    """The ablation request is inconsistent (bad arm, unmatched compute, conflicting run folder)."""


@dataclass(frozen=True)
class Arm:
    name: str
    overrides: dict[str, str] = field(default_factory=dict)

    def spec(self) -> str:
        return f"{self.name}:" + ",".join(f"{k}={v}" for k, v in self.overrides.items())


def parse_arm(spec: str, flag: str = "--arm", extra_keys: Sequence[str] = ()) -> Arm:
    """``NAME:KEY=VAL,KEY=VAL`` -> Arm; keys are checked against the config fields (``extra_keys`` are
    also accepted, for callers that take settings of their own, such as a ladder rung's budget)."""
    name, sep, rest = spec.partition(":")
    name = name.strip()
    if not sep:
        raise AblationError(f"{flag} {spec!r}: expected NAME:KEY=VAL,... (use NAME: for the preset as is)")
    if not _ARM_NAME.match(name):
        raise AblationError(f"{flag} {spec!r}: the name must be letters, digits, '_', '.', '+' or '-' "
                            "(it names the run folders)")
    overrides: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise AblationError(f"{flag} {spec!r}: {item!r} is not KEY=VAL")
        if key.strip() not in extra_keys:
            resolve_key(key)  # raises ConfigError naming the key (with a suggestion) when unknown
        overrides[key.strip()] = value.strip()
    return Arm(name, overrides)


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise AblationError(f"--seeds {text!r}: expected comma-separated integers") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise AblationError(f"--seeds {text!r}: give distinct seeds (at least one; three or more for a test)")
    return seeds


def _canonical(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Key spellings (NUM_LAYERS, model.num_layers) -> flat field names, so later entries win cleanly."""
    return {resolve_key(k)[1]: v for k, v in overrides.items()}


@dataclass
class AblationPlan:
    preset: str
    arms: list[Arm]
    seeds: list[int]
    match: str
    common: dict[str, str]
    derived: dict[str, dict[str, Any]]  # arm -> overrides set by the matching (iterations, ...)
    notes: dict[str, str]  # arm -> how its budget was derived (one line)
    flops_per_step: dict[str, float]
    calibration: dict[str, Any] | None = None

    @property
    def control(self) -> Arm:
        return self.arms[0]

    def config(self, arm: Arm, seed: int) -> Config:
        over = {**_canonical(self.common), **_canonical(arm.overrides), **self.derived[arm.name], "seed": seed}
        return build_config(self.preset, over, environ={})

    def to_dict(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "arms": [{"name": a.name, "overrides": a.overrides} for a in self.arms],
            "seeds": self.seeds,
            "match": self.match,
            "common_overrides": self.common,
            "derived_overrides": self.derived,
            "notes": self.notes,
            "train_flops_per_step": self.flops_per_step,
            "calibration": self.calibration,
        }


StepTimer = Callable[[Sequence[Config], int], list[float]]
"""Seconds per optimizer step of each config, measured together (``measure_step_seconds``)."""


def plan_ablation(
    preset: str,
    arms: Sequence[Arm],
    seeds: Sequence[int],
    match: str = "steps",
    common: Mapping[str, str] | None = None,
    step_timer: StepTimer | None = None,
    saved_calibration: Mapping[str, Any] | None = None,
    calib_steps: int = 20,
    wallclock_slack: float = 0.25,
    warmdown_fraction: float | None = None,
) -> AblationPlan:
    """Resolve every arm's configuration and derive its step budget from the matching rule.

    ``--match wallclock`` calls ``step_timer(configs, steps)`` once, with every arm that has no entry with
    the same config hash and step count in ``saved_calibration`` (the ``arms`` of an earlier plan's
    calibration), so a resumed ablation plans the same step counts. ``warmdown_fraction`` (wallclock
    only) makes each arm's warmdown that share of its calibrated steps instead of the preset's count.
    """
    if match not in MATCH_MODES:
        raise AblationError(f"--match {match!r}: use one of {', '.join(MATCH_MODES)}")
    if len(arms) < 2:
        raise AblationError("an ablation needs at least two --arm (the first is the control)")
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise AblationError(f"arm names must be distinct (got {names})")
    if "seed" in _canonical(common or {}) or any("seed" in _canonical(a.overrides) for a in arms):
        raise AblationError("set seeds with --seeds, not as an override: every arm runs every seed")
    plan = AblationPlan(preset, list(arms), list(seeds), match, dict(common or {}), {a.name: {} for a in arms},
                        {}, {})
    base = {a.name: plan.config(a, seeds[0]) for a in arms}  # seeds do not change shapes or budgets
    ctrl = base[arms[0].name]
    for a in arms:
        c = base[a.name]
        plan.flops_per_step[a.name] = train_flops_per_token(c) * c.train.train_batch_tokens
    if match in ("steps", "flops"):
        for a in arms:
            if base[a.name].train.max_wallclock_seconds > 0:
                raise AblationError(
                    f"--match {match} counts steps, but arm {a.name!r} has max_wallclock_seconds="
                    f"{base[a.name].train.max_wallclock_seconds:g}, so the clock would decide its steps; "
                    "add --set max_wallclock_seconds=0 (and set iterations), or use --match wallclock"
                )
            if base[a.name].train.iterations != ctrl.train.iterations:
                raise AblationError(
                    f"arm {a.name!r} sets iterations={base[a.name].train.iterations} but --match {match} "
                    f"derives every arm's steps from the control's ({ctrl.train.iterations}); set iterations "
                    "with --set for all arms"
                )
    if match == "steps":
        for a in arms:
            plan.notes[a.name] = f"{ctrl.train.iterations} steps (matched on steps)"
    elif match == "flops":
        f_ctrl = plan.flops_per_step[arms[0].name]
        for a in arms:
            c = base[a.name]
            ratio = f_ctrl / plan.flops_per_step[a.name]
            iters = max(1, round(ctrl.train.iterations * ratio))
            warm = min(iters, round(c.optim.warmdown_iters * ratio))
            plan.derived[a.name] = {"iterations": iters, "warmdown_iters": warm}
            plan.notes[a.name] = (
                f"{iters} steps, warmdown {warm} (control steps x FLOPs/step ratio {ratio:.4f}; "
                f"{plan.flops_per_step[a.name]:.4g} FLOPs/step)"
            )
    else:
        _plan_wallclock(plan, base, step_timer, saved_calibration or {}, calib_steps, wallclock_slack,
                        warmdown_fraction)
    for a in arms:  # validate the final configurations now, not hours into the ablation
        plan.config(a, seeds[0])
    return plan


def _plan_wallclock(
    plan: AblationPlan,
    base: dict[str, Config],
    step_timer: StepTimer | None,
    saved: Mapping[str, Any],
    calib_steps: int,
    slack: float,
    warmdown_fraction: float | None = None,
) -> None:
    ctrl = base[plan.arms[0].name]
    budget = ctrl.train.max_wallclock_seconds
    if budget <= 0:
        raise AblationError("--match wallclock needs the control's max_wallclock_seconds > 0 (the budget "
                            "every arm gets); add --set max_wallclock_seconds=SECONDS")
    for a in plan.arms:
        if base[a.name].train.max_wallclock_seconds != budget:
            raise AblationError(f"arm {a.name!r} sets max_wallclock_seconds; --match wallclock gives every arm "
                                f"the control's {budget:g} s")

    def saved_entry(a: Arm) -> Any:
        entry = saved.get(a.name)
        return entry if entry and entry.get("config_hash") == base[a.name].hash() and \
            entry.get("steps") == calib_steps else None

    pending = [a for a in plan.arms if saved_entry(a) is None]
    measured: dict[str, float] = {}
    if pending:
        if step_timer is None:
            raise AblationError("--match wallclock needs a step timer to calibrate arm " + repr(pending[0].name))
        measured = dict(zip([a.name for a in pending], step_timer([base[a.name] for a in pending], calib_steps),
                            strict=True))
    calib: dict[str, Any] = {}
    for a in plan.arms:
        c = base[a.name]
        entry = saved_entry(a)
        if entry is None:
            step_s = measured[a.name]
            if not step_s > 0:
                raise AblationError(f"calibration of arm {a.name!r} measured a step time of {step_s}")
            entry = {"config_hash": c.hash(), "steps": calib_steps, "warmup_steps": CALIB_WARMUP_STEPS,
                     "rounds": min(CALIB_ROUNDS, calib_steps), "step_seconds": step_s,
                     "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")}
        calib[a.name] = entry
        step_s = float(entry["step_seconds"])
        iters = max(1, min(c.train.iterations, math.floor(budget / step_s)))
        warm = min(c.optim.warmdown_iters, iters) if warmdown_fraction is None else round(warmdown_fraction * iters)
        plan.derived[a.name] = {"iterations": iters, "warmdown_iters": warm, "warmdown_mode": "steps",
                                "max_wallclock_seconds": budget * (1.0 + slack)}
        plan.notes[a.name] = (f"{iters} steps = min(iterations, floor({budget:g} s / {step_s:.4f} s per step)), "
                              f"step-based warmdown {warm}, guard cap {budget * (1 + slack):g} s")
    plan.calibration = {"budget_seconds": budget, "slack": slack, "arms": calib}


def interleaved_step_seconds(
    step_fns: Sequence[Callable[[], None]], steps: int, rounds: int = CALIB_ROUNDS,
    clock: Callable[[], float] = time.perf_counter,
) -> list[float]:
    """Seconds per call of each of ``step_fns`` (each one optimizer step, synchronised), interleaved.

    The ``steps`` timed calls per function are split into ``min(rounds, steps)`` rounds; in each round
    every function runs its share in turn, and a function's figure is the median of its per-round means.
    A slow spell of a shared machine then lands on every arm alike, and one that hits a single round is
    dropped, where timing the arms one after the other charged it to whichever arm ran then (the pilot
    ladder's rung r2 missed equal time by 35% that way).
    """
    rounds = max(1, min(rounds, steps))
    shares = [steps // rounds + (1 if r < steps % rounds else 0) for r in range(rounds)]
    per_round: list[list[float]] = [[] for _ in step_fns]
    for share in shares:
        for i, fn in enumerate(step_fns):
            t0 = clock()
            for _ in range(share):
                fn()
            per_round[i].append((clock() - t0) / share)
    return [statistics.median(r) for r in per_round]


def measure_step_seconds(cfgs: Sequence[Config], steps: int, rt: Any = None) -> list[float]:
    """Seconds per optimizer step of each of ``cfgs`` on this machine, for --match wallclock.

    Every trainer is built exactly as for a run (compile, DDP), in a scratch folder that is then removed,
    and warmed up (``CALIB_WARMUP_STEPS``) before any is timed; then ``interleaved_step_seconds``.
    Under DDP every rank measures and rank 0's figures are used, so all ranks plan the same step counts.
    """
    import torch

    from jepagolf.data.dataset import resolve_dataset
    from jepagolf.train.loop import Trainer
    from jepagolf.train.runtime import setup_runtime

    if not cfgs:
        return []
    rt = rt or setup_runtime(cfgs[0].train.device)
    sync = torch.cuda.synchronize if rt.device.type == "cuda" else (lambda: None)
    with tempfile.TemporaryDirectory(prefix="jepagolf-calib-") as tmp:
        trainers: list[Trainer] = []
        try:
            for i, cfg in enumerate(cfgs):
                paths = resolve_dataset(cfg.data.data_path or None, cfg.data.tokenizer_path or None, announce=False)
                trainers.append(Trainer(cfg, rt, Path(tmp) / f"arm{i}", paths))

            def stepper(trainer: Trainer) -> Callable[[], None]:
                def step() -> None:
                    trainer.train_step()
                    trainer.apply_update()
                    trainer.step += 1
                    sync()
                return step

            fns = [stepper(t) for t in trainers]
            for fn in fns:
                for _ in range(CALIB_WARMUP_STEPS):
                    fn()
            times = interleaved_step_seconds(fns, steps)
        finally:
            for t in trainers:
                t.logger.close()
    if rt.distributed:
        import torch.distributed as dist

        holder = [times]
        dist.broadcast_object_list(holder, src=0)
        times = [float(x) for x in holder[0]]
    return times


# ----- running ----------------------------------------------------------------------------------

TrainFn = Callable[[Config, Any, Path], dict[str, Any]]


def default_ablation_dir(preset: str) -> Path:
    return Path("runs") / f"ablate-{preset}-{time.strftime('%Y%m%d-%H%M%S')}"


def refuse_foreign_folder(out: Path) -> None:
    """An ablation resumes, and deletes unfinished runs, only in its own folder (one holding its
    ablation.json); any other non-empty --out is refused."""
    if out.exists() and not out.is_dir():
        raise AblationError(f"--out {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "ablation.json").is_file():
        raise AblationError(f"--out {out} is not empty and is not an ablation folder (no ablation.json); ablate "
                            "writes only into a new folder or resumes its own: choose another --out")


def run_dir_for(out: Path, arm: str, seed: int) -> Path:
    return out / "runs" / f"{arm}-seed{seed}"


def finished_summary(run_dir: Path, cfg: Config) -> dict[str, Any] | None:
    """The run's summary when it finished with this configuration; None when it must (re)run.

    Raises when the folder holds a *finished* run of another configuration: that is someone's result.
    """
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        return None
    summary = read_json_object(summary_path)
    config_path = run_dir / "config.json"
    data = read_json_object(config_path).get("data") if config_path.is_file() else None
    if summary.get("config_hash") != cfg.hash() or data != cfg.to_dict()["data"]:
        raise AblationError(
            f"{run_dir} holds a finished run with another configuration (config hash "
            f"{summary.get('config_hash')} vs planned {cfg.hash()}, or another dataset); use another --out, "
            "or delete that folder to rerun it"
        )
    got, want = read_scores(summary, cfg.train.train_seq_len, summary_path).kind, score_kind(cfg)
    if got != want:
        raise AblationError(
            f"{run_dir} holds a finished run scored by {got.describe()}, but this ablation scores by "
            f"{want.describe()}; use another --out, or delete that folder to rerun it"
        )
    return summary


def run_ablation(
    plan: AblationPlan,
    out: Path,
    rt: Any,
    train_fn: TrainFn | None = None,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Run (or resume) every (seed, arm) pair; returns one row per run in plan order.

    Runs go seed by seed, all arms within a seed, so an ablation cut short still holds complete pairs.
    """
    if train_fn is None:
        from jepagolf.train.loop import train as train_fn
    if rt.is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "ablation.json", json.dumps(plan.to_dict(), indent=2, sort_keys=True) + "\n")
    rows: list[dict[str, Any]] = []
    total = len(plan.seeds) * len(plan.arms)
    for seed in plan.seeds:
        for arm in plan.arms:
            cfg = plan.config(arm, seed)
            run_dir = run_dir_for(out, arm.name, seed)
            summary = finished_summary(run_dir, cfg)
            label = f"[{len(rows) + 1}/{total}] arm:{arm.name} seed:{seed}"
            if summary is not None and _cut_short(plan, summary, cfg):
                log(f"{label} stopped at step {summary.get('steps')} of {cfg.train.iterations} by the guard cap "
                    "earlier (a busy machine): rerunning it")
                summary = None
            if summary is not None:
                log(f"{label} finished earlier, skipped ({run_dir})")
            for attempt in range(2 if summary is None else 0):
                if run_dir.exists():
                    if is_locked(run_dir):
                        raise AblationError(f"{run_dir} is being trained by another running process (is the same "
                                            "ablation running twice?); wait for it, or use another --out")
                    log(f"{label} unfinished run folder {run_dir} removed, restarting")
                    if rt.is_main:
                        shutil.rmtree(run_dir)
                _barrier(rt)
                log(f"{label} training -> {run_dir}")
                summary = train_fn(cfg, rt, run_dir)
                if not _cut_short(plan, summary, cfg):
                    break
                log(f"{label} the guard cap stopped it at step {summary.get('steps')} of {cfg.train.iterations} "
                    f"(a busy machine){': once more' if attempt == 0 else '; kept, and flagged in the report'}")
            assert summary is not None
            rows.append(row_from_summary(arm.name, seed, summary, run_dir, cfg.train.train_seq_len))
    return rows


def _cut_short(plan: AblationPlan, summary: Mapping[str, Any], cfg: Config) -> bool:
    """A wall-clock-matched run that the guard cap stopped before its calibrated steps: not at equal time
    (its warmdown never ran), so a resume trains it again rather than keep it."""
    return plan.match == "wallclock" and int(summary.get("steps", 0)) < cfg.train.iterations


def _barrier(rt: Any) -> None:
    if getattr(rt, "distributed", False):
        import torch.distributed as dist

        dist.barrier()


def row_from_summary(
    arm: str, seed: int, s: Mapping[str, Any], run_dir: Path, train_seq_len: int = 0
) -> dict[str, Any]:
    scores = read_scores(s, train_seq_len, run_dir / "summary.json")
    return {
        "arm": arm,
        "seed": seed,
        "val_bpb": scores.val_bpb,
        "prequant_val_bpb": scores.prequant_val_bpb,
        "val_loss": scores.val_loss,
        "steps": int(s["steps"]),
        "tokens": int(s["tokens_seen"]),
        "seconds": float(s["train_seconds"]),
        "artifact_bytes": int(s["artifact_bytes"]),
        "config_hash": s["config_hash"],
        "run_dir": str(run_dir),
        "score_kind": scores.kind.describe(),
        # Not in the CSV; used for the nats conversion, the guard check and the ladder.
        "params": int(s["params"]),
        "val_tokens": scores.val_tokens,
        "val_bytes": scores.val_bytes,
    }


def write_runs_csv(rows: Sequence[Mapping[str, Any]], path: Path, columns: Sequence[str] = CSV_COLUMNS) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_text(path, buf.getvalue())


# ----- analysis ---------------------------------------------------------------------------------


@dataclass
class Comparison:
    arm: str
    seeds: list[int]
    control_bpb: list[float]
    arm_bpb: list[float]
    paired: stats.PairedTest  # on bpb, arm - control
    welch: stats.WelchTest  # one-sided, H1: arm lower (no margin)
    bar_welch: stats.WelchTest  # one-sided, H1: arm lower by more than the bar
    bar_paired_p: float
    nats_per_bpb: float

    @property
    def bar_bpb(self) -> float:
        return BAR_NATS / self.nats_per_bpb

    @property
    def improvement_nats(self) -> float:
        return -self.paired.mean * self.nats_per_bpb

    @property
    def bar_met(self) -> bool:
        return self.improvement_nats >= BAR_NATS and self.bar_welch.p < BAR_P

    def sentence(self, control: str) -> str:
        imp = self.improvement_nats
        direction = "better" if imp > 0 else "worse"
        p = self.bar_welch.p
        p_text = "undefined (fewer than 2 seeds, or no spread)" if math.isnan(p) else f"{p:.3g}"
        verdict = "MET" if self.bar_met else "NOT met"
        reasons = []
        if imp < BAR_NATS:
            reasons.append(f"the mean improvement is {imp:+.4f} nats/token, below {BAR_NATS}")
        if not p < BAR_P:
            reasons.append(f"p = {p_text} is not below {BAR_P}")
        why = f" ({'; '.join(reasons)})" if reasons else ""
        return (
            f"Challenge bar (>= {BAR_NATS} nats/token better at p < {BAR_P}): **{verdict}** for `{self.arm}` vs "
            f"`{control}`{why}. `{self.arm}` is {abs(imp):.4f} nats/token ({abs(self.paired.mean):.4f} bpb) "
            f"{direction} on average over {self.paired.n} seeds; the one-sided Welch test of "
            f"H0: improvement <= {BAR_NATS} nats/token gives p = {p_text} (paired version: "
            f"p = {_fmt_p(self.bar_paired_p)})."
        )


def _fmt_p(p: float) -> str:
    return "n/a" if math.isnan(p) else f"{p:.3g}"


def compare(rows: Sequence[Mapping[str, Any]], plan: AblationPlan) -> tuple[list[Comparison], float, list[str]]:
    """Paired comparisons of every arm with the control on seeds both finished; (comparisons,
    nats per bpb, warnings)."""
    warnings: list[str] = []
    by = {(r["arm"], r["seed"]): r for r in rows}
    ctrl = plan.control.name
    ratios = {r["val_bytes"] / r["val_tokens"] for r in rows}
    ctrl_rows = [r for r in rows if r["arm"] == ctrl] or list(rows)
    bytes_per_token = ctrl_rows[0]["val_bytes"] / ctrl_rows[0]["val_tokens"]
    if len(ratios) > 1:
        warnings.append("runs were scored on different numbers of validation tokens (e.g. another "
                        "train_seq_len): nats use the control's bytes per token, bpb stays exact")
    nats_per_bpb = math.log(2) * bytes_per_token
    comps = []
    for arm in plan.arms[1:]:
        seeds = [s for s in plan.seeds if (ctrl, s) in by and (arm.name, s) in by]
        c = [by[(ctrl, s)]["val_bpb"] for s in seeds]
        a = [by[(arm.name, s)]["val_bpb"] for s in seeds]
        bar_bpb = BAR_NATS / nats_per_bpb
        paired = stats.paired_t_test(c, a)
        comps.append(Comparison(
            arm=arm.name, seeds=seeds, control_bpb=c, arm_bpb=a, paired=paired,
            welch=stats.welch_t_test(c, a, "less"), bar_welch=stats.welch_t_test(c, a, "less", margin=bar_bpb),
            bar_paired_p=paired.p_less(bar_bpb), nats_per_bpb=nats_per_bpb,
        ))
    for r in rows:
        cfg_steps = plan.config(next(a for a in plan.arms if a.name == r["arm"]), r["seed"]).train.iterations
        if r["steps"] < cfg_steps:
            warnings.append(f"run {r['arm']}-seed{r['seed']} stopped at step {r['steps']} of {cfg_steps} (time cap): "
                            "its warmdown did not finish")
    return comps, nats_per_bpb, warnings


def _md_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def _pm(values: Sequence[float], digits: int = 4) -> str:
    m, s = stats.mean_std(values)
    return f"{m:.{digits}f} ± {s:.{digits}f}" if not math.isnan(s) else f"{m:.{digits}f}"


def summary_tables(rows: Sequence[Mapping[str, Any]], plan: AblationPlan, comps: Sequence[Comparison]) -> str:
    """The per-arm table and the comparison table (markdown), as printed at the end of an ablation."""
    per_arm = []
    for arm in plan.arms:
        rs = [r for r in rows if r["arm"] == arm.name]
        if not rs:
            continue
        per_arm.append([
            arm.name, str(len(rs)), _pm([r["val_bpb"] for r in rs]), _pm([r["prequant_val_bpb"] for r in rs]),
            _pm([r["val_loss"] for r in rs]), "/".join(sorted({str(r["steps"]) for r in rs})),
            f"{stats.mean_std([r['seconds'] for r in rs])[0]:.1f}", f"{plan.flops_per_step[arm.name]:.3g}",
            f"{stats.mean_std([r['artifact_bytes'] for r in rs])[0]:.0f}",
        ])
    t1 = _md_table(["arm", "runs", "val_bpb (score, round-trip)", "pre-quant val_bpb", "score val_loss nats/token",
                    "steps", "train s (mean)", "FLOPs/step", "artifact bytes (mean)"], per_arm)
    body = []
    ctrl = plan.control.name
    for c in comps:
        p = c.paired
        body.append([
            f"{c.arm} − {ctrl}", str(p.n), f"{p.mean:+.4f}", f"{p.mean * c.nats_per_bpb:+.4f}",
            f"[{p.ci_low * c.nats_per_bpb:+.4f}, {p.ci_high * c.nats_per_bpb:+.4f}]", _fmt_p(p.p_two_sided),
            _fmt_p(c.welch.p), _fmt_p(c.bar_welch.p), "met" if c.bar_met else "not met",
        ])
    t2 = _md_table(["difference", "pairs", "Δ bpb", "Δ nats/token", "95% CI nats/token", "paired t p (2-sided)",
                    "Welch p (1-sided)", "bar p", "bar"], body)
    return t1 + "\n\n" + t2


DIAG_COLUMNS = ("pred_std", "target_std", "pred_erank", "target_erank", "pred_target_cos", "jepa_mse",
                "jepa_grad_share", "grad_cos_ce_jepa", "r2_pred", "r2_const", "r2_identity", "jepa_share_mse",
                "jepa_share_var", "jepa_share_cov")


def last_diagnostics(run_dir: Path) -> dict[str, float] | None:
    """The last train row of a run that carries the collapse diagnostics (None for a plain-CE run)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    last = None
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row.get("kind") == "train" and "pred_erank" in row:
            last = row
    return last


def diagnostics_table(rows: Sequence[Mapping[str, Any]], plan: AblationPlan) -> str:
    body = []
    for arm in plan.arms:
        found = [d for d in (last_diagnostics(Path(r["run_dir"])) for r in rows if r["arm"] == arm.name) if d]
        if found:
            steps = "/".join(sorted({str(d["step"]) for d in found}))
            blocks = sorted({k for d in found for k in d if k.startswith("jepa_grad_share_")}, key=share_group_order)
            by_block = " / ".join(f"{_mean_of(found, k):.3g}" for k in blocks)
            body.append([arm.name, steps] + [f"{_mean_of(found, k):.4g}" for k in DIAG_COLUMNS] + [by_block])
    blocks_col = "jepa_grad_share by group (embed / block0 / ... / other)"
    return _md_table(["arm", "step", *DIAG_COLUMNS, blocks_col], body) if body else ""


def _mean_of(rows: Sequence[Mapping[str, float]], key: str) -> float:
    """Mean over the rows that logged ``key`` (runs from before a diagnostic existed lack it): NaN if none."""
    values = [d[key] for d in rows if key in d]
    return stats.mean_std(values)[0] if values else math.nan


def ablation_markdown(
    rows: Sequence[Mapping[str, Any]], plan: AblationPlan, comps: Sequence[Comparison], nats_per_bpb: float,
    warnings: Sequence[str], plots: Sequence[Path], out: Path,
) -> str:
    ctrl = plan.control.name
    base = plan.config(plan.control, plan.seeds[0])
    kinds = "; ".join(sorted({str(r["score_kind"]) for r in rows if r.get("score_kind")}))
    lines = [
        f"# Ablation: {' vs '.join(a.name for a in plan.arms)} (preset `{plan.preset}`)",
        "",
        f"- control: `{ctrl}` (the first arm); seeds: {', '.join(map(str, plan.seeds))}; "
        f"match: **{plan.match}**",
        f"- data: `{base.data.data_path or 'offline demo corpus'}`; common overrides: "
        f"`{json.dumps(plan.common, sort_keys=True)}`",
        *[f"- JEPA masks of `{a.name}`: {mask_setting(plan.config(a, plan.seeds[0]))}"
          for a in plan.arms if plan.config(a, plan.seeds[0]).jepa.active],
        "- score: `val_bpb` = the number the challenge would score (`score_val_bpb`): each run's final "
        "(post-warmdown) quantised artifact, round-tripped, over the whole validation split, "
        f"{kinds or score_kind(base).describe()}; "
        "`pre-quant` = the same EMA weights before quantisation, non-overlapping windows",
        "",
        "## Arms",
        "",
        _md_table(["arm", "overrides", "budget"],
                  [[a.name, f"`{a.spec()}`", plan.notes[a.name]] for a in plan.arms]),
        "",
        "## Results",
        "",
        summary_tables(rows, plan, comps),
        "",
        "Units and tests. Differences are arm − control (negative = the arm is better). Nats are nats per "
        f"validation token: Δnats = Δbpb × ln 2 × (validation bytes / tokens) = Δbpb × {nats_per_bpb:.6f} "
        "(the exact identity bpb = loss / ln 2 × tokens / bytes, with the control's byte and token counts). "
        "The t tests are scale-invariant, so their p-values are the same in bpb and in nats. "
        "95% CI: t-based interval of the mean paired difference (df = pairs − 1). "
        "`paired t p`: two-sided paired t-test of Δ = 0. `Welch p`: one-sided Welch t-test, H1: the arm's mean is "
        "lower. `bar p`: one-sided Welch t-test of H0: improvement <= "
        f"{BAR_NATS} nats/token (i.e. the arm's bpb shifted by {BAR_NATS / nats_per_bpb:.6f} bpb); "
        f"the bar is met when the mean improvement is >= {BAR_NATS} nats/token and bar p < {BAR_P}. Welch "
        "(unpaired) is the conservative choice the challenge itself makes when comparing with another "
        "submission's runs; the paired version is given in the sentence below.",
        "",
    ]
    for c in comps:
        lines += [f"### {c.arm} vs {ctrl}", "", c.sentence(ctrl), ""]
        per_seed = [[str(s), f"{x:.5f}", f"{y:.5f}", f"{y - x:+.5f}", f"{(y - x) * c.nats_per_bpb:+.5f}"]
                    for s, x, y in zip(c.seeds, c.control_bpb, c.arm_bpb, strict=True)]
        lines += [_md_table(["seed", f"{ctrl} val_bpb", f"{c.arm} val_bpb", "Δ bpb", "Δ nats/token"], per_seed), ""]
        p, w = c.paired, c.welch
        lines += [
            f"- paired: mean Δ {p.mean:+.5f} bpb, sd {p.sd:.5f}, t = {p.t:.3f}, df = {p.df}, "
            f"p (two-sided) = {_fmt_p(p.p_two_sided)}, 95% CI [{p.ci_low:+.5f}, {p.ci_high:+.5f}] bpb",
            f"- Welch one-sided (H1: {c.arm} lower): t = {w.t:.3f}, df = {w.df:.2f}, p = {_fmt_p(w.p)}",
            f"- bar test (H0: improvement <= {BAR_NATS} nats/token): Welch t = {c.bar_welch.t:.3f}, df = "
            f"{c.bar_welch.df:.2f}, p = {_fmt_p(c.bar_welch.p)}; paired p = {_fmt_p(c.bar_paired_p)}",
            "",
        ]
    diag = diagnostics_table(rows, plan)
    if diag:
        lines += ["## Collapse diagnostics", "",
                  "At each JEPA run's last diagnostic step (masked positions), mean over seeds. Collapse shows "
                  "as prediction std and effective rank falling towards 0 and 1.", "", diag, ""]
    if warnings:
        lines += ["## Warnings", ""] + [f"- {w}" for w in warnings] + [""]
    lines += ["## Files", "", "- `runs.csv`: one row per run; `ablation.json`: the plan; `runs/<arm>-seed<seed>/`: "
              "the run folders"]
    lines += [f"- `{p.relative_to(out)}`" for p in plots]
    return "\n".join(lines) + "\n"


def finalize(rows: Sequence[dict[str, Any]], plan: AblationPlan, out: Path, plots_wanted: bool = True) -> str:
    """runs.csv, plots (unless not wanted), ablation.md; returns the printed tables."""
    write_runs_csv(rows, out / "runs.csv")
    comps, nats_per_bpb, warnings = compare(rows, plan)
    plots: list[Path] = []
    if plots_wanted:
        plots, warnings = _plot_ablation(rows, plan, out, warnings)
    atomic_write_text(out / "ablation.md", ablation_markdown(rows, plan, comps, nats_per_bpb, warnings, plots, out))
    tables = summary_tables(rows, plan, comps)
    for c in comps:
        tables += "\n\n" + c.sentence(plan.control.name).replace("**", "")
    for w in warnings:
        tables += f"\nwarning: {w}"
    return tables


def _plot_ablation(
    rows: Sequence[Mapping[str, Any]], plan: AblationPlan, out: Path, warnings: list[str]
) -> tuple[list[Path], list[str]]:
    plots: list[Path] = []
    try:
        from jepagolf.research.report import plot_ablation

        groups = {a.name: [Path(r["run_dir"]) for r in rows if r["arm"] == a.name] for a in plan.arms}
        plots = plot_ablation(groups, out / "plots")
    except ImportError as e:  # matplotlib is optional: the numbers do not depend on it
        warnings = [*warnings, f"plots skipped: {e}"]
    return plots, warnings


def ignored_environment(environ: Mapping[str, str] | None = None) -> list[str]:
    """Config-like environment variables that ``ablate`` ignores (it reads only its command line)."""
    env = os.environ if environ is None else environ
    return sorted(name.upper() for name in field_index() if name.upper() in env)


def _load_calibration(path: Path, rt: Any) -> dict[str, Any]:
    """Rank 0's saved calibration, shared with every rank so that all of them calibrate the same arms."""
    saved = read_json_object(path) if rt.is_main and path.is_file() else {}
    if getattr(rt, "distributed", False):
        import torch.distributed as dist

        holder = [saved]
        dist.broadcast_object_list(holder, src=0)
        saved = holder[0]
    return saved


def plan_calibrated(
    preset: str, arms: Sequence[Arm], seeds: Sequence[int], match: str, common: Mapping[str, str], out: Path,
    rt: Any, log: Callable[[str], None] = print, **plan_kwargs: Any,
) -> AblationPlan:
    """``plan_ablation`` with the step timer of this machine and the calibration saved in (and reused
    from) ``out/calibration.json``, so that rerunning the same command plans the same step counts."""

    def timer(cfgs: Sequence[Config], steps: int) -> list[float]:
        log(f"calibrating step times of {', '.join(c.hash() for c in cfgs)}: {steps} steps each, interleaved ...")
        return measure_step_seconds(cfgs, steps, rt)

    saved = _load_calibration(out / "calibration.json", rt)
    plan = plan_ablation(preset, arms, seeds, match, common, step_timer=timer, saved_calibration=saved,
                         **plan_kwargs)
    if rt.is_main:
        out.mkdir(parents=True, exist_ok=True)
        if plan.calibration is not None:
            merged = {**saved, **plan.calibration["arms"]}
            atomic_write_text(out / "calibration.json", json.dumps(merged, indent=2, sort_keys=True) + "\n")
    return plan


def main_ablate(
    preset: str, arm_specs: Sequence[str], seeds_text: str, match: str, common: Mapping[str, str], out: Path,
    calib_steps: int = 20, wallclock_slack: float = 0.25, train_fn: TrainFn | None = None, rt: Any = None,
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
    rt = rt or setup_runtime(first.train.device)
    log = print if rt.is_main else (lambda _msg: None)
    plan = plan_calibrated(preset, arms, seeds, match, common, out, rt, log, calib_steps=calib_steps,
                           wallclock_slack=wallclock_slack)
    for a in plan.arms:
        log(f"arm {a.name}: {a.spec()}  budget: {plan.notes[a.name]}")
    rows = run_ablation(plan, out, rt, train_fn=train_fn, log=log)
    if not rt.is_main:
        return ""
    return finalize(rows, plan, out)


__all__ = [
    "AblationError", "AblationPlan", "Arm", "compare", "finalize", "main_ablate", "measure_step_seconds",
    "parse_arm", "parse_seeds", "plan_ablation", "plan_calibrated", "run_ablation",
]
