"""Validate a dataset folder end to end and describe it: ``jepagolf data check DIR``.

Every shard of both splits is read once, in blocks (a 100M-token shard is never in memory
whole), and checked for:

- header magic and version, and file size = 1024 + 2n (``read_header``);
- every token id < the tokenizer's vocab size;
- consecutive shard numbers from 000000 in each split, and a BOS (id 1) first in each split;
- when the folder has a jepagolf manifest: each listed file's size and sha256, and the
  per-split token and document counts; in the challenge layout
  (``<root>/datasets/<name>/`` with ``<root>/manifest.json``): each shard's token count
  against the published counts.

It reports, per split: shards, tokens, documents (BOS count), scored bytes per token (the
val_bpb denominator, DESIGN section 5) and the share of byte-fallback tokens (text the
tokenizer had no piece for). Problems are collected, not raised, so one run lists them all.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jepagolf.data.bytes import build_byte_tables
from jepagolf.data.dataset import _find_tokenizer
from jepagolf.data.errors import DataError
from jepagolf.data.shards import HEADER_BYTES, TOKEN_DTYPE, ShardError, read_header
from jepagolf.data.tokenizer import BOS_ID, load_tokenizer
from jepagolf.jsonfile import JsonFileError, read_json_object

SPLITS = ("train", "val")
_BLOCK_TOKENS = 1 << 22  # 8 MB of tokens per read


@dataclass
class SplitReport:
    shards: int = 0
    tokens: int = 0
    documents: int = 0
    scored_bytes: int = 0
    byte_fallback: int = 0

    @property
    def bytes_per_token(self) -> float:
        return self.scored_bytes / self.tokens if self.tokens else 0.0

    @property
    def byte_fallback_fraction(self) -> float:
        return self.byte_fallback / self.tokens if self.tokens else 0.0


@dataclass
class CheckReport:
    data_dir: Path
    tokenizer: Path
    vocab_size: int
    splits: dict[str, SplitReport] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        out = [f"data: {self.data_dir} tokenizer: {self.tokenizer} (vocab {self.vocab_size})"]
        for split, r in self.splits.items():
            out.append(
                f"{split}: {r.shards} shard(s), {r.tokens:,} tokens, {r.documents:,} documents, "
                f"{r.bytes_per_token:.3f} bytes/token, byte-fallback {100 * r.byte_fallback_fraction:.3f}% of tokens"
            )
        return out


class _SplitScan:
    """Running statistics over one split's tokens, carried across blocks and shards."""

    def __init__(self, vocab: int, base: np.ndarray, space: np.ndarray, boundary: np.ndarray,
                 byte_piece: np.ndarray) -> None:
        self.vocab, self.base, self.space, self.boundary, self.byte_piece = vocab, base, space, boundary, byte_piece
        self.report = SplitReport()
        self.prev: int | None = None  # last token seen, the context of the next one

    def add(self, block: np.ndarray) -> tuple[int, int] | None:
        """Account one block; return (offset in block, id) of the first out-of-vocab token, if any."""
        if len(block) == 0:
            return None
        top = int(block.max())
        if top >= self.vocab:
            pos = int(np.flatnonzero(block >= self.vocab)[0])
            return pos, int(block[pos])
        r = self.report
        r.tokens += len(block)
        r.documents += int(np.count_nonzero(block == BOS_ID))
        r.byte_fallback += int(np.count_nonzero(self.byte_piece[block]))
        # Bytes of every predicted token: all but the split's very first (eval predicts y from x).
        tgt = block if self.prev is not None else block[1:]
        prev = np.concatenate(([self.prev], block[:-1])) if self.prev is not None else block[:-1]
        r.scored_bytes += int(self.base[tgt].sum() + np.count_nonzero(self.space[tgt] & ~self.boundary[prev]))
        self.prev = int(block[-1])
        return None


def _jepagolf_manifest(data_dir: Path, problems: list[str]) -> dict[str, Any] | None:
    """The folder's jepagolf manifest.json, or None when there is none (or it is another tool's); one that
    cannot be read (over 4 MiB, nested too deeply, not JSON) or whose file list is malformed is a problem,
    not silently skipped: the shards would go unchecked against it."""
    path = data_dir / "manifest.json"
    if not path.exists():
        return None
    try:
        manifest = read_json_object(path)  # bounded; a FIFO refused, not read
    except (OSError, JsonFileError) as e:
        problems.append(f"{e if isinstance(e, JsonFileError) else f'{path}: {e.strerror}'}; the shards cannot be "
                        "checked against it")
        return None
    if manifest.get("format") != "jepagolf-corpus":
        return None
    files = manifest.get("files", {})
    splits = manifest.get("splits", {})
    if not isinstance(files, dict) or not all(isinstance(e, dict) for e in files.values()) or not isinstance(
            splits, dict) or not all(isinstance(e, dict) for e in splits.values()):
        problems.append(f"{path}: malformed jepagolf manifest ('files' must map names to entries, 'splits' "
                        "to counts); the shards cannot be checked against it")
        return None
    return manifest


def _challenge_expectations(data_dir: Path) -> dict[str, int]:
    """Expected token count per shard name from the challenge manifest two levels up, if any."""
    from jepagolf.data.fineweb import expected_shard_tokens

    try:
        manifest = read_json_object(data_dir.parent.parent / "manifest.json")
        entry = next(e for e in manifest["datasets"] if isinstance(e, dict) and e.get("name") == data_dir.name)
        stats = entry["stats"]
    except (OSError, ValueError, KeyError, TypeError, StopIteration):  # JsonFileError is a ValueError
        return {}
    expected = {}
    for split in SPLITS:
        files = stats.get(f"files_{split}")
        if not isinstance(files, int):
            continue
        for i, n in enumerate(expected_shard_tokens(files, stats.get(f"tokens_{split}"), manifest.get("shard_size"))):
            if n is not None:
                expected[f"fineweb_{split}_{i:06d}.bin"] = n
    return expected


def check_dataset(
    data_dir: str | Path, tokenizer: str | Path | None = None, say: Callable[[str], None] | None = None
) -> CheckReport:
    """Check every shard of ``data_dir`` against ``tokenizer`` (default: the dataset's own)."""
    data_dir = Path(data_dir)
    say = say or (lambda msg: None)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: not a folder")
    tok = Path(tokenizer) if tokenizer else _find_tokenizer(data_dir)
    if tok is None:
        raise DataError(f"{data_dir}: no tokenizer.model here nor in ../../tokenizers/; pass --tokenizer FILE")
    try:
        sp = load_tokenizer(tok)
    except ValueError as e:
        raise DataError(str(e)) from e
    vocab = sp.vocab_size()
    tables = build_byte_tables(sp, vocab)
    byte_piece = np.array([sp.is_byte(i) for i in range(vocab)], dtype=bool)
    report = CheckReport(data_dir=data_dir, tokenizer=tok, vocab_size=vocab)
    problems = report.problems
    manifest = _jepagolf_manifest(data_dir, problems)
    listed: dict[str, Any] = manifest.get("files", {}) if manifest else {}
    expected_tokens = _challenge_expectations(data_dir)

    for split in SPLITS:
        paths = sorted(p for p in data_dir.glob(f"*_{split}_*.bin") if p.is_file())
        scan = _SplitScan(vocab, tables.base_bytes.astype(np.int64), tables.leading_space, tables.is_boundary,
                          byte_piece)
        report.splits[split] = scan.report
        if not paths:
            problems.append(f"{data_dir}: no {split} shards (<prefix>_{split}_NNNNNN.bin)")
            continue
        numbers = [m.group(1) for p in paths if (m := re.search(r"_(\d+)\.bin$", p.name))]
        want = [f"{i:06d}" for i in range(len(paths))]
        if numbers != want:
            problems.append(f"{data_dir}: {split} shards are not numbered 000000..{len(paths) - 1:06d} "
                            f"without gaps (found {', '.join(numbers[:6])}{' ...' if len(numbers) > 6 else ''})")
        for i, path in enumerate(paths, 1):
            say(f"[{split} {i}/{len(paths)}] {path.name}")
            problem = _check_shard(path, scan, listed.get(path.name), expected_tokens.get(path.name))
            if problem:
                problems.append(problem)
            elif i == 1 and scan.report.tokens and _first_token(path) != BOS_ID:
                problems.append(f"{path}: the split does not start with BOS (id {BOS_ID}); every document "
                                "must be preceded by BOS")
        scan.report.shards = len(paths)
        if scan.report.tokens < 2 and not any(str(p) in q for p in paths for q in problems):
            # `train` refuses such a split (nothing to predict); check must not call it ok.
            problems.append(f"{data_dir}: the {split} split holds {scan.report.tokens} token(s) in {len(paths)} "
                            "shard(s); training needs at least 2 (a token and its successor) in each split")
        if manifest and not problems:
            _check_manifest_counts(manifest, split, scan.report, problems, data_dir)
    if manifest:
        for name, entry in listed.items():
            if not (data_dir / name).is_file():
                problems.append(f"{data_dir / name}: listed in manifest.json but missing")
            elif name.endswith(".model") and entry.get("sha256") != _sha256(data_dir / name):
                problems.append(f"{data_dir / name}: sha256 differs from manifest.json")
    return report


def _first_token(path: Path) -> int:
    with open(path, "rb") as f:
        f.seek(HEADER_BYTES)
        return int(np.frombuffer(f.read(2), dtype=TOKEN_DTYPE)[0])


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _check_shard(path: Path, scan: _SplitScan, listed: dict[str, Any] | None, expected: int | None) -> str | None:
    try:
        n = read_header(path)
    except ShardError as e:
        return str(e)
    if expected is not None and n != expected:
        return f"{path}: holds {n} tokens, the challenge manifest's counts imply {expected}"
    if listed is not None and listed.get("bytes") != HEADER_BYTES + 2 * n:
        return f"{path}: size {HEADER_BYTES + 2 * n} differs from manifest.json's {listed.get('bytes')}"
    h = hashlib.sha256() if listed is not None else None
    done = 0
    with open(path, "rb") as f:
        header = f.read(HEADER_BYTES)
        if h is not None:
            h.update(header)
        while done < n:
            raw = f.read(2 * min(_BLOCK_TOKENS, n - done))
            if h is not None:
                h.update(raw)
            bad = scan.add(np.frombuffer(raw, dtype=TOKEN_DTYPE))
            if bad is not None:
                pos, token = bad
                return (f"{path}: token id {token} at position {done + pos} is >= the tokenizer's vocab size "
                        f"{scan.vocab}; the shard was made with another tokenizer")
            done += len(raw) // 2
    if h is not None and h.hexdigest() != listed.get("sha256"):  # type: ignore[union-attr]
        return f"{path}: sha256 {h.hexdigest()} differs from manifest.json's (the file changed since the build)"
    return None


def _check_manifest_counts(manifest: dict[str, Any], split: str, r: SplitReport, problems: list[str],
                           data_dir: Path) -> None:
    info = manifest.get("splits", {}).get(split, {})
    info = info if isinstance(info, dict) else {}
    for key, got in (("tokens", r.tokens), ("documents", r.documents), ("scored_bytes", r.scored_bytes)):
        if key in info and info[key] != got:
            said = f"{info[key]:,}" if isinstance(info[key], int) else repr(info[key])
            problems.append(f"{data_dir}: {split} has {got:,} {key}, manifest.json says {said}")


def print_report(report: CheckReport, out: Any = None) -> None:
    out = out or sys.stdout
    for line in report.lines():
        print(line, file=out)
