"""Document preparation, the deterministic split, and corpus builds (synthetic and demo)."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pytest

from jepagolf.data import corpus
from jepagolf.data.corpus import (
    DatasetPaths,
    build_corpus,
    collect_demo_documents,
    corpus_is_complete,
    default_cache_dir,
    ensure_demo_corpus,
    is_val_document,
    prepare_documents,
    split_documents,
    stdlib_documents,
)
from jepagolf.data.shards import list_shards, load_shard, load_tokens
from jepagolf.data.tokenizer import BOS_ID, encode_documents, load_tokenizer
from jepagolf.outputs import MARKER

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


def test_stdlib_documents_reads_docstrings_without_importing(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    (root / "pkg").mkdir(parents=True)
    (root / "test").mkdir()
    (root / "pkg" / "__init__.py").write_text('"""Package doc."""\n')
    marker = tmp_path / "imported"
    (root / "pkg" / "mod.py").write_text(
        '"""Module doc."""\n'
        f"open({str(marker)!r}, 'w').close()  # must never run\n"
        "class Thing:\n"
        '    """Thing doc."""\n'
        "    def method(self, x, *, y=1):\n"
        '        """Method doc."""\n'
        "async def helper():\n"
        '    """Helper doc."""\n'
    )
    (root / "test" / "mod2.py").write_text('"""Test package doc."""\n')
    (root / "pkg" / "test_mod.py").write_text('"""Test module doc."""\n')
    (root / "broken.py").write_text('"""Broken doc."""\ndef (:\n')
    docs = stdlib_documents(root)
    assert not marker.exists()
    assert docs == [
        "pkg\n\nPackage doc.",
        "pkg.mod\n\nModule doc.\n\nclass Thing\nThing doc.\n\n"
        "def Thing.method(self, x, *, y=1)\nMethod doc.\n\ndef helper()\nHelper doc.",
    ]


def test_demo_documents() -> None:
    docs = collect_demo_documents()
    assert len(docs) > 300
    assert len(set(docs)) == len(docs)
    assert len({" ".join(d.split()) for d in docs}) == len(docs)
    assert all(len(d) >= corpus.MIN_DOC_CHARS and d == d.strip() for d in docs)
    assert docs == sorted(docs, key=lambda d: hashlib.sha256(d.encode()).hexdigest())
    total = sum(len(d.encode()) for d in docs)
    assert 1_500_000 < total < 10_000_000
    assert any(d.startswith("json.decoder\n") for d in docs)  # a stdlib module page
    assert any("assert_stmt" in d or 'The "assert" statement' in d for d in docs)  # a pydoc topic


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

    def fake_documents() -> list[str]:
        calls.append(1)
        return synthetic_docs(300)

    # Synthetic documents stand in for the stdlib so the test takes a second, not ten.
    monkeypatch.setattr(corpus, "collect_demo_documents", fake_documents)
    paths = ensure_demo_corpus(tmp_path, progress=False)
    assert paths.data_dir == tmp_path / "demo_sp1024" and len(calls) == 1
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
    assert [p.name for p in tmp_path.iterdir()] == ["demo_sp1024"]  # old copy cleaned up

    manifest = paths.data_dir / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"version": 1', '"version": 0'))
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
