"""The optimizer section (``OptimConfig``)."""

from __future__ import annotations

from dataclasses import dataclass

from jepagolf.config.bounds import ConfigError, _check_types, _fraction, _positive


@dataclass
class OptimConfig:
    matrix_lr: float = 0.04
    """Muon learning rate for 2-D hidden matrices (predictor included)."""
    scalar_lr: float = 0.04
    """Adam learning rate for vectors, scalars and control tensors (mask_emb included)."""
    tied_embed_lr: float = 0.05
    """Adam learning rate for the tied embedding and the BigramHash table."""
    muon_momentum: float = 0.95
    """Muon momentum after warm-up."""
    muon_momentum_warmup_start: float = 0.85
    """Muon momentum at step 0."""
    muon_momentum_warmup_steps: int = 500
    """Steps over which Muon momentum rises to muon_momentum."""
    muon_backend_steps: int = 5
    """Newton-Schulz iterations."""
    beta1: float = 0.9
    beta2: float = 0.95
    adam_eps: float = 1e-8
    warmdown_iters: int = 1200
    """Linear LR warmdown length in steps (converted to wall-clock when a cap is set)."""
    warmdown_mode: str = "auto"
    """auto: wall-clock warmdown when max_wallclock_seconds > 0 (and by steps if `iterations` comes
    first), else by steps | steps: always over the last warmdown_iters of `iterations`, even under a cap
    (the cap still stops the run; ablations use this with a calibrated step count) | wallclock: as auto,
    requires a cap | reference: the reference trainer's rule, by the clock only under a cap (a run that
    `iterations` ends first gets no warmdown), by steps without one."""
    grad_clip_norm: float = 0.0
    """Clip the global gradient norm; 0 disables."""
    artifact_ema_decay: float = 0.9999
    """Decay of the exported weight EMA; warmed up as min(d, (1+t)/(10+t))."""
    schedule_scale: str = "steps"
    """steps: warmdown_iters, muon_momentum_warmup_steps, jepa_lambda_warmup_steps and artifact_ema_decay
    as given (the challenge presets) | run: each set by the run's own length, so that a run of any length
    keeps the same shape: warmdown_frac, muon_momentum_warmup_frac and jepa_lambda_warmup_frac of its
    steps (``iterations``; under a wall-clock cap also of its time budget, whichever is ahead), and an
    artifact EMA of horizon artifact_ema_horizon_frac x its steps (decay 1 - 1/horizon; 0 stays off). The
    target EMA's momentum follows the run's progress in both."""
    warmdown_frac: float = 0.25
    """With schedule_scale=run: the LR warmdown's share of the run (v3: 1200 of ~4,600-10,700 steps)."""
    muon_momentum_warmup_frac: float = 0.1
    """With schedule_scale=run: the Muon momentum warm-up's share of the run (v3: 500 of ~4,600 steps)."""
    artifact_ema_horizon_frac: float = 1.0
    """With schedule_scale=run: the artifact EMA's horizon 1/(1 - decay) as a multiple of the run's steps
    (v3: 10,000 steps, about its run; at >= 1/9 the warm-up (1+t)/(10+t) decides, as it does in v3)."""

    def __post_init__(self) -> None:
        _check_types(self)
        _positive(self, "matrix_lr", "scalar_lr", "tied_embed_lr", "muon_backend_steps")
        if self.warmdown_iters < 0 or self.muon_momentum_warmup_steps < 0:
            raise ConfigError("warmdown_iters and muon_momentum_warmup_steps must be >= 0")
        if not 0.0 <= self.artifact_ema_decay < 1.0:
            raise ConfigError(f"artifact_ema_decay={self.artifact_ema_decay} must be in [0, 1)")
        if self.warmdown_mode not in ("auto", "steps", "wallclock", "reference"):
            raise ConfigError(f"warmdown_mode={self.warmdown_mode!r}: use auto, steps, wallclock or reference")
        if self.schedule_scale not in ("steps", "run"):
            raise ConfigError(f"schedule_scale={self.schedule_scale!r}: use steps (the lengths as given) or run "
                              "(fractions of the run's length)")
        _fraction(self, "warmdown_frac", "muon_momentum_warmup_frac")
        if not 0.0 <= self.artifact_ema_horizon_frac <= 100.0:
            raise ConfigError(f"artifact_ema_horizon_frac={self.artifact_ema_horizon_frac} must be in [0, 100]")
