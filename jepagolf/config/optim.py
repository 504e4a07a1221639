"""The optimizer section (``OptimConfig``)."""

from __future__ import annotations

from dataclasses import dataclass

from jepagolf.config.bounds import ConfigError, _check_types, _positive


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

    def __post_init__(self) -> None:
        _check_types(self)
        _positive(self, "matrix_lr", "scalar_lr", "tied_embed_lr", "muon_backend_steps")
        if self.warmdown_iters < 0 or self.muon_momentum_warmup_steps < 0:
            raise ConfigError("warmdown_iters and muon_momentum_warmup_steps must be >= 0")
        if not 0.0 <= self.artifact_ema_decay < 1.0:
            raise ConfigError(f"artifact_ema_decay={self.artifact_ema_decay} must be in [0, 1)")
        if self.warmdown_mode not in ("auto", "steps", "wallclock", "reference"):
            raise ConfigError(f"warmdown_mode={self.warmdown_mode!r}: use auto, steps, wallclock or reference")
