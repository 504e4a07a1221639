"""JEPA span-plan arithmetic: how many spans, of which lengths (jepagolf.jepa.masking samples them; the
config validates them with the same functions). Imports only the standard library."""

from __future__ import annotations

from typing import NamedTuple


class SpanPlan(NamedTuple):
    """What ``sample_spans`` draws at one sequence length: the span count, the geometric's p and the
    lower clamp of the lengths (the upper clamp follows from ``span_bounds``)."""

    num_spans: int
    p: float
    span_min: int


def span_plan(seq_len: int, mask_frac: float, num_spans: int, p: float, span_min: int) -> SpanPlan:
    """The spans that mask ~``mask_frac`` of a sequence of ``seq_len`` tokens (DESIGN section 3).

    ``mask_frac`` = 0 is the fixed rule: ``num_spans`` spans of Geometric(p) clamped to [span_min, ...] at
    every length (~6% masked at T = 1024, 22% at 256, ~40% at 64). Otherwise the masked tokens per
    sequence are m = mask_frac * T: the span count is ``num_spans`` if positive, else round(m * p) (at
    least 1), and the mean span length is m / count, capped below at 1 token, so it stays 1/p wherever
    count = m * p exactly (v3: 4 spans of Geometric(1/16) at T = 1024); where it must shrink below 1/p
    (short sequences) the lower clamp shrinks in proportion. The lower clamp lifts the expected fraction
    a little above mask_frac (6.4% at T = 1024 for 1/16).
    """
    if mask_frac <= 0:
        return SpanPlan(num_spans, p, span_min)
    masked = mask_frac * seq_len
    n = num_spans if num_spans > 0 else max(1, round(masked * p))
    mean = max(1.0, masked / n)
    shrink = min(1.0, mean * p)  # < 1 only where spans must be shorter than 1/p on average
    return SpanPlan(n, min(1.0, 1.0 / mean), max(1, min(span_min, round(span_min * shrink))))


def span_bounds(seq_len: int, num_spans: int, span_min: int) -> tuple[int, int]:
    """(min, max) span length: lengths are clamped to [min, max(min, T // (2 * num_spans))]."""
    return span_min, max(span_min, seq_len // (2 * num_spans))


def check_span_settings(seq_len: int, num_spans: int, span_min: int) -> None:
    """ValueError when num_spans spans of the longest length, with gaps, do not fit in seq_len."""
    lo, hi = span_bounds(seq_len, num_spans, span_min)
    need = num_spans * hi + (num_spans - 1)
    if need > seq_len:
        raise ValueError(
            f"train_seq_len={seq_len} is too short for jepa_num_spans={num_spans} spans of up to {hi} "
            f"tokens with gaps (needs {need}); raise train_seq_len or lower jepa_num_spans/jepa_span_min"
        )
