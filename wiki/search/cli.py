"""`flask wiki reindex` (to be written)."""

import click


@click.command("reindex")
def reindex_command() -> None:
    """Rebuild the search index."""
