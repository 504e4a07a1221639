"""Schedules by the run's own length (issue 19): with schedule_scale=run every warm-up, the warmdown, the
Muon momentum warm-up, the lambda ramp, the target EMA's momentum and the artifact EMA's horizon sit at the
same fractions of a run of 1,000 and of 10,000 steps (or of a 100 s and a 1,000 s budget); the challenge
presets keep their counts; cpu-demo's fractions give exactly its counts at its 250 steps."""

from __future__ import annotations

import pytest

from jepagolf.config import ConfigError, build_config
from jepagolf.jepa.target import ema_momentum
from jepagolf.train import schedules

FRACTIONS = (0.0, 0.003, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 0.74, 0.75, 0.8, 0.9, 0.999, 1.0)


def run_cfg(steps: int, **over):
    return build_config("v3", {"schedule_scale": "run", "iterations": steps, "max_wallclock_seconds": 0.0,
                               **over}, environ={})


def shape(cfg, step: int, elapsed_s: float = 0.0) -> tuple[float, ...]:
    j = cfg.jepa
    return (schedules.lr_scale(cfg, step, elapsed_s), schedules.muon_momentum(cfg, step, elapsed_s),
            ema_momentum(schedules.progress(cfg, step, elapsed_s), j.jepa_ema_start, j.jepa_ema_end))


def test_the_same_fractions_at_1000_and_10000_steps():
    short, long = run_cfg(1000), run_cfg(10_000)
    for f in FRACTIONS:
        s = round(f * 1000)
        assert shape(short, s) == pytest.approx(shape(long, 10 * s), abs=1e-12), f
        # The lambda ramp starts with a small weight at step 0 ((step + 1) / length): one step's worth apart.
        ramp = schedules.lambda_warmup_steps(short)
        assert abs(schedules.jepa_lambda(short, s) - schedules.jepa_lambda(long, 10 * s)) <= 0.12 / ramp + 1e-12
    for cfg in (short, long):
        n = cfg.train.iterations
        got = schedules.lengths(cfg)
        assert got["warmdown_steps"] / n == 0.25 and got["muon_momentum_warmup_steps"] / n == 0.1
        assert got["jepa_lambda_warmup_steps"] / n == 0.02
        assert 1 / (1 - got["artifact_ema_decay"]) / n == pytest.approx(1.0)  # the horizon: the run's length
    # Where each schedule turns: the warmdown starts at 75% and the warm-ups end at 10% and 2% of either run.
    for cfg in (short, long):
        n = cfg.train.iterations
        assert schedules.lr_scale(cfg, round(0.75 * n), 0.0) == 1.0 > schedules.lr_scale(cfg, round(0.75 * n) + 1, 0.0)
        assert schedules.muon_momentum(cfg, round(0.1 * n)) == 0.95 > schedules.muon_momentum(cfg, round(0.1 * n) - 1)
        assert schedules.jepa_lambda(cfg, round(0.02 * n) - 1) == 0.12 > schedules.jepa_lambda(cfg, round(0.02 * n) - 2)


def test_the_same_fractions_of_a_100_and_a_1000_second_budget():
    short, long = (run_cfg(10**7, max_wallclock_seconds=b) for b in (100.0, 1000.0))
    for f in FRACTIONS[1:]:
        # Steps far below the step limit: the clock decides, at the same fraction of either budget.
        assert shape(short, 10, f * 100.0) == pytest.approx(shape(long, 10, f * 1000.0), abs=1e-12), f
        assert schedules.jepa_lambda(short, 10, f * 100.0) == pytest.approx(schedules.jepa_lambda(long, 10, f * 1000.0))
    assert schedules.lr_scale(short, 10, 80.0) == pytest.approx(0.8)  # 20 s left of a 25 s warmdown


def test_challenge_presets_keep_their_counts():
    for preset in ("v3", "baseline", "baseline-plus"):
        cfg = build_config(preset, {}, environ={})
        assert cfg.optim.schedule_scale == "steps"
        o, j = cfg.optim, cfg.jepa
        assert schedules.lengths(cfg) == {
            "warmdown_steps": o.warmdown_iters, "muon_momentum_warmup_steps": o.muon_momentum_warmup_steps,
            "jepa_lambda_warmup_steps": j.jepa_lambda_warmup_steps, "artifact_ema_decay": o.artifact_ema_decay}
        # Changing the run's length changes no count.
        other = build_config(preset, {"iterations": 777}, environ={})
        assert schedules.lengths(other) == schedules.lengths(cfg)


def test_cpu_demo_scales_with_its_run_and_is_unchanged_at_250_steps():
    demo = build_config("cpu-demo", {}, environ={})
    fixed = build_config("cpu-demo", {"schedule_scale": "steps"}, environ={})
    assert demo.optim.schedule_scale == "run"
    assert schedules.lengths(demo) == schedules.lengths(fixed) == {
        "warmdown_steps": 80, "muon_momentum_warmup_steps": 50, "jepa_lambda_warmup_steps": 25,
        "artifact_ema_decay": 0.99}
    for step in range(252):  # bitwise, every step
        assert shape(demo, step) == shape(fixed, step)
        assert schedules.jepa_lambda(demo, step) == schedules.jepa_lambda(fixed, step)
    long = build_config("cpu-demo", {"iterations": 4000}, environ={})
    assert schedules.lengths(long) == {"warmdown_steps": 1280, "muon_momentum_warmup_steps": 800,
                                       "jepa_lambda_warmup_steps": 400, "artifact_ema_decay": 1 - 1 / 1600}


def test_schedule_keys_are_checked():
    with pytest.raises(ConfigError, match="schedule_scale"):
        build_config("v3", {"schedule_scale": "runs"}, environ={})
    with pytest.raises(ConfigError, match="warmdown_frac"):
        build_config("v3", {"warmdown_frac": 1.5}, environ={})
    with pytest.raises(ConfigError, match="jepa_lambda_warmup_frac"):
        build_config("v3", {"jepa_lambda_warmup_frac": -0.1}, environ={})
    # The last weights (artifact_ema_decay=0) stay the last weights.
    assert schedules.artifact_ema_decay(run_cfg(1000, artifact_ema_decay=0.0)) == 0.0
