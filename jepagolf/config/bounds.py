"""ConfigError, the limits every configuration keeps, and the checks and value parsing the sections share.

Imports only the standard library.
"""

from __future__ import annotations

import functools
import math
from typing import Any, get_type_hints


class ConfigError(ValueError):
    """A configuration value is unknown, malformed or inconsistent."""


CAP_BYTES = 16_000_000  # the challenge's size cap, decimal: code bytes + compressed model bytes (DESIGN section 2)
# Limits that a configuration (and so an artifact's or checkpoint's header) must keep, checked before
# anything is built: a file read from disk must not be able to make the tool allocate without bound.
MAX_PARAMS = 8 * CAP_BYTES  # more parameters than this cannot fit the cap even at 1 bit per weight
MAX_LAYERS = 1024
MAX_MLP_MULT = 64.0
MAX_SEQ_LEN = 1 << 16
MAX_BATCH_TOKENS = 1 << 27  # tokens per step, micro-batch or evaluation batch (256x the v3 batch)
MAX_ROPE_BYTES = 256 << 20  # the RoPE tables, fp32 cos + sin for every layer: L * T * head_dim * 4 bytes


def check_seq_len(seq_len: int) -> None:
    if not 0 < seq_len <= MAX_SEQ_LEN:
        raise ConfigError(f"train_seq_len={seq_len} must be in 1..{MAX_SEQ_LEN}")


@functools.cache
def _field_types(cls: type) -> dict[str, type]:
    return get_type_hints(cls)


def _check_types(obj: object) -> None:
    """Every field of a config section has its declared type (an int is accepted for a float; a bool is
    not a number here) and every number is finite and fits 64 bits: a config read from a file, or a
    value like ``--set x=1e400`` or ``nan``, is refused here with the field's name."""
    for name, typ in _field_types(type(obj)).items():
        value = getattr(obj, name)
        numeric = typ in (int, float)
        ok = (isinstance(value, typ) if not numeric else
              isinstance(value, int if typ is int else (int, float)) and not isinstance(value, bool))
        if not ok:
            raise ConfigError(f"{name}={value!r}: expected a value of type {typ.__name__}")
        if numeric and not _finite_64(value):
            fits = " that fits 64 bits" if typ is int else ""
            raise ConfigError(f"{name}={value!r} must be a finite number{fits}")


def _finite_64(value: int | float) -> bool:
    if isinstance(value, int):
        return -(1 << 63) <= value < (1 << 63)
    return math.isfinite(value)


def _fraction(obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{name}={value} must be a fraction of the run, in [0, 1]")


def _positive(obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value <= 0:
            raise ConfigError(f"{name}={value} must be > 0")


def _parse(key: str, raw: Any, typ: type) -> Any:
    if not isinstance(raw, str):
        return typ(raw)
    text = raw.strip()
    try:
        if typ is bool:
            low = text.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if typ is int:
            if "e" not in text.lower():
                return int(text.replace("_", ""))
            number = float(text)
            if not number.is_integer():  # also false for inf and nan
                raise ValueError(text)
            return int(number)
        if typ is float:
            return float(text)
        return text
    except ValueError:
        raise ConfigError(f"{key}={raw!r}: expected a value of type {typ.__name__}") from None
