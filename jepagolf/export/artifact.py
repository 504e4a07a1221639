"""The run's compressed artifact: exported GPT weights -> int5/int6 + LZMA (or the reference's int8 + zlib)
container, and back."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from jepagolf.config import Config, ConfigError, ModelConfig, check_rope_tables, check_seq_len, section_from_dict
from jepagolf.export.container import ArtifactError, artifact_compression, load_artifact, save_artifact
from jepagolf.export.quant import (
    QuantizedModel,
    dequantize_state_dict,
    quantize_state_dict,
    quantize_state_dict_reference,
)
from jepagolf.model.gpt import GPT

# The artifact's file name in a run folder says its export scheme (ExportConfig.export_scheme). Run folders
# written before the names differed hold `final_model.int6.lzma` whatever the scheme; their summary.json
# names the file ("artifact"), which is how every reader finds it.
ARTIFACT_NAMES = {"int6-lzma": "final_model.int6.lzma", "int8-zlib": "final_model.int8.zlib"}
ARTIFACT_NAME = ARTIFACT_NAMES["int6-lzma"]  # the default scheme's


def artifact_name(cfg: Config) -> str:
    """The file name of ``cfg``'s artifact in its run folder."""
    return ARTIFACT_NAMES[cfg.export.export_scheme]


def artifact_file_scheme(path: Path) -> str:
    """The export scheme of an artifact file, told by its magic bytes (only those are read: loading the
    file checks the rest)."""
    with open(path, "rb") as f:
        head = f.read(16)
    return {"lzma": "int6-lzma", "zlib": "int8-zlib"}[artifact_compression(head)]

# Only the GPT's weights are shipped. These name fragments belong to training-only modules and must
# never reach an artifact (defect 5: they cost bytes under the cap and evaluation does not use them).
JEPA_ONLY_FRAGMENTS = ("predictor", "mask_emb")


def write_artifact(
    state_dict: dict[str, Tensor], path: Path, cfg: Config, hessians: Mapping[str, Tensor] | None = None
) -> int:
    """Quantise and write; returns the artifact size in bytes. ``hessians`` (see
    :func:`jepagolf.export.gptq.export_hessians`) switch the matrices that have one to GPTQ rounding."""
    leaked = [k for k in state_dict if any(f in k for f in JEPA_ONLY_FRAGMENTS)]
    if leaked:
        raise ValueError(f"refusing to export JEPA-only weights: {leaked}")
    if cfg.export.export_scheme == "int8-zlib":
        return save_artifact(path, quantize_state_dict_reference(state_dict), meta=artifact_meta_for(cfg),
                             compression="zlib")
    qm = quantize_state_dict(state_dict, min_numel=cfg.export.int6_min_numel, int5_patterns=int5_patterns(cfg),
                             embedding_kind=cfg.export.embed_quant, hessians=hessians)  # type: ignore[arg-type]
    return save_artifact(path, qm, meta=artifact_meta_for(cfg))


def int5_patterns(cfg: Config) -> tuple[str, ...]:
    return tuple(p.strip() for p in cfg.export.int5_patterns.split(",") if p.strip())


def artifact_meta_for(cfg: Config) -> dict:
    """The header metadata an artifact of ``cfg`` carries (what rebuilding the GPT needs)."""
    return {"model": dataclasses.asdict(cfg.model), "train_seq_len": cfg.train.train_seq_len,
            "preset": cfg.preset, "config_hash": cfg.hash()}


def load_gpt_from_artifact(path: Path, device: torch.device | str = "cpu", max_len: int | None = None) -> GPT:
    """Rebuild the GPT from an artifact alone (its header carries the model config), for sequences of
    up to ``max_len`` tokens (default: its training length).

    The header's model config is validated (types, ranges, size limits) and its parameter count must
    equal the number of weights the file stores before the network is built, so a crafted header
    cannot make this allocate more than the file's own tensors justify; then every name and shape.
    """
    qm, meta = load_artifact(path)
    model_cfg, seq_len = check_artifact_model(qm, meta, str(path), max_len)
    gpt = GPT(model_cfg, seq_len)
    gpt.load_state_dict(dequantize_state_dict(qm))
    return gpt.to(device)


def check_artifact_model(
    qm: QuantizedModel, meta: dict, source: str, max_len: int | None = None
) -> tuple[ModelConfig, int]:
    """(model config, sequence length) of an artifact whose header describes a valid model
    (``gpt_shape_from_meta``) holding exactly the stored tensors: first their count, then every name and
    shape against the model built on the meta device (no memory). ArtifactError if not."""
    model_cfg, seq_len = gpt_shape_from_meta(meta, source, max_len)
    stored = {**{k: tuple(q.q.shape) for k, q in qm.quantized.items()},
              **{k: tuple(t.shape) for k, t in qm.floats.items()}}
    weights = sum(math.prod(s) for s in stored.values())
    if model_cfg.param_count() != weights:
        raise ArtifactError(f"{source}: the tensors do not match the model its header describes ({weights:,} "
                            f"weights stored, {model_cfg.param_count():,} in the model)")
    with torch.device("meta"):  # names and shapes only: nothing is allocated
        expected = {k: tuple(v.shape) for k, v in GPT(model_cfg, seq_len).state_dict().items()}
    if stored != expected:
        wrong = sorted(k for k in set(stored) | set(expected) if stored.get(k) != expected.get(k))
        detail = ", ".join(f"{k}: {list(stored[k]) if k in stored else 'missing'} (expected "
                           f"{list(expected[k]) if k in expected else 'none'})" for k in wrong[:4])
        raise ArtifactError(f"{source}: the tensors do not match the model its header describes ({len(wrong)} "
                            f"differ: {detail})")
    return model_cfg, seq_len


def gpt_shape_from_meta(meta: dict, source: str, max_len: int | None = None) -> tuple[ModelConfig, int]:
    """(model config, sequence length) from an artifact's header, validated; ArtifactError if not."""
    model, seq_len = meta.get("model"), meta.get("train_seq_len") if max_len is None else max_len
    if not isinstance(model, dict) or not isinstance(seq_len, int) or isinstance(seq_len, bool):
        raise ArtifactError(f"{source}: malformed artifact header: meta needs a 'model' object and an integer "
                            f"'train_seq_len', found {type(model).__name__} and {type(seq_len).__name__}")
    try:
        model_cfg = section_from_dict("model", model)
        check_seq_len(seq_len)
        check_rope_tables(model_cfg, seq_len)
    except ConfigError as e:
        raise ArtifactError(f"{source}: the model in the artifact header is not valid: {e}") from None
    return model_cfg, seq_len


def artifact_meta(path: Path) -> dict:
    return load_artifact(path)[1]
