"""Page management: rename, delete, restore, protect, watch. Knows nothing of HTTP."""

from __future__ import annotations

from sqlalchemy import delete, select

from wiki import markup
from wiki.accounts import audit
from wiki.database import writing
from wiki.editing import (
    InvalidEdit,
    PageExists,
    PermissionDenied,
    can_edit,
    check_title,
    locked_page,
    new_revision,
)
from wiki.extensions import db
from wiki.models import Link, Page, Redirect, User, Watch, utcnow
from wiki.publishing import clear_page, go_live, record_event, refresh_linkers


def _slugs_of(page: Page) -> list[str]:
    """The page's slug and every old slug that redirects to it."""
    return [
        page.slug,
        *db.session.scalars(select(Redirect.slug).where(Redirect.page_id == page.id)),
    ]


def rename(user: User, page: Page, new_title: str, *, update_links: bool = False) -> int:
    """Give the page a new title and address, leave a redirect, optionally fix links to it.

    Returns how many linking pages were updated. Raises InvalidEdit, PageExists, PermissionDenied.
    """
    title, slug = check_title(new_title)
    if not can_edit(user, page):
        raise PermissionDenied("This page is protected: only reviewers and admins can rename it.")
    updated = 0
    with writing():
        page = locked_page(page.id)
        if page.deleted_at is not None or page.current_revision is None:
            raise InvalidEdit("Only published pages can be renamed.")
        old_title, old_slug = page.title, page.slug
        if title == old_title:
            raise InvalidEdit("That is the page's title already.")
        if slug != old_slug:
            taken = db.session.scalars(select(Page).where(Page.slug == slug)).first()
            if taken is not None:
                raise PageExists("Another page has that title already.", taken)
            db.session.execute(delete(Redirect).where(Redirect.slug == slug))
            page.slug = slug
            db.session.add(Redirect(slug=old_slug, page_id=page.id, created_at=utcnow()))
        current = page.current_revision
        revision = new_revision(
            page,
            user,
            title,
            current.body,
            f"Renamed from “{old_title}” to “{title}”",
            current.tags,
            current,
            "published",
        )
        revision.decided_by_id, revision.decided_at = user.id, revision.created_at
        db.session.flush()
        go_live(page, revision)
        record_event(page, "rename")
        if update_links:
            updated = _rewrite_linkers(user, page, old_title, title, old_slug)
        refresh_linkers({old_slug, slug})
    return updated


def _rewrite_linkers(user: User, page: Page, old_title: str, title: str, old_slug: str) -> int:
    linkers = db.session.scalars(
        select(Page)
        .join(Link, Link.from_page_id == Page.id)
        .where(Link.to_slug == old_slug, Page.deleted_at.is_(None), Page.id != page.id)
    ).all()
    count = 0
    for linker in linkers:
        if not can_edit(user, linker):
            continue  # a protected page: the rename must not edit it behind its protection
        current = linker.current_revision
        body = markup.rewrite_links(current.body, old_title, title)
        if body == current.body:
            continue
        revision = new_revision(
            linker,
            user,
            current.title,
            body,
            f"Links updated after “{old_title}” was renamed",
            current.tags,
            current,
            "published",
        )
        revision.decided_by_id, revision.decided_at = user.id, revision.created_at
        go_live(linker, revision)
        count += 1
    return count


def delete_page(user: User, page: Page) -> None:
    """Soft delete: readers get 404, history is kept, an admin can restore it."""
    if not user.is_admin:
        raise PermissionDenied("Only admins can delete pages.")
    with writing():
        page = locked_page(page.id)
        if page.deleted_at is not None:
            raise InvalidEdit("This page is deleted already.")
        page.deleted_at, page.deleted_by_id = utcnow(), user.id
        clear_page(page)
        record_event(page, "delete")
        audit(user, "delete", page.slug, page.title)
        db.session.flush()
        refresh_linkers(_slugs_of(page))


def restore_page(user: User, page_id: int) -> Page:
    """Bring a deleted page back as it was."""
    if not user.is_admin:
        raise PermissionDenied("Only admins can restore pages.")
    with writing():
        page = locked_page(page_id)
        if page.deleted_at is None:
            raise InvalidEdit("This page is not deleted.")
        taken = db.session.scalars(select(Redirect).where(Redirect.slug == page.slug)).first()
        if taken is not None:
            db.session.delete(taken)
        page.deleted_at, page.deleted_by_id = None, None
        if page.current_revision is not None:
            go_live(page, page.current_revision)
        record_event(page, "restore")
        audit(user, "restore", page.slug, page.title)
        db.session.flush()
        refresh_linkers(_slugs_of(page))
    return page


def protect(user: User, page: Page, protected: bool) -> None:
    """Only reviewers and admins may edit a protected page."""
    if not user.is_admin:
        raise PermissionDenied("Only admins can protect pages.")
    with writing():
        page = locked_page(page.id)
        if page.protected != protected:
            page.protected = protected
            audit(user, "protect" if protected else "unprotect", page.slug, page.title)


def set_watch(user: User, page: Page, watch: bool) -> None:
    with writing():
        existing = db.session.get(Watch, (user.id, page.id))
        if watch and existing is None:
            db.session.add(Watch(user_id=user.id, page_id=page.id))
        elif not watch and existing is not None:
            db.session.delete(existing)


def deleted_pages() -> list[Page]:
    return list(
        db.session.scalars(
            select(Page).where(Page.deleted_at.is_not(None)).order_by(Page.deleted_at.desc())
        )
    )
