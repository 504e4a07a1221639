"""The wall-clock budget: everything that reads training data (the steps and the GPTQ calibration)
finishes within max_wallclock_seconds, and the run says how the seconds were spent."""

from __future__ import annotations

import pytest
import torch

from jepagolf.config import build_config
from jepagolf.train.run import train
from jepagolf.train.runtime import Runtime

CAP_S = 5.0


def test_gptq_calibration_runs_inside_the_cap(demo_data, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = build_config("smoke", {"max_wallclock_seconds": CAP_S, "iterations": 100_000, "val_loss_every": 0,
                                     "train_log_every": 1000, "diag_every": -1}, environ={})
        summary = train(cfg, Runtime(device=torch.device("cpu")), tmp_path / "run")
    finally:
        torch.set_num_threads(threads)
    assert summary["steps"] < 100_000  # the cap, not the step count, ended training
    reserve, calib = summary["calibration_reserve_seconds"], summary["calibration_seconds"]
    assert reserve > 0 and calib > 0
    assert summary["budget_seconds"] == pytest.approx(summary["train_seconds"] + calib)
    assert summary["budget_seconds"] <= CAP_S
    assert summary["train_seconds"] <= CAP_S - reserve
    log = (tmp_path / "run" / "train.log").read_text()
    assert f"budget train_seconds:{summary['train_seconds']:.2f} calibration_seconds:{calib:.2f}" in log
    assert "over the cap" not in log
