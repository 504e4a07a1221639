"""The per-row integer grids that both round-to-nearest (:mod:`jepagolf.export.quant`) and GPTQ
(:mod:`jepagolf.export.gptq`) put weights on: levels, the fp16 per-row scale, and the choice of each row's
clip among candidate quantiles of |w| by reconstruction error.

Kept apart so that the two quantisers share it without importing each other.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

INT5_MAX = 15
INT6_MAX = 31
INT8_MAX = 127
DEFAULT_CLIP_QUANTILES: tuple[float, ...] = (0.99, 0.995, 0.999, 0.9995, 0.9999, 1.0)

FP16_MAX = torch.finfo(torch.float16).max
# Smallest positive fp16 (subnormal). Scales are clamped up to it so a row of tiny but nonzero
# weights never gets a zero scale (which would divide by zero and lose the row).
_FP16_MIN_SUBNORMAL = 2.0**-24


def _row_quantiles(absw: Tensor, quantiles: Tensor) -> Tensor:
    """Linear-interpolated quantiles of each row of ``absw`` [rows, cols] -> [len(quantiles), rows].

    Sorting once is cheaper than ``torch.quantile`` per candidate and has no input-size limit.
    """
    cols = absw.shape[1]
    sorted_rows = absw.sort(dim=1).values  # [rows, cols]
    pos = quantiles.to(torch.float64) * (cols - 1)  # [nq]
    lo = pos.floor().long()
    hi = pos.ceil().long()
    frac = (pos - lo).to(absw.dtype)[:, None]  # [nq, 1]
    lo_v = sorted_rows[:, lo].T  # [nq, rows]
    hi_v = sorted_rows[:, hi].T  # [nq, rows]
    return lo_v + (hi_v - lo_v) * frac


def _fp16_scale(clip: Tensor, max_level: int) -> Tensor:
    """clip / max_level rounded to fp16 (as stored), clamped into fp16's positive range."""
    return (clip / max_level).clamp(_FP16_MIN_SUBNORMAL, FP16_MAX).to(torch.float16)


def quantize_rows(
    w: Tensor, max_level: int, clip_quantiles: Iterable[float] = DEFAULT_CLIP_QUANTILES
) -> tuple[Tensor, Tensor]:
    """Quantise each row of ``w`` [rows, cols] to integers in [-max_level, max_level].

    Returns (q int8 [rows, cols], scale fp16 [rows]). Each row's clip is the candidate quantile of
    |w| whose reconstruction ``q * scale`` (with the fp16-rounded scale) has the lowest MSE.
    """
    if w.ndim != 2 or not w.is_floating_point():
        raise ValueError(f"quantize_rows needs a 2-D float tensor, got {w.dtype} {tuple(w.shape)}")
    if not 1 <= max_level <= INT8_MAX:
        raise ValueError(f"quantize_rows: max_level must be in [1, 127] to fit int8, got {max_level}")
    rows, cols = w.shape
    if rows == 0 or cols == 0:
        return torch.zeros(rows, cols, dtype=torch.int8), torch.ones(rows, dtype=torch.float16)
    w32 = w.detach().to(device="cpu", dtype=torch.float32)
    if not torch.isfinite(w32).all():
        raise ValueError("quantize_rows: weights contain NaN or inf; the model diverged before export")
    absw = w32.abs()
    if float(absw.max()) / max_level > FP16_MAX:
        raise ValueError(
            f"quantize_rows: |w| up to {float(absw.max()):.3g} needs a scale beyond fp16 range ({FP16_MAX})"
        )
    qs = torch.tensor(sorted(set(clip_quantiles)), dtype=torch.float32)
    if qs.numel() == 0 or bool((qs <= 0).any() | (qs > 1).any()):
        raise ValueError(f"quantize_rows: clip_quantiles must be non-empty and in (0, 1], got {qs.tolist()}")
    clips = _row_quantiles(absw, qs)  # [nq, rows]

    best_err = torch.full((rows,), float("inf"))
    best_scale = torch.ones(rows, dtype=torch.float16)
    # A Python loop over the few candidates (not over rows): each iteration is vectorised over the
    # whole matrix and peak memory stays at a couple of copies of w.
    for k in range(clips.shape[0]):
        scale16 = _fp16_scale(clips[k], max_level)  # [rows]
        scale = scale16.to(torch.float32)[:, None]  # [rows, 1]
        q = torch.round(w32 / scale).clamp_(-max_level, max_level)
        err = (q * scale - w32).square_().sum(dim=1)  # [rows]
        better = err < best_err  # strict: ties keep the earlier (smaller) clip
        best_err = torch.where(better, err, best_err)
        best_scale = torch.where(better, scale16, best_scale)
    scale = best_scale.to(torch.float32)[:, None]
    q = torch.round(w32 / scale).clamp_(-max_level, max_level).to(torch.int8)
    return q, best_scale
