"""jepagolf.research.stats: its use of scipy.stats (which way round the samples go, the margin, the one-sided
tests, the degenerate samples), the power and MDE against a simulation, and the weighted line."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from jepagolf.research.stats import (
    mean_std,
    paired_mde,
    paired_t_power,
    paired_t_test,
    welch_t_test,
    wls_line,
)

# (control, arm) samples: seed-paired val_bpb-like numbers and a few awkward shapes.
SAMPLES = [
    ([1.2431, 1.2459, 1.2417], [1.2390, 1.2422, 1.2401]),
    ([3.9629, 3.9747, 3.9620], [3.9624, 3.9730, 3.9598]),
    ([1.0, 1.2, 0.9], [0.95, 1.1, 0.91]),
    ([2.0, 2.1, 2.05, 1.98, 2.2], [2.01, 2.0, 2.1, 1.9, 2.15]),
    ([0.5, 0.52], [0.49, 0.515]),
    ([10.0, 10.5, 9.0, 11.0, 10.2, 9.9, 10.1], [9.5, 10.4, 9.1, 10.0, 10.0, 9.7, 9.6]),
]


@pytest.mark.parametrize("control,arm", SAMPLES)
def test_paired_t_test_is_the_test_of_arm_minus_control(control, arm):
    res = paired_t_test(control, arm)
    d = np.asarray(arm) - np.asarray(control)  # arm - control: an arm that lowers the loss has d < 0
    n, se = len(d), d.std(ddof=1) / math.sqrt(len(d))
    assert (res.n, res.df, res.mean) == (n, n - 1, pytest.approx(d.mean(), rel=1e-12))
    assert res.sd == pytest.approx(d.std(ddof=1), rel=1e-12) and res.se == pytest.approx(se, rel=1e-12)
    assert res.t == pytest.approx(d.mean() / se, rel=1e-10)
    assert res.p_two_sided == pytest.approx(2 * sps.t.sf(abs(res.t), n - 1), rel=1e-10)
    half = sps.t.ppf(0.975, n - 1) * se
    assert (res.ci_low, res.ci_high) == (pytest.approx(d.mean() - half, rel=1e-9), pytest.approx(d.mean() + half,
                                                                                                   rel=1e-9))
    assert paired_t_test(control, arm, confidence=0.8).ci_high < res.ci_high
    # One-sided against a margin: H1 mean(d) < -margin, so a margin makes the same data less convincing.
    for margin in (0.0, 0.003):
        assert res.p_less(margin) == pytest.approx(sps.t.cdf((d.mean() + margin) / se, n - 1), rel=1e-10)
    assert res.p_less(0.003) > res.p_less(0.0)
    swapped = paired_t_test(arm, control)
    assert swapped.t == pytest.approx(-res.t) and swapped.p_two_sided == pytest.approx(res.p_two_sided)


@pytest.mark.parametrize("control,arm", SAMPLES)
@pytest.mark.parametrize("alternative", ["less", "greater", "two-sided"])
def test_welch_is_the_unequal_variance_test_of_arm_minus_control(control, arm, alternative):
    a, b = np.asarray(control), np.asarray(arm)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))  # Welch-Satterthwaite
    for margin in (0.0, 0.003):
        res = welch_t_test(control, arm, alternative, margin=margin)
        t = (b.mean() - a.mean() + margin) / math.sqrt(va + vb)
        p = {"less": sps.t.cdf(t, df), "greater": sps.t.sf(t, df), "two-sided": 2 * sps.t.sf(abs(t), df)}[alternative]
        assert res.diff == pytest.approx(b.mean() - a.mean(), rel=1e-12)
        assert res.t == pytest.approx(t, rel=1e-9) and res.df == pytest.approx(df, rel=1e-10)
        assert res.p == pytest.approx(p, rel=1e-9)
    with pytest.raises(ValueError, match="alternative"):
        welch_t_test(control, arm, "smaller")


def test_degenerate_samples_are_reported_not_hidden():
    same = paired_t_test([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert math.isnan(same.t) and math.isnan(same.p_two_sided)
    shift = paired_t_test([1.0, 2.0, 3.0], [0.5, 1.5, 2.5])  # identical nonzero differences: certain
    assert shift.t == -math.inf and shift.p_two_sided == 0.0 and shift.p_less() == 0.0
    one = paired_t_test([1.0], [0.5])
    assert one.mean == -0.5 and math.isnan(one.p_two_sided)
    assert math.isnan(welch_t_test([1.0], [0.5, 0.6]).p)
    m, s = mean_std([1.0, 2.0, 3.0])
    assert (m, s) == (2.0, 1.0)
    with pytest.raises(ValueError):
        paired_t_test([1.0, 2.0], [1.0])


# ----- power, minimal detectable effect, weighted line --------------------------------------------


def _simulated_power(effect: float, sd: float, n: int, draws: int, seed: int) -> float:
    """How often the two-sided paired t-test at 5% rejects, over ``draws`` simulated sets of ``n`` pairs whose
    differences are N(effect, sd)."""
    d = np.random.default_rng(seed).normal(effect, sd, size=(draws, n))
    t = d.mean(axis=1) / (d.std(axis=1, ddof=1) / math.sqrt(n))
    return float(np.mean(np.abs(t) > sps.t.ppf(0.975, n - 1)))


@pytest.mark.parametrize("n", [3, 5, 10])
def test_paired_mde_is_found_80_percent_of_the_time_in_a_simulation(n):
    sd, draws = 0.0123, 4000
    mde = paired_mde(sd, n)
    # 4,000 draws: the rate's sd is 0.0063, so 0.025 is four of them.
    assert _simulated_power(mde, sd, n, draws, seed=n) == pytest.approx(0.8, abs=0.025)
    assert _simulated_power(0.0, sd, n, draws, seed=100 + n) == pytest.approx(0.05, abs=0.014)
    assert paired_t_power(mde, sd, n) == pytest.approx(0.8, abs=1e-9)  # the MDE inverts the power
    z = (sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) * sd / math.sqrt(n)
    assert mde > z  # the t test's heavier tails need a larger effect than the z approximation


def test_paired_power_is_alpha_without_an_effect_and_rises_with_it():
    for n in (2, 3, 8, 200):
        assert paired_t_power(0.0, 1.0, n) == pytest.approx(0.05, abs=1e-12)
        powers = [paired_t_power(e, 1.0, n) for e in (0.0, 0.3, 1.0, 2.5)]
        assert powers[0] < powers[1] and all(a <= b for a, b in zip(powers, powers[1:], strict=False))
        assert paired_t_power(-1.0, 1.0, n) == paired_t_power(1.0, 1.0, n)  # two-sided
    assert math.isnan(paired_t_power(1.0, 1.0, 1))
    assert math.isnan(paired_mde(0.0123, 1)) and math.isnan(paired_mde(0.0, 5))
    mdes = [paired_mde(1.0, n) for n in (3, 4, 8, 16, 40)]
    assert all(a > b for a, b in zip(mdes, mdes[1:], strict=False))


def test_paired_mde_known_value():
    # The rule of thumb: 10 pairs detect an effect of about one sd with 80% power (exactly 0.996 sd).
    assert paired_mde(1.0, 10) == pytest.approx(0.996, abs=1e-3)
    assert paired_t_power(0.996, 1.0, 10) == pytest.approx(0.8, abs=1e-3)


def test_wls_line_recovers_a_known_slope_and_matches_numpy():
    x = np.array([10.0, 10.5, 11.0, 11.5, 12.0])
    se = np.array([0.001, 0.002, 0.002, 0.003, 0.004])
    exact = wls_line(x, 0.02 - 0.003 * x, se)
    assert exact.slope == pytest.approx(-0.003, abs=1e-12) and exact.intercept == pytest.approx(0.02, abs=1e-10)
    assert exact.chi2 == pytest.approx(0.0, abs=1e-12) and exact.scale == 1.0
    rng = np.random.default_rng(5)
    y = 0.02 - 0.003 * x + rng.normal(0.0, se)
    fit = wls_line(x, y, se)
    coef, cov = np.polyfit(x, y, 1, w=1 / se, cov="unscaled")  # numpy weights are 1/sigma
    assert fit.slope == pytest.approx(coef[0], rel=1e-9) and fit.intercept == pytest.approx(coef[1], rel=1e-9)
    scale = max(1.0, fit.chi2 / 3)
    assert fit.slope_se == pytest.approx(math.sqrt(cov[0, 0] * scale), rel=1e-9)
    assert abs(fit.slope + 0.003) < 4 * fit.slope_se


def test_wls_line_scatter_inflates_the_errors():
    x, se = [1.0, 2.0, 3.0, 4.0], [0.01] * 4
    tight = wls_line(x, [0.0, 0.01, 0.02, 0.03], se)
    loose = wls_line(x, [0.0, 0.05, -0.03, 0.03], se)
    assert tight.scale == 1.0 and loose.scale > 1.0 and loose.slope_se > tight.slope_se


def test_intervals_widen_away_from_the_data():
    x = [11.0, 11.5, 12.0, 12.5]
    fit = wls_line(x, [0.001, -0.002, 0.0, -0.003], [0.002, 0.002, 0.003, 0.003])
    widths = [np.subtract(*fit.prediction_interval(x0)[::-1]) for x0 in (11.75, 13.0, 15.0, 18.0)]
    assert all(a < b for a, b in zip(widths, widths[1:], strict=False))
    for x0 in (11.75, 18.0):
        ci, pi = fit.confidence_interval(x0), fit.prediction_interval(x0)
        assert pi[0] < ci[0] < fit.predict(x0) < ci[1] < pi[1]


def test_wls_line_rejects_bad_input():
    with pytest.raises(ValueError, match="two distinct"):
        wls_line([1.0, 1.0], [0.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="standard error"):
        wls_line([1.0, 2.0], [0.0, 1.0], [1.0, 0.0])


def test_wilcoxon_is_scipys_signed_rank_test_of_the_same_differences():
    control = [3.0, 3.1, 2.9, 3.05, 2.95, 3.02]
    arm = [2.99, 3.08, 2.91, 3.04, 2.93, 3.01]
    res = paired_t_test(control, arm)
    d = np.asarray(arm) - np.asarray(control)
    assert res.p_wilcoxon == pytest.approx(float(sps.wilcoxon(d).pvalue), rel=1e-12)
    assert res.diffs == pytest.approx(tuple(d), rel=1e-12)
    # All 5 pairs one way: the exact two-sided p is 2 / 2^5.
    assert paired_t_test([0.0] * 5, [0.1, 0.2, 0.3, 0.4, 0.5]).p_wilcoxon == pytest.approx(2 / 32)
    # Nothing to rank: every difference 0, or a single pair.
    assert math.isnan(paired_t_test([1.0, 2.0], [1.0, 2.0]).p_wilcoxon)
    assert math.isnan(paired_t_test([1.0], [2.0]).p_wilcoxon)


def test_one_failed_run_moves_the_t_test_but_only_one_rank_of_the_wilcoxon():
    """The reason both are reported: seven seeds where the arm is slightly better and one where it failed. The
    size of the failure decides the t-test; the signed-rank test sees only that it is the largest difference."""
    control = [3.0 + 0.01 * i for i in range(8)]
    better = [-0.004, -0.006, -0.003, -0.005, -0.007, -0.002, -0.004]
    small, large = ([c + d for c, d in zip(control, [*better, fail], strict=True)] for fail in (0.0081, 0.15))
    t_small, t_large = paired_t_test(control, small), paired_t_test(control, large)
    assert t_small.p_wilcoxon == t_large.p_wilcoxon
    assert t_large.p_two_sided > t_small.p_two_sided and t_large.mean > 0 > t_small.mean
    assert (t_small.count_above(0.05), t_large.count_above(0.05)) == (0, 1)
    # count_above in other units: differences in bpb times nats per bpb.
    assert t_large.count_above(0.05, unit=0.3) == 0 and t_large.count_above(0.05, unit=1 / 0.3) == 1


def test_paired_windows_pair_each_seeds_steps_and_test_the_window_means():
    """Arm minus control at the steps both logged, one mean per seed and window (start < step <= end), a paired
    t over the seeds; a window some seed has no step in is left out, and a seed only one arm has is ignored."""
    from jepagolf.research.stepwise import paired_windows

    control = {1: {10: 5.0, 20: 5.0, 30: 4.0}, 2: {10: 6.0, 20: 6.0, 30: 3.0}, 3: {10: 1.0}}
    arm = {1: {10: 4.0, 20: 4.5, 30: 4.0, 40: 1.0}, 2: {10: 5.9, 20: 5.9, 30: 3.5}, 9: {10: 0.0}}
    ws = paired_windows(control, arm, "v3", window=20)
    assert [(w.start, w.end) for w in ws] == [(0, 20), (20, 40)]  # none past step 30, the last both logged
    first, second = ws
    assert first.test.n == 2 and first.points == 2
    assert first.test.diffs == pytest.approx((-0.75, -0.1))  # seed 1: mean(-1, -0.5); seed 2: mean(-0.1, -0.1)
    assert second.test.diffs == pytest.approx((0.0, 0.5)) and second.points == 1  # step 40: only the arm
    assert first.test.mean == pytest.approx(-0.425)
    assert paired_windows({1: {5: 1.0}}, {1: {700: 1.0}}, "x", window=500) == []  # no step both logged
    with pytest.raises(ValueError, match="window"):
        paired_windows(control, arm, "v3", window=0)


def test_paired_spikes_flag_a_run_whose_batch_ce_jumps_above_its_controls():
    """A seed's largest arm-minus-control jump at one logged step is reported when above the threshold, with the
    mean difference over the run's last window; step 1 (every run starts alike) and seeds one arm lacks are
    ignored, and a control that spikes makes no arm's spike."""
    from jepagolf.research.stepwise import paired_spikes

    steps = range(1, 11)
    control = {s: {t: 5.0 - 0.1 * t for t in steps} for s in (1, 2, 3)}
    arm = {s: dict(v) for s, v in control.items()}
    arm[1][1] += 3.0  # step 1: ignored
    arm[2][4] += 2.0  # the spike
    arm[2].update({t: arm[2][t] + 0.3 for t in (8, 9, 10)})  # and it ends behind
    arm[3][6] += 0.4  # under the threshold
    control[3][7] += 5.0  # the control's own spike: the arm is below it there, no spike of the arm
    arm[9] = {4: 99.0}  # a seed the control lacks
    spikes = paired_spikes(control, arm, "v3", window=3, threshold=0.5)
    assert [(s.arm, s.seed, s.step) for s in spikes] == [("v3", 2, 4)]
    assert spikes[0].jump == pytest.approx(2.0) and spikes[0].last == pytest.approx(0.3)
    assert [s.seed for s in paired_spikes(control, arm, "v3", window=3, threshold=0.3)] == [2, 3]


def test_control_peak_is_the_controls_largest_rise_above_any_arm():
    """control_peak: the largest control-minus-arm at one logged step over every arm and seed (step 1 ignored),
    named by the arm it rose above; the table says whether that is a spike of the control."""
    from jepagolf.research.stepwise import control_peak, paired_spikes, windows_markdown

    steps = range(1, 11)
    control = {s: {t: 5.0 - 0.1 * t for t in steps} for s in (1, 2)}
    quiet = {s: {t: v + 0.01 for t, v in d.items()} for s, d in control.items()}
    arms = {"a": quiet, "b": {s: dict(d) for s, d in quiet.items()}}
    control[1][1] += 9.0  # step 1: ignored
    control[2][5] += 0.2  # its largest rise: 0.19 above a (which sits 0.01 above the control elsewhere)...
    arms["b"][2][5] -= 0.05  # ... and 0.24 above b, lower on that batch
    peak = control_peak(control, arms, window=3)
    assert (peak.arm, peak.seed, peak.step) == ("b", 2, 5) and peak.jump == pytest.approx(0.24)
    assert peak.last == pytest.approx(-0.01)
    assert control_peak(control, {}, window=3) is None
    md = windows_markdown([], "ce", "<!-- m -->", [], 0.5, peak)
    assert "+0.240 nats/token (ce seed 2, step 5, above b); under 0.5: no control spiked" in md
    control[2][6] += 4.0
    peak = control_peak(control, arms, window=3)
    assert peak.step == 6 and "the control spiked there" in windows_markdown([], "ce", "<!-- m -->", [], 0.5, peak)
    assert paired_spikes(control, arms["a"], "a") == []  # the control's spike is no arm's
