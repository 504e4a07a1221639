"""Building a ``Config``: presets, environment and ``--set`` overrides, recipes, config.json files."""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from jepagolf.config.bounds import ConfigError, _parse
from jepagolf.config.env import _reference_env, warn_misspelled_keys
from jepagolf.config.presets import PRESETS
from jepagolf.config.sections import SECTIONS, Config, _section_classes, field_index
from jepagolf.recipes import recipe_values


def resolve_key(key: str) -> tuple[str, str]:
    """Map 'num_layers', 'model.num_layers' or 'NUM_LAYERS' to (section, field); suggest on typos."""
    index = field_index()
    name = key.strip().lower()
    if "." in name:
        section, _, name = name.partition(".")
        if section not in SECTIONS:
            raise ConfigError(f"unknown config section {section!r} in {key!r}; sections: {', '.join(SECTIONS)}")
    if name not in index:
        close = difflib.get_close_matches(name, list(index), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else "; see `jepagolf train --list-keys`"
        raise ConfigError(f"unknown config key {key!r}{hint}")
    return index[name][0], name


def build_config(
    preset: str = "v3",
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Preset values, then matching environment variables, then explicit overrides; validated."""
    if preset not in PRESETS:
        close = difflib.get_close_matches(preset, list(PRESETS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown preset {preset!r}{hint}; presets: {', '.join(PRESETS)}")
    index = field_index()
    values: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for key, value in PRESETS[preset].items():
        section, name = resolve_key(key)
        values[section][name] = value
    explicit = _apply_settings(values, index, overrides, environ)
    _apply_recipe(values, index, explicit)
    classes = _section_classes()
    return Config(preset=preset, **{s: classes[s](**values[s]) for s in SECTIONS})


def config_from_dict(d: Mapping[str, Any]) -> Config:
    """Rebuild a Config from ``Config.to_dict()`` output (e.g. a run's config.json); anything else
    (not a dict, unknown keys, values of the wrong type or out of range) raises ConfigError."""
    if not isinstance(d, Mapping):
        raise ConfigError(f"a config must be a JSON object, not {type(d).__name__}")
    unknown = set(d) - set(SECTIONS) - {"preset"}
    if unknown:
        raise ConfigError(f"config has unknown sections {sorted(map(str, unknown))}")
    jepa = d.get("jepa", {})
    if isinstance(jepa, Mapping) and jepa and "jepa_mask_frac" not in jepa:
        d = {**d, "jepa": {**jepa, "jepa_mask_frac": 0.0}}  # written before the key existed: the fixed span rule
    sections = {s: section_from_dict(s, d.get(s, {})) for s in SECTIONS}
    return Config(preset=d.get("preset", "custom"), **sections)


MAX_CONFIG_JSON_BYTES = 1 << 20


def read_config_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A run's config.json as stored, after checking that it holds a valid configuration
    (``config_from_dict``); ConfigError naming the file otherwise. Files over 1 MiB are not read."""
    try:
        size = os.path.getsize(path)
        if size > MAX_CONFIG_JSON_BYTES:
            raise ConfigError(f"{path}: {size:,} bytes is too large for a run configuration")
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
        config_from_dict(d)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError, ConfigError) as e:
        why = "JSON nested too deeply" if isinstance(e, RecursionError) else str(e).removeprefix(f"{path}: ")
        raise ConfigError(f"{path}: not a valid run configuration ({why})") from None
    return d


def section_from_dict(section: str, d: Any) -> Any:
    """One config section (e.g. ``ModelConfig``) from a dict of its fields, validated; fields left
    out keep their defaults."""
    cls = _section_classes()[section]
    if not isinstance(d, Mapping):
        raise ConfigError(f"config section {section!r} must be a JSON object, not {type(d).__name__}")
    extra = set(d) - {f.name for f in fields(cls)}
    if extra:
        raise ConfigError(f"config section {section!r} has unknown keys {sorted(map(str, extra))}")
    return cls(**d)


def override_config(
    cfg: Config, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """``cfg`` with matching environment variables, then explicit overrides applied; validated."""
    d = cfg.to_dict()
    index = field_index()
    explicit = _apply_settings(d, index, overrides, environ)
    if "jepa_recipe" in explicit and d["jepa"]["jepa_recipe"] != cfg.jepa.jepa_recipe:
        # Only a newly chosen recipe is expanded: cfg already holds its own recipe's values and the keys set
        # explicitly when it was built, which re-expanding would overwrite.
        _apply_recipe(d, index, explicit)
    return config_from_dict(d)


def _apply_recipe(values: dict[str, dict[str, Any]], index: dict[str, tuple[str, type]], explicit: set[str]) -> None:
    """Set the values of the chosen ``jepa_recipe`` that were not set explicitly (those win over the recipe)."""
    name = values["jepa"].get("jepa_recipe", "")
    try:
        recipe = recipe_values(name)
    except KeyError as e:
        raise ConfigError(e.args[0]) from None
    for key, value in recipe.items():
        if key not in explicit:
            values[index[key][0]][key] = value


def _apply_settings(
    values: dict[str, dict[str, Any]], index: dict[str, tuple[str, type]],
    overrides: Mapping[str, Any] | None, environ: Mapping[str, str] | None,
) -> set[str]:
    """Set ``values[section][name]`` from matching environment variables (NUM_LAYERS=...) and the
    reference's other spellings (``ENV_ALIASES``), then from explicit overrides, which win; every value
    is parsed to its field's type. The reference's variables jepagolf cannot honour are refused; those
    that look like a misspelled key are warned about. Returns the names set."""
    env = os.environ if environ is None else environ
    aliased = _reference_env(env)
    warn_misspelled_keys(env, index)
    explicit: set[str] = set()
    for name, (section, typ) in index.items():
        if name.upper() in env:
            values[section][name] = _parse(name.upper(), env[name.upper()], typ)
            explicit.add(name)
        elif name in aliased:
            values[section][name] = _parse(aliased[name][0], aliased[name][1], typ)
            explicit.add(name)
    for key, raw in (overrides or {}).items():
        section, name = resolve_key(key)
        values[section][name] = _parse(key, raw, index[name][1])
        explicit.add(name)
    return explicit


def parse_set_args(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value")
        out[key] = value
    return out
