"""Progress of a long ablation or ladder: one line per run with the elapsed time and an estimate of the time
left, from the calibrated per-run times scaled by how the runs trained so far compared with theirs.

Pure arithmetic (``eta_seconds``, ``format_duration``) plus a small tracker; it prints nothing itself
(the caller's log does: one line per run, quiet enough for a log file)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence


def eta_seconds(elapsed_s: float, done_estimates: Sequence[float], left_estimates: Sequence[float]) -> float:
    """Seconds left: the estimates of the runs still to train, times the ratio of the time the trained runs
    took (``elapsed_s``) to their own estimates (1 before any has trained, or when the estimates say 0)."""
    planned = sum(done_estimates)
    ratio = elapsed_s / planned if planned > 0 and elapsed_s > 0 else 1.0
    return max(0.0, sum(left_estimates) * ratio)


def format_duration(seconds: float) -> str:
    """'45 s', '12.5 min', '2 h 05 min'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min"


class Progress:
    """Runs 0..N-1 with an estimated cost each: calibrated wall seconds, or (``seconds=False``) relative
    units such as training FLOPs, which only the runs trained so far turn into time (all 1.0 when unknown:
    then the estimate is the mean time of the runs trained so far). A run found finished earlier is
    ``skip``ped: it leaves the estimate without counting as time spent."""

    def __init__(self, estimates: Sequence[float], clock: Callable[[], float] = time.monotonic, *,
                 seconds: bool = True) -> None:
        self.estimates = [float(e) for e in estimates]
        self.seconds = seconds
        self.clock = clock
        self.start = clock()
        self.trained: list[int] = []
        self.skipped: set[int] = set()
        self.spent_s = 0.0  # wall seconds of the trained runs (not of skips, calibration or reporting)
        self._run_start: float | None = None

    @property
    def total(self) -> int:
        return len(self.estimates)

    def skip(self, i: int) -> None:
        self.skipped.add(i)

    def begin(self, i: int) -> None:
        self._run_start = self.clock()

    def end(self, i: int) -> None:
        if self._run_start is not None:
            self.spent_s += self.clock() - self._run_start
            self._run_start = None
        self.trained.append(i)

    def left_s(self, current: int | None = None) -> float | None:
        """Estimated seconds left, the run ``current`` (about to start) included; None while the estimates
        are relative units and no run has trained to give them a time."""
        if not self.seconds and not self.trained:
            return None
        done = set(self.trained) | self.skipped
        left = [e for k, e in enumerate(self.estimates) if k not in done]
        return eta_seconds(self.spent_s, [self.estimates[k] for k in self.trained], left)

    def line(self, i: int) -> str:
        """'[k/N] 3.2 min in, ~12.5 min left' for run i (0-based) about to start."""
        elapsed = self.clock() - self.start
        return f"[{i + 1}/{self.total}] {format_duration(elapsed)} in, {self.left_text(i)}"

    def left_text(self, current: int | None = None) -> str:
        left = self.left_s(current)
        return "time left known after the first run" if left is None else f"~{format_duration(left)} left"
