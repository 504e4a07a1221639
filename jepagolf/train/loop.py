"""The training loop: data -> (CE + JEPA) step -> EMA updates -> validation -> export.

One ``Trainer`` per run. ``train_step`` is one optimizer step (all micro-batches); ``run`` drives
the steps, the clock (stopped during validation), logging, and the final export and round trip.
"""

from __future__ import annotations

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

from jepagolf.config import Config
from jepagolf.data.bytes import build_byte_tables, unigram_bpb
from jepagolf.data.corpus import DatasetPaths
from jepagolf.data.dataset import resolve_dataset
from jepagolf.data.shards import ShardError, TokenStream, list_shards, load_shard, load_tokens
from jepagolf.data.tokenizer import load_tokenizer
from jepagolf.eval import EvalResult, evaluate
from jepagolf.export.artifact import ARTIFACT_NAME, load_gpt_from_artifact, write_artifact
from jepagolf.export.gptq import export_hessians
from jepagolf.jepa.masking import sample_mask, span_generator
from jepagolf.jepa.objective import JepaLM
from jepagolf.jepa.target import WeightEMA, ema_momentum, make_target_encoder, update_target
from jepagolf.model.gpt import GPT, count_params
from jepagolf.optim.groups import build_optimizers
from jepagolf.train import schedules
from jepagolf.train.logger import RunLogger
from jepagolf.train.runtime import Runtime, device_name, seed_everything, source_hash, versions


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


def micro_batch(chunk: np.ndarray, index: int, micro_tokens: int, seq_len: int, device: torch.device):
    """Slice micro-batch ``index`` out of a step's (G+1)-token chunk -> x, y (b, T) int64 on device."""
    seg = torch.from_numpy(chunk[index * micro_tokens : (index + 1) * micro_tokens + 1].astype(np.int64))
    seg = seg.to(device, non_blocking=True)
    x = seg[:-1].view(-1, seq_len)  # (b, T)
    y = seg[1:].view(-1, seq_len)  # (b, T)
    return x, y


class Trainer:
    def __init__(self, cfg: Config, rt: Runtime, out_dir: Path, paths: DatasetPaths) -> None:
        self.cfg, self.rt, self.out_dir, self.paths = cfg, rt, out_dir, paths
        t = cfg.train
        micro_total = t.train_batch_tokens // t.micro_batch_tokens
        if micro_total % rt.world_size:
            raise ValueError(
                f"train_batch_tokens={t.train_batch_tokens} / micro_batch_tokens={t.micro_batch_tokens} = "
                f"{micro_total} micro-batches do not split over {rt.world_size} processes; choose "
                "micro_batch_tokens so that the count is a multiple of the world size"
            )
        self.grad_accum = micro_total // rt.world_size
        seed_everything(t.seed)  # same init on every rank
        self.model = JepaLM(cfg).to(rt.device)
        self.target = make_target_encoder(self.model.gpt) if cfg.jepa.active else None
        self.artifact_ema = WeightEMA(self.model.gpt, cfg.optim.artifact_ema_decay)
        self.optimizers = build_optimizers(self.model, cfg.optim, fused=rt.device.type == "cuda")
        self.compiled = t.compile == "on" or (t.compile == "auto" and rt.device.type == "cuda")
        self.forward_module: torch.nn.Module = self.model
        if self.compiled:
            self.model.gpt.encode = torch.compile(self.model.gpt.encode)  # type: ignore[method-assign]
        if rt.distributed:
            ids = [rt.device.index] if rt.device.type == "cuda" else None
            self.forward_module = DDP(self.model, device_ids=ids, broadcast_buffers=False)
        self.stream = TokenStream(list_shards(paths.data_dir, "train"), cfg.model.vocab_size)
        self.val = load_val_data(cfg, paths, rt.device)
        self.step = 0
        self.elapsed_s = 0.0
        self.tokens_seen = 0
        self.logger = RunLogger(out_dir, enabled=rt.is_main)
        # Size of the train_gpt.py this run would ship; computed now so a bundling error stops the run
        # before training, not after it.
        self.code_bytes = package_code_bytes(cfg)

    # ----- one optimizer step -------------------------------------------------------------------
    def train_step(self) -> dict[str, Tensor]:
        cfg, rt, t = self.cfg, self.rt, self.cfg.train
        step = self.step
        lam = schedules.jepa_lambda(cfg, step)
        chunk = self.stream.take(t.train_batch_tokens + 1)
        sums: dict[str, Tensor] = {}
        ctx = torch.autocast(rt.device.type, dtype=rt.autocast_dtype) if rt.autocast_dtype else nullcontext()
        for a in range(self.grad_accum):
            index = rt.rank * self.grad_accum + a  # position of this micro-batch in the global batch
            x, y = micro_batch(chunk, index, t.micro_batch_tokens, t.train_seq_len, rt.device)
            mask = target_z = None
            if self.target is not None:
                j = cfg.jepa
                gen = span_generator(t.seed, step, index)
                mask = sample_mask(
                    x.size(0), t.train_seq_len, j.jepa_num_spans, j.jepa_span_p, j.jepa_span_min,
                    j.jepa_span_per_sequence, gen,
                ).to(rt.device, non_blocking=True)
                with torch.no_grad(), ctx:
                    target_z = self.target.encode(x)  # (b, T, D), full unmasked sequence
            last = a == self.grad_accum - 1
            sync = nullcontext() if (last or not rt.distributed) else self.forward_module.no_sync()
            with sync:
                with ctx:
                    ce, jl, stats = self.forward_module(x, y, mask, target_z)
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
        return evaluate(
            gpt, self.val.tokens, self.val.byte_tables, t.train_seq_len, t.val_batch_tokens, self.rt.device,
            max_tokens=max_tokens, rank=self.rt.rank, world_size=self.rt.world_size,
            autocast_dtype=self.rt.autocast_dtype,
        )

    def _sync(self) -> None:
        if self.rt.device.type == "cuda":
            torch.cuda.synchronize(self.rt.device)

    def _time_is_up(self) -> bool:
        cap = self.cfg.train.max_wallclock_seconds
        if cap <= 0:
            return False
        flag = torch.tensor([float(self.elapsed_s >= cap)], device=self.rt.device)
        if self.rt.distributed:
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)  # every rank stops at the same step
        return bool(flag.item())

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
        progress = log.progress(t.iterations)
        last_log_time, last_log_step = time.perf_counter(), 0
        val_res: EvalResult | None = None
        while self.step < t.iterations:
            t0 = time.perf_counter()
            stats = self.train_step()
            lr_scale = self.apply_update()
            self.step += 1
            self.tokens_seen += t.train_batch_tokens
            if rt.device.type == "cpu":
                self._check_finite(stats)  # free on CPU; on CUDA only at log steps (no host sync)
            self.elapsed_s += time.perf_counter() - t0
            done = self.step >= t.iterations or self._time_is_up()
            if self.step % t.train_log_every == 0 or self.step == 1 or done:
                self._sync()
                now = time.perf_counter()
                self._check_finite(stats)
                step_ms = 1000 * (now - last_log_time) / max(self.step - last_log_step, 1)
                last_log_time, last_log_step = now, self.step
                record = {k: float(v) for k, v in stats.items()}
                record.update(
                    step=self.step, lr_scale=lr_scale, jepa_lambda=schedules.jepa_lambda(cfg, self.step - 1),
                    ema_momentum=ema_momentum(schedules.progress(cfg, self.step, self.elapsed_s),
                                              cfg.jepa.jepa_ema_start, cfg.jepa.jepa_ema_end)
                    if self.target is not None else 0.0,
                    step_ms=step_ms, tokens_per_s=t.train_batch_tokens / (step_ms / 1000),
                    train_time_s=self.elapsed_s, tokens_seen=self.tokens_seen,
                )
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
                break
        progress.close()
        return self.finish(n_params)

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
            hessians = export_hessians(ema_gpt, cfg, self.paths.data_dir)  # None unless export.gptq
            artifact_bytes = write_artifact(ema_gpt.state_dict(), artifact_path, cfg, hessians)
        if rt.distributed:
            dist.barrier()
        rt_gpt = load_gpt_from_artifact(artifact_path, rt.device)
        rtrip = self.evaluate(rt_gpt)
        log.metrics("final_roundtrip", {"step": self.step, "val_loss": rtrip.loss, "val_bpb": rtrip.bpb})
        code_bytes = self.code_bytes
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
            "config_hash": cfg.hash(),
            "source_hash": source_hash(),
            "versions": versions(),
        }
        log.write_json("summary.json", summary)
        log.line(
            f"final val_bpb:{pre.bpb:.4f} roundtrip_val_bpb:{rtrip.bpb:.4f} live_val_bpb:{live.bpb:.4f} "
            f"unigram_val_bpb:{self.val.unigram_bpb:.4f} artifact_bytes:{artifact_bytes} steps:{self.step} "
            f"train_seconds:{self.elapsed_s:.1f}"
        )
        log.close()
        return summary


def package_code_bytes(cfg: Config) -> int:
    """Bytes of the single-file train_gpt.py that `jepagolf export` ships for this run (its own size
    when this is that file), so that total_bytes is what counts against the cap."""
    from jepagolf.export.bundle import shipped_code_bytes

    return shipped_code_bytes(cfg.to_dict())


def default_run_dir(cfg: Config) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.preset}-{stamp}-seed{cfg.train.seed}"


def train(cfg: Config, rt: Runtime, out_dir: Path | None = None) -> dict[str, Any]:
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
        return trainer.run()
    finally:
        trainer.logger.close()


def print_err(msg: str) -> None:
    print(msg, file=sys.stderr)
