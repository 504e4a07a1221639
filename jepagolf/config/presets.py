"""The presets: named sets of values that differ from the dataclass defaults (= v3). Pure data."""

from __future__ import annotations

from typing import Any

# Presets (DESIGN section 7). Only the differences from the dataclass defaults (= v3) are listed.
# The challenge's naive baseline, as the reference trainer (openai/parameter-golf train_gpt.py) runs it
# end to end: 9 blocks, width 512, relu^2 MLP x2, no JEPA, no bigram; its micro-batch slicing, its
# warmdown rule, its logging and validation cadence; the last weights exported in its int8 + zlib scheme.
BASELINE: dict[str, Any] = {
    "num_layers": 9,
    "mlp_mult": 2.0,
    "mlp_leaky_slope": 0.0,
    "qk_gain_init": 1.5,
    "bigram_buckets": 0,
    "jepa": False,
    "batch_slicing": "reference",
    "warmdown_mode": "reference",
    "val_loss_every": 1000,
    "train_log_every": 200,
    "artifact_ema_decay": 0.0,
    "export_scheme": "int8-zlib",
    "gptq": False,
}
PRESETS: dict[str, dict[str, Any]] = {
    "v3": {
        # Scored as every record since March 2026: sliding windows, stride 64 at seq 1024.
        "eval_stride": 64,
    },
    "baseline": BASELINE,
    # The same training, shipped with jepagolf's export: artifact EMA, GPTQ int5/int6, LZMA.
    "baseline-plus": {**BASELINE, "artifact_ema_decay": 0.9999, "export_scheme": "int6-lzma", "gptq": True},
    "cpu-demo": {
        # Small enough for ~4 minutes of training on 2 CPU cores with JEPA on; step-based schedule
        # so that runs with the same seed are comparable across machines.
        "num_layers": 4,
        "model_dim": 192,
        "num_heads": 4,
        "num_kv_heads": 2,
        "mlp_mult": 3.0,
        "train_seq_len": 256,
        "train_batch_tokens": 4096,
        "micro_batch_tokens": 4096,
        "iterations": 250,
        "warmdown_iters": 80,
        "muon_momentum_warmup_steps": 50,
        "jepa_lambda_warmup_steps": 25,
        # A research preset: its schedules scale with the run's length (`--set iterations=4000` keeps their
        # shape); at its 250 steps the fractions give exactly the counts above (a test pins it).
        "schedule_scale": "run",
        "warmdown_frac": 0.32,
        "muon_momentum_warmup_frac": 0.2,
        "jepa_lambda_warmup_frac": 0.1,
        "artifact_ema_horizon_frac": 0.4,
        "max_wallclock_seconds": 0.0,
        "val_loss_every": 50,
        "val_max_tokens": 65_536,
        "val_batch_tokens": 16_384,
        "train_log_every": 25,
        "artifact_ema_decay": 0.99,
        "int6_min_numel": 4096,
        "device": "cpu",
    },
    "smoke": {
        # Tiny: exercises every code path (U-Net skips, GQA, bigram, JEPA, accumulation, export). Runs of a few
        # steps: compiling the step would cost more than it saves.
        "step_compile": "off",
        "num_layers": 3,
        "model_dim": 64,
        "num_heads": 4,
        "num_kv_heads": 2,
        "mlp_mult": 2.0,
        "bigram_buckets": 256,
        "jepa_pred_hidden": 32,
        "jepa_lambda_warmup_steps": 4,
        "train_seq_len": 64,
        "train_batch_tokens": 1024,
        "micro_batch_tokens": 512,
        "iterations": 12,
        "warmdown_iters": 4,
        "muon_momentum_warmup_steps": 4,
        "max_wallclock_seconds": 0.0,
        "val_loss_every": 6,
        "val_max_tokens": 8192,
        "val_batch_tokens": 4096,
        "train_log_every": 3,
        "artifact_ema_decay": 0.9,
        "int6_min_numel": 1024,
        "gptq_calib_tokens": 8192,
        "device": "cpu",
    },
}
