"""Import and export of Markdown folders: the starter content in, any wiki's pages out.

Import goes through `editing.save`, the same domain code as the editor, as the system user
"import-bot", so every rule (titles, sizes, links, tags, events) holds and re-running it creates
no revisions for unchanged text. Knows nothing of HTTP.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import click
import yaml
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import select

from wiki import accounts, editing
from wiki.extensions import db
from wiki.models import Page, User
from wiki.publishing import normalise_tags

BOT_NAME = "import-bot"
_FENCE_RE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})")
_H1_RE = re.compile(r"^#[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")


class BadFile(Exception):
    """A file that cannot be imported; the message says why, for the report."""


@dataclass(frozen=True)
class Document:
    """One parsed Markdown file: what a page would be made of."""

    title: str
    body: str
    tags: str | None  # None: the file says nothing about tags


@dataclass
class ImportReport:
    """What an import did, file by file (paths relative to the imported folder)."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)

    def summary(self) -> str:
        """The one-line account printed at the end of `flask wiki import`."""
        return (
            f"Imported {len(self.created)} new, updated {len(self.updated)}, "
            f"unchanged {len(self.unchanged)}, skipped {len(self.skipped)}"
        )


# --- parsing ----------------------------------------------------------------------------------


def markdown_files(directory: str | Path) -> list[Path]:
    """Every *.md file under `directory`, recursively, in a stable (sorted) order."""
    root = Path(directory)
    return sorted(p for p in root.rglob("*.md") if p.is_file())


def _split_front_matter(text: str) -> tuple[dict, str]:
    """(front matter mapping, rest) for text that may open with a `---` fenced YAML block."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].rstrip() != "---":
        return {}, text
    for i, line in enumerate(lines[1:], start=1):
        if line.rstrip() in ("---", "..."):
            raw, rest = "".join(lines[1:i]), "".join(lines[i + 1 :])
            break
    else:
        raise BadFile("the front matter opened with --- is never closed")
    try:
        meta = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise BadFile(f"unreadable front matter ({problem})") from None
    if meta is None:
        return {}, rest
    if not isinstance(meta, dict):
        raise BadFile("the front matter must be a mapping of keys to values")
    return meta, rest


def _take_heading(body: str) -> tuple[str | None, str]:
    """The first level-1 `# ` heading outside code (removed from the body), or (None, body)."""
    lines = body.splitlines(keepends=True)
    fence: str | None = None
    for i, line in enumerate(lines):
        opening = _FENCE_RE.match(line)
        if fence is None and opening:
            fence = opening.group(1)
            continue
        if fence is not None:
            if line.strip().startswith(fence[0] * len(fence)) and not line.strip().strip(fence[0]):
                fence = None
            continue
        match = _H1_RE.match(line.rstrip("\n"))
        if match:
            end = i + 1
            while end < len(lines) and not lines[end].strip():
                end += 1  # the blank lines after it, so no gap is left behind
            keep = lines[end:] if i == 0 or not lines[i - 1].strip() else ["\n", *lines[end:]]
            return match.group(1).strip(), "".join(lines[:i] + keep)
    return None, body


def _title_from_name(path: Path) -> str:
    words = " ".join(re.sub(r"[-_]+", " ", path.stem).split())
    return words[:1].upper() + words[1:]


def _tags(value: object) -> str:
    if isinstance(value, str):
        return normalise_tags(value)
    if isinstance(value, list) and all(isinstance(t, str | int | float) for t in value):
        return normalise_tags([str(t) for t in value])
    raise BadFile("tags must be a list or a string")


def parse_document(data: bytes, path: Path) -> Document:
    """Turn a file's bytes into a Document, or raise BadFile saying what is wrong with it."""
    limit = current_app.config["MAX_PAGE_BYTES"]
    if len(data) > limit:
        raise BadFile(f"larger than the {limit // 1024} KB page limit")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadFile("not UTF-8 text") from None
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise BadFile("empty file")
    meta, body = _split_front_matter(text)
    title = meta.get("title")
    if title is not None and not isinstance(title, str | int | float):
        raise BadFile("the title in the front matter must be text")
    title = str(title).strip() if title is not None else ""
    if not title:
        heading, body = _take_heading(body)
        title = heading or _title_from_name(path)
    tags = _tags(meta["tags"]) if meta.get("tags") is not None else None
    try:
        title, _slug = editing.check_title(title)
    except editing.InvalidEdit as exc:
        raise BadFile(f"bad title {title!r}: {exc}") from None
    body = body.lstrip("\n")
    return Document(title=title, body=body, tags=tags)


# --- import -----------------------------------------------------------------------------------


def import_user() -> User:
    """The system user imports are made as; created as an admin with an unusable password."""
    user = accounts.find_user(BOT_NAME)
    if user is None:
        user = accounts.create_user(BOT_NAME, secrets.token_urlsafe(32), role="admin")
    if not user.active or not user.is_reviewer:
        raise editing.PermissionDenied(
            f"The user {BOT_NAME} must be an active admin to import pages; "
            "fix its account in /admin/users."
        )
    return user


def _import_one(user: User, path: Path, name: str, seen: dict[str, str], report: ImportReport):
    try:
        document = parse_document(path.read_bytes(), path)
    except OSError as exc:
        raise BadFile(f"unreadable ({exc.strerror or exc})") from None
    slug = editing.check_title(document.title)[1]
    if slug in seen:
        raise BadFile(f"the same title as {seen[slug]}")
    seen[slug] = name
    page = editing.find_page(slug, include_unpublished=True)
    try:
        result = editing.save(
            user,
            title=document.title,
            body=document.body,
            tags=document.tags,
            summary=f"Imported from {name}",
            page=page,
            base_revision_id=page.current_revision_id if page is not None else None,
        )
    except editing.WikiError as exc:
        raise BadFile(str(exc)) from None
    if result.unchanged:
        report.unchanged.append(name)
    elif page is None:
        report.created.append(name)
    else:
        report.updated.append(name)


def import_folder(
    directory: str | Path,
    author: User | None = None,
    *,
    on_file: Callable[[Path], None] | None = None,
) -> ImportReport:
    """Create or update a page for every Markdown file under `directory`; bad files are skipped.

    Idempotent: a file whose title, text and tags equal the published page adds no revision.
    """
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"{directory} is not a folder")
    user = author or import_user()
    report = ImportReport()
    seen: dict[str, str] = {}
    for path in markdown_files(root):
        name = path.relative_to(root).as_posix()
        try:
            _import_one(user, path, name, seen, report)
        except BadFile as exc:
            db.session.rollback()
            report.skipped.append((name, str(exc)))
        if on_file is not None:
            on_file(path)
    return report


def has_pages() -> bool:
    """Whether the wiki holds any page at all (published, pending or deleted)."""
    return db.session.scalar(select(Page.id).limit(1)) is not None


# --- export -----------------------------------------------------------------------------------


def export_folder(directory: str | Path) -> int:
    """Write every published page as `<slug>.md` with YAML front matter; returns the count."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    pages = db.session.scalars(
        select(Page)
        .where(Page.current_revision_id.is_not(None), Page.deleted_at.is_(None))
        .order_by(Page.slug)
    ).all()
    for page in pages:
        revision = page.current_revision
        meta = yaml.safe_dump(
            {"title": revision.title, "tags": revision.tag_list},
            allow_unicode=True,
            sort_keys=False,
            default_flow_style=False,
        )
        (root / f"{page.slug}.md").write_text(f"---\n{meta}---\n\n{revision.body}", "utf-8")
    return len(pages)


# --- commands ---------------------------------------------------------------------------------


@click.command("import")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--if-empty", is_flag=True, help="Only when the wiki has no pages yet.")
@with_appcontext
def import_command(directory: str, if_empty: bool) -> None:
    """Import a folder of Markdown files (front matter optional); safe to run again."""
    if if_empty and has_pages():
        click.echo("The wiki has pages already; nothing imported.")
        return
    try:
        user = import_user()
    except (accounts.AccountError, editing.WikiError) as exc:
        raise click.ClickException(str(exc)) from None
    files = markdown_files(directory)
    with click.progressbar(length=len(files), label="Importing") as bar:
        report = import_folder(directory, user, on_file=lambda _path: bar.update(1))
    for name, reason in report.skipped:
        click.echo(f"Skipped {name}: {reason}", err=True)
    click.echo(report.summary())


@click.command("export")
@click.argument("directory", type=click.Path(file_okay=False))
@with_appcontext
def export_command(directory: str) -> None:
    """Export every published page as Markdown with front matter, one file per page."""
    count = export_folder(directory)
    click.echo(f"Exported {count} page{'s' if count != 1 else ''} to {directory}")
