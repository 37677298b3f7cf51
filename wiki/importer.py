"""Import and export of Markdown folders (to be written)."""

import click


@click.command("import")
@click.argument("directory")
@click.option("--if-empty", is_flag=True, help="Only when the wiki has no pages yet.")
def import_command(directory: str, if_empty: bool) -> None:
    """Import a folder of Markdown files."""


@click.command("export")
@click.argument("directory")
def export_command(directory: str) -> None:
    """Export every page as Markdown."""
