"""SQLite backup and restore (to be written)."""

import click


@click.command("backup")
@click.argument("file")
def backup_command(file: str) -> None:
    """Back up the SQLite database."""


@click.command("restore")
@click.argument("file")
def restore_command(file: str) -> None:
    """Restore the SQLite database."""
