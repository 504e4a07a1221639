"""Reading the JSON files the tool keeps beside its outputs (run summaries, calibrations, corpus manifests,
stamps) without trusting them: the size is checked before a byte is read, and a file that is not a JSON
object is refused with a one-line error naming it. Layer 0: no package imports.

The standard library's json does the parsing; what it lacks here is the size bound and the one error
type, so this is the only hand-written part.
"""

from __future__ import annotations

import json
import os
from typing import Any

MAX_JSON_BYTES = 4 << 20  # the largest of these files (a ladder's calibration, a manifest) is tens of kB


class JsonFileError(ValueError):
    """A JSON file the tool wrote earlier is too large, unreadable or not a JSON object."""


def read_json_object(path: str | os.PathLike[str], max_bytes: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """The JSON object in ``path``; JsonFileError (one line, naming the file) when it is over ``max_bytes``,
    not UTF-8, not JSON, nested too deeply or not an object. A missing file raises FileNotFoundError."""
    size = os.path.getsize(path)
    if size > max_bytes:
        raise JsonFileError(f"{path}: {size:,} bytes, more than this file can be ({max_bytes:,}); not reading it")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        why = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise JsonFileError(f"{path}: not valid JSON ({why})") from None
    if not isinstance(data, dict):
        raise JsonFileError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data
