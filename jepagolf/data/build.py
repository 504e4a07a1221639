"""Turn a corpus of your own (text, JSONL, Parquet) into a dataset folder like the challenge's.

``build_dataset`` streams the inputs twice and never holds the corpus in memory:

1. tokenizer pass (skipped when a tokenizer is given): train documents are sampled by a
   hash of their text, at a rate that spreads a byte budget over the whole corpus, and fed
   to SentencePiece (DESIGN section 5 settings) as they are read; the sample is all the
   trainer holds, so its memory is bounded by the budget, not by the corpus;
2. encoding pass: documents go in batches to a pool of worker processes (all cores) and
   come back in order; each split's tokens are appended to its shard file as they arrive.

FineWeb conventions: every document is preceded by BOS (id 1), no EOS; validation
documents are written to their own shards (``<prefix>_val_NNNNNN.bin``) and train documents
to theirs, each split in input order, shards filled to ``shard_tokens`` (100M by default)
with documents running across shard boundaries, as the challenge's exporter does. The
split is a pure function of the input: the first ``val_docs`` documents, or each document
whose salted hash falls below ``val_fraction`` (the same rule as the demo corpus).

The folder is built under a hidden temporary name next to ``out_dir`` and renamed into
place at the end, with ``tokenizer.model`` beside the shards and a ``manifest.json``
recording the inputs, settings, per-split counts and the size and sha256 of every file.
The same inputs and settings give byte-identical files whatever the number of workers.

One module, ~600 lines, because the two passes, the worker pool and the atomic folder swap are one
pipeline whose failure paths (a worker's death, a full disk, an interrupt) must be read together.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import platform
import re
import shutil
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sentencepiece as spm

from jepagolf.data.bytes import build_byte_tables
from jepagolf.data.corpus import (
    CORPUS_BUILD_VERSION,
    MANIFEST,
    SHARD_TOKENS,
    TOKENIZER_FILE,
    _file_entry,
    is_val_document,
)
from jepagolf.data.documents import DocumentReader, discover_inputs
from jepagolf.data.errors import InputError, named_for_output
from jepagolf.data.shards import HEADER_BYTES, HEADER_DTYPE, SHARD_MAGIC, SHARD_VERSION, TOKEN_DTYPE, read_header
from jepagolf.data.tokenizer import BOS_ID, TRAINER_SETTINGS, load_tokenizer, train_sentencepiece
from jepagolf.outputs import check_output_dir, claim_dir, replace_dir, temp_sibling

BUILDER = "jepagolf data build"  # in the manifest, and the command its ownership marker names
DEFAULT_PREFIX = "fineweb"  # the challenge's train_gpt.py globs fineweb_{train,val}_*.bin
DEFAULT_VAL_FRACTION = 0.05
DEFAULT_TOKENIZER_SAMPLE_MB = 100.0
# A batch of documents for one worker task: big enough to amortise the inter-process
# copy, small enough that a few in flight per worker stay a few MB.
BATCH_CHARS = 1 << 20
BATCH_DOCS = 4096
IN_FLIGHT_PER_WORKER = 2
PROGRESS_EVERY_S = 5.0
MANIFEST_MAX_INPUTS = 1000
_SAMPLE_SALT = b"jepagolf-tokenizer-sample\0"


@dataclass(frozen=True)
class SplitRule:
    """Which documents are validation: the first ``val_docs``, or a hash-chosen ``val_fraction``."""

    val_docs: int | None = None
    val_fraction: float | None = None

    def __post_init__(self) -> None:
        if (self.val_docs is None) == (self.val_fraction is None):
            raise InputError("give exactly one of val_docs and val_fraction")
        if self.val_docs is not None and self.val_docs < 1:
            raise InputError(f"val_docs must be >= 1, got {self.val_docs}")
        if self.val_fraction is not None and not 0.0 < self.val_fraction < 1.0:
            raise InputError(f"val_fraction must be in (0, 1), got {self.val_fraction}")

    def is_val(self, index: int, text: str) -> bool:
        if self.val_docs is not None:
            return index < self.val_docs
        return is_val_document(text, self.val_fraction)  # type: ignore[arg-type]

    def describe(self) -> dict[str, Any]:
        return {"val_docs": self.val_docs} if self.val_docs is not None else {"val_fraction": self.val_fraction}


@dataclass
class SplitStats:
    documents: int = 0
    tokens: int = 0
    text_bytes: int = 0
    scored_bytes: int = 0

    def add(self, other: SplitStats) -> None:
        self.documents += other.documents
        self.tokens += other.tokens
        self.text_bytes += other.text_bytes
        self.scored_bytes += other.scored_bytes


@dataclass
class EncodedBatch:
    """One batch's tokens per split (BOS-separated documents, uint16) and their counts."""

    tokens: dict[str, np.ndarray]
    stats: dict[str, SplitStats]


@dataclass
class BuildResult:
    data_dir: Path
    tokenizer: Path
    splits: dict[str, SplitStats]
    shards: dict[str, list[str]]
    input_bytes: int
    skipped_documents: int
    tokenizer_sample_bytes: int
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def text_mb_per_s(self) -> float:
        return self.input_bytes / 1e6 / max(self.seconds, 1e-9)


# ----------------------------------------------------------------------------- encoding


class _Encoder:
    """SentencePiece plus the byte tables, to encode a batch and count its scored bytes."""

    def __init__(self, model_proto: bytes) -> None:
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
        tables = build_byte_tables(self.sp, self.sp.vocab_size())
        self.base = tables.base_bytes.astype(np.int64)
        self.space = tables.leading_space
        self.boundary = tables.is_boundary

    def encode(self, texts: list[str], is_val: list[bool]) -> EncodedBatch:
        tokens, stats = {}, {}
        for split, want in (("val", True), ("train", False)):
            docs = [t for t, v in zip(texts, is_val, strict=True) if v == want]
            # One thread: the parallelism is the worker processes, which also share the Python work.
            ids = self.sp.encode(docs, out_type=int, num_threads=1) if docs else []
            arr = np.empty(sum(len(x) + 1 for x in ids), dtype=TOKEN_DTYPE)
            pos = 0
            for x in ids:
                arr[pos] = BOS_ID
                arr[pos + 1 : pos + 1 + len(x)] = x
                pos += 1 + len(x)
            tokens[split] = arr
            stats[split] = SplitStats(
                documents=len(docs),
                tokens=len(arr),
                text_bytes=sum(len(t.encode("utf-8")) for t in docs),
                scored_bytes=self._scored_bytes(arr),
            )
        return EncodedBatch(tokens, stats)

    def _scored_bytes(self, arr: np.ndarray) -> int:
        # Every document starts with BOS, a 0-byte boundary, so a batch's bytes do not depend
        # on what precedes it: the split's total is the sum over batches (DESIGN section 5).
        if len(arr) < 2:
            return 0
        prev, tgt = arr[:-1], arr[1:]
        return int(self.base[tgt].sum() + np.count_nonzero(self.space[tgt] & ~self.boundary[prev]))


_WORKER_ENCODER: _Encoder | None = None


def _init_worker(model_proto: bytes) -> None:
    global _WORKER_ENCODER
    _WORKER_ENCODER = _Encoder(model_proto)


def _encode_in_worker(texts: list[str], is_val: list[bool]) -> EncodedBatch:
    assert _WORKER_ENCODER is not None, "worker not initialised"
    return _WORKER_ENCODER.encode(texts, is_val)


def encode_batches(
    batches: Iterable[tuple[list[str], list[bool]] | tuple[list[str], list[bool], str]], model_proto: bytes,
    workers: int,
) -> Iterator[EncodedBatch]:
    """Encode batches on ``workers`` processes, yielding results in input order.

    At most IN_FLIGHT_PER_WORKER batches per worker are submitted ahead of the one being
    consumed (``Pool.imap`` would let its feeder thread read ahead without bound, and a slow
    consumer would let finished results pile up), so memory stays a few batches whatever
    the corpus size. A worker that dies (killed, out of memory, a crash in SentencePiece) breaks
    the pool at once: the build stops with an InputError naming ``where()``, the input file(s) of
    the batches in flight (a batch's optional third item), instead of waiting forever for a result
    that will not come.
    """
    if workers <= 1:
        encoder = _Encoder(model_proto)
        for texts, is_val, *_ in batches:
            yield encoder.encode(texts, is_val)
        return
    # fork where available: the workers start at once, sharing the loaded modules; the
    # parent has no helper threads at this point (SentencePiece training has finished).
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(model_proto,))
    pending: deque[tuple[Future[EncodedBatch], str]] = deque()
    try:
        for texts, is_val, *where in batches:
            pending.append((pool.submit(_encode_in_worker, texts, is_val), where[0] if where else "the inputs"))
            if len(pending) > IN_FLIGHT_PER_WORKER * workers:
                yield _result(*pending.popleft(), pending)
        while pending:
            yield _result(*pending.popleft(), pending)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _result(future: Future[EncodedBatch], where: str, later: deque[tuple[Future[EncodedBatch], str]]) -> EncodedBatch:
    try:
        return future.result()
    except BrokenProcessPool as e:
        # Which batch killed its worker is unknown: every batch in flight fails at once. Name their files.
        files = ", ".join(dict.fromkeys([where, *(w for _, w in later)]))
        raise InputError(
            f"an encoding worker process died (killed, or out of memory) while encoding documents of {files}; "
            "rerun with --workers 1 to see the failure in this process"
        ) from e


def _document_batches(
    reader: DocumentReader, rule: SplitRule
) -> Iterator[tuple[list[str], list[bool], str]]:
    """Batches of documents with their split flags and the input file(s) they come from."""
    texts: list[str] = []
    flags: list[bool] = []
    files: dict[str, None] = {}
    chars = 0
    for index, doc in enumerate(reader):
        texts.append(doc)
        flags.append(rule.is_val(index, doc))
        files[str(reader.current.path) if reader.current else "?"] = None
        chars += len(doc)
        if chars >= BATCH_CHARS or len(texts) >= BATCH_DOCS:
            yield texts, flags, ", ".join(files)
            texts, flags, files, chars = [], [], {}, 0
    if texts:
        yield texts, flags, ", ".join(files)


# ----------------------------------------------------------------------------- shards


class ShardWriter:
    """Append tokens to ``<prefix>_<split>_NNNNNN.bin`` shards of ``shard_tokens`` tokens each.

    Tokens go straight to disk behind a placeholder header; when a shard is full (or at
    ``close``) its header is written, the file is fsynced and renamed to its final name. A
    split that receives no tokens gets no shard.
    """

    def __init__(self, out_dir: Path, prefix: str, split: str, shard_tokens: int) -> None:
        if shard_tokens <= 0:
            raise InputError(f"shard_tokens must be positive, got {shard_tokens}")
        self.out_dir, self.prefix, self.split, self.shard_tokens = out_dir, prefix, split, shard_tokens
        self.names: list[str] = []
        self._file: Any = None
        self._partial: Path | None = None
        self._count = 0

    def write(self, tokens: np.ndarray) -> None:
        tokens = np.asarray(tokens)
        if tokens.dtype != TOKEN_DTYPE:
            raise TypeError(f"ShardWriter takes {TOKEN_DTYPE} tokens, got {tokens.dtype}")
        pos = 0
        while pos < len(tokens):
            if self._file is None:
                self._open()
            take = min(self.shard_tokens - self._count, len(tokens) - pos)
            self._file.write(memoryview(tokens[pos : pos + take]))
            self._count += take
            pos += take
            if self._count == self.shard_tokens:
                self._finish()

    def close(self) -> list[str]:
        if self._file is not None:
            self._finish()
        return self.names

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._partial is not None:
            self._partial.unlink(missing_ok=True)

    def _open(self) -> None:
        name = f"{self.prefix}_{self.split}_{len(self.names):06d}.bin"
        self._partial = self.out_dir / f".{name}.partial"
        self._file = open(self._partial, "xb")  # noqa: SIM115 - closed in _finish / abort
        self._file.write(b"\0" * HEADER_BYTES)
        self._count = 0

    def _finish(self) -> None:
        header = np.zeros(HEADER_BYTES // 4, dtype=HEADER_DTYPE)
        header[:3] = [SHARD_MAGIC, SHARD_VERSION, self._count]
        self._file.seek(0)
        self._file.write(header.tobytes())
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        name = f"{self.prefix}_{self.split}_{len(self.names):06d}.bin"
        final = self.out_dir / name
        os.replace(self._partial, final)  # type: ignore[arg-type]
        self._partial = None
        if read_header(final) != self._count:  # cheap self-check of what was just written
            raise AssertionError(f"{final}: header does not match the {self._count} tokens written")
        self.names.append(name)


# ----------------------------------------------------------------------------- progress


class _Progress:
    def __init__(self, enabled: bool, total_bytes: int) -> None:
        self.enabled, self.total = enabled, max(total_bytes, 1)
        self.t0 = self.last = time.perf_counter()
        self.phase = ""

    def say(self, msg: str) -> None:
        if self.enabled:
            print(f"build: {msg}", file=sys.stderr, flush=True)

    def start(self, phase: str) -> None:
        self.phase, self.t0 = phase, time.perf_counter()
        self.last = self.t0

    def update(self, done_bytes: int, extra: str, force: bool = False) -> None:
        now = time.perf_counter()
        if not self.enabled or (not force and now - self.last < PROGRESS_EVERY_S):
            return
        self.last = now
        dt = max(now - self.t0, 1e-9)
        rate = done_bytes / 1e6 / dt
        pct = 100.0 * min(done_bytes, self.total) / self.total
        eta = (self.total - done_bytes) / 1e6 / rate if rate > 0 and done_bytes < self.total else 0.0
        self.say(f"{self.phase}: {done_bytes / 1e6:,.1f}/{self.total / 1e6:,.1f} MB ({pct:.0f}%), "
                 f"{rate:.1f} MB/s, {extra}, eta {eta:.0f}s")


# ----------------------------------------------------------------------------- tokenizer


class _TokenizerSample:
    """Train documents for the tokenizer: a hash-chosen share of them, up to a byte budget."""

    def __init__(self, reader: DocumentReader, rule: SplitRule, budget_bytes: int, progress: _Progress) -> None:
        self.reader, self.rule, self.budget, self.progress = reader, rule, budget_bytes, progress
        # Spread the budget over the whole corpus: sampling only its beginning would fit
        # the vocabulary to whatever the first files are about.
        self.rate = min(1.0, budget_bytes / max(reader.total_bytes, 1))
        self.documents = 0
        self.bytes = 0

        # SentencePiece pulls this iterator from C++ and turns any exception into a RuntimeError
        # with the traceback in its text; so an error stops the iteration and is kept here, to
        # be raised as itself once the trainer returns.
        self.error: BaseException | None = None

    def __iter__(self) -> Iterator[str]:
        try:
            yield from self._sample()
        except BaseException as e:  # re-raised by _train_tokenizer, never dropped
            self.error = e

    def _sample(self) -> Iterator[str]:
        threshold = int(self.rate * 2**64)
        for index, doc in enumerate(self.reader):
            if self.rule.is_val(index, doc):
                continue
            data = doc.encode("utf-8")
            if self.rate < 1.0:
                digest = hashlib.blake2b(data, digest_size=8, key=_SAMPLE_SALT[:16]).digest()
                if int.from_bytes(digest, "big") >= threshold:
                    continue
            self.documents += 1
            self.bytes += len(data)
            yield doc
            self.progress.update(self.reader.bytes_read, f"{self.bytes / 1e6:.1f} MB sampled")
            if self.bytes >= self.budget:
                return


# ----------------------------------------------------------------------------- the build


def build_dataset(
    inputs: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    vocab_size: int | None = None,
    val_docs: int | None = None,
    val_fraction: float | None = None,
    tokenizer: str | os.PathLike[str] | None = None,
    blank_line_docs: bool = False,
    text_field: str = "text",
    input_format: str = "auto",
    prefix: str = DEFAULT_PREFIX,
    shard_tokens: int = SHARD_TOKENS,
    min_chars: int = 1,
    workers: int | None = None,
    tokenizer_sample_mb: float = DEFAULT_TOKENIZER_SAMPLE_MB,
    overwrite: bool = False,
    progress: bool = True,
) -> BuildResult:
    """Build a dataset folder from ``inputs``; see the module docstring.

    Give at most one of ``val_docs`` / ``val_fraction`` (default: val_fraction 0.05). With
    ``tokenizer``, that SentencePiece model is reused (and copied beside the shards) instead
    of training one; ``vocab_size``, if given, must then match it.
    """
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    if val_docs is None and val_fraction is None:
        val_fraction = DEFAULT_VAL_FRACTION
    rule = SplitRule(val_docs=val_docs, val_fraction=val_fraction)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]*", prefix):
        # No "_": the split is read back from the name as <prefix>_<split>_NNNNNN.bin.
        raise InputError(f"prefix {prefix!r} must be letters, digits, '.' or '-' (like 'fineweb')")
    if shard_tokens <= 0:
        raise InputError(f"shard_tokens must be positive, got {shard_tokens}")
    if vocab_size is not None and not 260 <= vocab_size <= 65536:
        raise InputError(
            f"vocab_size {vocab_size} is out of range: byte fallback needs >= 260 pieces (256 bytes + 4 "
            "specials) and uint16 shards allow <= 65536"
        )
    if tokenizer_sample_mb <= 0:
        raise InputError(f"tokenizer_sample_mb must be positive, got {tokenizer_sample_mb}")
    workers = max(1, workers if workers is not None else (os.cpu_count() or 1))
    inputs = list(inputs)
    check_output_dir(out_dir, command=BUILDER, overwrite=overwrite, own_needs_overwrite=True,
                     inputs=[Path(p) for p in inputs])
    files = discover_inputs(inputs, input_format)
    reader = DocumentReader(files, text_field=text_field, blank_line_docs=blank_line_docs, min_chars=min_chars)
    prog = _Progress(progress, reader.total_bytes)
    prog.say(f"{len(files)} input file(s), {reader.total_bytes / 1e6:,.1f} MB; "
             + ", ".join(f"{k} {v}" for k, v in rule.describe().items()) + f"; {workers} encoding worker(s)")

    tmp_dir = temp_sibling(out_dir)
    timings: dict[str, float] = {}
    try:
        # ----- pass 1: the tokenizer
        t0 = time.perf_counter()
        tok_path = tmp_dir / TOKENIZER_FILE
        if tokenizer is not None:
            sp, tok_settings = _reuse_tokenizer(Path(tokenizer), vocab_size, tok_path)
            sample = None
        else:
            vocab_size = vocab_size or 1024
            sample = _TokenizerSample(reader, rule, int(tokenizer_sample_mb * 1e6), prog)
            prog.start("tokenizer sample")
            prog.say(f"training the tokenizer (vocab {vocab_size}) on up to {tokenizer_sample_mb:g} MB of "
                     f"train documents, sampling rate {sample.rate:.3f}")
            sp = _train_tokenizer(sample, vocab_size, tok_path)
            tok_settings = dict(TRAINER_SETTINGS, vocab_size=vocab_size, sample_documents=sample.documents,
                                sample_bytes=sample.bytes, sample_rate=sample.rate,
                                sample_budget_bytes=int(tokenizer_sample_mb * 1e6))
            prog.say(f"tokenizer trained on {sample.documents:,} documents ({sample.bytes / 1e6:.1f} MB) in "
                     f"{time.perf_counter() - t0:.1f}s")
        timings["tokenizer_s"] = time.perf_counter() - t0

        # ----- pass 2: encode and write shards
        t0 = time.perf_counter()
        prog.start("encoding")
        writers = {s: ShardWriter(tmp_dir, prefix, s, shard_tokens) for s in ("val", "train")}
        totals = {s: SplitStats() for s in ("val", "train")}
        try:
            for batch in encode_batches(_document_batches(reader, rule), sp.serialized_model_proto(), workers):
                for s in ("val", "train"):
                    writers[s].write(batch.tokens[s])
                    totals[s].add(batch.stats[s])
                prog.update(reader.bytes_read, f"{totals['train'].tokens + totals['val'].tokens:,} tokens")
            shards = {s: w.close() for s, w in writers.items()}
        except BaseException:
            for w in writers.values():
                w.abort()
            raise
        timings["encode_s"] = time.perf_counter() - t0
        prog.update(reader.total_bytes, f"{totals['train'].tokens + totals['val'].tokens:,} tokens", force=True)
        if totals["val"].documents == 0 or totals["train"].documents == 0:
            raise InputError(_split_problem(totals, reader, rule, blank_line_docs))

        manifest = {
            "format": "jepagolf-corpus",
            "version": CORPUS_BUILD_VERSION,
            "builder": BUILDER,
            "name": out_dir.name,
            "prefix": prefix,
            "source": f"{len(files)} input file(s): " + ", ".join(str(f.path) for f in files[:5])
            + (" ..." if len(files) > 5 else ""),
            # Capped so that a corpus of a million small files keeps a readable manifest.
            "inputs": [{"path": str(f.path), "format": f.format, "gzip": f.compressed, "bytes": f.size}
                       for f in files[:MANIFEST_MAX_INPUTS]],
            "inputs_count": len(files),
            "input_bytes": reader.total_bytes,
            "python_version": platform.python_version(),
            "sentencepiece_version": spm.__version__,
            "vocab_size": sp.vocab_size(),
            "tokenizer": TOKENIZER_FILE,
            "settings": {
                **rule.describe(),
                "min_doc_chars": min_chars,
                "blank_line_docs": blank_line_docs,
                "text_field": text_field,
                "shard_tokens": shard_tokens,
                "bos_per_document": True,
                "tokenizer": tok_settings,
            },
            "skipped_documents": reader.skipped,
            "splits": {s: {**vars(totals[s]), "shards": shards[s]} for s in ("train", "val")},
            "files": {p.name: _file_entry(p) for p in sorted(tmp_dir.iterdir())},
        }
        (tmp_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        claim_dir(tmp_dir, BUILDER)
        if out_dir.exists() and not any(out_dir.iterdir()):
            out_dir.rmdir()  # an empty target folder is simply replaced
        replace_dir(tmp_dir, out_dir)
    except OSError as e:  # a failed write (disk full) names the file in --out, not in the hidden build folder
        if (named := named_for_output(e, tmp_dir, out_dir)) is None:
            raise
        raise named from e
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)  # gone already when installed
    seconds = time.perf_counter() - t_start
    result = BuildResult(
        data_dir=out_dir,
        tokenizer=out_dir / TOKENIZER_FILE,
        splits=totals,
        shards=shards,
        input_bytes=reader.total_bytes,
        skipped_documents=reader.skipped,
        tokenizer_sample_bytes=sample.bytes if sample is not None else 0,
        seconds=seconds,
        timings=timings,
    )
    for s in ("train", "val"):
        st = totals[s]
        prog.say(f"{s}: {st.documents:,} documents, {st.tokens:,} tokens in {len(shards[s])} shard(s), "
                 f"{st.scored_bytes / max(st.tokens, 1):.2f} bytes/token")
    prog.say(f"done in {seconds:.1f}s: {reader.total_bytes / 1e6:,.1f} MB of input at {result.text_mb_per_s:.1f} MB/s "
             f"(tokenizer {timings['tokenizer_s']:.1f}s, encoding {timings['encode_s']:.1f}s)")
    return result


def _train_tokenizer(sample: _TokenizerSample, vocab_size: int, model_path: Path) -> spm.SentencePieceProcessor:
    try:
        path = train_sentencepiece(sample, vocab_size, model_path.with_suffix(""), input_sentence_size=0)
    except ValueError as e:
        if sample.error is not None:
            raise sample.error from None  # e.g. a malformed input met while sampling
        if sample.documents == 0:
            raise InputError("no train documents to train the tokenizer on: every document went to "
                             "validation (lower --val-docs / --val-fraction, or add documents)") from e
        # SentencePiece's message ends with the reason after its source location "...cc(744) [...] ".
        reason = str(e).rsplit("] ", 1)[-1].strip().rstrip(".")
        raise InputError(
            f"tokenizer training (vocab {vocab_size}) failed: {reason}. Use a smaller --vocab-size, more "
            "text, or reuse a tokenizer with --tokenizer"
        ) from e
    if sample.error is not None:
        raise sample.error
    return load_tokenizer(path, expected_vocab=vocab_size)


def _reuse_tokenizer(
    path: Path, vocab_size: int | None, dest: Path
) -> tuple[spm.SentencePieceProcessor, dict[str, Any]]:
    try:
        sp = load_tokenizer(path)
    except ValueError as e:
        raise InputError(str(e)) from e
    if vocab_size is not None and sp.vocab_size() != vocab_size:
        raise InputError(f"{path}: tokenizer has vocab {sp.vocab_size()}, but --vocab-size {vocab_size} was given")
    data = path.read_bytes()
    shutil.copyfile(path, dest)
    return sp, {"reused": str(path), "sha256": hashlib.sha256(data).hexdigest(), "vocab_size": sp.vocab_size()}


def _split_problem(totals: dict[str, SplitStats], reader: DocumentReader, rule: SplitRule,
                   blank_line_docs: bool) -> str:
    n = totals["val"].documents + totals["train"].documents
    msg = (f"{n} document(s) split into {totals['train'].documents} train and {totals['val'].documents} val "
           f"({', '.join(f'{k} {v}' for k, v in rule.describe().items())}); both splits need at least one")
    if n <= 2 and not blank_line_docs and all(f.format == "text" for f in reader.inputs):
        msg += ". Each text file is one document: pass --blank-line-docs to cut files at blank lines"
    elif rule.val_docs is not None and totals["train"].documents == 0:
        msg += f". Lower --val-docs below {n}"
    else:
        msg += ". Adjust --val-docs / --val-fraction or add documents"
    if reader.skipped:
        msg += f" ({reader.skipped} empty or short document(s) were skipped)"
    return msg
