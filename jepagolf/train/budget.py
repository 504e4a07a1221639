"""The wall-clock budget of a run: everything that reads training data (the steps and the GPTQ
calibration) finishes within max_wallclock_seconds, and the run says how the seconds were spent.

The calibration reads training data, so under the challenge's rules it is training time: the run must
stop training early enough for it to finish within the cap. :func:`measure_calibration_reserve` times
it before the clock starts (:func:`jepagolf.export.gptq.estimate_calibration_seconds`), the
:class:`Budget` turns the reserve into the training seconds left and decides when time is up.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from jepagolf.config import Config, ConfigError
from jepagolf.export.gptq import estimate_calibration_seconds
from jepagolf.train.runtime import Runtime, sdpa_context

# The GPTQ calibration reserve is the measured estimate times this: room for the timing noise of a shared
# host, so that training plus calibration stays under the cap (the test runs on 2 busy CPU cores).
CALIBRATION_MARGIN = 1.5


def measure_calibration_reserve(gpt: nn.Module, cfg: Config, data_dir: Path, rt: Runtime) -> float:
    """Seconds of the cap to keep for GPTQ calibration, measured (0 without a cap or without GPTQ).

    Timed on an uncompiled copy of ``gpt`` (what gets calibrated at the end) and agreed over the ranks
    (the slowest one's figure), since every rank decides when to stop."""
    t = cfg.train
    if t.max_wallclock_seconds <= 0 or not cfg.export.gptq:
        return 0.0
    probe = copy.deepcopy(gpt)
    with sdpa_context(rt.device):
        estimate = estimate_calibration_seconds(probe, cfg, data_dir)
    del probe
    reserve = rt.agreed_max(CALIBRATION_MARGIN * estimate)
    if reserve >= t.max_wallclock_seconds:
        raise ConfigError(
            f"max_wallclock_seconds={t.max_wallclock_seconds:g} leaves no training time: GPTQ calibration "
            f"on {cfg.export.gptq_calib_tokens} training tokens needs a measured {reserve:.1f} s of it; raise "
            "max_wallclock_seconds, lower gptq_calib_tokens, or set gptq=false"
        )
    return reserve


@dataclass(frozen=True)
class Budget:
    """The cap (``cap_s``, 0: none), the part of it kept for the GPTQ calibration, and ablate/ladder's guard
    (``guard_s``, 0: none): an operational stop, not the challenge's cap, so no reserve is kept for it."""

    cap_s: float
    calibration_reserve_s: float = 0.0
    guard_s: float = 0.0

    @property
    def train_s(self) -> float:
        """Training seconds under the cap: the cap less the calibration reserve."""
        return self.cap_s - self.calibration_reserve_s

    def time_up(self, elapsed_s: float, steps: int) -> bool:
        """Without a calibration reserve, time is up once the elapsed training time reaches the cap (the
        reference trainer's rule: the last step may end past it). With one, time is up when another step
        at the mean pace so far would end past the training budget (the cap less the reserve), so that
        training plus calibration finish within the cap. The guard stops once the training seconds reach it."""
        next_step_s = elapsed_s / max(steps, 1) if self.calibration_reserve_s else 0.0
        time_up = self.cap_s > 0 and elapsed_s + next_step_s >= self.train_s
        return time_up or 0 < self.guard_s <= elapsed_s  # ablate/ladder's guard: not the cap

    def summary(self, train_s: float, calibration_s: float) -> dict[str, float]:
        """How the seconds were spent: training steps, then GPTQ calibration (the other use of training
        data), against the cap (0: none) and the reserve measured for the calibration."""
        return {"calibration_seconds": calibration_s,
                "budget_seconds": train_s + calibration_s,
                "calibration_reserve_seconds": self.calibration_reserve_s,
                "max_wallclock_seconds": self.cap_s}

    def line(self, train_s: float, calibration_s: float) -> str:
        b = self.summary(train_s, calibration_s)
        cap = b["max_wallclock_seconds"]
        line = (f"budget train_seconds:{train_s:.2f} calibration_seconds:{b['calibration_seconds']:.2f} "
                f"total_seconds:{b['budget_seconds']:.2f} cap_seconds:{cap:g} "
                f"calibration_reserve_seconds:{b['calibration_reserve_seconds']:.2f}")
        if cap > 0 and b["budget_seconds"] > cap:
            line += f" warning: {b['budget_seconds'] - cap:.2f} s over the cap"
        return line
