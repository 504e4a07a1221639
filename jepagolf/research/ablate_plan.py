"""Planning a seed-paired ablation: arms, seeds, and each arm's budget under the matching rule (steps,
training FLOPs, or wall-clock from step times calibrated on this machine). ``jepagolf/research/ablate.py``
says what an ablation is."""


from __future__ import annotations

import json
import math
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jepagolf.config import PRESETS, Config, build_config, resolve_key
from jepagolf.jsonfile import read_json_object
from jepagolf.research.flops import train_flops_per_token
from jepagolf.train import schedules
from jepagolf.train.batches import step_tokens
from jepagolf.train.logger import atomic_write_text

MATCH_MODES = ("steps", "flops", "wallclock")
BAR_NATS = 0.005  # the challenge's record bar: >= 0.005 nats better ...
BAR_P = 0.01  # ... at p < 0.01
# A run worse than its control by more than this (nats/token) is counted as a failure beside the tests: the noise
# study saw v3 end 0.12-0.16 nats behind CE in 2 of 13 long runs, which no paired t of a few seeds survives.
FAILURE_NATS = 0.05
CALIB_WARMUP_STEPS = 2
CALIB_ROUNDS = 5  # the timed steps are split into this many interleaved rounds (see measure_step_seconds)
# What the seeds of an ablation vary (--vary): all = everything the seed drives (model init, JEPA span masks and
# SIGReg directions), as always; init / masks = that factor alone, the other pinned to the first seed's; data =
# the training tokens alone (each seed's stream starts one run's tokens after the previous seed's), init and
# masks pinned; all+data = everything at once (init, masks and the training tokens: the result then holds over
# data orders, not for one). The training tokens are the same for every seed except under data and all+data.
VARY_MODES = ("all", "init", "masks", "data", "all+data")
MOVES_DATA = ("data", "all+data")
VARY_NOTES = {
    "all": "init and masks (seed); the same training tokens for every seed",
    "init": "the initial weights only (init_seed); masks pinned to the first seed's, the same training tokens",
    "masks": "the JEPA span masks and SIGReg directions only (mask_seed); init pinned to the first seed's, the "
             "same training tokens",
    "data": "the training tokens only (data_offset: seed k starts k runs' tokens into the stream); init and "
            "masks pinned to the first seed's",
    "all+data": "init, masks and the training tokens together (seed; data_offset: seed k starts k runs' tokens "
                "into the stream)",
}
FACTOR_KEYS = ("init_seed", "mask_seed", "data_offset")
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


# Runs of at least this many steps train on the compiled step (step_compile=auto: on for a single-process CPU run)
# unless step_compile is set by --set, an arm, a rung or the preset. Compiling costs seconds with the on-disk cache
# and minutes cold, once per arm and shape in a process, and the compiled step measured 1.24-1.46x the eager one at
# the ladder's shapes (docs/results/ladder-shapes): from here on it pays. Shorter runs stay eager.
FAST_PATH_MIN_STEPS = 1000


def with_fast_path(preset: str, common: Mapping[str, str], arms: Sequence[Arm], steps: int | None) -> dict[str, str]:
    """``common`` with step_compile=auto added when every run trains ``steps`` >= FAST_PATH_MIN_STEPS and nobody
    chose the training path."""
    out = dict(common)
    chosen = "step_compile" in _canonical(common) or "step_compile" in PRESETS.get(preset, {}) or any(
        "step_compile" in _canonical(a.overrides) for a in arms)
    if steps is not None and steps >= FAST_PATH_MIN_STEPS and not chosen:
        out["step_compile"] = "auto"
    return out


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
    vary: str = "all"

    @property
    def control(self) -> Arm:
        return self.arms[0]

    def config(self, arm: Arm, seed: int) -> Config:
        over = {**_canonical(self.common), **_canonical(arm.overrides), **self.derived[arm.name],
                **self.seed_overrides(seed)}
        return build_config(self.preset, over, environ={})

    def seed_overrides(self, seed: int) -> dict[str, Any]:
        """What ``seed`` sets under ``vary``: the seed, and the factors pinned or moved (see VARY_MODES)."""
        base = self.seeds[0]
        if self.vary == "all":
            return {"seed": seed}
        if self.vary == "init":
            return {"seed": seed, "mask_seed": base}
        if self.vary == "masks":
            return {"seed": seed, "init_seed": base}
        k = self.seeds.index(seed)  # the first seed's stride is never asked for: data_stride builds its configs
        offset = {"data_offset": k * self.data_stride() if k else 0}
        if self.vary == "all+data":
            return {"seed": seed, **offset}
        return {"seed": seed, "init_seed": base, "mask_seed": base, **offset}

    def data_stride(self) -> int:
        """Training tokens between two seeds' starts under ``vary=data``: the most any arm's run reads, so
        the seeds' windows do not overlap while the corpus holds them all (the stream wraps after it)."""
        cfgs = [self.config(a, self.seeds[0]) for a in self.arms]
        return max(c.train.iterations * step_tokens(c) for c in cfgs)

    def schedules(self, arm: Arm) -> dict[str, float]:
        """What the arm's schedules come to (lengths in steps, the artifact EMA's decay)."""
        return schedules.lengths(self.config(arm, self.seeds[0]))

    def schedule_note(self, arm: Arm) -> str:
        c = self.config(arm, self.seeds[0])
        s = self.schedules(arm)
        how = "by the run's length" if schedules.by_run(c) else "fixed counts"
        return (f"{how} ({c.train.iterations} steps): warmdown {s['warmdown_steps']}, Muon momentum warm-up "
                f"{s['muon_momentum_warmup_steps']}, λ ramp {s['jepa_lambda_warmup_steps'] if c.jepa.active else '-'} "
                f"steps, artifact EMA decay {s['artifact_ema_decay']:.6g}")

    def export_note(self) -> str:
        """The export scheme every run is scored after (the round trip)."""
        e = self.config(self.control, self.seeds[0]).export
        return f"{e.export_scheme}{' with GPTQ' if e.gptq and e.export_scheme == 'int6-lzma' else ''}"

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
            "schedules": {a.name: self.schedules(a) for a in self.arms},
            "export": self.export_note(),
            "vary": self.vary,
            "vary_note": VARY_NOTES[self.vary],
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
    vary: str = "all",
) -> AblationPlan:
    """Resolve every arm's configuration and derive its step budget from the matching rule; ``vary`` says
    what the seeds vary (``VARY_MODES``).

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
    if vary not in VARY_MODES:
        raise AblationError(f"--vary {vary!r}: use one of {', '.join(VARY_MODES)}")
    seed_keys = ("seed", "init_seed", "mask_seed")
    if any(k in _canonical(common or {}) for k in seed_keys) or \
            any(k in _canonical(a.overrides) for a in arms for k in seed_keys):
        raise AblationError("set seeds with --seeds (and what they vary with --vary), not as an override: every "
                            "arm runs every seed")
    if any("data_offset" in _canonical(a.overrides) for a in arms) or \
            (vary in MOVES_DATA and "data_offset" in _canonical(common or {})):
        raise AblationError("data_offset is the same for every arm of a seed (the pairing), and --vary data sets it: "
                            "not an arm's override")
    plan = AblationPlan(preset, list(arms), list(seeds), match, dict(common or {}), {a.name: {} for a in arms},
                        {}, {}, vary=vary)
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
        # The budget is the calibrated step count; the clock only guards against a stalled machine, by a
        # stop that is not the challenge's cap (no GPTQ calibration reserve is taken from it, no schedule
        # follows it), so max_wallclock_seconds is 0.
        plan.derived[a.name] = {"iterations": iters, "warmdown_iters": warm, "warmdown_mode": "steps",
                                "max_wallclock_seconds": 0.0, "guard_seconds": budget * (1.0 + slack)}
        plan.notes[a.name] = (f"{iters} steps = min(iterations, floor({budget:g} s / {step_s:.4f} s per step)), "
                              f"step-based warmdown {warm}, guard {budget * (1 + slack):g} s (guard_seconds: no cap)")
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
            for t in trainers:  # a compiled step compiles here, as before a run's clock (then restored)
                t.warmup(t.warmup_steps)
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
