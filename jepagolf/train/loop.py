"""The training loop: data -> (CE + JEPA) step -> EMA updates -> validation, under the wall-clock budget.

One ``Trainer`` per run (built by :func:`jepagolf.train.run.train` after the set-up). ``train_step`` is one
optimizer step (all micro-batches); ``run`` drives the steps, the clock (stopped during validation),
logging, the divergence guard, checkpoints and stop signals (the reliability objects the trainer holds),
and hands the trained weights to the finish (:mod:`jepagolf.train.finish`).
"""

from __future__ import annotations

import copy
import json
import signal
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torch.autograd.profiler import record_function
from torch.nn.parallel import DistributedDataParallel as DDP

from jepagolf.config import Config, ConfigError
from jepagolf.data.corpus import DatasetPaths
from jepagolf.data.shards import TokenStream, atomic_write, list_shards
from jepagolf.jepa.diagnostics import gradient_share
from jepagolf.jepa.masking import jepa_rows
from jepagolf.jepa.objective import JepaLM, noise_seed
from jepagolf.jepa.target import WeightEMA, ema_momentum, make_target_encoder, update_target
from jepagolf.model.eval import EvalResult
from jepagolf.model.gpt import GPT, count_params
from jepagolf.optim.groups import build_optimizers
from jepagolf.sources import source_hash
from jepagolf.train import schedules
from jepagolf.train.batches import micro_batch, micro_batch_indices, micro_batch_mask, micro_stride, step_tokens
from jepagolf.train.budget import Budget, measure_calibration_reserve
from jepagolf.train.checkpoint import LoadedCheckpoint
from jepagolf.train.fastpath import (
    STEP_COMPILE_WARMUP_STEPS,
    apply_threads,
    compile_cache_dir,
    compile_forward,
    compile_target_pass,
    retain_freed_memory,
    step_compile_on,
)
from jepagolf.train.finish import Trained
from jepagolf.train.logger import RunLogger
from jepagolf.train.preempt import Preempted, StopRequest, signal_name
from jepagolf.train.reliability import Checkpoints, DivergenceGuard
from jepagolf.train.resume import capture_state, restore_state, truncate_metrics
from jepagolf.train.runtime import Runtime, device_name, peak_memory_mib, sdpa_context, seed_everything, versions
from jepagolf.train.validation import ValData, evaluate_run, load_val_data

# Compile warm-up steps when compile_warmup_steps is -1 (auto) and the model is compiled: enough for
# torch.compile to trace the CE and JEPA graphs and for the kernels' autotuning to settle.
AUTO_WARMUP_STEPS = 20


class Trainer:
    def __init__(
        self, cfg: Config, rt: Runtime, out_dir: Path, paths: DatasetPaths, val: ValData | None = None
    ) -> None:
        self.cfg, self.rt, self.out_dir, self.paths = cfg, rt, out_dir, paths
        t = cfg.train
        micro_total = t.train_batch_tokens // t.micro_batch_tokens
        if micro_total % rt.world_size:
            per_rank = t.train_batch_tokens // rt.world_size
            fix = (f"e.g. micro_batch_tokens={per_rank} (accumulation 1)"
                   if t.train_batch_tokens % (rt.world_size * t.train_seq_len) == 0 else
                   f"train_batch_tokens must be a multiple of world_size * train_seq_len = "
                   f"{rt.world_size * t.train_seq_len}")
            raise ConfigError(
                f"train_batch_tokens={t.train_batch_tokens} / micro_batch_tokens={t.micro_batch_tokens} = "
                f"{micro_total} micro-batches do not split over {rt.world_size} processes; choose "
                f"micro_batch_tokens so that the count is a multiple of the world size, {fix}"
            )
        self.grad_accum = micro_total // rt.world_size
        self.threads = apply_threads(t.threads)
        self.malloc_retained = rt.device.type == "cpu" and retain_freed_memory()
        self.step_compiled = step_compile_on(cfg, rt.device, rt.distributed)
        if self.step_compiled:
            compile_cache_dir()  # before torch's first use of its cache folder sets the folder for this process
        seed_everything(t.resolved_init_seed)  # same init on every rank
        self.model = JepaLM(cfg).to(rt.device)
        # The cap less the seconds kept for the GPTQ calibration, measured before the clock starts.
        self.budget = Budget(t.max_wallclock_seconds,
                             measure_calibration_reserve(self.model.gpt, cfg, paths.data_dir, rt), t.guard_seconds)
        self.train_budget_s = self.budget.train_s  # training seconds under a cap
        # online targets come from the trained network itself: no EMA copy, no target pass.
        self.target = (
            make_target_encoder(self.model.gpt) if cfg.jepa.active and cfg.jepa.jepa_target == "ema" else None
        )
        self.last_jepa_stats: dict[str, Tensor] = {}
        self.artifact_ema = WeightEMA(self.model.gpt, schedules.artifact_ema_decay(cfg))
        # Fused Adam on every device: torch has had a fused CPU kernel since 2.4; at the ladder's shapes it made
        # the whole step 2-4% faster than foreach (r1 CE 35.6 -> 34.9 ms, r1 v3 62.3 -> 61.0, r2 CE 123.6 -> 117.6).
        self.optimizers = build_optimizers(self.model, cfg.optim, fused=True,
                                           rank=rt.rank, world_size=rt.world_size,
                                           pred_optimizer=cfg.jepa.jepa_pred_optimizer, pred_lr=cfg.jepa.jepa_pred_lr)
        self.compiled = t.compile == "on" or (t.compile == "auto" and rt.device.type == "cuda")
        self.forward_module: Any = self.model  # the module, its DDP wrapper, or its compiled forward
        if self.compiled:
            # dynamic=False: the evaluation's other batch shapes get their own static graphs instead of
            # turning the training graphs into slower dynamic-shape ones.
            self.model.gpt.encode = torch.compile(self.model.gpt.encode, dynamic=False)  # type: ignore[method-assign]
            if self.target is not None:  # a deepcopy taken before the line above: compile it too
                self.target.encode = torch.compile(self.target.encode, dynamic=False)  # type: ignore[method-assign]
            if self.model.taps:  # targets from intermediate blocks go through encode_blocks
                for gpt in (self.model.gpt, self.target):
                    if gpt is not None:
                        gpt.encode_blocks = torch.compile(gpt.encode_blocks, dynamic=False)  # type: ignore[method-assign]
        self.target_pass = self.model.target_repr
        if self.step_compiled:
            self.forward_module = compile_forward(self.model)
            if self.target is not None:
                self.target_pass = compile_target_pass(self.model)
        # Enough steps to trace every graph: the JEPA step and, with jepa_every > 1, the CE-only one.
        step_warmup = max(STEP_COMPILE_WARMUP_STEPS, cfg.jepa.jepa_every + 2)
        auto_warmup = AUTO_WARMUP_STEPS if self.compiled else step_warmup if self.step_compiled else 0
        self.warmup_steps = auto_warmup if t.compile_warmup_steps < 0 else t.compile_warmup_steps
        if rt.distributed:
            ids = [rt.device.index] if rt.device.type == "cuda" else None
            # With jepa_every > 1 the predictor and mask_emb get no gradient on most steps; DDP must be
            # told to look for unused parameters then, or it waits for their gradients and errors out.
            # Every rank skips the same steps, so their .grad stays None and the optimizers skip them.
            sparse_jepa = cfg.jepa.active and cfg.jepa.jepa_every > 1
            self.forward_module = DDP(self.model, device_ids=ids, broadcast_buffers=False,
                                      find_unused_parameters=sparse_jepa)
        self.stream = TokenStream(list_shards(paths.data_dir, "train"), cfg.model.vocab_size)
        self.stream.skip(t.data_offset)  # a resumed run's saved position replaces this one
        self.val = val if val is not None else load_val_data(cfg, paths, rt.device)
        self.step = 0
        self.elapsed_s = 0.0
        self.tokens_seen = 0
        self.logger = RunLogger(out_dir, enabled=rt.is_main, tensorboard=cfg.train.tensorboard)
        # Reliability: the run's checkpoints, the divergence guard, and the stop signals (preemption).
        self.checkpoints = Checkpoints(out_dir, keep=t.checkpoint_keep, every_seconds=t.checkpoint_every_seconds,
                                       is_main=rt.is_main, distributed=rt.distributed, device=rt.device,
                                       logger=self.logger)
        self.guard = DivergenceGuard(rt.device, distributed=rt.distributed, skip_limit=t.skip_nonfinite_steps,
                                     report_jepa=self.target is not None, advice=self.checkpoints.divergence_advice)
        self.stop = StopRequest(announce=rt.is_main)
        self.stop.on_unarmed = self.checkpoints.stop_outside_loop
        self.training_done = False  # set when the loop ends; a checkpoint taken then resumes at finish()
        self.resume_notes: list[str] = []
        self.data_fingerprint: dict[str, list[list[object]]] | None = None  # see resume.data_fingerprint

    # ----- one optimizer step -------------------------------------------------------------------
    def is_diag_step(self, step: int) -> bool:
        """Collapse diagnostics at 1-based ``step``: every diag_every steps, the first and the last."""
        every = self.cfg.train.diag_every or self.cfg.train.train_log_every
        if not self.cfg.jepa.active or every < 0:
            return False
        return step % every == 0 or step == 1 or step == self.cfg.train.iterations

    def train_step(self) -> dict[str, Tensor]:
        """One optimizer step's gradients; on diagnostic steps (``is_diag_step``) also the collapse
        diagnostics, which cost extra backward passes."""
        diag = self.is_diag_step(self.step + 1)
        with sdpa_context(self.rt.device):
            return self.forward_backward(self.stream.take(step_tokens(self.cfg)), diag)

    def forward_backward(self, chunk: np.ndarray, diag: bool = False) -> dict[str, Tensor]:
        """Gradients of one optimizer step from its chunk (``step_tokens``); returns mean diagnostics."""
        cfg, rt, t = self.cfg, self.rt, self.cfg.train
        step = self.step
        # 0 on a step that skips JEPA (jepa_every)
        weight = schedules.jepa_step_weight(cfg, step, self.elapsed_s, self.train_budget_s)
        span = cfg.jepa.jepa_mode == "span"
        sums: dict[str, Tensor] = {}
        grad_stats: dict[str, float] = {}
        ctx = torch.autocast(rt.device.type, dtype=rt.autocast_dtype) if rt.autocast_dtype else nullcontext()
        # A diagnostic step differentiates the graph more than once (gradient_share): the eager module runs it.
        module = self.model if diag and self.step_compiled else self.forward_module
        for a, index in enumerate(micro_batch_indices(rt.rank, self.grad_accum)):
            x, y = micro_batch(chunk, index, t.micro_batch_tokens, t.train_seq_len, rt.device, micro_stride(cfg))
            mask = target_z = mask_pos = None
            extra: dict[str, Any] = {"diagnostics": True} if diag else {}
            if weight > 0:
                if span:
                    mask, mask_pos = micro_batch_mask(cfg, step, index, x.size(0), rt.device)
                    rows = mask.size(0)
                else:  # nextk / chunk: no mask; the CE pass is the context pass
                    rows = jepa_rows(x.size(0), cfg.jepa.jepa_batch_fraction)
                    extra["jepa"] = True
                if cfg.jepa.jepa_reg == "sigreg":
                    extra["sigreg_seed"] = noise_seed(t.resolved_mask_seed, step, index)
                if self.target is not None:
                    with torch.no_grad(), ctx, record_function("forward"):
                        target_z = self.target_pass(self.target, x[:rows])  # (rows, T, D), unmasked sequence
            last = a == self.grad_accum - 1
            sync = nullcontext() if (last or not rt.distributed) else self.forward_module.no_sync()
            with sync:
                with ctx, record_function("forward"):
                    ce, jl, stats = module(x, y, mask, target_z, mask_pos, **extra)
                if diag and a == 0 and jl is not None:  # first micro-batch only: it is a sample
                    names, params = zip(*self.model.gpt.named_parameters(), strict=True)
                    grad_stats = gradient_share(ce, weight * jl, list(params), list(names))
                with record_function("backward"):
                    loss = ce if jl is None else ce + weight * jl
                    (loss / self.grad_accum).backward()
            for k, v in stats.items():
                sums[k] = sums[k] + v if k in sums else v.clone()
        means = {k: v / self.grad_accum for k, v in sums.items()}
        means.update({k: torch.tensor(v) for k, v in grad_stats.items()})
        if weight > 0:
            self.last_jepa_stats = {k: v for k, v in means.items() if k != "ce_loss"}
        # On a step without JEPA the logged diagnostics are those of the last JEPA step.
        return {**self.last_jepa_stats, **means}

    def apply_update(self) -> float:
        """Set this step's LRs and momenta, clip, step every optimizer, update both EMAs."""
        cfg, step = self.cfg, self.step
        scale = schedules.lr_scale(cfg, step, self.elapsed_s, self.train_budget_s)
        mom = schedules.muon_momentum(cfg, step, self.elapsed_s, self.train_budget_s)
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * scale
                if "momentum" in group:
                    group["momentum"] = mom
        for opt in self.optimizers:
            with record_function(f"optimizer.{type(opt).__name__.lower()}"):
                opt.step()
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        # The target EMA moves on every optimizer step, JEPA step or not (jepa_every > 1), so that it
        # is the same average of the online trajectory as in v3; the update is one foreach lerp.
        with record_function("ema"):
            if self.target is not None:
                m = ema_momentum(
                    schedules.progress(cfg, step + 1, self.elapsed_s, self.train_budget_s), cfg.jepa.jepa_ema_start,
                    cfg.jepa.jepa_ema_end
                )
                update_target(self.target, self.model.gpt, m)
            self.artifact_ema.update(self.model.gpt)
        return scale

    # ----- reliability: the guard and the checkpoints ------------------------------------------
    @property
    def skipped_steps(self) -> int:
        """Bad steps skipped so far (skip_nonfinite_steps); the guard counts them, a checkpoint keeps them."""
        return self.guard.skipped_steps

    @skipped_steps.setter
    def skipped_steps(self, n: int) -> None:
        self.guard.skipped_steps = n

    def grad_norm(self) -> Tensor:
        """Global gradient norm before clipping (0-d tensor on the device); clips when grad_clip_norm > 0."""
        clip = self.cfg.optim.grad_clip_norm
        if clip > 0:
            return torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        return torch.nn.utils.get_total_norm(grads)

    def skip_bad_step(self, stats: dict[str, Tensor]) -> bool:
        """Guard this step's losses and gradient (``DivergenceGuard.check``); True when it is skipped (a bad
        step within skip_nonfinite_steps): its gradients are dropped and a "skip" row logged."""
        reason = self.guard.check(self.step + 1, stats, self.grad_norm())
        if reason is None:
            return False
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        self.logger.metrics("skip", {"step": self.step + 1, "reason": reason, "skipped_steps": self.skipped_steps})
        return True

    def checkpoint_now(self, reason: str) -> None:
        """Write the full training state (rank 0) after checking it is finite; all ranks agree."""
        if self.checkpoints.holds(self.step):
            return
        self.guard.check_diverged(self.step)  # never save a state that a non-finite step has already touched
        self.checkpoints.save(self.step, lambda: capture_state(self), reason)

    def restore(self, ckpt: LoadedCheckpoint, warnings: list[str]) -> None:
        """Continue from ``ckpt`` (``check_restorable`` has passed on it)."""
        restore_state(self, ckpt)
        self.checkpoints.restored(self.step, ckpt.path)
        dropped = truncate_metrics(self.out_dir, ckpt.meta) if self.rt.is_main else 0
        notes = list(warnings)
        notes.append(f"resume: from {ckpt.path} at step {self.step} (train_time_s {self.elapsed_s:.1f}, tokens "
                     f"{self.tokens_seen}); dropped {dropped} metrics.jsonl row(s) written after that step, "
                     "they are logged again below")
        if ckpt.meta.get("world_size") != self.rt.world_size:
            notes.append(f"resume: world size {ckpt.meta.get('world_size')} -> {self.rt.world_size}: same "
                         "data and masks, but gradients are summed in another order (not bitwise)")
        self.resume_notes = notes

    # ----- evaluation ---------------------------------------------------------------------------
    def evaluate(self, gpt: GPT, max_tokens: int = 0, *, scoring: bool = False) -> EvalResult:
        """See :func:`evaluate_run`."""
        return evaluate_run(self.cfg, self.rt, self.val, gpt, max_tokens, scoring=scoring)

    def _sync(self) -> None:
        if self.rt.device.type == "cuda":
            torch.cuda.synchronize(self.rt.device)

    def _control(self) -> tuple[bool, bool, bool]:
        """(time is up, stop signal received, checkpoint due by the clock), the same on every rank.

        Time is up by ``Budget.time_up``. One all_reduce carries the three flags, so every rank stops or
        checkpoints at the same step (signals and clocks differ across processes).
        """
        time_up = self.budget.time_up(self.elapsed_s, self.step)
        flags = [time_up, self.stop.requested, self.checkpoints.due_by_clock()]
        if self.rt.distributed:
            reduced = torch.tensor([float(f) for f in flags], device=self.rt.device)
            dist.all_reduce(reduced, op=dist.ReduceOp.MAX)
            flags = [bool(v) for v in reduced.tolist()]
        return flags[0], flags[1], flags[2]

    def _agreed_elapsed(self, local: float) -> float:
        """Training seconds, the same on every rank: with a wall-clock cap the LR warmdown, the EMA
        momentum and the stop depend on it."""
        if self.cfg.train.max_wallclock_seconds <= 0 and self.cfg.train.guard_seconds <= 0:
            return local
        return self.rt.agreed_max(local)

    # ----- compile warm-up ----------------------------------------------------------------------
    def _snapshot(self) -> dict[str, Any]:
        def clone(sd: dict[str, Tensor]) -> dict[str, Tensor]:
            return {k: v.detach().clone() for k, v in sd.items()}

        rng = {"cpu": torch.get_rng_state()}
        if self.rt.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.rt.device)
        return {
            "model": clone(self.model.state_dict()),
            "target": clone(self.target.state_dict()) if self.target is not None else None,
            "artifact_ema": clone(self.artifact_ema.state_dict()),
            "artifact_ema_updates": self.artifact_ema.updates,
            "optimizers": [copy.deepcopy(opt.state_dict()) for opt in self.optimizers],
            "stream": self.stream.state_dict(),
            "rng": rng,
            "counters": (self.step, self.elapsed_s, self.tokens_seen),
        }

    def _restore(self, snap: dict[str, Any]) -> None:
        self.model.load_state_dict(snap["model"])  # copies in place: compiled graphs and DDP stay valid
        if self.target is not None:
            self.target.load_state_dict(snap["target"])
        self.artifact_ema.load_state_dict(snap["artifact_ema"], snap["artifact_ema_updates"])
        for opt, state in zip(self.optimizers, snap["optimizers"], strict=True):
            opt.load_state_dict(state)  # an empty saved state empties the optimizer again
            opt.zero_grad(set_to_none=True)
        self.stream.load_state_dict(snap["stream"])
        torch.set_rng_state(snap["rng"]["cpu"])
        if "cuda" in snap["rng"]:
            torch.cuda.set_rng_state(snap["rng"]["cuda"], self.rt.device)
        self.step, self.elapsed_s, self.tokens_seen = snap["counters"]

    def warmup(self, steps: int) -> float:
        """Run ``steps`` real training steps, then put back everything they changed; return seconds.

        torch.compile traces and autotunes on the first calls, which would otherwise be charged to a
        wall-clock-capped run (the parameter-golf trick). The steps are full ones (DDP all-reduces and
        the Muon all-reduce included) so every graph and communicator is warm; afterwards weights,
        optimizer states, both EMAs, the data position, RNG and counters are as before, so the run is
        the one it would have been without the warm-up.
        """
        if steps <= 0:
            return 0.0
        t0 = time.perf_counter()
        snap = self._snapshot()
        for _ in range(steps):
            self.train_step()
            self.apply_update()
            self.step += 1
        self._sync()
        self._restore(snap)
        return time.perf_counter() - t0

    # ----- the run ------------------------------------------------------------------------------
    def run(self) -> Trained:
        cfg, rt, t = self.cfg, self.rt, self.cfg.train
        log = self.logger
        n_params = count_params(self.model.gpt)
        log.write_json("config.json", cfg.to_dict())
        log.line(
            f"run:{self.out_dir} preset:{cfg.preset} device:{device_name(rt.device)} world_size:{rt.world_size} "
            f"grad_accum:{self.grad_accum} params:{n_params} jepa:{cfg.jepa.active} seed:{t.seed} "
            f"source:{source_hash()} config_hash:{cfg.hash()}"
        )
        log.line("versions:" + json.dumps(versions(), sort_keys=True))
        log.line(f"data:{self.paths.data_dir} tokenizer:{self.paths.tokenizer} val_tokens:{len(self.val.tokens)} "
                 f"unigram_val_bpb:{self.val.unigram_bpb:.4f}")
        if self.budget.calibration_reserve_s:
            log.line(f"calibration_reserve_seconds:{self.budget.calibration_reserve_s:.2f} train_budget_seconds:"
                     f"{self.train_budget_s:.2f} (GPTQ calibration reads training data: it runs inside the "
                     f"{t.max_wallclock_seconds:g} s cap, timed on a slice before the clock started)")
        for note in self.resume_notes:
            log.line(note)
        if self.warmup_steps and self.step == 0:
            warm_s = self.warmup(self.warmup_steps)
            log.line(f"warmup_steps:{self.warmup_steps} warmup_seconds:{warm_s:.1f} (compile and kernel "
                     "warm-up, not counted; weights, optimizer states, EMAs and data position restored)")
        progress = log.progress(t.iterations)
        last_log_time, last_log_step = time.perf_counter(), self.step
        val_res: EvalResult | None = None
        checkpointing = t.checkpoint_every_steps > 0 or t.checkpoint_every_seconds > 0
        self.stop.armed = True
        while self.step < t.iterations and not self.training_done:
            t0 = time.perf_counter()
            diag = self.is_diag_step(self.step + 1)
            stats = self.train_step()
            skipped = self.skip_bad_step(stats)
            lr_scale = self.apply_update() if not skipped else 0.0
            self.step += 1
            self.tokens_seen += t.train_batch_tokens
            self.elapsed_s = self._agreed_elapsed(self.elapsed_s + time.perf_counter() - t0)
            time_up, stop, checkpoint_due = self._control()
            done = self.step >= t.iterations or time_up
            if (self.step % t.train_log_every == 0 or self.step == 1 or done or diag) and not skipped:
                self._sync()
                now = time.perf_counter()
                self.guard.check_diverged(self.step)
                step_ms = 1000 * (now - last_log_time) / max(self.step - last_log_step, 1)
                last_log_time, last_log_step = now, self.step
                record = {k: float(v) for k, v in stats.items()}
                record.update(
                    step=self.step, lr_scale=lr_scale,
                    jepa_lambda=schedules.jepa_lambda(cfg, self.step - 1, self.elapsed_s, self.train_budget_s),
                    step_ms=step_ms, tokens_per_s=t.train_batch_tokens / max(step_ms / 1000, 1e-9),
                    train_time_s=self.elapsed_s, tokens_seen=self.tokens_seen,
                )
                if self.target is not None:  # no EMA target (online targets, plain CE): left out, not 0.0
                    record["ema_momentum"] = ema_momentum(
                        schedules.progress(cfg, self.step, self.elapsed_s, self.train_budget_s),
                        cfg.jepa.jepa_ema_start, cfg.jepa.jepa_ema_end)
                peak = peak_memory_mib(rt.device)
                if peak is not None:
                    record["peak_mem_mib"] = peak
                record["train_loss"] = record["ce_loss"]
                log.metrics("train", record, total=t.iterations)
                progress.update(self.step, record)
            if t.val_loss_every and (self.step % t.val_loss_every == 0) and not done:
                self._sync()
                val_res = self.evaluate(self.model.gpt, t.val_max_tokens)
                log.metrics("val", {"step": self.step, "val_loss": val_res.loss, "val_bpb": val_res.bpb,
                                    "val_tokens": val_res.tokens, "train_time_s": self.elapsed_s})
                last_log_time = time.perf_counter()  # the clock is stopped during validation
            if done:
                self.training_done = True
            periodic = t.checkpoint_every_steps > 0 and self.step % t.checkpoint_every_steps == 0
            if stop or periodic or checkpoint_due or (done and checkpointing):
                self.checkpoint_now("signal" if stop else "final" if done else "interval")
                last_log_time = time.perf_counter()  # like validation, writing is not a training step
            if stop:
                assert self.stop.signum is not None or rt.distributed
                signum = self.stop.signum or signal.SIGTERM  # a rank that got no signal itself
                assert self.checkpoints.last is not None
                path = self.checkpoints.last[1]
                log.line(f"stopped by {signal_name(signum)} after step {self.step}; checkpoint {path}")
                raise Preempted(
                    f"stopped by {signal_name(signum)} after step {self.step}/{t.iterations}; checkpoint saved "
                    f"to {path}; resume with {self.checkpoints.resume_hint()}", signum)
            if done:
                break
        self.stop.armed = False
        self.training_done = True
        progress.close()
        self.guard.check_diverged(self.step)
        return Trained(gpt=self.model.gpt, exported=self.exported_state(), params=n_params, steps=self.step,
                       skipped_steps=self.skipped_steps, tokens_seen=self.tokens_seen, train_seconds=self.elapsed_s,
                       threads=self.threads, malloc_retained=self.malloc_retained, step_compiled=self.step_compiled)

    def rank_state(self) -> dict[str, np.ndarray]:
        """This process's live weights, EMA target and artifact EMA as fp32 host arrays (for checks
        that every rank holds the same state)."""
        out: dict[str, np.ndarray] = {}
        parts: list[tuple[str, dict[str, Tensor]]] = [("model", self.model.state_dict()),
                                                      ("artifact_ema", self.artifact_ema.state_dict())]
        if self.target is not None:
            parts.append(("target", self.target.state_dict()))
        for prefix, sd in parts:
            for k, v in sd.items():
                out[f"{prefix}/{k}"] = v.detach().float().cpu().numpy().copy()  # never a view of live weights
        return out

    def dump_rank_state(self, folder: Path) -> Path:
        """Write ``rank_state()`` to folder/rank<R>.npz (every rank writes its own file; debug only)."""
        path = folder / f"rank{self.rt.rank}.npz"
        state = self.rank_state()
        atomic_write(path, lambda f: np.savez(f, **state))
        return path

    def exported_state(self) -> dict[str, Tensor]:
        """The weights the artifact ships: the artifact EMA, or with ``artifact_ema_decay=0`` the last
        weights themselves (as the reference trainer exports them; an EMA of decay 0 is a copy only up to
        rounding)."""
        if self.cfg.optim.artifact_ema_decay == 0:
            return self.model.gpt.state_dict()
        return self.artifact_ema.state_dict()
