"""Per-row symmetric quantisation of weight matrices, and of whole state dicts, for the artifact.

Matrices are stored as int8 codes in -31..31 (int6 levels: 63 values, ~5 bits of entropy for
Gaussian-like weights after LZMA) with one fp16 scale per row. The clip value of each row is picked
from a few high percentiles of |w| by minimum reconstruction MSE: clipping a handful of outliers
buys a finer step for every other weight (the parameter-golf int6 records use the same idea).
Matrices named in ``int5_patterns`` use levels -15..15 instead (~1 bit less per weight); with
Hessians, :mod:`jepagolf.export.gptq` picks the grid points instead of rounding to nearest.
Vectors, scalars, small matrices and "control" tensors (gains, scales, mixing weights) stay float,
because they are few bytes and the model is sensitive to them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from jepagolf.export.gptq import gptq_quantize
from jepagolf.export.grid import DEFAULT_CLIP_QUANTILES, FP16_MAX, INT5_MAX, INT6_MAX, INT8_MAX, quantize_rows

# Substrings of names kept in fp32: per-channel gains and mixing weights multiply whole residual
# streams, so their fp16 rounding costs more than the few bytes they take.
DEFAULT_FP32_PATTERNS: tuple[str, ...] = ("scale", "gain", "mix", "skip_weight")
DEFAULT_MIN_NUMEL = 16_384
TIED_EMBEDDING_NAME = "tok_emb.weight"

# The reference trainer's int8 export (openai/parameter-golf train_gpt.py, the challenge's naive
# baseline), as facts: float tensors of at most 65,536 elements are kept as they are (fp32 when the name
# is a control tensor's, else fp16); larger matrices get int8 per row, the row's clip at the
# 99.99984th percentile of |w|, scale clip/127 floored at 1/127, codes rounded with the fp32 scale
# and the scale stored in fp16. The file is zlib level 9 (see jepagolf.export.container).
REFERENCE_KEEP_FLOAT_MAX_NUMEL = 65_536
REFERENCE_CLIP_Q = 99.99984 / 100.0
REFERENCE_CONTROL_PATTERNS: tuple[str, ...] = ("attn_scale", "mlp_scale", "resid_mix", "q_gain", "skip_weight")

QuantKind = Literal["int5", "int6", "int8"]
# int5 (levels -15..15, ~1 bit less per weight than int6) is opt-in per tensor name (int5_patterns).
_LEVELS: dict[str, int] = {"int5": INT5_MAX, "int6": INT6_MAX, "int8": INT8_MAX}


@dataclass(frozen=True)
class QuantizedTensor:
    """A per-row quantised matrix: ``w ~= q.float() * scale.float()[:, None]``."""

    q: Tensor  # int8 [rows, cols], values in -max_level..max_level
    scale: Tensor  # fp16 [rows]
    kind: QuantKind = "int6"

    @property
    def max_level(self) -> int:
        return _LEVELS[self.kind]

    def __post_init__(self) -> None:
        if self.kind not in _LEVELS:
            raise ValueError(f"QuantizedTensor.kind must be one of {sorted(_LEVELS)}, got {self.kind!r}")
        if self.q.dtype != torch.int8 or self.q.ndim != 2:
            raise ValueError(f"QuantizedTensor.q must be a 2-D int8 tensor, got {self.q.dtype} {tuple(self.q.shape)}")
        if self.scale.dtype != torch.float16 or tuple(self.scale.shape) != (self.q.shape[0],):
            raise ValueError(
                f"QuantizedTensor.scale must be fp16 of shape ({self.q.shape[0]},), "
                f"got {self.scale.dtype} {tuple(self.scale.shape)}"
            )


@dataclass
class QuantizedModel:
    """A state dict split into quantised matrices and tensors kept as they are stored.

    ``floats`` holds fp16 / fp32 tensors (and any non-float tensors unchanged), in the dtype they
    will be written to the artifact.
    """

    quantized: dict[str, QuantizedTensor] = field(default_factory=dict)
    floats: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        both = set(self.quantized) & set(self.floats)
        if both:
            raise ValueError(f"QuantizedModel: names in both quantized and floats: {sorted(both)}")

    def names(self) -> list[str]:
        return sorted([*self.quantized, *self.floats])

    def num_params(self) -> int:
        return sum(t.q.numel() for t in self.quantized.values()) + sum(t.numel() for t in self.floats.values())


def quantize_int6(w: Tensor, clip_quantiles: Iterable[float] = DEFAULT_CLIP_QUANTILES) -> tuple[Tensor, Tensor]:
    """Per-row int6 (levels -31..31) quantisation: (q int8 [rows, cols], scale fp16 [rows])."""
    return quantize_rows(w, INT6_MAX, clip_quantiles)


def quantize_int8(w: Tensor, clip_quantiles: Iterable[float] = DEFAULT_CLIP_QUANTILES) -> tuple[Tensor, Tensor]:
    """Per-row int8 (levels -127..127) quantisation: (q int8 [rows, cols], scale fp16 [rows])."""
    return quantize_rows(w, INT8_MAX, clip_quantiles)


def dequantize_int6(q: Tensor, scale: Tensor) -> Tensor:
    """fp32 [rows, cols] reconstruction ``q * scale[:, None]`` (works for int8 levels too)."""
    if q.ndim != 2 or scale.shape != (q.shape[0],):
        raise ValueError(f"dequantize: q {tuple(q.shape)} and scale {tuple(scale.shape)} do not match")
    return q.to(torch.float32) * scale.to(torch.float32)[:, None]


def is_fp32_name(name: str, patterns: Iterable[str] = DEFAULT_FP32_PATTERNS) -> bool:
    """Whether ``name`` is a control tensor kept in fp32 (substring match on any pattern)."""
    return any(p in name for p in patterns)


def _fits_fp16(t: Tensor) -> bool:
    # fp16 overflows above 65504; such tensors (rare: unnormalised buffers) are kept in fp32.
    return t.numel() == 0 or float(t.detach().abs().max()) <= FP16_MAX


def quantize_state_dict(
    sd: Mapping[str, Tensor],
    *,
    min_numel: int = DEFAULT_MIN_NUMEL,
    fp32_patterns: Iterable[str] = DEFAULT_FP32_PATTERNS,
    embedding_names: Iterable[str] = (TIED_EMBEDDING_NAME,),
    embedding_kind: QuantKind = "int6",
    clip_quantiles: Iterable[float] = DEFAULT_CLIP_QUANTILES,
    int5_patterns: Iterable[str] = (),
    hessians: Mapping[str, Tensor] | None = None,
) -> QuantizedModel:
    """Quantise a state dict for export.

    - 2-D float tensors with ``numel >= min_numel`` whose name matches no ``fp32_patterns`` ->
      int6 per row;
    - ``embedding_names`` (the tied embedding, which is also the output head) -> ``embedding_kind``
      per row whatever their size; pass ``embedding_kind="int8"`` to spend ~1 more bit per weight
      on the matrix every logit goes through;
    - other float tensors -> fp32 if their name matches ``fp32_patterns`` (or they overflow fp16),
      else fp16;
    - non-float tensors (integer or bool buffers) -> kept unchanged;
    - int6 matrices whose name contains one of ``int5_patterns`` -> int5 instead.

    With ``hessians`` (name -> the inputs' X^T X, see :mod:`jepagolf.export.gptq`), the matrices that
    have one are rounded by GPTQ onto the same grid instead of to nearest.

    The caller decides what goes in: JEPA-only weights (predictor, mask_emb) should be left out of
    ``sd``, since evaluation does not need them.
    """
    if min_numel < 1:
        raise ValueError(f"quantize_state_dict: min_numel must be >= 1, got {min_numel}")
    if embedding_kind not in _LEVELS:
        raise ValueError(f"quantize_state_dict: embedding_kind must be in {sorted(_LEVELS)}, got {embedding_kind!r}")
    fp32_patterns = tuple(fp32_patterns)
    embedding_names = frozenset(embedding_names)
    clip_quantiles = tuple(clip_quantiles)
    int5_patterns = tuple(int5_patterns)
    qm = QuantizedModel()
    for name in sorted(sd):
        t = sd[name].detach().cpu()
        kind = storage_kind(name, tuple(t.shape), t.is_floating_point(), min_numel=min_numel,
                            fp32_patterns=fp32_patterns, embedding_names=embedding_names,
                            embedding_kind=embedding_kind, int5_patterns=int5_patterns)
        if kind == "raw":
            qm.floats[name] = t.clone()
        elif kind in _LEVELS and hessians is not None and name in hessians:
            q, s = gptq_quantize(t, hessians[name], _LEVELS[kind], clip_quantiles=clip_quantiles)
            qm.quantized[name] = QuantizedTensor(q, s, kind)  # type: ignore[arg-type]
        elif kind in _LEVELS:
            q, s = quantize_rows(t, _LEVELS[kind], clip_quantiles)
            qm.quantized[name] = QuantizedTensor(q, s, kind)  # type: ignore[arg-type]
        elif kind == "fp32" or not _fits_fp16(t):
            qm.floats[name] = t.to(torch.float32).clone()
        else:
            qm.floats[name] = t.to(torch.float16)
    return qm


def quantize_rows_reference(w: Tensor) -> tuple[Tensor, Tensor]:
    """The reference trainer's per-row int8 (see ``REFERENCE_CLIP_Q``): (q int8 [rows, cols], scale
    fp16 [rows]); unlike :func:`quantize_rows`, the codes are rounded with the fp32 scale."""
    if w.ndim != 2 or not w.is_floating_point():
        raise ValueError(f"quantize_rows_reference needs a 2-D float tensor, got {w.dtype} {tuple(w.shape)}")
    w32 = w.detach().to(device="cpu", dtype=torch.float32)
    clip = torch.quantile(w32.abs(), REFERENCE_CLIP_Q, dim=1)  # [rows]
    clipped = torch.maximum(torch.minimum(w32, clip[:, None]), -clip[:, None])
    scale = (clip / INT8_MAX).clamp_min(1.0 / INT8_MAX)  # [rows], fp32
    q = torch.clamp(torch.round(clipped / scale[:, None]), -INT8_MAX, INT8_MAX).to(torch.int8)
    return q, scale.to(torch.float16)


def quantize_state_dict_reference(sd: Mapping[str, Tensor]) -> QuantizedModel:
    """Quantise a state dict as the reference trainer's export does (``REFERENCE_KEEP_FLOAT_MAX_NUMEL``,
    ``quantize_rows_reference``). Its per-tensor int8 for large tensors of other ranks is not
    implemented: the GPT has none."""
    qm = QuantizedModel()
    for name in sorted(sd):
        t = sd[name].detach().cpu()
        kind = reference_storage_kind(name, tuple(t.shape), t.is_floating_point())
        if kind == "raw":
            qm.floats[name] = t.clone()
        elif kind == "int8":
            qm.quantized[name] = QuantizedTensor(*quantize_rows_reference(t), "int8")
        else:
            qm.floats[name] = t.to(torch.float32).clone() if kind == "fp32" else t.to(torch.float16)
    return qm


def reference_storage_kind(name: str, shape: tuple[int, ...], is_float: bool = True) -> str:
    """How :func:`quantize_state_dict_reference` stores a tensor: "int8", "fp32", "fp16" or "raw"
    (non-float, unchanged), from name and shape alone (so sizes can be predicted before training)."""
    if not is_float:
        return "raw"
    numel = 1
    for d in shape:
        numel *= d
    if numel <= REFERENCE_KEEP_FLOAT_MAX_NUMEL:
        return "fp32" if is_fp32_name(name, REFERENCE_CONTROL_PATTERNS) else "fp16"
    if len(shape) == 2:
        return "int8"
    raise ValueError(f"{name}: the reference int8 export of a {len(shape)}-D tensor of {numel} elements "
                     "(per-tensor scale) is not implemented")


def storage_kind(
    name: str,
    shape: tuple[int, ...],
    is_float: bool = True,
    *,
    min_numel: int = DEFAULT_MIN_NUMEL,
    fp32_patterns: Iterable[str] = DEFAULT_FP32_PATTERNS,
    embedding_names: Iterable[str] = (TIED_EMBEDDING_NAME,),
    embedding_kind: QuantKind = "int6",
    int5_patterns: Iterable[str] = (),
) -> str:
    """How :func:`quantize_state_dict` stores a tensor: "int5", "int6", "int8", "fp32", "fp16" or "raw"
    (non-float, unchanged). Decided from name and shape alone, so sizes can be predicted before
    training; the one value-dependent exception is an "fp16" tensor beyond fp16 range, kept fp32."""
    if not is_float:
        return "raw"
    numel = 1
    for d in shape:
        numel *= d
    control = is_fp32_name(name, fp32_patterns)
    if len(shape) == 2 and name in frozenset(embedding_names):
        return embedding_kind
    if len(shape) == 2 and numel >= min_numel and not control:
        return "int5" if any(p in name for p in int5_patterns) else "int6"
    return "fp32" if control else "fp16"


def dequantize_state_dict(qm: QuantizedModel) -> dict[str, Tensor]:
    """Reconstruct a state dict: fp32 for every float tensor, non-float tensors unchanged."""
    out: dict[str, Tensor] = {}
    for name in qm.names():
        if name in qm.quantized:
            qt = qm.quantized[name]
            out[name] = dequantize_int6(qt.q, qt.scale)
        else:
            t = qm.floats[name]
            out[name] = t.to(torch.float32) if t.is_floating_point() else t.clone()
    return out
