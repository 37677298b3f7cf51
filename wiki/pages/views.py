"""Reading, editing, history, diffs and revert of pages."""

from __future__ import annotations

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user

from wiki import diffs, editing, publishing, queries, toc
from wiki.extensions import limiter
from wiki.pages.forms import EditForm
from wiki.web import (
    canonical_slug,
    header_counts,
    login_required,
    not_modified_or,
    rate_limit,
    user_or_ip,
)

bp = Blueprint("pages", __name__)


def _version(*parts: object) -> str:
    """An ETag version: what the view shows that can change, plus the header badges."""
    return "-".join(map(str, [*parts, *header_counts()]))


@bp.route("/")
def home():
    return redirect(url_for("pages.view", slug="main-page"))


def _page_or_404(slug: str, *, include_unpublished: bool = False):
    """The page, or a redirect for renamed/non-canonical slugs, or a 404 response."""
    fixed = canonical_slug(slug)
    if fixed is not None:
        return None, redirect(request.path.replace(slug, fixed, 1), 301)
    page = editing.find_page(slug, include_unpublished=include_unpublished)
    if page is not None:
        return page, None
    target = editing.redirect_target(slug)
    if target is not None and target.is_published:
        new_path = request.path.replace(f"/wiki/{slug}", f"/wiki/{target.slug}", 1)
        return None, redirect(new_path, 301)
    return None, missing(slug)


def missing(slug: str):
    pending = editing.find_page(slug, include_unpublished=True)
    proposals = (
        queries.pending_for_page(pending) if pending and current_user.is_authenticated else []
    )
    title = slug.replace("-", " ").capitalize()
    return render_template("pages/missing.html", slug=slug, title=title, proposals=proposals), 404


@bp.route("/wiki/<slug>")
def view(slug: str):
    page, response = _page_or_404(slug)
    if response is not None:
        return response
    revision = page.current_revision
    proposals = queries.pending_for_page(page) if current_user.is_authenticated else []
    mine = [p for p in proposals if p.author_id == current_user.id]
    watching = current_user.is_authenticated and queries.is_watching(current_user, page)
    return not_modified_or(
        revision.created_at,
        _version(revision.id, *(p.id for p in proposals), int(watching)),
        lambda: render_template(
            "pages/view.html",
            page=page,
            revision=revision,
            proposals=proposals,
            mine=mine,
            watching=watching,
            headings=toc.headings(revision.html),
            can_edit=editing.can_edit(current_user, page),
        ),
    )


def _editor(form: EditForm, page, *, status: int = 200, **extra):
    return render_template(
        "pages/edit.html", form=form, page=page, policy=editing.policy(), **extra
    ), status


@bp.route("/new", methods=["GET", "POST"])
@login_required
@limiter.limit(rate_limit("RATELIMIT_SAVES"), methods=["POST"], key_func=user_or_ip)
def new():
    form = EditForm()
    if request.method == "GET":
        form.title.data = request.args.get("title", "")[:200]
    return _handle_edit(form, None)


@bp.route("/wiki/<slug>/edit", methods=["GET", "POST"])
@limiter.limit(rate_limit("RATELIMIT_SAVES"), methods=["POST"], key_func=user_or_ip)
def edit(slug: str):
    fixed = canonical_slug(slug)
    if fixed is not None:
        return redirect(url_for("pages.edit", slug=fixed), 301)
    page = editing.find_page(slug)
    form = EditForm()
    if not current_user.is_authenticated:
        if request.method == "GET":
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        form.validate()  # keep their text on screen; they can log in in another tab
        return _editor(
            form,
            page,
            status=401,
            error="You are not logged in any more. Log in in another tab, then save "
            "again: your text is still here.",
        )
    if page is None:
        if (
            editing.find_page(slug, include_unpublished=True) is not None
            and request.method == "GET"
        ):
            flash("A new page with this title is waiting for review.", "info")
            return redirect(url_for("pages.view", slug=slug))
        if request.method == "GET":
            form.title.data = request.args.get("title") or slug.replace("-", " ").capitalize()
        return _handle_edit(form, None)
    if request.method == "GET":
        current = page.current_revision
        form.title.data, form.body.data = current.title, current.body
        form.tags.data, form.base_revision_id.data = current.tags, str(current.id)
    return _handle_edit(form, page)


def _handle_edit(form: EditForm, page):
    if not editing.can_edit(current_user, page):
        return _editor(
            form,
            page,
            status=403,
            error="This page is protected: only reviewers and admins can edit it.",
        )
    if request.method == "GET" or not form.validate_on_submit():
        status = 200 if request.method == "GET" else 422
        return _editor(form, page, status=status)
    if form.preview.data:
        return _editor(form, page, preview=publishing.render(form.body.data or "").html)
    try:
        result = editing.save(
            current_user,
            title=form.title.data or "",
            body=form.body.data or "",
            summary=form.summary.data or "",
            tags=form.tags.data or "",
            page=page,
            base_revision_id=form.base_id(),
            ask_review=bool(form.ask_review.data),
        )
    except editing.EditConflict as exc:
        base = queries.published_revision(exc.current.page, form.base_id())
        changed = diffs.compute(base.body if base else "", exc.current.body)
        form.base_revision_id.data = str(exc.current.id)
        return _editor(form, page, status=409, error=str(exc), conflict=exc, changed=changed)
    except editing.PageExists as exc:
        return _editor(form, page, status=409, error=str(exc), existing=exc.page)
    except editing.PermissionDenied as exc:
        return _editor(form, page, status=403, error=str(exc))
    except editing.WikiError as exc:
        return _editor(form, page, status=422, error=str(exc))
    revision = result.revision
    if result.unchanged:
        flash("Nothing changed, so nothing was saved.", "info")
    elif not result.published:
        flash(
            "Your change is waiting for review. Readers will see it once a reviewer approves.",
            "success",
        )
        return redirect(url_for("review.proposal", revision_id=revision.id))
    elif result.merged:
        flash(
            "Someone else edited this page meanwhile; their change and yours did not overlap, "
            "so both were kept.",
            "success",
        )
    else:
        flash("Saved.", "success")
    return redirect(url_for("pages.view", slug=revision.page.slug))


@bp.route("/preview", methods=["POST"])
def preview():
    if not current_user.is_authenticated:
        return jsonify(error="Log in to preview."), 401
    body = request.form.get("body", "")
    return publishing.render(body).html, 200, {"Content-Type": "text/html; charset=utf-8"}


@bp.route("/wiki/<slug>/history")
def history(slug: str):
    page, response = _page_or_404(slug)
    if response is not None:
        return response
    revisions = queries.paginate(queries.history(page), per_page=50)
    return render_template("pages/history.html", page=page, revisions=revisions)


@bp.route("/wiki/<slug>/revisions/<int:revision_id>")
def revision(slug: str, revision_id: int):
    page, response = _page_or_404(slug)
    if response is not None:
        return response
    revision = queries.published_revision(page, revision_id)
    if revision is None:
        abort(404, "This page has no published revision with that number.")
    return not_modified_or(
        revision.created_at,
        _version(revision.id, page.current_revision_id),
        lambda: render_template(
            "pages/revision.html",
            page=page,
            revision=revision,
            previous=queries.previous_revision(revision),
        ),
    )


@bp.route("/wiki/<slug>/diff")
def diff(slug: str):
    page, response = _page_or_404(slug)
    if response is not None:
        return response
    to_id = request.args.get("to", type=int) or page.current_revision_id
    new = queries.published_revision(page, to_id)
    if new is None:
        abort(404, "This page has no published revision with that number.")
    from_arg = request.args.get("from")
    if from_arg is None:
        old = queries.previous_revision(new)
    else:
        old = queries.published_revision(page, request.args.get("from", type=int))
        if old is None:
            abort(404, "This page has no published revision with that number.")
    if old is not None and old.id > new.id:
        old, new = new, old
    view = "split" if request.args.get("view") == "split" else "inline"
    return not_modified_or(
        new.created_at,
        _version(old.id if old else 0, new.id, view, page.current_revision_id),
        lambda: render_template(
            "pages/diff.html",
            page=page,
            old=old,
            new=new,
            diff=diffs.compute(old.body if old else "", new.body),
            view=view,
        ),
    )


@bp.route("/wiki/<slug>/revert/<int:revision_id>", methods=["POST"])
@login_required
def revert(slug: str, revision_id: int):
    page, response = _page_or_404(slug)
    if response is not None:
        return response
    try:
        result = editing.revert(current_user, page, revision_id)
    except editing.PermissionDenied as exc:
        abort(403, str(exc))
    except editing.WikiError as exc:
        flash(str(exc), "error")
        return redirect(url_for("pages.history", slug=page.slug))
    if result.published:
        flash(f"Reverted to revision {revision_id}.", "success")
        return redirect(url_for("pages.view", slug=page.slug))
    flash("Your revert is waiting for review.", "success")
    return redirect(url_for("review.proposal", revision_id=result.revision.id))


@bp.route("/wiki/<slug>/links")
def links(slug: str):
    page, response = _page_or_404(slug)
    if response is not None:
        return response
    return render_template("pages/links.html", page=page, linkers=queries.backlinks(page))
