"""Queries against the index: safe parsing, ranking, snippets, did-you-mean, suggestions.

Any user string is accepted: it is cleaned (length cap, control characters), parsed with a
plugin set that cannot explode (no regex, ranges, leading or lone wildcards), and a parse that
still fails gives an empty result with a message instead of an error. Knows nothing of HTTP.
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

from markupsafe import Markup, escape
from whoosh import highlight, qparser, query
from whoosh.reading import IndexReader
from whoosh.searching import Searcher

from wiki.search import spelling, vector
from wiki.search.index import PAGE, deep_stem, ensure_current, exact_key, make_schema

log = logging.getLogger("wiki.search")

MAX_QUERY = 500
PER_PAGE = 20
MAX_PAGE = 50
SNIPPET_CHARS = 240
SUGGEST_LIMIT = 8

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_FIELD = re.compile(r"(?i)(?<![\w:])(title|body|tags?):")
_BAD_STAR = re.compile(r"(?:(?<![\w])\*+)|(?<=\b\w)\*")  # lone, leading, one-letter prefix
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
_ALIASES = {"tag": "tags"}
_OPERATORS = {"and", "or", "not", "andnot", "andmaybe", "title", "body", "tags", "tag"}


@dataclass
class Hit:
    slug: str
    title: str
    snippet: Markup
    tags: list[str]
    updated: datetime | None


@dataclass
class SearchResults:
    """One page of results, with what the user should be told about their query."""

    query: str
    page: int = 1
    total: int = 0
    hits: list[Hit] = field(default_factory=list)
    per_page: int = PER_PAGE
    truncated: bool = False
    approximate: bool = False
    corrected: str | None = None
    message: str | None = None

    @property
    def pages(self) -> int:
        return max(1, min(MAX_PAGE, math.ceil(self.total / self.per_page)))

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages

    @property
    def prev_num(self) -> int:
        return self.page - 1

    @property
    def next_num(self) -> int:
        return self.page + 1


def clean(raw: str) -> tuple[str, bool]:
    """The query as searched: control characters out, spaces collapsed, at most MAX_QUERY chars."""
    text = unicodedata.normalize("NFC", _CONTROL.sub(" ", raw or ""))
    text = " ".join(text.split())
    truncated = len(text) > MAX_QUERY
    return text[:MAX_QUERY].strip(), truncated


def _prepare(text: str) -> str:
    """Field aliases in lower case and only safe wildcards (`dock*`, at least two letters)."""
    text = _FIELD.sub(lambda m: _ALIASES.get(m.group(1).lower(), m.group(1).lower()) + ":", text)
    return _BAD_STAR.sub(" ", text).replace("?", " ")


@lru_cache(maxsize=1)
def _parser() -> qparser.MultifieldParser:
    """A multifield parser with only plugins whose cost is bounded (built once)."""
    parser = qparser.MultifieldParser(["title", "body", "tags"], make_schema())
    for plugin in (
        qparser.WildcardPlugin,
        qparser.RangePlugin,
        qparser.BoostPlugin,
        qparser.EveryPlugin,
        qparser.SingleQuotePlugin,
        qparser.FieldsPlugin,
    ):
        parser.remove_plugin_class(plugin)
    parser.add_plugin(qparser.FieldsPlugin(expr=r"(?P<text>title|body|tags):"))
    parser.add_plugin(qparser.PrefixPlugin())
    return parser


def parse(text: str) -> query.Query | None:
    """The Whoosh query for cleaned text, or None when nothing searchable is left."""
    try:
        q = _parser().parse(_prepare(text)).accept(_tidy).normalize()
    except Exception:  # noqa: BLE001  (a parser bug must not become a 500)
        return None
    if isinstance(q, type(query.NullQuery)):
        return None
    if _has_not(q):
        # Whoosh 2.7.5's Not matches deleted documents (old versions of updated pages) and the
        # bookkeeping documents: a term every live page has walks live pages only.
        q = query.And([query.Term("kind", PAGE), q])
    return q


def _has_not(q: query.Query) -> bool:
    return isinstance(q, query.Not) or any(_has_not(c) for c in q.children())


_TAG = re.compile(r"^[\w-]+$")


def _tidy(node: query.Query) -> query.Query:
    """Tag clauses as tags are stored: a quoted phrase is a hyphenated tag, punctuation none."""
    if getattr(node, "fieldname", None) != "tags":
        return node
    if isinstance(node, query.Phrase):
        return query.Term("tags", "-".join(node.words).lower())
    if isinstance(node, query.Term | query.Prefix) and not _TAG.match(node.text):
        return query.NullQuery
    return node


def _fuzzy(q: query.Query, reader: IndexReader) -> query.Query:
    """The query with each word widened to indexed words one or two typos away.

    Whoosh's FuzzyTerm looks words up in the unstemmed spelling list of a stemmed field, then
    searches them in the stemmed field, where they do not exist; so expand and stem here.
    """

    def swap(node: query.Query) -> query.Query:
        if isinstance(node, query.Term) and node.fieldname in ("title", "body"):
            dist = 2 if len(node.text) > 5 else 1
            source = "title" if node.fieldname == "title" else "words"
            near = spelling.within(reader, source, node.text, dist)[:20]
            stems = sorted({deep_stem(word) for word in near})
            if stems:
                return query.Or([query.Term(node.fieldname, t, boost=node.boost) for t in stems])
        return node

    return q.accept(swap).normalize()


def _formatter() -> highlight.HtmlFormatter:
    return highlight.HtmlFormatter(tagname="mark", classname="match", termclass="term")


SURROUND = 60  # characters of context the fragmenter keeps around a match
_FRAGMENTER = highlight.ContextFragmenter(maxchars=SNIPPET_CHARS, surround=SURROUND)


def _window(body: str, finder: re.Pattern | None) -> str:
    """The part of the body around the first match: highlighting all 4 KB costs too much.

    Just what the fragmenter can use: its context before the match and a snippet after it.
    """
    match = finder.search(body) if finder is not None else None
    start = max(0, match.start() - SURROUND - 20) if match else 0
    if start:
        start = body.find(" ", start) + 1 or start
    return body[start : start + SNIPPET_CHARS + SURROUND + 40]


def _snippet(body: str, words: frozenset[str], finder: re.Pattern | None) -> Markup:
    """The best passage with matches in <mark>; Whoosh escapes the text before marking it."""
    if words:
        marked = highlight.highlight(
            _window(body, finder), words, _ANALYZER, _FRAGMENTER, _formatter(), top=1
        )
        if marked:
            return Markup(marked)  # noqa: S704  (HtmlFormatter escaped the text around the marks)
    text = body[:SNIPPET_CHARS]
    return escape(text + ("…" if len(body) > SNIPPET_CHARS else ""))


_ANALYZER = make_schema()["body"].analyzer


def _finder(q: query.Query) -> re.Pattern | None:
    """A regex for where the body probably matches (stems, minus a letter for y/i changes)."""
    stems = {
        text[: max(3, len(text) - 1)]
        for fieldname, text in q.iter_all_terms()
        if fieldname == "body" and isinstance(text, str)
    }
    stems |= {p.text for p in q.leaves() if isinstance(p, query.Prefix) and p.fieldname == "body"}
    if not stems:
        return None
    return re.compile(r"(?i)\b(?:" + "|".join(map(re.escape, sorted(stems))) + ")")


def _hit(searcher: Searcher, docnum: int, words: frozenset[str], finder: re.Pattern | None) -> Hit:
    fields = searcher.stored_fields(docnum)
    body = fields.get("body", "")
    return Hit(
        slug=fields["slug"],
        title=fields["title"],
        snippet=_snippet(body, words, finder),
        tags=(fields.get("tags") or "").split(),
        updated=fields.get("updated"),
    )


def _body_words(searcher: Searcher, q: query.Query) -> frozenset[str]:
    """The indexed body words the query looks for (prefixes expanded), to mark in snippets."""
    # Leaf by leaf: Whoosh 2.7.5's Query.existing_terms reuses its `fieldname` argument as a
    # loop variable, so on a whole tree it keeps only the first leaf's field.
    reader = searcher.reader()
    return frozenset(
        text.decode("utf-8")
        for leaf in q.leaves()
        if leaf.field() == "body"
        for _, text in leaf.existing_terms(reader, phrases=True, expand=True)
    )


def _ranked(searcher: Searcher, q: query.Query, text: str, limit: int) -> tuple[list[int], int]:
    """The best `limit` document numbers for q (an exact title match first) and the count."""
    try:
        ranked = vector.run(searcher, q, limit)
        docnums, total = ranked.docnums, ranked.total
    except vector.Unsupported:
        # A query form the array evaluator does not handle (a phrase with slop): Whoosh's
        # matchers, counting every match. No mask: Whoosh 2.7.5's FilterCollector rescans the
        # mask bitset per document; bookkeeping documents match no user query anyway.
        results = searcher.search(q, limit=None)
        docnums, total = [h.docnum for h in results[:limit]], len(results)
    exact = searcher.document_number(title_exact=exact_key(text.strip('"')))
    if exact is not None:
        if exact in docnums:
            docnums.remove(exact)
        else:
            total += 1
        docnums.insert(0, exact)
    return docnums[:limit], total


def _correction(searcher: Searcher, word: str) -> str | None:
    """The indexed word closest to `word` (one typo before two), the most used one on ties.

    Only words a published page still has: the spelling lists keep words of pages edited or
    deleted since the last rebuild, which must not be suggested.
    """
    reader = searcher.reader()
    for dist in (1, 2):
        near = {
            *spelling.within(reader, "title", word, dist),
            *spelling.within(reader, "words", word, dist),
        }
        near.discard(word)
        used = {w: vector.pages_with(searcher, ["title", "body"], deep_stem(w)) for w in near}
        best = sorted((-n, w) for w, n in used.items() if n)
        if best:
            return best[0][1]
    return None


def _did_you_mean(searcher: Searcher, text: str) -> str | None:
    """The query with words the index never saw replaced by the closest word it has."""
    reader = searcher.reader()
    changed = False

    def fix(match: re.Match) -> str:
        nonlocal changed
        word = match.group(0)
        low = word.lower()
        if low in _OPERATORS or len(low) < 3 or low.isdigit():
            return word
        for fieldname in ("spell_title", "words", "tags"):
            if (fieldname, low) in reader:
                return word
        found = _correction(searcher, low)
        if found is None:
            return word
        changed = True
        return found

    fixed = _WORD.sub(fix, text)
    return fixed if changed and fixed != text else None


def search(raw: str, page: int = 1, per_page: int = PER_PAGE) -> SearchResults:
    """Run a user's query: ranked, highlighted page `page` of the results, never an error."""
    text, truncated = clean(raw)
    out = SearchResults(
        query=text, page=max(1, min(page, MAX_PAGE)), per_page=per_page, truncated=truncated
    )
    if not text:
        return out
    q = parse(text)
    if q is None:
        out.message = "That query has no words to search for: try plain words (tips below)."
        return out
    try:
        return _run(out, q, text, per_page)
    except OSError:
        # Another process merged segments while this snapshot was open and Whoosh opens some
        # segment files lazily: retry once on the current snapshot.
        log.info("search snapshot went stale mid-query; retrying on the current one")
        return _run(out, q, text, per_page)


def _run(out: SearchResults, q: query.Query, text: str, per_page: int) -> SearchResults:
    searcher = ensure_current()
    limit = out.page * per_page
    used = q
    docnums, total = _ranked(searcher, q, text, limit)
    if total == 0:
        out.corrected = _did_you_mean(searcher, text)
        used = _fuzzy(q, searcher.reader())
        docnums, total = _ranked(searcher, used, text, limit)
        out.approximate = total > 0
    elif total < 5:
        out.corrected = _did_you_mean(searcher, text)
    out.total = total
    out.page = min(out.page, out.pages)
    start = (out.page - 1) * per_page
    finder, words = _finder(used), _body_words(searcher, used)
    out.hits = [_hit(searcher, n, words, finder) for n in docnums[start : start + per_page]]
    return out


@dataclass
class Suggestion:
    title: str
    slug: str


def suggest(raw: str, limit: int = SUGGEST_LIMIT) -> list[Suggestion]:
    """Titles for the autocomplete box: prefix matches first, then close spellings."""
    text, _ = clean(raw)
    words = [w.lower() for w in _WORD.findall(text)][:8]
    if not words:
        return []
    searcher = ensure_current()
    found: list[Suggestion] = []
    seen: set[str] = set()

    def add(q: query.Query) -> None:
        for docnum in vector.run(searcher, q, limit).docnums:
            fields = searcher.stored_fields(docnum)
            if fields["slug"] not in seen and len(found) < limit:
                seen.add(fields["slug"])
                found.append(Suggestion(fields["title"], fields["slug"]))

    head = [query.Term("title_words", w) for w in words[:-1]]
    add(query.Prefix("title_exact", exact_key(text)))
    add(query.And([*head, query.Prefix("title_words", words[-1])]))
    if len(found) < limit:
        add(
            query.And(
                [
                    *(
                        query.FuzzyTerm("title_words", w, maxdist=1, prefixlength=1)
                        for w in words[:-1]
                    ),
                    query.FuzzyTerm(
                        "title_words",
                        words[-1],
                        maxdist=2 if len(words[-1]) > 5 else 1,
                        prefixlength=1,
                    ),
                ]
            )
        )
    return found
