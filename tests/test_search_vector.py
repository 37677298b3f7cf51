"""The array evaluator gives what Whoosh's own matchers give, only faster.

Each query is run both ways on the starter hub, after edits and deletions have left deleted
documents and several segments in the index, and the matches and scores must agree.
"""

from pathlib import Path

import pytest
from whoosh import query as wq

from wiki import editing, management
from wiki.importer import import_folder
from wiki.models import Page
from wiki.search import index, query, spelling, vector

CONTENT = Path(__file__).resolve().parent.parent / "content"

QUERIES = [
    "docker",
    "containerized",
    "redis cache",
    "connection pool",
    '"connection pool"',
    '"multi-stage build"',
    '"read replicas" postgresql',
    "celery OR rabbitmq",
    "docker AND compose",
    "docker NOT compose",
    "NOT docker",
    "kubernetes -pod",
    "kube*",
    "migrat*",
    "tag:docker",
    "tag:databases index",
    "title:redis",
    'title:"load balancing"',
    "jwt refresh token",
    "secrets ANDMAYBE vault",
    "the",
    "zzzunknownword",
]


def _whoosh(searcher, q):
    """Every match with Whoosh's score, best first, ties by document number.

    Prefixes are expanded first (`simplify`): on an index of several segments Whoosh 2.7.5
    scores a prefix's matches 1.0 in segments where it has several expansions and by BM25F
    elsewhere; the evaluator always sums the BM25F of each expansion, as Whoosh does on the
    expanded query.
    """
    if any(isinstance(leaf, wq.MultiTerm) for leaf in q.leaves()):
        q = q.simplify(searcher.reader())
    results = searcher.search(q, limit=None, optimize=False)
    return sorted(((round(h.score, 6), h.docnum) for h in results), key=lambda t: (-t[0], t[1]))


def _vector(searcher, q):
    ranked = vector.run(searcher, q, limit=10_000)
    return [(round(s, 6), d) for s, d in zip(ranked.scores, ranked.docnums, strict=True)], ranked


def _same(got, expected):
    assert [d for _, d in got] == [d for _, d in expected]
    assert [s for s, _ in got] == pytest.approx([s for s, _ in expected])


@pytest.fixture
def hub(app, admin):
    """The starter hub with history: edited pages (deleted documents) and a deleted page."""
    import_folder(str(CONTENT))
    for slug in ("docker", "caching-with-redis", "kubernetes"):
        page = Page.query.filter_by(slug=slug).one()
        editing.save(
            admin,
            page=page,
            title=page.title,
            body=page.current_revision.body + "\n\nA connection pool note, edited.\n",
            base_revision_id=page.current_revision_id,
        )
    management.delete_page(admin, Page.query.filter_by(slug="mysql").one())
    searcher = index.ensure_current()
    assert searcher.reader().has_deletions()
    return searcher


def test_matches_and_scores_agree_with_whoosh(hub):
    # One test over every query: building the hub costs seconds, a query a millisecond.
    failures = {}
    for text in QUERIES:
        q = query.parse(text)
        assert q is not None, text
        expected = _whoosh(hub, q)
        got, ranked = _vector(hub, q)
        try:
            assert ranked.total == len(expected)
            _same(got, expected)
        except AssertionError as exc:
            failures[text] = str(exc)[:300]
    assert failures == {}


def test_several_segments_agree_with_whoosh(app, admin, make_page):
    for n in range(6):  # each publish commits its own small segment
        make_page(f"Pooling {n}", f"Connection pool sizing, part {n}. " * (n + 1))
    searcher = index.ensure_current()
    assert len(searcher.reader().leaf_readers()) > 1
    for text in ("pool", '"connection pool"', "pool*", "sizing NOT part"):
        q = query.parse(text)
        got, ranked = _vector(searcher, q)
        _same(got, _whoosh(searcher, q))
        assert ranked.total == len(got)


def test_deleted_pages_and_old_versions_never_match(hub):
    for text in ("mysql", "NOT docker", '"connection pool"', "innodb"):
        ranked = vector.run(hub, query.parse(text), limit=100)
        titles = {hub.stored_fields(n)["title"] for n in ranked.docnums}
        assert "MySQL" not in titles
        assert len(ranked.docnums) == len(set(ranked.docnums))  # one document per page
        for n in ranked.docnums:
            assert not hub.reader().is_deleted(n)
            assert hub.stored_fields(n).get("slug")  # never a bookkeeping document


def test_top_hits_are_the_best_of_all_matches(hub):
    q = query.parse("python")
    full = vector.run(hub, q, limit=1_000)
    top = vector.run(hub, q, limit=3)
    assert top.total == full.total > 3
    assert top.docnums == full.docnums[:3]


def test_a_phrase_with_slop_falls_back_to_whoosh(client, hub):
    with pytest.raises(vector.Unsupported):
        vector.run(hub, wq.Phrase("body", ["connect", "pool"], slop=3), limit=10)
    html = client.get('/search?q="connection pool"~3').get_data(as_text=True)
    assert "result" in html


def test_spelling_lookup_agrees_with_whoosh(hub):
    reader = hub.reader()
    for field, word, dist in [
        ("words", "dokcer", 2),
        ("words", "conection", 1),
        ("spell_title", "kubernets", 2),
        ("title_words", "kubernets", 2),
        ("words", "zz", 1),
    ]:
        expected = sorted(reader.terms_within(field, word, dist, prefix=1))
        assert expected or word == "zz"
        assert sorted(spelling.within(reader, field, word, dist)) == expected, (field, word)
    # The title's spelling list holds whole words, not stems.
    assert "kubernetes" in spelling.within(reader, "title", "kubernets", 2)


def test_the_cache_stays_within_its_budget():
    import numpy as np

    cache = vector._Cache(limit=10_000)
    for n in range(50):
        cache.get(("k", n), lambda: (np.zeros(1_000, np.int32),))  # 4 KB each
    assert cache.size <= 10_000
    assert ("k", 49) in cache.items and ("k", 0) not in cache.items


def test_the_cache_budget_is_the_operators_setting(settings):
    from wiki import create_app

    try:
        create_app({**settings, "SEARCH_CACHE_MB": 3})
        assert vector._CACHE.limit == 3 << 20
        import numpy as np

        for n in range(10):
            vector.cached(("budget", n), lambda: (np.zeros(1 << 18, np.int8),))  # 256 KB each
        assert vector._CACHE.size <= 3 << 20
    finally:
        vector.configure(64)
