"""The search index: a Whoosh projection of published pages that follows `page_events`.

The database is the truth. The index keeps, in a special document written in the same writer
commit, the last event id it applied (plus ids seen missing below it, for PostgreSQL transactions
that commit out of id order). `sync()` applies newer events; `rebuild()` builds a fresh folder (in
a process per CPU for a large wiki) and swaps it in through a symlink, so searches keep working
meanwhile. Knows nothing of HTTP.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import heapq
import itertools
import json
import logging
import multiprocessing
import os
import pickle
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
import uuid
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing import connection as mp_connection
from typing import Any

from flask import Flask, current_app, has_app_context
from sqlalchemy import func, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from whoosh import index
from whoosh.analysis import Analyzer, StandardAnalyzer, StemmingAnalyzer, Token
from whoosh.analysis.filters import STOP_WORDS
from whoosh.codec.whoosh3 import WHOOSH3_HEADER_MAGIC
from whoosh.fields import DATETIME, ID, KEYWORD, STORED, TEXT, Schema
from whoosh.formats import Positions
from whoosh.index import LockError
from whoosh.lang import porter2
from whoosh.reading import IndexReader
from whoosh.searching import Searcher
from whoosh.util.numeric import length_to_byte
from whoosh.writing import SegmentWriter

from wiki.database import read_connection
from wiki.models import Page, PageEvent, Revision

log = logging.getLogger("wiki.search")

META = "__meta__"  # page_id of the bookkeeping document
VOCAB = "__vocab__"  # page_id of the documents that hold new body words for "did you mean"
PAGE = "page"  # the `kind` of every page document (bookkeeping documents have none)
LOCK_TIMEOUT = 1.0  # seconds to wait for Whoosh's single writer lock
GAP_WINDOW = 100  # event ids below the newest that a rebuild checks for in-flight transactions
GAP_TTL = 600.0  # seconds after which a missing event id is taken as rolled back
BATCH = 500
MAX_SEGMENTS = 8  # a sync commits a new small segment unmerged until there are this many
POOL_POSTINGS = 4_000_000  # postings a rebuild holds in memory (~200 MB, shared by processes)
FEED = 100  # pages per batch a rebuild reads and hands to a build process
PARALLEL_PAGES = 2_000  # rebuilds of at least this many pages fork a build process per CPU...
MAX_PROCS = 4  # ...up to this many


class IndexUnavailable(Exception):
    """The index is missing and another process is rebuilding it; try again shortly."""


_STEMS: dict[str, str] = {}  # deep_stem's cache
_CACHE_MAX = 200_000  # entries in each of the word caches (_STEMS, _TERMS), then they start over


def deep_stem(word: str) -> str:
    """Porter2 applied until the word stops changing, so `containerized` meets `container`.

    Cached in a plain dict, not lru_cache, so that a rebuild's processes can hand what they
    learned back to the parent (see `_learn`).
    """
    stem = _STEMS.get(word)
    if stem is None:
        stem = word
        for _ in range(4):
            stemmed = porter2.stem(stem)
            if stemmed == stem:
                break
            stem = stemmed
        if len(_STEMS) >= _CACHE_MAX:
            _STEMS.clear()
        _STEMS[word] = stem
    return stem


_TOKEN = re.compile(r"[\w\*]+(\.?[\w\*]+)*")  # RegexTokenizer's default expression
# The same matches as strings (after a greedy run of word characters the optional dot can only
# be a dot), for findall; and the same again for ASCII text, where spelling \w out is faster.
_TOKENS = re.compile(r"[\w\*]+(?:\.[\w\*]+)*").findall
_ASCII_TOKENS = re.compile(r"[A-Za-z0-9_*]+(?:\.[A-Za-z0-9_*]+)*").findall
_TERMS: dict[str, str | bool] = {}  # token -> its term, False for a stop word (term_positions)


class StemAnalyzer(Analyzer):
    """StemmingAnalyzer(stemfn=deep_stem) fused into one generator: the same tokens, cheaper.

    The four chained generators (tokenize, lower-case, stop words, stem) were most of the
    indexing time; this yields identical tokens (see tests) in one loop.
    """

    is_morph = True

    def __eq__(self, other: object) -> bool:
        return other.__class__ is self.__class__

    def __hash__(self) -> int:
        return hash(self.__class__)

    def __call__(  # noqa: PLR0913  (Whoosh's analyzer protocol)
        self,
        value: str,
        positions: bool = False,
        chars: bool = False,
        keeporiginal: bool = False,
        removestops: bool = True,
        start_pos: int = 0,
        start_char: int = 0,
        tokenize: bool = True,
        mode: str = "",
        no_morph: bool = False,
        **kwargs: Any,
    ) -> Iterator[Token]:
        """Tokens of `value`, as RegexTokenizer | Lowercase | Stop | Stem would give them.

        `no_morph` (Whoosh asks for it to collect spelling words) leaves words unstemmed.
        """
        if not tokenize:
            yield from _CHAIN(
                value,
                positions=positions,
                chars=chars,
                keeporiginal=keeporiginal,
                removestops=removestops,
                start_pos=start_pos,
                start_char=start_char,
                tokenize=False,
                mode=mode,
                no_morph=no_morph,
                **kwargs,
            )
            return
        t = Token(positions, chars, removestops=removestops, mode=mode, **kwargs)
        stem, stops = (str if no_morph else deep_stem), STOP_WORDS
        pos = None
        for n, match in enumerate(_TOKEN.finditer(value)):
            text = match.group(0).lower()
            if len(text) >= 2 and text not in stops:
                t.text = stem(text)
                t.stopped = False
                if positions:
                    pos = start_pos + n if pos is None else pos + 1
                    t.pos = pos
            elif removestops:
                continue
            else:
                t.text = text
                t.stopped = True
                if positions:
                    t.pos = start_pos + n
            t.boost = 1.0
            if keeporiginal:
                t.original = match.group(0)
            if chars:
                t.startchar = start_char + match.start()
                t.endchar = start_char + match.end()
            yield t

    def term_positions(self, value: str) -> dict[str, list[int]]:
        """Each indexed term of `value` with its positions: what `__call__(value,
        positions=True)` yields, grouped by term, in one loop without Token objects.

        Indexing (StemPositions.word_values, _Writer.add_document) only needs this; a
        test checks it against `__call__`.
        """
        terms: dict[str, list[int]] = {}
        known, pos = _TERMS, -1
        tokens = _ASCII_TOKENS(value) if value.isascii() else _TOKENS(value)
        for n, word in enumerate(tokens):
            term = known.get(word)
            if term is None:
                term = _token_term(word)
            if term is False:
                continue
            # Stop words leave no gap: positions count on from the first kept token.
            pos = n if pos < 0 else pos + 1
            found = terms.get(term)
            if found is None:
                terms[term] = [pos]
            else:
                found.append(pos)
        return terms


def _token_term(token: str) -> str | bool:
    """The term a token indexes as (lower case, stemmed), or False for a stop word; cached,
    since lower-casing, the stop word test and the stemmer's cache cost more per token than
    one lookup of the token itself."""
    text = token.lower()
    term = False if len(text) < 2 or text in STOP_WORDS else deep_stem(text)
    if len(_TERMS) >= _CACHE_MAX:
        _TERMS.clear()
    _TERMS[token] = term
    return term


def _learn(terms: dict[str, str | bool]) -> None:
    """Take over a build process's `_TERMS` (and so its stems): the syncs and searches that
    follow a rebuild in this process would otherwise stem every word again."""
    if len(_TERMS) + len(terms) > _CACHE_MAX:
        _TERMS.clear()
    _TERMS.update(terms)
    stems = {token.lower(): term for token, term in terms.items() if term is not False}
    if len(_STEMS) + len(stems) > _CACHE_MAX:
        _STEMS.clear()
    _STEMS.update(stems)


_CHAIN = StemmingAnalyzer(stemfn=deep_stem, cachesize=None)
_LITTLE_ENDIAN = sys.byteorder == "little"


def _pack_positions(positions: list[int]) -> bytes:
    """Positions as little-endian uint32s."""
    packed = array("I", positions)
    if not _LITTLE_ENDIAN:
        packed.byteswap()
    return packed.tobytes()


def _unpack_positions(value: bytes) -> list[int]:
    packed = array("I")
    packed.frombytes(value)
    if not _LITTLE_ENDIAN:
        packed.byteswap()
    return packed.tolist()


class StemPositions(Positions):
    """Whoosh's Positions format for the stemmed fields, with a cheaper encoding and analysis.

    Whoosh pickles each posting's position deltas (a pickle.dumps per term per page) and feeds
    every token through generators and Token objects; together that was a third of a rebuild.
    Here a posting's value is its positions as packed uint32s (the frequency is the count),
    and with StemAnalyzer the terms come from one loop (StemAnalyzer.term_positions). Same
    terms, frequencies, weights and positions, so phrase queries and scores are unchanged.

    Stored in the index's schema (pickled in the TOC), so it must stay importable here under
    this name; Store._open rebuilds an index whose schema differs from make_schema(). The
    search vectors (vector.py) read these values directly, as little-endian uint32s.
    """

    def word_values(self, value: Any, analyzer: Any, **kwargs: Any) -> Iterator[tuple]:
        if not (
            isinstance(analyzer, StemAnalyzer)
            and isinstance(value, str)
            and kwargs.keys() <= {"mode"}
        ):
            yield from super().word_values(value, analyzer, **kwargs)
            return
        boost = self.field_boost
        for term, positions in analyzer.term_positions(value).items():
            yield term, len(positions), len(positions) * boost, _pack_positions(positions)

    def encode(self, positions: list[int]) -> bytes:
        return _pack_positions(positions)

    def decode_positions(self, value: bytes) -> list[int]:
        return _unpack_positions(value)

    def decode_frequency(self, value: bytes) -> int:
        return len(value) // 4

    def decode_weight(self, value: bytes) -> float:
        return len(value) // 4 * self.field_boost

    def decode_position_boosts(self, value: bytes) -> list[tuple[int, float]]:
        return [(pos, 1) for pos in _unpack_positions(value)]

    def combine(self, values: Iterable[bytes]) -> bytes:
        return _pack_positions(sorted({pos for v in values for pos in _unpack_positions(v)}))


def _fused(field: Any, value: Any) -> bool:
    """Whether the field indexes this value with StemAnalyzer.term_positions (see above)."""
    return (
        isinstance(field.format, StemPositions)
        and isinstance(field.analyzer, StemAnalyzer)
        and isinstance(value, str)
    )


def _stemmed_text(**kwargs: Any) -> TEXT:
    """A TEXT field analyzed by StemAnalyzer and stored in the StemPositions format."""
    field = TEXT(analyzer=StemAnalyzer(), **kwargs)
    field.format = StemPositions(field_boost=field.format.field_boost)
    return field


def make_schema() -> Schema:
    """The fields: stemmed title (boosted) and body with spelling words, tags, exact title."""
    return Schema(
        page_id=ID(unique=True, stored=True),
        slug=ID(stored=True),
        title=_stemmed_text(field_boost=4.0, stored=True, spelling=True),
        title_words=TEXT(analyzer=StandardAnalyzer(stoplist=None)),
        title_exact=ID(),
        kind=ID(),
        # Unstemmed body vocabulary for "did you mean" and fuzzy retries, held by a few VOCAB
        # documents (each word once) rather than by every page: indexing every page's words
        # twice doubled the reindex time. Not spelling=True on body: Whoosh 2.7.5 then adds a
        # spelling posting per word per page.
        words=TEXT(analyzer=StandardAnalyzer(stoplist=None, minsize=3), phrase=False),
        body=_stemmed_text(stored=True),
        tags=KEYWORD(stored=True, lowercase=True, commas=False, scorable=True),
        updated=DATETIME(stored=True),
        meta=STORED(),
    )


def exact_key(title: str) -> str:
    """A title as the exact-match field holds it: lower case, single spaces."""
    return " ".join(title.lower().split())


# (pattern, replacement, a string every match contains: without it the text is left alone,
# which is much cheaper than the regex finding nothing, for links that most pages lack)
_MD_NOISE = [
    (re.compile(r"!?\[([^\]\n]*)\]\([^)\n]*\)"), r"\1", "]("),  # [text](url) -> text
    (re.compile(r"\[\[([^\]|\n]*\|)?([^\]\n]*)\]\]"), r"\2", "[["),  # [[Page|label]] -> label
    (re.compile(r"^\s{0,3}(#{1,6}|>+|[-*+]\s+\[[ xX]\]|```\w*|~~~\w*)\s*", re.M), "", ""),
    (re.compile(r"[*_~`]{1,3}"), "", ""),
]


def plain_text(markdown: str) -> str:
    """Markdown source with its markup removed, for indexing and readable snippets."""
    text = markdown
    for pattern, repl, needed in _MD_NOISE:
        if needed in text:
            text = pattern.sub(repl, text)
    return text


# --- bookkeeping ------------------------------------------------------------------------------


@dataclass
class Meta:
    """What the index has applied: the newest event id and ids missing below it."""

    last: int = 0
    gaps: dict[int, float] = field(default_factory=dict)  # event id -> when first seen missing

    def dump(self) -> str:
        return json.dumps({"last": self.last, "gaps": {str(k): v for k, v in self.gaps.items()}})

    @classmethod
    def load(cls, raw: str | None) -> Meta:
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(int(data["last"]), {int(k): float(v) for k, v in data["gaps"].items()})


def read_meta(searcher: Searcher) -> Meta:
    """The bookkeeping stored in the index this searcher sees."""
    doc = searcher.document(page_id=META)
    return Meta.load(doc.get("meta") if doc else None)


# --- per-process state ------------------------------------------------------------------------


class Store:
    """One index path in this process: the open index and one shared, refreshed searcher."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.RLock()
        self.real: str | None = None
        self.ix: index.Index | None = None
        self._searcher: Searcher | None = None
        self._meta: tuple[int, Meta] | None = None
        self._vocabulary: set[str] | None = None

    def _open(self) -> index.Index:
        """Open the folder the path points at, rebuilding it when missing or unreadable."""
        real = os.path.realpath(self.path)
        if self.ix is not None and real == self.real and os.path.isdir(real):
            return self.ix
        self.ix, self._searcher, self._meta, self._vocabulary = None, None, None, None
        try:
            if not index.exists_in(real):
                raise index.EmptyIndexError(real)
            ix = index.open_dir(real)
            # Field by field, formats included: an index from before a change of how a field
            # is stored (such as StemPositions) is rebuilt rather than misread.
            if ix.schema != make_schema():
                raise ValueError("index built with another schema")
        except (OSError, index.EmptyIndexError, ValueError, EOFError):
            log.warning("search index at %s missing or unreadable: rebuilding", self.path)
            rebuild(self.path)
            real = os.path.realpath(self.path)
            ix = index.open_dir(real)
        self.ix, self.real = ix, real
        return ix

    def index(self) -> index.Index:
        with self.lock:
            return self._open()

    def searcher(self) -> Searcher:
        """The process's searcher, refreshed only when the index changed on disk."""
        with self.lock:
            self._open()
            try:
                # Never Searcher.refresh(): in Whoosh 2.7.5 it re-adds the old reader's segments
                # and reuses readers by segment id alone, so deletions and merges come back.
                if self._searcher is None or not self._searcher.up_to_date():
                    self._searcher = self.ix.searcher()
            except (OSError, index.EmptyIndexError):
                self.ix = None
                self._open()
                self._searcher = self.ix.searcher()
            return self._searcher

    def new_words(self, words: set[str], reader: IndexReader) -> list[str]:
        """The words the spelling vocabulary lacks, remembered as known from now on.

        A set loaded once per process: testing each word against a multi-segment reader cost
        more than the rest of a publish's sync. Words another process added since are added
        again, which is harmless.
        """
        with self.lock:
            if self._vocabulary is None:
                self._vocabulary = {w.decode("utf-8") for w in reader.lexicon("words")}
            new = sorted(words - self._vocabulary)
            self._vocabulary.update(new)
            return new

    def meta(self, searcher: Searcher) -> Meta:
        """The bookkeeping of this searcher's snapshot, read once per snapshot."""
        with self.lock:
            if self._meta is None or self._meta[0] != id(searcher):
                self._meta = (id(searcher), read_meta(searcher))
            return self._meta[1]


_STORES: dict[tuple[int, str], Store] = {}
_STORES_LOCK = threading.Lock()


def store(path: str | None = None) -> Store:
    """This process's Store for the app's index folder (opened lazily, so safe across forks)."""
    path = os.path.abspath(path or current_app.config["SEARCH_INDEX_DIR"])
    key = (os.getpid(), path)
    with _STORES_LOCK:
        if key not in _STORES:
            for stale in [k for k in _STORES if k[0] != key[0]]:
                del _STORES[stale]
            _STORES[key] = Store(path)
        return _STORES[key]


# --- reading the database ---------------------------------------------------------------------


def _connect() -> Connection:
    """A connection of our own: never the request's session, never a write transaction."""
    return read_connection()


_DOC_COLUMNS = (
    Page.id,
    Page.slug,
    Page.title,
    Page.updated_at,
    Revision.body,
    Revision.tags,
)


def _published() -> Any:
    return (
        select(*_DOC_COLUMNS)
        .join(Revision, Revision.id == Page.current_revision_id)
        .where(Page.deleted_at.is_(None))
    )


_WORDS = re.compile(r"[^\W\d_]{3,}")
_ASCII_WORDS = re.compile(r"[a-z]{3,}")  # the same in lower-case ASCII, faster


def _document(row: Any) -> dict[str, Any]:
    """The index document of a `_published()` row (or the same values as a plain tuple)."""
    page_id, slug, title, updated_at, body, tags = row
    return {
        "page_id": str(page_id),
        "slug": slug,
        "kind": PAGE,
        "title": title,
        "title_words": title,
        "title_exact": exact_key(title),
        "body": plain_text(body),
        "tags": tags or "",
        "updated": updated_at,
    }


def _words(body: str) -> set[str]:
    """The distinct lower-case words of a body, for the spelling vocabulary."""
    text = body.lower()
    return set((_ASCII_WORDS if text.isascii() else _WORDS).findall(text))


def _behind(conn: Connection, meta: Meta) -> bool:
    """True when the database holds events the index has not applied (one indexed query)."""
    newest = conn.execute(select(func.max(PageEvent.id))).scalar() or 0
    if newest > meta.last:
        return True
    if meta.gaps:
        found = conn.execute(
            select(PageEvent.id).where(PageEvent.id.in_(list(meta.gaps))).limit(1)
        ).first()
        return found is not None or any(t + GAP_TTL < time.time() for t in meta.gaps.values())
    return False


# --- sync -------------------------------------------------------------------------------------


def sync(path: str | None = None, timeout: float = LOCK_TIMEOUT) -> int | None:
    """Apply events newer than the index's mark in one writer commit.

    Returns the number of pages updated, or None when another process holds the writer lock
    (it is syncing; the next request catches up).
    """
    st = store(path)
    ix = st.index()
    try:
        writer = _Writer(ix, timeout=timeout)
    except LockError:
        return None
    try:
        meta = read_meta(writer.searcher())
        with _connect() as conn:
            condition = PageEvent.id > meta.last
            if meta.gaps:
                condition = or_(condition, PageEvent.id.in_(list(meta.gaps)))
            events = conn.execute(
                select(PageEvent.id, PageEvent.page_id).where(condition).order_by(PageEvent.id)
            ).all()
            now = time.time()
            expired = [k for k, t in meta.gaps.items() if t + GAP_TTL < now]
            if not events and not expired:
                writer.cancel()
                return 0
            page_ids = sorted({e.page_id for e in events})
            docs = {}
            for chunk in _chunks(page_ids, BATCH):
                for row in conn.execute(_published().where(Page.id.in_(chunk))):
                    docs[row.id] = _document(row)
        words: set[str] = set()
        for page_id in page_ids:
            if page_id in docs:
                writer.update_document(**docs[page_id])
                words |= _words(docs[page_id]["body"])
            else:
                writer.delete_by_term("page_id", str(page_id))
        new_words = st.new_words(words, writer.searcher().reader())
        if new_words:
            writer.add_document(page_id=VOCAB, words=" ".join(new_words))
        seen = {e.id for e in events}
        newest = max(seen | {meta.last})
        gaps = {k: t for k, t in meta.gaps.items() if k not in seen and t + GAP_TTL >= now}
        gaps.update({i: now for i in range(meta.last + 1, newest) if i not in seen})
        writer.update_document(page_id=META, meta=Meta(newest, gaps).dump())
        # A publish writes one small segment; small segments merge once there are several.
        writer.commit(merge=len(writer.segments) >= MAX_SEGMENTS)
        return len(page_ids)
    except BaseException:
        writer.cancel()
        raise


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def ensure_current(path: str | None = None) -> Searcher:
    """A searcher that includes every committed event (or what is there if the lock is busy)."""
    st = store(path)
    searcher = st.searcher()
    with _connect() as conn:
        behind = _behind(conn, st.meta(searcher))
    if behind:
        sync(path)
        searcher = st.searcher()
    return searcher


# --- full rebuild -----------------------------------------------------------------------------


def rebuild(path: str | None = None, progress: Callable[[int], None] | None = None) -> int:
    """Build a complete index in a fresh sibling folder and swap it in; returns pages indexed.

    Raises IndexUnavailable when another process is rebuilding the same folder.
    """
    path = os.path.abspath(path or current_app.config["SEARCH_INDEX_DIR"])
    parent, name = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    with open(os.path.join(parent, f".{name}.rebuild.lock"), "w") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IndexUnavailable("The search index is being rebuilt; try again in a moment.")
        fresh = tempfile.mkdtemp(prefix=f".{name}-", dir=parent)
        try:
            count = _build(fresh, progress)
            _swap(path, fresh)
        except BaseException:
            shutil.rmtree(fresh, ignore_errors=True)
            raise
    return count


_Postings = tuple[array, array, list]  # docnums ("I"), weights ("f"), encoded values


class _TermPool:
    """A writer's postings grouped by term in memory, spilled as sorted runs when large.

    Whoosh's PostingPool keeps a tuple per posting and sorts them all at the end; past its
    memory limit it pickles each posting to a run file and merges them back one by one, which
    was a third of a 10,000-page rebuild. Postings arrive in document order, so each term's
    list is already sorted: only the terms need sorting, and a run holds a record per term.
    """

    def __init__(self, tempstore: Any, limit: int) -> None:
        self._tempstore = tempstore
        self._limit = limit  # postings held before a run is written (about 60 bytes each)
        # fieldname -> term -> postings; the terms of add_positions() stay str until sorted
        # (UTF-8 keeps code point order), which saves an encoding and a tuple per posting.
        self._fields: dict[str, dict[Any, _Postings]] = {}
        self._text: set[str] = set()  # the fields whose terms are str
        self._count = 0
        self._runs: list[str] = []

    def add(self, item: tuple[str, bytes, int, float, bytes]) -> None:
        """A posting as Whoosh's PostingPool takes it: (fieldname, term, docnum, weight, value)."""
        fieldname, btext, docnum, weight, value = item
        terms = self._fields.setdefault(fieldname, {})
        key = btext.decode("utf-8") if fieldname in self._text else btext
        postings = terms.get(key)
        if postings is None:
            postings = terms[key] = (array("I"), array("f"), [])
        elif docnum < postings[0][-1]:  # (Whoosh writers add documents, and merge, in order)
            raise ValueError(f"posting for document {docnum} after {postings[0][-1]}")
        postings[0].append(docnum)
        postings[1].append(weight)  # the postings file keeps weights as float32 too
        postings[2].append(value)
        self._count += 1
        if self._count >= self._limit:
            self._spill()

    def add_positions(
        self, fieldname: str, terms: dict[str, list[int]], docnum: int, boost: float
    ) -> tuple[int, bytes]:
        """One document's StemPositions postings (as StemPositions.word_values gives them);
        returns the field length and the last posting's value."""
        pool = self._fields.get(fieldname)
        if pool is None or fieldname not in self._text:
            pool = self._fields[fieldname] = {
                key.decode("utf-8"): postings for key, postings in (pool or {}).items()
            }
            self._text.add(fieldname)
        length, value = 0, b""
        for term, positions in terms.items():
            postings = pool.get(term)
            if postings is None:
                postings = pool[term] = (array("I"), array("f"), [])
            value = _pack_positions(positions)
            postings[0].append(docnum)
            postings[1].append(len(positions) * boost)
            postings[2].append(value)
            length += len(positions)
        self._count += len(terms)
        if self._count >= self._limit:
            self._spill()
        return length, value

    def _sorted(self) -> Iterator[tuple[str, bytes, _Postings]]:
        fields, text = self._fields, self._text
        self._fields, self._text, self._count = {}, set(), 0
        for fieldname in sorted(fields):
            terms = fields.pop(fieldname)
            for key in sorted(terms):
                btext = key.encode("utf-8") if fieldname in text else key
                yield fieldname, btext, terms.pop(key)

    def _spill(self) -> None:
        name = f"{uuid.uuid4().hex}.terms"
        with self._tempstore.create_file(name).raw_file() as f:
            for fieldname, btext, (docnums, weights, values) in self._sorted():
                pickle.dump((fieldname, btext, docnums, weights, values), f, -1)
        self._runs.append(name)

    def _read_run(self, name: str) -> Iterator[tuple[str, bytes, _Postings]]:
        with self._tempstore.open_file(name).raw_file() as f:
            while True:
                try:
                    fieldname, btext, docnums, weights, values = pickle.load(f)  # noqa: S301  (our own run file)
                except EOFError:
                    break
                yield fieldname, btext, (docnums, weights, values)
        self._tempstore.delete_file(name)

    def iter_terms(self) -> Iterator[tuple[str, bytes, _Postings]]:
        """(fieldname, term bytes, postings) in term order, each term's postings in doc order."""
        if not self._runs:
            yield from self._sorted()
            return
        # Runs hold consecutive documents and heapq.merge is stable, so a term's pieces come
        # out in document order.
        sources = [self._read_run(name) for name in self._runs] + [self._sorted()]
        self._runs = []
        merged = heapq.merge(*sources, key=lambda entry: (entry[0], entry[1]))
        for (fieldname, btext), group in itertools.groupby(merged, lambda e: (e[0], e[1])):
            (_, _, postings), *more = group
            for _, _, (docnums, weights, values) in more:
                postings[0].extend(docnums)
                postings[1].extend(weights)
                postings[2].extend(values)
            yield fieldname, btext, postings

    def iter_postings(self) -> Iterator[tuple[str, bytes, int, float, bytes]]:
        """The postings one by one, as Whoosh's PostingPool gives them (tests compare)."""
        for fieldname, btext, (docnums, weights, values) in self.iter_terms():
            for docnum, weight, value in zip(docnums, weights, values, strict=True):
                yield fieldname, btext, docnum, weight, value

    def cleanup(self) -> None:
        for name in self._runs:
            with contextlib.suppress(OSError):
                self._tempstore.delete_file(name)
        self._runs = []


def _fill_blocks(postwriter: Any, postings: _Postings, lengths: list[int] | None) -> None:
    """Write a term's postings through Whoosh's W3PostingsWriter a block at a time.

    Sets the block state its add_posting() would have built posting by posting (Whoosh-Reloaded
    2.7.5 is pinned; a test compares every block with what Whoosh writes itself): ids, weights,
    non-empty values, the highest weight (from 0) and the shortest non-zero and longest field
    length; then writes the block (the last one marked last), so that finish_postings() has
    none left to write.
    """
    docnums, weights, values = postings
    limit = postwriter._blocklimit
    for start in range(0, len(docnums), limit):
        ids, block_values = docnums[start : start + limit], values[start : start + limit]
        postwriter._ids = ids
        postwriter._weights = weights[start : start + limit]
        postwriter._values = block_values if all(block_values) else [v for v in block_values if v]
        postwriter._maxweight = max(0, max(postwriter._weights))
        found = [n for n in map(lengths.__getitem__, ids) if n] if lengths is not None else []
        postwriter._minlength = min(found) if found else None
        postwriter._maxlength = max(found) if found else 0
        _write_block(postwriter, last=start + limit >= len(docnums))


def _write_block(postwriter: Any, last: bool) -> None:
    """W3PostingsWriter._write_block, except that blocks of up to 128 bytes stay uncompressed.

    Those are most blocks (a rare term's few postings), and zlib makes them larger: Whoosh
    meant to skip small ones too (a block says whether it is compressed) but a slip lost that.
    They are then also read without a zlib.decompress() each.
    """
    pw, postfile = postwriter, postwriter._postfile
    if not pw._blockcount:
        postfile.write(WHOOSH3_HEADER_MAGIC)
    pw._terminfo.add_block(pw)
    data = pickle.dumps((pw._mini_ids(), pw._mini_weights(), pw._mini_values()), 2)
    level = pw._compression if len(data) > 128 else 0
    if level:
        data = zlib.compress(data, level)
    ids = pw._ids
    info = (
        len(ids),
        ids[-1],
        pw._maxweight,
        level,
        length_to_byte(pw._minlength),
        length_to_byte(pw._maxlength),
    )
    infobytes = pickle.dumps(info, 2)
    size = len(infobytes) + len(data)
    postfile.write_int(-size if last else size)  # negative: the term's last block
    postfile.write(infobytes)
    postfile.write(data)
    pw._blockcount += 1
    pw._new_block()


class _Writer(SegmentWriter):
    """The SegmentWriter of rebuilds and syncs: postings pooled by term, written by blocks.

    Whoosh 2.7.5 sorts a tuple per posting, then writes them one by one and re-reads a
    document's field length from disk for each. A sync's merges go through here too
    (add_reader adds each merged segment's postings to the pool, in document order).
    """

    def __init__(self, ix: index.Index, pool_postings: int | None = None, **kwargs: Any) -> None:
        super().__init__(ix, compound=False, **kwargs)
        self.pool = _TermPool(self._tempstorage, pool_postings or POOL_POSTINGS)
        assert not any(f.vector or f.column_type for f in self.schema), "add_document skips them"

    def add_document(self, **fields: Any) -> None:
        """Whoosh's SegmentWriter.add_document, less what make_schema() does not use (boosts,
        vectors, columns), with the stemmed fields' terms put straight into the pool.

        Whoosh passes every posting through two generators, a tuple and a call; for the body
        that per-posting work was as much as analysing it. A test compares the index with the
        one Whoosh's own add_document and posting writer make.
        """
        self._check_state()
        schema, docnum, pool, perdoc = self.schema, self.docnum, self.pool, self.perdocwriter
        perdoc.start_doc(docnum)
        try:
            for fieldname in sorted(fields):
                value = fields[fieldname]
                if value is None:
                    continue
                field = schema[fieldname]
                length, last = 0, b""
                if field.indexed and _fused(field, value):
                    terms = field.analyzer.term_positions(value)
                    boost = field.format.field_boost
                    length, last = pool.add_positions(fieldname, terms, docnum, boost)
                elif field.indexed:
                    for btext, freq, weight, last in field.index(value):
                        length += freq
                        pool.add((fieldname, btext, docnum, weight, last))
                    length = length if field.scorable else 0
                if field.separate_spelling():
                    # As Whoosh does: document 0, and the field's last posting value.
                    spelling = field.spelling_fieldname(fieldname)
                    for word in field.spellable_words(value):
                        pool.add((spelling, word.encode("utf-8"), 0, 1, last))
                perdoc.add_field(fieldname, field, value if field.stored else None, length)
        except BaseException:
            perdoc.cancel_doc()
            raise
        perdoc.finish_doc()
        self._added = True
        self.docnum += 1

    def _flush_segment(self) -> None:
        """Write the pooled postings a term at a time, filling whole blocks by slicing.

        Whoosh's FieldWriter.add_postings takes one posting at a time (a generator step, a
        field length read from disk and several checks each): with the analysis, most of a
        rebuild. Here a term's postings are already arrays and the field lengths are read
        once, up front.
        """
        self.perdocwriter.close()
        reader = self.per_document_reader()
        try:
            lengths = {
                name: [reader.doc_field_length(n, name) or 0 for n in range(self.docnum)]
                for name in self.schema.scorable_names()
            }
        finally:
            reader.close()
        fieldwriter, fieldname, field_lengths = self.fieldwriter, None, None
        for name, btext, postings in self.pool.iter_terms():
            if name != fieldname:
                if fieldname is not None:
                    fieldwriter.finish_field()
                fieldname, field_lengths = name, lengths.get(name)
                fieldwriter.start_field(name, self.schema[name])
            fieldwriter.start_term(btext)
            _fill_blocks(fieldwriter._postwriter, postings, field_lengths)
            fieldwriter.finish_term()
        if fieldname is not None:
            fieldwriter.finish_field()
        fieldwriter.close()

    def commit_segments(self, segments: list[Any]) -> None:
        """Commit `segments`, which build processes wrote into this index's folder, as the
        index's segments (as Whoosh's MpWriter does with multisegment); this writer adds none."""
        self._check_state()
        self._close_segment()
        self._commit_toc([*self.segments, *segments])
        self._finish()


def _published_ids() -> Any:
    return (
        select(Page.id)
        .join(Revision, Revision.id == Page.current_revision_id)
        .where(Page.deleted_at.is_(None))
        .order_by(Page.id)
    )


def _fetch(conn: Connection, page_ids: list[int]) -> list[tuple]:
    """The `_published()` rows of these pages, in id order, as plain tuples."""
    query = _published().where(Page.id.in_(page_ids)).order_by(Page.id)
    return [tuple(row) for row in conn.execute(query)]


def _add_pages(writer: SegmentWriter, rows: list[tuple], words: set[str]) -> None:
    for row in rows:
        doc = _document(row)
        writer.add_document(**doc)
        words |= _words(doc["body"])


def _procs(pages: int) -> int:
    """How many build processes a rebuild of this many pages uses: one per CPU, when it pays."""
    if pages < PARALLEL_PAGES or multiprocessing.current_process().daemon:
        return 1  # (a daemonic process may not start children)
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_PROCS, cpus))


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off meanwhile (as it was after).

    A build allocates millions of small objects and keeps many, so the collector ran ever
    more often over ever more of them: an eighth of a 10,000-page rebuild, for no cycles worth
    collecting (the few the build leaves are collected afterwards).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _bookkeeping(words: set[str], newest: int, present: set[int]) -> list[dict[str, Any]]:
    """The VOCAB and META documents a build adds after the pages (see Meta and make_schema)."""
    now = time.time()
    gaps = {i: now for i in range(max(newest - GAP_WINDOW, 0) + 1, newest) if i not in present}
    return [
        {"page_id": VOCAB, "words": " ".join(sorted(words))},
        {"page_id": META, "meta": Meta(newest, gaps).dump()},
    ]


@_gc_paused()
def _build(folder: str, progress: Callable[[int], None] | None, procs: int | None = None) -> int:
    """Index every published page into a new index in `folder`; returns the pages indexed.

    The pages go in page id order, then the bookkeeping documents. With several processes
    (`procs`, by default `_procs()`), each indexes a contiguous share into a segment of its own
    and the last one adds the bookkeeping (see `_fork_build`), so document numbers keep that
    order and the bookkeeping sits in a large segment, which syncs never merge.
    """
    ix = index.create_in(folder, make_schema())
    report = progress or (lambda _n: None)
    with _connect() as conn:
        newest = conn.execute(select(func.max(PageEvent.id))).scalar() or 0
        present = set(
            conn.execute(select(PageEvent.id).where(PageEvent.id > newest - GAP_WINDOW))
            .scalars()
            .all()
        )
        page_ids = list(conn.execute(_published_ids()).scalars())
        procs = _procs(len(page_ids)) if procs is None else max(1, min(procs, len(page_ids)))
        segments, count = [], 0
        if procs > 1:
            segments, count = _fork_build(
                folder,
                conn,
                page_ids,
                procs,
                report,
                lambda words: _bookkeeping(words, newest, present),
            )
        # The writer only after any fork: the children need none of its open files.
        writer = _Writer(ix)
        try:
            if procs > 1:
                writer.commit_segments(segments)
                return count
            words: set[str] = set()
            for batch in _chunks(page_ids, FEED):
                rows = _fetch(conn, batch)
                _add_pages(writer, rows, words)
                count += len(rows)
                for _ in rows:
                    report(1)
            for doc in _bookkeeping(words, newest, present):
                writer.add_document(**doc)
            writer.commit()
            return count
        except BaseException:
            if not writer.is_closed:
                writer.cancel()
            raise


def _fork_build(  # noqa: PLR0913
    folder: str,
    conn: Connection,
    page_ids: list[int],
    procs: int,
    progress: Callable[[int], None],
    bookkeeping: Callable[[set[str]], list[dict[str, Any]]],
) -> tuple[list[Any], int]:
    """Index the pages in `procs` forked processes, each a contiguous share into a segment of
    its own; the last adds the `bookkeeping(words of all)` documents after its pages. Returns
    the segments (in page order) and the number of pages.

    A rebuild is CPU bound (analysis, posting encoding, compression) and a single Python
    process uses one core. This process keeps the database work: the children never touch
    the connection or engine they inherit (a connection must not be shared across a fork).
    They ask for pages a batch at a time and are sent the rows, so the parent only ever
    writes to a child that waits for it, reports progress as batches complete, and notices a
    child that fails (its traceback) or dies (end of file on its pipe). Once out of pages a
    child sends its spelling words (and its word cache, see `_learn`) and gets the documents to
    add (none but for the last one), then writes its segment. Any failure here kills the
    children, so none outlives the call, and rebuild() removes the folder.
    """
    context = multiprocessing.get_context("fork")
    shares = [
        page_ids[k * len(page_ids) // procs : (k + 1) * len(page_ids) // procs]
        for k in range(procs)
    ]
    children: list[Any] = []
    pipes: list[Any] = []
    try:
        for _ in shares:
            mine, theirs = context.Pipe()
            child = context.Process(
                target=_build_worker,
                args=(folder, theirs, list(pipes), POOL_POSTINGS // procs),
                name="wiki-reindex",
                daemon=True,
            )
            child.start()
            theirs.close()  # so that the child's death reads as end of file here
            children.append(child)
            pipes.append(mine)
        feeds = {pipe: _chunks(share, FEED) for pipe, share in zip(pipes, shares, strict=True)}
        words: dict[Any, set[str]] = {}
        segments: dict[Any, Any] = {}
        count = 0
        while len(segments) < len(pipes):
            for pipe in mp_connection.wait([p for p in pipes if p not in segments]):
                try:
                    message = pipe.recv()
                except EOFError:
                    raise RuntimeError("a search index build process died") from None
                if message[0] == "more":
                    count += message[1]
                    for _ in range(message[1]):
                        progress(1)
                    batch = next(feeds[pipe], None)
                    pipe.send(None if batch is None else _fetch(conn, batch))
                elif message[0] == "words":
                    words[pipe] = message[1]
                    _learn(message[2])
                    if pipe is not pipes[-1]:
                        pipe.send([])
                    if len(words) == len(pipes):
                        pipes[-1].send(bookkeeping(set().union(*words.values())))
                elif message[0] == "done":
                    segments[pipe] = message[1]
                else:
                    raise RuntimeError(f"a search index build process failed:\n{message[1]}")
        for child in children:
            child.join()
            if child.exitcode != 0:
                raise RuntimeError(f"a search index build process exited with {child.exitcode}")
    finally:
        for child in children:
            if child.is_alive():
                child.kill()
            child.join()
            child.close()
        for pipe in pipes:
            pipe.close()
    return [segments[pipe] for pipe in pipes], count


def _build_worker(folder: str, pipe: Any, inherited: list[Any], pool_postings: int) -> None:
    """A build process (forked by `_fork_build`): index the batches of rows the parent sends
    into one new segment of the index in `folder`, then the documents it is sent for the end,
    and send back the segment."""
    code = 1
    try:
        # The parent's ends of earlier children's pipes: closed, so that those children see
        # the parent's death as end of file.
        for other in inherited:
            other.close()
        # A server's signal handlers (gunicorn's only flag the worker to stop, and wake it
        # through a pipe) are not this process's: these signals simply end it.
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            signal.signal(signum, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        gc.disable()  # (already off: inherited from _build)
        # No lock: the parent holds the new folder's rebuild lock; each writer names its own
        # segment, and only the parent commits the table of contents.
        writer = _Writer(index.open_dir(folder), pool_postings, _lk=False)
        words: set[str] = set()
        done = 0
        while True:
            pipe.send(("more", done))
            rows = pipe.recv()
            if rows is None:
                break
            _add_pages(writer, rows, words)
            done = len(rows)
        pipe.send(("words", words, _TERMS))
        for doc in pipe.recv():
            writer.add_document(**doc)
        pipe.send(("done", writer._finalize_segment()))
        code = 0
    except (EOFError, BrokenPipeError):
        pass  # the parent is gone (or gave up): nothing to report to
    except BaseException:
        with contextlib.suppress(OSError):
            pipe.send(("error", traceback.format_exc()))  # the parent raises with it
    finally:
        # Not multiprocessing's way out, which runs the server's thread shutdown: forked from
        # a thread of a ThreadPoolExecutor (gunicorn's gthread workers), it then tries to join
        # that very thread and fails, so a build that went well exited with an error.
        os._exit(code)


def _swap(path: str, fresh: str) -> None:
    """Point `path` (a symlink) at the fresh folder atomically; drop all but the previous one."""
    parent, name = os.path.split(path)
    previous = os.path.realpath(path) if os.path.islink(path) else None
    if os.path.isdir(path) and not os.path.islink(path):
        os.rename(path, tempfile.mkdtemp(prefix=f".{name}-old-", dir=parent) + "/old")
    link = os.path.join(parent, f".{name}.link-{os.getpid()}-{threading.get_ident()}")
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(os.path.basename(fresh), link)
    os.replace(link, path)
    keep = {os.path.realpath(fresh), previous}
    for entry in os.listdir(parent):
        full = os.path.join(parent, entry)
        if (
            entry.startswith(f".{name}-")
            and os.path.isdir(full)
            and not os.path.islink(full)
            and os.path.realpath(full) not in keep
        ):
            shutil.rmtree(full, ignore_errors=True)


# --- hooks ------------------------------------------------------------------------------------

_DIRTY = "wiki_search_events"
_installed = False


def _after_flush(session: Session, _context: Any) -> None:
    if any(isinstance(obj, PageEvent) for obj in session.new):
        session.info[_DIRTY] = True


def _after_commit(session: Session) -> None:
    """After a transaction that wrote page events: sync now, so the editor finds their change."""
    if not session.info.pop(_DIRTY, False) or not has_app_context():
        return
    try:
        sync()
    except Exception:  # noqa: BLE001  (the publish is committed; the next search heals)
        log.exception("search index sync after commit failed")


def _after_rollback(session: Session) -> None:
    session.info.pop(_DIRTY, None)


def init_app(app: Flask) -> None:
    """Register the session hooks that sync the index right after each publish commit."""
    global _installed
    app.extensions["wiki_search"] = {"path": app.config["SEARCH_INDEX_DIR"]}
    if _installed:
        return
    from sqlalchemy import event

    event.listen(Session, "after_flush", _after_flush)
    event.listen(Session, "after_commit", _after_commit)
    event.listen(Session, "after_rollback", _after_rollback)
    _installed = True
