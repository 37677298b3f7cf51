"""The domain: save, propose, approve, reject, withdraw, revert. Knows nothing of HTTP.

Every public function runs one write transaction and commits once; rules that span records live
here and raise WikiError subclasses that views turn into responses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import func, select

from wiki import markup, notify
from wiki.database import writing
from wiki.extensions import db
from wiki.merging import merge, normalise
from wiki.models import Page, Redirect, Review, Revision, User, utcnow
from wiki.publishing import go_live, merge_state, normalise_tags


class WikiError(Exception):
    """A rule of the wiki refused the operation; the message is for the user."""


class PermissionDenied(WikiError):
    pass


class InvalidEdit(WikiError):
    pass


class PageExists(WikiError):
    def __init__(self, message: str, page: Page) -> None:
        super().__init__(message)
        self.page = page


class EditConflict(WikiError):
    """Someone else published in between and the changes overlap; nothing was saved."""

    def __init__(self, current: Revision, merged: str, conflicts: int) -> None:
        super().__init__(
            "Someone else changed this page while you were editing, and some of the same lines "
            "changed. Nothing was saved: your text is below; compare it with the current version "
            "and save again."
        )
        self.current = current
        self.merged = merged
        self.conflicts = conflicts


class ReviewError(WikiError):
    pass


class ReviewConflict(ReviewError):
    """Approval refused: the proposal no longer merges onto the published text."""


@dataclass(frozen=True)
class SaveResult:
    revision: Revision
    published: bool  # live for readers now
    merged: bool = False  # merged with someone else's change made meanwhile
    unchanged: bool = False  # nothing differed from the text it started from


MAX_TITLE = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# --- rules --------------------------------------------------------------------------------


def policy() -> str:
    return current_app.config["REVIEW_POLICY"]


def can_edit(user: User | None, page: Page | None) -> bool:
    """Logged in and active; protected pages only for reviewers and admins."""
    if user is None or not user.is_authenticated or not user.active:
        return False
    return not (page is not None and page.protected and not user.is_reviewer)


def needs_review(user: User, ask_review: bool = False) -> bool:
    """Whether an edit by `user` must wait for someone else's approval."""
    mode = policy()
    if mode == "off":
        return False
    if mode == "everyone":
        return True
    return not user.is_reviewer or ask_review


def can_review(user: User | None, revision: Revision) -> bool:
    """Reviewers and admins, never on their own work."""
    return (
        user is not None
        and user.is_authenticated
        and user.is_reviewer
        and revision.author_id != user.id
    )


def check_title(title: str) -> tuple[str, str]:
    """Return (title, slug) or raise InvalidEdit."""
    title = " ".join(_CONTROL.sub(" ", title or "").split())
    if not title:
        raise InvalidEdit("The page needs a title.")
    if len(title) > MAX_TITLE:
        raise InvalidEdit(f"Titles are at most {MAX_TITLE} characters.")
    slug = markup.slugify(title)
    if not slug:
        raise InvalidEdit("The title needs at least one letter or digit.")
    return title, slug


def _check_body(body: str) -> str:
    body = normalise(body or "")
    limit = current_app.config["MAX_PAGE_BYTES"]
    if len(body.encode()) > limit:
        raise InvalidEdit(f"The text is too long: pages are at most {limit // 1024} KB.")
    if "\x00" in body:
        raise InvalidEdit("The text contains a NUL character, which pages cannot store.")
    return body


def locked_page(page_id: int) -> Page:
    """The page row, locked for this transaction (PostgreSQL; SQLite holds the write lock)."""
    page = db.session.scalars(
        select(Page)
        .where(Page.id == page_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    return page


def find_page(slug: str, *, include_unpublished: bool = False) -> Page | None:
    """The page at `slug` that readers may see (or any not deleted, if asked)."""
    page = db.session.scalars(select(Page).where(Page.slug == slug)).first()
    if page is None or page.deleted_at is not None:
        return None
    if not include_unpublished and page.current_revision_id is None:
        return None
    return page


def redirect_target(slug: str) -> Page | None:
    """The live page an old slug was renamed to, if any."""
    return db.session.scalars(
        select(Page)
        .join(Redirect, Redirect.page_id == Page.id)
        .where(Redirect.slug == slug, Page.deleted_at.is_(None))
    ).first()


# --- saving ---------------------------------------------------------------------------------


def new_revision(
    page: Page,
    user: User,
    title: str,
    body: str,
    summary: str,
    tags: str,
    base: Revision | None,
    status: str,
) -> Revision:
    revision = Revision(
        page_id=page.id,
        page=page,
        base_revision_id=base.id if base else None,
        author_id=user.id,
        title=title,
        body=body,
        tags=tags,
        summary=" ".join(_CONTROL.sub(" ", summary or "").split())[:500],
        size=len(body.encode()),
        size_delta=len(body.encode()) - (base.size if base else 0),
        status=status,
        created_at=utcnow(),
    )
    db.session.add(revision)
    db.session.flush()
    return revision


def save(
    user: User,
    *,
    title: str,
    body: str,
    summary: str = "",
    tags: str | None = None,
    page: Page | None = None,
    base_revision_id: int | None = None,
    ask_review: bool = False,
) -> SaveResult:
    """Create or edit a page: publish, merge, or propose, as the review policy says.

    Raises InvalidEdit, PermissionDenied, PageExists (new page on a taken title) and
    EditConflict (a stale base whose changes overlap the published text; nothing saved).
    """
    title, slug = check_title(title)
    body = _check_body(body)
    if not can_edit(user, page):
        raise PermissionDenied("This page is protected: only reviewers and admins can edit it.")
    with writing():
        if page is None:
            page = _claim_page(title, slug, user)
            base = None
        else:
            page = locked_page(page.id)
            if page.deleted_at is not None:
                raise InvalidEdit("This page was deleted; an admin can restore it.")
            if slug != page.slug:
                raise InvalidEdit(
                    "That title would move the page to another address: use Rename to do that."
                )
            base = db.session.get(Revision, base_revision_id) if base_revision_id else None
            if base is not None and base.page_id != page.id:
                raise InvalidEdit("The revision you started from belongs to another page.")
            if base is None:
                base = page.current_revision
        tag_text = normalise_tags(tags) if tags is not None else (base.tags if base else "")
        current = page.current_revision
        if (
            current is not None
            and base is not None
            and base.id == current.id
            and body == current.body
            and title == current.title
            and tag_text == current.tags
        ):
            return SaveResult(current, published=False, unchanged=True)

        if needs_review(user, ask_review):
            revision = new_revision(page, user, title, body, summary, tag_text, base, "pending")
            revision.thread_id = revision.id
            revision.merge_state = merge_state(revision, current)
            revision.html = markup.render(body).html  # links resolved again when published
            notify.proposal_created(revision)
            return SaveResult(revision, published=False)

        merged = False
        if current is not None and base is not None and base.id != current.id:
            result = merge(base.body, body, current.body)
            if not result.clean:
                raise EditConflict(current, result.text, result.conflicts)
            body, merged = result.text, True
            base = current
        revision = new_revision(page, user, title, body, summary, tag_text, base, "published")
        revision.decided_by_id, revision.decided_at = user.id, revision.created_at
        go_live(page, revision)
        notify.published(revision)
    return SaveResult(revision, published=True, merged=merged)


def _claim_page(title: str, slug: str, user: User) -> Page:
    """The row for a new page at `slug`, or PageExists when the title is taken."""
    page = db.session.scalars(select(Page).where(Page.slug == slug)).first()
    if page is not None:
        if page.deleted_at is not None:
            raise PageExists("A deleted page had this title; an admin can restore it.", page)
        if page.current_revision_id is not None:
            raise PageExists("A page with this title exists already.", page)
        raise PageExists("A page with this title is waiting for review.", page)
    db.session.query(Redirect).filter(Redirect.slug == slug).delete()
    page = Page(slug=slug, title=title, created_at=utcnow(), updated_at=utcnow())
    db.session.add(page)
    db.session.flush()
    return page


def revert(user: User, page: Page, revision_id: int) -> SaveResult:
    """Restore an old published revision's text as a new revision."""
    old = db.session.get(Revision, revision_id)
    if old is None or old.page_id != page.id or old.status not in ("published",):
        raise InvalidEdit("There is no such published revision of this page.")
    if page.current_revision_id == old.id:
        raise InvalidEdit("That revision is the current one already.")
    return save(
        user,
        title=page.title,
        body=old.body,
        tags=old.tags,
        summary=f"Reverted to revision {old.id}",
        page=page,
        base_revision_id=page.current_revision_id,
    )


# --- review ---------------------------------------------------------------------------------


def _pending(revision_id: int) -> Revision:
    """The open proposal, re-read after locking its page so concurrent decisions queue up.

    Without the lock two reviewers could both see "pending" on PostgreSQL and both act on it
    (a proposal published twice, or rejected and published). Raises ReviewError.
    """
    revision = db.session.get(Revision, revision_id, populate_existing=True)
    if revision is None:
        raise ReviewError("There is no such proposal.")
    locked_page(revision.page_id)
    db.session.refresh(revision)
    if revision.status != "pending":
        raise ReviewError(f"This proposal is {revision.status} already; nothing was changed.")
    return revision


def _plain(text: str | None) -> str:
    """User text as stored: trimmed, without NUL characters (PostgreSQL text refuses them)."""
    return (text or "").replace("\x00", "").strip()


def _record(revision: Revision, user: User, decision: str, comment: str) -> Review:
    entry = Review(
        revision_id=revision.id,
        reviewer_id=user.id,
        decision=decision,
        comment=_plain(comment),
        created_at=utcnow(),
    )
    db.session.add(entry)
    db.session.flush()
    return entry


def comment(user: User, revision_id: int, text: str) -> Review:
    """Add a comment to a proposal's thread."""
    if not _plain(text):
        raise ReviewError("Write a comment first.")
    with writing():
        revision = _pending(revision_id)
        entry = _record(revision, user, "comment", text)
        notify.reviewed(revision, entry)
    return entry


def request_changes(user: User, revision_id: int, text: str) -> Review:
    """A reviewer asks the author for changes; the proposal stays open."""
    with writing():
        revision = _pending(revision_id)
        _check_reviewer(user, revision)
        entry = _record(revision, user, "request_changes", text)
        notify.reviewed(revision, entry)
    return entry


def reject(user: User, revision_id: int, text: str) -> Review:
    """A reviewer turns the proposal down, saying why."""
    if not _plain(text):
        raise ReviewError("Say why when you reject a proposal: the author needs to know.")
    with writing():
        revision = _pending(revision_id)
        _check_reviewer(user, revision)
        entry = _record(revision, user, "reject", text)
        _decide(revision, user, "rejected")
        notify.reviewed(revision, entry)
    return entry


def withdraw(user: User, revision_id: int, text: str = "") -> Review:
    """The author takes their proposal back."""
    with writing():
        revision = _pending(revision_id)
        if revision.author_id != user.id:
            raise PermissionDenied("Only the author can withdraw a proposal.")
        entry = _record(revision, user, "withdraw", text)
        _decide(revision, user, "withdrawn")
    return entry


def _check_reviewer(user: User, revision: Revision) -> None:
    if revision.author_id == user.id:
        raise PermissionDenied("You cannot review your own change; another reviewer must.")
    if not user.is_reviewer:
        raise PermissionDenied("Only reviewers and admins can decide on proposals.")


def _decide(revision: Revision, user: User, status: str) -> None:
    revision.status = status
    revision.decided_by_id = user.id
    revision.decided_at = utcnow()


def approvals(revision: Revision) -> int:
    """Distinct reviewers who approved this revision."""
    return (
        db.session.scalar(
            select(func.count(func.distinct(Review.reviewer_id))).where(
                Review.revision_id == revision.id, Review.decision == "approve"
            )
        )
        or 0
    )


def approve(user: User, revision_id: int, text: str = "") -> Revision | None:
    """Approve a proposal; publish it (merging if the page moved on) once it has enough approvals.

    Returns the published revision, or None while more approvals are needed. Raises
    ReviewConflict when it no longer merges: the proposal stays pending, marked "needs update".
    """
    conflict: ReviewConflict | None = None
    published: Revision | None = None
    with writing():
        revision = _pending(revision_id)
        _check_reviewer(user, revision)
        page = locked_page(revision.page_id)
        if page.deleted_at is not None:
            raise ReviewError("The page was deleted; restore it before approving.")
        current = page.current_revision
        entry = _record(revision, user, "approve", text)
        if approvals(revision) < current_app.config["REVIEW_MIN_APPROVALS"]:
            notify.reviewed(revision, entry)
            return None
        if current is None or revision.base_revision_id == current.id:
            _decide(revision, user, "published")
            go_live(page, revision)
            published = revision
        else:
            base_body = revision.base_revision.body if revision.base_revision else ""
            result = merge(base_body, revision.body, current.body)
            if result.clean:
                published = new_revision(
                    page,
                    revision.author,
                    revision.title,
                    result.text,
                    revision.summary,
                    revision.tags,
                    current,
                    "published",
                )
                published.merged_from_id = revision.id
                published.decided_by_id, published.decided_at = user.id, utcnow()
                _decide(revision, user, "merged")
                go_live(page, published)
            else:
                db.session.delete(entry)
                revision.merge_state = "conflict"
                conflict = ReviewConflict(
                    "This proposal no longer merges: the page changed since it was written and "
                    "the same lines were edited. The author (or a reviewer) must update it first."
                )
        if published is not None:
            notify.reviewed(revision, entry)
            notify.published(published)
    if conflict is not None:
        raise conflict
    return published


def proposal_draft(revision: Revision) -> tuple[str, int | None, bool]:
    """Text to open the editor on when updating a proposal: (text, base id, has conflicts).

    The proposal is rebased on the published text; overlapping lines carry conflict markers.
    """
    current = revision.page.current_revision
    if current is None or revision.base_revision_id == current.id:
        return revision.body, revision.base_revision_id, False
    base_body = revision.base_revision.body if revision.base_revision else ""
    result = merge(base_body, revision.body, current.body)
    return result.text, current.id, not result.clean


def update_proposal(
    user: User,
    revision_id: int,
    *,
    title: str,
    body: str,
    summary: str = "",
    tags: str | None = None,
    base_revision_id: int | None = None,
) -> Revision:
    """Replace a proposal by a new pending revision that keeps its thread."""
    title, slug = check_title(_plain(title))
    summary = _plain(summary)
    body = _check_body(body)
    with writing():
        old = _pending(revision_id)
        if old.author_id != user.id and not user.is_reviewer:
            raise PermissionDenied("Only the author or a reviewer can update a proposal.")
        page = locked_page(old.page_id)
        if slug != page.slug:
            raise InvalidEdit("That title would move the page to another address: use Rename.")
        base_id = base_revision_id if base_revision_id is not None else old.base_revision_id
        base = db.session.get(Revision, base_id) if base_id else None
        if base is not None and (base.page_id != page.id or base.status != "published"):
            raise InvalidEdit("The revision you started from is not a published one of this page.")
        tag_text = normalise_tags(tags) if tags is not None else old.tags
        new = new_revision(
            page, user, title, body, summary or old.summary, tag_text, base, "pending"
        )
        new.thread_id = old.thread_id or old.id
        new.html = markup.render(body).html
        new.merge_state = merge_state(new, page.current_revision)
        old.status, old.superseded_by_id = "superseded", new.id
        old.decided_by_id, old.decided_at = user.id, utcnow()
        _record(new, user, "update", summary)
        notify.proposal_updated(new, old)
    return new


def thread(revision: Revision) -> list[Review]:
    """Every comment and decision on a proposal and the versions it superseded, oldest first."""
    thread_id = revision.thread_id or revision.id
    ids = select(Revision.id).where(
        (Revision.thread_id == thread_id) | (Revision.id == revision.id)
    )
    return list(
        db.session.scalars(select(Review).where(Review.revision_id.in_(ids)).order_by(Review.id))
    )
