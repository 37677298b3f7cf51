"""Review decisions and comments, page watches and in-wiki notifications."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from wiki.extensions import db
from wiki.models.pages import Page, Revision
from wiki.models.users import User, utcnow

DECISIONS = ("comment", "approve", "request_changes", "reject", "withdraw", "update")


class Review(db.Model):
    """One entry in a proposal's thread: a comment or a decision, with who and when."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(primary_key=True)
    revision_id: Mapped[int] = mapped_column(ForeignKey("revisions.id"), index=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    decision: Mapped[str] = mapped_column(String(16))
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    reviewer: Mapped[User] = relationship()
    revision: Mapped[Revision] = relationship()


class Watch(db.Model):
    __tablename__ = "watches"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    page_id: Mapped[int] = mapped_column(ForeignKey("pages.id"), primary_key=True, index=True)


class Notification(db.Model):
    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    page_id: Mapped[int | None] = mapped_column(ForeignKey("pages.id"))
    revision_id: Mapped[int | None] = mapped_column(ForeignKey("revisions.id"))
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    read_at: Mapped[datetime | None]

    actor: Mapped[User | None] = relationship(foreign_keys=[actor_id])
    page: Mapped[Page | None] = relationship()

    __table_args__ = (Index("ix_notifications_user_read", "user_id", "read_at"),)
