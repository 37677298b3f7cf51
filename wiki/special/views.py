"""Special pages: recent changes, all pages, contributions, notifications."""

from __future__ import annotations

from flask import Blueprint, abort, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select

from wiki import notify, queries
from wiki.accounts import find_user
from wiki.extensions import db
from wiki.models import Notification, Page
from wiki.web import login_required

bp = Blueprint("special", __name__)


@bp.route("/special/recent")
def recent():
    revisions = queries.paginate(queries.recent_changes(), per_page=50)
    return render_template("special/recent.html", revisions=revisions)


@bp.route("/special/all")
def all_pages():
    needle = request.args.get("q", "").strip()[:200]
    stmt = select(Page).where(Page.current_revision_id.is_not(None), Page.deleted_at.is_(None))
    if needle:
        escaped = needle.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(func.lower(Page.title).like(f"%{escaped}%", escape="\\"))
    pages = queries.paginate(stmt.order_by(func.lower(Page.title)), per_page=100)
    return render_template("special/all.html", pages=pages, needle=needle)


@bp.route("/user/<username>")
def user(username: str):
    person = find_user(username)
    if person is None:
        abort(404, "There is no user with that name.")
    own = current_user.is_authenticated and (
        current_user.id == person.id or current_user.is_reviewer
    )
    revisions = queries.paginate(queries.contributions(person, include_pending=own))
    return render_template("special/user.html", person=person, revisions=revisions, own=own)


@bp.route("/notifications", methods=["GET", "POST"])
@login_required
def notifications():
    if request.method == "POST":
        notify.mark_all_read(current_user.id)
        return redirect(url_for("special.notifications"))
    stmt = (
        select(Notification)
        .where(Notification.user_id == current_user.id)
        .order_by(Notification.id.desc())
    )
    items = queries.paginate(stmt, per_page=50)
    unread = [n.id for n in items.items if n.read_at is None]
    return render_template("special/notifications.html", items=items, unread=set(unread))


@bp.route("/special/tags")
def tags():
    return render_template("special/tags.html", tags=queries.tag_counts())


@bp.route("/special/tags/<tag>")
def tag(tag: str):
    pages = queries.paginate(queries.pages_with_tag(tag), per_page=100)
    return render_template("special/tag.html", tag=tag, pages=pages)


@bp.route("/special/wanted")
def wanted():
    return render_template("special/wanted.html", wanted=queries.wanted_pages())


@bp.route("/special/recent.atom")
def recent_atom():
    revisions = db.session.scalars(queries.recent_changes().limit(50)).all()
    updated = revisions[0].created_at if revisions else None
    body = render_template("special/recent.atom.xml", revisions=revisions, updated=updated)
    return body, 200, {"Content-Type": "application/atom+xml; charset=utf-8"}
