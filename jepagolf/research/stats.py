"""Small-sample statistics for seed-paired ablations: jepagolf's bookkeeping around ``scipy.stats``.

scipy gives the distributions and the tests (Student's t and noncentral t, ``ttest_rel``,
``ttest_ind(equal_var=False)``); this module keeps what it does not: the paired-run records
(:class:`PairedTest` with its one-sided p against a margin, :class:`WelchTest`), the degenerate samples
reported rather than warned about (no spread: t is infinite or undefined), the power and minimal
detectable effect of the paired t-test solved from the noncentral t, and a weighted least-squares line
with confidence and prediction intervals (the compute ladder's fit; numpy, since no installed library
gives its Birge-ratio scaling).

scipy is a dependency of the research commands only: the single-file train_gpt.py never imports this module.

Conventions: ``d = arm - control``; for val_bpb lower is better, so an improvement is d < 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize
from scipy import stats as sps


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; nan for fewer than 2 values)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return math.nan, math.nan
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else math.nan


def _t_stat(num: float, se: float) -> float:
    if se > 0:
        return num / se
    if num == 0:
        return math.nan  # no difference and no spread: nothing to test
    return math.copysign(math.inf, num)


_ALTERNATIVES = ("less", "greater", "two-sided")


def _t_p(t: float, df: float, alternative: str) -> float:
    """The p-value of a t statistic (infinite when there is no spread; nan when it is undefined)."""
    if math.isnan(t):
        return math.nan
    if alternative == "less":
        return float(sps.t.cdf(t, df))
    if alternative == "greater":
        return float(sps.t.sf(t, df))
    return min(1.0, 2.0 * float(sps.t.sf(abs(t), df)))


@dataclass(frozen=True)
class PairedTest:
    """Paired t-test of d_i = arm_i - control_i (one pair per seed)."""

    n: int
    mean: float
    sd: float
    se: float
    t: float
    df: int
    p_two_sided: float
    ci_low: float
    ci_high: float
    confidence: float
    p_wilcoxon: float = math.nan  # two-sided signed-rank p of the same differences (wilcoxon_p)
    diffs: tuple[float, ...] = ()  # d_i, by pair

    def count_above(self, threshold: float, unit: float = 1.0) -> int:
        """Pairs whose difference, times ``unit`` (e.g. nats per bpb), exceeds ``threshold``: the runs in which
        the arm is worse than the control by more than it, where lower is better."""
        return sum(d * unit > threshold for d in self.diffs)

    @property
    def mde(self) -> float:
        """The minimal detectable effect of this test's design (``paired_mde`` at the measured sd and n; 80%
        power, alpha 0.05 two-sided), in the differences' unit; nan with fewer than 2 pairs or no spread."""
        return paired_mde(self.sd, self.n)

    def p_less(self, margin: float = 0.0) -> float:
        """One-sided p for H1: mean(d) < -margin (the arm beats the control by more than margin)."""
        if self.df < 1:
            return math.nan
        return _t_p(_t_stat(self.mean + margin, self.se), self.df, "less")


def paired_t_test(control: Sequence[float], arm: Sequence[float], confidence: float = 0.95) -> PairedTest:
    """Paired t-test on arm - control (``scipy.stats.ttest_rel``) with its t-based confidence interval for
    the mean difference."""
    a, b = np.asarray(control, dtype=np.float64), np.asarray(arm, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired samples must be 1-D and of equal length (got {a.shape} and {b.shape})")
    d = b - a
    n = int(d.size)
    mean = float(d.mean()) if n else math.nan
    rest = {"p_wilcoxon": wilcoxon_p(d), "diffs": tuple(float(x) for x in d)}
    if n < 2:
        return PairedTest(n, mean, math.nan, math.nan, math.nan, n - 1, math.nan, math.nan, math.nan, confidence,
                          **rest)
    sd = float(d.std(ddof=1))
    se = sd / math.sqrt(n)
    df = n - 1
    if se > 0:
        res = sps.ttest_rel(b, a)
        ci = res.confidence_interval(confidence)
        return PairedTest(n, mean, sd, se, float(res.statistic), df, float(res.pvalue), float(ci.low),
                          float(ci.high), confidence, **rest)
    # Every pair differs by the same amount (scipy warns and answers nan): the difference is certain, or
    # there is none to test.
    t = _t_stat(mean, se)
    return PairedTest(n, mean, sd, se, t, df, _t_p(t, df, "two-sided"), mean, mean, confidence, **rest)


def wilcoxon_p(diffs: Sequence[float] | np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p of paired differences (``scipy.stats.wilcoxon``: zero differences
    dropped, the exact null distribution for small samples). It rests on ranks, so one failed run moves it
    by one rank where it moves the t-test's mean and sd by its whole size. nan for fewer than 2 pairs, or
    when every difference is 0 (nothing to rank)."""
    d = np.asarray(diffs, dtype=np.float64)
    if d.size < 2 or not np.any(d != 0):
        return math.nan
    return float(sps.wilcoxon(d).pvalue)


@dataclass(frozen=True)
class WelchTest:
    """Welch's unequal-variance t-test of mean(arm) - mean(control)."""

    diff: float
    se: float
    t: float
    df: float
    p: float
    alternative: str
    margin: float


def welch_t_test(
    control: Sequence[float], arm: Sequence[float], alternative: str = "less", margin: float = 0.0
) -> WelchTest:
    """Welch's t-test (``scipy.stats.ttest_ind(equal_var=False)``, Welch-Satterthwaite degrees of freedom).

    ``alternative="less"``: H1 is mean(arm) - mean(control) < -margin, i.e. the arm is lower (better
    for a loss) by more than ``margin``; "greater" and "two-sided" as in scipy (with the same shift).
    """
    if alternative not in _ALTERNATIVES:
        raise ValueError(f"alternative={alternative!r}: use less, greater or two-sided")
    a, b = np.asarray(control, dtype=np.float64), np.asarray(arm, dtype=np.float64)
    na, nb = a.size, b.size
    diff = float(b.mean() - a.mean()) if na and nb else math.nan
    if na < 2 or nb < 2:
        return WelchTest(diff, math.nan, math.nan, math.nan, math.nan, alternative, margin)
    se = math.sqrt(float(a.var(ddof=1)) / na + float(b.var(ddof=1)) / nb)
    if se > 0:
        res = sps.ttest_ind(b + margin, a, equal_var=False, alternative=alternative)
        return WelchTest(diff, se, float(res.statistic), float(res.df), float(res.pvalue), alternative, margin)
    t, df = _t_stat(diff + margin, se), float(na + nb - 2)  # no spread in either sample
    return WelchTest(diff, se, t, df, _t_p(t, df, alternative), alternative, margin)


# ----- power of the paired t-test -------------------------------------------------------------------


def _two_sided_power(delta: float, df: int, c: float) -> float:
    """P(|T'| > c) for T' noncentral t with df degrees of freedom and noncentrality delta (>= 0)."""
    upper = float(sps.nct.sf(c, df, delta))
    lower = float(sps.nct.cdf(-c, df, delta))  # scipy answers nan far in this tail, where it is ~0
    return min(1.0, max(0.0, upper + (0.0 if math.isnan(lower) else lower)))


def _critical_t(n: int, alpha: float) -> float:
    return float(sps.t.ppf(1.0 - alpha / 2.0, n - 1))


def paired_t_power(effect: float, sd: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t-test at level ``alpha`` with ``n`` pairs when the true mean
    difference is ``effect`` and the sd of a difference is ``sd``: the statistic is noncentral t with
    df = n - 1 and noncentrality effect sqrt(n) / sd."""
    if n < 2:
        return math.nan
    if not sd > 0:
        raise ValueError(f"the paired sd must be > 0 (got {sd})")
    return _two_sided_power(abs(effect) * math.sqrt(n) / sd, n - 1, _critical_t(n, alpha))


def paired_mde(sd: float, n: int, power: float = 0.8, alpha: float = 0.05) -> float:
    """Minimal detectable effect of the two-sided paired t-test: the smallest |mean difference| found
    with probability ``power`` at level ``alpha`` with ``n`` pairs of difference sd ``sd`` (same units
    as sd; nan with fewer than 2 pairs or no spread). The noncentrality whose power is ``power``, by
    Brent's method."""
    if n < 2 or not sd > 0:
        return math.nan
    df, c = n - 1, _critical_t(n, alpha)
    gap = lambda delta: _two_sided_power(delta, df, c) - power
    if gap(0.0) >= 0:  # no effect at all is found that often (power <= alpha)
        return 0.0
    hi = 4.0  # noncentrality
    while gap(hi) < 0:
        hi *= 2.0
    delta = optimize.brentq(gap, 0.0, hi, xtol=1e-13, rtol=1e-14)
    return delta * sd / math.sqrt(n)


# ----- weighted straight-line fit -----------------------------------------------------------------


@dataclass(frozen=True)
class LineFit:
    """y = intercept + slope * x by weighted least squares (weights 1 / se^2).

    ``cov`` is the parameter covariance (XᵀWX)⁻¹ multiplied by ``scale`` = max(1, chi²/df): the
    standard errors are trusted as given, and inflated when the points scatter about the line more
    than they allow (the Birge ratio). Intervals use Student's t with max(df, 1) degrees of freedom.
    """

    intercept: float
    slope: float
    cov: tuple[tuple[float, float], tuple[float, float]]
    chi2: float
    df: int
    scale: float
    mean_se2: float  # mean squared standard error of the points: a new point's variance in intervals

    @property
    def intercept_se(self) -> float:
        return math.sqrt(self.cov[0][0])

    @property
    def slope_se(self) -> float:
        return math.sqrt(self.cov[1][1])

    def predict(self, x: float) -> float:
        return self.intercept + self.slope * x

    def se_line(self, x: float) -> float:
        """Standard error of the fitted line at x."""
        (a, b), (_, d) = self.cov
        return math.sqrt(max(0.0, a + 2.0 * b * x + d * x * x))

    def t_quantile(self, confidence: float = 0.95) -> float:
        return float(sps.t.ppf(0.5 + confidence / 2.0, max(self.df, 1)))

    def confidence_interval(self, x: float, confidence: float = 0.95) -> tuple[float, float]:
        """Interval for the line's value at x (the trend itself)."""
        h = self.t_quantile(confidence) * self.se_line(x)
        return self.predict(x) - h, self.predict(x) + h

    def prediction_interval(self, x: float, confidence: float = 0.95) -> tuple[float, float]:
        """Interval for a new point at x measured as precisely as the fitted points on average:
        the line's uncertainty plus that point's own (scale x mean se²)."""
        h = self.t_quantile(confidence) * math.sqrt(self.se_line(x) ** 2 + self.scale * self.mean_se2)
        return self.predict(x) - h, self.predict(x) + h


def wls_line(x: Sequence[float], y: Sequence[float], se: Sequence[float]) -> LineFit:
    """Weighted least-squares line through (x, y) with per-point standard errors se (all > 0)."""
    xs, ys, ses = (np.asarray(v, dtype=np.float64) for v in (x, y, se))
    if not (xs.shape == ys.shape == ses.shape and xs.ndim == 1):
        raise ValueError("x, y and se must be 1-D and of equal length")
    if xs.size < 2 or np.ptp(xs) == 0:
        raise ValueError("a line needs at least two distinct x")
    if not np.all(np.isfinite(ses)) or np.any(ses <= 0):
        raise ValueError("every standard error must be finite and > 0")
    w = 1.0 / ses**2
    design = np.stack([np.ones_like(xs), xs], axis=1)  # (k, 2)
    normal = design.T @ (w[:, None] * design)  # (2, 2) = XᵀWX
    base_cov = np.linalg.inv(normal)
    beta = base_cov @ (design.T @ (w * ys))
    resid = ys - design @ beta
    chi2 = float(np.sum(w * resid**2))
    df = int(xs.size - 2)
    scale = max(1.0, chi2 / df) if df > 0 else 1.0
    cov = base_cov * scale
    return LineFit(
        intercept=float(beta[0]), slope=float(beta[1]),
        cov=((float(cov[0, 0]), float(cov[0, 1])), (float(cov[1, 0]), float(cov[1, 1]))),
        chi2=chi2, df=df, scale=scale, mean_se2=float(np.mean(ses**2)),
    )
