"""The run's compressed artifact: exported GPT weights -> int5/int6 + LZMA container, and back."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from jepagolf.config import Config, ModelConfig
from jepagolf.export.container import load_artifact, save_artifact
from jepagolf.export.quant import dequantize_state_dict, quantize_state_dict, quantize_state_dict_reference
from jepagolf.model.gpt import GPT

ARTIFACT_NAME = "final_model.int6.lzma"

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


def load_gpt_from_artifact(path: Path, device: torch.device | str = "cpu") -> GPT:
    """Rebuild the GPT from an artifact alone (its header carries the model config)."""
    qm, meta = load_artifact(path)
    model_cfg = ModelConfig(**meta["model"])
    gpt = GPT(model_cfg, int(meta["train_seq_len"]))
    gpt.load_state_dict(dequantize_state_dict(qm))
    return gpt.to(device)


def artifact_meta(path: Path) -> dict:
    return load_artifact(path)[1]
