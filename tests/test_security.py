"""Security behaviour a user or operator notices: headers, cookies, sessions, limits, passwords."""

from __future__ import annotations

import os
import re
import stat
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import pytest
import redis
from sqlalchemy import select

import config
from tests.conftest import CI, PASSWORD, WikiClient
from wiki import accounts, create_app
from wiki.extensions import db as _db
from wiki.models import AuditLog, User

NEW_PASSWORD = "a brand new passphrase"


def _client(settings: dict, **overrides) -> WikiClient:
    """A second app over the same database (as another worker or machine would be)."""
    other = create_app({**settings, **overrides})
    other.test_client_class = WikiClient
    return other.test_client()


def _cookie(response, name: str) -> str | None:
    """The Set-Cookie header for `name` in a response, or None."""
    for header in response.headers.getlist("Set-Cookie"):
        if header.startswith(f"{name}="):
            return header
    return None


# --- headers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method,url",
    [
        ("get", "/wiki/main-page"),
        ("get", "/wiki/no-such-page"),
        ("get", "/auth/login"),
        ("get", "/healthz"),
        ("get", "/static/css/wiki.css"),
        ("post", "/auth/login"),  # refused by CSRF: error pages carry the headers too
    ],
)
def test_security_headers_on_every_response(client, make_page, method, url):
    make_page("Main Page")
    response = getattr(client, method)(url)
    csp = response.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert response.headers["X-Request-Id"]
    assert "Strict-Transport-Security" not in response.headers  # plain HTTP: no HSTS


def test_hsts_only_over_https(client, make_page):
    make_page("Main Page")
    response = client.get("/wiki/main-page", base_url="https://localhost")
    assert response.status_code == 200
    assert "max-age=31536000" in response.headers["Strict-Transport-Security"]


def test_hsts_behind_a_trusted_proxy(settings, make_page):
    make_page("Main Page")
    proxied = _client(settings, TRUSTED_PROXIES=1)
    response = proxied.get("/wiki/main-page", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" in response.headers
    direct = _client(settings)  # without TRUSTED_PROXIES a forged header is ignored
    response = direct.get("/wiki/main-page", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in response.headers


def test_pages_have_no_inline_script_or_style(admin_client, make_page):
    """The CSP forbids inline code, so pages must not need any."""
    make_page("Main Page", "# Hello\n\n```python\nprint(1)\n```\n")
    for url in ("/wiki/main-page", "/wiki/main-page/edit", "/new", "/auth/password", "/review/"):
        html = admin_client.get(url).get_data(as_text=True)
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), url
        assert "<style" not in html and " style=" not in html, url
        assert not re.search(r"\son[a-z]+=", html), url


# --- cookies and sessions ------------------------------------------------------------------


def test_session_cookie_flags(client, contributor):
    response = client.login("carl")
    header = _cookie(response, "session")
    assert header and "HttpOnly" in header and "SameSite=Lax" in header
    assert "Secure" not in header  # tests run with SESSION_COOKIE_SECURE off


def test_cookies_secure_when_configured(settings, contributor):
    secure = _client(settings, SESSION_COOKIE_SECURE=True)
    https = "https://localhost"
    page = secure.get("/auth/login", base_url=https).get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    response = secure.post(
        "/auth/login",
        data={"username": "carl", "password": PASSWORD, "remember": "y", "csrf_token": token},
        base_url=https,
        headers={"Referer": f"{https}/auth/login"},  # Flask-WTF checks it over HTTPS
    )
    assert response.status_code == 302
    for name in ("session", "remember_token"):
        header = _cookie(response, name)
        assert header, name
        assert "Secure" in header and "HttpOnly" in header and "SameSite=Lax" in header


def test_cookie_security_defaults_to_on_in_production(tmp_path, monkeypatch):
    monkeypatch.delenv("SESSION_COOKIE_SECURE", raising=False)
    monkeypatch.delenv("SECRET_KEY", raising=False)
    assert config.load(str(tmp_path), {"ENV": "production"})["SESSION_COOKIE_SECURE"] is True
    assert config.load(str(tmp_path), {"ENV": "development"})["SESSION_COOKIE_SECURE"] is False
    monkeypatch.setenv("SESSION_COOKIE_SECURE", "false")
    assert config.load(str(tmp_path), {"ENV": "production"})["SESSION_COOKIE_SECURE"] is False


def test_remember_cookie_lasts_30_days_and_logout_clears_it(client, contributor):
    response = client.login("carl", remember=True)
    header = _cookie(response, "remember_token")
    assert header and "HttpOnly" in header and "SameSite=Lax" in header
    expires = parsedate_to_datetime(re.search(r"Expires=([^;]+)", header).group(1))
    days = (expires - datetime.now(UTC)).total_seconds() / 86400
    assert 29 < days <= 30  # not Flask-Login's default year
    response = client.submit("/auth/logout", token_from="/special/recent")
    assert response.status_code == 302
    cleared = _cookie(response, "remember_token")
    assert cleared and ("Max-Age=0" in cleared or "Expires=Thu, 01 Jan 1970" in cleared)
    assert client.get_cookie("remember_token") is None
    assert client.get("/auth/password").status_code == 302  # logged out for real


def test_remember_cookie_alone_logs_in_until_the_password_changes(app, client, contributor):
    client.login("carl", remember=True)
    token = client.get_cookie("remember_token").value
    fresh = app.test_client()
    fresh.set_cookie("remember_token", token)
    assert fresh.get("/auth/password").status_code == 200
    accounts.change_password(_db.session.get(User, contributor.id), PASSWORD, NEW_PASSWORD)
    stale = app.test_client()
    stale.set_cookie("remember_token", token)
    assert stale.get("/auth/password").status_code == 302


def test_password_change_logs_out_other_sessions(app, contributor):
    laptop, phone = app.test_client(), app.test_client()
    assert laptop.login("carl").status_code == 302
    assert phone.login("carl").status_code == 302
    response = laptop.submit(
        "/auth/password",
        {"current": PASSWORD, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
        token_from="/auth/password",
    )
    assert response.status_code == 302
    assert laptop.get("/auth/password").status_code == 200  # this session goes on
    response = phone.get("/auth/password")
    assert response.status_code == 302 and "/auth/login" in response.location
    assert phone.login("carl").status_code == 401
    assert phone.login("carl", NEW_PASSWORD).status_code == 302


def test_deactivation_ends_sessions(admin_client, app, contributor):
    carl = app.test_client()
    carl.login("carl")
    admin_client.submit(
        f"/admin/users/{contributor.id}", {"action": "deactivate"}, token_from="/admin/users"
    )
    assert carl.get("/auth/password").status_code == 302


def test_fresh_session_at_login(client, contributor):
    """Anything planted in the session before login is gone after it (session fixation)."""
    client.get("/auth/login")
    with client.session_transaction() as session:
        session["planted"] = "by an attacker"
    before = client.get_cookie("session").value
    assert client.login("carl").status_code == 302
    with client.session_transaction() as session:
        assert "planted" not in session
        assert session.get("_user_id", "").startswith(f"{contributor.id}:")
    assert client.get_cookie("session").value != before


def test_session_cookie_signed_by_another_key_is_refused(settings, contributor):
    alice = _client(settings)
    alice.login("carl")
    cookie = alice.get_cookie("session").value
    stranger = _client(settings, SECRET_KEY="another-secret-key")
    stranger.set_cookie("session", cookie)
    assert stranger.get("/auth/password").status_code == 302
    same = _client(settings)  # same key: another worker or machine accepts it
    same.set_cookie("session", cookie)
    assert same.get("/auth/password").status_code == 200


# --- secret key ----------------------------------------------------------------------------


def test_secret_key_generated_once_private_and_shared(tmp_path, monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    instance = tmp_path / "instance"
    common = {"ENV": "testing", "INSTANCE_PATH": str(instance)}
    common["DATABASE_URL"] = f"sqlite:///{tmp_path / 'wiki.db'}"
    first, second = create_app(common), create_app(common)
    key_file = instance / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert first.secret_key == second.secret_key == key_file.read_text().strip()
    assert len(first.secret_key) >= 32
    assert [p.name for p in instance.iterdir() if p.name.startswith(".secret_key")] == []


def test_secret_key_from_environment_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "k" * 40)
    assert config.load(str(tmp_path))["SECRET_KEY"] == "k" * 40
    assert not (tmp_path / "secret_key").exists()


@pytest.mark.parametrize("weak", ["dev", "changeme", "x" * 31])
def test_production_refuses_a_weak_secret_key(tmp_path, weak):
    with pytest.raises(ValueError, match="SECRET_KEY"):
        config.load(str(tmp_path), {"ENV": "production", "SECRET_KEY": weak})


def test_production_refuses_an_empty_secret_key_file(tmp_path, monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    (tmp_path / "secret_key").write_text("")
    with pytest.raises(ValueError, match="secret key"):
        config.load(str(tmp_path), {"ENV": "production"})


# --- rate limits ---------------------------------------------------------------------------


def _limited_client(settings: dict, **limits) -> WikiClient:
    return _client(settings, RATELIMIT_ENABLED=True, **limits)


def _assert_429(response) -> None:
    assert response.status_code == 429
    assert "too many" in response.get_data(as_text=True).lower()
    retry = int(response.headers["Retry-After"])
    reset = int(response.headers["X-RateLimit-Reset"])
    assert 0 <= retry <= 3600
    assert abs(retry - (reset - time.time())) <= 2  # the time until the window really resets


def test_login_rate_limited_with_retry_after(settings, contributor):
    client = _limited_client(settings, RATELIMIT_LOGIN="3 per minute")
    for _ in range(3):
        assert client.login("carl", "wrong password!").status_code == 401
    response = client.login("carl")
    _assert_429(response)
    assert int(response.headers["Retry-After"]) <= 60


def test_registration_rate_limited(settings):
    client = _limited_client(settings, RATELIMIT_REGISTER="2 per hour")
    for n in range(2):
        response = client.submit(
            "/auth/register",
            {"username": f"newbie{n}", "password": PASSWORD, "confirm": PASSWORD},
            token_from="/auth/register",
        )
        assert response.status_code == 302
        client.submit("/auth/logout", token_from="/special/recent")
    response = client.submit(
        "/auth/register",
        {"username": "newbie9", "password": PASSWORD, "confirm": PASSWORD},
        token_from="/auth/register",
    )
    _assert_429(response)
    assert int(response.headers["Retry-After"]) > 60  # an hourly window, not a fixed minute


def test_password_change_rate_limited(settings, contributor):
    client = _limited_client(settings, RATELIMIT_PASSWORD="2 per hour")
    client.login("carl")
    data = {"current": "not my password", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    for _ in range(2):
        response = client.submit("/auth/password", data, token_from="/auth/password")
        assert response.status_code == 422
    _assert_429(client.submit("/auth/password", data, token_from="/auth/password"))


def test_saves_rate_limited_per_user_and_text_kept(settings, contributor, reviewer):
    client = _limited_client(settings, RATELIMIT_SAVES="2 per minute")
    client.login("rita")
    for n in range(2):
        response = client.submit("/new", {"title": f"Page {n}", "body": "Text."}, token_from="/new")
        assert response.status_code == 302
    response = client.submit(
        "/new", {"title": "Page 3", "body": "My precious paragraph."}, token_from="/new"
    )
    _assert_429(response)
    assert "My precious paragraph." in response.get_data(as_text=True)  # nothing lost
    other = _limited_client(settings, RATELIMIT_SAVES="2 per minute")
    other.login("carl")  # another user from the same address has their own budget
    response = other.submit("/new", {"title": "Carl page", "body": "Text."}, token_from="/new")
    assert response.status_code == 302


def test_rate_limits_off_when_disabled(client, contributor):
    """RATELIMIT_ENABLED=false (the test default) turns every limit off."""
    for _ in range(25):
        assert client.login("nobody", "wrong password!").status_code == 401


def test_rate_limits_shared_through_redis(settings, contributor):
    """With Redis storage the counters live outside the process (tests/test_multinode.py proves
    they are shared by separate machines); db 15 is this test's own."""
    url = "redis://127.0.0.1:6379/15"
    store = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        store.flushdb()
    except redis.exceptions.ConnectionError:
        if CI:
            raise
        pytest.skip("Redis is not running on 127.0.0.1:6379; CI runs this")
    try:
        limits = {"RATELIMIT_LOGIN": "4 per minute", "RATELIMIT_STORAGE_URI": url}
        first = _limited_client(settings, **limits)
        second = _limited_client(settings, **limits)
        for client in (first, second, first, second):
            assert client.login("carl", "wrong password!").status_code == 401
        assert any(b"auth.login" in key for key in store.scan_iter())  # counted in Redis
        _assert_429(first.login("carl"))
        _assert_429(second.login("carl"))
    finally:
        store.flushdb()


# --- passwords -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "password",
    [
        "tenletters",  # exactly 10, lower case only: no composition rules
        "x" * 9 + "y",
        "ünïcödé pässwörd",
        "p" * 64 + "q" * 64,  # 128
        "w" * 200 + "!",
    ],
)
def test_passwords_accepted(app, password):
    user = accounts.create_user("someone", password)
    assert accounts.authenticate("someone", password).id == user.id


@pytest.mark.parametrize(
    "password,problem",
    [
        ("ninechars", "at least 10"),
        ("", "at least 10"),
        ("password123", "most common"),
        ("Password1234", "most common"),
        ("qwertyuiop", "most common"),
        ("1234567890", "most common"),
        ("iloveyou123", "most common"),
        ("someone-else", "must not be your username"),
    ],
)
def test_passwords_refused(app, password, problem):
    with pytest.raises(accounts.AccountError, match=problem):
        accounts.create_user("someone-else", password)


def test_register_form_shows_password_problem(client):
    response = client.submit(
        "/auth/register",
        {"username": "newbie", "password": "qwertyuiop", "confirm": "qwertyuiop"},
        token_from="/auth/register",
    )
    assert response.status_code == 422
    assert "most common" in response.get_data(as_text=True)
    assert accounts.find_user("newbie") is None


def test_login_back_off_is_shared_across_app_instances(settings, contributor):
    """Failures are counted in the database, so another worker or machine sees them."""
    limit = settings.get("LOGIN_MAX_FAILURES", 5)
    first, second = _client(settings), _client(settings)
    for n in range(limit):
        client = first if n % 2 else second
        assert client.login("carl", "wrong password!").status_code == 401
    response = second.login("carl")  # the right password, but the account is locked now
    assert response.status_code == 401
    assert "Too many failed attempts" in response.get_data(as_text=True)
    response = first.login("carl")
    assert "Too many failed attempts" in response.get_data(as_text=True)
    _db.session.rollback()
    user = _db.session.scalars(select(User).where(User.username_key == "carl")).one()
    assert user.failed_logins == limit and user.locked_until is not None


def test_back_off_message_does_not_reveal_unknown_accounts(client):
    for _ in range(8):
        response = client.login("ghost", "wrong password!")
        assert "Wrong username or password." in response.get_data(as_text=True)


# --- audit log -----------------------------------------------------------------------------


def test_admin_actions_appear_in_the_audit_log(admin_client, contributor, make_page):
    page = make_page("Audited Page")
    uid = contributor.id
    steps = [
        (f"/admin/users/{uid}", {"action": "role", "role": "reviewer"}, "/admin/users"),
        (f"/admin/users/{uid}", {"action": "deactivate"}, "/admin/users"),
        (f"/admin/users/{uid}", {"action": "activate"}, "/admin/users"),
        ("/wiki/audited-page/protect", {"protected": "1"}, "/wiki/audited-page"),
        ("/wiki/audited-page/delete", {}, "/wiki/audited-page/delete"),
        (f"/special/deleted/{page.id}/restore", {}, "/special/deleted"),
    ]
    for url, data, token_from in steps:
        assert admin_client.submit(url, data, token_from=token_from).status_code == 302, url
    html = admin_client.get("/admin/audit").get_data(as_text=True)
    for action in ("role", "deactivate", "activate", "protect", "delete", "restore"):
        assert f"<td>{action}</td>" in html, action
    assert "contributor -&gt; reviewer" in html or "contributor -> reviewer" in html
    assert "audited-page" in html and "alice" in html
    _db.session.rollback()
    actions = _db.session.scalars(select(AuditLog.action).order_by(AuditLog.id)).all()
    assert actions == ["role", "deactivate", "activate", "protect", "delete", "restore"]


def test_audit_log_is_admins_only(contributor_client, reviewer_client):
    assert contributor_client.get("/admin/audit").status_code == 403
    assert reviewer_client.get("/admin/audit").status_code == 403


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_common_password_list_is_ours_and_loaded():
    words = accounts._common_passwords()
    assert len(words) >= 100 and "password123" in words
