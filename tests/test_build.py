"""`jepagolf data build` and `data check`: formats, FineWeb conventions, streaming, bad inputs, training on it."""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from test_corpus import synthetic_docs

from jepagolf.cli import main
from jepagolf.data import build as build_mod
from jepagolf.data.build import ShardWriter, build_dataset, encode_batches
from jepagolf.data.check import check_dataset
from jepagolf.data.corpus import is_val_document
from jepagolf.data.dataset import resolve_dataset
from jepagolf.data.documents import DocumentReader, discover_inputs
from jepagolf.data.errors import InputError
from jepagolf.data.shards import HEADER_BYTES, list_shards, load_shard, load_tokens, read_header
from jepagolf.data.tokenizer import BOS_ID, encode_documents, load_tokenizer
from jepagolf.outputs import MARKER

VOCAB = 320


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A folder mixing formats, and the documents it holds in reading order."""
    root = tmp_path_factory.mktemp("inputs")
    docs = synthetic_docs(120, seed=3)
    (root / "a").mkdir()
    (root / "a" / "one.txt").write_text(docs[0] + "\n")
    (root / "a" / "two.md").write_text(docs[1])
    (root / "a" / "README").write_text("not an input: no known extension inside a folder")
    (root / "a" / ".hidden.txt").write_text("hidden files are skipped")
    rows = [{"text": d, "id": i} for i, d in enumerate(docs[2:60])]
    rows[5]["text"] = None  # null: skipped
    rows[6]["text"] = "   "  # blank: skipped
    (root / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    with gzip.open(root / "c.jsonl.gz", "wt", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": d}) + "\n" for d in docs[60:90])
    pa = pytest.importorskip("pyarrow")  # in the dev extra; optional for users
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": docs[90:120], "n": list(range(30))}), root / "d.parquet", row_group_size=7)
    kept = docs[0:2] + [r["text"] for r in rows if r["text"] and r["text"].strip()] + docs[60:120]
    return root, [docs[0] + "\n"] + kept[1:]


@pytest.fixture(scope="module")
def built(corpus: tuple[Path, list[str]], tmp_path_factory: pytest.TempPathFactory):
    root, _ = corpus
    out = tmp_path_factory.mktemp("built") / "ds"
    inputs = [root / "a", root / "b.jsonl", root / "c.jsonl.gz", root / "d.parquet"]
    res = build_dataset(inputs, out, vocab_size=VOCAB, val_docs=10, shard_tokens=5000, workers=1,
                        progress=False)
    return res, inputs


def test_reader_yields_documents_in_order(corpus: tuple[Path, list[str]]) -> None:
    root, docs = corpus
    files = discover_inputs([root / "a", root / "b.jsonl", root / "c.jsonl.gz", root / "d.parquet"])
    assert [f.path.name for f in files] == ["one.txt", "two.md", "b.jsonl", "c.jsonl.gz", "d.parquet"]
    assert [f.format for f in files] == ["text", "text", "jsonl", "jsonl", "parquet"]
    reader = DocumentReader(files)
    assert list(reader) == docs
    assert reader.skipped == 2 and reader.bytes_read == reader.total_bytes
    assert list(reader) == docs  # a second pass reads the same


def test_blank_line_documents(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_bytes(b"\xef\xbb\xbfa\nb\n\n  \n\nc\r\n\r\nd\n")
    reader = DocumentReader(discover_inputs([tmp_path / "t.txt"]), blank_line_docs=True)
    assert list(reader) == ["a\nb", "c", "d"]
    reader = DocumentReader(discover_inputs([tmp_path / "t.txt"]), blank_line_docs=False)
    assert list(reader) == ["a\nb\n\n  \n\nc\n\nd\n"]


def test_build_follows_fineweb_conventions(built, corpus: tuple[Path, list[str]]) -> None:
    res, _ = built
    _, docs = corpus
    sp = load_tokenizer(res.tokenizer, expected_vocab=VOCAB)
    # Val = the first 10 documents in input order, train = the rest; BOS before each, no EOS.
    for split, split_docs in (("val", docs[:10]), ("train", docs[10:])):
        tokens = load_tokens(list_shards(res.data_dir, split), VOCAB)
        np.testing.assert_array_equal(tokens, encode_documents(sp, split_docs))
        assert res.splits[split].documents == len(split_docs) == int((tokens == BOS_ID).sum())
    train = list_shards(res.data_dir, "train")
    assert [p.name for p in train] == [f"fineweb_train_{i:06d}.bin" for i in range(len(train))]
    assert len(train) > 2 and all(read_header(p) == 5000 for p in train[:-1]) and 0 < read_header(train[-1]) <= 5000
    assert res.skipped_documents == 2


def test_build_manifest(built) -> None:
    res, inputs = built
    manifest = json.loads((res.data_dir / "manifest.json").read_text())
    on_disk = sorted(p.name for p in res.data_dir.iterdir() if p.name not in ("manifest.json", MARKER))
    assert sorted(manifest["files"]) == on_disk and "tokenizer.model" in on_disk
    for name, entry in manifest["files"].items():
        assert entry == {"bytes": (res.data_dir / name).stat().st_size, "sha256": _sha256(res.data_dir / name)}
    assert manifest["settings"]["val_docs"] == 10 and manifest["vocab_size"] == VOCAB
    assert manifest["splits"]["val"]["tokens"] == res.splits["val"].tokens
    assert manifest["inputs_count"] == 5 and manifest["skipped_documents"] == 2
    # Nothing but the dataset next to it (temporary folders are gone).
    assert [p.name for p in res.data_dir.parent.iterdir()] == ["ds"]
    # The trainer finds everything from the folder alone.
    assert resolve_dataset(str(res.data_dir), None, announce=False).tokenizer == res.tokenizer


def test_workers_and_tokenizer_reuse_give_identical_tokens(built, tmp_path: Path) -> None:
    res, inputs = built
    again = build_dataset(inputs, tmp_path / "again", val_docs=10, shard_tokens=3000, workers=2,
                          tokenizer=res.tokenizer, progress=False)
    assert _sha256(again.tokenizer) == _sha256(res.tokenizer)
    for split in ("train", "val"):
        np.testing.assert_array_equal(load_tokens(list_shards(again.data_dir, split), None),
                                      load_tokens(list_shards(res.data_dir, split), None))
    manifest = json.loads((again.data_dir / "manifest.json").read_text())
    assert manifest["settings"]["tokenizer"]["sha256"] == _sha256(res.tokenizer)
    with pytest.raises(InputError, match="tokenizer has vocab 320, but --vocab-size 512"):
        build_dataset(inputs, tmp_path / "x", vocab_size=512, tokenizer=res.tokenizer, progress=False)


def test_val_fraction_is_a_hash_of_the_text(corpus: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, _ = corpus
    res = build_dataset([root], tmp_path / "f", vocab_size=VOCAB, val_fraction=0.2, workers=1, progress=False)
    docs = list(DocumentReader(discover_inputs([root])))  # a folder: its own files first, then subfolders
    val = [d for d in docs if is_val_document(d, 0.2)]
    sp = load_tokenizer(res.tokenizer)
    np.testing.assert_array_equal(load_tokens(list_shards(res.data_dir, "val"), VOCAB), encode_documents(sp, val))
    assert 0 < len(val) < len(docs) and res.splits["val"].documents == len(val)


def test_encoding_keeps_a_bounded_number_of_batches_in_flight(built) -> None:
    res, _ = built
    proto = load_tokenizer(res.tokenizer).serialized_model_proto()
    produced = []

    def batches():
        for i in range(40):
            produced.append(i)
            yield [f"batch {i} " * 20], [i % 2 == 0]

    consumed = 0
    for batch in encode_batches(batches(), proto, workers=2):
        consumed += 1
        # The reader is never more than the in-flight window ahead of the consumer.
        assert len(produced) - consumed <= build_mod.IN_FLIGHT_PER_WORKER * 2 + 1
        assert batch.stats["val" if (consumed - 1) % 2 == 0 else "train"].documents == 1
    assert consumed == 40


def test_tokenizer_sample_is_bounded_and_spread(corpus: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, docs = corpus
    total = sum(len(d.encode()) for d in docs)
    res = build_dataset([root], tmp_path / "s", vocab_size=VOCAB, val_docs=5, workers=1,
                        tokenizer_sample_mb=total / 2 / 1e6, progress=False)
    settings = json.loads((res.data_dir / "manifest.json").read_text())["settings"]["tokenizer"]
    assert 0 < settings["sample_rate"] < 1
    assert settings["sample_bytes"] < total * 0.75  # a share, not the whole corpus
    assert res.splits["train"].documents == len(docs) - 5  # ... while every document is encoded


def test_shard_writer_splits_exactly(tmp_path: Path) -> None:
    w = ShardWriter(tmp_path, "p", "train", 7)
    tokens = np.arange(30, dtype=np.uint16)
    w.write(tokens[:4])
    w.write(tokens[4:25])
    w.write(tokens[25:])
    assert w.close() == [f"p_train_{i:06d}.bin" for i in range(5)]
    assert [read_header(tmp_path / n) for n in w.names] == [7, 7, 7, 7, 2]
    np.testing.assert_array_equal(np.concatenate([load_shard(tmp_path / n) for n in w.names]), tokens)
    assert sorted(p.name for p in tmp_path.iterdir()) == w.names  # no partial files left
    empty = ShardWriter(tmp_path, "p", "val", 7)
    assert empty.close() == []


# ----------------------------------------------------------------------------- bad inputs


def _bad_inputs(tmp: Path) -> list[tuple[list[str], str]]:
    """(extra CLI args, expected message fragment) for each malformed input."""
    good = tmp / "good.jsonl"
    good.write_text("".join(json.dumps({"text": d}) + "\n" for d in synthetic_docs(40)))
    (tmp / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    (tmp / "badjson.jsonl").write_text('{"text": "fine"}\n{"text": broken}\n')
    (tmp / "nofield.jsonl").write_text('{"body": "x", "id": 1}\n')
    (tmp / "number.jsonl").write_text('{"text": 42}\n')
    (tmp / "array.jsonl").write_text('["text"]\n')
    (tmp / "fake.parquet").write_bytes(b"PAR1 this is not parquet")
    (tmp / "notgz.jsonl.gz").write_bytes(b"plain bytes, not gzip")
    (tmp / "book.txt").write_text("One long book.\n\nWith paragraphs.\n")
    (tmp / "empty").mkdir()
    (tmp / "notes.bin").write_bytes(b"\x00\x01")
    (tmp / "occupied").mkdir()
    (tmp / "occupied" / "x").write_text("x")
    (tmp / "bad.model").write_bytes(b"not a model")
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"body": ["x"]}), tmp / "nocol.parquet")
    pq.write_table(pa.table({"text": [1, 2]}), tmp / "intcol.parquet")
    return [
        (["--input", str(tmp / "missing.txt")], "missing.txt: input does not exist"),
        (["--input", str(tmp / "empty")], "empty: folder holds no"),
        (["--input", str(tmp / "latin1.txt"), str(good)], "latin1.txt: not valid UTF-8"),
        (["--input", str(tmp / "badjson.jsonl")], "badjson.jsonl:2: not a valid JSON line"),
        (["--input", str(tmp / "nofield.jsonl")], "nofield.jsonl:1: no 'text' field (fields: body, id)"),
        (["--input", str(tmp / "number.jsonl")], "number.jsonl:1: field 'text' holds int, not a string"),
        (["--input", str(tmp / "array.jsonl")], "array.jsonl:1: expected a JSON object, got list"),
        (["--input", str(tmp / "fake.parquet")], "fake.parquet: not a readable Parquet file"),
        (["--input", str(tmp / "nocol.parquet")], "nocol.parquet: no column 'text' (columns: body)"),
        (["--input", str(tmp / "intcol.parquet")], "intcol.parquet: column 'text' has type int64"),
        (["--input", str(tmp / "notgz.jsonl.gz")], "notgz.jsonl.gz: cannot read: Not a gzipped file"),
        (["--input", str(tmp / "book.txt")], "pass --blank-line-docs"),
        (["--input", str(good), "--val-docs", "40"], "every document went to validation"),
        (["--input", str(good), "--vocab-size", "5000"], "Vocabulary size too high (5000)"),
        (["--input", str(good), "--vocab-size", "100"], "--vocab-size: 100 must be in 260..65536 (byte fallback"),
        (["--input", str(good), "--tokenizer", str(tmp / "bad.model")], "not a valid SentencePiece model"),
        (["--input", str(good), "--val-fraction", "1.5"], "val_fraction must be in (0, 1)"),
        (["--input", str(good), "--prefix", "a_b"], "prefix 'a_b' must be"),
        (["--input", str(tmp / "notes.bin"), "--format", "parquet"], "notes.bin: not a readable Parquet file"),
        (["--input", str(good), "--out", str(tmp / "occupied")], "occupied is not empty (not an earlier output"),
    ]


def test_bad_inputs_fail_with_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for extra, fragment in _bad_inputs(inputs):
        out = ["--out", str(tmp_path / "out")] if "--out" not in extra else []
        code = main(["data", "build", "--quiet", "--vocab-size", "300", *out, *extra]
                    if "--vocab-size" not in extra else ["data", "build", "--quiet", *out, *extra])
        err = capsys.readouterr().err
        assert code == 2, (extra, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], (fragment, err)
        # A failed build leaves nothing behind: no output, no temporary folder.
        assert sorted(p.name for p in tmp_path.iterdir()) == ["in"], (extra, list(tmp_path.iterdir()))


def test_parquet_without_pyarrow_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "d.parquet").write_bytes(b"whatever")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow` fail
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(InputError, match=r"needs pyarrow.*pip install 'jepagolf\[parquet\]'"):
        list(DocumentReader(discover_inputs([tmp_path / "d.parquet"])))


# ----------------------------------------------------------------------------- check


def test_check_reports_statistics(built, capsys: pytest.CaptureFixture[str]) -> None:
    res, _ = built
    report = check_dataset(res.data_dir)
    assert report.ok, report.problems
    for split in ("train", "val"):
        r = report.splits[split]
        assert (r.tokens, r.documents, r.scored_bytes) == (
            res.splits[split].tokens, res.splits[split].documents, res.splits[split].scored_bytes)
        assert 1.0 < r.bytes_per_token < 8.0 and 0.0 <= r.byte_fallback_fraction < 0.5
    # The synthetic text has "€" and "ç", which a 320-piece vocab spells in bytes.
    assert report.splits["train"].byte_fallback > 0
    assert main(["data", "check", str(res.data_dir), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "check: ok" in out and f"val: 1 shard(s), {res.splits['val'].tokens:,} tokens" in out


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def _poke(path: Path, offset: int, data: bytes) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset : offset + len(data)] = data
    path.write_bytes(bytes(raw))


def test_check_finds_every_problem(built, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    res, _ = built
    d = _copy(res.data_dir, tmp_path / "bad")
    _poke(d / "fineweb_train_000000.bin", HEADER_BYTES + 20, (999).to_bytes(2, "little"))  # id >= 320
    t1 = d / "fineweb_train_000001.bin"
    t1.write_bytes(t1.read_bytes()[:-3])  # truncated
    _poke(d / "fineweb_val_000000.bin", 0, (7).to_bytes(4, "little"))  # bad magic
    _poke(d / "fineweb_train_000002.bin", HEADER_BYTES + 40, b"\x05\x00")  # silent change: only sha256 sees it
    last = list_shards(d, "train")[-1]
    last.rename(d / "fineweb_train_000099.bin")  # a gap in the numbering
    report = check_dataset(d)
    text = "\n".join(report.problems)
    assert "fineweb_train_000000.bin: token id 999 at position 10" in text
    assert "fineweb_train_000001.bin: truncated" in text
    assert "fineweb_val_000000.bin: wrong magic number 7" in text
    assert "fineweb_train_000002.bin: sha256" in text
    assert "not numbered" in text and f"{last.name}: listed in manifest.json but missing" in text
    assert main(["data", "check", str(d), "--quiet"]) == 1
    assert "problem:" in capsys.readouterr().err


def test_check_with_another_tokenizer_and_missing_splits(built, tmp_path: Path) -> None:
    from test_corpus import synthetic_docs as docs

    from jepagolf.data.tokenizer import train_sentencepiece

    res, _ = built
    small = train_sentencepiece(docs(60), 300, tmp_path / "small")
    report = check_dataset(res.data_dir, small)
    assert any("is >= the tokenizer's vocab size 300" in p for p in report.problems)
    d = _copy(res.data_dir, tmp_path / "noval")
    for p in list_shards(d, "val"):
        p.unlink()
    assert any("no val shards" in p for p in check_dataset(d).problems)
    assert main(["data", "check", str(tmp_path / "nowhere")]) == 2


def test_check_uses_the_challenge_manifest(tmp_path: Path, built) -> None:
    res, _ = built
    root = tmp_path / "data"
    ds = root / "datasets" / "fineweb10B_sp320"
    ds.mkdir(parents=True)
    (root / "tokenizers").mkdir()
    (root / "tokenizers" / "fineweb_320_bpe.model").write_bytes(res.tokenizer.read_bytes())
    tokens = load_tokens(list_shards(res.data_dir, "train"), VOCAB)
    w = ShardWriter(ds, "fineweb", "train", 4000)
    w.write(tokens[:10_000])
    w.close()
    w = ShardWriter(ds, "fineweb", "val", 4000)
    w.write(tokens[:3000])
    w.close()
    stats = {"files_train": 3, "files_val": 1, "tokens_train": 10_000, "tokens_val": 2500}
    (root / "manifest.json").write_text(json.dumps(
        {"shard_size": 4000, "datasets": [{"name": "fineweb10B_sp320", "stats": stats}]}))
    report = check_dataset(ds)  # tokenizer found in ../../tokenizers
    assert report.tokenizer == root / "tokenizers" / "fineweb_320_bpe.model"
    assert report.problems == [f"{ds / 'fineweb_val_000000.bin'}: holds 3000 tokens, the challenge manifest's "
                               "counts imply 2500"]


# ----------------------------------------------------------------------------- end to end


def test_build_from_text_files_then_train(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = synthetic_docs(300, seed=7)
    src = tmp_path / "texts"
    src.mkdir()
    for i in range(3):  # three text files, paragraphs separated by blank lines
        (src / f"part{i}.txt").write_text("\n\n".join(docs[i::3]) + "\n")
    data = tmp_path / "mydata"
    assert main(["data", "build", "--input", str(src), "--out", str(data), "--blank-line-docs",
                 "--val-fraction", "0.1", "--quiet"]) == 0
    assert f"train with: jepagolf train --data {data}" in capsys.readouterr().out
    run = tmp_path / "run"
    assert main(["train", "--preset", "smoke", "--data", str(data), "--out", str(run),
                 "--set", "iterations=2", "--set", "val_loss_every=0"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 2 and np.isfinite(summary["val_bpb"]) and summary["val_bpb"] > 0
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["data_path"] == str(data)
    # The data folder's own tokenizer was used, and --tokenizer pointing at it works too.
    assert resolve_dataset(str(data), str(data / "tokenizer.model"), announce=False).tokenizer.is_file()
