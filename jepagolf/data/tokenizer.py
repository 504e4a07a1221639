"""SentencePiece tokenizer: training with the challenge settings, loading, encoding.

The settings follow DESIGN section 5 (the parameter-golf sp1024 tokenizer): BPE,
byte fallback, split digits, nmt_nfkc normalisation, no dummy prefix,
pad 0 / bos 1 / eos 2 / unk 3, character coverage 0.999.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import sentencepiece as spm

from jepagolf.data.shards import atomic_write
from jepagolf.jsonfile import read_regular

PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
# A model of 65,536 pieces (the most uint16 shards hold) is ~1-2 MB; 32 MiB leaves room for any
# normaliser and piece table that could come with it.
MAX_TOKENIZER_BYTES = 32 << 20


class TokenizerError(ValueError):
    """A tokenizer file is missing, unreadable, or does not fit the model / the shards."""


# The tokenizer of DESIGN section 5 (the parameter-golf sp1024 settings, any vocab size).
# Public so that dataset manifests can record exactly what was used.
TRAINER_SETTINGS: dict[str, object] = {
    "model_type": "bpe",
    "byte_fallback": True,
    "split_digits": True,
    "normalization_rule_name": "nmt_nfkc",
    "add_dummy_prefix": False,
    "pad_id": PAD_ID,
    "bos_id": BOS_ID,
    "eos_id": EOS_ID,
    "unk_id": UNK_ID,
    "character_coverage": 0.999,
    # BPE training gives a different model for each thread count (the demo corpus's tokenizer had four
    # different sha256 for 1, 2, 4 and 16 threads, each repeatable), so the count is fixed rather than
    # os.cpu_count(): the same documents give the same tokenizer on every machine. 2 is what the
    # corpora built on this project's 2-core machine used.
    "num_threads": 2,
}

# SentencePiece silently drops training "sentences" longer than max_sentence_length
# (4192 bytes by default); documents are cut into chunks below it at line breaks.
_MAX_SENTENCE_BYTES = 4192
_CHUNK_BYTES = 4000


def _training_chunks(docs: Iterable[str]) -> Iterator[str]:
    """Cut documents into line-aligned pieces of at most _CHUNK_BYTES UTF-8 bytes."""
    for doc in docs:
        buf: list[str] = []
        size = 0
        for line in doc.splitlines():
            n = len(line.encode("utf-8")) + 1
            if n > _CHUNK_BYTES:
                # A single huge line: flush what we have, then cut it by characters.
                if buf:
                    yield "\n".join(buf)
                    buf, size = [], 0
                yield from _cut_line(line)
                continue
            if size + n > _CHUNK_BYTES and buf:
                yield "\n".join(buf)
                buf, size = [], 0
            buf.append(line)
            size += n
        if buf:
            yield "\n".join(buf)


def _cut_line(line: str) -> Iterator[str]:
    # A character is at most 4 UTF-8 bytes, so _CHUNK_BYTES // 4 characters always fit.
    step = _CHUNK_BYTES // 4
    for i in range(0, len(line), step):
        yield line[i : i + step]


def train_sentencepiece(
    docs: Iterable[str],
    vocab_size: int,
    model_prefix: Path,
    *,
    num_threads: int | None = None,
    input_sentence_size: int = 2_000_000,
    verbose: bool = False,
) -> Path:
    """Train a BPE SentencePiece model on ``docs``; write and return ``<model_prefix>.model``.

    Documents are streamed through ``sentence_iterator`` (no temporary text file), cut
    into line-aligned chunks that fit SentencePiece's sentence length limit. No
    ``.vocab`` file is written. Training is deterministic: the same documents give a
    byte-identical model file wherever it is written and on any machine (tests check this),
    for a given ``num_threads`` (default ``TRAINER_SETTINGS["num_threads"]``; the model depends on it).
    """
    model_path = Path(model_prefix).parent / (Path(model_prefix).name + ".model")
    proto = io.BytesIO()
    kwargs = dict(
        sentence_iterator=_training_chunks(docs),
        # With model_prefix, SentencePiece saves the files itself and records the prefix
        # (a path) inside the model, so the same data trained in two folders gave two
        # different files; taking the serialized model keeps the bytes path-independent.
        model_writer=proto,
        **{**TRAINER_SETTINGS, "num_threads": num_threads or TRAINER_SETTINGS["num_threads"]},
        vocab_size=vocab_size,
        input_sentence_size=input_sentence_size,
        # Sampling a subset of sentences is the only randomness in BPE training; taking
        # the first input_sentence_size keeps the result a pure function of the input
        # without touching SentencePiece's process-wide random seed.
        shuffle_input_sentence=False,
        max_sentence_length=_MAX_SENTENCE_BYTES,
    )
    if not verbose:
        # SentencePiece logs every step to fd 2. Its logstream= option silences that by
        # re-pointing sys.stderr's fd, which fails where sys.stderr has none (notebooks,
        # captured output) and also hid our own progress lines; raising the log level does
        # neither, and leaves the model bytes unchanged.
        kwargs["minloglevel"] = 2
    try:
        spm.SentencePieceTrainer.train(**kwargs)
    except RuntimeError as e:
        # Typically "Vocabulary size is too high" on a corpus too small for vocab_size.
        raise ValueError(f"SentencePiece training for {model_path} (vocab {vocab_size}) failed: {e}") from e
    atomic_write(model_path, lambda f: f.write(proto.getvalue()))
    return model_path


def load_tokenizer(
    path: str | os.PathLike[str], expected_vocab: int | None = None
) -> spm.SentencePieceProcessor:
    """Load a SentencePiece model, checking it exists, parses, and has the expected vocab."""
    path = Path(path)
    if not path.exists():
        raise TokenizerError(f"{path}: tokenizer model file does not exist")
    # Bounded and typed before SentencePiece sees a byte: a huge file made it crash (SIGSEGV at 4 GB).
    data = read_regular(path, MAX_TOKENIZER_BYTES, "a SentencePiece model of at most 65,536 pieces",
                        error=TokenizerError)
    sp = spm.SentencePieceProcessor()
    try:
        sp.load_from_serialized_proto(data)
    except (OSError, RuntimeError) as e:
        raise TokenizerError(f"{path}: not a valid SentencePiece model ({e})") from e
    if expected_vocab is not None and sp.vocab_size() != expected_vocab:
        raise TokenizerError(
            f"{path}: tokenizer vocab size is {sp.vocab_size()} but {expected_vocab} was expected; "
            f"use the tokenizer the data was built with, or set vocab_size={sp.vocab_size()} to match it"
        )
    if sp.bos_id() != BOS_ID:
        raise TokenizerError(
            f"{path}: tokenizer BOS id is {sp.bos_id()}, but shards use {BOS_ID} to mark documents"
        )
    return sp


def encode_documents(sp: spm.SentencePieceProcessor, docs: Iterable[str]) -> np.ndarray:
    """Encode documents as one uint16 array: each document preceded by BOS (id 1), no EOS."""
    if sp.vocab_size() > np.iinfo(np.uint16).max + 1:
        raise ValueError(f"tokenizer vocab {sp.vocab_size()} does not fit uint16 shards")
    docs = list(docs)
    encoded = sp.encode(docs, out_type=int) if docs else []
    total = sum(len(ids) + 1 for ids in encoded)
    out = np.empty(total, dtype=np.uint16)
    pos = 0
    for ids in encoded:
        out[pos] = BOS_ID
        out[pos + 1 : pos + 1 + len(ids)] = ids
        pos += 1 + len(ids)
    return out
