"""Find a dataset folder and its tokenizer: an explicit --data folder, or the offline demo corpus."""

from __future__ import annotations

import sys
from pathlib import Path

from jepagolf.data.corpus import DatasetPaths, ensure_demo_corpus
from jepagolf.data.shards import ShardNotFoundError, list_shards


def _find_tokenizer(data_dir: Path) -> Path | None:
    """tokenizer.model beside the shards, or the challenge layout's ../../tokenizers/*.model."""
    own = data_dir / "tokenizer.model"
    if own.is_file():
        return own
    challenge = data_dir.parent.parent / "tokenizers"
    if challenge.is_dir():
        vocab = "".join(c for c in data_dir.name.rsplit("_sp", 1)[-1] if c.isdigit())
        candidates = sorted(challenge.glob(f"*_{vocab}_bpe.model" if vocab else "*.model"))
        if len(candidates) == 1:
            return candidates[0]
    return None


def _hint_challenge_root(data_dir: Path) -> None:
    # `jepagolf data fineweb --dir data` puts shards in data/datasets/<name>/; passing data/ itself
    # is an easy slip, so name the folder that was meant.
    if any(data_dir.glob("*_train_*.bin")):
        return
    inner = sorted(p for p in (data_dir / "datasets").glob("*") if p.is_dir() and any(p.glob("*_train_*.bin")))
    if inner:
        raise ShardNotFoundError(
            f"{data_dir} holds no shards itself; it looks like a challenge data root: use --data {inner[0]}"
            + (f" (or one of {', '.join(p.name for p in inner[1:])})" if len(inner) > 1 else "")
        )


def resolve_dataset(data_path: str | None, tokenizer_path: str | None, announce: bool = True) -> DatasetPaths:
    if not data_path:
        if announce:
            print("data: no --data given, using the offline demo corpus", file=sys.stderr, flush=True)
        paths = ensure_demo_corpus()
        return DatasetPaths(paths.data_dir, Path(tokenizer_path) if tokenizer_path else paths.tokenizer)
    data_dir = Path(data_path)
    if not data_dir.is_dir():
        raise ShardNotFoundError(
            f"dataset folder {data_dir} does not exist; build one with `jepagolf data "
            "build` or download FineWeb with `jepagolf data fineweb`"
        )
    _hint_challenge_root(data_dir)
    list_shards(data_dir, "train")
    list_shards(data_dir, "val")
    tok = Path(tokenizer_path) if tokenizer_path else _find_tokenizer(data_dir)
    if tok is None:
        raise FileNotFoundError(f"no tokenizer found for {data_dir}; pass --tokenizer FILE.model")
    if not tok.is_file():
        raise FileNotFoundError(f"tokenizer {tok} does not exist; pass --tokenizer FILE.model")
    return DatasetPaths(data_dir, tok)
