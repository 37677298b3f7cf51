"""Full rebuilds: the packed positions format, the term pool, and builds in several processes."""

from __future__ import annotations

import multiprocessing
import os
import random
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from whoosh import index as whoosh_index
from whoosh.analysis import StemmingAnalyzer
from whoosh.formats import Positions
from whoosh.writing import SegmentWriter

from wiki.search import index, query

CONTENT = Path(__file__).resolve().parent.parent / "content"
TEXTS = [p.read_text() for p in sorted(CONTENT.glob("*.md"))[:8]]
TEXTS += ["The a I x of it's e.g. foo.bar 3.14 **Ünïcode** ß dock* the end", "", "the of and"]
TEXTS += [text.encode("ascii", "ignore").decode() for text in TEXTS]  # the ASCII shortcuts


def _children() -> set[int]:
    """Live processes whose parent is this one (Linux /proc)."""
    me, found = str(os.getpid()), set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if stat.rsplit(")", 1)[1].split()[1] == me:
                found.add(int(entry))
    return found


def test_term_positions_are_the_analyzer_tokens_grouped():
    analyzer = index.StemAnalyzer()
    for text in TEXTS:
        expected: dict[str, list[int]] = {}
        for token in analyzer(text, positions=True, mode="index"):
            expected.setdefault(token.text, []).append(token.pos)
        assert analyzer.term_positions(text) == expected


def test_ascii_shortcuts_match_the_general_expressions():
    for text in TEXTS:
        if text.isascii():
            assert index._ASCII_TOKENS(text) == index._TOKENS(text)
            low = text.lower()
            assert index._ASCII_WORDS.findall(low) == index._WORDS.findall(low)
    assert index._words("Ünïcode and more, café") == {"ünïcode", "and", "more", "café"}


@pytest.mark.parametrize("boost", [1.0, 4.0])
def test_stem_positions_index_what_whoosh_positions_did(boost):
    """Same terms, frequencies, weights and positions as Whoosh's Positions with the stemmer."""
    new, old = index.StemPositions(field_boost=boost), Positions(field_boost=boost)
    for text in TEXTS:
        got = {
            w: (f, wt, new.decode_positions(v))
            for w, f, wt, v in new.word_values(text, index.StemAnalyzer(), mode="index")
        }
        reference = StemmingAnalyzer(stemfn=index.deep_stem)
        want = {
            w: (f, wt, old.decode_positions(v))
            for w, f, wt, v in old.word_values(text, reference, mode="index")
        }
        assert got == want
        for _, f, _, v in new.word_values(text, index.StemAnalyzer(), mode="index"):
            assert new.decode_frequency(v) == f
            assert new.decode_weight(v) == f * boost


def test_stem_positions_round_trip_and_combine():
    fmt = index.StemPositions()
    for positions in ([0], [3, 7, 8, 1000], list(range(0, 300_000, 997))):
        value = fmt.encode(positions)
        assert fmt.decode_positions(value) == positions
        assert fmt.decode_frequency(value) == len(positions)
        assert fmt.decode_position_boosts(value) == [(p, 1) for p in positions]
    assert fmt.decode_positions(fmt.combine([fmt.encode([1, 5]), fmt.encode([2, 5])])) == [1, 2, 5]
    # Another analyzer still works, through Whoosh's generic path.
    values = fmt.word_values("bees and ants, bees", StemmingAnalyzer())
    assert {w: fmt.decode_positions(v) for w, _, _, v in values} == {"bee": [0, 2], "ant": [1]}


@pytest.fixture
def pages(app, make_page):
    """Enough pages for several build processes, with shared words, phrases and tags."""
    for n in range(23):
        topic = ["docker", "redis", "kubernetes"][n % 3]
        make_page(
            f"{topic.title()} notes {n}",
            TEXTS[n % 8][:1500]
            + f"\n\nA connection pool for {topic} number {n}: zq{n}marker."
            + (" Marmalade." if n == 5 else ""),
            tags=f"{topic} ops",
        )
    return 23


@pytest.fixture
def many_pages(app, admin):
    """Enough pages for posting lists of several blocks (128 postings) and several batches
    per build process, written straight to the database."""
    from wiki.extensions import db
    from wiki.models import Page, PageEvent, Revision

    for n in range(320):
        title = f"Bulk {['docker', 'redis', 'celery'][n % 3]} page {n}"
        page = Page(slug=f"bulk-{n}", title=title)
        db.session.add(page)
        db.session.flush()
        body = TEXTS[n % 8][n % 7 * 200 :][:2500] + f" Marker zq{n}bulk."
        revision = Revision(
            page_id=page.id, author_id=admin.id, title=title, body=body, status="published"
        )
        db.session.add(revision)
        db.session.flush()
        page.current_revision_id = revision.id
        db.session.add(PageEvent(page_id=page.id, kind="publish"))
    db.session.commit()
    return 320


def _postings(reader) -> list[tuple]:
    # spell_title postings all claim document 0 (a Whoosh quirk): compare its words only.
    return sorted(
        (fieldname, text, docnum if fieldname != "spell_title" else 0, weight, value)
        for fieldname, text, docnum, weight, value in reader.iter_postings()
    )


def _snapshot(folder: str) -> dict:
    """Everything searches read from an index: documents, lengths, postings, scores."""
    ix = whoosh_index.open_dir(folder)
    with ix.searcher() as searcher:
        reader = searcher.reader()
        snapshot = {
            "docs": [fields for _, fields in reader.iter_docs()],
            # (A missing length reads as None from one segment, as 0 through several.)
            "lengths": {
                name: [reader.doc_field_length(n, name) or 0 for n in range(reader.doc_count_all())]
                for name in ix.schema.scorable_names()
            },
            "totals": {name: reader.field_length(name) for name in ix.schema.scorable_names()},
            "postings": _postings(reader),
        }
        for text in ("docker", "connection pool", '"connection pool"', "title:redis", "tag:ops"):
            results = searcher.search(query.parse(text), limit=None)
            snapshot[text] = [(hit["page_id"], round(hit.score, 9)) for hit in results]
        return snapshot


@pytest.mark.parametrize("procs", [2, 3])
def test_build_in_several_processes_gives_the_serial_index(pages, many_pages, tmp_path, procs):
    serial, parallel = str(tmp_path / "serial"), str(tmp_path / "parallel")
    os.mkdir(serial)
    os.mkdir(parallel)
    total = pages + many_pages
    assert index._build(serial, None, procs=1) == total
    calls: list[int] = []
    assert index._build(parallel, calls.append, procs=procs) == total
    assert calls == [1] * total  # progress: once per page, from this process
    assert len(whoosh_index.open_dir(parallel)._segments()) == procs
    expected, got = _snapshot(serial), _snapshot(parallel)
    assert got == expected
    assert expected["connection pool"] and expected['"connection pool"']
    page_ids = [d.get("page_id") for d in got["docs"]]
    assert page_ids.count(index.META) == 1 and page_ids.count(index.VOCAB) == 1
    assert not _children()


def _blocks(folder: str) -> dict[tuple, list]:
    """Every term's posting blocks in a one-segment index: the block statistics searches skip
    by (count, last id, top weight, length range), then the postings."""
    ix = whoosh_index.open_dir(folder)
    with ix.reader() as reader:
        out = {}
        for fieldname, text in reader.all_terms():
            matcher, blocks = reader.postings(fieldname, text), []
            while True:
                blocks.append(
                    (
                        matcher._blocklength,
                        matcher._maxid,
                        matcher._maxweight,
                        matcher._minlength,
                        matcher._maxlength,
                    )
                )
                if matcher._lastblock:
                    break
                matcher._next_block()
            matcher.reset()
            postings = []
            while matcher.is_active():
                postings.append((matcher.id(), matcher.weight(), matcher.value()))
                matcher.next()
            info = reader.term_info(fieldname, text)
            stats = (info.weight(), info.doc_frequency(), info.min_length(), info.max_length())
            out[fieldname, text] = [stats, (info.max_weight(), info.min_id(), info.max_id())]
            out[fieldname, text] += blocks + postings
        return out


def test_blocks_are_written_as_whoosh_writes_them(many_pages, tmp_path, monkeypatch):
    ours, whooshs = str(tmp_path / "ours"), str(tmp_path / "whoosh")
    os.mkdir(ours)
    os.mkdir(whooshs)
    index._build(ours, None, procs=1)
    # Whoosh's own way: one posting at a time through add_document and the posting writer.
    monkeypatch.setattr(index._Writer, "add_document", SegmentWriter.add_document)
    monkeypatch.setattr(index._Writer, "_flush_segment", SegmentWriter._flush_segment)
    index._build(whooshs, None, procs=1)
    expected = _blocks(whooshs)
    assert _blocks(ours) == expected
    assert max(len(v) for v in expected.values()) > 2 + 2 + many_pages  # several blocks
    assert _snapshot(ours) == _snapshot(whooshs)
    with whoosh_index.open_dir(ours).reader() as reader:  # small blocks stay uncompressed
        assert reader.postings("title", b"bulk")._compression > 0
        assert reader.postings("body", b"zq5bulk")._compression == 0


def test_syncs_write_what_whoosh_writes(tmp_path):
    """Updates, deletions and merges (as sync() commits them) through _Writer give the index
    Whoosh's own SegmentWriter gives."""
    folders = {}
    for name in ("ours", "whoosh"):
        folders[name] = str(tmp_path / name)
        os.mkdir(folders[name])
        ix = whoosh_index.create_in(folders[name], index.make_schema())
        rng = random.Random(5)
        for step in range(30):
            writer = index._Writer(ix) if name == "ours" else ix.writer(compound=False)
            for _ in range(3):
                n = rng.randrange(12)
                if rng.random() < 0.2:
                    writer.delete_by_term("page_id", str(n))
                    continue
                text = TEXTS[rng.randrange(8)]
                start = rng.randrange(len(text))
                title = f"Page {n} take {step}"
                writer.update_document(
                    page_id=str(n),
                    kind=index.PAGE,
                    title=title,
                    title_words=title,
                    title_exact=index.exact_key(title),
                    body=index.plain_text(text[start : start + 800]),
                    tags=rng.choice(["docker ops", "redis", ""]),
                )
            writer.update_document(page_id=index.META, meta=str(step))
            writer.commit(merge=len(writer.segments) >= index.MAX_SEGMENTS)
    assert len(whoosh_index.open_dir(folders["ours"])._segments()) < index.MAX_SEGMENTS
    assert _snapshot(folders["ours"]) == _snapshot(folders["whoosh"])


def test_term_pool_spilling_to_runs_changes_nothing(pages, tmp_path, monkeypatch):
    whole, spilled = str(tmp_path / "whole"), str(tmp_path / "spilled")
    os.mkdir(whole)
    os.mkdir(spilled)
    index._build(whole, None, procs=1)
    monkeypatch.setattr(index, "POOL_POSTINGS", 97)  # a run every few pages
    index._build(spilled, None, procs=1)
    assert _snapshot(spilled) == _snapshot(whole)
    assert not [f for f in os.listdir(spilled) if f.endswith(".tmp")]


def test_rebuild_with_processes_serves_searches(app, pages, monkeypatch):
    monkeypatch.setattr(index, "_procs", lambda n: 2)
    index._TERMS.clear()
    index._STEMS.clear()
    calls: list[int] = []
    assert index.rebuild(progress=calls.append) == pages
    assert len(calls) == pages
    # This process took over the word caches the build processes filled.
    assert index._TERMS["Marmalade"] == index._STEMS["marmalade"] == "marmalad"
    found = query.search("zq5marker")
    assert [h.slug for h in found.hits] == ["kubernetes-notes-5"]
    assert query.search('"connection pool"').total == pages
    assert query.search("marmalde").corrected == "marmalade"  # the VOCAB words made it
    assert not _children()


def test_rebuild_with_processes_from_a_thread(app, pages, monkeypatch):
    """As in a threaded server worker: the build forks from a thread other than the main one."""
    monkeypatch.setattr(index, "_procs", lambda n: 2)
    outcome: list = []

    def run() -> None:
        with app.app_context():
            try:
                outcome.append(index.rebuild())
            except BaseException as exc:  # noqa: BLE001
                outcome.append(exc)

    # A pool's thread, as gunicorn's gthread workers serve requests from.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(run).result(timeout=120)
    assert outcome == [pages]
    assert query.search("zq9marker").total == 1
    assert not _children()


def test_reindex_command_uses_processes(app, pages, monkeypatch):
    monkeypatch.setattr(index, "PARALLEL_PAGES", 2)
    monkeypatch.setattr(index, "_procs", lambda n: 2)
    result = app.test_cli_runner().invoke(args=["wiki", "reindex"])
    assert result.exit_code == 0, result.output
    assert f"Indexed {pages} pages" in result.output
    assert query.search("zq7marker").total == 1


def _state(app) -> tuple[str, set[str]]:
    path = app.config["SEARCH_INDEX_DIR"]
    return os.path.realpath(path), set(os.listdir(os.path.dirname(path)))


@pytest.mark.parametrize("how", ["raises", "dies", "progress raises"])
def test_failed_build_keeps_the_old_index_and_leaves_nothing(app, pages, monkeypatch, how):
    monkeypatch.setattr(index, "_procs", lambda n: 2)
    assert query.search("zq3marker").total == 1
    before = _state(app)
    parent = os.getpid()
    real_add = index._add_pages
    progress = None

    def add_pages(writer, rows, words):
        if os.getpid() != parent and any(row[0] == 20 for row in rows):
            if how == "dies":
                os._exit(7)
            raise ValueError("boom in a build process")
        real_add(writer, rows, words)

    if how == "progress raises":

        def progress(n):
            raise KeyboardInterrupt

    else:
        monkeypatch.setattr(index, "_add_pages", add_pages)
    with pytest.raises((RuntimeError, KeyboardInterrupt)) as raised:
        index.rebuild(progress=progress)
    if how == "raises":
        assert "boom in a build process" in str(raised.value)
    assert _state(app) == before  # same folder in use, no stray folders
    assert not _children() and not multiprocessing.active_children()
    assert query.search("zq3marker").total == 1


def test_index_of_an_older_format_is_rebuilt(app, pages):
    path = app.config["SEARCH_INDEX_DIR"]
    old = index.make_schema()
    for name in ("title", "body"):  # as built before StemPositions
        old[name].format = Positions(field_boost=old[name].format.field_boost)
    assert old != index.make_schema()
    folder = tempfile.mkdtemp(prefix=".index-", dir=os.path.dirname(path))
    writer = whoosh_index.create_in(folder, old).writer()
    writer.add_document(page_id="1", title="Stale", body="stale words")
    writer.commit()
    index._swap(path, folder)
    assert query.search("zq4marker").total == 1  # rebuilt on open, not misread
    assert os.path.realpath(path) != folder
    assert whoosh_index.open_dir(path).schema == index.make_schema()


def test_fresh_index_is_not_mistaken_for_an_old_one(app, pages):
    before = os.path.realpath(app.config["SEARCH_INDEX_DIR"])
    assert whoosh_index.open_dir(before).schema == index.make_schema()
    index.store(app.config["SEARCH_INDEX_DIR"]).ix = None  # reopen from disk
    index.store(app.config["SEARCH_INDEX_DIR"]).index()
    assert os.path.realpath(app.config["SEARCH_INDEX_DIR"]) == before
