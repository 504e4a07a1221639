"""jepagolf.research.stats against scipy (a dev dependency only) on known samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, special
from scipy import stats as sps

from jepagolf.research.stats import (
    betainc,
    mean_std,
    paired_mde,
    paired_t_power,
    paired_t_test,
    t_cdf,
    t_ppf,
    welch_t_test,
    wls_line,
)

DFS = [0.5, 1, 2, 2.5, 3, 4.7, 10, 30, 100, 1e4]
TS = [-80.0, -6.0, -2.5, -1.0, -0.1, 0.0, 0.3, 1.7, 4.0, 25.0]

# (control, arm) samples: seed-paired val_bpb-like numbers and a few awkward shapes.
SAMPLES = [
    ([1.2431, 1.2459, 1.2417], [1.2390, 1.2422, 1.2401]),
    ([3.9629, 3.9747, 3.9620], [3.9624, 3.9730, 3.9598]),
    ([1.0, 1.2, 0.9], [0.95, 1.1, 0.91]),
    ([2.0, 2.1, 2.05, 1.98, 2.2], [2.01, 2.0, 2.1, 1.9, 2.15]),
    ([0.5, 0.52], [0.49, 0.515]),
    ([10.0, 10.5, 9.0, 11.0, 10.2, 9.9, 10.1], [9.5, 10.4, 9.1, 10.0, 10.0, 9.7, 9.6]),
]


def test_betainc_matches_scipy():
    rng = np.random.default_rng(0)
    for _ in range(300):
        a, b = rng.uniform(0.05, 60.0, size=2)
        x = rng.uniform(0, 1)
        assert betainc(a, b, x) == pytest.approx(special.betainc(a, b, x), rel=1e-9, abs=1e-13)
    assert betainc(2.0, 3.0, 0.0) == 0.0 and betainc(2.0, 3.0, 1.0) == 1.0
    with pytest.raises(ValueError):
        betainc(0.0, 1.0, 0.5)


@pytest.mark.parametrize("df", DFS)
def test_t_cdf_matches_scipy(df):
    for t in TS:
        assert t_cdf(t, df) == pytest.approx(sps.t.cdf(t, df), rel=1e-8, abs=1e-15), t


@pytest.mark.parametrize("df", DFS)
def test_t_ppf_matches_scipy(df):
    for q in (1e-6, 0.005, 0.025, 0.1, 0.5, 0.8, 0.975, 0.995, 1 - 1e-6):
        assert t_ppf(q, df) == pytest.approx(sps.t.ppf(q, df), rel=1e-8, abs=1e-10), q


@settings(max_examples=60, deadline=None)
@given(st.floats(-40, 40), st.floats(0.3, 500))
def test_t_cdf_is_symmetric_and_inverted_by_ppf(t, df):
    assert t_cdf(t, df) + t_cdf(-t, df) == pytest.approx(1.0, abs=1e-12)
    p = t_cdf(t, df)
    if 1e-9 < p < 1 - 1e-9:
        assert t_ppf(p, df) == pytest.approx(t, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("control,arm", SAMPLES)
def test_paired_t_test_and_ci_match_scipy(control, arm):
    res = paired_t_test(control, arm)
    ref = sps.ttest_rel(arm, control)
    assert res.t == pytest.approx(ref.statistic, rel=1e-10)
    assert res.p_two_sided == pytest.approx(ref.pvalue, rel=1e-8)
    assert res.df == len(control) - 1
    d = np.asarray(arm) - np.asarray(control)
    lo, hi = sps.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=sps.sem(d))
    assert (res.ci_low, res.ci_high) == (pytest.approx(lo, rel=1e-8), pytest.approx(hi, rel=1e-8))
    # One-sided against a margin: H1 mean(arm - control) < -margin.
    for margin in (0.0, 0.003):
        ref1 = sps.ttest_rel(np.asarray(arm) + margin, control, alternative="less")
        assert res.p_less(margin) == pytest.approx(ref1.pvalue, rel=1e-8)


@pytest.mark.parametrize("control,arm", SAMPLES)
@pytest.mark.parametrize("alternative", ["less", "greater", "two-sided"])
def test_welch_matches_scipy(control, arm, alternative):
    for margin in (0.0, 0.003):
        res = welch_t_test(control, arm, alternative, margin=margin)
        ref = sps.ttest_ind(np.asarray(arm) + margin, control, equal_var=False, alternative=alternative)
        assert res.t == pytest.approx(ref.statistic, rel=1e-10)
        assert res.p == pytest.approx(ref.pvalue, rel=1e-8)
        assert res.df == pytest.approx(ref.df, rel=1e-10)


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


def _scipy_power(effect: float, sd: float, n: int, alpha: float = 0.05) -> float:
    df, nc = n - 1, effect * math.sqrt(n) / sd
    c = sps.t.ppf(1 - alpha / 2, df)
    # scipy answers nan far in the lower tail, where the probability is ~0.
    return float(sps.nct.sf(c, df, nc) + np.nan_to_num(sps.nct.cdf(-c, df, nc)))


@pytest.mark.parametrize("n", [2, 3, 5, 8, 12, 30, 200])
@pytest.mark.parametrize("effect", [0.0, 0.3, 1.0, 2.5])
def test_paired_power_matches_scipy_noncentral_t(n, effect):
    assert paired_t_power(effect, 1.0, n) == pytest.approx(_scipy_power(effect, 1.0, n), abs=2e-6)


@pytest.mark.parametrize("n", [3, 4, 8, 16, 40])
def test_paired_mde_matches_scipy_power_calculation(n):
    sd = 0.0123
    mde = paired_mde(sd, n)
    # scipy's root of the same power equation, and the textbook normal approximation as a sanity bound.
    ref = optimize.brentq(lambda d: _scipy_power(d, sd, n) - 0.8, 1e-9, 8 * sd)
    assert mde == pytest.approx(ref, rel=1e-5)
    z = (sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) * sd / math.sqrt(n)
    assert mde > z  # the t test's heavier tails need a larger effect than the z approximation
    assert math.isnan(paired_mde(sd, 1)) and math.isnan(paired_mde(0.0, 5))


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
