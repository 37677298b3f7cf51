"""The search index: a Whoosh projection of published pages that follows `page_events`.

The database is the truth. The index keeps, in a special document written in the same writer
commit, the last event id it applied (plus ids seen missing below it, for PostgreSQL transactions
that commit out of id order). `sync()` applies newer events; `rebuild()` builds a fresh folder and
swaps it in through a symlink, so searches keep working meanwhile. Knows nothing of HTTP.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from flask import Flask, current_app, has_app_context
from sqlalchemy import func, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from whoosh import index
from whoosh.analysis import Analyzer, StandardAnalyzer, StemmingAnalyzer, Token
from whoosh.analysis.filters import STOP_WORDS
from whoosh.fields import DATETIME, ID, KEYWORD, STORED, TEXT, Schema
from whoosh.index import LockError
from whoosh.lang import porter2
from whoosh.reading import IndexReader
from whoosh.searching import Searcher
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


class IndexUnavailable(Exception):
    """The index is missing and another process is rebuilding it; try again shortly."""


@lru_cache(maxsize=200_000)
def deep_stem(word: str) -> str:
    """Porter2 applied until the word stops changing, so `containerized` meets `container`."""
    for _ in range(4):
        stemmed = porter2.stem(word)
        if stemmed == word:
            break
        word = stemmed
    return word


_TOKEN = re.compile(r"[\w\*]+(\.?[\w\*]+)*")  # RegexTokenizer's default expression


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


_CHAIN = StemmingAnalyzer(stemfn=deep_stem, cachesize=None)


def make_schema() -> Schema:
    """The fields: stemmed title (boosted) and body with spelling words, tags, exact title."""
    stem = StemAnalyzer()
    return Schema(
        page_id=ID(unique=True, stored=True),
        slug=ID(stored=True),
        title=TEXT(analyzer=stem, field_boost=4.0, stored=True, spelling=True),
        title_words=TEXT(analyzer=StandardAnalyzer(stoplist=None)),
        title_exact=ID(),
        kind=ID(),
        # Unstemmed body vocabulary for "did you mean" and fuzzy retries, held by a few VOCAB
        # documents (each word once) rather than by every page: indexing every page's words
        # twice doubled the reindex time. Not spelling=True on body: Whoosh 2.7.5 then adds a
        # spelling posting per word per page.
        words=TEXT(analyzer=StandardAnalyzer(stoplist=None, minsize=3), phrase=False),
        body=TEXT(analyzer=stem, stored=True),
        tags=KEYWORD(stored=True, lowercase=True, commas=False, scorable=True),
        updated=DATETIME(stored=True),
        meta=STORED(),
    )


def exact_key(title: str) -> str:
    """A title as the exact-match field holds it: lower case, single spaces."""
    return " ".join(title.lower().split())


_MD_NOISE = [
    (re.compile(r"!?\[([^\]\n]*)\]\([^)\n]*\)"), r"\1"),  # [text](url) -> text
    (re.compile(r"\[\[([^\]|\n]*\|)?([^\]\n]*)\]\]"), r"\2"),  # [[Page|label]] -> label
    (re.compile(r"^\s{0,3}(#{1,6}|>+|[-*+]\s+\[[ xX]\]|```\w*|~~~\w*)\s*", re.M), ""),
    (re.compile(r"[*_~`]{1,3}"), ""),
]


def plain_text(markdown: str) -> str:
    """Markdown source with its markup removed, for indexing and readable snippets."""
    text = markdown
    for pattern, repl in _MD_NOISE:
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
            if sorted(ix.schema.names()) != sorted(make_schema().names()):
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


def _document(row: Any) -> dict[str, Any]:
    return {
        "page_id": str(row.id),
        "slug": row.slug,
        "kind": PAGE,
        "title": row.title,
        "title_words": row.title,
        "title_exact": exact_key(row.title),
        "body": plain_text(row.body),
        "tags": row.tags or "",
        "updated": row.updated_at,
    }


def _words(body: str) -> set[str]:
    """The distinct lower-case words of a body, for the spelling vocabulary."""
    return set(_WORDS.findall(body.lower()))


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
        writer = ix.writer(timeout=timeout, compound=False)
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


def _chunks(items: list[int], size: int) -> Iterable[list[int]]:
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


class _Lengths:
    """Every document's field lengths, read once: Whoosh reads one per posting at flush."""

    def __init__(self, reader: Any, schema: Schema, doc_count: int) -> None:
        self._lengths = {
            name: [reader.doc_field_length(n, name) for n in range(doc_count)]
            for name in schema.scorable_names()
        }

    def doc_field_length(self, docnum: int, fieldname: str, default: int = 0) -> int:
        lengths = self._lengths.get(fieldname)
        return lengths[docnum] if lengths is not None and docnum < len(lengths) else default


class _BulkWriter(SegmentWriter):
    """A SegmentWriter that looks field lengths up in memory when it writes the postings.

    Whoosh 2.7.5 re-reads a document's field length from disk for every posting it writes;
    in a full rebuild that was a sixth of the time.
    """

    def _flush_segment(self) -> None:
        self.perdocwriter.close()
        reader = self.per_document_reader() if self.codec.length_stats else None
        lengths = _Lengths(reader, self.schema, self.docnum) if reader else None
        self.fieldwriter.add_postings(self.schema, lengths, self.pool.iter_postings())
        self.fieldwriter.close()
        if reader:
            reader.close()


def _build(folder: str, progress: Callable[[int], None] | None) -> int:
    ix = index.create_in(folder, make_schema())
    writer = _BulkWriter(ix, limitmb=256, compound=False)
    count = 0
    try:
        with _connect() as conn:
            newest = conn.execute(select(func.max(PageEvent.id))).scalar() or 0
            present = set(
                conn.execute(select(PageEvent.id).where(PageEvent.id > newest - GAP_WINDOW))
                .scalars()
                .all()
            )
            rows = conn.execution_options(yield_per=BATCH).execute(_published())
            words: set[str] = set()
            for row in rows:
                doc = _document(row)
                writer.add_document(**doc)
                words |= _words(doc["body"])
                count += 1
                if progress is not None:
                    progress(1)
        writer.add_document(page_id=VOCAB, words=" ".join(sorted(words)))
        now = time.time()
        gaps = {i: now for i in range(max(newest - GAP_WINDOW, 0) + 1, newest) if i not in present}
        writer.add_document(page_id=META, meta=Meta(newest, gaps).dump())
        writer.commit()
    except BaseException:
        writer.cancel()
        raise
    return count


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
