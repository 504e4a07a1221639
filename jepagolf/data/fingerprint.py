"""A content fingerprint of a dataset's shards, cheap enough to take at every resume.

Names and sizes say nothing about the tokens: a folder rebuilt with another tokenizer or other
documents can have shards of the same names and sizes. Hashing every byte is exact but too slow to
repeat at each resume on FineWeb (80 train shards of 200 MB: 16 GB). So each shard is fingerprinted
by sha256 over its size, its first SAMPLE_BYTES (the header and the first tokens) and its last
SAMPLE_BYTES, which covers a shard of up to 2 * SAMPLE_BYTES completely, plus the sha256 of the
whole file that the dataset's jepagolf ``manifest.json`` records for it, when there is one (written
once when the dataset was built, so it costs nothing to read). What it misses: tokens changed only in
the middle of a large shard whose folder has no manifest (or a stale one).

The tokenizer is part of the data: shards of the same tokens mean other bytes under another
tokenizer of the same size, so val_bpb changes. ``tokenizer_sha256`` hashes its whole file (a
SentencePiece model is small); it enters the resume fingerprint, the run's summary.json and the
checks of ``eval`` and ``export``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jepagolf.jsonfile import read_json_object

SAMPLE_BYTES = 1 << 20
_MAX_MANIFEST_BYTES = 16 << 20


def manifest_hashes(data_dir: Path) -> dict[str, str]:
    """File name -> sha256 from the folder's jepagolf manifest.json; empty if there is none or it is
    unreadable (the fingerprint then rests on the sampled bytes alone)."""
    path = Path(data_dir) / "manifest.json"
    try:
        manifest = read_json_object(path, _MAX_MANIFEST_BYTES)  # bounded; a FIFO refused, not read
        files = manifest["files"] if manifest.get("format") == "jepagolf-corpus" else {}
        return {name: e["sha256"] for name, e in files.items()
                if isinstance(e, dict) and isinstance(e.get("sha256"), str)}
    except (OSError, ValueError, RecursionError, KeyError, TypeError, AttributeError):
        return {}


def shard_fingerprint(path: Path, manifest_sha256: str | None = None) -> str:
    """sha256 (hex, 16 digits) over the shard's size, first and last SAMPLE_BYTES, and its manifest hash."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        h.update(size.to_bytes(8, "little"))
        h.update(f.read(SAMPLE_BYTES))
        if size > SAMPLE_BYTES:
            f.seek(max(SAMPLE_BYTES, size - SAMPLE_BYTES))
            h.update(f.read(SAMPLE_BYTES))
    h.update((manifest_sha256 or "").encode())
    return h.hexdigest()[:16]


def dataset_fingerprint(paths: Sequence[Path]) -> list[list[Any]]:
    """[name, size, fingerprint] of each shard, in order (the manifest is looked up beside each)."""
    manifests: dict[Path, dict[str, str]] = {}
    out = []
    for p in map(Path, paths):
        hashes = manifests.setdefault(p.parent, manifest_hashes(p.parent))
        out.append([p.name, p.stat().st_size, shard_fingerprint(p, hashes.get(p.name))])
    return out


def tokenizer_sha256(path: Path) -> str:
    """sha256 (hex) of the whole tokenizer file, read in 1 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
