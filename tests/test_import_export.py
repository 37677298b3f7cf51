"""`flask wiki import` / `export`: parsing, idempotence, bad files, round trip, the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select, update

from wiki import editing
from wiki.importer import BOT_NAME, export_folder, import_folder
from wiki.models import Page, Revision, User


def _write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, "utf-8")
    return path


def _page(db, slug: str) -> Page | None:
    db.session.expire_all()
    return db.session.scalars(select(Page).where(Page.slug == slug)).first()


def _revisions(db) -> int:
    return db.session.scalar(select(func.count(Revision.id)))


def _pages(db) -> dict[str, tuple[str, str, str]]:
    db.session.expire_all()
    rows = db.session.scalars(select(Page).where(Page.current_revision_id.is_not(None))).all()
    return {
        p.slug: (p.current_revision.title, p.current_revision.body, p.current_revision.tags)
        for p in rows
    }


@pytest.fixture
def folder(tmp_path) -> Path:
    path = tmp_path / "md"
    path.mkdir()
    return path


def test_title_comes_from_front_matter_then_heading_then_file_name(app, db, folder):
    _write(folder, "a.md", "---\ntitle: Front Title\ntags: [alpha, Beta]\n---\n\nBody A.\n")
    _write(folder, "b.md", "Intro line.\n\n# Heading Title\n\nBody B.\n")
    _write(folder, "sub/c_file-name.md", "Just text, no heading.\n")
    _write(folder, "d.md", "```bash\n# not a title\n```\n\n# Real Title\n\nBody D.\n")
    report = import_folder(folder)
    assert sorted(report.created) == ["a.md", "b.md", "d.md", "sub/c_file-name.md"]
    a = _page(db, "front-title")
    assert a.current_revision.body == "Body A.\n"
    assert a.current_revision.tags == "alpha beta"
    b = _page(db, "heading-title")
    assert b.current_revision.body == "Intro line.\n\nBody B.\n"  # heading removed from the text
    assert _page(db, "c-file-name").title == "C file name"
    assert "# not a title" in _page(db, "real-title").current_revision.body
    assert a.current_revision.summary == "Imported from a.md"


def test_import_publishes_as_the_import_bot(app, db, folder):
    _write(folder, "x.md", "# X\n\ntext\n")
    import_folder(folder)
    bot = db.session.scalars(select(User).where(User.username == BOT_NAME)).one()
    assert bot.role == "admin"
    page = _page(db, "x")
    assert page.current_revision.author_id == bot.id
    assert page.current_revision.status == "published"


def test_tags_may_be_a_string(app, db, folder):
    _write(folder, "t.md", "---\ntitle: Tagged\ntags: one, two three\n---\ntext\n")
    import_folder(folder)
    assert _page(db, "tagged").current_revision.tags == "one two three"


def test_import_twice_creates_no_revisions_and_changes_update(app, db, folder):
    _write(folder, "a.md", "---\ntitle: Alpha\ntags: [x]\n---\r\n\r\nLine one\r\nLine two")
    _write(folder, "b.md", "# Beta\n\nSee [[Alpha]].\n")
    first = import_folder(folder)
    assert len(first.created) == 2
    count = _revisions(db)
    second = import_folder(folder)
    assert sorted(second.unchanged) == ["a.md", "b.md"]
    assert second.summary() == "Imported 0 new, updated 0, unchanged 2, skipped 0"
    assert _revisions(db) == count
    _write(folder, "b.md", "# Beta\n\nSee [[Alpha]] again.\n")
    third = import_folder(folder)
    assert third.updated == ["b.md"] and third.unchanged == ["a.md"]
    assert _revisions(db) == count + 1
    assert "again" in _page(db, "beta").current_revision.body


def test_links_to_pages_imported_later_are_blue(app, db, folder):
    _write(folder, "a.md", "# Aardvark\n\nSee [[Zebra]].\n")
    _write(folder, "z.md", "# Zebra\n\nSee [[Aardvark]].\n")
    import_folder(folder)
    html = _page(db, "aardvark").current_revision.html
    assert 'class="wikilink"' in html and "wikilink new" not in html


BAD_FILES = {
    "latin1.md": b"# Caf\xe9\n\nNot UTF-8.\n",
    "empty.md": b"",
    "blank.md": b"  \n\n\t\n",
    "broken-yaml.md": b"---\ntitle: [unclosed\ntags: x\n---\nBody\n",
    "unclosed-front-matter.md": b"---\ntitle: Never closed\nBody\n",
    "list-front-matter.md": b"---\n- a\n- b\n---\nBody\n",
    "bad-tags.md": b"---\ntitle: Bad tags\ntags: {a: 1}\n---\nBody\n",
    "no-slug.md": b"---\ntitle: '!!!'\n---\nBody\n",
    "nul.md": b"# Nul\n\nA \x00 byte.\n",
}


@pytest.mark.parametrize("name", sorted(BAD_FILES) + ["huge.md"])
def test_bad_files_are_reported_by_name_and_skipped(app, db, folder, name):
    limit = app.config["MAX_PAGE_BYTES"]
    content = BAD_FILES.get(name) or b"# Huge\n\n" + b"x" * (limit + 1)
    _write(folder, name, content)
    _write(folder, "good.md", "# Good Page\n\nFine.\n")
    report = import_folder(folder)
    assert [n for n, _ in report.skipped] == [name]
    assert report.skipped[0][1]  # a reason is given
    assert report.created == ["good.md"]
    assert _page(db, "good-page") is not None
    assert set(_pages(db)) == {"good-page"}


def test_two_files_with_one_title_keep_the_first(app, db, folder):
    _write(folder, "a.md", "---\ntitle: Same\n---\nfirst\n")
    _write(folder, "b.md", "---\ntitle: same\n---\nsecond\n")
    report = import_folder(folder)
    assert report.created == ["a.md"]
    assert report.skipped == [("b.md", "the same title as a.md")]
    assert _page(db, "same").current_revision.body == "first\n"


def test_deleted_page_is_skipped_not_recreated(app, db, folder, make_page, admin):
    from wiki import management

    page = make_page("Gone", "old\n")
    management.delete_page(admin, page)
    _write(folder, "gone.md", "# Gone\n\nnew\n")
    report = import_folder(folder)
    assert report.skipped and report.skipped[0][0] == "gone.md"
    assert "deleted" in report.skipped[0][1]


def test_export_writes_front_matter_and_body(app, db, folder, make_page):
    make_page("Alpha & Omega", "Text with [[Beta]].\n", tags="greek letters")
    make_page("Beta", "# Heading inside\n\nMore text.\n")
    out = folder / "out"
    assert export_folder(out) == 2
    text = (out / "alpha-omega.md").read_text("utf-8")
    _, raw, body = text.split("---\n", 2)
    assert yaml.safe_load(raw) == {"title": "Alpha & Omega", "tags": ["greek", "letters"]}
    assert body == "\nText with [[Beta]].\n"


def test_export_skips_deleted_and_unpublished_pages(app, db, folder, make_page, admin, contributor):
    from wiki import management

    management.delete_page(admin, make_page("Deleted one"))
    make_page("Kept")
    editing.save(contributor, title="Proposed only", body="waiting\n")
    assert export_folder(folder) == 1
    assert [p.name for p in folder.iterdir()] == ["kept.md"]


def _empty_database(db) -> None:
    """Delete every row, leaving the migrated schema: an empty wiki."""
    db.session.execute(update(Page).values(current_revision_id=None))
    for table in reversed(db.metadata.sorted_tables):
        db.session.execute(table.delete())
    db.session.commit()


def test_export_then_import_into_an_empty_database_reproduces_the_pages(app, db, folder, make_page):
    make_page("Alpha & Omega", "Text with [[Beta]] and `code`.\n\n- a\n- b\n", tags="greek")
    make_page("Beta", "# Heading inside the body\n\nSee [[Alpha & Omega]].\n")
    make_page("Ünïcode Straße", "Grüße: «quotes», emoji 🚀.\n", tags="i18n misc")
    make_page("Front", "---\nnot front matter, a rule\n---\n", tags="x")
    before = _pages(db)
    assert export_folder(folder) == 4
    _empty_database(db)
    assert _pages(db) == {}
    report = import_folder(folder)
    assert len(report.created) == 4 and not report.skipped
    assert _pages(db) == before


# --- the commands -------------------------------------------------------------------------


def test_cli_import_reports_skips_and_summary(app, db, folder):
    _write(folder, "good.md", "# Good\n\ntext\n")
    _write(folder, "bad.md", b"\xff\xfe bad")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["wiki", "import", str(folder)])
    assert result.exit_code == 0, result.output
    assert "Skipped bad.md: not UTF-8 text" in result.output
    assert "Imported 1 new, updated 0, unchanged 0, skipped 1" in result.output
    assert _page(db, "good") is not None
    again = runner.invoke(args=["wiki", "import", str(folder)])
    assert "Imported 0 new, updated 0, unchanged 1, skipped 1" in again.output


def test_cli_import_if_empty(app, db, folder, make_page):
    _write(folder, "new.md", "# New\n\ntext\n")
    runner = app.test_cli_runner()
    first = runner.invoke(args=["wiki", "import", str(folder), "--if-empty"])
    assert "Imported 1 new" in first.output
    _write(folder, "other.md", "# Other\n\ntext\n")
    second = runner.invoke(args=["wiki", "import", str(folder), "--if-empty"])
    assert second.exit_code == 0
    assert "nothing imported" in second.output
    assert _page(db, "other") is None


def test_cli_import_of_a_missing_folder_fails_cleanly(app, tmp_path):
    result = app.test_cli_runner().invoke(args=["wiki", "import", str(tmp_path / "nope")])
    assert result.exit_code != 0
    assert "does not exist" in result.output


def test_cli_export(app, db, folder, make_page):
    make_page("One")
    make_page("Two")
    result = app.test_cli_runner().invoke(args=["wiki", "export", str(folder / "out")])
    assert result.exit_code == 0, result.output
    assert "Exported 2 pages" in result.output
    assert sorted(p.name for p in (folder / "out").iterdir()) == ["one.md", "two.md"]
