"""Schedules as pure functions of (step, elapsed training seconds): a resumed run needs no replay."""

from __future__ import annotations

from jepagolf.config import Config


def progress(cfg: Config, step: int, elapsed_s: float, budget_s: float | None = None) -> float:
    """Training progress in [0, 1]: wall-clock fraction when a cap is set (or steps, whichever is ahead).

    ``budget_s``: the training seconds the clock-based schedules aim at, default the cap; a run that
    reserves part of the cap for GPTQ calibration passes what is left (``Trainer.train_budget_s``)."""
    t = cfg.train
    budget = t.max_wallclock_seconds if budget_s is None else budget_s
    frac = step / t.iterations
    if t.max_wallclock_seconds > 0:
        frac = max(frac, elapsed_s / budget)
    return min(max(frac, 0.0), 1.0)


def lr_scale(cfg: Config, step: int, elapsed_s: float, budget_s: float | None = None) -> float:
    """Multiplier on every base LR: 1, then a linear warmdown to 0 over the last warmdown_iters steps.

    With a wall-clock cap (``warmdown_mode`` auto or wallclock) the warmdown length is converted to
    seconds with the mean step time so far (as the parameter-golf baseline does), so the run warms down
    before the cap cuts it off; the step limit still applies, and the smaller of the two multipliers
    wins. ``warmdown_mode=steps`` ignores the clock: the warmdown ends at ``iterations`` however slow
    the hardware, so set ``iterations`` to what the cap allows (``jepagolf ablate --match wallclock``
    does this from a measured step time). ``warmdown_mode=reference`` is the reference trainer's rule:
    under a cap the clock alone decides. ``budget_s`` as in :func:`progress`.
    """
    t, w = cfg.train, cfg.optim.warmdown_iters
    budget = t.max_wallclock_seconds if budget_s is None else budget_s
    if w == 0:
        return 1.0
    capped = t.max_wallclock_seconds > 0
    scale = 1.0 if capped and cfg.optim.warmdown_mode == "reference" else min(1.0, max(t.iterations - step, 0) / w)
    if cfg.optim.warmdown_mode != "steps" and capped and step > 0:
        warmdown_s = w * elapsed_s / step
        remaining_s = max(budget - elapsed_s, 0.0)
        if remaining_s <= warmdown_s:
            scale = min(scale, remaining_s / max(warmdown_s, 1e-9))
    return scale


def muon_momentum(cfg: Config, step: int) -> float:
    o = cfg.optim
    if o.muon_momentum_warmup_steps == 0:
        return o.muon_momentum
    frac = min(step / o.muon_momentum_warmup_steps, 1.0)
    return (1 - frac) * o.muon_momentum_warmup_start + frac * o.muon_momentum


def jepa_lambda(cfg: Config, step: int, elapsed_s: float = 0.0, budget_s: float | None = None) -> float:
    """lambda ramped linearly over the first warm-up steps (step 0 already gets a small weight); with
    ``jepa_lambda_schedule=warmdown`` also multiplied by the LR warmdown factor, so it anneals to 0 with it.
    ``budget_s`` as in :func:`progress`."""
    j = cfg.jepa
    if not j.active:
        return 0.0
    lam = j.jepa_lambda
    if j.jepa_lambda_warmup_steps:
        lam = j.jepa_lambda * min(1.0, (step + 1) / j.jepa_lambda_warmup_steps)
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
