"""Error pages and request hygiene: CSRF on every POST, 403/404/405/413/429/500, headers."""

from __future__ import annotations

import re
import time
from html import unescape

import pytest
from flask.testing import FlaskClient
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from tests.conftest import PASSWORD
from wiki import editing, management
from wiki.models import Page, User

CSRF_MESSAGE = "Your form expired or came from another site"

# Every POST route, with form data that would change something if the token were valid.
POST_ROUTES = {
    "/auth/register": {"username": "eve", "password": PASSWORD, "confirm": PASSWORD},
    "/auth/login": {"username": "carl", "password": PASSWORD},
    "/auth/logout": {},
    "/auth/password": {"current": PASSWORD, "password": "x" * 12, "confirm": "x" * 12},
    "/new": {"title": "Fresh", "body": "text"},
    "/wiki/<slug>/edit": {"title": "Guide", "body": "changed", "base_revision_id": "{base}"},
    "/preview": {"body": "*x*"},
    "/wiki/<slug>/revert/<int:revision_id>": {},
    "/wiki/<slug>/rename": {"title": "Renamed Guide"},
    "/wiki/<slug>/delete": {},
    "/wiki/<slug>/protect": {"protected": "1"},
    "/wiki/<slug>/watch": {"watch": "1"},
    "/special/deleted/<int:page_id>/restore": {},
    "/review/<int:revision_id>": {"decision": "approve", "comment": "ok"},
    "/review/<int:revision_id>/update": {"title": "Guide", "body": "updated", "summary": "u"},
    "/admin/users/<int:user_id>": {"action": "deactivate"},
    "/notifications": {},
}


@pytest.fixture
def world(db, admin, contributor, make_page):
    """A page with two revisions, a pending proposal, a deleted page and a notification."""
    page = make_page("Guide", "first\n")
    first = page.current_revision_id
    editing.save(admin, title="Guide", body="second\n", page=page, base_revision_id=first)
    proposal = editing.save(
        contributor,
        title="Guide",
        body="proposed\n",
        page=page,
        base_revision_id=page.current_revision_id,
    ).revision
    gone = make_page("Gone", "bye\n")
    management.delete_page(admin, gone)
    return {
        "slug": "guide",
        "revision_id": first,
        "page_id": gone.id,
        "proposal_id": proposal.id,
        "user_id": contributor.id,
        "base": page.current_revision_id,
    }


def _url(rule: str, world: dict) -> str:
    return (
        rule.replace("<slug>", world["slug"])
        .replace("<int:page_id>", str(world["page_id"]))
        .replace("<int:user_id>", str(world["user_id"]))
        .replace(
            "<int:revision_id>",
            str(world["proposal_id"] if rule.startswith("/review") else world["revision_id"]),
        )
    )


def _snapshot(db) -> dict:
    """Every row of every table: proof that nothing was written."""
    db.session.rollback()
    return {
        table.name: sorted(map(repr, db.session.execute(table.select()).all()))
        for table in db.metadata.sorted_tables
    }


def _textarea(html: str) -> str:
    match = re.search(r"<textarea[^>]*name=\"body\"[^>]*>(.*?)</textarea>", html, re.S)
    assert match, "no body textarea"
    return unescape(match.group(1)).lstrip("\r\n")


def _token(html: str) -> str:
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', html
    )
    assert match, "no csrf token on the page"
    return match.group(1)


# --- CSRF ---------------------------------------------------------------------------------


def test_every_post_route_is_covered(app):
    rules = {
        rule.rule
        for rule in app.url_map.iter_rules()
        if "POST" in rule.methods and not rule.rule.startswith("/api/")
    }
    assert rules <= set(POST_ROUTES), f"add to POST_ROUTES: {sorted(rules - set(POST_ROUTES))}"


@pytest.mark.parametrize("rule", sorted(POST_ROUTES))
@pytest.mark.parametrize("token", ["missing", "forged"])
def test_post_without_valid_csrf_is_400_and_saves_nothing(
    admin_client, db, world, contributor, rule, token
):
    data = {k: v.format(**world) for k, v in POST_ROUTES[rule].items()}
    if token == "forged":
        data["csrf_token"] = "IjM4YjQ2ZGY0Ig.forged.token"
    before = _snapshot(db)
    r = admin_client.post(_url(rule, world), data=data)
    assert r.status_code == 400
    assert CSRF_MESSAGE in r.get_data(as_text=True)
    assert _snapshot(db) == before
    assert "Log out" in admin_client.get("/special/recent").get_data(as_text=True)


def test_csrf_header_accepted_for_preview(contributor_client):
    token = contributor_client.csrf_token("/new")
    r = contributor_client.post("/preview", data={"body": "*x*"}, headers={"X-CSRFToken": token})
    assert r.status_code == 200


def test_cross_site_token_from_other_session_refused(app, admin_client, contributor, db, world):
    other = app.test_client()
    other.login("carl")
    foreign = other.csrf_token("/new")
    r = admin_client.post("/wiki/guide/protect", data={"protected": "1", "csrf_token": foreign})
    assert r.status_code == 400
    db.session.expire_all()
    assert not db.session.query(Page).filter_by(slug="guide").one().protected


def _expired_token(client, app) -> str:
    """A correctly signed token for this session, issued two days ago."""
    client.get("/new")  # puts the raw token in the session
    with client.session_transaction() as session:
        raw = session["csrf_token"]

    class TwoDaysAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 2 * 24 * 3600

    serializer = URLSafeTimedSerializer(app.secret_key, salt="wtf-csrf-token", signer=TwoDaysAgo)
    return serializer.dumps(raw)


@pytest.mark.parametrize("token", ["missing", "expired"])
def test_editor_keeps_text_when_token_refused(app, reviewer_client, db, make_page, token):
    page = make_page("Guide", "old\n")
    text = "Two hours of careful writing <with> & ampersands.\n"
    data = {
        "title": "Guide",
        "body": text,
        "summary": "long edit",
        "base_revision_id": str(page.current_revision_id),
    }
    if token == "expired":
        data["csrf_token"] = _expired_token(reviewer_client, app)
    r = reviewer_client.post("/wiki/guide/edit", data=data)
    html = r.get_data(as_text=True)
    assert r.status_code == 400
    assert CSRF_MESSAGE in html
    assert _textarea(html).replace("\r\n", "\n") == text
    assert "Editing “Guide”" in html
    assert 'value="long edit"' in html
    db.session.expire_all()
    assert db.session.get(Page, page.id).current_revision.body == "old\n"
    # The page carries a fresh token: saving again works and nothing is lost.
    data["csrf_token"] = _token(html)
    r = reviewer_client.post("/wiki/guide/edit", data=data)
    assert r.status_code == 302
    db.session.expire_all()
    assert db.session.get(Page, page.id).current_revision.body == text


def test_new_page_keeps_text_when_token_missing(reviewer_client, db):
    r = reviewer_client.post("/new", data={"title": "Fresh", "body": "my new page\n"})
    assert r.status_code == 400 and "my new page" in _textarea(r.get_data(as_text=True))


# --- 403 / 404 / 405 ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "method,url",
    [
        ("get", "/review/"),
        ("get", "/admin/users"),
        ("get", "/special/deleted"),
        ("get", "/wiki/guide/delete"),
    ],
)
def test_forbidden_pages_render_403_in_layout(contributor_client, make_page, method, url):
    make_page("Guide")
    r = getattr(contributor_client, method)(url)
    html = r.get_data(as_text=True)
    assert r.status_code == 403
    assert "Not allowed" in html and 'class="site-header"' in html


def test_forbidden_post(contributor_client, db, make_page):
    make_page("Guide")
    r = contributor_client.submit("/wiki/guide/delete", token_from="/wiki/guide")
    assert r.status_code == 403
    db.session.rollback()
    assert db.session.query(Page).filter_by(slug="guide").one().deleted_at is None


@pytest.mark.parametrize(
    "url",
    [
        "/wiki/%00",
        "/wiki/a%00b",
        "/wiki/..%2f..",
        "/wiki/..%2F..%2Fetc%2Fpasswd",
        "/wiki/" + "a" * 5000,
        "/wiki/" + "long-" * 1000 + "/history",
        "/wiki/%E6%97%A5%E6%9C%AC%E8%AA%9E",
        "/wiki/%ff%fe",
        "/wiki/!!!",
        "/wiki/%0d%0aSet-Cookie:x=y",
        "/wiki/%3Cscript%3E",
        "/wiki/nope/revisions/1",
        "/wiki/nope/diff?from=1&to=2",
        "/wiki/nope/links",
        "/no/such/route",
        "/user/%00",
        "/review/999999",
        "/wiki/guide/revisions/99999999999999999999999",
        "/wiki/guide/diff?to=99999999999999999999999",
        "/wiki/guide/history?page=99999999999999999999999",
        "/special/recent?page=99999999999999999999999",
    ],
)
def test_odd_urls_answer_404_not_500(reviewer_client, make_page, url):
    make_page("Guide")
    r = reviewer_client.get(url)
    assert r.status_code in (301, 404), (url, r.status_code)
    if r.status_code == 404:
        html = r.get_data(as_text=True)
        assert 'class="site-header"' in html
        assert "<script>" not in html


@pytest.mark.parametrize(
    "url",
    ["/wiki/%00/edit", "/wiki/!!!/edit", "/wiki/日本語/edit", "/special/tags/%00", "/search?q=%00"],
)
def test_odd_urls_not_500(reviewer_client, url):
    r = reviewer_client.get(url)
    assert r.status_code in (200, 301, 400, 404)


@pytest.mark.parametrize(
    "url", ["/special/all?q=a%00b", "/review/?author=%00&page_slug=%00", "/wiki/guide?x=%00"]
)
def test_nul_in_query_is_400(reviewer_client, make_page, url):
    make_page("Guide")
    assert reviewer_client.get(url).status_code == 400


@pytest.mark.parametrize(
    "url,data",
    [
        ("/auth/login", {"username": "ca\x00rl", "password": PASSWORD}),
        ("/auth/register", {"username": "e\x00ve", "password": PASSWORD, "confirm": PASSWORD}),
    ],
)
def test_nul_in_form_fields_is_400_not_500(reviewer_client, db, url, data):
    before = _snapshot(db)
    r = reviewer_client.submit(url, data, token_from="/auth/login")
    assert r.status_code == 400
    assert _snapshot(db) == before


@pytest.mark.parametrize(
    "data",
    [
        {"title": "Nul\x00Title", "body": "x"},
        {"title": "Fine", "body": "x", "summary": "nul\x00summary"},
    ],
)
def test_nul_in_editor_fields_is_cleaned_not_refused(reviewer_client, db, data):
    """The editor never loses a user's text over a stray control character: it is dropped."""
    r = reviewer_client.submit("/new", data, token_from="/new")
    assert r.status_code == 302
    from wiki.models import Revision

    revision = db.session.scalars(db.select(Revision)).one()
    assert "\x00" not in revision.title and "\x00" not in revision.summary


def test_nul_in_page_text_is_refused_with_text_kept(reviewer_client, db):
    r = reviewer_client.submit("/new", {"title": "Fine", "body": "a\x00b"}, token_from="/new")
    html = r.get_data(as_text=True)
    assert r.status_code == 422 and "NUL character" in html
    assert _textarea(html).startswith("a")


def test_unicode_page_round_trip(reviewer_client, make_page):
    make_page("日本語")
    r = reviewer_client.get("/wiki/日本語")
    assert r.status_code == 200 and "日本語" in r.get_data(as_text=True)


@pytest.mark.parametrize(
    "method,url",
    [
        ("get", "/auth/logout"),
        ("put", "/wiki/guide"),
        ("delete", "/wiki/guide"),
        ("get", "/preview"),
    ],
)
def test_method_not_allowed_405(client, make_page, method, url):
    make_page("Guide")
    r = getattr(client, method)(url)
    assert r.status_code == 405
    assert r.headers.get("Allow")
    assert "Method not allowed" in r.get_data(as_text=True)


# --- 413 ----------------------------------------------------------------------------------


def test_body_over_max_content_length_is_413(settings, app, db, reviewer, make_page):
    app.config["MAX_CONTENT_LENGTH"] = 4096
    client = app.test_client()
    client.login("rita")
    page = make_page("Guide", "old\n")
    token = client.csrf_token("/wiki/guide/edit")
    r = client.post(
        "/wiki/guide/edit",
        data={
            "csrf_token": token,
            "title": "Guide",
            "body": "x" * 10_000,
            "base_revision_id": str(page.current_revision_id),
        },
    )
    html = r.get_data(as_text=True)
    assert r.status_code == 413
    assert "larger than the 4 KB this wiki accepts" in html
    assert 'class="site-header"' in html
    db.session.expire_all()
    assert db.session.get(Page, page.id).current_revision.body == "old\n"


def test_413_message_in_megabytes(client, app):
    assert app.config["MAX_CONTENT_LENGTH"] == 2 * 1024 * 1024  # the default
    r = client.post("/preview", data={"body": "x" * (2 * 1024 * 1024 + 10)})
    assert r.status_code == 413 and "2 MB" in r.get_data(as_text=True)


# --- 429 ----------------------------------------------------------------------------------


def test_login_rate_limit_429_with_retry_after(settings, contributor):
    from wiki import create_app

    settings.update(RATELIMIT_ENABLED=True, RATELIMIT_LOGIN="3 per minute")
    app = create_app(settings)
    with app.app_context():
        client = FlaskClient(app, app.response_class, use_cookies=True)
        page = client.get("/auth/login").get_data(as_text=True)
        token = _token(page)
        statuses = []
        for _ in range(4):
            r = client.post(
                "/auth/login",
                data={"csrf_token": token, "username": "carl", "password": "wrong password!"},
            )
            statuses.append(r.status_code)
        assert statuses[:3] == [401, 401, 401] and statuses[3] == 429
        assert int(r.headers["Retry-After"]) > 0
        html = r.get_data(as_text=True)
        assert "Too many requests" in html and 'class="site-header"' in html


# --- 500 ----------------------------------------------------------------------------------


def test_500_page_in_layout_and_session_rolled_back(app, db):
    def boom():
        db.session.add(User("ghost", PASSWORD))
        db.session.flush()
        raise RuntimeError("test-only failure")

    app.add_url_rule("/test-only-boom", "test_only_boom", boom)
    client = FlaskClient(app, app.response_class, use_cookies=True)  # no rollback between calls
    r = client.get("/test-only-boom")
    html = r.get_data(as_text=True)
    assert r.status_code == 500
    assert "Something went wrong" in html and 'class="site-header"' in html
    assert "test-only failure" not in html and "Traceback" not in html
    assert not db.session.new and not db.session().in_transaction()
    assert db.session.query(User).filter_by(username_key="ghost").first() is None
    assert client.get("/special/recent").status_code == 200


# --- security headers ---------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/wiki/guide", "/auth/login", "/wiki/missing", "/healthz"])
def test_security_headers(client, make_page, url):
    make_page("Guide")
    r = client.get(url)
    csp = r.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"]


def test_session_cookie_flags(client, contributor):
    client.login("carl")
    cookie = client.get_cookie("session")
    assert cookie.http_only and cookie.same_site == "Lax"


def test_no_inline_script_in_pages(reviewer_client, make_page):
    make_page("Guide", "## A\n\n## B\n\n## C\n")
    for url in ("/wiki/guide", "/wiki/guide/edit", "/wiki/guide/history", "/auth/password"):
        html = reviewer_client.get(url).get_data(as_text=True)
        assert re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html) is None, url
        assert re.search(r"\son[a-z]+=", html) is None, url
