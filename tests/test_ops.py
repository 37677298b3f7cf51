"""Operations: backup/restore, health, logs, caching, configuration, container files."""

from __future__ import annotations

import logging
import re
import runpy
import sqlite3
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select

import config
from tests.conftest import PG_URL
from wiki import create_app
from wiki.extensions import db as _db
from wiki.models import Page

ROOT = Path(__file__).resolve().parent.parent
sqlite_only = pytest.mark.skipif(bool(PG_URL), reason="SQLite backup; PostgreSQL uses pg_dump")


def _cli(app, *args: str, input: str | None = None):
    _db.session.remove()
    return app.test_cli_runner().invoke(args=["wiki", *args], input=input)


def _titles() -> set[str]:
    _db.session.rollback()
    return set(_db.session.scalars(select(Page.title)))


# --- backup and restore --------------------------------------------------------------------


@sqlite_only
def test_backup_then_restore_brings_the_wiki_back(app, make_page, tmp_path):
    make_page("Kept Page", "Before the backup.\n")
    target = tmp_path / "backups" / "wiki-backup.db"
    result = _cli(app, "backup", str(target))
    assert result.exit_code == 0, result.output
    assert "Backed up" in result.output and target.is_file()
    assert not list(target.parent.glob("*.partial"))

    make_page("Added Later")
    assert _titles() == {"Kept Page", "Added Later"}

    result = _cli(app, "restore", str(target), "--yes")
    assert result.exit_code == 0, result.output
    assert "Stop the wiki" in result.output and "flask wiki reindex" in result.output
    assert _titles() == {"Kept Page"}
    assert _db.session.scalar(select(func.count()).select_from(Page)) == 1


@sqlite_only
def test_backup_is_one_self_contained_file(app, make_page, tmp_path):
    make_page("Solo")
    target = tmp_path / "solo.db"
    assert _cli(app, "backup", str(target)).exit_code == 0
    conn = sqlite3.connect(target)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT title FROM pages").fetchall() == [("Solo",)]
    finally:
        conn.close()


@sqlite_only
def test_backup_is_consistent_while_a_writer_is_busy(app, make_page, settings, tmp_path):
    """A transaction in flight elsewhere neither blocks the backup nor leaks into it."""
    make_page("Committed")
    live = sqlite3.connect(settings["DATABASE_URL"].removeprefix("sqlite:///"), timeout=1)
    live.isolation_level = None
    try:
        live.execute("BEGIN IMMEDIATE")
        live.execute("UPDATE pages SET title = 'Half done'")
        target = tmp_path / "busy.db"
        result = _cli(app, "backup", str(target))
        assert result.exit_code == 0, result.output
    finally:
        live.execute("ROLLBACK")
        live.close()
    conn = sqlite3.connect(target)
    assert conn.execute("SELECT title FROM pages").fetchall() == [("Committed",)]
    conn.close()


@sqlite_only
def test_backup_refuses_to_overwrite_without_force(app, tmp_path):
    target = tmp_path / "exists.db"
    target.write_text("precious")
    result = _cli(app, "backup", str(target))
    assert result.exit_code != 0 and "--force" in result.output
    assert target.read_text() == "precious"
    assert _cli(app, "backup", str(target), "--force").exit_code == 0


@sqlite_only
def test_restore_asks_for_confirmation(app, make_page, tmp_path):
    make_page("Original")
    target = tmp_path / "b.db"
    _cli(app, "backup", str(target))
    make_page("Newer")
    result = _cli(app, "restore", str(target), input="n\n")
    assert result.exit_code != 0 and "Restore now?" in result.output
    assert _titles() == {"Original", "Newer"}
    result = _cli(app, "restore", str(target), input="y\n")
    assert result.exit_code == 0, result.output
    assert _titles() == {"Original"}


@sqlite_only
@pytest.mark.parametrize("kind", ["missing", "text", "other-sqlite", "empty-sqlite", "truncated"])
def test_restore_refuses_files_that_are_not_our_backups(app, make_page, tmp_path, kind):
    make_page("Still Here")
    bad = tmp_path / "bad.db"
    if kind == "text":
        bad.write_text("just some text, not a database\n" * 50)
    elif kind == "other-sqlite":
        conn = sqlite3.connect(bad)
        conn.execute("CREATE TABLE stuff (x)")
        conn.commit()
        conn.close()
    elif kind == "empty-sqlite":
        conn = sqlite3.connect(bad)
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32))")
        conn.execute("CREATE TABLE users (id)")
        conn.execute("CREATE TABLE pages (id)")
        conn.commit()
        conn.close()
    elif kind == "truncated":
        _cli(app, "backup", str(tmp_path / "good.db"))
        bad.write_bytes((tmp_path / "good.db").read_bytes()[:5000])
    result = _cli(app, "restore", str(bad), "--yes")
    assert result.exit_code != 0
    assert "Error:" in result.output and "Traceback" not in result.output
    assert _titles() == {"Still Here"}


def test_backup_on_postgresql_points_to_pg_dump(tmp_path):
    app = create_app(
        {
            "ENV": "testing",
            "SECRET_KEY": "x",
            "INSTANCE_PATH": str(tmp_path),
            "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nowhere",
        }
    )
    for args in (["backup", str(tmp_path / "b.db")], ["restore", str(tmp_path / "b.db"), "--yes"]):
        result = app.test_cli_runner().invoke(args=["wiki", *args])
        assert result.exit_code != 0
        assert "pg_dump" in result.output


# --- health and logs -----------------------------------------------------------------------


def test_healthz_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok"}


def test_healthz_503_when_the_database_is_down(tmp_path):
    app = create_app(
        {
            "ENV": "testing",
            "SECRET_KEY": "x",
            "INSTANCE_PATH": str(tmp_path),
            "DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/nowhere?connect_timeout=2",
        }
    )
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["database"] == "unreachable"


def test_request_log_lines_are_structured(client, caplog):
    caplog.set_level(logging.INFO, logger="wiki.request")
    client.get("/wiki/no-such-page?x=1", headers={"X-Request-Id": "abc123"})
    lines = [r.getMessage() for r in caplog.records if r.name == "wiki.request"]
    assert lines, "no request log line"
    fields = dict(pair.split("=", 1) for pair in lines[-1].split())
    assert fields["request_id"] == "abc123"
    assert fields["method"] == "GET" and fields["path"] == "/wiki/no-such-page"
    assert fields["status"] == "404"
    assert float(fields["duration_ms"]) >= 0


def test_request_id_generated_and_returned(client):
    first, second = client.get("/healthz"), client.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{16}", first.headers["X-Request-Id"])
    assert first.headers["X-Request-Id"] != second.headers["X-Request-Id"]


# --- caching -------------------------------------------------------------------------------


def test_static_urls_are_fingerprinted_and_cached_for_a_year(client, make_page):
    make_page("Main Page")
    html = client.get("/wiki/main-page").get_data(as_text=True)
    urls = re.findall(r'(/static/[^"?]+\?v=[0-9a-f]+)"', html)
    assert any(u.startswith("/static/css/wiki.css") for u in urls), urls
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    plain = client.get("/static/css/wiki.css")
    assert "immutable" not in plain.headers.get("Cache-Control", "")


def test_page_view_revalidates_with_etag_and_last_modified(client, admin_client, make_page):
    make_page("Cached Page", "First text.\n")
    first = client.get("/wiki/cached-page")
    assert first.status_code == 200
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    assert etag and modified
    again = client.get("/wiki/cached-page", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.get_data() == b""
    assert again.headers["ETag"] == etag

    admin_client.submit(
        "/wiki/cached-page/edit",
        {
            "title": "Cached Page",
            "body": "Second text.\n",
            "base_revision_id": re.search(
                r'name="base_revision_id"[^>]*value="(\d+)"',
                admin_client.get("/wiki/cached-page/edit").get_data(as_text=True),
            ).group(1),
        },
        token_from="/wiki/cached-page/edit",
    )
    changed = client.get("/wiki/cached-page", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and "Second text." in changed.get_data(as_text=True)
    assert changed.headers["ETag"] != etag


def test_etag_differs_per_user(client, contributor_client, make_page):
    make_page("Shared Page")
    anon = client.get("/wiki/shared-page").headers["ETag"]
    carl = contributor_client.get("/wiki/shared-page")
    assert carl.headers["ETag"] != anon  # a logged-in page never answers 304 to a reader's tag
    response = contributor_client.get("/wiki/shared-page", headers={"If-None-Match": anon})
    assert response.status_code == 200


# --- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key,raw,expected",
    [
        ("REVIEW_MIN_APPROVALS", "2", 2),
        ("RATELIMIT_ENABLED", "false", False),
        ("RATELIMIT_STORAGE_URI", "redis://127.0.0.1:6379/3", "redis://127.0.0.1:6379/3"),
        ("SESSION_COOKIE_SECURE", "yes", True),
        ("MAX_CONTENT_LENGTH", "1048576", 1048576),
        ("TRUSTED_PROXIES", "1", 1),
        ("RATELIMIT_SAVES", "5 per minute", "5 per minute"),
    ],
)
def test_environment_overrides_defaults(tmp_path, monkeypatch, key, raw, expected):
    monkeypatch.setenv("SECRET_KEY", "s" * 40)
    monkeypatch.setenv(key, raw)
    assert config.load(str(tmp_path))[key] == expected


@pytest.mark.parametrize(
    "key,raw",
    [("RATELIMIT_ENABLED", "maybe"), ("REVIEW_MIN_APPROVALS", "two"), ("REVIEW_POLICY", "all")],
)
def test_bad_environment_values_are_refused_clearly(tmp_path, monkeypatch, key, raw):
    monkeypatch.setenv("SECRET_KEY", "s" * 40)
    monkeypatch.setenv(key, raw)
    with pytest.raises(ValueError, match=key):
        config.load(str(tmp_path))


def test_postgres_urls_use_psycopg3(tmp_path):
    for url in ("postgres://u@h/db", "postgresql://u@h/db"):
        values = config.load(str(tmp_path), {"SECRET_KEY": "s" * 40, "DATABASE_URL": url})
        assert values["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u@h/db"


def test_gunicorn_settings_are_sane(monkeypatch):
    monkeypatch.setenv("HOST", "0.0.0.0")
    monkeypatch.setenv("PORT", "9123")
    settings = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert settings["bind"] == "0.0.0.0:9123"
    assert 1 <= settings["workers"] <= 8
    assert settings["timeout"] >= 10 and settings["preload_app"] is False
    assert "request_id" in settings["access_log_format"]


# --- container files -----------------------------------------------------------------------


def test_dockerfile_is_multi_stage_non_root_with_healthcheck():
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert len(stages) == 2 and stages[-1] == "python:3.11-slim"
    runtime = text.split("\nFROM ")[-1]
    assert "pip wheel" in text and "--no-index" in runtime
    assert re.search(r"^USER\s+(?!root\b|0\b)\w+", runtime, re.M)
    assert re.search(r"^HEALTHCHECK .*?/healthz", runtime, re.M | re.S)
    assert "curl" not in runtime
    assert "COPY . " not in text  # only what is needed
    assert 'ENTRYPOINT ["wiki-entrypoint"]' in runtime
    for path in re.findall(r"^COPY (?:--\S+ )*(.+?) \S+$", runtime, re.M):
        for part in path.split():
            if not part.startswith("/"):
                assert (ROOT / part).exists(), part


def test_entrypoint_migrates_then_execs_gunicorn():
    script = (ROOT / "deploy" / "entrypoint.sh").read_text()
    upgrade = script.index("flask db upgrade")
    assert upgrade < script.index("flask wiki ensure-admin") < script.index("exec gunicorn")
    assert "gunicorn -c gunicorn.conf.py wsgi:app" in script
    assert (ROOT / "deploy" / "entrypoint.sh").stat().st_mode & 0o111


def test_dockerignore_keeps_secrets_and_data_out():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    rules = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert rules[0] == "*"  # allow-list: nothing is sent unless named
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    assert {"wiki", "migrations", "templates", "static", "requirements.txt"} <= allowed
    assert not allowed & {"instance", ".env", ".venv", ".git", "tests"}


def test_compose_runs_two_replicas_behind_nginx_with_postgres_and_redis():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    replicas = [n for n in ("app1", "app2") if n in services]
    assert replicas == ["app1", "app2"]
    assert services["postgres"]["image"].startswith("postgres:16")
    assert "healthcheck" in services["postgres"]
    assert any("/var/lib/postgresql/data" in v for v in services["postgres"]["volumes"])
    assert services["redis"]["image"].startswith("redis:7")
    nginx = services["nginx"]
    assert any("nginx.conf" in v for v in nginx["volumes"])
    index_volumes = set()
    for name in replicas:
        env = services[name]["environment"]
        assert env["SECRET_KEY"].startswith("${SECRET_KEY:?")  # shared, and required
        assert env["DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["RATELIMIT_STORAGE_URI"].startswith("redis://redis:6379")
        assert "SESSION_COOKIE_SECURE" in env
        (volume,) = [v for v in services[name]["volumes"] if v.endswith(":/data/index")]
        index_volumes.add(volume.split(":")[0])
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert len(index_volumes) == 2  # each replica its own search index
    assert index_volumes <= set(compose["volumes"])
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "server app1:8000" in conf and "server app2:8000" in conf
    assert "X-Forwarded-Proto" in conf and "X-Request-Id" in conf
