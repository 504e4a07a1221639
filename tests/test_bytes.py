"""Byte accounting for val_bpb, checked by hand on a tiny SentencePiece model."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import sentencepiece as spm
import torch

from jepagolf.data.bytes import ByteTables, bits_per_byte, build_byte_tables, token_bytes, unigram_bpb
from jepagolf.data.tokenizer import BOS_ID, encode_documents, load_tokenizer, train_sentencepiece

VOCAB = 360
WORDS = [
    "the",
    "model",
    "token",
    "byte",
    "café",
    "naïve",
    "über",
    "straße",
    "data",
    "shard",
    "vector",
    "日本",
]
# Rare enough (< 0.1% of characters) to fall outside character_coverage 0.999, so
# SentencePiece spells them with byte-fallback pieces.
RARE = ["🙂", "€", "Ω"]


def _lines(n: int = 400) -> list[str]:
    rng = random.Random(0)
    lines = []
    for i in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 12))]
        if i % 50 == 0:
            words.append(rng.choice(RARE))
        words.append(str(rng.randint(0, 10_000)))
        lines.append(" ".join(words))
    return lines


@pytest.fixture(scope="module")
def sp(tmp_path_factory: pytest.TempPathFactory) -> spm.SentencePieceProcessor:
    path = train_sentencepiece(_lines(), VOCAB, tmp_path_factory.mktemp("tok") / "tiny")
    return load_tokenizer(path, expected_vocab=VOCAB)


@pytest.fixture(scope="module")
def tables(sp: spm.SentencePieceProcessor) -> ByteTables:
    return build_byte_tables(sp, VOCAB)


def _count(sp: spm.SentencePieceProcessor, tables: ByteTables, pieces: list[str]) -> list[int]:
    """Bytes of each piece after the first, given as piece strings."""
    ids = torch.tensor([sp.piece_to_id(p) for p in pieces])
    assert (ids != sp.unk_id()).all(), f"a piece is missing from the vocab: {pieces}"
    return token_bytes(ids[:-1], ids[1:], tables.to_torch()).tolist()


def test_special_pieces_are_zero_byte_boundaries(sp: spm.SentencePieceProcessor, tables: ByteTables) -> None:
    for i in (sp.pad_id(), sp.bos_id(), sp.eos_id(), sp.unk_id()):
        assert tables.is_boundary[i] and tables.base_bytes[i] == 0 and not tables.leading_space[i]
    assert tables.is_boundary.sum() == 4


def test_byte_fallback_pieces_count_one(sp: spm.SentencePieceProcessor, tables: ByteTables) -> None:
    # "🙂" is F0 9F 99 82 in UTF-8: four byte pieces, one byte each.
    pieces = sp.encode("🙂", out_type=str)
    assert pieces == ["<0xF0>", "<0x9F>", "<0x99>", "<0x82>"]
    assert _count(sp, tables, ["<s>", *pieces]) == [1, 1, 1, 1]
    i = sp.piece_to_id("<0x20>")
    assert sp.is_byte(i) and tables.base_bytes[i] == 1 and not tables.leading_space[i]


def test_leading_space_depends_on_previous_token(sp: spm.SentencePieceProcessor, tables: ByteTables) -> None:
    assert sp.piece_to_id("▁model") != sp.unk_id()
    # After BOS (a boundary) the "▁" is not a real space in the text: 5 bytes for "model".
    assert _count(sp, tables, ["<s>", "▁model"]) == [5]
    # After an ordinary piece it stands for the space: " model" is 6 bytes.
    assert _count(sp, tables, ["the", "▁model"]) == [6]
    # After a byte-fallback piece too: byte pieces are text, not boundaries.
    assert _count(sp, tables, ["<0xF0>", "▁model"]) == [6]
    # Non-ASCII: "▁café" is " café" = 1 + 5 bytes; "ß" alone is 2.
    assert _count(sp, tables, ["the", "▁café", "ß"]) == [6, 2]
    # The bare "▁" piece is a space only: 1 byte after text, 0 after BOS.
    assert _count(sp, tables, ["the", "▁"]) == [1]
    assert _count(sp, tables, ["<s>", "▁"]) == [0]


def test_token_bytes_keeps_shape(tables: ByteTables) -> None:
    prev = torch.randint(0, VOCAB, (3, 7))
    tgt = torch.randint(0, VOCAB, (3, 7))
    out = token_bytes(prev, tgt, tables.to_torch())
    assert out.shape == (3, 7)
    flat = token_bytes(prev.flatten(), tgt.flatten(), tables.to_torch())
    assert torch.equal(out.flatten(), flat)


@pytest.mark.parametrize(
    "text",
    [
        *_lines(30),
        "Hello 🙂 world Ω straße 123",
        "  leading and trailing   spaces\tand a tab\nand a newline  ",
        "ﬁ ligature and circled ① digits",  # NFKC rewrites these
        "über naïve café 日本語 €5",
    ],
)
def test_document_bytes_equal_normalised_utf8_length(
    sp: spm.SentencePieceProcessor, tables: ByteTables, text: str
) -> None:
    """Summed over a document after its BOS, the bytes are the UTF-8 length of the text.

    Of the text *as normalised* (NFKC, whitespace runs collapsed, ends stripped): that
    is what the tokenizer encodes, so raw text differs where normalisation changes
    it. One more such case: a literal "▁" (U+2581) in the input is indistinguishable
    from a space after normalisation and counts 1 byte, not 3.
    """
    ids = torch.from_numpy(encode_documents(sp, [text]).astype(np.int64))
    assert ids[0] == BOS_ID
    counted = int(token_bytes(ids[:-1], ids[1:], tables.to_torch()).sum())
    normalised = sp.normalize(text).replace("▁", " ")
    assert counted == len(normalised.encode("utf-8"))


def test_padding_ids_beyond_tokenizer(sp: spm.SentencePieceProcessor) -> None:
    t = build_byte_tables(sp, VOCAB + 40)
    assert t.vocab_size == VOCAB + 40
    assert (
        t.is_boundary[VOCAB:].all() and not t.base_bytes[VOCAB:].any() and not t.leading_space[VOCAB:].any()
    )
    with pytest.raises(ValueError, match="smaller than the tokenizer"):
        build_byte_tables(sp, VOCAB - 1)


def test_to_torch_dtypes(tables: ByteTables) -> None:
    base, space, boundary = tables.to_torch("cpu")
    assert base.dtype == torch.int32 and space.dtype == torch.bool and boundary.dtype == torch.bool
    assert base.shape == space.shape == boundary.shape == (VOCAB,)


def test_bits_per_byte() -> None:
    assert bits_per_byte(math.log(2) * 10, 5) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="positive"):
        bits_per_byte(1.0, 0)


def _toy_tables() -> ByteTables:
    # id 0: boundary; 1: "a" (1 byte); 2: "▁bc" (2 bytes + space); 3: a byte piece.
    return ByteTables(
        base_bytes=np.array([0, 1, 2, 1], dtype=np.int32),
        leading_space=np.array([False, False, True, False]),
        is_boundary=np.array([True, False, False, False]),
    )


def test_unigram_bpb_by_hand() -> None:
    tables = _toy_tables()
    train_counts = np.array([1, 5, 3, 0])
    val = np.array([0, 2, 1, 2, 3, 0, 2])
    # add-one: p = (c + 1) / (9 + 4)
    p = (train_counts + 1) / 13
    nats = -sum(math.log(p[y]) for y in val[1:])
    # bytes: 2 (▁bc after boundary) + 1 + 3 + 1 + 0 + 2 (after boundary again)
    assert unigram_bpb(train_counts, val, tables) == pytest.approx(nats / math.log(2) / 9)


def test_unigram_bpb_uniform_counts_give_log2_vocab_bits_per_token() -> None:
    tables = _toy_tables()
    val = np.array([1, 1, 1, 1, 1])  # 4 predicted tokens of 1 byte each
    assert unigram_bpb(np.full(4, 7), val, tables) == pytest.approx(2.0)


def test_unigram_bpb_rejects_bad_input() -> None:
    tables = _toy_tables()
    with pytest.raises(ValueError, match="minlength"):
        unigram_bpb(np.ones(3), np.array([1, 1]), tables)
    with pytest.raises(ValueError, match="token ids"):
        unigram_bpb(np.ones(4), np.array([1, 9]), tables)
