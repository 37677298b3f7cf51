"""The review queue, one proposal with its diffs and thread, decisions and updates."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from wiki import diffs, editing, publishing, queries
from wiki.extensions import db
from wiki.models import Page, Revision, User, utcnow
from wiki.pages.forms import EditForm
from wiki.web import login_required

bp = Blueprint("review", __name__, url_prefix="/review")

ACTIONS = {
    "comment": editing.comment,
    "approve": editing.approve,
    "request_changes": editing.request_changes,
    "reject": editing.reject,
    "withdraw": editing.withdraw,
}


def _proposal(revision_id: int) -> Revision:
    """The proposal, if this user may see it: its author, reviewers, or anyone once decided."""
    revision = db.session.get(Revision, revision_id)
    if revision is None or revision.thread_id is None:  # direct publishes are not proposals
        abort(404, "There is no proposal with that number.")
    if not (current_user.is_reviewer or revision.author_id == current_user.id):
        abort(403, "Only the author and reviewers can see a proposal.")
    return revision


@bp.route("/")
@login_required
def queue():
    if not current_user.is_reviewer:
        abort(403, "The review queue is for reviewers and admins.")
    stmt = (
        select(Revision)
        .join(Page, Page.id == Revision.page_id)
        .options(joinedload(Revision.author), joinedload(Revision.page))
        .where(Revision.status == "pending", Page.deleted_at.is_(None))
    )
    # NUL characters would make PostgreSQL refuse the query: drop them with the whitespace.
    page_filter = request.args.get("page_slug", "").replace("\x00", "").strip()[:200]
    author = request.args.get("author", "").replace("\x00", "").strip()[:64]
    mine = request.args.get("mine") == "1"
    if page_filter:
        stmt = stmt.where(Page.slug == page_filter)
    if author:
        stmt = stmt.join(User, User.id == Revision.author_id).where(
            User.username_key == author.lower()
        )
    if mine:
        stmt = stmt.where(Revision.author_id == current_user.id)
    proposals = queries.paginate(stmt.order_by(Revision.id), per_page=50)
    stale = utcnow() - timedelta(days=current_app.config["REVIEW_STALE_DAYS"])
    return render_template(
        "review/queue.html",
        proposals=proposals,
        stale=stale,
        now=utcnow(),
        page_filter=page_filter,
        author=author,
        mine=mine,
    )


@bp.route("/<int:revision_id>")
@login_required
def proposal(revision_id: int):
    revision = _proposal(revision_id)
    page = revision.page
    base = revision.base_revision
    current = page.current_revision
    view = "split" if request.args.get("view") == "split" else "inline"
    against_base = diffs.compute(base.body if base else "", revision.body)
    against_current = None
    if current is not None and (base is None or current.id != base.id):
        against_current = diffs.compute(current.body, revision.body)
    conflict_text = None
    if revision.status == "pending" and revision.merge_state == "conflict":
        conflict_text, _, _ = editing.proposal_draft(revision)
    published = None
    if revision.status == "merged":
        published = db.session.scalars(
            select(Revision).where(Revision.merged_from_id == revision.id)
        ).first()
    return render_template(
        "review/proposal.html",
        revision=revision,
        page=page,
        base=base,
        current=current,
        against_base=against_base,
        against_current=against_current,
        view=view,
        thread=editing.thread(revision),
        can_review=editing.can_review(current_user, revision),
        approvals=editing.approvals(revision),
        conflict_text=conflict_text,
        published=published,
        min_approvals=current_app.config["REVIEW_MIN_APPROVALS"],
    )


@bp.route("/<int:revision_id>", methods=["POST"])
@login_required
def decide(revision_id: int):
    revision = _proposal(revision_id)
    decision = request.form.get("decision", "")
    action = ACTIONS.get(decision)
    if action is None:
        abort(400, "Unknown decision.")
    text = request.form.get("comment", "")[:10000]
    try:
        result = action(current_user, revision.id, text)
    except editing.PermissionDenied as exc:
        abort(403, str(exc))
    except editing.WikiError as exc:
        flash(str(exc), "error")
        return redirect(url_for("review.proposal", revision_id=revision.id))
    messages = {
        "comment": "Comment added.",
        "request_changes": "You asked for changes; the author has been told.",
        "reject": "Proposal rejected.",
        "withdraw": "You withdrew your proposal.",
    }
    if decision == "approve":
        if result is None:
            flash("Approved. It needs more approvals before it is published.", "success")
        else:
            flash("Approved and published.", "success")
            return redirect(url_for("pages.view", slug=revision.page.slug))
    else:
        flash(messages[decision], "success")
    return redirect(url_for("review.proposal", revision_id=revision.id))


@bp.route("/<int:revision_id>/update", methods=["GET", "POST"])
@login_required
def update(revision_id: int):
    revision = _proposal(revision_id)
    if revision.status != "pending":
        flash(f"This proposal is {revision.status}; it cannot be updated.", "error")
        return redirect(url_for("review.proposal", revision_id=revision.id))
    if revision.author_id != current_user.id and not current_user.is_reviewer:
        abort(403, "Only the author or a reviewer can update a proposal.")
    form = EditForm()
    page = revision.page
    conflicts = False
    if request.method == "GET":
        text, base_id, conflicts = editing.proposal_draft(revision)
        form.title.data, form.body.data, form.tags.data = revision.title, text, revision.tags
        form.summary.data = revision.summary
        form.base_revision_id.data = str(base_id or "")
    ctx = {
        "form": form,
        "page": page,
        "policy": editing.policy(),
        "proposal": revision,
        "draft_conflicts": conflicts,
    }
    if request.method == "GET" or not form.validate_on_submit():
        return render_template("pages/edit.html", **ctx), 200 if request.method == "GET" else 422
    if form.preview.data:
        return render_template(
            "pages/edit.html", preview=publishing.render(form.body.data or "").html, **ctx
        )
    if "<<<<<<< your version" in (form.body.data or ""):
        return render_template(
            "pages/edit.html",
            error="Resolve the conflict markers first (the lines between <<<<<<< and >>>>>>>).",
            **ctx,
        ), 422
    try:
        new = editing.update_proposal(
            current_user,
            revision.id,
            title=form.title.data or "",
            body=form.body.data or "",
            summary=form.summary.data or "",
            tags=form.tags.data or "",
            base_revision_id=form.base_id(),
        )
    except editing.PermissionDenied as exc:
        return render_template("pages/edit.html", error=str(exc), **ctx), 403
    except editing.WikiError as exc:
        return render_template("pages/edit.html", error=str(exc), **ctx), 422
    flash("Proposal updated. Reviewers see the new version.", "success")
    return redirect(url_for("review.proposal", revision_id=new.id))
