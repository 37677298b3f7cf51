"""Error pages in the site's layout; the 500 handler rolls back the session."""

from __future__ import annotations

import logging

from flask import Flask, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from wiki.extensions import db

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

EDITOR_ENDPOINTS = {"pages.edit", "pages.new", "review.update"}


def _page(code: int, message: str):
    wants_json = request.accept_mimetypes.best == "application/json" or request.path.startswith(
        ("/search/suggest", "/api/")
    )
    if wants_json:
        return {"error": TITLES.get(code, "Error"), "message": message}, code
    return render_template(
        "errors/error.html", code=code, title=TITLES.get(code, "Error"), message=message
    ), code


def register(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        message = (
            "Your form expired or came from another site, so nothing was saved. Submit it again."
        )
        if request.endpoint in EDITOR_ENDPOINTS and "body" in request.form:
            from wiki.pages.forms import EditForm

            form = EditForm(meta={"csrf": True})
            form.validate()
            return render_template(
                "pages/edit.html", form=form, page=None, policy="", error=message, stale_form=True
            ), 400
        return _page(400, message)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = exc.code or 500
        message = exc.description or ""
        if code == 413:
            limit = app.config["MAX_CONTENT_LENGTH"] // (1024 * 1024)
            message = f"What you sent is larger than the {limit} MB this wiki accepts."
        response = _page(code, message)
        if code == 429:
            body, status = response
            retry = exc.get_headers().__iter__()  # keep Retry-After if the limiter set one
            headers = {k: v for k, v in retry if k.lower() == "retry-after"}
            headers.setdefault("Retry-After", "60")
            return body, status, headers
        if code == 405:
            body, status = response
            return body, status, {"Allow": ", ".join(getattr(exc, "valid_methods", None) or [])}
        return response

    @app.errorhandler(Exception)
    def server_error(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        db.session.rollback()
        return _page(500, "The error was logged. Try again in a moment.")
