"""Captions of the offline scenes benchmark: templates, synonyms, context clauses, vocab.

A caption describes only the scene's shared factors (object kind, size, colour, position
bin; see :mod:`jaxmr.data.scenes`) and adds text-exclusive content drawn independently of
the image: a template (word order), a synonym for each described slot, and a context clause
("in the morning", "as seen from afar", ...) that no image depicts. Every caption is lower
case words, commas and one final period, so ``nltk.word_tokenize(c.lower())`` and
:func:`tokenize_caption` give the same tokens (tested in ``tests/data/test_scenes.py``).

The vocabulary is built from the word tables, not from the generated data, so every split,
size and seed shares one vocab file, written in the SCAN/NCR JSON layout
(``word2idx``, ``idx2word`` with string keys, ``idx``; ids 0-3 are ``<pad>``, ``<start>``,
``<end>``, ``<unk>``).
"""

from __future__ import annotations

import json
import os
import re

import numpy as np

KINDS = ("square", "oval", "triangle", "cross")
SIZES = ("small", "large")
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple")
ROWS = ("top", "middle", "bottom")
COLUMNS = ("left", "centre", "right")

# Three synonyms per value; index 0 is the canonical word.
KIND_WORDS = (
    ("square", "box", "block"),
    ("oval", "ellipse", "egg"),
    ("triangle", "wedge", "pyramid"),
    ("cross", "plus sign", "cross mark"),
)
SIZE_WORDS = (("small", "little", "tiny"), ("large", "big", "huge"))
COLOUR_WORDS = (
    ("red", "crimson", "scarlet"),
    ("orange", "amber", "tangerine"),
    ("yellow", "golden", "lemon"),
    ("green", "emerald", "lime"),
    ("blue", "azure", "navy"),
    ("purple", "violet", "magenta"),
)
# POSITION_WORDS[row][column]: three phrasings of each of the 3 x 3 position bins.
POSITION_WORDS = (
    (
        ("in the top left corner", "at the upper left", "near the top left"),
        ("at the top", "near the top edge", "in the upper middle"),
        ("in the top right corner", "at the upper right", "near the top right"),
    ),
    (
        ("on the left", "at the left side", "near the left edge"),
        ("in the centre", "in the middle", "at the very centre"),
        ("on the right", "at the right side", "near the right edge"),
    ),
    (
        ("in the bottom left corner", "at the lower left", "near the bottom left"),
        ("at the bottom", "near the bottom edge", "in the lower middle"),
        ("in the bottom right corner", "at the lower right", "near the bottom right"),
    ),
)
# Context clauses: text-exclusive content, long enough (3-6 words) that an encoder pooling
# all words equally is dominated by them unless it learns to ignore them.
CONTEXTS = (
    "in the early morning",
    "as seen from afar",
    "on a rainy afternoon",
    "in an old faded photograph",
    "late at night under a lamp",
    "through a dusty window",
    "in the middle of summer",
    "as drawn by a young child",
    "under bright studio lights",
    "shown on a small screen",
)
# Word-order templates over the slots {a} (article), {size}, {colour}, {kind}, {pos}, {ctx}.
TEMPLATES = (
    "{a} {size} {colour} {kind} {pos}, {ctx}.",
    "{ctx}, there is {a} {size} {colour} {kind} {pos}.",
    "{pos} sits {a} {colour} {kind} of {size} size, {ctx}.",
    "the {kind} {pos} is {colour} and {size}, {ctx}.",
    "{ctx}, {a} {colour} {kind}, quite {size}, {pos}.",
)
ARTICLES = ("a", "one")
TEXT_EXCLUSIVE_NAMES = (
    "template",
    "context",
    "kind_synonym",
    "size_synonym",
    "colour_synonym",
    "position_synonym",
    "article",
)
TEXT_EXCLUSIVE_CARDINALITIES = (
    len(TEMPLATES),
    len(CONTEXTS),
    3,
    3,
    3,
    3,
    len(ARTICLES),
)
SPECIAL_TOKENS = ("<pad>", "<start>", "<end>", "<unk>")
_TOKEN_RE = re.compile(r"[a-z0-9]+|[.,]")


def tokenize_caption(caption: str) -> list[str]:
    """Tokens of a benchmark caption, equal to ``nltk.word_tokenize(caption.lower())`` on
    every caption this module writes (lower-case words, commas, one final period)."""
    return _TOKEN_RE.findall(caption.lower())


def sample_text_exclusive(n: int, *, rng: np.random.Generator) -> np.ndarray:
    """``[n, 7]`` int32 text-exclusive choices, uniform and independent, in
    ``TEXT_EXCLUSIVE_NAMES`` order."""
    cols = [rng.integers(0, c, size=n) for c in TEXT_EXCLUSIVE_CARDINALITIES]
    return np.stack(cols, axis=1).astype(np.int32)


def render_caption(shared: np.ndarray, text: np.ndarray) -> str:
    """One caption from shared factors ``[kind, size, colour, row, column]`` and the
    text-exclusive choices ``[template, context, kind/size/colour/position synonyms,
    article]``."""
    kind, size, colour, row, col = (int(v) for v in shared)
    template, ctx, k_syn, s_syn, c_syn, p_syn, art = (int(v) for v in text)
    return TEMPLATES[template].format(
        a=ARTICLES[art],
        size=SIZE_WORDS[size][s_syn],
        colour=COLOUR_WORDS[colour][c_syn],
        kind=KIND_WORDS[kind][k_syn],
        pos=POSITION_WORDS[row][col][p_syn],
        ctx=CONTEXTS[ctx],
    )


def render_captions(shared_per_caption: np.ndarray, text_exclusive: np.ndarray) -> list[str]:
    """Captions for ``[N_caps, 5]`` shared factors and ``[N_caps, 7]`` text choices."""
    if shared_per_caption.shape[0] != text_exclusive.shape[0]:
        raise ValueError(
            f"shared_per_caption {shared_per_caption.shape} and text_exclusive "
            f"{text_exclusive.shape} must have the same number of rows"
        )
    return [render_caption(s, t) for s, t in zip(shared_per_caption, text_exclusive, strict=True)]


def vocabulary_words() -> list[str]:
    """Every token a caption can contain, sorted (specials excluded)."""
    phrases = [w for table in (KIND_WORDS, SIZE_WORDS, COLOUR_WORDS) for row in table for w in row]
    phrases += [p for rows in POSITION_WORDS for cols in rows for p in cols]
    phrases += [*CONTEXTS, *ARTICLES]
    phrases += [re.sub(r"\{[a-z]+\}", " ", t) for t in TEMPLATES]
    return sorted({tok for p in phrases for tok in tokenize_caption(p)})


def vocab_json() -> dict:
    """The vocab in the SCAN/NCR JSON layout (``idx2word`` keys are strings, as JSON makes
    them when the field's code serialises its integer-keyed dict)."""
    words = [*SPECIAL_TOKENS, *vocabulary_words()]
    word2idx = {w: i for i, w in enumerate(words)}
    return {
        "word2idx": word2idx,
        "idx2word": {str(i): w for i, w in enumerate(words)},
        "idx": len(words),
    }


def write_vocab(path: str | os.PathLike) -> None:
    """Writes :func:`vocab_json` to ``path`` (parent folders created)."""
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(vocab_json(), f)
