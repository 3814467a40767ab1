"""Caption vocabulary in the SCAN/NCR JSON format.

The file is ``{"word2idx": {word: id}, "idx2word": {"id": word}, "idx": next_id}`` (JSON turns
the integer keys of ``idx2word`` into strings). Ids 0-3 are always ``<pad>``, ``<start>``,
``<end>``, ``<unk>``. The published code looks for ``{vocab_path}/{name}_precomp_vocab.json``
(e.g. ``vocab/f30k_precomp_vocab.json``).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from jaxmr.data.tokenize import nltk_word_tokenize

__all__ = [
    "PAD",
    "SPECIAL_TOKENS",
    "Vocab",
    "build_vocab",
    "load_vocab",
    "save_vocab",
]

SPECIAL_TOKENS = ("<pad>", "<start>", "<end>", "<unk>")
PAD, START, END, UNK = 0, 1, 2, 3


@dataclass
class Vocab:
    """Word <-> id maps; ``encode`` gives the published token ids of a caption."""

    word2idx: dict[str, int]
    idx2word: dict[int, str]

    def __post_init__(self):
        for i, w in enumerate(SPECIAL_TOKENS):
            if self.word2idx.get(w) != i:
                raise ValueError(
                    f"vocab must map {w!r} to id {i} (ids 0-3 = {', '.join(SPECIAL_TOKENS)}); "
                    f"got {self.word2idx.get(w)!r}"
                )

    def __len__(self) -> int:
        return len(self.word2idx)

    def __call__(self, word: str) -> int:
        return self.word2idx.get(word, UNK)

    def encode(self, caption: str) -> list[int]:
        """``[<start>] + ids(word_tokenize(caption.lower())) + [<end>]``, unknown words -> 3."""
        return [START, *(self.word2idx.get(t, UNK) for t in nltk_word_tokenize(caption)), END]


def build_vocab(captions: Iterable[str], *, threshold: int = 4) -> Vocab:
    """Vocabulary of the words seen at least ``threshold`` times, as the published code builds it.

    Words keep the order of their first occurrence after the four special tokens (the
    reference iterates a ``Counter``); NCR/SCAN use ``threshold=4`` over the train and dev
    captions.

    Args:
        captions: raw captions (tokenised with :func:`nltk_word_tokenize`).
        threshold: minimum count of a word.

    Returns:
        :class:`Vocab`.
    """
    counter: Counter[str] = Counter()
    for caption in captions:
        counter.update(nltk_word_tokenize(caption))
    words = [w for w, c in counter.items() if c >= threshold and w not in SPECIAL_TOKENS]
    vocab_words = [*SPECIAL_TOKENS, *words]
    return Vocab(
        word2idx={w: i for i, w in enumerate(vocab_words)},
        idx2word=dict(enumerate(vocab_words)),
    )


def save_vocab(vocab: Vocab, path: str | os.PathLike) -> None:
    """Writes ``vocab`` as ``{"word2idx", "idx2word", "idx"}`` JSON (atomically)."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    data = {
        "word2idx": vocab.word2idx,
        "idx2word": {str(i): w for i, w in vocab.idx2word.items()},
        "idx": len(vocab),
    }
    tmp = f"{path}.{os.getpid()}.tmp"  # one per writer: runs share the cache
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def load_vocab(path: str | os.PathLike) -> Vocab:
    """Reads a vocabulary JSON in the published format.

    Raises:
        FileNotFoundError / ValueError naming the file and what is wrong (missing keys,
        special tokens not at ids 0-3, ``word2idx`` and ``idx2word`` disagreeing).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"vocab file not found: {path}")
    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    missing = [k for k in ("word2idx", "idx2word") if k not in data]
    if missing:
        raise ValueError(f"{path}: missing key(s) {missing}; expected word2idx, idx2word, idx")
    word2idx = {str(w): int(i) for w, i in data["word2idx"].items()}
    idx2word = {int(i): str(w) for i, w in data["idx2word"].items()}
    if any(idx2word.get(i) != w for w, i in word2idx.items()):
        raise ValueError(f"{path}: word2idx and idx2word disagree")
    try:
        return Vocab(word2idx=word2idx, idx2word=idx2word)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e
