"""Search pages (replaced by the search module)."""

from flask import Blueprint, render_template, request

bp = Blueprint("search", __name__)


@bp.route("/search")
def results():
    return render_template("errors/error.html", code=501, title="Search", message="Soon."), 200


@bp.route("/search/suggest")
def suggest():
    return {"query": request.args.get("q", ""), "suggestions": []}
