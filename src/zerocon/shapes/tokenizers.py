"""Tokenizers over the ShapesWorld vocabulary, written locally (no hub download).

:func:`build_clip_tokenizer` writes a byte-pair ``vocab.json`` / ``merges.txt`` in which every word of the
world (or of any word list: the tests' tiny models use it too) is a single token (the merges spell each word
left to right), so a caption is 7 tokens plus ``<|startoftext|>`` / ``<|endoftext|>``; letters stay in the
vocabulary so unknown words still tokenize.
:func:`build_bert_tokenizer` writes a WordPiece ``vocab.txt`` for the BLIP captioner.
"""

from __future__ import annotations

import json
import os
import string
from collections.abc import Iterable, Sequence
from pathlib import Path

from transformers import BertTokenizer, CLIPTokenizer

from zerocon.shapes.world import VOCABULARY

CLIP_MAX_LENGTH = 16
"""Token positions of the CLIP text encoder (a caption needs 9)."""
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def byte_alphabet() -> list[str]:
    """The 256 printable characters byte-level BPE (GPT-2, CLIP) maps bytes to: any text tokenizes with them."""
    from tokenizers.pre_tokenizers import ByteLevel

    return sorted(ByteLevel.alphabet())


def build_clip_tokenizer(
    folder: str | os.PathLike,
    max_length: int = CLIP_MAX_LENGTH,
    words: Sequence[str] = VOCABULARY,
    alphabet: Iterable[str] = string.ascii_lowercase,
) -> CLIPTokenizer:
    """Write ``vocab.json`` and ``merges.txt`` in which each of ``words`` is one token into ``folder``.

    The single characters of ``alphabet`` (with and without the end-of-word mark) stay in the vocabulary, so
    other words still tokenize, letter by letter; :func:`byte_alphabet` makes every text tokenizable.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab: dict[str, int] = {}
    merges: list[str] = []

    def add(token: str) -> None:
        vocab.setdefault(token, len(vocab))

    add(BOS)
    add(EOS)
    for ch in alphabet:
        add(ch)
        add(ch + "</w>")
    for word in words:
        # apply the merges so far the way BPE does (lowest rank first), then add merges that join what is
        # left from left to right; new merges rank last, so the words before are not affected
        symbols = _bpe([*word[:-1], word[-1] + "</w>"], {m: i for i, m in enumerate(merges)})
        current = symbols[0]
        for sym in symbols[1:]:
            merges.append(f"{current} {sym}")
            current += sym
            add(current)
    (folder / "vocab.json").write_text(json.dumps(vocab, indent=0))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return CLIPTokenizer(
        str(folder / "vocab.json"),
        str(folder / "merges.txt"),
        model_max_length=max_length,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=EOS,
        unk_token=EOS,
    )


def _bpe(symbols: list[str], ranks: dict[str, int]) -> list[str]:
    """Byte-pair encoding of one word: repeatedly merge the adjacent pair with the lowest rank."""
    symbols = list(symbols)
    while len(symbols) > 1:
        pairs = [(ranks.get(f"{a} {b}"), i) for i, (a, b) in enumerate(zip(symbols, symbols[1:]))]
        pairs = [p for p in pairs if p[0] is not None]
        if not pairs:
            break
        _, i = min(pairs)
        symbols[i : i + 2] = [symbols[i] + symbols[i + 1]]
    return symbols


BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def build_bert_tokenizer(folder: str | os.PathLike) -> BertTokenizer:
    """Write a WordPiece ``vocab.txt`` of the world's words into ``folder``; return the tokenizer."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    words = [*BERT_SPECIALS, *VOCABULARY, *string.ascii_lowercase]
    (folder / "vocab.txt").write_text("\n".join(dict.fromkeys(words)) + "\n")
    return BertTokenizer(str(folder / "vocab.txt"), model_max_length=CLIP_MAX_LENGTH)
