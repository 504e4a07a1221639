"""Where commands write: never replace what they did not create, and replace their own output safely.

Every command that writes a folder (``data demo``, ``data build``, ``data research``, ``export``,
``ladder``, the demo-corpus cache) follows one rule, checked by :func:`check_output_dir` before any
long work starts:

- an ``--out`` that is, lies inside or holds one of the command's inputs is refused, whether or not it
  exists yet;
- an ``--out`` that could not be written (a read-only filesystem, no permission on it or on the
  folder that would hold it) is refused at once, not after the work;
- a missing or empty ``--out`` is simply written;
- a non-empty ``--out`` is replaced only when it is the command's own earlier output, proven by the
  marker the command wrote there (:func:`owns`), or when ``--overwrite`` is given; commands whose
  output is costly or hand-edited (``data build``, ``export``) want ``--overwrite`` even for their own;
- never, even with ``--overwrite``: a file; a run folder, or a folder holding one; the working
  directory, the home folder, a filesystem root or any folder above them; a foreign folder too large
  to inspect.

Ownership is never read from a manifest (anyone, or a copy, can write one). It is a marker file,
:data:`MARKER`, that a command writes into the folder it has just created (:func:`claim_dir`) and
that counts only where it can be verified:

- it names the command that wrote it;
- it names the folder itself by its device and inode numbers, so a marker copied into another
  folder with the files (``cp -r``, a restored backup), written by hand, or left in a folder that
  was later moved across filesystems does not verify: such a folder is foreign (the safe side:
  ``--overwrite`` then replaces it). A rename on one filesystem keeps the inode, so the folder stays
  the command's own, as it should;
- a command that writes its folder in one go records the names of every entry it put there; a file
  the user added since makes the folder foreign again. Commands that add to their folder over time
  (``ladder``, an ablation's run folders) record no list; they only ever write their own names there
  and delete nothing but run folders they marked and that hold only what a run writes.

Nothing secret is involved: the marker proves the folder was made by jepagolf as it is now, which is
what guards against accidents (a hand-written manifest, user files added, a copy); it does not stop
someone who forges a marker for their own folder on purpose, as nothing in a user's own account could.

The new output is built in a hidden sibling and swapped in by :func:`replace_dir` only once it is
complete, so a failure leaves the old output as it was.

``RunLock`` holds an exclusive ``flock`` on a file in a run folder for as long as a run writes there;
the OS drops it when the process exits or dies, so a crash never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

# What a `jepagolf train` run folder holds (the artifact names are export.artifact.ARTIFACT_NAMES; this
# module sits below export, so the names are spelled out here).
RUN_FOLDER_FILES = ("summary.json", "train.log", "metrics.jsonl", "final_model.int6.lzma", "final_model.int8.zlib",
                    "checkpoints")
LOCK_FILE = ".jepagolf.lock"
# The ownership marker (see the module docstring); not listed in any manifest.
MARKER = ".jepagolf-output.json"
_MARKER_FORMAT = "jepagolf-output"
_MARKER_MAX_BYTES = 1 << 20
# What a `jepagolf train` run writes into its folder, beyond RUN_FOLDER_FILES: an ablation deletes an
# unfinished run folder of its own only when it holds nothing else. Hidden atomic-write temporaries
# (".NAME.PID.HEX.tmp") are a run's too.
RUN_WRITES = (*RUN_FOLDER_FILES, "config.json", "plots", LOCK_FILE, MARKER)
# ...and files by these prefixes: artifacts, and the TensorBoard event files of a run with tensorboard=true.
RUN_WRITE_PREFIXES = ("final_model.", "events.out.tfevents.")
# A foreign folder is inspected (for run folders and inputs inside it) up to this many entries; a larger
# one is refused outright rather than searched, which is what a mistyped --out usually is.
SCAN_LIMIT = 10_000


class OutputError(ValueError):
    """An output path that the command may not write or replace."""


def is_run_folder(path: Path) -> bool:
    return path.is_dir() and any((path / name).exists() for name in RUN_FOLDER_FILES)


def _is_empty_dir(path: Path) -> bool:
    """Empty, or holding only a run lock file (a run that stopped before writing anything) or a marker."""
    return path.is_dir() and all(p.name in (LOCK_FILE, MARKER) for p in path.iterdir())


# ----------------------------------------------------------------------------- ownership markers


def _identity(folder: Path) -> list[int]:
    st = os.stat(folder)
    return [st.st_dev, st.st_ino]


def claim_dir(folder: Path, command: str, *, complete: bool = True) -> None:
    """Mark ``folder``, which ``command`` has just created (or found empty), as its own output.

    ``complete``: the folder now holds everything the command writes there, and its entries are
    recorded (a later extra entry makes it foreign); otherwise the command adds to it over time and
    no list is kept. Written last for a complete folder, first for one that grows."""
    folder = Path(folder)
    entries = sorted(p.name for p in folder.iterdir() if p.name not in (MARKER, LOCK_FILE)) if complete else None
    doc = {"format": _MARKER_FORMAT, "command": command, "folder": _identity(folder), "entries": entries}
    tmp = folder / f".{MARKER}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    tmp.write_text(json.dumps(doc, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, folder / MARKER)


def _marker(folder: Path) -> dict | None:
    """The marker in ``folder`` if it verifies for this very folder (see the module docstring)."""
    path = Path(folder) / MARKER
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MARKER_MAX_BYTES:
            return None
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or doc.get("format") != _MARKER_FORMAT:
            return None
        if doc.get("folder") != _identity(folder):
            return None
    except (OSError, ValueError, RecursionError):
        return None
    return doc


def owns(folder: Path, command: str) -> bool:
    """Whether ``folder`` is ``command``'s own output: a verified marker of that command, and (for a
    folder written in one go) no entry the command did not put there."""
    doc = _marker(folder)
    if doc is None or doc.get("command") != command:
        return False
    entries = doc.get("entries")
    if entries is None:
        return True
    if not isinstance(entries, list):
        return False
    try:
        present = {p.name for p in Path(folder).iterdir()} - {MARKER, LOCK_FILE}
    except OSError:
        return False
    return present <= set(entries)


def unfinished_run_removable(run_dir: Path, command: str) -> str | None:
    """Why the run folder ``run_dir`` may NOT be deleted for a rerun by ``command``, or None when it may:
    it must carry ``command``'s marker and hold only what a training run writes."""
    if not owns(run_dir, command):
        return f"it carries no marker of {command} (written by hand, copied, or by an older jepagolf)"
    extra = []
    for p in sorted(Path(run_dir).iterdir()):
        if p.name in RUN_WRITES or p.name.startswith(RUN_WRITE_PREFIXES) or (p.name.startswith(".") and
                                                                             p.name.endswith(".tmp")):
            continue
        extra.append(p.name)
    if extra:
        return f"it holds files a training run does not write ({', '.join(extra[:3])})"
    return None


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


def _writable(path: Path) -> bool:
    """Whether this process may create and delete entries in the folder ``path``. ``os.access`` asks
    the kernel, so a read-only filesystem is caught for root too (the permission bits alone are not)."""
    return os.access(path, os.W_OK | os.X_OK)


def require_writable(out: Path, what: str = "output folder") -> None:
    """Refuse, before any long work, an output that could not be written when the work is done: ``out``
    itself where it is an existing folder (commands that add to it, or clear it to replace it) and the
    nearest existing folder above it (where a new folder, or the hidden sibling that replaces it, is made)."""
    out = Path(out)
    checks = [out] if out.is_dir() else []
    checks += [next(p for p in out.absolute().parents if p.exists())]
    for folder in checks:
        if not _writable(folder):
            raise OutputError(f"{what} {out} cannot be written: {folder} is read-only or not writable by this user; "
                              "choose another place")


def check_output_dir(
    out: Path,
    *,
    command: str,
    overwrite: bool,
    inputs: Iterable[Path] = (),
    own_needs_overwrite: bool = False,
    flag: str = "--overwrite",
) -> bool:
    """Whether ``out`` holds something that the command's new output will replace; raises
    :class:`OutputError` when it may not (see the module docstring). ``command`` names it in messages
    and in its marker (:func:`owns`); ``inputs`` are the paths it reads."""
    out = Path(out)
    resolved = out.resolve()
    for inp in inputs:
        # Before anything else: an output inside an input is refused even when it does not exist yet.
        if _related(resolved, Path(inp).resolve()):
            raise OutputError(f"output folder {out} overlaps the input {inp} ({command} never writes into or "
                              "above what it reads): choose another output folder")
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a folder; choose a folder for the output")
    require_writable(out)
    if not out.exists() or _is_empty_dir(out):
        return False
    why = _protected(resolved)
    if why is not None:
        raise OutputError(f"output folder {out} is {why} and holds files; {command} never replaces it: "
                          "choose a new folder")
    if is_run_folder(out):
        raise OutputError(f"output folder {out} is a training run folder; {command} never replaces it: "
                          "choose another output folder")
    own = owns(out, command)
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
    require_writable(out, "output file")


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
