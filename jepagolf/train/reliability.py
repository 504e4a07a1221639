"""The trainer's reliability parts, as objects the Trainer holds and calls: the divergence guard
(``DivergenceGuard``) and the checkpoints of a run (``Checkpoints``: writing, rotation, the last good one,
the resume hint and what a stop signal outside the steps says). Preemption itself is
:class:`jepagolf.train.preempt.StopRequest`.

Each gets what it needs when it is built or called (the device, the process group's shape, the settings,
the run folder, the logger, the state to save); none reads the trainer. None changes what a normal step
computes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from jepagolf.train.checkpoint import CheckpointError, checkpoint_dir, checkpoint_name, save_checkpoint
from jepagolf.train.logger import RunLogger
from jepagolf.train.preempt import Preempted, signal_name


class TrainingDiverged(RuntimeError):
    """A loss or gradient became non-finite."""


# The terms the divergence guard checks, in the order of its flag vector.
GUARD_TERMS = ("CE loss", "JEPA loss", "gradient norm")


class DivergenceGuard:
    """Checks every step's losses and gradient norm for NaN / inf.

    On CPU, or when bad steps may be skipped (``skip_limit`` > 0), the flags are read every step. On
    CUDA a host read stalls the pipeline, so otherwise the first bad step is recorded on the device and
    ``check_diverged`` (called at log steps and before every checkpoint) reports it. ``advice`` gives the
    sentence appended to every divergence error (what can be resumed, how to retry).
    """

    def __init__(self, device: torch.device, *, distributed: bool, skip_limit: int, report_jepa: bool,
                 advice: Callable[[], str]) -> None:
        self.device, self.distributed, self.skip_limit = device, distributed, skip_limit
        self.report_jepa = report_jepa  # name the JEPA loss in messages (runs with an EMA target)
        self.advice = advice
        self.skipped_steps = 0
        # First non-finite step seen without a host sync (CUDA): (step, flags, values) on the device.
        self._bad_step = torch.full((), -1, dtype=torch.long, device=device)
        self._bad_flags = torch.zeros(len(GUARD_TERMS), dtype=torch.bool, device=device)
        self._bad_values = torch.zeros(len(GUARD_TERMS), device=device)

    def syncs_every_step(self) -> bool:
        # On CPU a host read is free. On CUDA it stalls the pipeline, so by default the flags are
        # only read at log steps and before every checkpoint; skipping bad steps has to decide
        # before the update, so it reads them every step.
        return self.device.type == "cpu" or self.skip_limit > 0

    def check(self, step: int, stats: dict[str, Tensor], grad_norm: Tensor) -> str | None:
        """Check 1-based ``step``'s losses and gradient; the reason when the step must be skipped, else None.

        Raises TrainingDiverged when a bad step is found and no skip is left. Without a per-step
        sync, the first bad step is recorded on the device and reported by ``check_diverged``.
        """
        zero = torch.zeros((), device=grad_norm.device)
        values = torch.stack([stats["ce_loss"].float(), stats.get("jepa_loss", zero).float(),
                              grad_norm.detach().float()])
        flags = ~torch.isfinite(values)
        if not self.syncs_every_step():
            first = flags.any() & (self._bad_step < 0)
            self._bad_step = torch.where(first, step, self._bad_step)
            self._bad_flags = torch.where(first, flags, self._bad_flags)
            self._bad_values = torch.where(first, values, self._bad_values)
            return None
        if self.distributed:
            # Losses are per rank; every rank must take the same decision.
            reduced = flags.float()
            dist.all_reduce(reduced, op=dist.ReduceOp.MAX)
            flags = reduced.bool()
        if not bool(flags.any()):
            return None
        msg = self.message(step, flags.tolist(), values.tolist())
        if self.skipped_steps >= self.skip_limit:
            if self.skip_limit:
                msg += f"; already skipped {self.skipped_steps} bad step(s), the limit (skip_nonfinite_steps)"
            raise TrainingDiverged(msg + self.advice())
        self.skipped_steps += 1
        return msg

    def check_diverged(self, step: int) -> None:
        """Raise if a bad step was recorded on the device by ``step`` (one host sync; every rank agrees)."""
        if self.syncs_every_step():
            return
        bad = self._bad_step.clone().float()
        if self.distributed:
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        if bad.item() < 0:
            return
        first = int(self._bad_step.item())
        if first < 0:
            raise TrainingDiverged(f"another rank saw a non-finite loss or gradient by step {step}" + self.advice())
        msg = self.message(first, self._bad_flags.tolist(), self._bad_values.tolist())
        raise TrainingDiverged(msg + f" (detected at step {step})" + self.advice())

    def message(self, step: int, flags: list[bool], values: list[float]) -> str:
        terms = [(term, f, v) for term, f, v in zip(GUARD_TERMS, flags, values, strict=True)
                 if term != "JEPA loss" or self.report_jepa]
        bad = [f"{term} = {v}" for term, f, v in terms if f]
        good = [f"{term} = {v:.4g}" for term, f, v in terms if not f]
        return f"non-finite {', '.join(bad)} at step {step}" + (f" ({', '.join(good)})" if good else "")


class Checkpoints:
    """A run's checkpoints: written by rank 0 (``save``; every rank learns whether it worked), the oldest
    beyond ``keep`` rotated away, the last good one remembered for messages and the resume hint."""

    def __init__(self, out_dir: Path, *, keep: int, every_seconds: float, is_main: bool, distributed: bool,
                 device: torch.device, logger: RunLogger) -> None:
        self.out_dir, self.keep, self.every_seconds = out_dir, keep, every_seconds
        self.is_main, self.distributed, self.device, self.logger = is_main, distributed, device, logger
        self.last: tuple[int, Path] | None = None  # (step, path written by rank 0)
        self._last_wall = time.monotonic()

    def holds(self, step: int) -> bool:
        """Whether the last checkpoint is of ``step`` already."""
        return self.last is not None and self.last[0] == step

    def due_by_clock(self) -> bool:
        return self.every_seconds > 0 and time.monotonic() - self._last_wall >= self.every_seconds

    def save(self, step: int, capture: Callable[[], tuple[dict[str, Tensor], dict[str, Any]]], reason: str) -> None:
        """Write ``capture()`` (called on rank 0 only) as the checkpoint of ``step``; all ranks agree."""
        t0 = time.perf_counter()
        path = checkpoint_dir(self.out_dir) / checkpoint_name(step)  # what rank 0 writes
        error: CheckpointError | None = None
        if self.is_main:
            tensors, meta = capture()
            try:
                path, nbytes = save_checkpoint(self.out_dir, step, tensors, meta, self.keep)
                self.logger.line(f"checkpoint:{path} step:{step} reason:{reason} bytes:{nbytes} "
                                 f"write_s:{time.perf_counter() - t0:.2f}", console=reason != "interval")
            except CheckpointError as e:
                error = e
        if self.distributed:
            ok = torch.tensor([float(error is None)], device=self.device)
            dist.broadcast(ok, src=0)  # a failed write on rank 0 must stop every rank
            if not ok.item() and error is None:
                raise CheckpointError(f"rank 0 could not write the checkpoint for step {step}; see its log")
        if error is not None:
            raise error
        self.last = (step, path)
        self._last_wall = time.monotonic()

    def restored(self, step: int, path: Path) -> None:
        """The run continues from the checkpoint of ``step`` at ``path``: it is the last good one."""
        self.last = (step, path)

    def divergence_advice(self) -> str:
        last = self.last
        fix = "start a new run with lower learning rates or jepa_lambda, or with grad_clip_norm set"
        if last is None:
            return f". No checkpoint was written (set checkpoint_every_steps to keep one); {fix}"
        return (f". The last good checkpoint (step {last[0]}) is kept: resume it with `jepagolf train --resume "
                f"{self.out_dir} --set skip_nonfinite_steps=N` to skip up to N bad steps, or {fix}")

    def resume_hint(self) -> str:
        hint = f"jepagolf train --resume {self.out_dir}"
        if self.distributed:
            return f"`{hint}` (under torchrun: the same launcher with `train --resume {self.out_dir}`)"
        return f"`{hint}`"

    def stop_outside_loop(self, signum: int) -> None:
        """A stop signal outside the training steps (StopRequest.on_unarmed): stop at once, saying what
        can be resumed."""
        last = self.last
        where = (f"the last checkpoint (step {last[0]}) is kept; resume with {self.resume_hint()}"
                 if last is not None else "no checkpoint was written, so the run cannot be resumed")
        raise Preempted(f"stopped by {signal_name(signum)} outside the training steps; {where}", signum)
