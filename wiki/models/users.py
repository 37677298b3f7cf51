"""Accounts and the admin audit log."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from flask_login import UserMixin
from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from wiki.extensions import db

ROLES = ("contributor", "reviewer", "admin")


def utcnow() -> datetime:
    """Timezone-naive UTC now, the form every timestamp column stores."""
    return datetime.now(UTC).replace(tzinfo=None)


class User(UserMixin, db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    username_key: Mapped[str] = mapped_column(
        String(64), unique=True
    )  # lower-cased: unique without regard to case
    email: Mapped[str | None] = mapped_column(String(254))
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16), default="contributor")
    active: Mapped[bool] = mapped_column(default=True)
    # Changes with the password: sessions and remember-me cookies carry it, so they can be revoked.
    auth_token: Mapped[str] = mapped_column(String(32), default=lambda: secrets.token_hex(16))
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __init__(self, username: str, password: str, role: str = "contributor", **kw) -> None:
        super().__init__(username=username, username_key=username.lower(), role=role, **kw)
        self.set_password(password)
        self.auth_token = secrets.token_hex(16)

    def set_password(self, password: str) -> None:
        """Store a werkzeug hash and rotate the token, which logs out other sessions."""
        self.password_hash = generate_password_hash(password)
        self.auth_token = secrets.token_hex(16)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    def get_id(self) -> str:
        return f"{self.id}:{self.auth_token}"

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive users
        return self.active

    @property
    def is_reviewer(self) -> bool:
        return self.role in ("reviewer", "admin")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def __repr__(self) -> str:
        return f"<User {self.username} {self.role}>"


class AuditLog(db.Model):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(255))
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    actor: Mapped[User | None] = relationship()
