"""Error pages in the site's layout; the 500 handler rolls back the session."""

from __future__ import annotations

import logging

from flask import Flask, current_app, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from wiki.extensions import db
from wiki.web import EDITOR_ENDPOINTS

log = logging.getLogger("wiki.errors")

TITLES = {
    400: "Bad request",
    401: "Not logged in",
    403: "Not allowed",
    404: "Page not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Too large",
    422: "Could not process",
    429: "Too many requests",
    500: "Something went wrong",
}


def _page(code: int, message: str):
    wants_json = request.accept_mimetypes.best == "application/json" or request.path.startswith(
        ("/search/suggest", "/api/")
    )
    if wants_json:
        return {"error": TITLES.get(code, "Error"), "message": message}, code
    return render_template(
        "errors/error.html", code=code, title=TITLES.get(code, "Error"), message=message
    ), code


def _too_many(exc: HTTPException, response):
    """429 with Retry-After; an editor's text stays on screen so a throttled save loses nothing.

    Flask-Limiter sets Retry-After to the seconds until the exhausted window resets (an
    after_request hook, when RATELIMIT_HEADERS_ENABLED); a fixed value here would only ever
    lengthen it, so one is set only for a 429 that did not come from the limiter.
    """
    from flask_limiter import RateLimitExceeded

    if request.endpoint in EDITOR_ENDPOINTS and "body" in request.form:
        from wiki.pages.forms import EditForm

        form = EditForm()  # filled from the posted form, with a fresh token to save again
        message = (
            "Too many saves in a short time. Wait a minute, then save again: your text is here."
        )
        response = (
            render_template(
                "pages/edit.html", form=form, page=None, policy="", error=message, stale_form=True
            ),
            429,
        )
    body, status = response
    limited = isinstance(exc, RateLimitExceeded) and current_app.config.get(
        "RATELIMIT_HEADERS_ENABLED"
    )
    return body, status, {} if limited else {"Retry-After": "60"}


def register(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        message = (
            "Your form expired or came from another site, so nothing was saved. Submit it again."
        )
        if request.endpoint in EDITOR_ENDPOINTS and "body" in request.form:
            from wiki.editing import find_page
            from wiki.pages.forms import EditForm

            form = EditForm(meta={"csrf": True})
            form.validate()
            page = find_page((request.view_args or {}).get("slug", ""))  # "Editing …", Cancel
            return render_template(
                "pages/edit.html", form=form, page=page, policy="", error=message, stale_form=True
            ), 400
        return _page(400, message)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = exc.code or 500
        message = exc.description or ""
        if code == 413:
            limit = app.config["MAX_CONTENT_LENGTH"]
            size = f"{limit / 2**20:g} MB" if limit >= 2**20 else f"{max(limit // 1024, 1)} KB"
            message = f"What you sent is larger than the {size} this wiki accepts."
        response = _page(code, message)
        if code == 429:
            return _too_many(exc, response)
        if code == 405:
            body, status = response
            return body, status, {"Allow": ", ".join(getattr(exc, "valid_methods", None) or [])}
        return response

    @app.errorhandler(Exception)
    def server_error(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        db.session.rollback()
        return _page(500, "The error was logged. Try again in a moment.")
