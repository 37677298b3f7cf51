"""Two real app nodes (gunicorn processes) sharing one database: the scale-out shape.

Each node has its own instance folder and search index, both share SECRET_KEY and the database
(one SQLite file, or one PostgreSQL database), and rate limits go through Redis when it runs.
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from tests.conftest import CI, PASSWORD, fresh_postgres

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
REDIS_URL = "redis://127.0.0.1:6379/14"
LOGIN_LIMIT = 6
_TOKEN = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _redis_available() -> bool:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
        return True
    except redis.exceptions.ConnectionError:
        if CI:
            raise
        return False


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # noqa: ANN002, ANN003
        return None


class Browser:
    """One browser: a cookie jar shared by every node it talks to (as behind a load balancer)."""

    def __init__(self) -> None:
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect()
        )

    def request(self, url: str, data: dict | None = None) -> tuple[int, str, dict]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        try:
            with self.opener.open(urllib.request.Request(url, data=body), timeout=10) as resp:
                return resp.status, resp.read().decode(), dict(resp.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(), dict(exc.headers)

    def submit(self, url: str, data: dict, token_from: str) -> tuple[int, str, dict]:
        """POST a form with the CSRF token scraped from the page it is on."""
        status, page, _ = self.request(token_from)
        assert status == 200, (token_from, status)
        return self.request(url, {**data, "csrf_token": _TOKEN.search(page).group(1)})

    def login(self, node: str, username: str, password: str = PASSWORD) -> int:
        form = {"username": username, "password": password}
        return self.submit(f"{node}/auth/login", form, f"{node}/auth/login")[0]

    def register(self, node: str, username: str, password: str = PASSWORD) -> int:
        form = {"username": username, "password": password, "confirm": password}
        return self.submit(f"{node}/auth/register", form, f"{node}/auth/register")[0]


def _env(database_url: str, instance: Path, port: int | None = None) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"TEST_DATABASE_URL", "FLASK_RUN_PORT"} and not key.startswith("RATELIMIT")
    }
    env.update(
        FLASK_APP="wsgi.py",
        ENV="production",
        SECRET_KEY="multinode-" + "k" * 40,
        DATABASE_URL=database_url,
        INSTANCE_PATH=str(instance),
        SEARCH_INDEX_DIR=str(instance / "index"),
        SESSION_COOKIE_SECURE="false",  # plain HTTP on localhost
        RATELIMIT_LOGIN=f"{LOGIN_LIMIT} per minute",
        REVIEW_POLICY="off",  # a new account's edit publishes at once
        LOG_LEVEL="WARNING",
        HOST="127.0.0.1",
        WEB_CONCURRENCY="2",
    )
    if port is not None:
        env["PORT"] = str(port)
    return env


def _flask(env: dict[str, str], *args: str) -> None:
    result = subprocess.run(
        [str(BIN / "flask"), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


@contextmanager
def _nodes(database_url: str, tmp_path: Path, *, shared_limits: bool) -> Iterator[list[str]]:
    """Migrate the database, start two gunicorn nodes; stop them afterwards."""
    _flask(_env(database_url, tmp_path / "setup"), "db", "upgrade")
    prefix = f"multinode-{secrets.token_hex(6)}"
    processes, urls, logs = [], [], []
    try:
        for name in ("a", "b"):
            port = _free_port()
            env = _env(database_url, tmp_path / f"node-{name}", port)
            if shared_limits:
                env.update(RATELIMIT_STORAGE_URI=REDIS_URL, RATELIMIT_KEY_PREFIX=prefix)
            log = (tmp_path / f"node-{name}.log").open("w")
            logs.append(log)
            processes.append(
                subprocess.Popen(
                    [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 20
        for url, process in zip(urls, processes, strict=True):
            while True:
                assert process.poll() is None, (tmp_path / "node-a.log").read_text()[-3000:]
                try:
                    with urllib.request.urlopen(f"{url}/healthz", timeout=2) as resp:
                        if resp.status == 200:
                            break
                except OSError:
                    pass
                assert time.monotonic() < deadline, f"{url} did not become healthy"
                time.sleep(0.1)
        yield urls
    finally:
        for process in processes:
            process.send_signal(signal.SIGINT)  # gunicorn's quick shutdown
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in logs:
            log.close()
        if shared_limits:
            store = redis.Redis.from_url(REDIS_URL)
            for key in store.scan_iter(f"*{prefix}*"):
                store.delete(key)


@contextmanager
def _database(kind: str, tmp_path: Path) -> Iterator[str]:
    """An empty database for the nodes: a SQLite file, or a throwaway PostgreSQL database."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.db'}"
        return
    with fresh_postgres("nexus_multinode") as url:
        yield url


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_two_nodes_share_sessions_edits_search_and_limits(kind, tmp_path):
    shared_limits = _redis_available()
    with (
        _database(kind, tmp_path) as url,
        _nodes(url, tmp_path, shared_limits=shared_limits) as (
            node_a,
            node_b,
        ),
    ):
        # A session signed by node A is accepted by node B (shared SECRET_KEY).
        browser = Browser()
        assert browser.register(node_a, "nina") == 302
        status, page, _ = browser.request(f"{node_b}/auth/password")
        assert status == 200 and "nina" in page
        assert Browser().request(f"{node_b}/auth/password")[0] == 302  # no cookie: log in

        # An edit saved on A (with A's form token) is visible on B.
        word = f"zebrafinch{secrets.token_hex(3)}"
        status, _, headers = browser.submit(
            f"{node_a}/new",
            {"title": "Multi Node Page", "body": f"Written on node A: {word}.\n", "summary": ""},
            f"{node_a}/new",
        )
        assert status == 302, status
        status, page, _ = Browser().request(f"{node_b}/wiki/multi-node-page")
        assert status == 200 and word in page

        # B's own search index catches up from the database's page events.
        status, page, _ = Browser().request(f"{node_b}/search?q={word}")
        assert status == 200
        assert "Multi Node Page" in page and "/wiki/multi-node-page" in page

        # Login attempts on both nodes count against one budget in Redis.
        if not shared_limits:
            pytest.skip("Redis is not running on 127.0.0.1:6379; the rest runs in CI")
        attacker = Browser()
        for node in [node_a, node_b] * (LOGIN_LIMIT // 2):
            assert attacker.login(node, "nobody", "wrong password!") == 401
        # Each node has let through only half its limit, yet both refuse now: one budget.
        for node in (node_a, node_b):
            status, page, headers = attacker.submit(
                f"{node}/auth/login",
                {"username": "nina", "password": PASSWORD},
                f"{node}/auth/login",
            )
            assert status == 429 and int(headers["Retry-After"]) <= 60
