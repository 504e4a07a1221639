"""Typed configuration: one dataclass per section, presets, and overrides.

Every field has a flat name that is unique across sections, so one key addresses it
everywhere: ``--set num_layers=4``, ``--set model.num_layers=4`` and the environment
variable ``NUM_LAYERS=4`` (the parameter-golf spelling) all set the same field.
Precedence: preset < environment < ``--set``.

The package sits at the ground: its modules import only the standard library,
``jepagolf.recipes`` and one another, one way (bounds and spans first; then the sections
model, jepa, optim, train, data, export; then ``sections`` (``Config``), presets and env;
``parse`` last). Modules: ``bounds`` (ConfigError, limits, type checks), ``spans`` (JEPA span
plan), one per section, ``sections`` (Config, hash, key index), ``presets``, ``env``
(environment variables) and ``parse`` (build_config, overrides, config.json). The rest of
the package imports from here.
"""

from __future__ import annotations

from jepagolf.config.bounds import (
    CAP_BYTES,
    MAX_BATCH_TOKENS,
    MAX_LAYERS,
    MAX_MLP_MULT,
    MAX_PARAMS,
    MAX_ROPE_BYTES,
    MAX_SEQ_LEN,
    ConfigError,
    check_seq_len,
)
from jepagolf.config.data import DataConfig
from jepagolf.config.env import ENV_ALIASES, REFUSED_ENV
from jepagolf.config.export import ExportConfig
from jepagolf.config.jepa import HASH_SILENT_DEFAULTS, JEPA_VARIANT_KEYS, JepaConfig, jepa_variant_settings
from jepagolf.config.model import ModelConfig, check_rope_tables
from jepagolf.config.optim import OptimConfig
from jepagolf.config.parse import (
    MAX_CONFIG_JSON_BYTES,
    build_config,
    config_from_dict,
    override_config,
    parse_set_args,
    read_config_json,
    resolve_key,
    section_from_dict,
)
from jepagolf.config.presets import BASELINE, PRESETS
from jepagolf.config.sections import SECTIONS, Config, config_dict_hash, field_index
from jepagolf.config.spans import SpanPlan, check_span_settings, span_bounds, span_plan
from jepagolf.config.train import OPERATIONAL_TRAIN_KEYS, TrainConfig

__all__ = [
    "BASELINE", "CAP_BYTES", "ENV_ALIASES", "HASH_SILENT_DEFAULTS", "JEPA_VARIANT_KEYS", "MAX_BATCH_TOKENS",
    "MAX_CONFIG_JSON_BYTES",
    "MAX_LAYERS", "MAX_MLP_MULT", "MAX_PARAMS", "MAX_ROPE_BYTES", "MAX_SEQ_LEN", "OPERATIONAL_TRAIN_KEYS",
    "PRESETS", "REFUSED_ENV", "SECTIONS", "Config", "ConfigError", "DataConfig", "ExportConfig", "JepaConfig",
    "ModelConfig", "OptimConfig", "SpanPlan", "TrainConfig", "build_config", "check_rope_tables", "check_seq_len",
    "check_span_settings", "config_dict_hash", "config_from_dict", "field_index", "jepa_variant_settings",
    "override_config", "parse_set_args", "read_config_json", "resolve_key", "section_from_dict", "span_bounds",
    "span_plan",
]
