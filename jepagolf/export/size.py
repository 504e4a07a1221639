"""Bytes against the 16,000,000-byte cap: by tensor group, predicted before training or measured.

``predict_size(cfg)`` builds the GPT on the meta device (shapes only, no memory), routes every
tensor exactly as the config's ``export_scheme`` will (:func:`jepagolf.export.quant.storage_kind` for
int6-lzma, :func:`jepagolf.export.quant.reference_storage_kind` for int8-zlib), and prices it with that
scheme's quantiser and compressor (LZMA, or zlib level 9):

- int5 / int6 / int8 matrices: a Gaussian sample with the tensor's row length is quantised with the real
  per-row quantiser (int6-lzma: the clip search; int8-zlib: the reference's clip) and compressed with
  the real settings; its bytes per element (codes and fp16 scales together) times the tensor's size,
  times the group's trained/Gaussian ratio (int6-lzma: :data:`TRAINED_OVER_GAUSSIAN`, measured).
  Init weights would be useless here -- zero-init output projections compress to nothing -- and
  per-row scaling makes the code distribution independent of the weights' std, so only the shape of
  the distribution matters. One exception: the reference's int8 scale is floored at 1/127, so rows
  whose largest |w| is under 1 use fewer codes (a short run's weights: weights at their initial scale
  compress to about a third of the prediction, tests/test_records.py); the prediction prices rows past the floor,
  as a full run's are (:data:`REFERENCE_ROW_STD`);
- fp16 / fp32 tensors: a sample of random values (their mantissas are incompressible noise);
- the header: exact (built from the real names, shapes and metadata), then compressed;
- container framing: exact.

``artifact_size_report(path)`` measures a written artifact: each group's tensors compressed on their
own, scaled to add up to the file's tensor bytes; header and framing are the overhead.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from jepagolf.config import CAP_BYTES, Config
from jepagolf.export.artifact import artifact_meta_for, check_artifact_model, int5_patterns
from jepagolf.export.container import (  # the framing sizes are the container's own constants
    _DIGEST_LEN,
    _PREFIX,
    ArtifactError,
    artifact_compression,
    artifact_payload,
    compress_payload,
    compress_report,
    encode_payload,
    load_artifact_bytes,
    read_artifact_file,
)
from jepagolf.export.quant import (
    _LEVELS,
    QuantizedModel,
    QuantizedTensor,
    quantize_rows,
    quantize_rows_reference,
    reference_storage_kind,
    storage_kind,
)
from jepagolf.model.gpt import GPT

# Display order of the groups.
GROUPS = ("embeddings", "bigram", "attention", "mlp", "skip weights", "control", "other")

# Trained matrices compress a little better than Gaussian ones: heavier-tailed rows (mlp.proj) and,
# in the tied embedding, near-duplicate rows of rare tokens that LZMA matches. Measured bytes of each
# group in trained cpu-demo artifacts (250 steps; `jepagolf size --artifact`) over their Gaussian
# prediction, the same within 0.02 for int5+GPTQ and int6 round-to-nearest, with and without JEPA.
# The prediction applies them to the int groups; the Gaussian bound is reported beside it.
TRAINED_OVER_GAUSSIAN: dict[str, float] = {"embeddings": 0.90, "bigram": 1.00, "attention": 0.98, "mlp": 0.965}

# The std of the Gaussian rows that price the int8-zlib scheme: rows whose largest |w| passes the
# reference's scale floor (|w| = 1), where the codes no longer depend on the std (any larger std gives the
# same codes). A full reference baseline run's rows are there: its published artifact (15,815,847 bytes,
# 17,059,912 parameters, 600 s on 8xH100) is within 1% of this prediction.
REFERENCE_ROW_STD = 1.0
# The compressor of each export scheme (jepagolf.config ExportConfig.export_scheme).
SCHEME_COMPRESSION = {"int6-lzma": "lzma", "int8-zlib": "zlib"}

_SAMPLE_ELEMENTS = 1 << 18  # per (kind, row length): big enough for LZMA's rate to settle
_FRAMING_BYTES = _PREFIX.size + _DIGEST_LEN


def tensor_group(name: str) -> str:
    """The group a state-dict entry belongs to, for size breakdowns."""
    if name.startswith("tok_emb."):
        return "embeddings"
    if name.startswith("bigram."):
        return "bigram"
    if "skip_weight" in name:
        return "skip weights"
    if any(k in name for k in ("q_gain", "attn_scale", "mlp_scale", "resid_mix")):
        return "control"
    if ".attn." in name:
        return "attention"
    if ".mlp." in name:
        return "mlp"
    return "other"


@dataclass
class GroupSize:
    group: str
    params: int = 0
    tensors: int = 0
    kinds: dict[str, int] = field(default_factory=dict)  # storage kind -> params
    raw_bytes: int = 0  # stored bytes before compression (codes, scales, floats)
    bytes: int = 0  # compressed: predicted, or measured with the group compressed on its own


@dataclass
class SizeReport:
    """A size breakdown; ``model_bytes`` is the artifact file size (predicted or actual)."""

    kind: str  # "predicted" | "measured"
    groups: list[GroupSize]
    model_bytes: int
    code_bytes: int
    cap_bytes: int = CAP_BYTES
    codecs: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    gaussian_model_bytes: int = 0  # predictions only: the uncalibrated Gaussian-rows estimate

    @property
    def params(self) -> int:
        return sum(g.params for g in self.groups)

    @property
    def total_bytes(self) -> int:
        return self.model_bytes + self.code_bytes

    @property
    def headroom(self) -> int:
        """Bytes left under the cap (negative when over)."""
        return self.cap_bytes - self.total_bytes

    @property
    def overhead_bytes(self) -> int:
        return self.model_bytes - sum(g.bytes for g in self.groups)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(params=self.params, total_bytes=self.total_bytes, headroom=self.headroom,
                 overhead_bytes=self.overhead_bytes,
                 bytes_per_param=self.model_bytes / max(self.params, 1))
        return d

    def table(self) -> str:
        """Plain-text table, one row per non-empty group, then the totals."""
        rows = [("group", "params", "storage", "raw bytes", f"{self.kind} bytes", "share", "B/param")]
        for g in self.groups:
            if not g.params:
                continue
            storage = "+".join(f"{k}" for k in sorted(g.kinds, key=lambda k: -g.kinds[k]))
            rows.append((g.group, f"{g.params:,}", storage, f"{g.raw_bytes:,}", f"{g.bytes:,}",
                         f"{100 * g.bytes / max(self.model_bytes, 1):.1f}%", f"{g.bytes / g.params:.3f}"))
        rows.append(("overhead", "", "header+framing", "", f"{self.overhead_bytes:,}",
                     f"{100 * self.overhead_bytes / max(self.model_bytes, 1):.1f}%", ""))
        rows.append(("model", f"{self.params:,}", "", "", f"{self.model_bytes:,}", "100.0%",
                     f"{self.model_bytes / max(self.params, 1):.3f}"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
                 for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.append("")
        lines.append(f"code (train_gpt.py)  {self.code_bytes:>12,} bytes")
        lines.append(f"model (artifact)     {self.model_bytes:>12,} bytes")
        lines.append(f"total                {self.total_bytes:>12,} bytes  (cap {self.cap_bytes:,})")
        if self.headroom >= 0:
            pct = 100 * self.headroom / self.cap_bytes
            lines.append(f"headroom             {self.headroom:>12,} bytes  ({pct:.2f}%)")
        else:
            lines.append(f"OVER THE CAP BY      {-self.headroom:>12,} bytes")
        if self.codecs:
            lines.append("whole payload compressed with: " + ", ".join(f"{k} {v:,}" for k, v in self.codecs.items()))
        lines.extend(self.notes)
        return "\n".join(lines)


def _new_groups() -> dict[str, GroupSize]:
    return {g: GroupSize(g) for g in GROUPS}


# ----------------------------------------------------------------------------- prediction


def _gaussian(rows: int, cols: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, cols, generator=g)


@functools.lru_cache(maxsize=64)
def quantized_bytes_per_element(kind: str, cols: int, scheme: str = "int6-lzma") -> float:
    """Compressed bytes per element (codes + per-row fp16 scales) of a Gaussian matrix with rows of
    ``cols`` elements, quantised and compressed exactly as the artifact of ``scheme`` does."""
    rows = max(1, math.ceil(_SAMPLE_ELEMENTS / cols))
    if scheme == "int8-zlib":
        q, scale = quantize_rows_reference(_gaussian(rows, cols, seed=cols) * REFERENCE_ROW_STD)
    else:
        q, scale = quantize_rows(_gaussian(rows, cols, seed=cols) * 0.02, _LEVELS[kind])
    # The container stores the scales, then the codes, as little-endian raw bytes.
    data = scale.numpy().tobytes() + q.numpy().tobytes()
    return len(compress_payload(data, SCHEME_COMPRESSION[scheme])) / q.numel()


@functools.lru_cache(maxsize=8)
def float_bytes_per_element(dtype_name: str, compression: str = "lzma") -> float:
    """Compressed bytes per element of trained-like float values (random mantissas) in fp16/fp32."""
    n = _SAMPLE_ELEMENTS // 4
    dtype = torch.float16 if dtype_name == "fp16" else torch.float32
    # Control tensors sit around 1 and weights around 0: a mixture of both magnitudes.
    x = torch.cat((1 + 0.3 * _gaussian(1, n // 2, 1), 0.05 * _gaussian(1, n - n // 2, 2)), dim=1).to(dtype)
    data = x.numpy().tobytes()
    return len(compress_payload(data, compression)) / n


def _meta_state_dict(cfg: Config) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        gpt = GPT(cfg.model, cfg.train.train_seq_len)
    return gpt.state_dict()


def _zero_quantized_model(sd: Mapping[str, torch.Tensor], kinds: Mapping[str, str]) -> QuantizedModel:
    """A QuantizedModel with the real names, shapes and dtypes (values zero): its payload header is
    byte-for-byte the artifact's."""
    qm = QuantizedModel()
    for name, t in sd.items():
        kind = kinds[name]
        if kind in _LEVELS:
            qm.quantized[name] = QuantizedTensor(torch.zeros(t.shape, dtype=torch.int8),
                                                 torch.ones(t.shape[0], dtype=torch.float16), kind)  # type: ignore[arg-type]
        elif kind == "raw":
            qm.floats[name] = torch.zeros(t.shape, dtype=t.dtype)
        else:
            qm.floats[name] = torch.zeros(t.shape, dtype=torch.float16 if kind == "fp16" else torch.float32)
    return qm


def export_kinds(cfg: Config, sd: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """Name -> storage kind of every tensor, as ``cfg``'s export scheme stores it."""
    if cfg.export.export_scheme == "int8-zlib":
        return {name: reference_storage_kind(name, tuple(t.shape), t.is_floating_point()) for name, t in sd.items()}
    return {name: storage_kind(name, tuple(t.shape), t.is_floating_point(), min_numel=cfg.export.int6_min_numel,
                               int5_patterns=int5_patterns(cfg), embedding_kind=cfg.export.embed_quant)  # type: ignore[arg-type]
            for name, t in sd.items()}


def predict_size(cfg: Config, code_bytes: int | None = None, cap_bytes: int = CAP_BYTES) -> SizeReport:
    """Predicted artifact bytes for ``cfg``, by group, before any training, in the config's own export
    scheme (int6-lzma: int5/int6 + LZMA; int8-zlib: the reference's int8 + zlib).
    ``code_bytes`` defaults to the exact size of the train_gpt.py export would write."""
    scheme = cfg.export.export_scheme
    compression = SCHEME_COMPRESSION[scheme]
    ratios = TRAINED_OVER_GAUSSIAN if scheme == "int6-lzma" else {}
    sd = _meta_state_dict(cfg)
    kinds = export_kinds(cfg, sd)
    groups = _new_groups()
    gaussian = 0.0
    for name, t in sd.items():
        grp = tensor_group(name)
        g, kind, n = groups[grp], kinds[name], t.numel()
        g.params += n
        g.tensors += 1
        g.kinds[kind] = g.kinds.get(kind, 0) + n
        if kind in _LEVELS:
            rows, cols = t.shape
            g.raw_bytes += n + 2 * rows
            est = n * quantized_bytes_per_element(kind, cols, scheme)
            gaussian += est
            g.bytes += round(est * ratios.get(grp, 1.0))
        elif kind == "raw":
            g.raw_bytes += n * t.element_size()
            g.bytes += n * t.element_size()
        else:
            g.raw_bytes += n * (2 if kind == "fp16" else 4)
            g.bytes += round(n * float_bytes_per_element(kind, compression))
            gaussian += n * float_bytes_per_element(kind, compression)
    payload = encode_payload(_zero_quantized_model(sd, kinds), artifact_meta_for(cfg))
    header = payload[: 4 + int.from_bytes(payload[:4], "little")]
    header_bytes = len(compress_payload(header, compression))
    model_bytes = sum(g.bytes for g in groups.values()) + header_bytes + _FRAMING_BYTES
    if code_bytes is None:
        from jepagolf.sources import build_script

        code_bytes = len(build_script(cfg.to_dict()))
    bound = round(gaussian) + header_bytes + _FRAMING_BYTES
    if scheme == "int6-lzma":
        notes = [
            f"prediction ({scheme}: int5/int6 per row, LZMA): int matrices priced as Gaussian rows quantised and "
            f"compressed like the artifact, times trained/Gaussian ratios measured on cpu-demo "
            f"{TRAINED_OVER_GAUSSIAN}; measured cpu-demo artifacts were within 1% of it. Gaussian rows alone (an "
            f"upper bound so far, 3-5% above trained artifacts): model {bound:,}, total {bound + code_bytes:,} bytes",
        ]
    else:
        notes = [
            f"prediction ({scheme}: the reference's int8 per row, zlib level 9): int8 matrices priced as Gaussian "
            "rows past the reference's scale floor (largest |w| over 1), as a full run's are; a short run's smaller "
            "weights use fewer int8 codes and compress to less (about a third at their initial scale)",
        ]
    report = SizeReport("predicted", list(groups.values()), model_bytes, code_bytes, cap_bytes, notes=notes)
    report.gaussian_model_bytes = bound
    return report


# ----------------------------------------------------------------------------- measurement


def artifact_size_report(
    path: str | Path, code_bytes: int = 0, cap_bytes: int = CAP_BYTES, codecs: bool = False
) -> SizeReport:
    """Measured breakdown of an artifact file: each group's tensors compressed on their own."""
    path = Path(path)
    data = read_artifact_file(path)
    qm, meta = load_artifact_bytes(data, str(path))  # checks the size, the checksum and every bound first
    try:  # an artifact that `eval` would refuse has no size worth reporting
        check_artifact_model(qm, meta, str(path))
    except ArtifactError as e:
        raise ArtifactError(f"{e}; jepagolf eval refuses this artifact") from None
    parts: dict[str, QuantizedModel] = {g: QuantizedModel() for g in GROUPS}
    groups = _new_groups()
    for name, qt in qm.quantized.items():
        grp = tensor_group(name)
        parts[grp].quantized[name] = qt
        g = groups[grp]
        g.params += qt.q.numel()
        g.tensors += 1
        g.kinds[qt.kind] = g.kinds.get(qt.kind, 0) + qt.q.numel()
        g.raw_bytes += qt.q.numel() + 2 * qt.scale.numel()
    for name, t in qm.floats.items():
        grp = tensor_group(name)
        parts[grp].floats[name] = t
        g = groups[grp]
        kind = {torch.float16: "fp16", torch.float32: "fp32"}.get(t.dtype, "raw")
        g.params += t.numel()
        g.tensors += 1
        g.kinds[kind] = g.kinds.get(kind, 0) + t.numel()
        g.raw_bytes += t.numel() * t.element_size()
    # Each group compressed on its own (tensor data only), then scaled so the groups share exactly
    # what the file spends beyond its header and framing: groups compressed apart cost a little
    # more than in one stream, and the breakdown should add up to the file.
    compression = artifact_compression(data)
    alone = {grp: len(compress_payload(_tensor_bytes(part), compression)) for grp, part in parts.items()
             if part.names()}
    payload = artifact_payload(data, str(path))
    header = payload[: 4 + int.from_bytes(payload[:4], "little")]
    overhead = len(compress_payload(header, compression)) + _FRAMING_BYTES
    budget = len(data) - overhead
    for grp, n in alone.items():
        groups[grp].bytes = round(n * budget / sum(alone.values()))
    if alone:  # rounding remainder to the largest group, so the rows add up exactly
        biggest = max(alone, key=alone.__getitem__)
        groups[biggest].bytes += budget - sum(g.bytes for g in groups.values())
    report = SizeReport("measured", list(groups.values()), len(data), code_bytes, cap_bytes)
    codec = {"lzma": "LZMA", "zlib": "zlib"}[compression]
    report.notes.append(f"measured: each group {codec}-compressed alone ({sum(alone.values()):,} bytes in all), "
                        f"scaled to the file's {budget:,} bytes of tensor data; header+framing {overhead:,}")
    if codecs:
        report.codecs = compress_report(artifact_payload(data, str(path)))
    return report


def _tensor_bytes(qm: QuantizedModel) -> bytes:
    """The raw tensor bytes of ``qm`` as the container lays them out (its payload minus the header)."""
    payload = encode_payload(qm)
    return payload[4 + int.from_bytes(payload[:4], "little") :]


def over_cap_message(report: SizeReport) -> str:
    """The refusal text: by how much, and where the bytes are."""
    return (f"submission is {-report.headroom:,} bytes over the {report.cap_bytes:,}-byte cap "
            f"(code {report.code_bytes:,} + model {report.model_bytes:,} = {report.total_bytes:,}); "
            "bytes by tensor group:\n" + report.table())


def report_json(report: SizeReport) -> str:
    return json.dumps(report.to_dict(), indent=2, sort_keys=True)
