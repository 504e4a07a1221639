"""``Config``, the six sections together: cross-section checks, the hash, and the flat key index."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any, get_type_hints

from jepagolf.config.bounds import ConfigError
from jepagolf.config.data import DataConfig
from jepagolf.config.export import ExportConfig
from jepagolf.config.jepa import HASH_SILENT_DEFAULTS, JepaConfig
from jepagolf.config.model import ModelConfig, check_rope_tables
from jepagolf.config.optim import OptimConfig
from jepagolf.config.spans import check_span_settings
from jepagolf.config.train import OPERATIONAL_TRAIN_KEYS, TrainConfig


@dataclass
class Config:
    preset: str = "v3"
    model: ModelConfig = field(default_factory=ModelConfig)
    jepa: JepaConfig = field(default_factory=JepaConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    def __post_init__(self) -> None:
        t, j = self.train, self.jepa
        if not isinstance(self.preset, str):
            raise ConfigError(f"preset={self.preset!r}: expected a value of type str")
        check_rope_tables(self.model, t.train_seq_len)
        if self.optim.warmdown_mode == "wallclock" and t.max_wallclock_seconds <= 0:
            raise ConfigError("warmdown_mode=wallclock needs max_wallclock_seconds > 0; use auto or steps")
        if j.active:
            try:
                if j.jepa_mode == "span":
                    plan = j.span_plan(t.train_seq_len)
                    check_span_settings(t.train_seq_len, plan.num_spans, plan.span_min)
            except ValueError as e:
                raise ConfigError(str(e)) from None
            L = self.model.num_layers
            if not -L <= j.jepa_target_block < L:
                raise ConfigError(f"jepa_target_block={j.jepa_target_block} is outside the {L} blocks (num_layers)")
            if j.jepa_target_source == "top-avg" and j.jepa_target_top_k > L:
                raise ConfigError(f"jepa_target_top_k={j.jepa_target_top_k} exceeds num_layers={L}")
            if j.jepa_target_source == "encoder" and (not self.model.unet_skips or L < 2):
                raise ConfigError("jepa_target_source=encoder needs U-Net skips and num_layers >= 2 (an encoder half)")
            if j.jepa_mode == "chunk" and t.train_seq_len % j.jepa_chunk_size:
                raise ConfigError(f"jepa_chunk_size={j.jepa_chunk_size} does not divide "
                                  f"train_seq_len={t.train_seq_len}")
            if j.jepa_mode in ("nextk", "nextlat") and j.jepa_horizons >= t.train_seq_len:
                raise ConfigError(f"jepa_horizons={j.jepa_horizons} must be < train_seq_len={t.train_seq_len}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def hash(self) -> str:
        """Short hash of everything that changes the trained model (not the device or data paths)."""
        return config_dict_hash(self.to_dict())


def config_dict_hash(config: dict[str, Any]) -> str:
    """``Config.hash()`` of a config dict (``Config.to_dict()``, or a config.json exactly as stored,
    which lacks the fields added since it was written): the preset name, the data paths and the
    operational train keys are left out, and so are the factor seeds and the data offset while they
    change nothing (``init_seed``/``mask_seed`` -1 or equal to ``seed``, ``data_offset`` 0): every config
    written before they existed keeps its hash, and one run has one hash however its seeds are spelled."""
    d = {k: v for k, v in config.items() if k not in ("preset", "data")}
    train = config.get("train", {})
    d["train"] = {k: v for k, v in train.items()
                  if k not in OPERATIONAL_TRAIN_KEYS and not _follows_default(k, v, train.get("seed"))}
    for section, defaults in HASH_SILENT_DEFAULTS.items():
        if isinstance(d.get(section), dict):
            d[section] = {k: v for k, v in d[section].items() if not (k in defaults and v == defaults[k])}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def _follows_default(key: str, value: Any, seed: Any) -> bool:
    """A train key whose value changes nothing: a factor seed that is -1 or ``seed``, a data offset of 0."""
    if key in ("init_seed", "mask_seed"):
        return value == -1 or value == seed
    return key == "data_offset" and value == 0


SECTIONS = ("model", "jepa", "optim", "train", "data", "export")


def _section_classes() -> dict[str, type]:
    hints = get_type_hints(Config)
    return {name: hints[name] for name in SECTIONS}


def field_index() -> dict[str, tuple[str, type]]:
    """Flat field name -> (section, python type)."""
    return dict(_field_index())


@functools.cache
def _field_index() -> dict[str, tuple[str, type]]:
    # Computed once: every key resolution used to repeat get_type_hints over all sections, which made
    # build_config cost ~0.15 s on a loaded 2-core machine.
    index: dict[str, tuple[str, type]] = {}
    for section, cls in _section_classes().items():
        hints = get_type_hints(cls)
        for f in fields(cls):
            assert f.name not in index, f"duplicate config key {f.name}"
            index[f.name] = (section, hints[f.name])
    return index
