"""Where commands write: never replace what they did not create, and replace their own output safely.

Every command that writes a folder (``data demo``, ``data build``, ``export``, ...) follows one rule,
checked by :func:`check_output_dir` before any work starts:

- a missing or empty ``--out`` is simply written;
- a non-empty ``--out`` is replaced only when it is the command's own earlier output (recognised by
  the manifest or marker that command writes) or when ``--overwrite`` is given; commands whose output
  is costly or hand-edited (``data build``, ``export``) want ``--overwrite`` even for their own;
- never, even with ``--overwrite``: a file; a folder that is, contains or lies inside one of the
  command's inputs; a run folder, or a folder holding one; the working directory, the home folder,
  a filesystem root or any folder above them; a foreign folder too large to inspect.

The new output is built in a hidden sibling and swapped in by :func:`replace_dir` only once it is
complete, so a failure leaves the old output as it was.

``RunLock`` holds an exclusive ``flock`` on a file in a run folder for as long as a run writes there;
the OS drops it when the process exits or dies, so a crash never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

# What a `jepagolf train` run folder holds (the artifact name is export.artifact.ARTIFACT_NAME; this
# module sits below export, so the names are spelled out here).
RUN_FOLDER_FILES = ("summary.json", "train.log", "metrics.jsonl", "final_model.int6.lzma", "checkpoints")
LOCK_FILE = ".jepagolf.lock"
# A foreign folder is inspected (for run folders and inputs inside it) up to this many entries; a larger
# one is refused outright rather than searched, which is what a mistyped --out usually is.
SCAN_LIMIT = 10_000


class OutputError(ValueError):
    """An output path that the command may not write or replace."""


def is_run_folder(path: Path) -> bool:
    return path.is_dir() and any((path / name).exists() for name in RUN_FOLDER_FILES)


def _is_empty_dir(path: Path) -> bool:
    """Empty, or holding only a run lock file (a run that stopped before writing anything)."""
    return path.is_dir() and all(p.name == LOCK_FILE for p in path.iterdir())


def _related(a: Path, b: Path) -> bool:
    """``a`` and ``b`` (resolved) are the same, or one lies inside the other."""
    return a == b or a in b.parents or b in a.parents


def _protected(resolved: Path) -> str | None:
    """Why ``resolved`` may never be replaced, or None."""
    if resolved.parent == resolved:
        return "a filesystem root"
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        return "the working directory" if resolved == cwd else "a folder above the working directory"
    home = Path.home().resolve()
    if resolved == home or resolved in home.parents:
        return "the home folder" if resolved == home else "a folder above the home folder"
    return None


def _run_folder_inside(folder: Path) -> Path | None:
    """The first run folder at or below ``folder``; raises when the folder is too large to search."""
    seen = 0
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        if any(n in RUN_FOLDER_FILES for n in (*dirnames, *filenames)):
            return here
        seen += len(dirnames) + len(filenames)
        if seen > SCAN_LIMIT:
            raise OutputError(f"{folder} holds more than {SCAN_LIMIT:,} files; it does not look like an earlier "
                              "output of this command and is not replaced: choose another output folder")
    return None


def check_output_dir(
    out: Path,
    *,
    command: str,
    overwrite: bool,
    is_own: Callable[[Path], bool],
    inputs: Iterable[Path] = (),
    own_needs_overwrite: bool = False,
    flag: str = "--overwrite",
) -> bool:
    """Whether ``out`` holds something that the command's new output will replace; raises
    :class:`OutputError` when it may not (see the module docstring). ``command`` names it in messages,
    ``is_own(out)`` recognises its earlier output, ``inputs`` are the paths it reads."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a folder; choose a folder for the output")
    if not out.exists() or _is_empty_dir(out):
        return False
    resolved = out.resolve()
    for inp in inputs:
        if _related(resolved, Path(inp).resolve()):
            raise OutputError(f"output folder {out} overlaps the input {inp} ({command} never replaces what "
                              "it reads): choose another output folder")
    why = _protected(resolved)
    if why is not None:
        raise OutputError(f"output folder {out} is {why} and holds files; {command} never replaces it: "
                          "choose a new folder")
    if is_run_folder(out):
        raise OutputError(f"output folder {out} is a training run folder; {command} never replaces it: "
                          "choose another output folder")
    own = is_own(out)
    if not own:
        inside = _run_folder_inside(out)
        if inside is not None:
            raise OutputError(f"output folder {out} holds a training run folder ({inside}); {command} never "
                              "replaces it: choose another output folder")
    if overwrite or (own and not own_needs_overwrite):
        return True
    what = "its earlier output" if own else f"not an earlier output of {command}"
    raise OutputError(f"output folder {out} is not empty ({what}); pass {flag} to replace it, or choose another "
                      "folder")


def temp_sibling(out: Path, tag: str = "tmp") -> Path:
    """A fresh hidden folder beside ``out`` (same filesystem, so it can be renamed into place)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{tag}-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    return tmp


def replace_dir(new: Path, out: Path) -> None:
    """Put the finished folder ``new`` at ``out``; an existing ``out`` (already cleared by
    :func:`check_output_dir`) is moved aside first and removed only once ``new`` is in place."""
    try:
        os.rename(new, out)
        return
    except OSError:
        if not out.exists():
            raise
    old = out.parent / f".{out.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
    # FileNotFoundError: a concurrent process moved it aside first; ours goes in below.
    with contextlib.suppress(FileNotFoundError):
        os.rename(out, old)
    os.rename(new, out)
    shutil.rmtree(old, ignore_errors=True)


def check_output_file(out: Path, *, command: str, is_own: Callable[[Path], bool]) -> None:
    """A single output file may replace only the command's own earlier file at that path."""
    out = Path(out)
    if out.is_dir():
        raise OutputError(f"{out} is a folder; {command} writes a file there: give a file name")
    if out.exists() and not is_own(out):
        raise OutputError(f"{out} exists and was not written by {command}; choose another file name")


# ----------------------------------------------------------------------------- run folder lock


class RunLock:
    """An exclusive, non-blocking ``flock`` on ``folder/.jepagolf.lock`` while a run writes there.

    The lock file itself stays (removing it would let two processes lock two different inodes); the
    lock, not the file, is what counts, and the OS releases it when the process ends in any way.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            raise OutputError(f"{self.folder} is in use by another running jepagolf process (its lock file "
                              f"{LOCK_FILE} is held); wait for it to finish or choose another folder") from e
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def is_locked(folder: Path) -> bool:
    """Whether a running process holds ``folder``'s run lock."""
    path = Path(folder) / LOCK_FILE
    if not path.is_file():
        return False
    try:
        with RunLock(folder):
            return False
    except OutputError:
        return True


def read_marker(path: Path, max_bytes: int = 1 << 22) -> dict | None:
    """The JSON object in ``path`` (a manifest or marker), or None when it is missing, too large to be
    one, or not a JSON object; used only to recognise a command's own output."""
    import json

    try:
        if not path.is_file() or path.stat().st_size > max_bytes:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None
