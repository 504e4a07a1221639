"""The export section (``ExportConfig``): how the artifact is quantised and compressed."""

from __future__ import annotations

from dataclasses import dataclass

from jepagolf.config.bounds import ConfigError, _check_types, _positive


@dataclass
class ExportConfig:
    int6_min_numel: int = 16_384
    """2-D tensors with at least this many elements are stored as int6; smaller ones stay float."""
    int5_patterns: str = "mlp.,attn.,bigram"
    """Comma-separated name fragments of int6 matrices stored as int5 instead (levels -15..15, about
    1 bit less per weight); empty = all int6. The tied embedding (the output head) stays int6.
    Measured on cpu-demo with GPTQ: 0.58 bytes/param and a 0.0056 bpb gap, against 0.69 and 0.0126
    for int6 everywhere rounded to nearest; v3 does not fit the cap at int6 (~19 MB predicted)."""
    gptq: bool = True
    """Round the int5/int6 matrices by GPTQ (Hessian-aware, on train-split calibration sequences)
    instead of to nearest: same format and size, lower output error."""
    gptq_calib_tokens: int = 65_536
    """Training tokens whose activations give the GPTQ input statistics."""
    export_scheme: str = "int6-lzma"
    """int6-lzma: jepagolf's export (int6/int5 per row, GPTQ when gptq is on, LZMA) | int8-zlib: the
    reference trainer's (int8 per row clipped at the 99.99984th percentile, tensors of <= 65,536
    elements kept in fp16/fp32, zlib level 9), as the naive baseline scores it."""
    embed_quant: str = "int6"
    """Storage of the tied embedding / output head: int5 | int6 | int8. On cpu-demo (int5 elsewhere,
    GPTQ) int8 costs 0.03 bytes/param more and cuts the quantisation gap from 0.0056 to 0.0013 bpb."""

    def __post_init__(self) -> None:
        _check_types(self)
        _positive(self, "int6_min_numel", "gptq_calib_tokens")
        if self.export_scheme not in ("int6-lzma", "int8-zlib"):
            raise ConfigError(f"export_scheme={self.export_scheme!r}: use int6-lzma or int8-zlib")
        if self.export_scheme == "int8-zlib" and self.gptq:
            raise ConfigError("gptq=true rounds the int6-lzma export; export_scheme=int8-zlib rounds to nearest as "
                              "the reference does: set gptq=false or export_scheme=int6-lzma")
        if self.embed_quant not in ("int5", "int6", "int8"):
            raise ConfigError(f"embed_quant={self.embed_quant!r}: use int5, int6 or int8")
