"""Documents from plain text, JSONL and Parquet files, read as a stream.

Formats, chosen by file name (``.gz`` allowed for text and JSONL) or forced with ``fmt``:

- text (``.txt``, ``.text``, ``.md``; any other name given explicitly): the whole file is one
  document, or, with ``blank_line_docs``, every run of lines between blank lines is one;
- JSONL (``.jsonl``, ``.ndjson``): one JSON object a line, the document in ``text_field``;
- Parquet (``.parquet``, needs pyarrow): the document in column ``text_field``.

Folders are walked recursively in sorted order, taking the files of those formats (hidden
files skipped), so a given set of paths always yields the same documents in the same order.
Only one document (one Parquet batch) is in memory at a time. A document that is empty or
shorter than ``min_chars`` after stripping is skipped and counted; a null JSON/Parquet value
counts as empty. Malformed input stops the read with an error naming the file and line.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import stat
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from jepagolf.data.errors import InputError

FORMATS = ("auto", "text", "jsonl", "parquet")
# Longest document, in characters, handed to the tokenizer in one piece: a longer one is cut into pieces
# of at most this size, at the last line break (else whitespace) before the limit, and each piece is a
# document of its own (its own BOS). SentencePiece holds a document's ids as a C++ vector and numpy copies
# them again: a 200 MB single-line document took a worker past its memory (bad_alloc). 4 MiB characters
# are ~1M tokens, a few tens of MB of work memory per worker.
MAX_DOC_CHARS = 1 << 22
_SUFFIXES = {".txt": "text", ".text": "text", ".md": "text", ".jsonl": "jsonl", ".ndjson": "jsonl",
             ".parquet": "parquet"}


@dataclass(frozen=True)
class InputFile:
    path: Path
    format: str  # "text" | "jsonl" | "parquet"
    compressed: bool  # gzip
    size: int  # bytes on disk


def detect_format(path: Path) -> tuple[str | None, bool]:
    """(format, gzip) from the file name; format None if the name says nothing."""
    name = path.name.lower()
    compressed = name.endswith(".gz")
    stem = name[:-3] if compressed else name
    return _SUFFIXES.get(os.path.splitext(stem)[1]), compressed


def discover_inputs(paths: Sequence[str | os.PathLike[str]], fmt: str = "auto") -> list[InputFile]:
    """The input files named by ``paths`` (files, or folders walked recursively), in order, deduplicated."""
    if fmt not in FORMATS:
        raise InputError(f"unknown input format {fmt!r}; use one of {', '.join(FORMATS)}")
    if not paths:
        raise InputError("no inputs given")
    found: list[InputFile] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = [_input_file(p, fmt, explicit=False) for p in _walk(path)]
            files = [f for f in files if f is not None]
            if not files:
                kinds = "files" if fmt != "auto" else ".txt/.text/.md/.jsonl/.ndjson/.parquet files (or .gz)"
                raise InputError(f"{path}: folder holds no {kinds}")
            found += files
        elif path.is_file():
            found.append(_input_file(path, fmt, explicit=True))  # type: ignore[arg-type]
        elif path.exists():
            _refuse_special(path)
        else:
            raise InputError(f"{path}: input does not exist")
    seen: set[Path] = set()
    unique = []
    for f in found:
        key = f.path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


def _refuse_special(path: Path) -> None:
    """A FIFO, socket or device is refused by its type, never opened: reading a FIFO waits forever."""
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise InputError(f"{path}: {kind}, not a regular file; data build reads regular files only (refused "
                         "without opening it)")


def _input_file(path: Path, fmt: str, *, explicit: bool) -> InputFile | None:
    detected, compressed = detect_format(path)
    chosen = detected if fmt == "auto" else fmt
    if chosen is None:
        if not explicit:
            return None  # an unrelated file in a folder (README, images, ...)
        chosen = "text"  # a file named on purpose is read as text
    _refuse_special(path)  # a file it would read
    if chosen == "parquet" and compressed:
        raise InputError(f"{path}: gzip-compressed Parquet is not supported (Parquet compresses internally)")
    return InputFile(path=path, format=chosen, compressed=compressed, size=path.stat().st_size)


class DocumentReader:
    """Iterate the documents of ``inputs`` in order, tracking how many input bytes were consumed.

    Iterating again starts over from the first file, so one reader serves several passes.
    """

    def __init__(
        self,
        inputs: Sequence[InputFile],
        *,
        text_field: str = "text",
        blank_line_docs: bool = False,
        min_chars: int = 1,
    ) -> None:
        self.inputs = list(inputs)
        self.text_field = text_field
        self.blank_line_docs = blank_line_docs
        self.min_chars = max(1, min_chars)
        self.total_bytes = sum(f.size for f in self.inputs)
        self.skipped = 0  # documents dropped as empty / too short in the current pass
        self.split_documents = 0
        self.current: InputFile | None = None  # the file being read
        self._done_bytes = 0
        self._position: Callable[[], int] = lambda: 0

    @property
    def bytes_read(self) -> int:
        """Input bytes (as stored on disk) consumed so far in the current pass."""
        return self._done_bytes + self._position()

    def __iter__(self) -> Iterator[str]:
        self.skipped = 0
        self.split_documents = 0  # documents over MAX_DOC_CHARS, cut into pieces, in this pass
        self._done_bytes = 0
        for f in self.inputs:
            self.current = f
            reader = {"text": self._text_docs, "jsonl": self._jsonl_docs, "parquet": self._parquet_docs}[f.format]
            for doc in reader(f):
                if len(doc.strip()) < self.min_chars:
                    self.skipped += 1
                    continue
                if len(doc) > MAX_DOC_CHARS:
                    self.split_documents += 1
                    yield from split_document(doc, MAX_DOC_CHARS)
                    continue
                yield doc
            self._done_bytes += f.size
            self._position = lambda: 0

    # ----- formats

    @contextlib.contextmanager
    def _open(self, f: InputFile) -> Iterator[IO[bytes]]:
        with open(f.path, "rb") as raw:
            # Progress counts stored bytes, so a gzip file advances by its compressed size.
            self._position = raw.tell
            if f.compressed:
                with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                    yield gz  # type: ignore[misc]
            else:
                yield raw

    def _text_docs(self, f: InputFile) -> Iterator[str]:
        lineno = 0
        try:
            with self._open(f) as stream:
                # utf-8-sig drops a byte-order mark; newline=None turns \r\n and \r into \n.
                text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="strict", newline=None)
                if not self.blank_line_docs:
                    # Read in pieces: a huge file is never one string in memory (see MAX_DOC_CHARS).
                    carry, split = "", False
                    while block := text.read(MAX_DOC_CHARS):
                        doc = carry + block
                        if len(doc) <= MAX_DOC_CHARS:
                            carry = doc
                            continue
                        *pieces, carry = split_document(doc, MAX_DOC_CHARS)
                        self.split_documents += not split
                        split = True
                        yield from pieces
                    yield carry
                    return
                lines: list[str] = []
                for lineno, line in enumerate(text, 1):  # noqa: B007 - lineno is read in the error message
                    if line.strip():
                        lines.append(line)
                    elif lines:
                        yield "".join(lines).rstrip("\n")
                        lines = []
                if lines:
                    yield "".join(lines).rstrip("\n")
        except UnicodeDecodeError as e:
            where = f" near line {lineno + 1}" if self.blank_line_docs else ""
            raise InputError(
                f"{f.path}{where}: not valid UTF-8 ({e.reason}: byte 0x{e.object[e.start]:02x}); convert the file "
                "to UTF-8 first, e.g. `iconv -f latin1 -t utf-8`"
            ) from e
        except (OSError, EOFError, zlib.error) as e:
            raise InputError(f"{f.path}: cannot read: {e}") from e

    def _jsonl_docs(self, f: InputFile) -> Iterator[str]:
        field = self.text_field
        lineno = 0
        try:
            with self._open(f) as stream:
                for lineno, line in enumerate(stream, 1):
                    if lineno == 1:
                        line = line.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
                        raise InputError(f"{f.path}:{lineno}: not a valid JSON line ({e})") from e
                    if not isinstance(obj, dict):
                        raise InputError(f"{f.path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
                    if field not in obj:
                        keys = ", ".join(sorted(map(str, obj))[:10]) or "none"
                        raise InputError(
                            f"{f.path}:{lineno}: no {field!r} field (fields: {keys}); choose one with --text-field"
                        )
                    text = obj[field]
                    if text is None:
                        self.skipped += 1
                        continue
                    if not isinstance(text, str):
                        raise InputError(
                            f"{f.path}:{lineno}: field {field!r} holds {type(text).__name__}, not a string"
                        )
                    yield text
        except (OSError, EOFError, zlib.error) as e:
            after = f" after line {lineno}" if lineno else ""
            raise InputError(f"{f.path}: cannot read{after}: {e}") from e

    def _parquet_docs(self, f: InputFile) -> Iterator[str]:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as e:
            raise InputError(
                f"{f.path}: reading Parquet needs pyarrow, which is not installed; "
                "run `pip install 'jepagolf[parquet]'` (or `pip install pyarrow`)"
            ) from e
        try:
            pf = pq.ParquetFile(f.path)
        except (pa.ArrowException, OSError) as e:
            raise InputError(f"{f.path}: not a readable Parquet file ({e})") from e
        with pf:
            schema = pf.schema_arrow
            if self.text_field not in schema.names:
                raise InputError(
                    f"{f.path}: no column {self.text_field!r} (columns: {', '.join(schema.names)}); "
                    "choose one with --text-field"
                )
            col_type = schema.field(self.text_field).type
            if not (pa.types.is_string(col_type) or pa.types.is_large_string(col_type)
                    or getattr(pa.types, "is_string_view", lambda t: False)(col_type)):
                raise InputError(f"{f.path}: column {self.text_field!r} has type {col_type}, not a string type")
            total_rows = max(1, pf.metadata.num_rows)
            rows = 0
            self._position = lambda: f.size * rows // total_rows
            try:
                for batch in pf.iter_batches(batch_size=1024, columns=[self.text_field]):
                    for text in batch.column(0).to_pylist():
                        if text is None:
                            self.skipped += 1
                            continue
                        yield text
                    rows += batch.num_rows
            except (pa.ArrowException, OSError) as e:
                raise InputError(f"{f.path}: cannot read row {rows} onwards ({e})") from e


def split_document(text: str, limit: int) -> list[str]:
    """``text`` cut into consecutive pieces of at most ``limit`` characters (joined, they give it back),
    each ending at the last line break before the limit, else the last whitespace, else at the limit."""
    pieces, start = [], 0
    while len(text) - start > limit:
        end = start + limit
        cut = text.rfind("\n", start, end) + 1
        if cut <= start:
            ws = max(text.rfind(c, start, end) for c in " \t\r\f\v")
            cut = ws + 1 if ws >= start else end
        pieces.append(text[start:cut])
        start = cut
    pieces.append(text[start:])
    return pieces
