"""Search pages: `/search` results and `/search/suggest` titles for the header box."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, render_template, request, url_for

from wiki.search import query
from wiki.search.index import IndexUnavailable

bp = Blueprint("search", __name__)


@bp.route("/search")
def results() -> str | tuple[str, int]:
    """Ranked results for ?q=, 20 a page; an empty query gets tips instead of an error."""
    raw = request.args.get("q", "")
    page = request.args.get("page", 1, type=int)
    try:
        found = query.search(raw, page=page)
    except IndexUnavailable as exc:
        found = query.SearchResults(query=query.clean(raw)[0], message=str(exc))
        return render_template("search/results.html", results=found), 503
    return render_template("search/results.html", results=found)


@bp.route("/search/suggest")
def suggest() -> Response:
    """Up to 8 page titles for the autocomplete, as JSON."""
    raw = request.args.get("q", "")
    try:
        items = query.suggest(raw)
    except IndexUnavailable:
        items = []
    response = jsonify(
        query=query.clean(raw)[0],
        suggestions=[{"title": s.title, "url": url_for("pages.view", slug=s.slug)} for s in items],
    )
    response.headers["Cache-Control"] = "private, max-age=30"
    return response
