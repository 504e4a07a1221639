"""Span sampling for the masked context pass: a pure function of (seq_len, settings, generator).

Spans are half-open intervals [start, end). Placement is exact, not rejection-based: the lengths
are drawn first, then the free tokens are split into num_spans+1 gaps by a stars-and-bars draw,
with one forced unmasked token between neighbours so that exactly num_spans distinct spans come
back (the reference dropped overlapping spans and silently duplicated one instead).
"""

from __future__ import annotations

import hashlib
import math
from typing import NamedTuple

import torch
from torch import Tensor


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
    lo, hi = span_bounds(seq_len, num_spans, span_min)
    need = num_spans * hi + (num_spans - 1)
    if need > seq_len:
        raise ValueError(
            f"train_seq_len={seq_len} is too short for jepa_num_spans={num_spans} spans of up to {hi} "
            f"tokens with gaps (needs {need}); raise train_seq_len or lower jepa_num_spans/jepa_span_min"
        )


def sample_spans(seq_len: int, num_spans: int, p: float, span_min: int, generator: torch.Generator) -> Tensor:
    """Return (num_spans, 2) int64 [start, end) spans, sorted, disjoint and non-adjacent.

    Lengths ~ Geometric(p) on {1, 2, ...} (p = 1: all 1), clamped to ``span_bounds``.
    """
    check_span_settings(seq_len, num_spans, span_min)
    lo, hi = span_bounds(seq_len, num_spans, span_min)
    lengths = torch.empty(num_spans, dtype=torch.float64)
    # p = 1 (every span one token long: span_plan on a very short sequence) is outside geometric_'s range.
    lengths = lengths.fill_(1.0) if p >= 1.0 else lengths.geometric_(p, generator=generator)
    lengths = lengths.clamp_(lo, hi).long()  # (n,)
    free = seq_len - int(lengths.sum()) - (num_spans - 1)
    # n sorted cut points in [0, free] give the unmasked gap before each span (stars and bars).
    cuts = torch.randint(0, free + 1, (num_spans,), generator=generator).sort().values  # (n,)
    offsets = torch.cat((torch.zeros(1, dtype=torch.long), lengths.cumsum(0)[:-1]))  # (n,)
    starts = cuts + offsets + torch.arange(num_spans)  # +i: one forced gap token before span i>0
    return torch.stack((starts, starts + lengths), dim=1)


def spans_to_mask(spans: Tensor, seq_len: int) -> Tensor:
    """(n, 2) or (B, n, 2) spans -> (T,) or (B, T) bool mask."""
    pos = torch.arange(seq_len)
    inside = (pos >= spans[..., 0:1]) & (pos < spans[..., 1:2])  # (..., n, T)
    return inside.any(dim=-2)


def span_generator(seed: int, step: int, micro_index: int) -> torch.Generator:
    """A CPU generator seeded by (seed, step, index of the micro-batch in the global batch).

    Seeding by the global micro-batch index makes masks independent of how the batch is split over
    processes, and needs no replay on resume.
    """
    digest = hashlib.blake2b(f"jepa-spans:{seed}:{step}:{micro_index}".encode(), digest_size=8).digest()
    g = torch.Generator()
    g.manual_seed(int.from_bytes(digest, "little") & ((1 << 63) - 1))
    return g


def sample_mask(
    batch: int,
    seq_len: int,
    num_spans: int,
    p: float,
    span_min: int,
    per_sequence: bool,
    generator: torch.Generator,
) -> Tensor:
    """(B, T) bool mask: one span set shared by the micro-batch, or one per sequence."""
    if per_sequence:
        spans = torch.stack([sample_spans(seq_len, num_spans, p, span_min, generator) for _ in range(batch)])
        return spans_to_mask(spans, seq_len)  # (B, T)
    return spans_to_mask(sample_spans(seq_len, num_spans, p, span_min, generator), seq_len).expand(batch, -1)


def jepa_rows(batch: int, fraction: float) -> int:
    """Rows of a micro-batch that take part in the JEPA passes: the first ceil(fraction * batch), >= 1."""
    # round() first so that e.g. 0.3 * 10 = 3.0000000000000004 gives 3 rows, not 4.
    return max(1, min(batch, math.ceil(round(fraction * batch, 9))))
