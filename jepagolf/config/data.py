"""The data section (``DataConfig``): where the dataset and the tokenizer are."""

from __future__ import annotations

from dataclasses import dataclass

from jepagolf.config.bounds import _check_types


@dataclass
class DataConfig:
    data_path: str = ""
    """Dataset folder with <prefix>_train_*.bin / <prefix>_val_*.bin; empty = offline demo corpus."""
    tokenizer_path: str = ""
    """SentencePiece model; empty = the dataset folder's tokenizer.model (or the demo one)."""

    def __post_init__(self) -> None:
        _check_types(self)
