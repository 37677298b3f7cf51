"""Cross-cutting web concerns: context for templates, headers, logging, health, helpers."""

from __future__ import annotations

import functools
import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime

from flask import (
    Flask,
    abort,
    current_app,
    g,
    make_response,
    redirect,
    request,
    session,
    url_for,
)
from flask_login import current_user
from sqlalchemy import text

from wiki import markup, notify, queries
from wiki.extensions import db, login_manager
from wiki.models import User

log = logging.getLogger("wiki.request")

# The editor keeps the user's text on screen whatever it holds: the domain cleans these fields.
EDITOR_ENDPOINTS = {"pages.edit", "pages.new", "review.update"}
EDITOR_FIELDS = {"title", "body", "summary", "tags"}

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# Ids and page numbers beyond this overflow the database's integers (a 500): they answer 404.
MAX_NUMBER = 2**53
NUMERIC_ARGS = ("page", "from", "to")


def canonical_slug(slug: str) -> str | None:
    """The canonical form of a slug typed differently ("Main Page" -> "main-page"), or None."""
    fixed = markup.slugify(slug)
    return fixed if fixed and fixed != slug else None


def login_required(view: Callable) -> Callable:
    """Send anonymous visitors to log in, and back here afterwards."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if not current_user.is_authenticated:
            target = request.full_path.rstrip("?") if request.method == "GET" else request.path
            return redirect(url_for("auth.login", next=target))
        return view(*args, **kwargs)

    return wrapper


def user_or_ip() -> str:
    """Rate-limit key: the account when logged in (shared offices share an address), else IP."""
    if current_user.is_authenticated:
        return f"user:{current_user.id}"
    return f"ip:{request.remote_addr or '-'}"


def rate_limit(key: str) -> Callable[[], str]:
    """The limit string configured under `key` (e.g. RATELIMIT_SAVES), read per request."""
    return lambda: current_app.config[key]


def not_modified_or(last_modified: datetime, version: str, build: Callable):
    """Answer a conditional GET with 304, else build the page with ETag and Last-Modified."""
    user = current_user.get_id() if current_user.is_authenticated else "anon"
    etag = hashlib.sha256(f"{version}:{user}".encode()).hexdigest()[:32]
    if request.if_none_match.contains(etag) and not session.get("_flashes"):  # show messages
        response = make_response("", 304)
    else:
        response = make_response(build())
    response.set_etag(etag)
    response.last_modified = last_modified
    response.headers["Cache-Control"] = "private, no-cache"
    return response


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    """Sessions and remember cookies carry id:token; a changed token revokes them."""
    ident, _, token = user_id.partition(":")
    if not ident.isdigit():
        return None
    user = db.session.get(User, int(ident))
    if user is None or not token or user.auth_token != token or not user.active:
        return None
    return user


def header_counts() -> tuple[int, int]:
    """(unread notifications, proposals waiting) for the header badges of the current user."""
    user = current_user
    if not user.is_authenticated:
        return 0, 0
    return notify.unread_count(user.id), queries.pending_count() if user.is_reviewer else 0


def register(app: Flask) -> None:
    def _start():
        g.request_id = request.headers.get("X-Request-Id", "")[:64] or uuid.uuid4().hex[:16]
        g.started = time.perf_counter()

    # First of all before-request hooks, so requests refused by CSRF or a rate limit get an id too.
    app.before_request_funcs.setdefault(None, []).insert(0, _start)

    @app.url_value_preprocessor
    def _refuse_unstorable(_endpoint, values):  # noqa: ANN001
        """Numbers past the database's integers and NUL characters (PostgreSQL refuses them)
        answer 404/400 instead of failing in a query with a 500. Page text ("body") is left to
        the domain, which refuses NUL with a message and keeps the editor's text."""
        values = values or {}
        numbers = [v for v in values.values() if isinstance(v, int)]
        numbers += [request.args.get(k, type=int) or 0 for k in NUMERIC_ARGS]
        if any(abs(n) > MAX_NUMBER for n in numbers):
            abort(404, "There is nothing with that number.")
        if any("\x00" in v for v in values.values() if isinstance(v, str)):
            abort(404, "There is nothing at this address.")
        fields = [v for _, v in request.args.items(multi=True)]
        editor = request.endpoint in EDITOR_ENDPOINTS
        fields += [
            v for k, v in request.form.items(multi=True) if not (editor and k in EDITOR_FIELDS)
        ]
        if any("\x00" in v for v in fields):
            abort(400, "The request contains a NUL character, which this wiki cannot store.")

    @app.after_request
    def _headers(response):
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if request.is_secure:
            response.headers.setdefault(
                "Strict-Transport-Security", "max-age=31536000; includeSubDomains"
            )
        if request.endpoint == "static":
            if request.args.get("v"):
                response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        elif "Cache-Control" not in response.headers:
            response.headers["Cache-Control"] = (
                "no-store" if request.method != "GET" else "private, no-cache"
            )
        response.headers["X-Request-Id"] = g.get("request_id", "")
        duration = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        log.info(
            "request_id=%s method=%s path=%s status=%s duration_ms=%.1f",
            g.get("request_id", "-"),
            request.method,
            request.path,
            response.status_code,
            duration,
        )
        return response

    @app.context_processor
    def _context():
        unread, review = header_counts()
        counts = {"review": review, "unread": unread}
        return {"site_name": app.config["SITE_NAME"], "counts": counts, "static_url": _static_url}

    @app.route("/healthz")
    def healthz():
        try:
            db.session.execute(text("SELECT 1"))
        except Exception:  # noqa: BLE001 - any database failure means unhealthy
            db.session.rollback()
            return {"status": "error", "database": "unreachable"}, 503
        return {"status": "ok", "database": "ok"}


@functools.cache
def _fingerprint(path: str) -> str:
    from flask import current_app

    full = f"{current_app.static_folder}/{path}"
    try:
        with open(full, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()[:12]
    except OSError:
        return "0"


def _static_url(path: str) -> str:
    """A fingerprinted static URL, cached for a year by browsers."""
    return url_for("static", filename=path, v=_fingerprint(path))
