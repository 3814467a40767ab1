"""Compares jaxmr's data-free caption tokeniser with nltk's Punkt + NLTKWordTokenizer.

Needs nltk (not a jaxmr dependency), but no nltk data: Punkt gets the English model's
abbreviation list from jaxmr.data.tokenize (its orthographic table is left empty). Run with
the nltk the published code used (3.6.2) in a separate environment:

    python -m venv /tmp/nltk362 && /tmp/nltk362/bin/pip install nltk==3.6.2
    /tmp/nltk362/bin/python scripts/check_tokenizer.py caps.txt

(one caption per line; prints the mismatches and their count).
"""

import importlib.util
import os
import sys

from nltk.tokenize import NLTKWordTokenizer
from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

# Load the module by path: it needs only the standard library, the package needs numpy/jax.
_spec = importlib.util.spec_from_file_location(
    "tokenize_", os.path.join(os.path.dirname(__file__), "..", "jaxmr", "data", "tokenize.py")
)
tokenize = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tokenize)


def main(path: str) -> int:
    params = PunktParameters()
    params.abbrev_types = set(tokenize._ABBREVIATIONS)
    punkt, words = PunktSentenceTokenizer(params), NLTKWordTokenizer()
    bad = n = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            text = line.rstrip("\n")
            want = [t for s in punkt.tokenize(text.lower()) for t in words.tokenize(s)]
            got = tokenize.nltk_word_tokenize(text)
            n += 1
            if got != want:
                bad += 1
                print(repr(text), got, want, sep="\n  ")
    print(f"{n} captions, {bad} mismatches")
    return int(bad > 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
