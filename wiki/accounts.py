"""Accounts: registration, authentication with a per-account back-off, roles. No HTTP here."""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from pathlib import Path

from flask import current_app
from sqlalchemy import select

from wiki.database import writing
from wiki.extensions import db
from wiki.models import AuditLog, User, utcnow
from wiki.models.users import ROLES

USERNAME_RE = re.compile(r"^[\w.-]{2,64}$")
MIN_PASSWORD, MAX_PASSWORD = 10, 256
_COMMON = Path(__file__).with_name("common_passwords.txt")


class AccountError(Exception):
    """The account operation was refused; the message is for the user."""


def _common_passwords() -> frozenset[str]:
    if not hasattr(_common_passwords, "cache"):
        words = _COMMON.read_text().split() if _COMMON.exists() else []
        _common_passwords.cache = frozenset(w.lower() for w in words)  # type: ignore[attr-defined]
    return _common_passwords.cache  # type: ignore[attr-defined]


def password_problem(password: str, username: str = "") -> str | None:
    """Why a password is refused (OWASP ASVS: length, not composition), or None."""
    if len(password) < MIN_PASSWORD:
        return f"Use at least {MIN_PASSWORD} characters."
    if len(password) > MAX_PASSWORD:
        return f"Use at most {MAX_PASSWORD} characters."
    if password.lower() in _common_passwords():
        return "That password is one of the most common ones; choose another."
    if username and password.lower() == username.lower():
        return "The password must not be your username."
    return None


def username_problem(username: str) -> str | None:
    if not USERNAME_RE.match(username or ""):
        return "Use 2 to 64 letters, digits, dots, hyphens or underscores."
    return None


def find_user(username: str) -> User | None:
    return db.session.scalars(select(User).where(User.username_key == username.lower())).first()


def create_user(
    username: str, password: str, *, email: str | None = None, role: str = "contributor"
) -> User:
    """Create an account; raises AccountError when the name is taken or a value is refused."""
    username = (username or "").strip()
    problem = username_problem(username) or password_problem(password, username)
    if problem:
        raise AccountError(problem)
    if role not in ROLES:
        raise AccountError(f"Role must be one of {', '.join(ROLES)}.")
    with writing():
        if find_user(username) is not None:
            raise AccountError("That username is taken.")
        user = User(username, password, role=role, email=(email or "").strip() or None)
        db.session.add(user)
    return user


def authenticate(username: str, password: str) -> User:
    """The user for these credentials, or AccountError.

    Repeated failures lock the account for a growing time, kept in the database so the back-off
    holds across workers and machines (stops online password guessing).
    """
    generic = "Wrong username or password."
    with writing():
        user = find_user(username or "")
        if user is None:
            raise AccountError(generic)
        now = utcnow()
        if user.locked_until and user.locked_until > now:
            wait = int((user.locked_until - now).total_seconds()) + 1
            raise AccountError(f"Too many failed attempts. Try again in {wait} seconds.")
        if not user.check_password(password or ""):
            user.failed_logins += 1
            limit = current_app.config["LOGIN_MAX_FAILURES"]
            if user.failed_logins >= limit:
                extra = user.failed_logins - limit
                user.locked_until = now + timedelta(seconds=min(30 * 2**extra, 3600))
            db.session.commit()
            raise AccountError(generic)
        if not user.active:
            raise AccountError("This account is deactivated. Ask an admin.")
        if user.failed_logins or user.locked_until:
            user.failed_logins, user.locked_until = 0, None
    return user


def change_password(user: User, old: str, new: str) -> None:
    """Set a new password; rotating the token logs out every other session."""
    if not user.check_password(old or ""):
        raise AccountError("Your current password is wrong.")
    problem = password_problem(new, user.username)
    if problem:
        raise AccountError(problem)
    with writing():
        user = db.session.get(User, user.id)
        user.set_password(new)


def audit(actor: User | None, action: str, target: str, detail: str = "") -> None:
    """Record an admin action; called inside the caller's transaction."""
    db.session.add(
        AuditLog(
            actor_id=actor.id if actor else None,
            action=action,
            target=target[:255],
            detail=detail,
            created_at=utcnow(),
        )
    )


def set_role(actor: User, user_id: int, role: str) -> User:
    if role not in ROLES:
        raise AccountError("Unknown role.")
    with writing():
        user = db.session.get(User, user_id)
        if user is None:
            raise AccountError("No such user.")
        if user.id == actor.id and role != "admin":
            raise AccountError("You cannot take away your own admin role.")
        if user.role != role:
            audit(actor, "role", user.username, f"{user.role} -> {role}")
            user.role = role
    return user


def set_active(actor: User, user_id: int, active: bool) -> User:
    with writing():
        user = db.session.get(User, user_id)
        if user is None:
            raise AccountError("No such user.")
        if user.id == actor.id and not active:
            raise AccountError("You cannot deactivate your own account.")
        if user.active != active:
            audit(actor, "activate" if active else "deactivate", user.username)
            user.active = active
            if not active:
                user.auth_token = secrets.token_hex(16)  # end their sessions
    return user
