"""Errors of the dataset tools (download, build, check) that a user can fix.

The CLI prints them as one line and exits with status 2; anything else is a bug.
"""

from __future__ import annotations


class DataError(ValueError):
    """A dataset could not be fetched, built or checked, for a reason the message explains."""


class InputError(DataError):
    """An input corpus file is missing, unreadable, or not in the format its name says."""


class DownloadError(DataError):
    """A file could not be fetched from the Hub, or what arrived failed validation."""
