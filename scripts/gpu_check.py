"""Throughput of the real trainer on one GPU: tokens/s, step ms, MFU and peak memory for one config.

Runs jepagolf's own ``Trainer`` (the same train_step / apply_update as ``jepagolf train``): builds it,
runs the compile warm-up (which restores the initial state), then trains for ``--seconds`` of
wall-clock time and reports one JSON line. It skips the final evaluation and export, which are not
training throughput. Called once per config by scripts/gpu_check.sh.

MFU = tokens/s * train_flops_per_token(cfg) / peak, where the FLOPs are jepagolf.research.flops' analytic
count for the configured objective (the JEPA step counts its masked context pass, EMA target pass and
predictor) and the peak is the GPU's dense bf16 tensor-core rate: 989 TFLOP/s for an H100 SXM (and an
H200, the same chip), NVIDIA's datasheet figure without sparsity; override with --peak-tflops. Measured
large bf16 matmuls reach about 800 TFLOP/s on these machines, so ~80% is the practical ceiling.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from jepagolf.config import build_config, parse_set_args
from jepagolf.data.corpus import DatasetPaths
from jepagolf.data.dataset import resolve_dataset
from jepagolf.research.flops import train_flops_per_token
from jepagolf.train.loop import Trainer
from jepagolf.train.runtime import Runtime, device_name, peak_memory_mib, setup_runtime

DENSE_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0}


def peak_tflops(name: str) -> float | None:
    for key, value in DENSE_BF16_TFLOPS.items():
        if key in name:
            return value
    return None


def host_syncs_in_a_step(trainer: Trainer) -> str:
    """Run one ordinary step with CUDA's sync debug mode set to error: 'none', or the error of the first
    sync. Collapse-diagnostic steps (step 1, then every diag_every) are stepped over first: their SVD
    syncs by design, and they are a few steps in a run."""
    if trainer.rt.device.type != "cuda":
        return "n/a (cpu)"
    while trainer.is_diag_step(trainer.step + 1):
        trainer.train_step()
        trainer.apply_update()
        trainer.step += 1
    torch.cuda.set_sync_debug_mode("error")
    try:
        trainer.train_step()
        trainer.apply_update()
        trainer.step += 1
        return "none"
    except RuntimeError as e:  # reported, not hidden: the line names the synchronising operation
        return str(e).splitlines()[0][:300]
    finally:
        torch.cuda.set_sync_debug_mode("default")


def measure(cfg, rt: Runtime, paths: DatasetPaths, seconds: float, peak: float | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, rt, Path(tmp), paths)
        t0 = time.perf_counter()
        trainer.warmup(trainer.warmup_steps)
        warmup_s = time.perf_counter() - t0
        syncs = host_syncs_in_a_step(trainer)
        trainer._sync()
        start, steps = time.perf_counter(), 0
        while True:
            trainer.train_step()
            trainer.apply_update()
            trainer.step += 1
            steps += 1
            # Host time only (no sync): the host runs a bounded number of steps ahead of the device,
            # and the final synchronize below charges their time to the measurement.
            if time.perf_counter() - start >= seconds:
                break
        trainer._sync()
        total = time.perf_counter() - start
        trainer.logger.close()
    tokens = steps * cfg.train.train_batch_tokens
    tok_s = tokens / total
    flops = train_flops_per_token(cfg)
    return {
        "preset": cfg.preset,
        "jepa": cfg.jepa.active,
        "device": device_name(rt.device),
        "compiled": trainer.compiled,
        "warmup_steps": trainer.warmup_steps,
        "warmup_s": round(warmup_s, 1),
        "grad_accum": trainer.grad_accum,
        "train_batch_tokens": cfg.train.train_batch_tokens,
        "micro_batch_tokens": cfg.train.micro_batch_tokens,
        "steps": steps,
        "seconds": round(total, 2),
        "step_ms": round(1000 * total / steps, 2),
        "tokens_per_s": round(tok_s),
        "train_flops_per_token": flops,
        "tflops": round(tok_s * flops / 1e12, 1),
        "peak_tflops_assumed": peak,
        "mfu": round(tok_s * flops / (peak * 1e12), 4) if peak else None,
        "peak_memory_mib": round(peak_memory_mib(rt.device), 1) if rt.device.type == "cuda" else None,
        "host_syncs_in_step": syncs,
        "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", required=True)
    p.add_argument("--data", required=True, help="dataset folder with its tokenizer.model")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--peak-tflops", type=float, default=0.0, help="dense bf16 peak (default: by GPU name)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--jsonl", help="append the result line to this file")
    args = p.parse_args(argv)
    cfg = build_config(args.preset, {"data_path": args.data, **parse_set_args(args.overrides)}, environ={})
    rt = setup_runtime(cfg.train.device)
    paths = resolve_dataset(args.data, None, announce=False)
    name = device_name(rt.device)
    peak = args.peak_tflops or (peak_tflops(name) if rt.device.type == "cuda" else None)
    result = measure(cfg, rt, paths, args.seconds, peak)
    result["overrides"] = args.overrides
    line = json.dumps(result, sort_keys=True)
    print(line, flush=True)
    if args.jsonl:
        with open(args.jsonl, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
