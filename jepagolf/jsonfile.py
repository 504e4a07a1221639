"""Reading the JSON files the tool keeps beside its outputs (run summaries, calibrations, corpus manifests,
stamps) without trusting them: the size is checked before a byte is read, and a file that is not a JSON
object is refused with a one-line error naming it. Layer 0: no package imports.

The standard library's json does the parsing; what it lacks here is the size bound and the one error
type, so this is the only hand-written part. :func:`read_regular` is the bounded read every such file
(and any other file the tool reads whole: tokenizers, checkpoints) goes through: it opens without
blocking and refuses a FIFO, socket or device by its type, so such a file never hangs a command.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from typing import Any

MAX_JSON_BYTES = 4 << 20  # the largest of these files (a ladder's calibration, a manifest) is tens of kB


class FileReadError(ValueError):
    """A file that is not a regular file, or larger than it can be, refused before it is read."""


class JsonFileError(FileReadError):
    """A JSON file the tool wrote earlier is too large, unreadable or not a JSON object."""


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def read_regular(path: str | os.PathLike[str], max_bytes: int, what: str = "this file",
                 error: type[ValueError] = FileReadError) -> bytes:
    """The bytes of the regular file ``path``, refusing (with ``error``, one line naming the file) a
    special file by its type and a file over ``max_bytes`` by its size, both before reading a byte.
    Opened with O_NONBLOCK, so that a FIFO is not waited on; a missing file raises FileNotFoundError."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except IsADirectoryError:
        raise error(f"{path} is a folder, not a file") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
            raise error(f"{path} is {kind}, not a regular file; refused without reading it")
        if st.st_size > max_bytes:
            raise error(f"{path}: {st.st_size:,} bytes, more than {what} can be ({max_bytes:,}); not reading it")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew while being read
        raise error(f"{path}: more than {max_bytes:,} bytes, more than {what} can be; not reading it")
    return data


def bounded_lines(path: str | os.PathLike[str], max_line_bytes: int,
                  error: type[ValueError] = FileReadError) -> Iterator[bytes]:
    """The lines of a (regular) text log such as ``metrics.jsonl``, each refused when longer than
    ``max_line_bytes``: a garbled or hostile line never costs more memory than that."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise error(f"{path} is not a regular file; refused without reading it")
        for n, line in enumerate(iter(lambda: f.readline(max_line_bytes + 1), b""), 1):
            if len(line) > max_line_bytes and not line.endswith(b"\n"):
                raise error(f"{path}: line {n} is longer than {max_line_bytes:,} bytes; not a log this tool wrote")
            yield line


def read_json_object(path: str | os.PathLike[str], max_bytes: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """The JSON object in ``path``; JsonFileError (one line, naming the file) when it is over ``max_bytes``,
    not UTF-8, not JSON, nested too deeply or not an object. A missing file raises FileNotFoundError."""
    raw = read_regular(path, max_bytes, error=JsonFileError)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        why = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise JsonFileError(f"{path}: not valid JSON ({why})") from None
    if not isinstance(data, dict):
        raise JsonFileError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data
