"""Search: ranking, query syntax, snippets, hostile input, and only published text is found."""

from __future__ import annotations

import re

import pytest

from wiki import editing, management

HIT = re.compile(r'<h2><a href="/wiki/([^"]+)">')


def slugs(client, q: str, page: int | None = None) -> list[str]:
    """The result slugs, in order, for a query typed into the search box."""
    params = {"q": q} if page is None else {"q": q, "page": page}
    response = client.get("/search", query_string=params)
    assert response.status_code == 200
    return HIT.findall(response.get_data(as_text=True))


@pytest.fixture
def hub(make_page):
    """A small knowledge hub."""
    make_page(
        "Docker basics",
        "Run every service in a container. Images are built from a Dockerfile.",
        tags="docker containers",
    )
    make_page(
        "Redis caching",
        "Redis keeps hot data in memory. A connection pool avoids reconnecting.",
        tags="redis cache",
    )
    make_page(
        "PostgreSQL tuning",
        "Use a connection pool in front of the database; vacuum often. Docker is optional.",
        tags="postgresql database",
    )
    make_page("Kubernetes", "Orchestrates containerized workloads across nodes.", tags="k8s")


def test_stemming_finds_other_word_forms(client, hub):
    assert slugs(client, "containerized")[:2] == ["docker-basics", "kubernetes"] or set(
        slugs(client, "containerized")
    ) == {"docker-basics", "kubernetes"}
    assert "kubernetes" in slugs(client, "container")


def test_phrase_matches_words_in_order(client, hub, make_page):
    make_page("Pool party", "A pool for the connection of friends.")
    found = slugs(client, '"connection pool"')
    assert set(found) == {"redis-caching", "postgresql-tuning"}


def test_and_or_not(client, hub):
    assert set(slugs(client, "connection AND redis")) == {"redis-caching"}
    assert set(slugs(client, "connection pool")) == {"redis-caching", "postgresql-tuning"}
    assert set(slugs(client, "redis OR kubernetes")) == {"redis-caching", "kubernetes"}
    assert set(slugs(client, "connection NOT redis")) == {"postgresql-tuning"}


def test_prefix(client, hub):
    assert set(slugs(client, "orchestr*")) == {"kubernetes"}
    assert "docker-basics" in slugs(client, "dock*")


def test_tag_and_title_filters(client, hub):
    assert slugs(client, "tag:docker") == ["docker-basics"]
    assert slugs(client, "Tag:Redis") == ["redis-caching"]
    assert slugs(client, "title:docker") == ["docker-basics"]
    assert set(slugs(client, "docker")) == {"docker-basics", "postgresql-tuning"}
    assert slugs(client, "docker tag:database") == ["postgresql-tuning"]


def test_title_match_ranks_above_body_mention(client, make_page):
    for n in range(3):
        make_page(f"Notes {n}", "We talked about Celery again today, Celery and workers.")
    make_page("Celery", "Task queue.")
    assert slugs(client, "celery")[0] == "celery"


def test_exact_title_goes_first(client, make_page):
    make_page("Caching strategies", "Caching caching caching strategies for caching. " * 5)
    make_page("Caching", "The basics.")
    make_page("HTTP caching", "Caching at the edge, caching in browsers. " * 5)
    assert slugs(client, "caching")[0] == "caching"
    assert slugs(client, "Caching Strategies")[0] == "caching-strategies"


def test_snippet_marks_matches_and_escapes_page_text(client, make_page):
    make_page("Unsafe", "Intro.\n\nHere is <script>alert('x')</script> near the word zebra.")
    html = client.get("/search?q=zebra").get_data(as_text=True)
    assert "<mark" in html and ">zebra</mark>" in html
    assert "<script>alert" not in html
    assert "&lt;script&gt;" in html


def test_result_shows_tags_and_date(client, hub):
    html = client.get("/search?q=redis").get_data(as_text=True)
    assert 'href="/special/tags/cache"' in html
    assert "Last edited" in html and "<time" in html
    assert "1 result" in html


def test_did_you_mean(client, hub):
    html = client.get("/search?q=kubernetis").get_data(as_text=True)
    assert "Did you mean" in html
    assert 'href="/search?q=kubernetes"' in html


def test_fuzzy_retry_when_nothing_matched(client, hub):
    html = client.get("/search?q=kubernetis").get_data(as_text=True)
    assert "approximate" in html
    assert HIT.findall(html) == ["kubernetes"]


def test_pagination(client, make_page):
    for n in range(45):
        make_page(f"Widget {n:02d}", f"All about widgets, number {n}.")
    html = client.get("/search?q=widget").get_data(as_text=True)
    assert "45 results" in html
    first, second, third = (slugs(client, "widget", page=p) for p in (1, 2, 3))
    assert (len(first), len(second), len(third)) == (20, 20, 5)
    assert not set(first) & set(second) and not set(second) & set(third)
    assert slugs(client, "widget", page=99) == third  # past the end: the last page
    assert client.get("/search?q=widget&page=abc").status_code == 200


def test_empty_query_gets_help(client):
    for url in ("/search", "/search?q=", "/search?q=%20%20"):
        response = client.get(url)
        html = response.get_data(as_text=True)
        assert response.status_code == 200
        assert "Search tips" in html and 'href="/special/all"' in html


HOSTILE = [
    "x" * 10_000,
    "\x00",
    "a\x00b docker",
    '"unbalanced',
    "(((",
    ")))docker",
    "AND",
    "OR NOT AND",
    "title:",
    "tag:",
    "tag:",
    "*",
    "*foo",
    "d*",
    "?ocker",
    "a:b:c:",
    "body:[a TO z]",
    "r/.*/",
    "docker^1000000",
    "<script>alert(1)</script>",
    "%s%s%n",
    "\u202e\u200b\ufeff",
    "title:(docker OR",
    '"" AND ""',
    "NOT docker",
    "updated:2020",
    "page_id:__meta__",
    "connection~5 pool~",
]


@pytest.mark.parametrize("q", HOSTILE)
def test_hostile_queries_never_fail(client, hub, q):
    # NUL is refused for every request argument with a 400 and a message (wiki/web.py).
    expected = 400 if "\x00" in q else 200
    response = client.get("/search", query_string={"q": q})
    assert response.status_code == expected
    html = response.get_data(as_text=True)
    assert "<script>alert(1)" not in html
    assert client.get("/search/suggest", query_string={"q": q}).status_code == expected


def test_long_query_is_truncated_and_says_so(client, hub):
    html = client.get("/search", query_string={"q": "docker " * 200}).get_data(as_text=True)
    assert "first 500 characters" in html


def test_query_is_echoed_escaped(client):
    html = client.get("/search", query_string={"q": '<b>"bold"</b>'}).get_data(as_text=True)
    assert "<b>" not in html.split("<main", 1)[1]
    assert "&lt;b&gt;" in html


def test_not_alone_does_not_leak_bookkeeping(client, hub):
    html = client.get("/search?q=NOT+zzzz").get_data(as_text=True)
    assert "__meta__" not in html
    assert all(s for s in HIT.findall(html))


def test_suggest_json(client, hub, make_page):
    make_page("Docker compose", "Several containers.")
    data = client.get("/search/suggest?q=dock").get_json()
    assert data["query"] == "dock"
    titles = [s["title"] for s in data["suggestions"]]
    assert set(titles) == {"Docker basics", "Docker compose"}
    assert {"title": "Docker basics", "url": "/wiki/docker-basics"} in data["suggestions"]
    fuzzy = client.get("/search/suggest?q=kubernets").get_json()["suggestions"]
    assert [s["title"] for s in fuzzy] == ["Kubernetes"]
    assert client.get("/search/suggest?q=").get_json()["suggestions"] == []


def test_pending_proposal_text_is_not_found(client, make_page, contributor_client):
    page = make_page("Queues", "Original text about queues.")
    response = contributor_client.submit(
        "/wiki/queues/edit",
        {
            "title": "Queues",
            "body": "Original text about queues. Secret proposal xylophone.",
            "summary": "add",
            "base_revision_id": str(page.current_revision_id),
            "save": "Save",
        },
        token_from="/wiki/queues/edit",
    )
    assert response.status_code in (200, 302)
    assert slugs(client, "xylophone") == []
    assert slugs(client, "queues") == ["queues"]


def test_edit_is_searchable_right_after_the_save_request(admin_client, make_page):
    page = make_page("Logging", "Structured logs.")
    response = admin_client.submit(
        "/wiki/logging/edit",
        {
            "title": "Logging",
            "body": "Structured logs with a correlation identifier.",
            "summary": "more",
            "tags": "observability",
            "base_revision_id": str(page.current_revision_id),
            "save": "Save",
        },
        token_from="/wiki/logging/edit",
    )
    assert response.status_code == 302
    assert slugs(admin_client, "correlation") == ["logging"]
    assert slugs(admin_client, "tag:observability") == ["logging"]


def test_delete_restore_and_rename(app, client, admin, make_page):
    page = make_page("Message brokers", "RabbitMQ and friends.")
    assert slugs(client, "rabbitmq") == ["message-brokers"]
    management.delete_page(admin, page)
    assert slugs(client, "rabbitmq") == []
    management.restore_page(admin, page.id)
    assert slugs(client, "rabbitmq") == ["message-brokers"]
    management.rename(admin, page, "Event streaming")
    assert slugs(client, "title:streaming") == ["event-streaming"]
    assert slugs(client, "title:brokers") == []
    assert slugs(client, '"message brokers"') == []


def test_old_revision_text_is_not_found(client, admin, make_page):
    page = make_page("Sharding", "Old words: marmalade.")
    editing.save(
        admin,
        page=page,
        title="Sharding",
        body="New words only.",
        base_revision_id=page.current_revision_id,
    )
    assert slugs(client, "marmalade") == []
    assert slugs(client, "words") == ["sharding"]


@pytest.mark.parametrize("no_morph", [False, True])
@pytest.mark.parametrize("removestops", [True, False])
def test_fused_analyzer_gives_the_same_tokens_as_whoosh(removestops, no_morph):
    """The one-loop analyzer indexes exactly what StemmingAnalyzer(deep_stem) would."""
    from pathlib import Path

    from whoosh.analysis import StemmingAnalyzer

    from wiki.search.index import StemAnalyzer, deep_stem

    reference, fused = StemmingAnalyzer(stemfn=deep_stem), StemAnalyzer()
    content = Path(__file__).resolve().parent.parent / "content"
    texts = [p.read_text() for p in sorted(content.glob("*.md"))[:6]]
    texts += ["The a I x of it's e.g. foo.bar 3.14 **Ünïcode** ß dock* the end", ""]
    keys = ("text", "pos", "startchar", "endchar", "stopped", "original", "boost")
    options = dict(positions=True, chars=True, keeporiginal=True, start_pos=3, start_char=7)
    for text in texts:
        for kwargs in (options, {}):
            kwargs = dict(kwargs, removestops=removestops, no_morph=no_morph, mode="index")
            expected = [tuple(getattr(t, k, None) for k in keys) for t in reference(text, **kwargs)]
            got = [tuple(getattr(t, k, None) for k in keys) for t in fused(text, **kwargs)]
            assert got == expected


def test_many_matches_get_an_exact_count_and_pages_still_end(client, make_page):
    for n in range(45):
        make_page(f"Gadget {n:02d}", f"All about gadgets, number {n}.")
    html = client.get("/search?q=gadget").get_data(as_text=True)
    assert "45 results" in html and "page 1 of 3" in html
    assert len(slugs(client, "gadget")) == 20
    last = slugs(client, "gadget", page=50)  # past the real end: the last real page
    assert len(last) == 5
    assert "45 results" in client.get("/search?q=gadget&page=50").get_data(as_text=True)


def test_did_you_mean_never_suggests_a_word_no_page_has_any_more(app, make_page):
    from wiki.extensions import db
    from wiki.models import User
    from wiki.search import query

    page = make_page("Queues", "We use the zanzibarish broker here.\n")
    assert query.search("zanzibarisj").corrected == "zanzibarish"
    author = db.session.scalars(db.select(User)).first()
    editing.save(
        author,
        page=page,
        title="Queues",
        body="Plain text now.\n",
        base_revision_id=page.current_revision_id,
    )
    assert query.search("zanzibarisj").corrected is None
