"""In-wiki notifications: authors hear of decisions, reviewers of proposals, watchers of changes.

Called inside the domain's write transactions; never commits.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select, update

from wiki.extensions import db
from wiki.models import Notification, Review, Revision, User, Watch, utcnow

VERBS = {
    "comment": "commented on",
    "approve": "approved",
    "request_changes": "asked for changes to",
    "reject": "rejected",
}


def _send(
    user_ids: Iterable[int], *, actor_id: int | None, revision: Revision, kind: str, message: str
) -> None:
    for user_id in set(user_ids) - {actor_id}:
        db.session.add(
            Notification(
                user_id=user_id,
                actor_id=actor_id,
                page_id=revision.page_id,
                revision_id=revision.id,
                kind=kind,
                message=message[:500],
                created_at=utcnow(),
            )
        )


def _watchers(page_id: int) -> set[int]:
    return set(db.session.scalars(select(Watch.user_id).where(Watch.page_id == page_id)))


def _reviewers() -> set[int]:
    return set(
        db.session.scalars(
            select(User.id).where(User.role.in_(("reviewer", "admin")), User.active.is_(True))
        )
    )


def proposal_created(revision: Revision) -> None:
    who = revision.author.username
    _send(
        _reviewers() | _watchers(revision.page_id),
        actor_id=revision.author_id,
        revision=revision,
        kind="proposal",
        message=f"{who} proposed a change to “{revision.title}”",
    )


def proposal_updated(new: Revision, old: Revision) -> None:
    thread_people = set(
        db.session.scalars(
            select(Review.reviewer_id)
            .join(Revision, Revision.id == Review.revision_id)
            .where(Revision.thread_id == new.thread_id)
        )
    )
    _send(
        thread_people | {old.author_id},
        actor_id=new.author_id,
        revision=new,
        kind="update",
        message=f"{new.author.username} updated the proposal for “{new.title}”",
    )


def reviewed(revision: Revision, entry: Review) -> None:
    verb = VERBS.get(entry.decision, entry.decision)
    _send(
        [revision.author_id],
        actor_id=entry.reviewer_id,
        revision=revision,
        kind=entry.decision,
        message=f"{entry.reviewer.username} {verb} your change to “{revision.title}”",
    )


def published(revision: Revision) -> None:
    _send(
        _watchers(revision.page_id),
        actor_id=revision.decided_by_id or revision.author_id,
        revision=revision,
        kind="publish",
        message=f"“{revision.title}” was changed by {revision.author.username}",
    )


def unread_count(user_id: int) -> int:
    return (
        db.session.scalar(
            select(func.count(Notification.id)).where(
                Notification.user_id == user_id, Notification.read_at.is_(None)
            )
        )
        or 0
    )


def mark_all_read(user_id: int) -> None:
    db.session.execute(
        update(Notification)
        .where(Notification.user_id == user_id, Notification.read_at.is_(None))
        .values(read_at=utcnow())
    )
    db.session.commit()
