"""Helpers shared by several test files (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

from pathlib import Path

import torch

from jepagolf.jepa.objective import JepaLM


def smoke_train_args(data: Path, out: Path, *sets: str, iterations: int = 2) -> list[str]:
    """`jepagolf train` arguments for a short smoke run on ``data`` into ``out``; ``sets`` are extra
    KEY=VALUE overrides, applied after (so they win over) the defaults here."""
    args = ["train", "--preset", "smoke", "--data", str(data), "--out", str(out), "--set", f"iterations={iterations}",
            "--set", "val_loss_every=0"]
    for s in sets:
        args += ["--set", s]
    return args


def live_model(cfg) -> JepaLM:
    """A JepaLM whose zero-initialised weights are perturbed, so that every path carries signal."""
    torch.manual_seed(0)
    model = JepaLM(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model
