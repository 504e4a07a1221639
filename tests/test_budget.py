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
    # The promise: training plus calibration within the cap. (Training alone within cap - reserve holds when
    # the last step takes the mean pace, which a loaded machine does not keep: that rule is tested with a
    # scripted clock below, not with this one.)
    assert summary["budget_seconds"] <= CAP_S
    log = (tmp_path / "run" / "train.log").read_text()
    assert f"budget train_seconds:{summary['train_seconds']:.2f} calibration_seconds:{calib:.2f}" in log
    assert "over the cap" not in log


class FakeClock:
    """A clock that only moves when a faked calibration batch runs: by the next scripted duration."""

    def __init__(self, durations: list[float]) -> None:
        self.now, self.durations, self.rows = 0.0, list(durations), []

    def __call__(self) -> float:
        return self.now

    def collect(self, gpt, tokens):
        self.rows.append(tokens.shape[0])
        self.now += self.durations.pop(0)
        return {}


def fake_estimate(monkeypatch, durations: list[float], sequences: int) -> tuple[float, FakeClock]:
    from jepagolf.export import gptq

    clock = FakeClock(durations)
    monkeypatch.setattr(gptq, "collect_hessians", clock.collect)
    monkeypatch.setattr(gptq, "calibration_tokens", lambda data_dir, n, seq_len: torch.zeros(sequences, 4))
    cfg = build_config("smoke", {"gptq": True}, environ={})
    return gptq.estimate_calibration_seconds(None, cfg, "unused", clock=clock), clock


def test_calibration_estimate_takes_the_median_of_several_batches(monkeypatch):
    # 64 batches of 8: the first pays one-off costs (2 s), one later batch is slowed by a busy host (3 s),
    # the others take 0.1 s. One sampled batch times 63 would reserve 2 + 3 * 63 = 191 s.
    estimate, clock = fake_estimate(monkeypatch, [2.0, 3.0, 0.1, 0.1, 0.1, 0.1, 50.0], sequences=512)
    # The first batch, 5 samples, and the full pass (the median pace says 6.4 s: cheap enough to time). It
    # took 50 s here: the bound is above the median extrapolation, which stands.
    assert clock.rows == [8] * 6 + [512]
    assert estimate == pytest.approx(2.0 + 0.1 * 63)


def test_calibration_estimate_is_bounded_by_a_measured_full_pass(monkeypatch):
    # A pace of 0.15 s per batch extrapolates to 2 + 0.15 * 63 = 11.45 s; the full pass, timed because
    # 64 * 0.15 = 9.6 s is cheap, took 4 s: the estimate is that plus the first batch's one-off excess.
    estimate, clock = fake_estimate(monkeypatch, [2.0, 0.15, 0.15, 9.0, 0.15, 0.15, 4.0], sequences=512)
    assert clock.rows == [8, 8, 8, 8, 8, 8, 512]
    assert estimate == pytest.approx((2.0 - 0.15) + 4.0)


def test_calibration_estimate_skips_an_expensive_full_pass(monkeypatch):
    # At 1 s per batch the whole pass would take 64 s: not timed, the median extrapolation is the estimate.
    estimate, clock = fake_estimate(monkeypatch, [1.5, 1.0, 1.0, 1.2, 0.9, 1.0], sequences=512)
    assert clock.rows == [8] * 6
    assert estimate == pytest.approx(1.5 + 1.0 * 63)


def test_calibration_estimate_of_one_batch_is_that_batch(monkeypatch):
    estimate, clock = fake_estimate(monkeypatch, [0.7], sequences=5)
    assert clock.rows == [5] and estimate == pytest.approx(0.7)


@pytest.mark.parametrize("step_s", [0.1, 0.37, 1.3])
def test_time_up_stops_one_mean_step_before_the_training_budget(step_s):
    """With a reserve, training stops when one more step at the mean pace would pass the cap less the reserve;
    at a steady pace it therefore ends within it. Without one, it stops once the cap is reached (the reference
    trainer's rule); the guard stops at its own seconds and keeps no reserve."""
    from jepagolf.train.budget import Budget

    def run(budget: Budget) -> float:
        elapsed, steps = 0.0, 0
        while not budget.time_up(elapsed, steps):
            elapsed, steps = elapsed + step_s, steps + 1
        return elapsed

    with_reserve = Budget(cap_s=10.0, calibration_reserve_s=2.0)
    ended = run(with_reserve)
    assert with_reserve.train_s - step_s < ended <= with_reserve.train_s
    plain = run(Budget(cap_s=10.0))
    assert 10.0 <= plain < 10.0 + step_s
    guarded = run(Budget(cap_s=0.0, guard_s=3.0))
    assert 3.0 <= guarded < 3.0 + step_s
