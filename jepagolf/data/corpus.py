"""Documents -> tokenizer -> shards, and the offline demo corpus.

The demo corpus lets every preset train on a fresh install with no data download: it is
built from the docstrings of one pinned, sha256-checked PyPI wheel (``demo_source``),
fetched once with pip, so its text, shards and tokenizer are the same under every Python
(issue 24; until then it was the running interpreter's own documentation). Everything
about it is a pure function of the text: documents are deduplicated and sorted by content
hash, and a document goes to validation iff its salted hash falls below ``val_fraction``.

A build writes into a hidden temporary folder next to the target and renames it into
place at the end, so an interrupted build never leaves a half corpus behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sentencepiece as spm
import torch

from jepagolf.data import demo_source
from jepagolf.data.bytes import ByteTablesTorch, build_byte_tables, token_bytes
from jepagolf.data.demo_source import DEMO_PACKAGE
from jepagolf.data.errors import DataError, named_for_output
from jepagolf.data.shards import write_shard
from jepagolf.data.tokenizer import TRAINER_SETTINGS, encode_documents, load_tokenizer, train_sentencepiece
from jepagolf.jsonfile import read_json_object
from jepagolf.outputs import OutputError, check_output_dir, claim_dir, replace_dir, temp_sibling

DEMO_PREFIX = "demo"
DEMO_COMMAND = "jepagolf data demo"  # names the demo corpus's ownership marker (outputs.claim_dir)
DEMO_VOCAB_SIZE = 1024
# Recorded in every manifest. Bump when document extraction or the build changes:
# cached demo corpora of another version are rebuilt instead of silently reused.
# 2: the pinned wheel's docstrings instead of the interpreter's documentation (issue 24).
CORPUS_BUILD_VERSION = 2
# ~2.0 MB of text in 265 documents: a 20% share of documents gives ~130k validation and ~600k train tokens.
DEMO_VAL_FRACTION = 0.2
DEMO_PACKAGES_DIR = "demo-packages"  # <cache root>/demo-packages: the downloaded wheel
MIN_DOC_CHARS = 200
SHARD_TOKENS = 100_000_000
MANIFEST = "manifest.json"
TOKENIZER_FILE = "tokenizer.model"

# Salt for the split hash so that the val set is not simply a prefix of the
# hash-sorted document order.
_SPLIT_SALT = b"jepagolf-val-split\0"


@dataclass
class DatasetPaths:
    data_dir: Path
    tokenizer: Path


def default_cache_dir() -> Path:
    """``$JEPAGOLF_CACHE`` if set, else ``~/.cache/jepagolf`` (read at call time, not import)."""
    env = os.environ.get("JEPAGOLF_CACHE")
    path = Path(env).expanduser() if env else Path.home() / ".cache" / "jepagolf"
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise DataError(f"cache folder {path}{' (JEPAGOLF_CACHE)' if env else ''}: {existing} is a file, not a "
                        "folder; point JEPAGOLF_CACHE at a folder")
    return path


# ----------------------------------------------------------------------------- documents


def _text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def prepare_documents(docs: Iterable[str], min_chars: int = MIN_DOC_CHARS) -> list[str]:
    """Strip, drop short documents, deduplicate, and sort by content hash.

    Duplicates are found on whitespace-normalised text (SentencePiece's nmt_nfkc
    normalisation collapses whitespace anyway, so such copies tokenize the same); of
    a group, the lexicographically smallest text is kept, so the result does not depend
    on the input order.
    """
    kept: dict[str, str] = {}
    for doc in docs:
        text = doc.strip()
        if len(text) < min_chars:
            continue
        key = _text_hash(" ".join(text.split()))
        if key not in kept or text < kept[key]:
            kept[key] = text
    return sorted(kept.values(), key=_text_hash)


def is_val_document(text: str, val_fraction: float) -> bool:
    """Whether ``text`` belongs to the validation split: a pure function of the text."""
    digest = hashlib.sha256(_SPLIT_SALT + text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") < val_fraction * 2**64


def split_documents(docs: Sequence[str], val_fraction: float) -> tuple[list[str], list[str]]:
    """(train, val), each keeping the input order."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    train, val = [], []
    for doc in docs:
        (val if is_val_document(doc, val_fraction) else train).append(doc)
    return train, val


def collect_demo_documents(packages_dir: Path | None = None) -> tuple[list[str], dict[str, Any]]:
    """The demo corpus documents (the pinned wheel's docstrings, prepared) and the manifest's record
    of their source; the wheel is fetched into ``<cache>/demo-packages`` unless a checked copy is there."""
    packages_dir = default_cache_dir() / DEMO_PACKAGES_DIR if packages_dir is None else Path(packages_dir)
    docs, info = demo_source.wheel_documents(demo_source.ensure_wheel(packages_dir))
    docs = prepare_documents(docs)
    return docs, {**info, "documents": len(docs), "documents_sha256": documents_digest(docs)}


def documents_digest(docs: Iterable[str]) -> str:
    """sha256 of a document list (each document's UTF-8 bytes, then a NUL): the text a corpus was built from."""
    h = hashlib.sha256()
    for doc in docs:
        h.update(doc.encode("utf-8") + b"\0")
    return h.hexdigest()


# ----------------------------------------------------------------------------- building


def build_corpus(
    docs: Iterable[str],
    out_dir: Path,
    *,
    prefix: str,
    vocab_size: int,
    val_fraction: float,
    source: str,
    source_info: Mapping[str, Any] | None = None,
    min_chars: int = MIN_DOC_CHARS,
    shard_tokens: int = SHARD_TOKENS,
    progress: bool = True,
    replace: bool = True,
    command: str = DEMO_COMMAND,
) -> DatasetPaths:
    """Turn raw documents into a dataset folder: tokenizer, train/val shards, manifest.

    The tokenizer is trained on the train documents only; ``source_info`` goes into the
    manifest as ``source_package``. ``out_dir`` appears atomically, carrying ``command``'s
    ownership marker; with ``replace=False`` an ``out_dir`` that a concurrent build completed
    first is kept and this build is discarded. The caller has checked ``out_dir`` with
    ``check_output_dir``.
    """
    out_dir = Path(out_dir)
    if shard_tokens <= 0:
        raise ValueError(f"shard_tokens must be positive, got {shard_tokens}")
    say = _progress_printer(progress)
    t0 = time.perf_counter()
    docs = prepare_documents(docs, min_chars)
    train_docs, val_docs = split_documents(docs, val_fraction)
    if not train_docs or not val_docs:
        raise ValueError(
            f"{out_dir}: {len(docs)} documents of >= {min_chars} chars split into {len(train_docs)} train "
            f"and {len(val_docs)} val; both need at least one (supply more documents or change val_fraction)"
        )
    say(f"{len(train_docs)} train / {len(val_docs)} val documents, {_text_bytes(docs) / 1e6:.2f} MB of text")

    tmp_dir = temp_sibling(out_dir)
    try:
        say(f"training tokenizer (vocab {vocab_size}) on the train documents")
        try:
            tok_path = train_sentencepiece(train_docs, vocab_size, tmp_dir / Path(TOKENIZER_FILE).stem)
        except ValueError as e:  # named after the folder asked for, not the hidden one it is built in
            raise DataError(f"{out_dir}: tokenizer training (vocab {vocab_size}) failed: {e.__cause__ or e}; "
                            "use a smaller vocab size or more documents") from e
        sp = load_tokenizer(tok_path, expected_vocab=vocab_size)
        tables = build_byte_tables(sp, vocab_size).to_torch("cpu")
        splits = {}
        for split, split_docs in (("train", train_docs), ("val", val_docs)):
            tokens = encode_documents(sp, split_docs)
            shard_names = _write_split(tmp_dir, prefix, split, tokens, shard_tokens)
            splits[split] = {
                "documents": len(split_docs),
                "tokens": int(len(tokens)),
                "text_bytes": _text_bytes(split_docs),
                "scored_bytes": _scored_bytes(tokens, tables),
                "shards": shard_names,
            }
            say(f"{split}: {len(tokens):,} tokens in {len(shard_names)} shard(s)")
        manifest = {
            "format": "jepagolf-corpus",
            "version": CORPUS_BUILD_VERSION,
            "name": out_dir.name,
            "prefix": prefix,
            "source": source,
            **({"source_package": dict(source_info)} if source_info is not None else {}),
            "python_version": platform.python_version(),
            "python_implementation": platform.python_implementation(),
            "sentencepiece_version": spm.__version__,
            "vocab_size": vocab_size,
            "tokenizer": TOKENIZER_FILE,
            "settings": {
                "val_fraction": val_fraction,
                "min_doc_chars": min_chars,
                "shard_tokens": shard_tokens,
                "tokenizer": dict(TRAINER_SETTINGS, vocab_size=vocab_size),
            },
            "splits": splits,
            "files": {p.name: _file_entry(p) for p in sorted(tmp_dir.iterdir())},
        }
        (tmp_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        claim_dir(tmp_dir, command)
        _install_dir(tmp_dir, out_dir, replace=replace)
    except OSError as e:  # a failed write (disk full) names the file in out_dir, not in the hidden build folder
        if (named := named_for_output(e, tmp_dir, out_dir)) is None:
            raise
        raise named from e
    finally:
        # Gone already when installed; otherwise the build failed and the error propagates.
        shutil.rmtree(tmp_dir, ignore_errors=True)
    say(f"wrote {out_dir} in {time.perf_counter() - t0:.1f}s")
    return DatasetPaths(data_dir=out_dir, tokenizer=out_dir / TOKENIZER_FILE)


def _progress_printer(enabled: bool) -> Callable[[str], None]:
    def say(msg: str) -> None:
        if enabled:
            print(f"corpus: {msg}", file=sys.stderr, flush=True)

    return say


def _text_bytes(docs: Iterable[str]) -> int:
    return sum(len(d.encode("utf-8")) for d in docs)


def _scored_bytes(tokens: np.ndarray, tables: ByteTablesTorch) -> int:
    # The byte count val_bpb divides by (every token after the first is predicted);
    # recorded so a user can check an evaluation's denominator against the data.
    ids = torch.from_numpy(tokens.astype(np.int64))
    return int(token_bytes(ids[:-1], ids[1:], tables).sum())


def _write_split(out_dir: Path, prefix: str, split: str, tokens: np.ndarray, shard_tokens: int) -> list[str]:
    names = []
    for i, start in enumerate(range(0, len(tokens), shard_tokens)):
        name = f"{prefix}_{split}_{i:06d}.bin"
        write_shard(out_dir / name, tokens[start : start + shard_tokens])
        names.append(name)
    return names


def _file_entry(path: Path) -> dict[str, Any]:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"bytes": path.stat().st_size, "sha256": h.hexdigest()}


def _install_dir(tmp_dir: Path, out_dir: Path, *, replace: bool) -> None:
    """Rename the finished ``tmp_dir`` to ``out_dir``; an existing one (cleared by the caller's
    ``check_output_dir``, or a concurrent build's) is replaced, or kept when ``replace`` is False."""
    if not replace and corpus_is_complete(out_dir):
        return  # a concurrent process built it first; the caller's finally removes our copy
    replace_dir(tmp_dir, out_dir)


def corpus_is_complete(data_dir: Path, *, version: int | None = None, vocab_size: int | None = None) -> bool:
    """Cheap check that a built corpus is all there: manifest readable, files of the listed sizes.

    Sizes only, not hashes, so that reusing the cache costs nothing; every shard's
    header and size are checked again when it is loaded.
    """
    try:
        manifest = read_json_object(Path(data_dir) / MANIFEST)
        if version is not None and manifest.get("version") != version:
            return False
        if vocab_size is not None and manifest.get("vocab_size") != vocab_size:
            return False
        files = manifest["files"]
        return bool(files) and all(
            (Path(data_dir) / name).stat().st_size == entry["bytes"] for name, entry in files.items()
        )
    except (OSError, ValueError, RecursionError, KeyError, TypeError, AttributeError):
        # Missing or malformed pieces mean "not complete"; the caller rebuilds.
        return False


# ----------------------------------------------------------------------------- the demo corpus


def demo_source_description() -> str:
    return demo_source.describe()


def build_demo_corpus(
    out_dir: Path,
    vocab_size: int = DEMO_VOCAB_SIZE,
    progress: bool = True,
    *,
    shard_tokens: int = SHARD_TOKENS,
    replace: bool = True,
    packages_dir: Path | None = None,
) -> DatasetPaths:
    """Build the demo corpus into ``out_dir`` (see ``build_corpus`` for ``replace``); takes seconds once the
    wheel is in ``packages_dir`` (default ``<cache>/demo-packages``)."""
    say = _progress_printer(progress)
    t0 = time.perf_counter()
    docs, info = collect_demo_documents(packages_dir)
    say(f"collected {len(docs)} module documents from {DEMO_PACKAGE.filename} in {time.perf_counter() - t0:.1f}s")
    return build_corpus(
        docs,
        out_dir,
        prefix=DEMO_PREFIX,
        vocab_size=vocab_size,
        val_fraction=DEMO_VAL_FRACTION,
        source=demo_source_description(),
        source_info=info,
        shard_tokens=shard_tokens,
        progress=progress,
        replace=replace,
    )


def demo_cache_dir(cache_dir: Path | None = None) -> Path:
    """``<cache>/demo-v2_sp1024``: the folder names the corpus build version, so a cache of another version
    (an older jepagolf's, which carries no ownership marker) is left alone rather than refused or replaced."""
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
    return cache_dir / f"{DEMO_PREFIX}-v{CORPUS_BUILD_VERSION}_sp{DEMO_VOCAB_SIZE}"


def ensure_demo_corpus(cache_dir: Path | None = None, *, progress: bool = True) -> DatasetPaths:
    """The demo corpus in ``demo_cache_dir(cache_dir)``, built on first use and reused afterwards."""
    out_dir = demo_cache_dir(cache_dir)
    # The vocab check catches a folder rebuilt by hand with another vocab_size.
    if corpus_is_complete(out_dir, version=CORPUS_BUILD_VERSION, vocab_size=DEMO_VOCAB_SIZE):
        return DatasetPaths(data_dir=out_dir, tokenizer=out_dir / TOKENIZER_FILE)
    try:
        check_output_dir(out_dir, command=DEMO_COMMAND, overwrite=False)
    except OutputError:
        raise DataError(f"cache folder {out_dir} holds files that are not a demo corpus written by jepagolf (it "
                        "replaces only what carries its marker; a corpus of an older jepagolf carries none): move "
                        "them away, or delete the folder to have it rebuilt") from None
    _progress_printer(progress)(f"building the offline demo corpus in {out_dir} (first use)")
    # Several processes (DDP ranks) may build at once; keep whichever finished first.
    return build_demo_corpus(out_dir, progress=progress, replace=False)
