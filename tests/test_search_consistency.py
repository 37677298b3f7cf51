"""The index follows the database: across app instances, after crashes, deletions, and workers."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from tests.conftest import PASSWORD, WikiClient, fresh_postgres
from wiki import create_app
from wiki.search import index

ROOT = Path(__file__).resolve().parent.parent
HIT = re.compile(r'<h2><a href="/wiki/([^"]+)">')


def found(client, q: str) -> list[str]:
    response = client.get("/search", query_string={"q": q})
    assert response.status_code == 200
    return HIT.findall(response.get_data(as_text=True))


@pytest.fixture
def second_app(app, settings, tmp_path):
    """Another node on the same database with its own index folder."""
    other = create_app(dict(settings, SEARCH_INDEX_DIR=str(tmp_path / "node2" / "index")))
    other.test_client_class = WikiClient
    yield other
    with other.app_context():
        from wiki.extensions import db

        db.engine.dispose()


def test_two_instances_find_what_the_other_published(app, second_app, make_page, admin):
    make_page("Alpha page", "Published on node one: aardvark.")
    assert found(second_app.test_client(), "aardvark") == ["alpha-page"]
    with second_app.app_context():
        from wiki import editing

        editing.save(admin, title="Beta page", body="Published on node two: bumblebee.")
    assert found(app.test_client(), "bumblebee") == ["beta-page"]
    assert found(second_app.test_client(), "bumblebee") == ["beta-page"]


def test_new_instance_with_empty_index_catches_up(app, settings, tmp_path, make_page):
    for n in range(5):
        make_page(f"Old page {n}", f"Written before the node started: quokka {n}.")
    fresh = create_app(dict(settings, SEARCH_INDEX_DIR=str(tmp_path / "empty" / "index")))
    assert len(found(fresh.test_client(), "quokka")) == 5


def test_crash_between_db_commit_and_index_commit_heals(app, admin_client, make_page, monkeypatch):
    page = make_page("Resilience", "Before.")
    real_sync = index.sync
    calls = []

    def crash_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OSError("killed before the index commit")
        return real_sync(*args, **kwargs)

    monkeypatch.setattr(index, "sync", crash_once)
    response = admin_client.submit(
        "/wiki/resilience/edit",
        {
            "title": "Resilience",
            "body": "After: platypus.",
            "summary": "edit",
            "base_revision_id": str(page.current_revision_id),
            "save": "Save",
        },
        token_from="/wiki/resilience/edit",
    )
    assert response.status_code == 302  # the publish stands although the index failed
    assert calls, "the publish did try to sync"
    assert found(admin_client, "platypus") == ["resilience"]
    assert found(admin_client, "before") == []


def test_index_behind_without_any_hook_heals(app, client, make_page):
    """A publish by a process without the hook (another tool, a killed worker) is caught up."""
    make_page("Known", "Indexed at publish.")
    event.remove(Session, "after_commit", index._after_commit)
    try:
        make_page("Quiet", "Nobody told the index: narwhal.")
    finally:
        event.listen(Session, "after_commit", index._after_commit)
    assert found(client, "narwhal") == ["quiet"]


@pytest.mark.parametrize("how", ["folder", "link"])
def test_index_folder_deleted_while_running_is_rebuilt(app, client, settings, make_page, how):
    make_page("Survivor", "Still findable: wombat.")
    assert found(client, "wombat") == ["survivor"]
    path = settings["SEARCH_INDEX_DIR"]
    if how == "folder":
        shutil.rmtree(os.path.realpath(path))  # the data goes, a dangling link stays
    else:
        os.unlink(path)  # `rm -rf instance/index` removes the link
    assert found(client, "wombat") == ["survivor"]
    make_page("Newcomer", "Also wombat.")
    assert set(found(client, "wombat")) == {"survivor", "newcomer"}


def test_reindex_command_swaps_in_a_fresh_index(app, client, make_page):
    make_page("Indexed", "Reindexed text: axolotl.")
    assert found(client, "axolotl") == ["indexed"]
    before = os.path.realpath(app.config["SEARCH_INDEX_DIR"])
    result = app.test_cli_runner().invoke(args=["wiki", "reindex"])
    assert result.exit_code == 0, result.output
    assert "Indexed 1 page" in result.output
    assert os.path.realpath(app.config["SEARCH_INDEX_DIR"]) != before
    assert found(client, "axolotl") == ["indexed"]


# --- several real processes -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """A tiny urllib browser: cookies, and forms posted with the token scraped from the page."""

    TOKEN = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))

    def _open(self, path: str, body: bytes | None = None) -> str:
        try:
            with self.opener.open(self.base + path, data=body, timeout=30) as response:
                return response.read().decode()
        except urllib.error.HTTPError as exc:
            if exc.code >= 500:
                raise
            return exc.read().decode()  # e.g. the empty wiki's main page after logging in

    def get(self, path: str) -> str:
        return self._open(path)

    def submit(self, path: str, data: dict, token_from: str | None = None) -> str:
        page = self.get(token_from or path)
        data = dict(data, csrf_token=self.TOKEN.search(page).group(1))
        return self._open(path, urllib.parse.urlencode(data).encode())

    def search(self, q: str) -> list[str]:
        """Exact hits only: near-spellings of other markers come back labelled approximate."""
        page = self.get("/search?" + urllib.parse.urlencode({"q": q}))
        return [] if "approximate match" in page else HIT.findall(page)


def _flask(env: dict, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "flask", *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path, template_db):
    """A database of its own for the server: a SQLite file, or a throwaway PostgreSQL db."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'server.db'}"
        return
    with fresh_postgres("search_workers") as url:
        yield url


def test_gunicorn_workers_stay_consistent(tmp_path, database_url):
    env = dict(
        os.environ,
        FLASK_APP="wsgi.py",
        DATABASE_URL=database_url,
        INSTANCE_PATH=str(tmp_path / "instance"),
        SEARCH_INDEX_DIR=str(tmp_path / "instance" / "index"),
        SECRET_KEY="gunicorn-test-secret",
        ENV="development",
        RATELIMIT_ENABLED="false",
        SESSION_COOKIE_SECURE="false",
        LOG_LEVEL="WARNING",
    )
    _flask(env, "db", "upgrade")
    _flask(env, "wiki", "create-user", "tester", "--role", "admin", "--password", PASSWORD)
    port = _free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "-w",
            "3",
            "-b",
            f"127.0.0.1:{port}",
            "--timeout",
            "60",
            "wsgi:app",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(base + "/healthz", timeout=2).read()
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.2)

        errors: list[str] = []
        latest: dict[str, str] = {}
        written: list[str] = []

        def worker(n: int) -> None:
            try:
                browser = Browser(base)
                browser.submit("/auth/login", {"username": "tester", "password": PASSWORD})
                title = f"Worker page {n}"
                slug = f"worker-page-{n}"
                browser.submit("/new", {"title": title, "body": "start", "save": "Save"})
                for i in range(4):
                    word = f"zq{n}w{i}marker"
                    editor = browser.get(f"/wiki/{slug}/edit")
                    base_id = re.search(r'name="base_revision_id"[^>]*value="(\d+)"', editor)
                    browser.submit(
                        f"/wiki/{slug}/edit",
                        {
                            "title": title,
                            "body": f"Edit {i}: {word}",
                            "summary": str(i),
                            "base_revision_id": base_id.group(1) if base_id else "",
                            "save": "Save",
                        },
                        token_from=f"/wiki/{slug}/edit",
                    )
                    written.append(word)
                    latest[slug] = word
                    browser.search(word)  # a search may land on any worker
            except Exception as exc:  # noqa: BLE001
                errors.append(f"{n}: {exc!r}")

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        checker = Browser(base)
        for _ in range(6):  # each request may land on another worker: all must agree
            for slug, word in latest.items():
                assert checker.search(word) == [slug], (slug, word)
            for word in set(written) - set(latest.values()):
                assert checker.search(word) == [], f"{word} is an old revision"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        if server.stderr is not None:
            server.stderr.close()
