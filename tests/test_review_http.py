"""Peer review over HTTP: permissions on every review route, the queue, banners, badges."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from sqlalchemy import update

from tests.conftest import propose
from wiki import editing
from wiki.models import Revision, utcnow

BODY = "First line.\n\nMiddle line.\n\nLast line.\n"
ROLES = ("anonymous", "author", "other", "reviewer", "admin")


def text_of(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def login(app, user):
    c = app.test_client()
    assert c.login(user.username).status_code == 302
    return c


class Clients(dict):
    """Test clients by role, logged in on first use (logins hash passwords: keep them few)."""

    def __init__(self, app, client, users) -> None:
        super().__init__(anonymous=client)
        self.app, self.users = app, users

    def __missing__(self, role: str):
        self[role] = login(self.app, self.users[role])
        return self[role]


@pytest.fixture
def clients(app, client, contributor, contributor2, reviewer, admin):
    """One client per role: the proposal's author is carl, `other` a second contributor."""
    users = {"author": contributor, "other": contributor2, "reviewer": reviewer, "admin": admin}
    return Clients(app, client, users)


@pytest.fixture
def proposal(make_page, contributor):
    page = make_page("Queues", BODY)
    return propose(contributor, page, BODY.replace("Last line", "Last line, better"), "better end")


def status_of(db, revision_id):
    return db.session.get(Revision, revision_id, populate_existing=True).status


# --- permissions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "expected"),
    [("anonymous", 302), ("author", 403), ("other", 403), ("reviewer", 200), ("admin", 200)],
)
def test_queue_is_for_reviewers(clients, proposal, role, expected):
    r = clients[role].get("/review/")
    assert r.status_code == expected
    if expected == 302:
        assert "/auth/login" in r.headers["Location"]
    if expected == 200:
        assert "better end" in text_of(r)


@pytest.mark.parametrize(
    ("role", "expected"),
    [("anonymous", 302), ("author", 200), ("other", 403), ("reviewer", 200), ("admin", 200)],
)
@pytest.mark.parametrize("suffix", ["", "?view=split", "/update"])
def test_proposal_pages_are_for_author_and_reviewers(clients, proposal, role, expected, suffix):
    r = clients[role].get(f"/review/{proposal.id}{suffix}")
    assert r.status_code == expected
    if expected == 200:
        assert "Last line, better" in text_of(r)
    else:
        assert "Last line, better" not in text_of(r)


# Who may POST each decision: 302 (done, redirected), 403 (refused), login redirect for anonymous.
DECISIONS = {
    "comment": {"author": "ok", "other": 403, "reviewer": "ok", "admin": "ok"},
    "approve": {"author": 403, "other": 403, "reviewer": "ok", "admin": "ok"},
    "request_changes": {"author": 403, "other": 403, "reviewer": "ok", "admin": "ok"},
    "reject": {"author": 403, "other": 403, "reviewer": "ok", "admin": "ok"},
    "withdraw": {"author": "ok", "other": 403, "reviewer": 403, "admin": 403},
}
AFTER = {
    "comment": "pending",
    "approve": "published",
    "request_changes": "pending",
    "reject": "rejected",
    "withdraw": "withdrawn",
}


@pytest.mark.parametrize("decision", sorted(DECISIONS))
@pytest.mark.parametrize("role", ROLES)
def test_decision_permissions(db, clients, proposal, decision, role):
    r = clients[role].submit(
        f"/review/{proposal.id}", {"decision": decision, "comment": "Because."}
    )
    if role == "anonymous":
        assert r.status_code == 302 and "/auth/login" in r.headers["Location"]
        assert status_of(db, proposal.id) == "pending"
        return
    expected = DECISIONS[decision][role]
    if expected == "ok":
        assert r.status_code == 302
        assert status_of(db, proposal.id) == AFTER[decision]
    else:
        assert r.status_code == expected
        assert status_of(db, proposal.id) == "pending"


@pytest.mark.parametrize(
    ("role", "expected"),
    [("anonymous", 302), ("author", 302), ("other", 403), ("reviewer", 302), ("admin", 302)],
)
def test_update_permissions(db, clients, proposal, role, expected):
    r = clients[role].submit(
        f"/review/{proposal.id}/update",
        {"title": "Queues", "body": BODY + "updated\n", "summary": "upd", "base_revision_id": ""},
    )
    assert r.status_code == expected
    if role in ("author", "reviewer", "admin"):
        assert status_of(db, proposal.id) == "superseded"
        new_id = int(r.headers["Location"].rstrip("/").rsplit("/", 1)[1])
        assert status_of(db, new_id) == "pending"
    else:
        assert status_of(db, proposal.id) == "pending"


def test_approve_redirects_to_the_published_page(clients, proposal):
    r = clients["reviewer"].submit(f"/review/{proposal.id}", {"decision": "approve"})
    assert r.status_code == 302 and r.headers["Location"].endswith("/wiki/queues")
    page = clients["anonymous"].get("/wiki/queues")
    assert "Last line, better" in text_of(page)


def test_reject_without_comment_is_refused_with_a_message(db, clients, proposal):
    r = clients["reviewer"].submit(
        f"/review/{proposal.id}", {"decision": "reject", "comment": ""}, follow_redirects=True
    )
    assert r.status_code == 200
    assert "Say why when you reject" in text_of(r)
    assert status_of(db, proposal.id) == "pending"


@pytest.mark.parametrize("decision", ["", "publish", "update", "APPROVE", "x" * 5000])
def test_bad_decision_is_400(db, clients, proposal, decision):
    r = clients["reviewer"].submit(f"/review/{proposal.id}", {"decision": decision})
    assert r.status_code == 400
    assert status_of(db, proposal.id) == "pending"


def test_missing_decision_is_400(clients, proposal):
    r = clients["reviewer"].submit(f"/review/{proposal.id}", {"comment": "hi"})
    assert r.status_code == 400


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/review/999999"),
        ("post", "/review/999999"),
        ("get", "/review/999999/update"),
        ("post", "/review/999999/update"),
    ],
)
def test_unknown_proposal_is_404(clients, proposal, method, url):
    c = clients["reviewer"]
    r = c.get(url) if method == "get" else c.submit(url, {"decision": "approve"})
    assert r.status_code == 404


def test_a_direct_publish_is_not_a_proposal(clients, make_page):
    page = make_page("Direct", "text\n")
    r = clients["reviewer"].get(f"/review/{page.current_revision_id}")
    assert r.status_code == 404


@pytest.mark.parametrize("suffix", ["", "/update"])
def test_missing_csrf_token_is_400(db, clients, proposal, suffix):
    r = clients["reviewer"].post(
        f"/review/{proposal.id}{suffix}",
        data={"decision": "approve", "title": "Queues", "body": "x\n"},
    )
    assert r.status_code == 400
    assert status_of(db, proposal.id) == "pending"


def test_closed_proposal_cannot_take_decisions(db, clients, proposal):
    clients["author"].submit(f"/review/{proposal.id}", {"decision": "withdraw"})
    r = clients["reviewer"].submit(
        f"/review/{proposal.id}", {"decision": "approve"}, follow_redirects=True
    )
    assert r.status_code == 200 and "withdrawn already" in text_of(r)
    assert status_of(db, proposal.id) == "withdrawn"
    page = text_of(clients["reviewer"].get(f"/review/{proposal.id}"))
    assert 'value="approve"' not in page  # no decision form on a closed proposal
    r = clients["author"].get(f"/review/{proposal.id}/update", follow_redirects=True)
    assert "cannot be updated" in text_of(r)


@pytest.mark.parametrize(
    "query",
    [
        "?page=abc",
        "?page=-1",
        "?page=99999",
        "?author=%00",
        "?page_slug=a%00b",
        "?page_slug=" + "x" * 500,
        "?mine=2",
    ],
)
def test_queue_survives_odd_input(clients, proposal, query):
    expected = (200, 400) if "%00" in query else (200,)  # NUL may be refused up front
    assert clients["reviewer"].get("/review/" + query).status_code in expected


# --- the queue ------------------------------------------------------------------------------


@pytest.fixture
def stale_after_3_days(settings):
    settings["REVIEW_STALE_DAYS"] = 3
    return settings


def _backdate(db, revision_id, days):
    db.session.execute(
        update(Revision)
        .where(Revision.id == revision_id)
        .values(created_at=utcnow() - timedelta(days=days))
    )
    db.session.commit()


def _rows(page_html: str) -> list[str]:
    return re.findall(r"<tr[^>]*>.*?</tr>", page_html, flags=re.S)[1:]


def test_queue_shows_age_and_highlights_stale_proposals(
    stale_after_3_days, app, db, make_page, contributor, contributor2, reviewer
):
    assert app.config["REVIEW_STALE_DAYS"] == 3
    page = make_page("Queues", BODY)
    old = propose(contributor, page, BODY + "old\n", "old one")
    young = propose(contributor2, page, BODY + "young\n", "young one")
    _backdate(db, old.id, 5)
    _backdate(db, young.id, 1)
    r = login(app, reviewer).get("/review/")
    body = r.get_data(as_text=True)
    assert "older than 3 days" in body
    rows = _rows(body)
    assert len(rows) == 2
    assert "old one" in rows[0] and "young one" in rows[1]  # oldest first
    assert 'class="stale"' in rows[0] and "5 days" in rows[0] and "stale" in rows[0]
    assert 'class="stale"' not in rows[1] and "1 day" in rows[1] and "state-stale" not in rows[1]
    assert "+4" in rows[0]  # size change


def test_queue_filters(app, db, make_page, contributor, contributor2, reviewer):
    queues = make_page("Queues", BODY)
    caches = make_page("Caches", BODY)
    propose(contributor, queues, BODY + "q carl\n", "queues by carl")
    propose(contributor2, caches, BODY + "c cleo\n", "caches by cleo")
    propose(reviewer, caches, BODY + "c rita\n", "caches by rita", ask_review=True)
    c = login(app, reviewer)

    def shown(query):
        body = c.get("/review/" + query).get_data(as_text=True)
        return {s for s in ("queues by carl", "caches by cleo", "caches by rita") if s in body}

    assert shown("") == {"queues by carl", "caches by cleo", "caches by rita"}
    assert shown("?page_slug=caches") == {"caches by cleo", "caches by rita"}
    assert shown("?author=CLEO") == {"caches by cleo"}
    assert shown("?mine=1") == {"caches by rita"}
    assert shown("?page_slug=queues&author=cleo") == set()
    assert "Nothing is waiting for review." in c.get("/review/?author=nobody").get_data(
        as_text=True
    )


def test_queue_and_proposal_show_merge_state(
    app, db, make_page, contributor, contributor2, reviewer, admin
):
    page = make_page("Queues", BODY)
    clean = propose(contributor, page, BODY.replace("Last line", "Last, carl"), "carl's end")
    clash = propose(contributor2, page, BODY.replace("First line", "First, cleo"), "cleo's start")
    editing.save(
        admin,
        title="Queues",
        body=BODY.replace("First line", "First, admin"),
        page=page,
        base_revision_id=page.current_revision_id,
    )
    c = login(app, reviewer)
    rows = _rows(text_of(c.get("/review/")))
    row = {("carl" if "carl's end" in r else "cleo"): r for r in rows}
    assert "merges cleanly" in row["carl"] and "needs update" not in row["carl"]
    assert "needs update" in row["cleo"] and "merges cleanly" not in row["cleo"]

    ok = text_of(c.get(f"/review/{clean.id}"))
    assert "merges cleanly" in ok and "Against the current published text" in ok

    bad = c.get(f"/review/{clash.id}").get_data(as_text=True)
    assert "needs update" in bad and "Conflicting lines" in bad
    assert "&lt;&lt;&lt;&lt;&lt;&lt;&lt; your version" in bad
    assert "First, cleo" in bad and "First, admin" in bad
    assert re.search(r'value="approve"[^>]*disabled', bad)
    # the author sees the conflicting lines too, and is told to update
    author_view = text_of(login(app, contributor2).get(f"/review/{clash.id}"))
    assert "Conflicting lines" in author_view and "until you update it" in author_view

    # approving anyway (a stale page, a crafted POST) is refused with a clear message
    r = c.submit(f"/review/{clash.id}", {"decision": "approve"}, follow_redirects=True)
    assert r.status_code == 200 and "no longer merges" in text_of(r)
    assert status_of(db, clash.id) == "pending"


def test_update_flow_over_http_resolves_a_conflict(
    app, db, make_page, contributor, reviewer, admin
):
    page = make_page("Queues", BODY)
    p = propose(contributor, page, BODY.replace("Middle line", "Middle, carl"))
    editing.comment(reviewer, p.id, "Please cite it")
    editing.save(
        admin,
        title="Queues",
        body=BODY.replace("Middle line", "Middle, admin"),
        page=page,
        base_revision_id=page.current_revision_id,
    )
    author = login(app, contributor)
    r = author.get(f"/review/{p.id}/update")
    assert r.status_code == 200
    editor = text_of(r)
    assert "<<<<<<< your version" in editor and "some lines overlap" in editor
    base_id = re.search(r'name="base_revision_id"[^>]*value="(\d+)"', editor).group(1)
    assert int(base_id) == page.current_revision_id

    form = {"title": "Queues", "summary": "resolved", "base_revision_id": base_id}
    r = author.submit(
        f"/review/{p.id}/update",
        dict(form, body=BODY.replace("Middle line", "<<<<<<< your version\nx\n")),
    )
    assert r.status_code == 422 and "Resolve the conflict markers" in text_of(r)
    r = author.submit(
        f"/review/{p.id}/update", dict(form, body=BODY.replace("Middle line", "Middle, both"))
    )
    assert r.status_code == 302
    new_id = int(r.headers["Location"].rsplit("/", 1)[1])
    proposal_page = text_of(author.get(f"/review/{new_id}"))
    assert "Please cite it" in proposal_page and "on an earlier version" in proposal_page
    assert "merges cleanly" in proposal_page
    old_page = text_of(author.get(f"/review/{p.id}"))
    assert "superseded" in old_page and "see the newer version" in old_page

    r = login(app, reviewer).submit(f"/review/{new_id}", {"decision": "approve"})
    assert r.status_code == 302
    assert "Middle, both" in text_of(app.test_client().get("/wiki/queues"))


def test_proposal_page_shows_decisions_with_who_and_when(app, db, proposal, reviewer, admin):
    editing.request_changes(reviewer, proposal.id, "Please add a source")
    editing.reject(admin, proposal.id, "Out of scope")
    body = text_of(login(app, reviewer).get(f"/review/{proposal.id}"))
    assert "Please add a source" in body and "request changes" in body
    assert "Out of scope" in body and "reject" in body
    assert re.search(r"rejected</span>\s*by <a[^>]*>alice</a> on <time", body)


# --- badges, banners, history, notifications, user page -------------------------------------


def test_header_badge_counts_proposals_for_reviewers(clients, proposal):
    assert 'aria-label="1 waiting"' in clients["reviewer"].get("/wiki/queues").get_data(
        as_text=True
    )
    for role in ("anonymous", "author", "other"):
        assert "waiting" not in clients[role].get("/special/recent").get_data(as_text=True)


def test_page_banners(clients, proposal):
    author = text_of(clients["author"].get("/wiki/queues"))
    assert re.search(r"Your change.*is waiting for review", author)
    assert f'href="/review/{proposal.id}"' in author
    for role in ("other", "reviewer"):
        assert "1 change waiting for review" in text_of(clients[role].get("/wiki/queues"))
    assert "Review them" in text_of(clients["reviewer"].get("/wiki/queues"))
    assert "Review them" not in text_of(clients["other"].get("/wiki/queues"))
    assert "waiting for review" not in text_of(clients["anonymous"].get("/wiki/queues"))


def test_banner_counts_several_proposals(clients, proposal, contributor2, db):
    page = proposal.page
    propose(contributor2, page, BODY + "more\n")
    assert "2 changes waiting for review" in text_of(clients["reviewer"].get("/wiki/queues"))


def test_history_shows_who_approved(clients, proposal, reviewer, contributor2, db):
    other = propose(contributor2, proposal.page, BODY.replace("First line", "First, cleo"))
    editing.approve(reviewer, proposal.id)
    editing.approve(reviewer, other.id)  # a merge onto carl's text
    history = text_of(clients["anonymous"].get("/wiki/queues/history"))
    assert history.count("approved by") == 2 and "rita" in history
    assert "merged proposal" in history
    view = text_of(clients["anonymous"].get("/wiki/queues"))
    assert re.search(r"Last edited by <a[^>]*>cleo</a>.*approved by <a[^>]*>rita</a>", view, re.S)


def test_a_new_page_proposal_over_http(clients, db):
    r = clients["author"].submit(
        "/wiki/kafka/edit",
        {"title": "Kafka", "body": "Logs.\n", "summary": "new page", "base_revision_id": ""},
    )
    assert r.status_code == 302 and "/review/" in r.headers["Location"]
    rid = int(r.headers["Location"].rsplit("/", 1)[1])
    for role in ("anonymous", "other"):
        assert clients[role].get("/wiki/kafka").status_code == 404
    missing = text_of(clients["author"].get("/wiki/kafka"))
    assert "waiting for review" in missing and f"/review/{rid}" in missing
    assert "new page" in text_of(clients["reviewer"].get("/review/"))
    assert clients["reviewer"].submit(f"/review/{rid}", {"decision": "approve"}).status_code == 302
    r = clients["anonymous"].get("/wiki/kafka")
    assert r.status_code == 200 and "Logs." in text_of(r)


def test_notifications_page_and_unread_badge(clients, proposal, db):
    clients["reviewer"].submit(
        f"/review/{proposal.id}", {"decision": "comment", "comment": "Nice catch"}
    )
    page = text_of(clients["author"].get("/notifications"))
    assert "rita commented on your change to “Queues”" in page
    assert 'aria-label="1 unread"' in page
    assert f'href="/review/{proposal.id}"' in page
    reviewer_page = text_of(clients["reviewer"].get("/notifications"))
    assert "carl proposed a change to “Queues”" in reviewer_page

    r = clients["author"].submit("/notifications", {}, token_from="/notifications")
    assert r.status_code == 302
    assert (
        "unread"
        not in clients["author"].get("/notifications").get_data(as_text=True).split("<main")[0]
    )
    assert clients["anonymous"].get("/notifications").status_code == 302


def test_watch_button_brings_proposals_and_publishes(clients, make_page, contributor2, reviewer):
    page = make_page("Caches", BODY)
    r = clients["author"].submit("/wiki/caches/watch", {"watch": "1"}, token_from="/wiki/caches")
    assert r.status_code == 302
    assert "Unwatch" in text_of(clients["author"].get("/wiki/caches"))
    p = propose(contributor2, page, BODY + "cleo\n")
    editing.approve(reviewer, p.id)
    notes = text_of(clients["author"].get("/notifications"))
    assert "cleo proposed a change to “Caches”" in notes
    assert "“Caches” was changed by cleo" in notes


def test_user_page_lists_proposals_with_states(clients, proposal, reviewer, contributor, db):
    other = propose(contributor, proposal.page, BODY + "second\n", "second try")
    editing.reject(reviewer, other.id, "no")
    own = text_of(clients["author"].get("/user/carl"))
    assert "better end" in own and "second try" in own
    assert "pending" in own and "rejected" in own
    assert f'href="/review/{proposal.id}"' in own
    assert "pending" in text_of(clients["reviewer"].get("/user/carl"))
    for role in ("anonymous", "other"):
        body = text_of(clients[role].get("/user/carl"))
        assert "better end" not in body and "second try" not in body


@pytest.mark.parametrize(
    "comment", ["\x00", "nul\x00inside", "x" * 20000, "<script>alert(1)</script>", "ü" * 50]
)
@pytest.mark.parametrize("decision", ["comment", "reject", "request_changes"])
def test_odd_comments_never_500(db, clients, proposal, decision, comment):
    r = clients["reviewer"].submit(
        f"/review/{proposal.id}", {"decision": decision, "comment": comment}
    )
    assert r.status_code in ((302, 400) if "\x00" in comment else (302,))
    page = clients["reviewer"].get(f"/review/{proposal.id}").get_data(as_text=True)
    assert "<script>alert" not in page


@pytest.mark.parametrize(
    "fields",
    [
        {"title": ""},
        {"title": "Another Title"},
        {"title": "Queues\x00"},
        {"summary": "nul\x00summary"},
        {"body": "nul\x00body"},
        {"body": "x" * (600 * 1024)},
        {"base_revision_id": "abc"},
        {"base_revision_id": "999999"},
        {"base_revision_id": "-1"},
        {"tags": "a\x00b"},
    ],
)
def test_bad_updates_are_refused_without_500(db, clients, proposal, make_page, fields):
    form = {"title": "Queues", "body": BODY + "upd\n", "summary": "s", "base_revision_id": ""}
    r = clients["author"].submit(f"/review/{proposal.id}/update", dict(form, **fields))
    assert r.status_code in (302, 400, 422), r.status_code
    if r.status_code != 302:
        assert status_of(db, proposal.id) == "pending"


def test_update_on_a_base_from_another_page_is_refused(db, clients, proposal, make_page):
    other = make_page("Other", "text\n")
    r = clients["author"].submit(
        f"/review/{proposal.id}/update",
        {"title": "Queues", "body": BODY, "base_revision_id": str(other.current_revision_id)},
    )
    assert r.status_code == 422
    assert status_of(db, proposal.id) == "pending"
