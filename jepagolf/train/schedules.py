"""Schedules as pure functions of (step, elapsed training seconds): a resumed run needs no replay.

With ``schedule_scale=steps`` (the challenge presets) every length is the count the config gives; with
``schedule_scale=run`` (the research presets, ablate and ladder) each is a fraction of the run's own
length, so that a run of 1,000 steps and one of 10,000 have the same shape (``lengths`` says what they
come to for a config)."""

from __future__ import annotations

from jepagolf.config import Config


def by_run(cfg: Config) -> bool:
    """Whether the schedules scale with the run's length (``schedule_scale=run``)."""
    return cfg.optim.schedule_scale == "run"


def _run_steps(cfg: Config, frac: float) -> int:
    return round(frac * cfg.train.iterations)


def warmdown_steps(cfg: Config) -> int:
    """The LR warmdown's length in steps."""
    return _run_steps(cfg, cfg.optim.warmdown_frac) if by_run(cfg) else cfg.optim.warmdown_iters


def muon_warmup_steps(cfg: Config) -> int:
    """The Muon momentum warm-up's length in steps."""
    o = cfg.optim
    return _run_steps(cfg, o.muon_momentum_warmup_frac) if by_run(cfg) else o.muon_momentum_warmup_steps


def lambda_warmup_steps(cfg: Config) -> int:
    """The JEPA lambda ramp's length in steps."""
    j = cfg.jepa
    return _run_steps(cfg, j.jepa_lambda_warmup_frac) if by_run(cfg) else j.jepa_lambda_warmup_steps


def artifact_ema_decay(cfg: Config) -> float:
    """Decay of the exported weight EMA: the config's, or with ``schedule_scale=run`` 1 - 1/H for a horizon
    of H = artifact_ema_horizon_frac x the run's steps (0, the last weights, stays 0)."""
    o = cfg.optim
    if not by_run(cfg) or o.artifact_ema_decay == 0:
        return o.artifact_ema_decay
    horizon = _run_steps(cfg, o.artifact_ema_horizon_frac)
    return 1.0 - 1.0 / horizon if horizon >= 1 else 0.0


def lengths(cfg: Config) -> dict[str, float]:
    """What the schedules come to for this config: lengths in steps, the artifact EMA's decay."""
    return {"warmdown_steps": warmdown_steps(cfg), "muon_momentum_warmup_steps": muon_warmup_steps(cfg),
            "jepa_lambda_warmup_steps": lambda_warmup_steps(cfg), "artifact_ema_decay": artifact_ema_decay(cfg)}


def _budget(cfg: Config, budget_s: float | None) -> float:
    return cfg.train.max_wallclock_seconds if budget_s is None else budget_s


def _ramp(cfg: Config, done: float, length: int, frac: float, elapsed_s: float, budget_s: float | None) -> float:
    """How far a warm-up of ``length`` steps is, in [0, 1], at ``done`` steps; with ``schedule_scale=run``
    under a cap also by the clock (``frac`` of the time budget), whichever is ahead."""
    r = done / length
    if by_run(cfg) and cfg.train.max_wallclock_seconds > 0 and frac > 0:
        r = max(r, elapsed_s / (frac * _budget(cfg, budget_s)))
    return min(r, 1.0)


def progress(cfg: Config, step: int, elapsed_s: float, budget_s: float | None = None) -> float:
    """Training progress in [0, 1]: wall-clock fraction when a cap is set (or steps, whichever is ahead).

    ``budget_s``: the training seconds the clock-based schedules aim at, default the cap; a run that
    reserves part of the cap for GPTQ calibration passes what is left (``Trainer.train_budget_s``)."""
    t = cfg.train
    budget = _budget(cfg, budget_s)
    frac = step / t.iterations
    if t.max_wallclock_seconds > 0:
        frac = max(frac, elapsed_s / budget)
    return min(max(frac, 0.0), 1.0)


def lr_scale(cfg: Config, step: int, elapsed_s: float, budget_s: float | None = None) -> float:
    """Multiplier on every base LR: 1, then a linear warmdown to 0 over the last warmdown steps.

    With a wall-clock cap (``warmdown_mode`` auto or wallclock) the warmdown length is converted to
    seconds with the mean step time so far (as the parameter-golf baseline does), or with
    ``schedule_scale=run`` taken as warmdown_frac of the time budget, so the run warms down
    before the cap cuts it off; the step limit still applies, and the smaller of the two multipliers
    wins. ``warmdown_mode=steps`` ignores the clock: the warmdown ends at ``iterations`` however slow
    the hardware, so set ``iterations`` to what the cap allows (``jepagolf ablate --match wallclock``
    does this from a measured step time). ``warmdown_mode=reference`` is the reference trainer's rule:
    under a cap the clock alone decides. ``budget_s`` as in :func:`progress`.
    """
    t, w = cfg.train, warmdown_steps(cfg)
    budget = _budget(cfg, budget_s)
    if w == 0:
        return 1.0
    capped = t.max_wallclock_seconds > 0
    scale = 1.0 if capped and cfg.optim.warmdown_mode == "reference" else min(1.0, max(t.iterations - step, 0) / w)
    if cfg.optim.warmdown_mode != "steps" and capped and step > 0:
        warmdown_s = cfg.optim.warmdown_frac * budget if by_run(cfg) else w * elapsed_s / step
        remaining_s = max(budget - elapsed_s, 0.0)
        if remaining_s <= warmdown_s:
            scale = min(scale, remaining_s / max(warmdown_s, 1e-9))
    return scale


def muon_momentum(cfg: Config, step: int, elapsed_s: float = 0.0, budget_s: float | None = None) -> float:
    o = cfg.optim
    w = muon_warmup_steps(cfg)
    if w == 0:
        return o.muon_momentum
    frac = _ramp(cfg, step, w, o.muon_momentum_warmup_frac, elapsed_s, budget_s)
    return (1 - frac) * o.muon_momentum_warmup_start + frac * o.muon_momentum


def jepa_lambda(cfg: Config, step: int, elapsed_s: float = 0.0, budget_s: float | None = None) -> float:
    """lambda ramped linearly over the first warm-up steps (step 0 already gets a small weight); with
    ``jepa_lambda_schedule=warmdown`` also multiplied by the LR warmdown factor, so it anneals to 0 with it.
    ``budget_s`` as in :func:`progress`."""
    j = cfg.jepa
    if not j.active:
        return 0.0
    lam = j.jepa_lambda
    w = lambda_warmup_steps(cfg)
    if w:
        lam = j.jepa_lambda * _ramp(cfg, step + 1, w, j.jepa_lambda_warmup_frac, elapsed_s, budget_s)
    if j.jepa_lambda_schedule == "warmdown":
        lam *= lr_scale(cfg, step, elapsed_s, budget_s)
    return lam


def jepa_step_weight(cfg: Config, step: int, elapsed_s: float = 0.0, budget_s: float | None = None) -> float:
    """Weight of the JEPA loss at this step: lambda(step) * k on every k-th step (k = jepa_every), else 0.

    Scaling by k keeps the expected gradient of lambda * jepa unchanged while the JEPA passes run on
    one step in k. A weight of 0 means the step skips the JEPA passes altogether.
    """
    k = cfg.jepa.jepa_every
    if not cfg.jepa.active or step % k:
        return 0.0
    return jepa_lambda(cfg, step, elapsed_s, budget_s) * k
