"""A run's finish, after the last step: the final exact evaluations (live weights, the exported weights
before quantisation, the artifact's round trip, the challenge's scoring windows), the GPTQ calibration and
the artifact, and summary.json with the budget line.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from jepagolf.config import CAP_BYTES, Config
from jepagolf.data.fingerprint import tokenizer_sha256
from jepagolf.export.artifact import artifact_name, load_gpt_from_artifact, write_artifact
from jepagolf.export.gptq import export_hessians
from jepagolf.model.eval import EvalResult
from jepagolf.model.gpt import GPT
from jepagolf.sources import source_hash
from jepagolf.summary import SUMMARY_VERSION, score_kind
from jepagolf.train.budget import Budget
from jepagolf.train.logger import RunLogger
from jepagolf.train.reliability import TrainingDiverged
from jepagolf.train.runtime import Runtime, device_name, peak_memory_mib, versions
from jepagolf.train.setup import RunSetup
from jepagolf.train.validation import evaluate_run


@dataclass
class Trained:
    """What the training loop hands to the finish: the weights and the run's counters."""

    gpt: GPT  # the live weights (the last iterate)
    exported: dict[str, Tensor]  # the weights the artifact ships (Trainer.exported_state)
    params: int
    steps: int
    skipped_steps: int
    tokens_seen: int
    train_seconds: float
    threads: dict[str, int]  # the CPU threads in force (fastpath.apply_threads)
    malloc_retained: bool  # whether freed memory stays in the process (fastpath.retain_freed_memory)
    step_compiled: bool  # whether the training forward ran compiled (fastpath.step_compile_on)


def finish_run(cfg: Config, rt: Runtime, run: RunSetup, log: RunLogger, trained: Trained, budget: Budget,
               advice: Callable[[], str]) -> dict[str, Any]:
    """Final exact validation of the live and EMA weights, export, round trip, summary. ``advice``: the
    sentence a divergence error ends with (``Checkpoints.divergence_advice``)."""
    if rt.device.type == "cuda":
        torch.cuda.synchronize(rt.device)

    def evaluate(gpt: GPT, *, scoring: bool = False) -> EvalResult:
        return evaluate_run(cfg, rt, run.val, gpt, scoring=scoring)

    live = evaluate(trained.gpt)
    log.metrics("final_live", {"step": trained.steps, "val_loss": live.loss, "val_bpb": live.bpb})
    ema_gpt = GPT(cfg.model, cfg.train.train_seq_len).to(rt.device)
    ema_gpt.load_state_dict(trained.exported)
    pre = evaluate(ema_gpt)
    log.metrics("final_pre_quant", {"step": trained.steps, "val_loss": pre.loss, "val_bpb": pre.bpb})
    artifact_path = run.out_dir / artifact_name(cfg)
    artifact_bytes, calibration_s = 0, 0.0
    if rt.is_main:
        t0 = time.perf_counter()
        hessians = export_hessians(ema_gpt, cfg, run.paths.data_dir)  # None unless export.gptq
        calibration_s = time.perf_counter() - t0 if hessians is not None else 0.0
        artifact_bytes = write_artifact(ema_gpt.state_dict(), artifact_path, cfg, hessians)
    if rt.distributed:
        dist.barrier()
    rt_gpt = load_gpt_from_artifact(artifact_path, rt.device)
    rtrip = evaluate(rt_gpt)
    log.metrics("final_roundtrip", {"step": trained.steps, "val_loss": rtrip.loss, "val_bpb": rtrip.bpb})
    kind = score_kind(cfg)  # the round trip again, by the challenge's windows when they differ from those above
    plain = not kind.sliding and kind.seq_len == cfg.train.train_seq_len
    score = rtrip if plain else evaluate(rt_gpt, scoring=True)
    log.metrics("final_score", {"step": trained.steps, "val_loss": score.loss, "val_bpb": score.bpb, **kind.fields()})
    scores = {"val_bpb": score.bpb, "roundtrip_val_bpb": rtrip.bpb, "prequant_val_bpb": pre.bpb,
              "live_val_bpb": live.bpb}
    if not all(math.isfinite(v) for v in scores.values()):
        listed = ", ".join(f"{k} {v}" for k, v in scores.items())
        raise TrainingDiverged(f"the final evaluation is not finite ({listed}); the run has no score and writes "
                               "no summary.json" + advice())
    code_bytes = run.code_bytes
    summary = {
        # The number the challenge scores leads; val_bpb / val_loss are the same figures (DESIGN section 6).
        "score_val_bpb": score.bpb,
        "score_val_loss": score.loss,
        **kind.fields(),
        "val_bpb": score.bpb,
        "val_loss": score.loss,
        "summary_version": SUMMARY_VERSION,
        # Labelled figures, all non-overlapping windows of train_seq_len: round trip, pre-quantisation
        # (the exported weights before quantisation), live (the last iterate).
        "roundtrip_val_loss": rtrip.loss,
        "roundtrip_val_bpb": rtrip.bpb,
        "prequant_val_loss": pre.loss,
        "prequant_val_bpb": pre.bpb,
        "live_val_bpb": live.bpb,
        "unigram_val_bpb": run.val.unigram_bpb,
        "tokenizer_sha256": tokenizer_sha256(run.paths.tokenizer),
        "val_tokens": score.tokens,
        "val_bytes": score.bytes,
        "run_dir": str(run.out_dir),
        "artifact": artifact_path.name,
        "artifact_bytes": artifact_bytes,
        "code_bytes": code_bytes,
        "total_bytes": artifact_bytes + code_bytes,
        "params": trained.params,
        "steps": trained.steps,
        "skipped_steps": trained.skipped_steps,
        "tokens_seen": trained.tokens_seen,
        "train_seconds": trained.train_seconds,
        **budget.summary(trained.train_seconds, calibration_s),
        "jepa": cfg.jepa.active,
        "seed": cfg.train.seed,
        "preset": cfg.preset,
        "device": device_name(rt.device),
        "world_size": rt.world_size,
        **trained.threads,
        "malloc_retained": trained.malloc_retained,
        "step_compiled": trained.step_compiled,
        "peak_memory_mib": peak_memory_mib(rt.device),
        "config_hash": cfg.hash(),
        "source_hash": source_hash(),
        "versions": versions(),
    }
    nonfinite = sorted(k for k, v in summary.items() if isinstance(v, float) and not math.isfinite(v))
    if nonfinite:
        # A non-finite score is an error, never a result (and never invalid JSON in summary.json).
        values = ", ".join(f"{k}={summary[k]}" for k in nonfinite)
        raise TrainingDiverged(f"the final evaluation gave non-finite {values}; no summary.json was written")
    log.write_json("summary.json", summary, sort_keys=False)
    log.line(budget.line(trained.train_seconds, calibration_s))
    log.line(
        f"final score_val_bpb:{score.bpb:.4f} {kind.log_fields()} roundtrip_val_bpb:{rtrip.bpb:.4f} "
        f"prequant_val_bpb:{pre.bpb:.4f} live_val_bpb:{live.bpb:.4f} "
        f"unigram_val_bpb:{run.val.unigram_bpb:.4f} artifact_bytes:{artifact_bytes} steps:{trained.steps} "
        f"train_seconds:{trained.train_seconds:.1f}"
        + (f" peak_memory_mib:{summary['peak_memory_mib']:.0f}" if summary["peak_memory_mib"] is not None else "")
    )
    if kind.note():
        log.line(f"note: the score uses {kind.note()}")
    if rt.is_main and summary["total_bytes"] > CAP_BYTES:
        # Said now, not first at `jepagolf export`: the run is over and only the quantised weights remain.
        log.line(f"warning: code + artifact = {summary['total_bytes']:,} bytes, "
                 f"{summary['total_bytes'] - CAP_BYTES:,} over the {CAP_BYTES:,}-byte cap: `jepagolf export` "
                 f"will refuse this run; `jepagolf size --artifact {artifact_path}` shows where the bytes are")
    log.close()
    return summary
