"""A run's validation data (tokens, byte tables, the unigram reference) and its evaluation on them.

Loaded once at set-up; the training loop's periodic validation, the finish's final scoring and
``jepagolf export``'s re-scoring (``rescore``) all evaluate through :func:`evaluate_run`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from jepagolf.config import Config
from jepagolf.data.bytes import build_byte_tables, unigram_bpb
from jepagolf.data.corpus import DatasetPaths
from jepagolf.data.shards import ShardError, list_shards, load_shard, load_tokens
from jepagolf.data.tokenizer import load_tokenizer
from jepagolf.model.eval import EvalResult, evaluate
from jepagolf.model.gpt import GPT
from jepagolf.train.runtime import Runtime, sdpa_context


@dataclass
class ValData:
    tokens: np.ndarray
    byte_tables: tuple[Tensor, Tensor, Tensor]
    unigram_bpb: float


def load_val_data(cfg: Config, paths: DatasetPaths, device: torch.device,
                  token_range: tuple[int, int] | None = None) -> ValData:
    """The validation split (or its tokens ``token_range`` = (start, end), end exclusive), its byte tables and
    the unigram reference on those same tokens."""
    vocab = cfg.model.vocab_size
    sp = load_tokenizer(paths.tokenizer, expected_vocab=vocab)
    tables = build_byte_tables(sp, vocab)
    val_tokens = load_tokens(list_shards(paths.data_dir, "val"), vocab)
    if token_range is not None:
        val_tokens = val_tokens[token_range[0]:token_range[1]]
    for key, length in (("train_seq_len", cfg.train.train_seq_len), ("eval_seq_len", cfg.train.scoring_seq_len)):
        if len(val_tokens) < length + 1:
            raise ShardError(
                f"validation split in {paths.data_dir} has {len(val_tokens)} tokens, fewer than one sequence "
                f"({key} + 1 = {length + 1}); add validation documents or lower {key}"
            )
    # Unigram reference: token frequencies from (up to) the first train shard.
    first_train = load_shard(list_shards(paths.data_dir, "train")[0], vocab)
    counts = np.bincount(np.asarray(first_train[:100_000_000]), minlength=vocab)
    uni = unigram_bpb(counts, np.asarray(val_tokens), tables)
    base, space, boundary = tables.to_torch(device)
    return ValData(tokens=val_tokens, byte_tables=(base, space, boundary), unigram_bpb=uni)


def evaluate_run(cfg: Config, rt: Runtime, val: ValData, gpt: GPT, max_tokens: int = 0, *,
                 scoring: bool = False) -> EvalResult:
    """A run's evaluation: non-overlapping windows of train_seq_len, or with ``scoring`` the challenge's
    scoring eval: windows of eval_seq_len advanced by eval_stride (sliding when set)."""
    t = cfg.train
    seq_len, stride = (t.scoring_seq_len, t.eval_stride) if scoring else (t.train_seq_len, 0)
    with sdpa_context(rt.device):
        return evaluate(
            gpt, val.tokens, val.byte_tables, seq_len, t.val_batch_tokens, rt.device,
            stride=stride, max_tokens=max_tokens, rank=rt.rank, world_size=rt.world_size,
            autocast_dtype=rt.autocast_dtype,
        )
