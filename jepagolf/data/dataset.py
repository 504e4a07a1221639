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
    list_shards(data_dir, "train")
    list_shards(data_dir, "val")
    tok = Path(tokenizer_path) if tokenizer_path else _find_tokenizer(data_dir)
    if tok is None:
        raise FileNotFoundError(f"no tokenizer found for {data_dir}; pass --tokenizer FILE.model")
    if not tok.is_file():
        raise FileNotFoundError(f"tokenizer {tok} does not exist; pass --tokenizer FILE.model")
    return DatasetPaths(data_dir, tok)
