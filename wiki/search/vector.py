"""Whoosh queries run over whole posting lists as numpy arrays: the same matches and scores.

Whoosh's matchers advance one posting at a time in Python, about 10 µs per matching page;
common words match thousands of pages, so a search spent most of its time there. Here each
term's postings are read once per index segment into arrays (ids, weights, and for phrases the
positions), kept in a bounded per-process cache, and a query is evaluated as a whole with dense
arrays of one slot per document: BM25F for terms (Whoosh's formula and statistics), sums for
OR and AND, masks for NOT, position arithmetic for phrases. The result is the exact match count
and the top pages in Whoosh's order (score, then document number).

Segments never change once written, except for their deletion lists, which are applied per
snapshot; so cached arrays stay valid across publishes. A query node this module does not know
raises `Unsupported`, and the caller falls back to Whoosh's own search.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from math import log
from typing import Any

import numpy as np
from whoosh import query
from whoosh.codec.whoosh3 import LENGTHS_COLUMN, W3LeafMatcher, _lenfield
from whoosh.reading import IndexReader, TermNotFound
from whoosh.scoring import BM25F
from whoosh.searching import Searcher
from whoosh.util.numeric import byte_to_length

from wiki.search.index import StemPositions

CACHE_BYTES = 64 << 20  # per process, for posting and position arrays (SEARCH_CACHE_MB)
POS_BITS = 24  # a phrase key is docnum << POS_BITS | position
_LENGTH_OF_BYTE = np.array([byte_to_length(b) or 1 for b in range(256)], dtype=np.float64)
_LENGTH_OF_BYTE[0] = 1.0  # Whoosh's scorer reads a missing length as 1


class Unsupported(Exception):
    """A query node this module does not evaluate; the caller uses Whoosh's matchers."""


@dataclass
class Ranked:
    """The outcome of a query: matching document numbers best first, and how many matched."""

    docnums: list[int]
    total: int
    scores: list[float]


class _Cache:
    """A least-recently-used map from keys to numpy arrays, bounded by their total size."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.items: OrderedDict[tuple, tuple[np.ndarray, ...]] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple, load: Callable[[], tuple[np.ndarray, ...]]) -> tuple:
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        value = load()  # outside the lock: two threads may load the same key, harmlessly
        nbytes = _nbytes(value)
        with self.lock:
            if key not in self.items:
                self.items[key] = value
                self.size += nbytes
                self._trim()
        return value

    def resize(self, limit: int) -> None:
        with self.lock:
            self.limit = limit
            self._trim()

    def _trim(self) -> None:
        """Drop the least recently used values until the rest fit (the newest always stays)."""
        while self.size > self.limit and len(self.items) > 1:
            _, old = self.items.popitem(last=False)
            self.size -= _nbytes(old)

    def clear(self) -> None:
        with self.lock:
            self.items.clear()
            self.size = 0


def _nbytes(value: tuple) -> int:
    """Bytes held by a cached tuple of arrays (lists of words counted at a typical size)."""
    return sum(a.nbytes if isinstance(a, np.ndarray) else 64 * len(a) for a in value)


_CACHE = _Cache(CACHE_BYTES)


def cached(key: tuple, load: Callable[[], tuple]) -> tuple:
    """A value from the per-process cache of immutable segment data, loaded on first use."""
    return _CACHE.get(key, load)


def segments(reader: IndexReader) -> list[tuple[IndexReader, int, str]]:
    """(segment reader, first document number, segment id) for each segment of a snapshot."""
    return [(leaf, offset, _segid(leaf)) for leaf, offset in reader.leaf_readers()]


def _segid(reader: IndexReader) -> str:
    segment = reader.segment()
    return segment.segment_id() if segment is not None else str(id(reader))


def _raw_postings(reader: IndexReader, fieldname: str, btext: bytes) -> Any:
    """The term's postings in one segment without the deletion filter (applied per snapshot)."""
    fmt = reader.schema[fieldname].format
    try:
        terms = reader._terms  # noqa: SLF001  (SegmentReader: raw postings, deletions not applied)
        return terms.matcher(fieldname, btext, fmt)
    except AttributeError:
        return reader.postings(fieldname, btext)


def _read_postings(reader: IndexReader, fieldname: str, btext: bytes) -> tuple[np.ndarray, ...]:
    """(ids, weights) of a term in one segment, read a block at a time where possible."""
    try:
        m = _raw_postings(reader, fieldname, btext)
    except TermNotFound:
        return np.zeros(0, np.int32), np.zeros(0, np.float32)
    ids: list[Any] = []
    weights: list[Any] = []
    if type(m) is W3LeafMatcher and not m._byteids:  # noqa: SLF001
        # A block at a time: its ids are stored delta-encoded, its weights as an array, one
        # float for all, or nothing when every weight is 1.
        while m.is_active():
            m._read_data()  # noqa: SLF001
            deltas, w = m._data[0], m._data[1]  # noqa: SLF001
            ids.append(np.cumsum(np.asarray(deltas, dtype=np.int64)).astype(np.int32))
            if w is None or isinstance(w, float):
                weights.append(np.full(len(deltas), 1.0 if w is None else w, np.float32))
            else:
                weights.append(np.asarray(w, dtype=np.float32))
            m._next_block()  # noqa: SLF001
        if not ids:
            return np.zeros(0, np.int32), np.zeros(0, np.float32)
        return np.concatenate(ids), np.concatenate(weights)
    while m.is_active():
        ids.append(m.id())
        weights.append(m.weight())
        m.next()
    return np.asarray(ids, dtype=np.int32), np.asarray(weights, dtype=np.float32)


def _read_positions(reader: IndexReader, fieldname: str, btext: bytes) -> tuple[np.ndarray]:
    """Every occurrence of a term in one segment as docnum << POS_BITS | position, sorted."""
    try:
        m = _raw_postings(reader, fieldname, btext)
    except TermNotFound:
        return (np.zeros(0, np.int64),)
    fmt = reader.schema[fieldname].format
    docs: list[Any] = []
    poses: list[Any] = []
    if type(m) is W3LeafMatcher and isinstance(fmt, StemPositions) and not m._byteids:  # noqa: SLF001
        # A block at a time: each value is its page's positions as packed uint32s.
        while m.is_active():
            m._read_data()  # noqa: SLF001
            deltas, values = m._data[0], m._data[2]  # noqa: SLF001
            ids = np.cumsum(np.asarray(deltas, dtype=np.int64))
            docs.append(np.repeat(ids, [len(v) >> 2 for v in values]))
            poses.append(np.frombuffer(b"".join(values), dtype="<u4"))
            m._next_block()  # noqa: SLF001
    else:
        while m.is_active():
            found = fmt.decode_positions(m.value())
            docs.append(np.full(len(found), m.id(), dtype=np.int64))
            poses.append(np.asarray(found, dtype=np.int64))
            m.next()
    if not docs:
        return (np.zeros(0, np.int64),)
    keys = (np.concatenate(docs) << POS_BITS) | np.concatenate(poses).astype(np.int64)
    keys.sort()
    return (keys,)


def _read_lengths(reader: IndexReader, fieldname: str) -> tuple[np.ndarray]:
    """Each document's length in a field, as Whoosh's scorer sees it (byte-encoded, lossy)."""
    n = reader.doc_count_all()
    try:
        perdoc = reader._perdoc  # noqa: SLF001  (the lengths column, read whole)
        column = perdoc._cached_reader(_lenfield(fieldname), LENGTHS_COLUMN)  # noqa: SLF001
    except AttributeError:
        column = None
    if column is None:
        lengths = [reader.doc_field_length(i, fieldname, 1) or 1 for i in range(n)]
        return (np.asarray(lengths, dtype=np.float64),)
    raw = np.zeros(n, dtype=np.uint8)
    loaded = np.asarray(column.load(), dtype=np.uint8)[:n]
    raw[: len(loaded)] = loaded
    return (_LENGTH_OF_BYTE[raw],)


class _Run:
    """One query evaluation against one searcher snapshot."""

    def __init__(self, searcher: Searcher) -> None:
        self.searcher = searcher
        self.reader = searcher.reader()
        self.n = self.reader.doc_count_all()
        self.leaves = segments(self.reader)
        weighting = searcher.weighting
        if type(weighting) is not BM25F:
            raise Unsupported(f"weighting {type(weighting).__name__}")
        self.weighting = weighting
        self._lengths: dict[str, np.ndarray] = {}

    # --- arrays over the whole snapshot ------------------------------------------------------

    def postings(self, fieldname: str, btext: bytes) -> tuple[np.ndarray, np.ndarray]:
        """Global document numbers (ascending) and weights of a term, deleted documents out."""
        ids, weights = [], []
        for leaf, offset, segid in self.leaves:
            i, w = _CACHE.get(
                ("p", segid, fieldname, btext),
                lambda leaf=leaf: _read_postings(leaf, fieldname, btext),
            )
            deleted = leaf.deleted_docs_set if leaf.has_deletions() else None
            if deleted:
                keep = ~np.isin(i, np.fromiter(deleted, np.int32, len(deleted)))
                i, w = i[keep], w[keep]
            ids.append(i.astype(np.int64) + offset)
            weights.append(w)
        if len(ids) == 1:
            return ids[0], weights[0].astype(np.float64)
        return np.concatenate(ids), np.concatenate(weights).astype(np.float64)

    def positions(self, fieldname: str, btext: bytes) -> np.ndarray:
        """Occurrence keys of a term over the snapshot (deleted documents are masked later)."""
        keys = []
        for leaf, offset, segid in self.leaves:
            (k,) = _CACHE.get(
                ("x", segid, fieldname, btext),
                lambda leaf=leaf: _read_positions(leaf, fieldname, btext),
            )
            keys.append(k + (offset << POS_BITS))
        return keys[0] if len(keys) == 1 else np.concatenate(keys)

    def lengths(self, fieldname: str) -> np.ndarray:
        if fieldname not in self._lengths:
            parts = [
                _CACHE.get(("l", segid, fieldname), lambda r=leaf: _read_lengths(r, fieldname))[0]
                for leaf, _, segid in self.leaves
            ]
            self._lengths[fieldname] = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return self._lengths[fieldname]

    def empty(self) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(self.n, bool), np.zeros(self.n, np.float64)

    def live(self) -> np.ndarray:
        """Documents a reader may find: pages (not the bookkeeping documents), not deleted."""
        mask = np.zeros(self.n, bool)
        ids, _ = self.postings("kind", b"page")
        mask[ids] = True
        return mask

    # --- query nodes -------------------------------------------------------------------------

    def term_scores(self, fieldname: str, btext: bytes, ids: np.ndarray, weights: np.ndarray):  # noqa: ANN201
        """BM25F for one term, as Whoosh's BM25FScorer computes it."""
        field = self.searcher.schema[fieldname]
        if not field.scorable:  # Whoosh's WeightScorer: the term's largest weight, everywhere
            return np.full(len(ids), weights.max() if len(weights) else 0.0)
        df = self.searcher.doc_frequency(fieldname, btext)
        idf = log(self.searcher.doc_count_all() / (df + 1)) + 1
        avgfl = self.searcher.avg_field_length(fieldname) or 1
        b = self.weighting._field_B.get(fieldname, self.weighting.B)  # noqa: SLF001
        k1 = self.weighting.K1
        fl = self.lengths(fieldname)[ids]
        return idf * ((weights * (k1 + 1)) / (weights + k1 * ((1 - b) + b * fl / avgfl)))

    def term(self, fieldname: str, text: Any, boost: float) -> tuple[np.ndarray, np.ndarray]:
        mask, scores = self.empty()
        if fieldname not in self.searcher.schema:
            return mask, scores
        try:
            btext = self.searcher.schema[fieldname].to_bytes(text)
        except ValueError:
            return mask, scores
        if (fieldname, btext) not in self.reader:
            return mask, scores
        ids, weights = self.postings(fieldname, btext)
        mask[ids] = True
        scores[ids] = self.term_scores(fieldname, btext, ids, weights) * boost
        return mask, scores

    def multiterm(self, node: query.MultiTerm) -> tuple[np.ndarray, np.ndarray]:
        """Prefix, wildcard and fuzzy terms: the OR of their expansions, each scored by BM25F.

        (Whoosh 2.7.5's `constantscore` has no effect: its searcher falls back to the default
        weighting, so neither does it here.)
        """
        fieldname = node.field()
        if isinstance(node, query.FuzzyTerm):
            from wiki.search import spelling  # (spelling uses this module's cache)

            near = spelling.within(
                self.reader, fieldname, node.text, node.maxdist, node.prefixlength
            )
            btexts = {w.encode("utf-8") for w in near}
        else:
            btexts = {w for w in node._btexts(self.reader) if w}  # noqa: SLF001
        mask, scores = self.empty()
        for btext in btexts:
            ids, weights = self.postings(fieldname, btext)
            mask[ids] = True
            scores[ids] += self.term_scores(fieldname, btext, ids, weights)
        return mask, scores * node.boost

    def phrase(self, node: query.Phrase) -> tuple[np.ndarray, np.ndarray]:
        """Documents where the words stand next to each other in order; scored as their AND."""
        if node.slop != 1:
            raise Unsupported("phrase with slop")
        fieldname = node.fieldname
        if fieldname not in self.searcher.schema or not node.words:
            return self.empty()
        field = self.searcher.schema[fieldname]
        if not field.format or not field.format.supports("positions"):
            raise Unsupported("phrase on a field without positions")
        try:
            btexts = [field.to_bytes(w) for w in node.words]
        except ValueError:
            return self.empty()
        if any((fieldname, b) not in self.reader for b in btexts):
            return self.empty()
        keys = self.positions(fieldname, btexts[0])
        for offset, btext in enumerate(btexts[1:], start=1):
            if not len(keys):
                break
            keys = np.intersect1d(keys, self.positions(fieldname, btext) - offset)
        mask, scores = self.empty()
        docs = np.unique(keys >> POS_BITS)
        mask[docs] = True
        for btext in btexts:
            ids, weights = self.postings(fieldname, btext)
            scores[ids] += self.term_scores(fieldname, btext, ids, weights)
        scores *= node.boost
        mask &= self.live_mask
        return mask, np.where(mask, scores, 0.0)

    def evaluate(self, node: query.Query) -> tuple[np.ndarray, np.ndarray]:  # noqa: C901, PLR0911
        """(matched mask, scores) of a query node over every document of the snapshot."""
        if node is query.NullQuery or isinstance(node, type(query.NullQuery)):
            return self.empty()
        if type(node) is query.Term:
            return self.term(node.fieldname, node.text, node.boost)
        if isinstance(node, query.Prefix | query.Wildcard | query.FuzzyTerm):
            return self.multiterm(node)
        if type(node) is query.Phrase:
            return self.phrase(node)
        if type(node) is query.Every:
            mask = self.live_mask.copy()
            return mask, mask * float(node.boost)
        if type(node) is query.Or:
            if node.minmatch or node.scale:
                raise Unsupported("Or with minmatch or scale")
            mask, scores = self.empty()
            for child in node.subqueries:
                m, s = self.evaluate(child)
                mask |= m
                scores += s
            return mask, scores * node.boost
        if type(node) is query.And:
            mask, scores = None, None
            for child in node.subqueries:
                m, s = self.evaluate(child)
                mask = m if mask is None else mask & m
                scores = s if scores is None else scores + s
            if mask is None:
                return self.empty()
            return mask, np.where(mask, scores * node.boost, 0.0)
        if type(node) is query.AndNot:
            mask, scores = self.evaluate(node.a)
            negative, _ = self.evaluate(node.b)
            mask = mask & ~negative
            return mask, np.where(mask, scores * node.boost, 0.0)
        if type(node) is query.AndMaybe:
            mask, scores = self.evaluate(node.a)
            _, optional = self.evaluate(node.b)
            return mask, np.where(mask, (scores + optional) * node.boost, 0.0)
        if type(node) is query.Not:
            matched, _ = self.evaluate(node.query)
            mask = self.live_mask & ~matched
            return mask, mask * float(node.boost)
        raise Unsupported(type(node).__name__)

    @property
    def live_mask(self) -> np.ndarray:
        if not hasattr(self, "_live"):
            self._live = self.live()
        return self._live


def pages_with(searcher: Searcher, fieldnames: list[str], text: str) -> int:
    """How many live pages hold the (analysed) word in any of the fields."""
    execution = _Run(searcher)
    mask = np.zeros(execution.n, bool)
    for fieldname in fieldnames:
        mask |= execution.term(fieldname, text, 1.0)[0]
    return int(np.count_nonzero(mask & execution.live_mask))


def run(searcher: Searcher, q: query.Query, limit: int) -> Ranked:
    """The best `limit` documents for q and the exact number of matches; raises Unsupported."""
    execution = _Run(searcher)
    mask, scores = execution.evaluate(q)
    mask &= execution.live_mask
    matched = np.flatnonzero(mask)
    total = len(matched)
    if total == 0:
        return Ranked([], 0, [])
    found = scores[matched]
    if total > limit:
        # Keep every document scoring at least the limit-th best, so ties break as Whoosh's do.
        cut = np.partition(found, total - limit)[total - limit]
        keep = found >= cut
        matched, found = matched[keep], found[keep]
    order = np.lexsort((matched, -found))[:limit]
    return Ranked(matched[order].tolist(), total, found[order].tolist())


def configure(megabytes: int) -> None:
    """Set this process's cache budget; a smaller budget drops the least recently used now."""
    _CACHE.resize(max(1, int(megabytes)) << 20)


def clear_cache() -> None:
    """Forget every cached array (tests; the cache is otherwise bounded and self-renewing)."""
    _CACHE.clear()
