"""`flask wiki backup` / `flask wiki restore`: consistent copies of the SQLite database.

Both use SQLite's online backup API, which copies a consistent snapshot page by page while other
connections keep reading and writing, so a backup can run while the wiki serves. PostgreSQL
deployments use `pg_dump` / `pg_restore` instead.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from wiki.extensions import db

SQLITE_MAGIC = b"SQLite format 3\x00"
PG_HINT = (
    "This wiki uses {dialect}, not SQLite. Back it up with pg_dump, e.g.\n"
    '  pg_dump --format=custom --file wiki.dump "$DATABASE_URL"\n'
    "and restore with\n"
    '  pg_restore --clean --if-exists --no-owner --dbname "$DATABASE_URL" wiki.dump\n'
    "(drop the +psycopg from the URL for the PostgreSQL tools)."
)


class BackupError(Exception):
    """A backup or restore was refused; the message says why and what to do."""


def sqlite_path() -> Path:
    """The file of the app's SQLite database; raises BackupError for any other database."""
    url = db.engine.url
    if url.get_backend_name() != "sqlite":
        raise BackupError(PG_HINT.format(dialect=url.get_backend_name()))
    if not url.database or url.database == ":memory:":
        raise BackupError("The database is in memory; there is nothing to back up.")
    return Path(url.database)


def backup_to(source: Path, target: Path) -> None:
    """Copy the live database into `target` atomically (a half-written backup never appears)."""
    if not source.exists():
        raise BackupError(f"There is no database at {source} yet; run `flask db upgrade` first.")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(partial)
    try:
        src.backup(dst)
        # A backup is one self-contained file: no -wal/-shm companions to forget when copying.
        dst.execute("PRAGMA journal_mode=DELETE")
    finally:
        dst.close()
        src.close()
    os.replace(partial, target)


def check_backup(path: Path) -> str:
    """The migration revision stored in a backup file; raises BackupError if it is not ours."""
    if not path.is_file():
        raise BackupError(f"{path} does not exist.")
    with path.open("rb") as fh:
        if fh.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
            raise BackupError(f"{path} is not a SQLite database.")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        if conn.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise BackupError(f"{path} is damaged (SQLite quick_check failed).")
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        if not {"alembic_version", "users", "pages"} <= tables:
            raise BackupError(f"{path} is a SQLite database, but not a Nexus Wiki backup.")
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} cannot be read as a SQLite database: {exc}") from None
    finally:
        conn.close()
    if row is None:
        raise BackupError(f"{path} has no migration revision; it is not a Nexus Wiki backup.")
    return row[0]


def restore_from(backup: Path, target: Path) -> None:
    """Overwrite the database at `target` with the backup, through the backup API."""
    db.engine.dispose()  # our own pooled connections must not hold the old file open
    target.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(f"file:{backup}?mode=ro", uri=True)
    dst = sqlite3.connect(target, timeout=30)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


@click.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@with_appcontext
def backup_command(file: Path, force: bool) -> None:
    """Write a consistent copy of the SQLite database to FILE (safe while the wiki runs)."""
    try:
        source = sqlite_path()
        if file.exists() and not force:
            raise BackupError(f"{file} exists; pass --force to overwrite it.")
        if file.resolve() == source.resolve():
            raise BackupError("FILE is the live database itself; choose another path.")
        backup_to(source, file)
    except BackupError as exc:
        raise click.ClickException(str(exc))
    click.echo(f"Backed up {source} to {file} ({file.stat().st_size:,} bytes).")


@click.command("restore")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@with_appcontext
def restore_command(file: Path, yes: bool) -> None:
    """Replace the SQLite database with the backup in FILE. Stop the wiki first."""
    try:
        target = sqlite_path()
        revision = check_backup(file)
        if target.exists() and file.resolve() == target.resolve():
            raise BackupError("FILE is the live database itself; choose a backup file.")
    except BackupError as exc:
        raise click.ClickException(str(exc))
    click.echo(
        f"This replaces every page, revision and account in {target} with {file} "
        f"(migration revision {revision}).\n"
        "Stop the wiki (all gunicorn workers) before restoring."
    )
    if not yes:
        click.confirm("Restore now?", abort=True)
    restore_from(file, target)
    index_dir = current_app.config.get("SEARCH_INDEX_DIR", "")
    click.echo(
        f"Restored {target} from {file}.\n"
        "Next: `flask db upgrade` (if the backup is older than this release), then "
        f"`flask wiki reindex` to rebuild the search index in {index_dir}, then start the wiki."
    )
