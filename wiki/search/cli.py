"""`flask wiki reindex`: rebuild the search index from the database."""

from __future__ import annotations

import click
from sqlalchemy import func, select

from wiki.extensions import db
from wiki.models import Page
from wiki.search import index


@click.command("reindex")
def reindex_command() -> None:
    """Rebuild the search index from the database into a fresh folder and swap it in.

    Searches keep using the old index until the new one is complete.
    """
    total = db.session.scalar(
        select(func.count(Page.id)).where(
            Page.current_revision_id.is_not(None), Page.deleted_at.is_(None)
        )
    )
    db.session.rollback()
    try:
        with click.progressbar(length=total or 0, label="Indexing pages") as bar:
            count = index.rebuild(progress=bar.update)
    except index.IndexUnavailable as exc:
        raise click.ClickException(str(exc))
    click.echo(f"Indexed {count} page{'' if count == 1 else 's'}.")
