"""The progress lines of ablate and ladder (issue 23): the time-left arithmetic as pure functions."""

from __future__ import annotations

import pytest

from jepagolf.research.progress import Progress, eta_seconds, format_duration


def test_eta_scales_the_calibrated_estimates_by_the_runs_so_far():
    # Nothing trained yet: the estimates as they are.
    assert eta_seconds(0.0, [], [10.0, 20.0, 30.0]) == 60.0
    # Two runs estimated at 10 s each took 30 s: the machine runs 1.5x slower than calibrated.
    assert eta_seconds(30.0, [10.0, 10.0], [20.0, 40.0]) == pytest.approx(90.0)
    # Faster than calibrated, and nothing left.
    assert eta_seconds(5.0, [10.0], [10.0]) == pytest.approx(5.0)
    assert eta_seconds(50.0, [10.0, 10.0], []) == 0.0
    # Unknown estimates (all 1): the mean time of the runs so far times the runs left.
    assert eta_seconds(12.0, [1.0, 1.0, 1.0], [1.0, 1.0]) == pytest.approx(8.0)


def test_format_duration():
    assert format_duration(45) == "45 s"
    assert format_duration(750) == "12.5 min"
    assert format_duration(2 * 3600 + 5 * 60) == "2 h 05 min"


def test_progress_skips_finished_runs_and_counts_only_training_time():
    now = [0.0]
    p = Progress([10.0, 10.0, 20.0, 20.0], clock=lambda: now[0])
    assert p.line(0) == "[1/4] 0 s in, ~60 s left"
    p.skip(0)  # finished earlier: leaves the estimate, costs nothing
    p.begin(1)
    now[0] = 20.0  # took twice its estimate
    p.end(1)
    assert p.left_s() == pytest.approx(80.0)  # (20 + 20) x 2
    now[0] = 25.0  # five seconds of reporting between runs: not training time
    assert p.line(2) == "[3/4] 25 s in, ~80 s left"


def test_relative_estimates_give_no_time_before_a_run_has_trained():
    """An ablation at equal steps estimates its runs in training FLOPs: before the first run trains there is
    no time to state (the first line once read '~48379548838 h 35 min left')."""
    now = [0.0]
    p = Progress([4e12, 8e12, 4e12], clock=lambda: now[0], seconds=False)
    assert p.line(0) == "[1/3] 0 s in, time left known after the first run"
    p.begin(0)
    now[0] = 60.0
    p.end(0)
    assert p.line(1) == "[2/3] 60 s in, ~3.0 min left"  # 8e12 + 4e12 at 60 s per 4e12
