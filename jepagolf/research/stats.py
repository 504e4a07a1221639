"""Small-sample statistics for seed-paired ablations, with numpy and math only.

scipy is not a runtime dependency, so the Student-t distribution is computed here: its CDF through
the regularised incomplete beta function (evaluated by its continued fraction with the modified
Lentz algorithm), and its quantile by bisection on the CDF. tests/test_stats.py checks every
function against scipy.

Also: the power and minimal detectable effect of the paired t-test (noncentral t), and a weighted
least-squares line with confidence and prediction intervals (the compute ladder's fit).

Conventions: ``d = arm - control``; for val_bpb lower is better, so an improvement is d < 0.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_TINY = 1e-300
_EPS = 1e-15


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of I_x(a, b), modified Lentz; converges fast for x < (a+1)/(a+b+2)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        # Even step: d_{2m} = m (b - m) x / ((a + 2m - 1)(a + 2m)).
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        # Odd step: d_{2m+1} = -(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1)).
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"incomplete beta continued fraction did not converge (a={a}, b={b}, x={x})")


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b) for a, b > 0 and x in [0, 1]."""
    if a <= 0 or b <= 0:
        raise ValueError(f"betainc needs a, b > 0 (got a={a}, b={b})")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"betainc needs x in [0, 1] (got {x})")
    if x == 0.0 or x == 1.0:
        return x
    # Prefactor x^a (1-x)^b / B(a, b), in logs to avoid overflow for large a, b.
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    # Use the symmetry I_x(a, b) = 1 - I_{1-x}(b, a) where the fraction converges fastest.
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with df > 0 degrees of freedom (df need not be an integer)."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be > 0 (got {df})")
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    # P(|T| > |t|) = I_{df/(df+t^2)}(df/2, 1/2).
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_sf(t: float, df: float) -> float:
    """P(T > t), computed without the cancellation of 1 - cdf in the upper tail."""
    return t_cdf(-t, df)


def t_ppf(q: float, df: float) -> float:
    """Quantile of Student's t: the t with t_cdf(t, df) = q, by bisection (to ~1e-12 relative)."""
    if not 0.0 < q < 1.0:
        if q in (0.0, 1.0):
            return -math.inf if q == 0.0 else math.inf
        raise ValueError(f"quantile level must be in [0, 1] (got {q})")
    if q == 0.5:
        return 0.0
    if q < 0.5:
        return -t_ppf(1.0 - q, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < q:  # the t tails are heavy for small df: widen until bracketed
        lo, hi = hi, hi * 2.0
        if hi > 1e300:
            return math.inf
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * max(1.0, abs(hi)):
            break
    return 0.5 * (lo + hi)


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

    def p_less(self, margin: float = 0.0) -> float:
        """One-sided p for H1: mean(d) < -margin (the arm beats the control by more than margin)."""
        if self.df < 1:
            return math.nan
        t = _t_stat(self.mean + margin, self.se)
        return math.nan if math.isnan(t) else t_cdf(t, self.df)


def paired_t_test(control: Sequence[float], arm: Sequence[float], confidence: float = 0.95) -> PairedTest:
    """Paired t-test on arm - control with a t-based confidence interval for the mean difference."""
    a, b = np.asarray(control, dtype=np.float64), np.asarray(arm, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired samples must be 1-D and of equal length (got {a.shape} and {b.shape})")
    d = b - a
    n = int(d.size)
    mean = float(d.mean()) if n else math.nan
    if n < 2:
        return PairedTest(n, mean, math.nan, math.nan, math.nan, n - 1, math.nan, math.nan, math.nan, confidence)
    sd = float(d.std(ddof=1))
    se = sd / math.sqrt(n)
    df = n - 1
    t = _t_stat(mean, se)
    p = math.nan if math.isnan(t) else min(1.0, 2.0 * t_sf(abs(t), df))
    half = t_ppf(0.5 + confidence / 2.0, df) * se
    return PairedTest(n, mean, sd, se, t, df, p, mean - half, mean + half, confidence)


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
    """Welch's t-test with Welch-Satterthwaite degrees of freedom.

    ``alternative="less"``: H1 is mean(arm) - mean(control) < -margin, i.e. the arm is lower (better
    for a loss) by more than ``margin``; "greater" and "two-sided" as in scipy (with the same shift).
    """
    a, b = np.asarray(control, dtype=np.float64), np.asarray(arm, dtype=np.float64)
    na, nb = a.size, b.size
    diff = float(b.mean() - a.mean()) if na and nb else math.nan
    if na < 2 or nb < 2:
        return WelchTest(diff, math.nan, math.nan, math.nan, math.nan, alternative, margin)
    va, vb = float(a.var(ddof=1)) / na, float(b.var(ddof=1)) / nb
    se = math.sqrt(va + vb)
    shifted = diff + margin
    t = _t_stat(shifted, se)
    df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1)) if se > 0 else float(na + nb - 2)
    if math.isnan(t):
        p = math.nan
    elif alternative == "less":
        p = t_cdf(t, df)
    elif alternative == "greater":
        p = t_sf(t, df)
    elif alternative == "two-sided":
        p = min(1.0, 2.0 * t_sf(abs(t), df))
    else:
        raise ValueError(f"alternative={alternative!r}: use less, greater or two-sided")
    return WelchTest(diff, se, t, df, p, alternative, margin)


# ----- power of the paired t-test -------------------------------------------------------------------


def _norm_cdf(z: np.ndarray) -> np.ndarray:
    return 0.5 * np.array([math.erfc(-v / math.sqrt(2.0)) for v in z.ravel()]).reshape(z.shape)


@functools.lru_cache(maxsize=8)
def _legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(n)


def _two_sided_power(delta: float, df: int, c: float) -> float:
    """P(|T'| > c) for T' noncentral t with df degrees of freedom and noncentrality delta.

    T' = (Z + delta) / S with S = sqrt(V / df), V ~ chi^2(df), so P(|T'| > c) = E_S[P(Z > c S - delta) +
    P(Z < -c S - delta)]; the expectation over S is a Gauss-Legendre sum over S's density,
    2 (df/2)^(df/2) / Gamma(df/2) s^(df-1) exp(-df s^2 / 2), on an interval that holds all but a
    negligible part of it.
    """
    half = 14.0 / math.sqrt(df)
    lo, hi = max(0.0, 1.0 - half), 1.0 + 3.0 * half
    nodes, weights = _legendre(400)
    s = 0.5 * (hi - lo) * nodes + 0.5 * (hi + lo)
    w = 0.5 * (hi - lo) * weights
    log_pdf = (math.log(2.0) + (df / 2.0) * math.log(df / 2.0) - math.lgamma(df / 2.0)
               + (df - 1) * np.log(s) - df * s * s / 2.0)
    p = _norm_cdf(delta - c * s) + _norm_cdf(-c * s - delta)
    return float(np.clip(np.sum(w * np.exp(log_pdf) * p), 0.0, 1.0))


def paired_t_power(effect: float, sd: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t-test at level ``alpha`` with ``n`` pairs when the true mean
    difference is ``effect`` and the sd of a difference is ``sd``: the statistic is noncentral t with
    df = n - 1 and noncentrality effect sqrt(n) / sd."""
    if n < 2:
        return math.nan
    if not sd > 0:
        raise ValueError(f"the paired sd must be > 0 (got {sd})")
    return _two_sided_power(abs(effect) * math.sqrt(n) / sd, n - 1, t_ppf(1.0 - alpha / 2.0, n - 1))


def paired_mde(sd: float, n: int, power: float = 0.8, alpha: float = 0.05) -> float:
    """Minimal detectable effect of the two-sided paired t-test: the smallest |mean difference| found
    with probability ``power`` at level ``alpha`` with ``n`` pairs of difference sd ``sd`` (same units
    as sd; nan with fewer than 2 pairs or no spread)."""
    if n < 2 or not sd > 0:
        return math.nan
    df, c = n - 1, t_ppf(1.0 - alpha / 2.0, n - 1)
    lo, hi = 0.0, 4.0  # noncentrality
    while _two_sided_power(hi, df, c) < power:
        lo, hi = hi, hi * 2.0
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if _two_sided_power(mid, df, c) < power:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi) * sd / math.sqrt(n)


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
        return t_ppf(0.5 + confidence / 2.0, max(self.df, 1))

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
