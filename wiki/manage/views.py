"""Rename, delete, restore, protect and watch pages."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from wiki import editing, management, queries
from wiki.extensions import db
from wiki.models import Page
from wiki.web import login_required

bp = Blueprint("manage", __name__)


def _page(slug: str) -> Page:
    page = editing.find_page(slug)
    if page is None:
        target = editing.redirect_target(slug)
        if target is not None and target.is_published:  # renamed: follow, keeping the method
            new_path = request.path.replace(f"/wiki/{slug}", f"/wiki/{target.slug}", 1)
            abort(redirect(new_path, 301 if request.method == "GET" else 308))
        abort(404, "There is no page at this address.")
    return page


@bp.route("/wiki/<slug>/rename", methods=["GET", "POST"])
@login_required
def rename(slug: str):
    page = _page(slug)
    if not editing.can_edit(current_user, page):
        abort(403, "This page is protected: only reviewers and admins can rename it.")
    linkers = queries.backlinks(page)
    title = request.form.get("title", page.title)[:300]
    if request.method == "POST":
        try:
            updated = management.rename(
                current_user, page, title, update_links=request.form.get("update_links") == "1"
            )
        except editing.WikiError as exc:
            return render_template(
                "manage/rename.html", page=page, linkers=linkers, title=title, error=str(exc)
            ), 422
        note = (
            f" and updated the links on {updated} page{'s' if updated != 1 else ''}"
            if updated
            else ""
        )
        flash(f"Renamed{note}. The old address redirects here.", "success")
        return redirect(url_for("pages.view", slug=page.slug))
    return render_template("manage/rename.html", page=page, linkers=linkers, title=title)


@bp.route("/wiki/<slug>/delete", methods=["GET", "POST"])
@login_required
def delete(slug: str):
    if not current_user.is_admin:
        abort(403, "Only admins can delete pages.")
    page = _page(slug)
    if request.method == "POST":
        management.delete_page(current_user, page)
        flash(
            f"“{page.title}” was deleted. You can restore it from the deleted pages list.",
            "success",
        )
        return redirect(url_for("manage.deleted"))
    return render_template("manage/delete.html", page=page)


@bp.route("/wiki/<slug>/protect", methods=["POST"])
@login_required
def protect(slug: str):
    if not current_user.is_admin:
        abort(403, "Only admins can protect pages.")
    page = _page(slug)
    management.protect(current_user, page, request.form.get("protected") == "1")
    flash("Page protected." if page.protected else "Page unprotected.", "success")
    return redirect(url_for("pages.view", slug=page.slug))


@bp.route("/wiki/<slug>/watch", methods=["POST"])
@login_required
def watch(slug: str):
    page = _page(slug)
    on = request.form.get("watch") == "1"
    management.set_watch(current_user, page, on)
    flash(
        "You will be told about changes to this page." if on else "No longer watching.", "success"
    )
    return redirect(url_for("pages.view", slug=page.slug))


@bp.route("/special/deleted")
@login_required
def deleted():
    if not current_user.is_admin:
        abort(403, "Only admins can see deleted pages.")
    return render_template("manage/deleted.html", pages=management.deleted_pages())


@bp.route("/special/deleted/<int:page_id>/restore", methods=["POST"])
@login_required
def restore(page_id: int):
    if not current_user.is_admin:
        abort(403, "Only admins can restore pages.")
    if db.session.get(Page, page_id) is None:
        abort(404, "There is no such page.")
    try:
        page = management.restore_page(current_user, page_id)
    except editing.WikiError as exc:
        flash(str(exc), "error")
        return redirect(url_for("manage.deleted"))
    flash(f"“{page.title}” is back.", "success")
    return redirect(url_for("pages.view", slug=page.slug))
