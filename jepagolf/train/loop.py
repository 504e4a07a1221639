"""The training loop: data -> (CE + JEPA) step -> EMA updates -> validation -> export.

One ``Trainer`` per run. ``train_step`` is one optimizer step (all micro-batches); ``run`` drives
the steps, the clock (stopped during validation), logging, and the final export and round trip.
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel as DDP

from jepagolf.config import Config, ConfigError
from jepagolf.data.bytes import build_byte_tables, unigram_bpb
from jepagolf.data.corpus import DatasetPaths
from jepagolf.data.dataset import resolve_dataset
from jepagolf.data.shards import ShardError, TokenStream, atomic_write, list_shards, load_shard, load_tokens
from jepagolf.data.tokenizer import load_tokenizer
from jepagolf.eval import EvalResult, evaluate
from jepagolf.export.artifact import ARTIFACT_NAME, load_gpt_from_artifact, write_artifact
from jepagolf.jepa.objective import JepaLM
from jepagolf.jepa.target import WeightEMA, ema_momentum, make_target_encoder, update_target
from jepagolf.model.gpt import GPT, count_params
from jepagolf.optim.groups import build_optimizers
from jepagolf.train import schedules
from jepagolf.train.batches import prepare_step
from jepagolf.train.logger import RunLogger
from jepagolf.train.runtime import (
    Runtime,
    device_name,
    peak_memory_mib,
    sdpa_context,
    seed_everything,
    source_hash,
    versions,
)

# Compile warm-up steps when compile_warmup_steps is -1 (auto) and the model is compiled: enough for
# torch.compile to trace the CE and JEPA graphs and for the kernels' autotuning to settle.
AUTO_WARMUP_STEPS = 20


class TrainingDiverged(RuntimeError):
    """A loss or gradient became non-finite."""


@dataclass
class ValData:
    tokens: np.ndarray
    byte_tables: tuple[Tensor, Tensor, Tensor]
    unigram_bpb: float


def load_val_data(cfg: Config, paths: DatasetPaths, device: torch.device) -> ValData:
    vocab = cfg.model.vocab_size
    sp = load_tokenizer(paths.tokenizer, expected_vocab=vocab)
    tables = build_byte_tables(sp, vocab)
    val_tokens = load_tokens(list_shards(paths.data_dir, "val"), vocab)
    if len(val_tokens) < cfg.train.train_seq_len + 1:
        raise ShardError(
            f"validation split in {paths.data_dir} has {len(val_tokens)} tokens, fewer than one sequence "
            f"(train_seq_len + 1 = {cfg.train.train_seq_len + 1}); add validation documents or lower "
            "train_seq_len"
        )
    # Unigram reference: token frequencies from (up to) the first train shard.
    first_train = load_shard(list_shards(paths.data_dir, "train")[0], vocab)
    counts = np.bincount(np.asarray(first_train[:100_000_000]), minlength=vocab)
    uni = unigram_bpb(counts, np.asarray(val_tokens), tables)
    base, space, boundary = tables.to_torch(device)
    return ValData(tokens=val_tokens, byte_tables=(base, space, boundary), unigram_bpb=uni)


class Trainer:
    def __init__(self, cfg: Config, rt: Runtime, out_dir: Path, paths: DatasetPaths) -> None:
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
        seed_everything(t.seed)  # same init on every rank
        self.model = JepaLM(cfg).to(rt.device)
        self.target = make_target_encoder(self.model.gpt) if cfg.jepa.active else None
        self.artifact_ema = WeightEMA(self.model.gpt, cfg.optim.artifact_ema_decay)
        self.optimizers = build_optimizers(self.model, cfg.optim, fused=rt.device.type == "cuda",
                                           rank=rt.rank, world_size=rt.world_size)
        self.compiled = t.compile == "on" or (t.compile == "auto" and rt.device.type == "cuda")
        self.forward_module: torch.nn.Module = self.model
        if self.compiled:
            # dynamic=False: the evaluation's other batch shapes get their own static graphs instead of
            # turning the training graphs into slower dynamic-shape ones.
            self.model.gpt.encode = torch.compile(self.model.gpt.encode, dynamic=False)  # type: ignore[method-assign]
            if self.target is not None:  # a deepcopy taken before the line above: compile it too
                self.target.encode = torch.compile(self.target.encode, dynamic=False)  # type: ignore[method-assign]
        auto_warmup = AUTO_WARMUP_STEPS if self.compiled else 0
        self.warmup_steps = auto_warmup if t.compile_warmup_steps < 0 else t.compile_warmup_steps
        if rt.distributed:
            ids = [rt.device.index] if rt.device.type == "cuda" else None
            self.forward_module = DDP(self.model, device_ids=ids, broadcast_buffers=False)
        self.stream = TokenStream(list_shards(paths.data_dir, "train"), cfg.model.vocab_size)
        self.val = load_val_data(cfg, paths, rt.device)
        self.step = 0
        self.elapsed_s = 0.0
        self.tokens_seen = 0
        # The training clock: elapsed_s = _clock_base + (now - _clock_start) while it runs.
        self._clock_base = 0.0
        self._clock_start = time.perf_counter()
        self.logger = RunLogger(out_dir, enabled=rt.is_main)

    # ----- one optimizer step -------------------------------------------------------------------
    def train_step(self) -> dict[str, Tensor]:
        cfg, rt, t = self.cfg, self.rt, self.cfg.train
        lam = schedules.jepa_lambda(cfg, self.step)
        chunk = self.stream.take(t.train_batch_tokens + 1)
        # Micro-batches and masks depend on (seed, step, global micro-batch index) only; see batches.py.
        batch = prepare_step(cfg, chunk, self.step, rt.rank, self.grad_accum, rt.device, self.target is not None)
        sums: dict[str, Tensor] = {}
        ctx = torch.autocast(rt.device.type, dtype=rt.autocast_dtype) if rt.autocast_dtype else nullcontext()
        with sdpa_context(rt.device):
            for a in range(self.grad_accum):
                x, y, mask, mask_index = batch.micro(a)  # (b, T) each; mask_index (N,)
                target_z = None
                if self.target is not None:
                    with torch.no_grad(), ctx:
                        target_z = self.target.encode(x)  # (b, T, D), full unmasked sequence
                last = a == self.grad_accum - 1
                sync = nullcontext() if (last or not rt.distributed) else self.forward_module.no_sync()
                with sync:
                    with ctx:
                        ce, jl, stats = self.forward_module(x, y, mask, target_z, mask_index)
                    loss = ce if jl is None else ce + lam * jl
                    (loss / self.grad_accum).backward()
                for k, v in stats.items():
                    sums[k] = sums[k] + v if k in sums else v.clone()
        return {k: v / self.grad_accum for k, v in sums.items()}

    def apply_update(self) -> float:
        """Set this step's LRs and momenta, clip, step every optimizer, update both EMAs."""
        cfg, step = self.cfg, self.step
        scale = schedules.lr_scale(cfg, step, self.elapsed_s)
        mom = schedules.muon_momentum(cfg, step)
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * scale
                if "momentum" in group:
                    group["momentum"] = mom
        if cfg.optim.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip_norm)
        for opt in self.optimizers:
            opt.step()
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        if self.target is not None:
            m = ema_momentum(
                schedules.progress(cfg, step + 1, self.elapsed_s), cfg.jepa.jepa_ema_start, cfg.jepa.jepa_ema_end
            )
            update_target(self.target, self.model.gpt, m)
        self.artifact_ema.update(self.model.gpt)
        return scale

    # ----- evaluation ---------------------------------------------------------------------------
    def evaluate(self, gpt: GPT, max_tokens: int = 0) -> EvalResult:
        t = self.cfg.train
        with sdpa_context(self.rt.device):
            return evaluate(
                gpt, self.val.tokens, self.val.byte_tables, t.train_seq_len, t.val_batch_tokens, self.rt.device,
                max_tokens=max_tokens, rank=self.rt.rank, world_size=self.rt.world_size,
                autocast_dtype=self.rt.autocast_dtype,
            )

    def _sync(self) -> None:
        if self.rt.device.type == "cuda":
            torch.cuda.synchronize(self.rt.device)

    # ----- the training clock (stopped during validation) ----------------------------------------
    def _read_clock(self) -> float:
        return self._clock_base + (time.perf_counter() - self._clock_start)

    def _pause_clock(self) -> None:
        self._sync()  # the queued GPU work is training time
        self._clock_base = self._read_clock()

    def _resume_clock(self) -> None:
        self._clock_start = time.perf_counter()

    def _agreed_elapsed(self) -> float:
        """Training seconds so far, read from the host clock without waiting for the device.

        With a wall-clock cap the LR warmdown, the EMA momentum and the stop all depend on this
        number, so every rank must use the same one: the ranks take the maximum over a host-side
        gloo group (microseconds, no GPU sync). On CUDA the host runs at most a few queued steps
        ahead of the device; that lag is bounded and counted at the next sync (log, validation, end).
        """
        local = self._read_clock()
        if not self.rt.distributed or self.cfg.train.max_wallclock_seconds <= 0:
            return local  # without a cap the schedules are step-based: the clock is only logged
        buf = torch.tensor([local], dtype=torch.float64)
        dist.all_reduce(buf, op=dist.ReduceOp.MAX, group=self.rt.cpu_group)
        return float(buf[0])

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
    def run(self) -> dict[str, Any]:
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
        if self.warmup_steps:
            warm_s = self.warmup(self.warmup_steps)
            log.line(f"warmup_steps:{self.warmup_steps} warmup_seconds:{warm_s:.1f} (compile and kernel "
                     "warm-up, not counted; weights, optimizer states, EMAs and data position restored)")
        progress = log.progress(t.iterations)
        cap = t.max_wallclock_seconds
        self._sync()
        self._clock_base = self.elapsed_s
        self._resume_clock()
        last_log_clock, last_log_step = self.elapsed_s, self.step
        val_res: EvalResult | None = None
        while self.step < t.iterations:
            # No host sync in here except at log and validation steps (on CUDA the host queues ahead).
            stats = self.train_step()
            lr_scale = self.apply_update()
            self.step += 1
            self.tokens_seen += t.train_batch_tokens
            if rt.device.type == "cpu":
                self._check_finite(stats)  # free on CPU; on CUDA only at log steps (no host sync)
            self.elapsed_s = self._agreed_elapsed()
            done = self.step >= t.iterations or (cap > 0 and self.elapsed_s >= cap)  # same on every rank
            if self.step % t.train_log_every == 0 or self.step == 1 or done:
                self._sync()
                clock = self._read_clock()
                self._check_finite(stats)
                step_ms = 1000 * (clock - last_log_clock) / max(self.step - last_log_step, 1)
                last_log_clock, last_log_step = clock, self.step
                record = {k: float(v) for k, v in stats.items()}
                record.update(
                    step=self.step, lr_scale=lr_scale, jepa_lambda=schedules.jepa_lambda(cfg, self.step - 1),
                    ema_momentum=ema_momentum(schedules.progress(cfg, self.step, self.elapsed_s),
                                              cfg.jepa.jepa_ema_start, cfg.jepa.jepa_ema_end)
                    if self.target is not None else 0.0,
                    step_ms=step_ms, tokens_per_s=t.train_batch_tokens / max(step_ms / 1000, 1e-9),
                    train_time_s=clock, tokens_seen=self.tokens_seen,
                )
                peak = peak_memory_mib(rt.device)
                if peak is not None:
                    record["peak_mem_mib"] = peak
                record["train_loss"] = record["ce_loss"]
                log.metrics("train", record, total=t.iterations)
                progress.update(self.step, record)
            if t.val_loss_every and (self.step % t.val_loss_every == 0) and not done:
                self._pause_clock()  # the clock is stopped during validation
                val_res = self.evaluate(self.model.gpt, t.val_max_tokens)
                log.metrics("val", {"step": self.step, "val_loss": val_res.loss, "val_bpb": val_res.bpb,
                                    "val_tokens": val_res.tokens, "train_time_s": self._clock_base})
                self._resume_clock()
            if done:
                break
        self._pause_clock()
        self.elapsed_s = self._clock_base  # includes the device draining the last queued steps
        progress.close()
        return self.finish(n_params)

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

    def _check_finite(self, stats: dict[str, Tensor]) -> None:
        for key in ("ce_loss", "jepa_loss"):
            if key in stats and not math.isfinite(float(stats[key])):
                term = "CE" if key == "ce_loss" else "JEPA"
                raise TrainingDiverged(
                    f"non-finite {term} loss ({float(stats[key])}) at step {self.step}; lower the learning "
                    "rates or jepa_lambda, or enable grad_clip_norm"
                )

    def finish(self, n_params: int) -> dict[str, Any]:
        """Final exact validation of the live and EMA weights, export, round trip, summary."""
        cfg, rt, log = self.cfg, self.rt, self.logger
        self._sync()
        live = self.evaluate(self.model.gpt)
        log.metrics("final_live", {"step": self.step, "val_loss": live.loss, "val_bpb": live.bpb})
        ema_gpt = GPT(cfg.model, cfg.train.train_seq_len).to(rt.device)
        ema_gpt.load_state_dict(self.artifact_ema.state_dict())
        pre = self.evaluate(ema_gpt)
        log.metrics("final_pre_quant", {"step": self.step, "val_loss": pre.loss, "val_bpb": pre.bpb})
        artifact_path = self.out_dir / ARTIFACT_NAME
        artifact_bytes = 0
        if rt.is_main:
            artifact_bytes = write_artifact(ema_gpt.state_dict(), artifact_path, cfg)
        if rt.distributed:
            dist.barrier()
        rt_gpt = load_gpt_from_artifact(artifact_path, rt.device)
        rtrip = self.evaluate(rt_gpt)
        log.metrics("final_roundtrip", {"step": self.step, "val_loss": rtrip.loss, "val_bpb": rtrip.bpb})
        code_bytes = package_code_bytes()
        summary = {
            "val_loss": pre.loss,
            "val_bpb": pre.bpb,
            "roundtrip_val_loss": rtrip.loss,
            "roundtrip_val_bpb": rtrip.bpb,
            "live_val_bpb": live.bpb,
            "unigram_val_bpb": self.val.unigram_bpb,
            "val_tokens": pre.tokens,
            "val_bytes": pre.bytes,
            "run_dir": str(self.out_dir),
            "artifact": ARTIFACT_NAME,
            "artifact_bytes": artifact_bytes,
            "code_bytes": code_bytes,
            "total_bytes": artifact_bytes + code_bytes,
            "params": n_params,
            "steps": self.step,
            "tokens_seen": self.tokens_seen,
            "train_seconds": self.elapsed_s,
            "jepa": cfg.jepa.active,
            "seed": cfg.train.seed,
            "preset": cfg.preset,
            "device": device_name(rt.device),
            "world_size": rt.world_size,
            "peak_memory_mib": peak_memory_mib(rt.device),
            "config_hash": cfg.hash(),
            "source_hash": source_hash(),
            "versions": versions(),
        }
        log.write_json("summary.json", summary)
        log.line(
            f"final val_bpb:{pre.bpb:.4f} roundtrip_val_bpb:{rtrip.bpb:.4f} live_val_bpb:{live.bpb:.4f} "
            f"unigram_val_bpb:{self.val.unigram_bpb:.4f} artifact_bytes:{artifact_bytes} steps:{self.step} "
            f"train_seconds:{self.elapsed_s:.1f}"
            + (f" peak_memory_mib:{summary['peak_memory_mib']:.0f}" if summary["peak_memory_mib"] is not None else "")
        )
        log.close()
        return summary


def package_code_bytes() -> int:
    """Bytes of the package's Python sources (the single-file export reports its own exact size)."""
    import jepagolf

    root = Path(jepagolf.__file__).parent
    return sum(p.stat().st_size for p in root.rglob("*.py"))


def default_run_dir(cfg: Config) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.preset}-{stamp}-seed{cfg.train.seed}"


def train(
    cfg: Config, rt: Runtime, out_dir: Path | None = None, dump_rank_state: Path | None = None
) -> dict[str, Any]:
    """Train, evaluate and export. ``dump_rank_state``: a folder where every rank writes its final
    weights and EMAs (``Trainer.dump_rank_state``), to check that DDP ranks agree."""
    paths = resolve_dataset(cfg.data.data_path or None, cfg.data.tokenizer_path or None,
                            announce=rt.is_main)
    if out_dir is None:
        out_dir = default_run_dir(cfg)
        if rt.distributed:
            # Every rank must agree on the folder (rank 0's clock decides).
            holder = [str(out_dir)]
            dist.broadcast_object_list(holder, src=0)
            out_dir = Path(holder[0])
    if rt.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(cfg, rt, out_dir, paths)
    try:
        summary = trainer.run()
        if dump_rank_state is not None:
            trainer.dump_rank_state(dump_rank_state)
        return summary
    finally:
        trainer.logger.close()


def print_err(msg: str) -> None:
    print(msg, file=sys.stderr)
