"""Caption tokeniser equal to ``nltk.word_tokenize(caption.lower())``, with no nltk data.

The SCAN/NCR/DECL/RCL code builds its vocabularies and token ids with
``nltk.tokenize.word_tokenize(caption.lower())``. That call does two things:

1. splits the text into sentences with the pre-trained Punkt model (``punkt`` data, a
   download), then
2. runs ``NLTKWordTokenizer`` (an improved Penn Treebank tokeniser: a fixed list of regular
   expressions, no data) on each sentence and concatenates the tokens.

Step 2 is reproduced here regex for regex from nltk 3.6.2 (April 2021, the release NCR's code
ran with; later releases split a leading apostrophe off any word, ``'stop`` -> ``' stop``,
while the published COCO vocabulary holds ``'stop``, ``'no``, ``'do``). Step 1 matters
only through the treebank rule that splits a period off the *last* word of a sentence:
``"a dog. a cat."`` gives ``a dog . a cat .`` with Punkt and ``a dog. a cat .`` without it.
On lower-cased text Punkt's decision reduces to a few rules (its orthographic heuristics
need an upper-case next word to add a break, so they can only remove one), implemented in
:func:`sentence_spans`:

* a ``.`` ends a sentence when followed by white space or by one of ``)";}]*:@'({[?!``;
* except after an abbreviation of the English Punkt model (``mr``, ``dr``, ``st``, ``u.s``,
  ... the list below, copied from nltk_data's ``punkt_tab/english/abbrev_types.txt``), an
  ellipsis (``..``), or an initial (one letter) or a number when the next token starts with
  a lower-case letter or is one of ``;:,.!?``;
* closing quotes and brackets right after the boundary stay with the sentence that ends.

The one difference left: Punkt's orthographic table can keep a break after an initial or a
number when the next word was only ever seen lower case in its training text; such words
are rare and the case needs a caption with ``"x. word"`` or ``"3. word"`` inside it.
"""

from __future__ import annotations

import re

__all__ = ["nltk_word_tokenize", "sentence_spans", "treebank_tokenize"]

# nltk_data punkt_tab/english/abbrev_types.txt (Punkt's learned English abbreviations).
_ABBREVIATIONS = frozenset(
    """ct m.j t a.c n.h ms p.a.m dr pa p.m u.k st dec u.s.a lt g.k adm p h.m ga tenn yr sen n.c
    j.j d.h s.g inc vs s.p.a a.t n feb sr jan s.a.y n.y col g.f c.o.m.b d ft va r.k e.f chg
    r.i a.g minn a.h k n.j m l.f f.j gen i.m.s s.a aug j.p okla m.d.c ltd oct s vt r.a j.c
    ariz w.w b.v ore h w.r e.h mrs cie corp w n.v a.d r.j ok e.m w.c ill nov u.s prof conn
    u.s.s.r mg f.g ph.d g calif messrs h.f wash tues sw bros u.n l wis mr sep d.c ave e.l co
    s.s reps c r.t h.c r wed a.s v fla jr r.h c.v m.b.a rep a.a e c.i.t l.a b.f j.b d.w j.k
    ala f w.va sept mich n.m j.r l.p s.c colo fri a.m g.d kan maj ky a.m.e n.d t.j cos
    nev""".split()
)

# ---------------------------------------------------------------- treebank word tokeniser
_STARTING_QUOTES = [
    (re.compile("([«“‘„]|[`]+)"), r" \1 "),
    (re.compile(r"^\""), r"``"),
    (re.compile(r"(``)"), r" \1 "),
    (re.compile(r"([ \(\[{<])(\"|\'{2})"), r"\1 `` "),
    (re.compile(r"(?i)(\')(?!re|ve|ll|m|t|s|d|n)(\w)\b"), r"\1 \2"),
]
_PUNCTUATION = [
    (re.compile(r'([^\.])(\.)([\]\)}>"\'' "»”’ " r"]*)\s*$"), r"\1 \2 \3 "),
    (re.compile(r"([:,])([^\d])"), r" \1 \2"),
    (re.compile(r"([:,])$"), r" \1 "),
    (re.compile(r"\.{2,}"), r" \g<0> "),
    (re.compile(r"[;@#$%&]"), r" \g<0> "),
    (re.compile(r'([^\.])(\.)([\]\)}>"\']*)\s*$'), r"\1 \2\3 "),
    (re.compile(r"[?!]"), r" \g<0> "),
    (re.compile(r"([^'])' "), r"\1 ' "),
    (re.compile(r"[*]"), r" \g<0> "),
]
_PARENS_BRACKETS = (re.compile(r"[\]\[\(\)\{\}\<\>]"), r" \g<0> ")
_DOUBLE_DASHES = (re.compile(r"--"), r" -- ")
_ENDING_QUOTES = [
    (re.compile("([»”’])"), r" \1 "),
    (re.compile(r'"'), " '' "),
    (re.compile(r"(\S)(\'\')"), r"\1 \2 "),
    (re.compile(r"([^' ])('[sS]|'[mM]|'[dD]|') "), r"\1 \2 "),
    (re.compile(r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) "), r"\1 \2 "),
]
_CONTRACTIONS = [
    re.compile(p)
    for p in (
        r"(?i)\b(can)(not)\b",
        r"(?i)\b(d)('ye)\b",
        r"(?i)\b(gim)(me)\b",
        r"(?i)\b(gon)(na)\b",
        r"(?i)\b(got)(ta)\b",
        r"(?i)\b(lem)(me)\b",
        r"(?i)\b(more)('n)\b",
        r"(?i)\b(wan)(na)(?=\s)",
        r"(?i) ('t)(is)\b",
        r"(?i) ('t)(was)\b",
    )
]


def treebank_tokenize(sentence: str) -> list[str]:
    """``nltk.tokenize.NLTKWordTokenizer().tokenize(sentence)`` (nltk 3.6), on one sentence.

    Args:
        sentence: text already split into one sentence (the final-period rule applies to
            the end of the string only).

    Returns:
        list of tokens.
    """
    text = sentence
    for regexp, sub in _STARTING_QUOTES:
        text = regexp.sub(sub, text)
    for regexp, sub in _PUNCTUATION:
        text = regexp.sub(sub, text)
    text = _PARENS_BRACKETS[0].sub(_PARENS_BRACKETS[1], text)
    text = _DOUBLE_DASHES[0].sub(_DOUBLE_DASHES[1], text)
    text = " " + text + " "
    for regexp, sub in _ENDING_QUOTES:
        text = regexp.sub(sub, text)
    for regexp in _CONTRACTIONS:
        text = regexp.sub(r" \1 \2 ", text)
    return text.split()


# ----------------------------------------------------------------- Punkt on lower-case text
_NON_WORD_CHARS = ")\";}\\]*:@'({[\u2018\u2019\u201c\u201d\xab\xbb?!"
_NON_WORD = "[" + re.escape(_NON_WORD_CHARS) + "]"
# A potential boundary: a sentence-end character followed by a non-word character, or by
# white space and a next token (Punkt's period-context expression).
_PERIOD_CONTEXT = re.compile(r"[.?!](?=(" + _NON_WORD + r"|\s+(\S+)))")
_MULTI_CHAR = r"(?:\-{2,}|\.{2,}|(?:\.\s){2,}\.)"
# Punkt's own word tokeniser (splits off punctuation other than periods).
_PUNKT_WORDS = re.compile(
    rf"""({_MULTI_CHAR}
    |(?=[^\(\"\`{{\[:;&\#\*@\)}}\]\-,])\S+?
     (?=\s|$|{_NON_WORD}|{_MULTI_CHAR}|,(?=$|\s|{_NON_WORD}|{_MULTI_CHAR}))
    |\S)""",
    re.VERBOSE,
)
_NUMBER = re.compile(r"^-?[\.,]?\d[\d,\.-]*\.?$")
_INITIAL = re.compile(r"^[^\W\d]\.$")
_ELLIPSIS = re.compile(r"^\.\.+$")
_CLOSERS = re.compile(r"[\"\')\]}\u2018\u2019\u201c\u201d\xab\xbb]+?(?=\s|--|$)")


def _token_breaks(tok: str, nxt: str | None) -> bool:
    """Punkt's decision for one word token on lower-case text, given the next token."""
    if tok in (".", "?", "!"):
        return True
    if _ELLIPSIS.match(tok) or not tok.endswith(".") or tok.endswith(".."):
        return False  # an ellipsis breaks only before an upper-case word
    stem = tok[:-1]
    if stem in _ABBREVIATIONS or stem.split("-")[-1] in _ABBREVIATIONS:
        return False  # abbreviations break only before an upper-case word
    if nxt is not None and (_INITIAL.match(tok) or _NUMBER.match(tok)):
        # Orthographic heuristic: a lower-case word or internal punctuation next means
        # the initial/number is not a sentence end.
        if nxt[:1].islower() or nxt in (";", ":", ",", ".", "!", "?"):
            return False
    return True


def _context_has_break(context: str) -> bool:
    """Punkt's ``text_contains_sentbreak``: a break before the context's last token."""
    toks = _PUNKT_WORDS.findall(context)
    return any(_token_breaks(t, n) for t, n in zip(toks[:-1], toks[1:], strict=True))


def sentence_spans(text: str) -> list[str]:
    """Sentences of a lower-cased text as Punkt's English model splits it (see module doc).

    Args:
        text: lower-cased text.

    Returns:
        the sentences, stripped of surrounding white space (empty text: ``[]``).
    """
    matches = list(_PERIOD_CONTEXT.finditer(text))
    out, start, word_start = [], 0, 0
    for i, m in enumerate(matches):
        # The word before the boundary starts after the last white space (or where the
        # previous candidate's word started, when nothing separates them).
        before = text[word_start : m.start()]
        space = max(before.rfind(" "), before.rfind("\t"), before.rfind("\n"))
        if space >= 0:
            word_start = word_start + space + 1
        if (
            i + 1 < len(matches)
            and word_start <= matches[i + 1].start()
            and not any(c.isspace() for c in text[m.end() : matches[i + 1].start()])
        ):
            continue  # overlaps the next candidate ("?!", "!!!"): only the last one counts
        context = text[word_start : m.end()] + m.group(1)
        if not _context_has_break(context):
            continue
        # The next sentence starts at the next token; closing quotes/brackets opening it
        # go back to the sentence that ends (Punkt's boundary realignment).
        end = m.end()
        nxt = end + len(text[end:]) - len(text[end:].lstrip())
        closers = _CLOSERS.match(text, nxt)
        if closers:
            end = closers.end()
        if text[start:end].strip():
            out.append(text[start:end].strip())
        start = end
        word_start = end
    if text[start:].strip():
        out.append(text[start:].strip())
    return out


def nltk_word_tokenize(caption: str) -> list[str]:
    """``nltk.word_tokenize(caption.lower())`` without nltk or its Punkt data.

    Args:
        caption: raw caption.

    Returns:
        list of lower-case tokens, e.g. ``"A dog's toy, isn't it?"`` ->
        ``['a', 'dog', "'s", 'toy', ',', 'is', "n't", 'it', '?']``.
    """
    return [tok for sent in sentence_spans(caption.lower()) for tok in treebank_tokenize(sent)]
