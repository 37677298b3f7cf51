"""Pages, their immutable revisions, links, tags, redirects and the page event log."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from wiki.extensions import db
from wiki.models.users import User, utcnow

REVISION_STATUSES = ("published", "pending", "merged", "rejected", "withdrawn", "superseded")


class Page(db.Model):
    __tablename__ = "pages"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(200), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    current_revision_id: Mapped[int | None] = mapped_column(
        ForeignKey("revisions.id", use_alter=True)
    )
    protected: Mapped[bool] = mapped_column(default=False)
    deleted_at: Mapped[datetime | None]
    deleted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    current_revision: Mapped[Revision | None] = relationship(
        foreign_keys=[current_revision_id], post_update=True
    )

    @property
    def is_published(self) -> bool:
        return self.current_revision_id is not None and self.deleted_at is None

    def __repr__(self) -> str:
        return f"<Page {self.slug}>"


class Revision(db.Model):
    __tablename__ = "revisions"

    id: Mapped[int] = mapped_column(primary_key=True)
    page_id: Mapped[int] = mapped_column(ForeignKey("pages.id"), index=True)
    base_revision_id: Mapped[int | None] = mapped_column(ForeignKey("revisions.id"))
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    tags: Mapped[str] = mapped_column(String(500), default="")  # space-separated
    summary: Mapped[str] = mapped_column(String(500), default="")
    html: Mapped[str] = mapped_column(Text, default="")
    size: Mapped[int] = mapped_column(default=0)
    size_delta: Mapped[int] = mapped_column(default=0)  # against the published text it started from
    status: Mapped[str] = mapped_column(String(16), index=True)
    merged_from_id: Mapped[int | None] = mapped_column(ForeignKey("revisions.id"))
    superseded_by_id: Mapped[int | None] = mapped_column(ForeignKey("revisions.id"))
    # A proposal and its updates share one review thread: the id of the first proposal.
    thread_id: Mapped[int | None] = mapped_column(index=True)
    # For proposals: does it still merge onto the published text? "clean" | "conflict" | None
    merge_state: Mapped[str | None] = mapped_column(String(16))
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    page: Mapped[Page] = relationship(foreign_keys=[page_id])
    author: Mapped[User] = relationship(foreign_keys=[author_id])
    decided_by: Mapped[User | None] = relationship(foreign_keys=[decided_by_id])
    base_revision: Mapped[Revision | None] = relationship(
        foreign_keys=[base_revision_id], remote_side=[id]
    )
    merged_from: Mapped[Revision | None] = relationship(
        foreign_keys=[merged_from_id], remote_side=[id]
    )

    __table_args__ = (Index("ix_revisions_page_status", "page_id", "status", "id"),)

    @property
    def tag_list(self) -> list[str]:
        return self.tags.split() if self.tags else []

    def __repr__(self) -> str:
        return f"<Revision {self.id} {self.status}>"


class PageTag(db.Model):
    __tablename__ = "page_tags"

    page_id: Mapped[int] = mapped_column(ForeignKey("pages.id"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class Link(db.Model):
    __tablename__ = "links"

    from_page_id: Mapped[int] = mapped_column(ForeignKey("pages.id"), primary_key=True)
    to_slug: Mapped[str] = mapped_column(String(200), primary_key=True, index=True)


class Redirect(db.Model):
    """An old slug left behind by a rename; points at the page, so chains never form."""

    __tablename__ = "redirects"

    slug: Mapped[str] = mapped_column(String(200), primary_key=True)
    page_id: Mapped[int] = mapped_column(ForeignKey("pages.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PageEvent(db.Model):
    """Append-only log of publishes, renames, deletes and restores; the search index follows it."""

    __tablename__ = "page_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    page_id: Mapped[int] = mapped_column(ForeignKey("pages.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
