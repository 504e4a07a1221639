"""`jepagolf data fineweb` against a local stand-in for the Hub: layout, validation, resume, damage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fakehub import FakeHub

from jepagolf.cli import main
from jepagolf.data.dataset import resolve_dataset
from jepagolf.data.errors import DataError, DownloadError
from jepagolf.data.fineweb import REGISTRY_NAME, STAGING_DIR, expected_shard_tokens, fetch_fineweb
from jepagolf.data.shards import HEADER_BYTES, SHARD_MAGIC, list_shards, load_shard, read_header
from jepagolf.data.tokenizer import BOS_ID, load_tokenizer, train_sentencepiece

REPO = "jepagolf-tests/fake-golf"
VOCAB = 300
VARIANT = f"sp{VOCAB}"
DATASET = f"datasets/fineweb10B_{VARIANT}"
SHARD_SIZE = 1000
TOKENS = {"val": 1500, "train": 3700}  # -> 2 val shards, 4 train shards (the last 700 tokens)


def _shard_bytes(tokens: np.ndarray) -> bytes:
    header = np.zeros(256, dtype="<i4")
    header[:3] = [SHARD_MAGIC, 1, len(tokens)]
    return header.tobytes() + tokens.astype("<u2").tobytes()


def _split_shards(split: str, rng: np.random.Generator) -> dict[str, bytes]:
    tokens = rng.integers(4, VOCAB, size=TOKENS[split])
    tokens[::50] = BOS_ID  # documents of 50 tokens, each starting with BOS
    return {
        f"{DATASET}/fineweb_{split}_{i:06d}.bin": _shard_bytes(tokens[start : start + SHARD_SIZE])
        for i, start in enumerate(range(0, len(tokens), SHARD_SIZE))
    }


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The files of a tiny published export, keyed by their path below the root."""
    from test_corpus import synthetic_docs

    tok_dir = tmp_path_factory.mktemp("tok")
    model = train_sentencepiece(synthetic_docs(120), VOCAB, tok_dir / "fineweb_300_bpe").read_bytes()
    sp = load_tokenizer(tok_dir / "fineweb_300_bpe.model")
    vocab_text = "".join(f"{sp.id_to_piece(i)}\t{sp.get_score(i)}\n" for i in range(VOCAB)).encode()
    rng = np.random.default_rng(0)
    files = {**_split_shards("val", rng), **_split_shards("train", rng)}
    files[f"tokenizers/fineweb_{VOCAB}_bpe.model"] = model
    files[f"tokenizers/fineweb_{VOCAB}_bpe.vocab"] = vocab_text
    docs = [{"text": f"document {i}"} for i in range(7)]
    files["docs_selected.jsonl"] = "".join(json.dumps(d) + "\n" for d in docs).encode()
    files["docs_selected.source_manifest.json"] = json.dumps({"num_docs": 7, "docs_val": 2}).encode()
    manifest = {
        "version": "10B",
        "shard_size": SHARD_SIZE,
        "tokenizers": [{"name": "sp_bpe_300", "kind": "sentencepiece_bpe", "vocab_size": VOCAB, "bos_id": 1,
                        "model_path": f"tokenizers/fineweb_{VOCAB}_bpe.model",
                        "vocab_path": f"tokenizers/fineweb_{VOCAB}_bpe.vocab"}],
        "datasets": [{"name": f"fineweb10B_{VARIANT}", "tokenizer_name": "sp_bpe_300", "vocab_size": VOCAB,
                      "stats": {"files_train": 4, "files_val": 2, "tokens_train": TOKENS["train"],
                                "tokens_val": TOKENS["val"], "docs_val": 30, "docs_train": 74}}],
    }
    files["manifest.json"] = json.dumps(manifest, indent=2).encode()
    return files


@pytest.fixture
def hub(export: dict[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import huggingface_hub.constants as hf_constants

    # No network, no user cache: HF_HOME in tmp, offline mode off, short timeouts.
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
    monkeypatch.setattr(hf_constants, "HF_HUB_DOWNLOAD_TIMEOUT", 10)
    server = FakeHub(REPO, {f"datasets/{k}": v for k, v in export.items()},
                     is_lfs=lambda p: p.endswith((".bin", ".model", ".jsonl")))
    yield server
    server.close()


def fetch(hub: FakeHub, out: Path, **kw):
    kw.setdefault("variant", VARIANT)
    kw.setdefault("train_shards", 2)
    return fetch_fineweb(out, repo_id=REPO, endpoint=hub.endpoint, progress=False, **kw)


def remote(path: str) -> str:
    return f"datasets/{path}"


def test_fetch_lays_out_files_as_the_challenge(hub: FakeHub, export: dict[str, bytes], tmp_path: Path) -> None:
    out = tmp_path / "data"
    ds = fetch(hub, out)
    assert ds.data_dir == out / DATASET and ds.tokenizer == out / f"tokenizers/fineweb_{VOCAB}_bpe.model"
    expected = ["manifest.json", f"tokenizers/fineweb_{VOCAB}_bpe.model", f"tokenizers/fineweb_{VOCAB}_bpe.vocab",
                *(f"{DATASET}/fineweb_val_{i:06d}.bin" for i in range(2)),
                *(f"{DATASET}/fineweb_train_{i:06d}.bin" for i in range(2))]
    got = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    # Staging folder gone, only the requested prefix of train shards, and the list of what was fetched.
    assert got == sorted([*expected, REGISTRY_NAME])
    for rel in expected:
        assert (out / rel).read_bytes() == export[rel], rel
    assert (ds.downloaded, ds.skipped) == (len(expected), 0)
    # The trainer finds shards and tokenizer from the data folder alone (challenge layout).
    paths = resolve_dataset(str(ds.data_dir), None, announce=False)
    assert paths.tokenizer == ds.tokenizer
    assert [p.name for p in list_shards(ds.data_dir, "train")] == ["fineweb_train_000000.bin",
                                                                   "fineweb_train_000001.bin"]


def test_rerun_skips_valid_files_without_downloading(hub: FakeHub, tmp_path: Path) -> None:
    out = tmp_path / "data"
    fetch(hub, out)
    hub.reset_log()
    ds = fetch(hub, out)
    assert (ds.downloaded, ds.skipped) == (0, 7)
    assert hub.requests == []  # not even a HEAD: the local manifest and files were valid
    # Asking for more shards later fetches only the new ones.
    ds = fetch(hub, out, train_shards=4)
    assert ds.downloaded == 2
    gets = [p for server, method, p, _ in hub.requests if method == "GET"]
    assert sorted(gets) == [remote(f"{DATASET}/fineweb_train_{i:06d}.bin") for i in (2, 3)]
    assert read_header(out / DATASET / "fineweb_train_000003.bin") == 700  # the short last shard


def test_connection_dropped_mid_file_is_resumed(hub: FakeHub, export: dict[str, bytes], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as hf_constants

    # The client writes whole chunks (10 MB by default); small ones let a 3 kB file resume mid-way.
    monkeypatch.setattr(hf_constants, "DOWNLOAD_CHUNK_SIZE", 512)
    path = remote(f"{DATASET}/fineweb_train_000001.bin")
    hub.faults[path] = ["drop"]
    out = tmp_path / "data"
    fetch(hub, out)
    ranges = hub.gets(path)
    # The first GET was cut off half way (1512 of 3024 bytes); the client then asked only for
    # the bytes after the last whole chunk it had written.
    assert ranges == [None, "bytes=1536-"] or ranges == [None, "bytes=1024-"]
    assert (out / DATASET / "fineweb_train_000001.bin").read_bytes() == export[f"{DATASET}/fineweb_train_000001.bin"]


def test_partial_and_corrupt_local_files_are_fetched_again(
    hub: FakeHub, export: dict[str, bytes], tmp_path: Path
) -> None:
    out = tmp_path / "data"
    fetch(hub, out)
    val0, train0 = out / DATASET / "fineweb_val_000000.bin", out / DATASET / "fineweb_train_000000.bin"
    tok = out / "tokenizers" / f"fineweb_{VOCAB}_bpe.model"
    val0.write_bytes(val0.read_bytes()[: HEADER_BYTES + 100])  # partial copy
    raw = bytearray(train0.read_bytes())
    raw[0:4] = (123).to_bytes(4, "little")  # bad magic, right size
    train0.write_bytes(bytes(raw))
    tok.write_bytes(b"not a sentencepiece model")
    hub.reset_log()
    ds = fetch(hub, out)
    assert ds.downloaded == 3 and ds.skipped == 4
    for p in (val0, train0, tok):
        rel = str(p.relative_to(out))
        assert p.read_bytes() == export[rel]
        assert len(hub.gets(remote(rel))) == 1


def test_shard_of_the_wrong_length_is_refetched(hub: FakeHub, export: dict[str, bytes], tmp_path: Path) -> None:
    # Header and size agree, but the manifest says every shard but the last holds 1000 tokens.
    out = tmp_path / "data"
    fetch(hub, out)
    val1 = out / DATASET / "fineweb_val_000001.bin"
    val1.write_bytes(_shard_bytes(np.ones(10, dtype=np.int64)))
    hub.reset_log()
    assert fetch(hub, out).downloaded == 1
    assert read_header(val1) == 500


def test_damaged_transfer_is_retried(hub: FakeHub, export: dict[str, bytes], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = remote(f"{DATASET}/fineweb_val_000000.bin")
    hub.faults[path] = ["corrupt"]  # right length, wrong bytes: only the hash can tell
    out = tmp_path / "data"
    fetch_fineweb(out, variant=VARIANT, train_shards=0, repo_id=REPO, endpoint=hub.endpoint, progress=True)
    assert len(hub.gets(path)) == 2
    assert (out / DATASET / "fineweb_val_000000.bin").read_bytes() == export[f"{DATASET}/fineweb_val_000000.bin"]
    err = capsys.readouterr().err
    assert "does not match the Hub's" in err and "retrying" in err


def test_corrupt_file_on_the_hub_is_rejected(hub: FakeHub, export: dict[str, bytes], tmp_path: Path) -> None:
    path = remote(f"{DATASET}/fineweb_train_000001.bin")
    raw = bytearray(export[f"{DATASET}/fineweb_train_000001.bin"])
    raw[0:4] = (999).to_bytes(4, "little")
    hub.files[path] = bytes(raw)  # consistent hash, bad content
    out = tmp_path / "data"
    with pytest.raises(DownloadError) as info:
        fetch(hub, out)
    msg = str(info.value)
    assert "fineweb_train_000001.bin" in msg and "wrong magic number 999" in msg
    assert "the Hub's copy itself is invalid" in msg
    assert len(hub.gets(path)) == 1  # the bytes matched the Hub's hash: no pointless second download
    assert not (out / DATASET / "fineweb_train_000001.bin").exists()
    assert (out / DATASET / "fineweb_train_000000.bin").exists()  # earlier files are kept for the rerun
    assert not (out / STAGING_DIR).exists()
    # A truncated file on the Hub (header promises more tokens than the file has) is rejected too.
    hub.files[path] = export[f"{DATASET}/fineweb_train_000001.bin"][:-10]
    with pytest.raises(DownloadError, match="truncated"):
        fetch(hub, out)
    hub.files[path] = export[f"{DATASET}/fineweb_train_000001.bin"]
    assert fetch(hub, out).downloaded == 1


def test_tokenizer_with_the_wrong_vocab_is_rejected(hub: FakeHub, tmp_path: Path) -> None:
    from test_corpus import synthetic_docs

    model = train_sentencepiece(synthetic_docs(120), 320, tmp_path / "other").read_bytes()
    hub.files[remote(f"tokenizers/fineweb_{VOCAB}_bpe.model")] = model
    with pytest.raises(DownloadError, match="vocab size is 320 but 300 was expected"):
        fetch(hub, tmp_path / "data")


def test_docs_are_fetched_and_checked_against_the_sidecar(hub: FakeHub, export: dict[str, bytes],
                                                          tmp_path: Path) -> None:
    out = tmp_path / "data"
    fetch(hub, out, train_shards=0, with_docs=True)
    assert (out / "docs_selected.jsonl").read_bytes() == export["docs_selected.jsonl"]
    docs = out / "docs_selected.jsonl"
    docs.write_bytes(docs.read_bytes()[:-5])  # truncated mid-line
    hub.reset_log()
    assert fetch(hub, out, train_shards=0, with_docs=True).downloaded == 1
    hub.files[remote("docs_selected.jsonl")] = export["docs_selected.jsonl"] * 2  # 14 docs, sidecar says 7
    docs.unlink()
    with pytest.raises(DownloadError, match="14 documents, the sidecar lists 7"):
        fetch(hub, out, train_shards=0, with_docs=True)


def test_bad_requests_fail_clearly(hub: FakeHub, tmp_path: Path) -> None:
    out = tmp_path / "data"
    with pytest.raises(DataError, match="4 train shards published, 9 were requested"):
        fetch(hub, out, train_shards=9)
    with pytest.raises(DataError, match=r"fineweb10B_sp4096 .* not published here; published: fineweb10B_sp300"):
        fetch(hub, out, variant="sp4096")
    with pytest.raises(DataError, match="byte260"):
        fetch(hub, out, variant="byte260")
    with pytest.raises(DownloadError, match="not found"):
        fetch_fineweb(tmp_path / "other", variant=VARIANT, repo_id=REPO, root="nope", endpoint=hub.endpoint,
                      progress=False)
    assert not (tmp_path / "other" / "manifest.json").exists()


def test_unreachable_hub_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match="manifest.json .* failed after 2 attempts"):
        fetch_fineweb(tmp_path, variant=VARIANT, repo_id=REPO, endpoint=f"http://127.0.0.1:{port}",
                      progress=False)


def test_cli(hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "data"
    args = ["data", "fineweb", "--variant", VARIANT, "--train-shards", "1", "--dir", str(out),
            "--repo-id", REPO, "--endpoint", hub.endpoint]
    assert main(args) == 0
    printed = capsys.readouterr()
    assert f"--data {out / DATASET}" in printed.out
    assert len(load_shard(out / DATASET / "fineweb_train_000000.bin", VOCAB)) == SHARD_SIZE
    assert main([*args[:5], "7", *args[6:]]) == 2
    assert "7 were requested" in capsys.readouterr().err


def test_expected_shard_tokens() -> None:
    assert expected_shard_tokens(3, 2500, 1000) == [1000, 1000, 500]
    assert expected_shard_tokens(2, 2000, 1000) == [1000, 1000]
    assert expected_shard_tokens(3, 2000, 1000) == [None] * 3  # inconsistent counts imply nothing
    assert expected_shard_tokens(2, None, 1000) == [None, None]


@pytest.mark.parametrize("kind", ["manifest", "vocab", "docs_sidecar", "docs"])
def test_local_side_files_are_typed_and_bounded_before_reading(tmp_path: Path, kind: str) -> None:
    """A FIFO where the manifest, vocab, sidecar or docs file goes is refused by its type (reading it would
    wait forever); an oversized one by its size, unread (issue 22)."""
    import os

    from jepagolf.data.fineweb import MAX_SIDE_FILE_BYTES, InvalidFileError, RemoteFile, validate_file

    item = RemoteFile("x", kind)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(InvalidFileError, match="FIFO"):
        validate_file(fifo, item, VOCAB)
    if kind != "docs":  # a docs file is tens of GB by design: counted in blocks, never read whole
        big = tmp_path / "big"
        with open(big, "wb") as f:
            f.truncate(MAX_SIDE_FILE_BYTES + 1)
        with pytest.raises(InvalidFileError, match="not reading it"):
            validate_file(big, item, VOCAB)
