"""Line diffs between two texts, with word-level marks, ready for HTML display.

The main entry point is :func:`compute`, which returns a :class:`Diff` made of
display :class:`Row` objects. All text in the rows is escaped with
:func:`markupsafe.escape`; changed words are wrapped in ``<del>``/``<ins>``.

Lines are matched with :class:`difflib.SequenceMatcher` (``autojunk=False``).
To stay fast on long pages, common prefixes/suffixes are trimmed first, lines
that occur exactly once on both sides are used as anchors (as in "patience"
diff), and ``SequenceMatcher`` only runs on the small gaps between anchors.
Gaps whose matching would be expensive (many repeated lines such as blank
lines) fall back to a bounded Myers O(ND) diff.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

from markupsafe import Markup, escape

__all__ = ["Diff", "Row", "compute"]

CONTEXT = "context"
ADD = "add"
DELETE = "delete"
CHANGE = "change"
SKIP = "skip"

#: Replace blocks larger than this (on either side) get no word-level diff.
MAX_WORD_DIFF_BLOCK = 500
#: Two lines whose word similarity is below this are shown as delete + add.
MIN_CHANGE_RATIO = 0.3
#: Lines with more tokens than this only get a prefix/suffix word diff.
MAX_WORD_TOKENS = 1000
#: Above this estimated cost, a gap is diffed with Myers instead of SequenceMatcher.
MAX_MATCHER_COST = 20_000
#: Above this edit distance, Myers gives up and the gap becomes one replace block.
MAX_MYERS_EDITS = 500

_TOKEN_RE = re.compile(r"\w+|\s+|[^\w\s]")
_EMPTY = Markup("")

Block = tuple[int, int, int]  # (i, j, size): a[i:i+size] == b[j:j+size]
Opcode = tuple[str, int, int, int, int]


@dataclass(frozen=True)
class Row:
    """One displayed line (or a collapsed run of unchanged lines) of a diff."""

    kind: str
    old_no: int | None
    new_no: int | None
    old_html: Markup
    new_html: Markup
    skipped: int = 0


@dataclass(frozen=True)
class Diff:
    """The rows of a diff plus counts of added and removed lines."""

    rows: tuple[Row, ...]
    added: int
    removed: int

    @property
    def identical(self) -> bool:
        """Whether the two texts had no line differences at all."""
        return self.added == 0 and self.removed == 0


def compute(old: str, new: str, context: int | None = 3) -> Diff:
    """Line diff of two texts with word-level marks inside changed lines."""
    if context is not None and context < 0:
        raise ValueError("context must be >= 0 or None")
    a = _split(old)
    b = _split(new)
    opcodes = _line_opcodes(a, b)
    if all(tag == "equal" for tag, *_ in opcodes):
        return Diff(rows=(), added=0, removed=0)
    rows: list[Row] = []
    added = removed = 0
    last = len(opcodes) - 1
    for index, (tag, i1, i2, j1, j2) in enumerate(opcodes):
        if tag != "equal":
            removed += i2 - i1
            added += j2 - j1
            rows.extend(_replace_rows(a, b, i1, i2, j1, j2))
            continue
        # Equal runs alternate with changes, so only the first/last run touch the text ends.
        size = i2 - i1
        head = size if context is None else (0 if index == 0 else context)
        tail = size if context is None else (0 if index == last else context)
        hidden = size - head - tail
        if hidden <= 0:
            rows.extend(_context_rows(a, b, i1, j1, 0, size))
            continue
        rows.extend(_context_rows(a, b, i1, j1, 0, head))
        rows.append(Row(SKIP, None, None, _EMPTY, _EMPTY, skipped=hidden))
        rows.extend(_context_rows(a, b, i1, j1, size - tail, size))
    return Diff(rows=tuple(rows), added=added, removed=removed)


# --------------------------------------------------------------------------- rows


def _split(text: str) -> list[str]:
    """Split text into plain-str lines (even from Markup), treating \\r\\n, \\r and \\n alike."""
    return str(text).replace("\r\n", "\n").splitlines()


def _replace_rows(a: list[str], b: list[str], i1: int, i2: int, j1: int, j2: int) -> Iterator[Row]:
    """Rows for a non-equal opcode: paired change rows, then leftover deletes/adds."""
    n, m = i2 - i1, j2 - j1
    paired = 0 if max(n, m) > MAX_WORD_DIFF_BLOCK else min(n, m)
    for k in range(paired):
        old_no, new_no = i1 + k + 1, j1 + k + 1
        old_line, new_line = a[i1 + k], b[j1 + k]
        if old_line == new_line:  # only possible when Myers gave up on a huge gap
            yield from _context_rows(a, b, i1 + k, j1 + k, 0, 1)
            continue
        marked = _word_diff(old_line, new_line)
        if marked is None:
            yield Row(DELETE, old_no, None, escape(old_line), _EMPTY)
            yield Row(ADD, None, new_no, _EMPTY, escape(new_line))
        else:
            yield Row(CHANGE, old_no, new_no, marked[0], marked[1])
    for i in range(i1 + paired, i2):
        yield Row(DELETE, i + 1, None, escape(a[i]), _EMPTY)
    for j in range(j1 + paired, j2):
        yield Row(ADD, None, j + 1, _EMPTY, escape(b[j]))


def _context_rows(
    a: list[str], b: list[str], i1: int, j1: int, start: int, stop: int
) -> Iterator[Row]:
    """Context rows for offsets start..stop of the equal run beginning at a[i1] / b[j1]."""
    for k in range(start, stop):
        line = escape(a[i1 + k])
        yield Row(CONTEXT, i1 + k + 1, j1 + k + 1, line, line)


# ---------------------------------------------------------------------- word diff


def _word_diff(old: str, new: str) -> tuple[Markup, Markup] | None:
    """Mark changed words of two lines, or None if they are too dissimilar."""
    ta = _TOKEN_RE.findall(old)
    tb = _TOKEN_RE.findall(new)
    if max(len(ta), len(tb)) > MAX_WORD_TOKENS:
        pre, suf = _common_ends(ta, tb)
        codes: list[Opcode] = [
            ("equal", 0, pre, 0, pre),
            ("replace", pre, len(ta) - suf, pre, len(tb) - suf),
            ("equal", len(ta) - suf, len(ta), len(tb) - suf, len(tb)),
        ]
    else:
        codes = SequenceMatcher(None, ta, tb, autojunk=False).get_opcodes()
    if _similarity(ta, tb, codes) < MIN_CHANGE_RATIO:
        return None
    old_parts: list[Markup] = []
    new_parts: list[Markup] = []
    for changed, old_text, new_text in _segments(ta, tb, codes):
        if not changed:
            old_parts.append(escape(old_text))
            new_parts.append(escape(new_text))
            continue
        if old_text:
            old_parts.append(Markup("<del>{}</del>").format(old_text))
        if new_text:
            new_parts.append(Markup("<ins>{}</ins>").format(new_text))
    return _EMPTY.join(old_parts), _EMPTY.join(new_parts)


def _similarity(ta: Sequence[str], tb: Sequence[str], codes: Sequence[Opcode]) -> float:
    """Share of words kept between two token lists (whitespace only counts on blank lines)."""

    def weight(tokens: Sequence[str]) -> int:
        return sum(1 for tok in tokens if not tok.isspace())

    total = weight(ta) + weight(tb)
    if total == 0:  # nothing but whitespace on both sides
        total = len(ta) + len(tb)
        kept = sum(i2 - i1 for tag, i1, i2, _, _ in codes if tag == "equal")
        return 2 * kept / total if total else 1.0
    kept = sum(weight(ta[i1:i2]) for tag, i1, i2, _, _ in codes if tag == "equal")
    return 2 * kept / total


def _segments(
    ta: Sequence[str], tb: Sequence[str], codes: Sequence[Opcode]
) -> list[tuple[bool, str, str]]:
    """Turn token opcodes into (changed, old_text, new_text) runs, merging whitespace gaps."""
    segs: list[tuple[bool, str, str]] = []
    for tag, i1, i2, j1, j2 in codes:
        if i1 == i2 and j1 == j2:
            continue
        segs.append((tag != "equal", "".join(ta[i1:i2]), "".join(tb[j1:j2])))
    # A lone run of whitespace between two changes reads better as part of the change.
    merged: list[tuple[bool, str, str]] = []
    k = 0
    while k < len(segs):
        seg = segs[k]
        if (
            not seg[0]
            and seg[1].isspace()
            and merged
            and merged[-1][0]
            and k + 1 < len(segs)
            and segs[k + 1][0]
        ):
            prev, nxt = merged.pop(), segs[k + 1]
            merged.append((True, prev[1] + seg[1] + nxt[1], prev[2] + seg[2] + nxt[2]))
            k += 2
            continue
        if seg[0] and merged and merged[-1][0]:
            prev = merged.pop()
            merged.append((True, prev[1] + seg[1], prev[2] + seg[2]))
        else:
            merged.append(seg)
        k += 1
    return merged


def _common_ends(a: Sequence[object], b: Sequence[object]) -> tuple[int, int]:
    """Lengths of the common prefix and (non-overlapping) common suffix of two sequences."""
    limit = min(len(a), len(b))
    pre = 0
    while pre < limit and a[pre] == b[pre]:
        pre += 1
    suf = 0
    while suf < limit - pre and a[len(a) - 1 - suf] == b[len(b) - 1 - suf]:
        suf += 1
    return pre, suf


# ---------------------------------------------------------------------- line diff


def _line_opcodes(a: list[str], b: list[str]) -> list[Opcode]:
    """Opcodes (as in SequenceMatcher.get_opcodes) for two lists of lines."""
    ids: dict[str, int] = {}
    ia = [ids.setdefault(line, len(ids)) for line in a]
    ib = [ids.setdefault(line, len(ids)) for line in b]
    blocks: list[Block] = []
    pre, suf = _common_ends(ia, ib)
    if pre:
        blocks.append((0, 0, pre))
    alo, ahi, blo, bhi = pre, len(ia) - suf, pre, len(ib) - suf
    if alo < ahi and blo < bhi:
        anchors = _unique_anchors(ia, ib, alo, ahi, blo, bhi)
        ai, bj = alo, blo
        for i, j in anchors:
            _match_gap(ia, ib, ai, i, bj, j, blocks)
            blocks.append((i, j, 1))
            ai, bj = i + 1, j + 1
        _match_gap(ia, ib, ai, ahi, bj, bhi, blocks)
    if suf:
        blocks.append((len(ia) - suf, len(ib) - suf, suf))
    return _blocks_to_opcodes(blocks, len(ia), len(ib))


def _unique_anchors(
    a: list[int], b: list[int], alo: int, ahi: int, blo: int, bhi: int
) -> list[tuple[int, int]]:
    """Longest increasing chain of lines that occur exactly once on each side."""
    count_a = Counter(a[alo:ahi])
    count_b = Counter(b[blo:bhi])
    pos_b = {b[j]: j for j in range(blo, bhi) if count_b[b[j]] == 1}
    pairs = [(i, pos_b[a[i]]) for i in range(alo, ahi) if count_a[a[i]] == 1 and a[i] in pos_b]
    if not pairs:
        return []
    # Longest increasing subsequence on the b positions (patience sorting).
    tails: list[int] = []  # b position at the end of the best chain of each length
    tail_idx: list[int] = []
    back: list[int] = [-1] * len(pairs)
    for idx, (_, j) in enumerate(pairs):
        k = bisect_left(tails, j)
        if k == len(tails):
            tails.append(j)
            tail_idx.append(idx)
        else:
            tails[k] = j
            tail_idx[k] = idx
        back[idx] = tail_idx[k - 1] if k else -1
    chain: list[tuple[int, int]] = []
    idx = tail_idx[-1]
    while idx != -1:
        chain.append(pairs[idx])
        idx = back[idx]
    chain.reverse()
    return chain


def _match_gap(
    a: list[int], b: list[int], alo: int, ahi: int, blo: int, bhi: int, blocks: list[Block]
) -> None:
    """Append the matching blocks between a[alo:ahi] and b[blo:bhi] to `blocks`."""
    if alo >= ahi or blo >= bhi:
        return
    ga, gb = a[alo:ahi], b[blo:bhi]
    pre, suf = _common_ends(ga, gb)
    if pre:
        blocks.append((alo, blo, pre))
    ga, gb = ga[pre : len(ga) - suf], gb[pre : len(gb) - suf]
    base_a, base_b = alo + pre, blo + pre
    if ga and gb:
        count_b = Counter(gb)
        cost = sum(count_b.get(x, 0) for x in ga)
        if cost <= MAX_MATCHER_COST:
            matcher = SequenceMatcher(None, ga, gb, autojunk=False)
            found = [(i, j, n) for i, j, n in matcher.get_matching_blocks() if n]
        else:
            found = _myers_blocks(ga, gb)
        blocks.extend((base_a + i, base_b + j, n) for i, j, n in found)
    if suf:
        blocks.append((ahi - suf, bhi - suf, suf))


def _myers_blocks(a: Sequence[int], b: Sequence[int]) -> list[Block]:
    """Matching blocks of a shortest edit script (Myers), or none if it is too long."""
    n, m = len(a), len(b)
    max_d = min(n + m, MAX_MYERS_EDITS)
    off = max_d + 1
    v = [0] * (2 * max_d + 3)
    trace: list[list[int]] = []  # trace[d][k + d + 1] == furthest x on diagonal k before step d
    for d in range(max_d + 1):
        trace.append(v[off - d - 1 : off + d + 2])
        for k in range(-d, d + 1, 2):
            if k == -d or (k != d and v[off + k - 1] < v[off + k + 1]):
                x = v[off + k + 1]
            else:
                x = v[off + k - 1] + 1
            y = x - k
            while x < n and y < m and a[x] == b[y]:
                x += 1
                y += 1
            v[off + k] = x
            if x >= n and y >= m:
                return _myers_backtrack(trace, n, m)
    return []


def _myers_backtrack(trace: list[list[int]], n: int, m: int) -> list[Block]:
    """Walk a Myers trace backwards from (n, m) and collect the diagonal runs."""
    blocks: list[Block] = []
    x, y = n, m
    for d in range(len(trace) - 1, -1, -1):
        v = trace[d]
        k = x - y
        if k == -d or (k != d and v[k - 1 + d + 1] < v[k + 1 + d + 1]):
            prev_k = k + 1  # insertion: came down from diagonal k + 1
            mid_x = v[prev_k + d + 1]
        else:
            prev_k = k - 1  # deletion: came right from diagonal k - 1
            mid_x = v[prev_k + d + 1] + 1
        if d == 0:
            mid_x = 0
        snake = x - mid_x
        if snake > 0:
            blocks.append((mid_x, mid_x - k, snake))
        x = v[prev_k + d + 1]
        y = x - prev_k
    blocks.reverse()
    return blocks


def _blocks_to_opcodes(blocks: list[Block], n: int, m: int) -> list[Opcode]:
    """Convert sorted matching blocks into SequenceMatcher-style opcodes."""
    merged: list[Block] = []
    for i, j, size in blocks:
        if merged and merged[-1][0] + merged[-1][2] == i and merged[-1][1] + merged[-1][2] == j:
            pi, pj, psize = merged.pop()
            merged.append((pi, pj, psize + size))
        else:
            merged.append((i, j, size))
    merged.append((n, m, 0))
    codes: list[Opcode] = []
    i = j = 0
    for ai, bj, size in merged:
        if i < ai and j < bj:
            codes.append(("replace", i, ai, j, bj))
        elif i < ai:
            codes.append(("delete", i, ai, j, bj))
        elif j < bj:
            codes.append(("insert", i, ai, j, bj))
        if size:
            codes.append(("equal", ai, ai + size, bj, bj + size))
        i, j = ai + size, bj + size
    return codes
