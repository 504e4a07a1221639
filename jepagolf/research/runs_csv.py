"""The one reader of the runs.csv files the research instrument writes (an ablation's, a ladder rung's, a whole
ladder's, another ladder's points given to ``--add-points``): bounded before a byte is read, UTF-8 CSV text,
its required columns present and its numeric columns read as finite numbers, every refusal one line that
names the file.

The standard library's csv does the parsing; what it lacks here is the bound, the typing and the one error,
so that is all this module adds. Each caller keeps its own error type and the name it gives the file."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jepagolf.jsonfile import read_regular

MAX_RUNS_CSV_BYTES = 16 << 20  # 120 runs are ~50 KB


def read_runs_table(path: Path, *, types: Mapping[str, type], required: Sequence[str], error: type[ValueError],
                    name: str | None = None, what: str = "a runs.csv",
                    filled: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The rows of ``path``, each a dict of its columns' text with the columns in ``types`` read as that type
    (a blank cell stays "", unless its column is in ``filled``). ``error`` (one line, starting with ``name``,
    default the path) for a missing, special or oversized file, bytes that are not UTF-8 CSV, a missing
    ``required`` column, a blank ``filled`` cell, or a cell that is not its column's number or not finite."""
    name = str(path) if name is None else name
    try:
        data = read_regular(path, MAX_RUNS_CSV_BYTES, what, error=error)
    except FileNotFoundError:
        raise error(f"{name}: no such file") from None
    except error as e:  # read_regular names the path; the caller's name may say more (the flag it came from)
        raise error(f"{name}{str(e).removeprefix(str(path))}") from None
    try:
        reader = csv.DictReader(io.StringIO(data.decode("utf-8"), newline=""))
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise error(f"{name}: not {what} (missing columns {', '.join(missing)})")
        rows = []
        for i, raw in enumerate(reader, start=2):
            row: dict[str, Any] = dict(raw)
            for k, t in types.items():
                if raw.get(k) in (None, ""):
                    if k in filled:
                        raise error(f"{name}: line {i}: {k} is empty")
                    continue
                try:
                    row[k] = t(raw[k])
                except ValueError:
                    raise error(f"{name}: line {i}: {k}={raw[k]!r} is not a number") from None
                if not math.isfinite(row[k]):
                    raise error(f"{name}: line {i}: {k} is not finite")
            rows.append(row)
    except (UnicodeDecodeError, csv.Error) as e:  # random bytes, a NUL, a binary file
        raise error(f"{name}: not {what} (not UTF-8 CSV text: {e})") from None
    return rows
