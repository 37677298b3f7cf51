"""Fixtures: an app on a freshly migrated database (SQLite, or PostgreSQL via TEST_DATABASE_URL),
users of each role, and test clients that fill in CSRF tokens the way a browser form does."""

from __future__ import annotations

import functools
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from flask import g, has_app_context
from flask.testing import FlaskClient
from sqlalchemy import create_engine, make_url, text
from werkzeug.security import generate_password_hash

from wiki import create_app
from wiki.extensions import db as _db

PASSWORD = "correct horse battery"
PG_URL = os.environ.get("TEST_DATABASE_URL", "")
CI = os.environ.get("CI", "").lower() == "true"
_TOKEN = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')


class WikiClient(FlaskClient):
    """A test client whose form posts carry a CSRF token fetched from a real page."""

    def open(self, *args, **kwargs):
        # Tests hold an app context, which Flask reuses for requests: start each request with
        # an empty `g` (Flask-Login and Flask-WTF cache per-user values there) and no open
        # database transaction, as a real request in a fresh context would.
        _reset_context()
        try:
            return super().open(*args, **kwargs)
        finally:
            _reset_context()

    def csrf_token(self, url: str | None = None) -> str:
        page = self.get(url or "/auth/login", follow_redirects=True).get_data(as_text=True)
        match = _TOKEN.search(page)
        if match is None:
            page = self.get("/special/recent").get_data(as_text=True)
            match = _TOKEN.search(page)
        assert match, "no CSRF token on the page"
        return match.group(1) or match.group(2)

    def submit(
        self, url: str, data: dict | None = None, *, token_from: str | None = None, **kwargs
    ):
        """POST a form the way a browser would: with the token from the page it was on."""
        data = dict(data or {})
        data.setdefault("csrf_token", self.csrf_token(token_from))
        return self.post(url, data=data, **kwargs)

    def login(self, username: str, password: str = PASSWORD, remember: bool = False):
        return self.submit(
            "/auth/login",
            {"username": username, "password": password, "remember": "y" if remember else ""},
            token_from="/auth/login",
        )


def _reset_context() -> None:
    if has_app_context():
        g.__dict__.clear()
        _db.session.rollback()


def _migrate(url: str, instance: Path) -> None:
    from flask_migrate import upgrade

    app = create_app(
        {
            "ENV": "testing",
            "DATABASE_URL": url,
            "SECRET_KEY": "test",
            "INSTANCE_PATH": str(instance),
        }
    )
    with app.app_context():
        upgrade()
        _db.engine.dispose()


@pytest.fixture(scope="session")
def template_db(tmp_path_factory) -> str:
    """A migrated database: a SQLite file to copy per test, or the PostgreSQL URL."""
    base = tmp_path_factory.mktemp("template")
    if PG_URL:
        engine = create_engine(PG_URL)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        engine.dispose()
        _migrate(PG_URL, base)
        return PG_URL
    path = base / "template.db"
    _migrate(f"sqlite:///{path}", base)
    return str(path)


def _truncate_pg() -> None:
    names = ", ".join(f'"{t.name}"' for t in _db.metadata.sorted_tables)
    _db.session.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    _db.session.commit()


@pytest.fixture
def settings(tmp_path, template_db) -> dict:
    """Settings for this test's app; tests may change them before using `app`."""
    if PG_URL:
        url = PG_URL
    else:
        path = tmp_path / "wiki.db"
        shutil.copy(template_db, path)
        url = f"sqlite:///{path}"
    return {
        "ENV": "testing",
        "DATABASE_URL": url,
        "SECRET_KEY": "test-secret-key",
        "INSTANCE_PATH": str(tmp_path),
        "SEARCH_INDEX_DIR": str(tmp_path / "index"),
        "RATELIMIT_ENABLED": False,
        "SESSION_COOKIE_SECURE": False,
        "SITE_NAME": "Nexus Wiki",
    }


@pytest.fixture
def app(settings):
    app = create_app(settings)
    app.test_client_class = WikiClient
    with app.app_context():
        if PG_URL:
            _truncate_pg()
        yield app
        _db.session.remove()
        _db.engine.dispose()


@pytest.fixture
def db(app):
    return _db


@functools.lru_cache
def _real_hash(password: str) -> str:
    """Werkzeug's default hash of a password, computed once per run (scrypt is slow on purpose)."""
    return generate_password_hash(password)


def _user(name: str, role: str):
    """Create a user through the domain, reusing one real hash of the shared test password."""
    from wiki import accounts
    from wiki.models import users

    original = users.generate_password_hash
    users.generate_password_hash = _real_hash
    try:
        return accounts.create_user(name, PASSWORD, role=role, email=f"{name}@example.org")
    finally:
        users.generate_password_hash = original


@pytest.fixture
def admin(app):
    return _user("alice", "admin")


@pytest.fixture
def reviewer(app):
    return _user("rita", "reviewer")


@pytest.fixture
def reviewer2(app):
    return _user("ravi", "reviewer")


@pytest.fixture
def contributor(app):
    return _user("carl", "contributor")


@pytest.fixture
def contributor2(app):
    return _user("cleo", "contributor")


@pytest.fixture
def client(app) -> WikiClient:
    return app.test_client()


def _logged_in(app, user) -> WikiClient:
    c = app.test_client()
    response = c.login(user.username)
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return c


@pytest.fixture
def admin_client(app, admin):
    return _logged_in(app, admin)


@pytest.fixture
def reviewer_client(app, reviewer):
    return _logged_in(app, reviewer)


@pytest.fixture
def reviewer2_client(app, reviewer2):
    return _logged_in(app, reviewer2)


@pytest.fixture
def contributor_client(app, contributor):
    return _logged_in(app, contributor)


@pytest.fixture
def make_page(app):
    """Publish a page directly (as an admin-level author) and return it."""
    from wiki import editing

    def make(title: str, body: str = "Some text.\n", author=None, tags: str = ""):
        from wiki.models import User

        author = (
            author
            or _db.session.query(User).filter_by(username="system-test").first()
            or _user("system-test", "admin")
        )
        result = editing.save(author, title=title, body=body, tags=tags, summary="created")
        assert result.published
        return result.revision.page

    return make


def require_postgres() -> str:
    """The PostgreSQL URL for tests that need one; skip locally without it, fail in CI."""
    if PG_URL:
        return PG_URL
    url = os.environ.get("PG_URL_FOR_TESTS", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    try:
        engine = create_engine(url)
        with engine.connect():
            pass
        engine.dispose()
        return url
    except Exception as exc:  # noqa: BLE001
        if CI:
            raise
        pytest.skip(f"PostgreSQL is not reachable ({exc.__class__.__name__}); CI runs this")


@contextmanager
def fresh_postgres(prefix: str) -> Iterator[str]:
    """A throwaway empty PostgreSQL database on the test server, dropped afterwards."""
    base = make_url(require_postgres())
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def propose(user, page, body, summary="a change", base_id=None, **kw):
    """Save as `user` on `page`, expecting a pending proposal (the review tests' starting point)."""
    from wiki import editing

    result = editing.save(
        user,
        title=page.title,
        body=body,
        summary=summary,
        page=page,
        base_revision_id=base_id or page.current_revision_id,
        **kw,
    )
    assert not result.published
    assert result.revision.status == "pending"
    return result.revision
