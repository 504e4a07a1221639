"""Span sampling for the masked context pass: a pure function of (seq_len, settings, generator).

Spans are half-open intervals [start, end). Placement is exact, not rejection-based: the lengths
are drawn first, then the free tokens are split into num_spans+1 gaps by a stars-and-bars draw,
with one forced unmasked token between neighbours so that exactly num_spans distinct spans come
back (the reference dropped overlapping spans and silently duplicated one instead).
"""

from __future__ import annotations

import hashlib
import math

import torch
from torch import Tensor

from jepagolf.config import check_span_settings, span_bounds


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
