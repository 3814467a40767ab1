"""The caption tokeniser against hand-written nltk.word_tokenize(caption.lower()) outputs.

Expectations were written by hand from the Punkt + NLTKWordTokenizer rules of nltk 3.6.2 (the
release the published code ran with) and agree with it on these strings
(scripts/check_tokenizer.py runs the comparison where nltk is installed).
"""

import pytest

from jaxmr.data.tokenize import nltk_word_tokenize, sentence_spans, treebank_tokenize

# (caption, expected tokens joined by single spaces)
CASES = [
    ("A man riding a horse.", "a man riding a horse ."),
    # contractions and possessives
    ("The dog's toy isn't red", "the dog 's toy is n't red"),
    ("They're sure we'll go, I'm told", "they 're sure we 'll go , i 'm told"),
    ("I can't and won't", "i ca n't and wo n't"),
    ("cannot gonna", "can not gon na"),
    # punctuation
    ("Wait; what: this, that!", "wait ; what : this , that !"),
    ("(a cat) [on] {mat}", "( a cat ) [ on ] { mat }"),
    ("is it? yes!", "is it ? yes !"),
    ("and then...", "and then ..."),
    ("50% off, $3 #1 a@b", "50 % off , $ 3 # 1 a @ b"),
    # quotes
    ('He said "hello" to me.', "he said `` hello '' to me ."),
    ('"Quoted" start', "`` quoted '' start"),
    ("a 'single' quote", "a 'single ' quote"),  # nltk >= 3.8 gives ' single
    ("'stop' and 'a' sign", "'stop ' and ' a ' sign"),
    ("two ''quotes''", "two `` quotes ''"),
    # hyphens and dashes
    ("A two-tone, mid-air jump--wow", "a two-tone , mid-air jump -- wow"),
    # numbers
    ("3.5 inches and 1,000 people at 10:30", "3.5 inches and 1,000 people at 10:30"),
    # several sentences: Punkt splits, so every sentence-final period is its own token
    ("A man rides a bike. He wears a helmet.", "a man rides a bike . he wears a helmet ."),
    ('She said "hi." Then left.', "she said `` hi . '' then left ."),
    ("A dog.) A cat.", "a dog . ) a cat ."),
    # abbreviations, initials and numbers before a lower-case word do not end a sentence
    ("Mr. Smith and Dr. Who in the U.S. today.", "mr. smith and dr. who in the u.s. today ."),
    ("Step 2. the end", "step 2. the end"),
    ("Plan B. then more", "plan b. then more"),
    ("the end... and more", "the end ... and more"),
    # CC152K captions come pre-tokenised
    (
        "a wind - driven brush fire was burning out - of - control in the area .",
        "a wind - driven brush fire was burning out - of - control in the area .",
    ),
    ("", ""),
]


@pytest.mark.parametrize(("caption", "tokens"), CASES)
def test_matches_hand_written_nltk_output(caption, tokens):
    assert nltk_word_tokenize(caption) == tokens.split()


def test_sentence_split_is_what_makes_the_difference():
    text = "a dog. a cat."
    assert sentence_spans(text) == ["a dog.", "a cat."]
    # Without the Punkt split the treebank tokeniser only splits the last period.
    assert treebank_tokenize(text) == ["a", "dog.", "a", "cat", "."]
    assert nltk_word_tokenize(text) == ["a", "dog", ".", "a", "cat", "."]
    assert sentence_spans("mr. smith. st. louis") == ["mr. smith.", "st. louis"]
