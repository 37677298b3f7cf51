"""The starter knowledge hub in content/: enough real articles, all cross-linked, all importable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from wiki.importer import import_folder
from wiki.markup import link_targets, slugify
from wiki.models import Page, Revision

CONTENT = Path(__file__).resolve().parent.parent / "content"
FILES = sorted(CONTENT.glob("*.md"))
_FENCED = re.compile(r"^[ \t]*(`{3,}|~{3,})[^\n]*\n.*?^[ \t]*\1[ \t]*$", re.M | re.S)


def _split(path: Path) -> tuple[dict, str]:
    text = path.read_text("utf-8")
    assert text.startswith("---\n"), f"{path.name} has no front matter"
    _, raw, body = text.split("---\n", 2)
    return yaml.safe_load(raw), body


def _prose_words(body: str) -> int:
    return len(re.findall(r"[^\W_][\w'’-]*", _FENCED.sub("", body)))


SLUGS = {slugify(_split(p)[0]["title"]): p.name for p in FILES}


def test_there_are_at_least_24_pages_with_distinct_titles():
    assert len(FILES) >= 24
    assert len(SLUGS) == len(FILES), "two files share a title"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_page_has_front_matter_prose_and_links(path):
    meta, body = _split(path)
    assert isinstance(meta.get("title"), str) and meta["title"].strip()
    assert isinstance(meta.get("tags"), list) and meta["tags"], "tags must be a non-empty list"
    assert _prose_words(body) >= 400, f"only {_prose_words(body)} words of prose"
    targets = link_targets(body)
    assert len(targets) >= 3, f"only {len(targets)} wiki links"
    missing = targets - SLUGS.keys()
    assert not missing, f"links to pages that do not exist: {sorted(missing)}"


def test_main_page_links_to_every_other_page():
    main = CONTENT / "main-page.md"
    meta, body = _split(main)
    assert slugify(meta["title"]) == "main-page"
    others = set(SLUGS) - {"main-page"}
    assert others - link_targets(body) == set()


@pytest.fixture
def imported(app, db):
    report = import_folder(CONTENT)
    assert not report.skipped, report.skipped
    assert len(report.created) == len(FILES)
    return report


def test_imported_content_has_no_red_links_and_every_page_renders(imported, client, db):
    pages = db.session.scalars(select(Page)).all()
    assert len(pages) == len(FILES)
    for page in pages:
        assert page.current_revision is not None
        assert 'class="wikilink new"' not in page.current_revision.html, page.slug
        response = client.get(f"/wiki/{page.slug}")
        assert response.status_code == 200, page.slug
        html = response.get_data(as_text=True)
        assert page.title in html.replace("&amp;", "&")
        assert "wikilink new" not in html


def test_home_leads_to_the_main_page_which_links_everywhere(imported, client, db):
    response = client.get("/", follow_redirects=True)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    for slug in set(SLUGS) - {"main-page"}:
        assert f'href="/wiki/{slug}"' in html, slug


def test_importing_content_twice_adds_no_revisions(imported, db):
    before = db.session.scalar(select(Revision.id).order_by(Revision.id.desc()).limit(1))
    again = import_folder(CONTENT)
    assert len(again.unchanged) == len(FILES)
    assert not again.created and not again.updated and not again.skipped
    after = db.session.scalar(select(Revision.id).order_by(Revision.id.desc()).limit(1))
    assert after == before


def test_wanted_pages_is_empty_after_import(imported, client):
    html = client.get("/special/wanted").get_data(as_text=True)
    assert "No wanted pages" in html
