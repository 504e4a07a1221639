"""Errors of the dataset tools (download, build, check) that a user can fix.

The CLI prints them as one line and exits with status 2; anything else is a bug.
"""

from __future__ import annotations

import os
from pathlib import Path


class DataError(ValueError):
    """A dataset could not be fetched, built or checked, for a reason the message explains."""


class InputError(DataError):
    """An input corpus file is missing, unreadable, or not in the format its name says."""


class DownloadError(DataError):
    """A file could not be fetched from the Hub, or what arrived failed validation."""


def named_for_output(e: OSError, tmp: Path, out: Path) -> OSError | None:
    """``e`` with its files named as they will be inside ``out``, when it names one inside the hidden folder
    ``tmp`` where ``out`` is being built (a user never sees that folder); None when it names none."""
    names = [e.filename, e.filename2]
    if e.errno is None or not any(isinstance(n, str | os.PathLike) and Path(n).is_relative_to(tmp) for n in names):
        return None
    shown = [str(out / Path(n).relative_to(tmp)) if isinstance(n, str | os.PathLike) and Path(n).is_relative_to(tmp)
             else n for n in names]
    return OSError(e.errno, e.strerror, shown[0], None, shown[1])
