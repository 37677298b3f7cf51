"""The data model: users, pages, revisions, reviews, links, events, notifications."""

from wiki.models.pages import Link, Page, PageEvent, PageTag, Redirect, Revision
from wiki.models.review import Notification, Review, Watch
from wiki.models.users import AuditLog, User, utcnow

__all__ = [
    "AuditLog",
    "Link",
    "Notification",
    "Page",
    "PageEvent",
    "PageTag",
    "Redirect",
    "Review",
    "Revision",
    "User",
    "Watch",
    "utcnow",
]
