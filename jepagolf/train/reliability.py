"""The Trainer's reliability half: divergence guard, checkpoints, resume, and stop signals.

Kept apart from loop.py so that the training step stays readable; ``Trainer`` mixes this in and
calls ``init_reliability`` from its constructor. The methods read the trainer's state (model,
target, EMAs, optimizers, stream, step, clock) and never change what a normal step computes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch import Tensor

from jepagolf.train.checkpoint import (
    CheckpointError,
    LoadedCheckpoint,
    checkpoint_dir,
    checkpoint_name,
    save_checkpoint,
)
from jepagolf.train.preempt import Preempted, StopRequest, signal_name
from jepagolf.train.resume import capture_state, restore_state, truncate_metrics

if TYPE_CHECKING:
    from jepagolf.config import Config
    from jepagolf.jepa.target import WeightEMA
    from jepagolf.train.logger import RunLogger
    from jepagolf.train.runtime import Runtime


class TrainingDiverged(RuntimeError):
    """A loss or gradient became non-finite."""


# The terms the divergence guard checks, in the order of its flag vector.
GUARD_TERMS = ("CE loss", "JEPA loss", "gradient norm")


class ReliabilityMixin:
    # Provided by Trainer.
    cfg: Config
    rt: Runtime
    out_dir: Path
    model: torch.nn.Module
    target: torch.nn.Module | None
    artifact_ema: WeightEMA
    optimizers: list[torch.optim.Optimizer]
    logger: RunLogger
    step: int
    elapsed_s: float
    tokens_seen: int

    def init_reliability(self) -> None:
        device = self.rt.device
        self.skipped_steps = 0
        self.training_done = False  # set when the loop ends; a checkpoint taken then resumes at finish()
        self.stop = StopRequest(announce=self.rt.is_main)
        self.stop.on_unarmed = self._stop_outside_loop
        self.last_checkpoint: tuple[int, Path] | None = None  # (step, path written by rank 0)
        self._last_checkpoint_wall = time.monotonic()
        self.resume_notes: list[str] = []
        self.data_fingerprint: dict[str, list[list[object]]] | None = None  # see resume.data_fingerprint
        # First non-finite step seen without a host sync (CUDA): (step, flags, values) on the device.
        self._bad_step = torch.full((), -1, dtype=torch.long, device=device)
        self._bad_flags = torch.zeros(len(GUARD_TERMS), dtype=torch.bool, device=device)
        self._bad_values = torch.zeros(len(GUARD_TERMS), device=device)

    # ----- divergence guard ---------------------------------------------------------------------
    def grad_norm(self) -> Tensor:
        """Global gradient norm before clipping (0-d tensor on the device); clips when grad_clip_norm > 0."""
        clip = self.cfg.optim.grad_clip_norm
        if clip > 0:
            return torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        return torch.nn.utils.get_total_norm(grads)

    def _guard_syncs_every_step(self) -> bool:
        # On CPU a host read is free. On CUDA it stalls the pipeline, so by default the flags are
        # only read at log steps and before every checkpoint; skipping bad steps has to decide
        # before the update, so it reads them every step.
        return self.rt.device.type == "cpu" or self.cfg.train.skip_nonfinite_steps > 0

    def guard(self, stats: dict[str, Tensor], grad_norm: Tensor) -> bool:
        """Check this step's losses and gradient; True when the step must be skipped.

        Raises TrainingDiverged when a bad step is found and no skip is left. Without a per-step
        sync, the first bad step is recorded on the device and reported by ``check_diverged``.
        """
        zero = torch.zeros((), device=grad_norm.device)
        values = torch.stack([stats["ce_loss"].float(), stats.get("jepa_loss", zero).float(),
                              grad_norm.detach().float()])
        flags = ~torch.isfinite(values)
        if not self._guard_syncs_every_step():
            first = flags.any() & (self._bad_step < 0)
            self._bad_step = torch.where(first, self.step + 1, self._bad_step)
            self._bad_flags = torch.where(first, flags, self._bad_flags)
            self._bad_values = torch.where(first, values, self._bad_values)
            return False
        if self.rt.distributed:
            # Losses are per rank; every rank must take the same decision.
            reduced = flags.float()
            dist.all_reduce(reduced, op=dist.ReduceOp.MAX)
            flags = reduced.bool()
        if not bool(flags.any()):
            return False
        msg = self._divergence_message(self.step + 1, flags.tolist(), values.tolist())
        limit = self.cfg.train.skip_nonfinite_steps
        if self.skipped_steps >= limit:
            if limit:
                msg += f"; already skipped {self.skipped_steps} bad step(s), the limit (skip_nonfinite_steps)"
            raise TrainingDiverged(msg + self._divergence_advice())
        self.skipped_steps += 1
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        self.logger.metrics("skip", {"step": self.step + 1, "reason": msg, "skipped_steps": self.skipped_steps})
        return True

    def check_diverged(self) -> None:
        """Raise if a bad step was recorded on the device (one host sync; every rank agrees)."""
        if self._guard_syncs_every_step():
            return
        bad = self._bad_step.clone().float()
        if self.rt.distributed:
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        if bad.item() < 0:
            return
        step = int(self._bad_step.item())
        if step < 0:
            raise TrainingDiverged(f"another rank saw a non-finite loss or gradient by step {self.step}"
                                   + self._divergence_advice())
        msg = self._divergence_message(step, self._bad_flags.tolist(), self._bad_values.tolist())
        raise TrainingDiverged(msg + f" (detected at step {self.step})" + self._divergence_advice())

    def _divergence_message(self, step: int, flags: list[bool], values: list[float]) -> str:
        terms = [(term, f, v) for term, f, v in zip(GUARD_TERMS, flags, values, strict=True)
                 if term != "JEPA loss" or self.target is not None]
        bad = [f"{term} = {v}" for term, f, v in terms if f]
        good = [f"{term} = {v:.4g}" for term, f, v in terms if not f]
        return f"non-finite {', '.join(bad)} at step {step}" + (f" ({', '.join(good)})" if good else "")

    def _divergence_advice(self) -> str:
        last = self.last_checkpoint
        fix = "start a new run with lower learning rates or jepa_lambda, or with grad_clip_norm set"
        if last is None:
            return f". No checkpoint was written (set checkpoint_every_steps to keep one); {fix}"
        return (f". The last good checkpoint (step {last[0]}) is kept: resume it with `jepagolf train --resume "
                f"{self.out_dir} --set skip_nonfinite_steps=N` to skip up to N bad steps, or {fix}")

    # ----- checkpoints --------------------------------------------------------------------------
    def checkpoint_now(self, reason: str) -> None:
        """Write the full training state (rank 0) after checking it is finite; all ranks agree."""
        if self.last_checkpoint is not None and self.last_checkpoint[0] == self.step:
            return
        self.check_diverged()  # never save a state that a non-finite step has already touched
        t0 = time.perf_counter()
        path = checkpoint_dir(self.out_dir) / checkpoint_name(self.step)  # what rank 0 writes
        error: CheckpointError | None = None
        if self.rt.is_main:
            tensors, meta = capture_state(self)
            try:
                path, nbytes = save_checkpoint(self.out_dir, self.step, tensors, meta,
                                               self.cfg.train.checkpoint_keep)
                self.logger.line(f"checkpoint:{path} step:{self.step} reason:{reason} bytes:{nbytes} "
                                 f"write_s:{time.perf_counter() - t0:.2f}", console=reason != "interval")
            except CheckpointError as e:
                error = e
        if self.rt.distributed:
            ok = torch.tensor([float(error is None)], device=self.rt.device)
            dist.broadcast(ok, src=0)  # a failed write on rank 0 must stop every rank
            if not ok.item() and error is None:
                raise CheckpointError(f"rank 0 could not write the checkpoint for step {self.step}; see its log")
        if error is not None:
            raise error
        self.last_checkpoint = (self.step, path)
        self._last_checkpoint_wall = time.monotonic()

    def restore(self, ckpt: LoadedCheckpoint, warnings: list[str]) -> None:
        restore_state(self, ckpt)
        self.last_checkpoint = (self.step, ckpt.path)
        dropped = truncate_metrics(self.out_dir, ckpt.meta) if self.rt.is_main else 0
        notes = list(warnings)
        notes.append(f"resume: from {ckpt.path} at step {self.step} (train_time_s {self.elapsed_s:.1f}, tokens "
                     f"{self.tokens_seen}); dropped {dropped} metrics.jsonl row(s) written after that step, "
                     "they are logged again below")
        if ckpt.meta.get("world_size") != self.rt.world_size:
            notes.append(f"resume: world size {ckpt.meta.get('world_size')} -> {self.rt.world_size}: same "
                         "data and masks, but gradients are summed in another order (not bitwise)")
        self.resume_notes = notes

    def _resume_hint(self) -> str:
        hint = f"jepagolf train --resume {self.out_dir}"
        if self.rt.distributed:
            return f"`{hint}` (under torchrun: the same launcher with `train --resume {self.out_dir}`)"
        return f"`{hint}`"

    def _stop_outside_loop(self, signum: int) -> None:
        last = self.last_checkpoint
        where = (f"the last checkpoint (step {last[0]}) is kept; resume with {self._resume_hint()}"
                 if last is not None else "no checkpoint was written, so the run cannot be resumed")
        raise Preempted(f"stopped by {signal_name(signum)} outside the training steps; {where}", signum)
