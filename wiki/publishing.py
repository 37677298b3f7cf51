"""What happens in the database when text goes live: HTML, links, tags, events, red links.

Called inside the write transaction of a domain operation in wiki/editing.py; never commits.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, select, update

from wiki import markup
from wiki.extensions import db
from wiki.merging import merge
from wiki.models import Link, Page, PageEvent, PageTag, Redirect, Revision


def live_slugs(slugs: Iterable[str]) -> set[str]:
    """The subset of `slugs` that readers can open (published pages and redirects to them)."""
    wanted = set(slugs)
    if not wanted:
        return set()
    found = set(
        db.session.scalars(
            select(Page.slug).where(
                Page.slug.in_(wanted),
                Page.current_revision_id.is_not(None),
                Page.deleted_at.is_(None),
            )
        )
    )
    found |= set(
        db.session.scalars(
            select(Redirect.slug)
            .join(Page, Page.id == Redirect.page_id)
            .where(Redirect.slug.in_(wanted - found), Page.deleted_at.is_(None))
        )
    )
    return found


def render(body: str) -> markup.Rendered:
    """Render text with red/blue links as the database says now."""
    existing = live_slugs(markup.link_targets(body))
    return markup.render(body, exists=existing.__contains__)


def normalise_tags(raw: str | Iterable[str]) -> str:
    """Tags as stored: lower case, letters/digits/hyphens, unique, space-separated, at most 20."""
    items = raw.replace(",", " ").split() if isinstance(raw, str) else list(raw)
    seen: list[str] = []
    for item in items:
        tag = markup.slugify(str(item))[:64]
        if tag and tag not in seen:
            seen.append(tag)
    return " ".join(seen[:20])


def record_event(page: Page, kind: str) -> None:
    db.session.add(PageEvent(page_id=page.id, kind=kind))


def go_live(page: Page, revision: Revision) -> None:
    """Make `revision` the page's published text and update everything derived from it."""
    was_live = page.is_published
    rendered = render(revision.body)
    revision.html = rendered.html
    revision.status = "published"
    revision.merge_state = None
    page.current_revision_id = revision.id
    page.current_revision = revision
    page.title = revision.title
    page.updated_at = revision.created_at
    db.session.execute(delete(Link).where(Link.from_page_id == page.id))
    for slug in rendered.links - {page.slug}:
        db.session.add(Link(from_page_id=page.id, to_slug=slug))
    db.session.execute(delete(PageTag).where(PageTag.page_id == page.id))
    for tag in revision.tag_list:
        db.session.add(PageTag(page_id=page.id, tag=tag))
    record_event(page, "publish")
    db.session.flush()
    if not was_live:
        refresh_linkers([page.slug])
    recheck_proposals(page)


def refresh_linkers(slugs: Iterable[str]) -> int:
    """Re-render the stored HTML of published pages that link to `slugs` (red/blue state)."""
    slugs = list(slugs)
    if not slugs:
        return 0
    revisions = db.session.scalars(
        select(Revision)
        .join(Page, Page.current_revision_id == Revision.id)
        .join(Link, Link.from_page_id == Page.id)
        .where(Link.to_slug.in_(slugs))
        .distinct()
    ).all()
    for revision in revisions:
        revision.html = render(revision.body).html
    return len(revisions)


def recheck_proposals(page: Page) -> None:
    """Mark each open proposal on the page as merging cleanly or needing an update."""
    current = page.current_revision
    pending = db.session.scalars(
        select(Revision).where(Revision.page_id == page.id, Revision.status == "pending")
    ).all()
    for proposal in pending:
        proposal.merge_state = merge_state(proposal, current)


def merge_state(proposal: Revision, current: Revision | None) -> str:
    """'clean' when the proposal applies to the published text, else 'conflict'."""
    if current is None or proposal.base_revision_id == current.id:
        return "clean"
    base_body = proposal.base_revision.body if proposal.base_revision else ""
    return "clean" if merge(base_body, proposal.body, current.body).clean else "conflict"


def clear_page(page: Page) -> None:
    """Drop the derived rows of a page that readers can no longer see."""
    db.session.execute(delete(Link).where(Link.from_page_id == page.id))
    db.session.execute(delete(PageTag).where(PageTag.page_id == page.id))


def repoint_redirects(old_page_id: int, new_page_id: int) -> None:
    db.session.execute(
        update(Redirect).where(Redirect.page_id == old_page_id).values(page_id=new_page_id)
    )
