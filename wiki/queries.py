"""Read-only queries for views: lists, history, counts. Templates never query."""

from __future__ import annotations

from flask_sqlalchemy.pagination import Pagination
from sqlalchemy import Select, func, select
from sqlalchemy.orm import joinedload

from wiki.extensions import db
from wiki.models import Link, Page, PageTag, Redirect, Revision, User, Watch


def paginate(stmt: Select, per_page: int = 50) -> Pagination:
    """A page of results; `?page=` from the request, bad values fall back to the first page."""
    return db.paginate(stmt, per_page=per_page, max_per_page=per_page, error_out=False, count=True)


def history(page: Page) -> Select:
    return (
        select(Revision)
        .options(
            joinedload(Revision.author),
            joinedload(Revision.decided_by),
            joinedload(Revision.merged_from),
        )
        .where(Revision.page_id == page.id, Revision.status == "published")
        .order_by(Revision.id.desc())
    )


def published_revision(page: Page, revision_id: int | None) -> Revision | None:
    if revision_id is None:
        return None
    revision = db.session.get(Revision, revision_id)
    if revision is None or revision.page_id != page.id or revision.status != "published":
        return None
    return revision


def previous_revision(revision: Revision) -> Revision | None:
    """The published revision just before this one on its page."""
    return db.session.scalars(
        select(Revision)
        .where(
            Revision.page_id == revision.page_id,
            Revision.status == "published",
            Revision.id < revision.id,
        )
        .order_by(Revision.id.desc())
        .limit(1)
    ).first()


def recent_changes() -> Select:
    return (
        select(Revision)
        .join(Page, Page.id == Revision.page_id)
        .options(joinedload(Revision.author), joinedload(Revision.page))
        .where(Revision.status == "published", Page.deleted_at.is_(None))
        .order_by(Revision.id.desc())
    )


def contributions(user: User, *, include_pending: bool) -> Select:
    statuses = (
        ("published",)
        if not include_pending
        else ("published", "pending", "merged", "rejected", "withdrawn", "superseded")
    )
    return (
        select(Revision)
        .join(Page, Page.id == Revision.page_id)
        .options(joinedload(Revision.page))
        .where(
            Revision.author_id == user.id, Revision.status.in_(statuses), Page.deleted_at.is_(None)
        )
        .order_by(Revision.id.desc())
    )


def backlinks(page: Page) -> list[Page]:
    return list(
        db.session.scalars(
            select(Page)
            .join(Link, Link.from_page_id == Page.id)
            .where(
                Link.to_slug == page.slug,
                Page.deleted_at.is_(None),
                Page.current_revision_id.is_not(None),
            )
            .order_by(Page.title)
        )
    )


def pending_for_page(page: Page) -> list[Revision]:
    return list(
        db.session.scalars(
            select(Revision)
            .options(joinedload(Revision.author))
            .where(Revision.page_id == page.id, Revision.status == "pending")
            .order_by(Revision.id)
        )
    )


def pending_count() -> int:
    return (
        db.session.scalar(
            select(func.count(Revision.id))
            .join(Page, Page.id == Revision.page_id)
            .where(Revision.status == "pending", Page.deleted_at.is_(None))
        )
        or 0
    )


def is_watching(user: User, page: Page) -> bool:
    return db.session.get(Watch, (user.id, page.id)) is not None


def tag_counts() -> list[tuple[str, int]]:
    live = (Page.current_revision_id.is_not(None)) & (Page.deleted_at.is_(None))
    return list(
        db.session.execute(
            select(PageTag.tag, func.count(PageTag.page_id))
            .join(Page, Page.id == PageTag.page_id)
            .where(live)
            .group_by(PageTag.tag)
            .order_by(PageTag.tag)
        ).tuples()
    )


def pages_with_tag(tag: str) -> Select:
    return (
        select(Page)
        .join(PageTag, PageTag.page_id == Page.id)
        .where(
            PageTag.tag == tag.lower(),
            Page.current_revision_id.is_not(None),
            Page.deleted_at.is_(None),
        )
        .order_by(func.lower(Page.title))
    )


def wanted_pages(limit: int = 500) -> list[tuple[str, int]]:
    """Slugs that published pages link to but that nobody can open, most wanted first."""
    live_from = select(Page.id).where(
        Page.current_revision_id.is_not(None), Page.deleted_at.is_(None)
    )
    existing = select(Page.slug).where(
        Page.current_revision_id.is_not(None), Page.deleted_at.is_(None)
    )
    redirected = (
        select(Redirect.slug)
        .join(Page, Page.id == Redirect.page_id)
        .where(Page.deleted_at.is_(None))
    )
    return list(
        db.session.execute(
            select(Link.to_slug, func.count(Link.from_page_id).label("n"))
            .where(
                Link.from_page_id.in_(live_from),
                Link.to_slug.not_in(existing),
                Link.to_slug.not_in(redirected),
            )
            .group_by(Link.to_slug)
            .order_by(func.count(Link.from_page_id).desc(), Link.to_slug)
            .limit(limit)
        ).tuples()
    )
