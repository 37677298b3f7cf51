"""Words of the index within one or two typos of a given word, looked up in memory.

Whoosh's `terms_within` walks a Levenshtein automaton over the on-disk term dictionary with a
file seek per step, and its spelling corrector runs it once per distance: 10 to 30 ms per word.
Here each segment's word list is read once into a sorted list (segments never change), and the
same automaton from Whoosh is walked over those lists with `bisect`, in about a millisecond.
"""

from __future__ import annotations

from bisect import bisect_left
from functools import lru_cache

from whoosh.automata import lev
from whoosh.automata.fsa import DFA, find_all_matches
from whoosh.reading import IndexReader

from wiki.search import vector

MAX_MATCHES = 50  # a short word two typos from much of the vocabulary stops here


@lru_cache(maxsize=512)
def _automaton(word: str, maxdist: int, prefix: int) -> DFA:
    return lev.levenshtein_automaton(word, maxdist, prefix).to_dfa()


def _words(leaf: IndexReader, segid: str, fieldname: str) -> list[str]:
    """The sorted words of one segment's field (cached: a segment's words never change)."""

    def load() -> tuple[list[str]]:
        return ([w.decode("utf-8") for w in leaf.lexicon(fieldname)],)

    return vector.cached(("w", segid, fieldname), load)[0]


def within(
    reader: IndexReader, fieldname: str, word: str, maxdist: int, prefix: int = 1
) -> list[str]:
    """Indexed words of the field (its spelling list, for a stemmed field) at most `maxdist`
    edits from `word` and sharing its first `prefix` letters, in order."""
    schema = reader.schema
    if fieldname not in schema or not word:
        return []
    fieldname = schema[fieldname].spelling_fieldname(fieldname)
    if fieldname not in schema:
        return []
    lists = [_words(leaf, segid, fieldname) for leaf, _, segid in vector.segments(reader)]

    def lookup(key: str) -> str | None:
        """The first word of any segment at or after key."""
        best = None
        for words in lists:
            i = bisect_left(words, key)
            if i < len(words) and (best is None or words[i] < best):
                best = words[i]
        return best

    found = []
    for match in find_all_matches(_automaton(word, maxdist, prefix), lookup):
        found.append(match)
        if len(found) >= MAX_MATCHES:
            break
    return found
