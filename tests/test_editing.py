"""The editing domain without HTTP: saves, merges, conflicts, reverts, rules, derived rows."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from wiki import editing
from wiki.merging import merge, normalise
from wiki.models import Link, Page, PageEvent, PageTag, Revision

BODY = "line one\nline two\nline three\nline four\nline five\n"


@pytest.fixture
def policy_off(settings):
    """Every logged-in edit publishes: these tests are about saving, not review."""
    settings["REVIEW_POLICY"] = "off"
    return settings


def _count(db, model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def _revisions(db, page: Page) -> list[Revision]:
    return list(
        db.session.scalars(select(Revision).where(Revision.page_id == page.id).order_by("id"))
    )


# --- saving -------------------------------------------------------------------------------


def test_save_new_page_publishes_first_revision(policy_off, db, contributor):
    result = editing.save(contributor, title="  Docker   Basics ", body="Hello\r\n", summary="new")
    page = result.revision.page
    assert result.published and not result.merged and not result.unchanged
    assert page.slug == "docker-basics" and page.title == "Docker Basics"
    assert page.current_revision_id == result.revision.id
    assert result.revision.body == "Hello\n"  # one newline convention
    assert result.revision.summary == "new"
    assert result.revision.author_id == contributor.id
    assert result.revision.base_revision_id is None
    assert "<p>Hello</p>" in result.revision.html


def test_edit_with_current_base_publishes(policy_off, db, contributor, make_page):
    page = make_page("Guide", BODY)
    base = page.current_revision_id
    result = editing.save(
        contributor, title="Guide", body=BODY + "line six\n", page=page, base_revision_id=base
    )
    assert result.published and not result.merged
    assert page.current_revision_id == result.revision.id
    assert result.revision.base_revision_id == base
    assert len(_revisions(db, page)) == 2


def test_stale_base_clean_merge_publishes_merged_revision(
    policy_off, db, contributor, contributor2, make_page
):
    page = make_page("Guide", BODY)
    base = page.current_revision_id
    editing.save(
        contributor2,
        title="Guide",
        body=BODY.replace("line one", "line ONE"),
        page=page,
        base_revision_id=base,
    )
    result = editing.save(
        contributor,
        title="Guide",
        body=BODY.replace("line five", "line FIVE"),
        page=page,
        base_revision_id=base,
        summary="mine",
    )
    assert result.published and result.merged
    assert result.revision.body == BODY.replace("line one", "line ONE").replace(
        "line five", "line FIVE"
    )
    assert page.current_revision_id == result.revision.id
    assert len(_revisions(db, page)) == 3


def test_stale_base_conflict_raises_and_saves_nothing(
    policy_off, db, contributor, contributor2, make_page
):
    page = make_page("Guide", BODY)
    base = page.current_revision_id
    theirs = editing.save(
        contributor2,
        title="Guide",
        body=BODY.replace("line two", "their line two"),
        page=page,
        base_revision_id=base,
    ).revision
    before = (_count(db, Revision), _count(db, PageEvent))
    with pytest.raises(editing.EditConflict) as info:
        editing.save(
            contributor,
            title="Guide",
            body=BODY.replace("line two", "my line two"),
            page=page,
            base_revision_id=base,
        )
    assert info.value.current.id == theirs.id
    assert info.value.conflicts == 1
    assert "my line two" in info.value.merged and "their line two" in info.value.merged
    assert (_count(db, Revision), _count(db, PageEvent)) == before
    db.session.expire_all()
    assert db.session.get(Page, page.id).current_revision_id == theirs.id


def test_unchanged_save_creates_no_revision(policy_off, db, contributor, make_page):
    page = make_page("Guide", BODY)
    result = editing.save(
        contributor,
        title="Guide",
        body=BODY.replace("\n", "\r\n"),
        page=page,
        base_revision_id=page.current_revision_id,
    )
    assert result.unchanged and not result.published
    assert result.revision.id == page.current_revision_id
    assert len(_revisions(db, page)) == 1


def test_revert_creates_new_revision(policy_off, db, contributor, make_page):
    page = make_page("Guide", BODY)
    first = page.current_revision_id
    editing.save(contributor, title="Guide", body="changed\n", page=page, base_revision_id=first)
    result = editing.revert(contributor, page, first)
    assert result.published
    assert result.revision.id not in (first,)
    assert result.revision.body == BODY
    assert result.revision.summary == f"Reverted to revision {first}"
    assert page.current_revision_id == result.revision.id
    assert len(_revisions(db, page)) == 3


@pytest.mark.parametrize("bad", [999999, "current", "other"])
def test_revert_refuses_bad_revision(policy_off, db, contributor, make_page, bad):
    page = make_page("Guide", BODY)
    other = make_page("Other", "x\n")
    revision_id = {
        "current": page.current_revision_id,
        "other": other.current_revision_id,
    }.get(bad, bad)
    with pytest.raises(editing.InvalidEdit):
        editing.revert(contributor, page, revision_id)


@pytest.mark.parametrize(
    "title,message",
    [
        ("", "needs a title"),
        ("   ", "needs a title"),
        ("x" * 201, "at most 200"),
        ("!!! ???", "at least one letter"),
    ],
)
def test_title_validation(policy_off, db, contributor, title, message):
    with pytest.raises(editing.InvalidEdit, match=message):
        editing.save(contributor, title=title, body="text")
    assert _count(db, Page) == 0


def test_unicode_title_keeps_letters(policy_off, db, contributor):
    page = editing.save(contributor, title="Café Übersicht", body="x").revision.page
    assert page.slug == "café-übersicht"


def test_too_large_body_refused(policy_off, settings, db, contributor):
    limit = settings.get("MAX_PAGE_BYTES", 512 * 1024)
    with pytest.raises(editing.InvalidEdit, match="too long"):
        editing.save(contributor, title="Big", body="x" * (limit + 1))
    assert _count(db, Page) == 0


def test_nul_in_body_refused(policy_off, db, contributor):
    with pytest.raises(editing.InvalidEdit, match="NUL"):
        editing.save(contributor, title="Nul", body="a\x00b")


def test_protected_page_only_for_reviewers(policy_off, db, admin, contributor, reviewer, make_page):
    from wiki import management

    page = make_page("Guide", BODY)
    management.protect(admin, page, True)
    base = page.current_revision_id
    with pytest.raises(editing.PermissionDenied):
        editing.save(contributor, title="Guide", body="vandal\n", page=page, base_revision_id=base)
    assert len(_revisions(db, page)) == 1
    result = editing.save(reviewer, title="Guide", body="fine\n", page=page, base_revision_id=base)
    assert result.published


def test_inactive_user_cannot_edit(policy_off, db, contributor):
    contributor.active = False
    with pytest.raises(editing.PermissionDenied):
        editing.save(contributor, title="Anything", body="x")


def test_page_exists(policy_off, db, contributor, make_page):
    make_page("Docker", "x\n")
    with pytest.raises(editing.PageExists) as info:
        editing.save(contributor, title="docker", body="again")
    assert info.value.page.slug == "docker"
    assert _count(db, Page) == 1


def test_title_change_that_moves_page_refused(policy_off, db, contributor, make_page):
    page = make_page("Guide", BODY)
    with pytest.raises(editing.InvalidEdit, match="Rename"):
        editing.save(
            contributor,
            title="Another",
            body=BODY,
            page=page,
            base_revision_id=page.current_revision_id,
        )


def test_base_from_other_page_refused(policy_off, db, contributor, make_page):
    page = make_page("Guide", BODY)
    other = make_page("Other", "x\n")
    with pytest.raises(editing.InvalidEdit, match="another page"):
        editing.save(
            contributor,
            title="Guide",
            body="new\n",
            page=page,
            base_revision_id=other.current_revision_id,
        )


def test_size_and_size_delta(policy_off, db, contributor, make_page):
    page = make_page("Guide", "abc\n")
    first = page.current_revision
    assert (first.size, first.size_delta) == (4, 4)
    grown = editing.save(
        contributor, title="Guide", body="abcdef\n", page=page, base_revision_id=first.id
    ).revision
    assert (grown.size, grown.size_delta) == (7, 3)
    shrunk = editing.save(
        contributor, title="Guide", body="é\n", page=page, base_revision_id=grown.id
    ).revision
    assert (shrunk.size, shrunk.size_delta) == (3, -4)  # bytes, not characters


def test_links_tags_and_event_written_at_publish(policy_off, db, contributor, make_page):
    page = make_page("Guide", "See [[Docker]] and [[Kubernetes|k8s]].\n", tags="Ops, python ops")

    def links():
        return set(db.session.scalars(select(Link.to_slug).where(Link.from_page_id == page.id)))

    def tags():
        return set(db.session.scalars(select(PageTag.tag).where(PageTag.page_id == page.id)))

    def events():
        return list(db.session.scalars(select(PageEvent.kind).where(PageEvent.page_id == page.id)))

    assert links() == {"docker", "kubernetes"}
    assert tags() == {"ops", "python"}
    assert events() == ["publish"]
    editing.save(
        contributor,
        title="Guide",
        body="Only [[Redis]] now.\n",
        tags="cache",
        page=page,
        base_revision_id=page.current_revision_id,
    )
    assert links() == {"redis"}
    assert tags() == {"cache"}
    assert events() == ["publish", "publish"]


def test_creating_a_page_turns_red_links_blue(policy_off, db, contributor, make_page):
    linker = make_page("Guide", "See [[Docker]].\n")
    assert 'class="wikilink new"' in linker.current_revision.html
    make_page("Docker", "Containers.\n")
    db.session.expire_all()
    html = db.session.get(Page, linker.id).current_revision.html
    assert 'class="wikilink new"' not in html and 'class="wikilink"' in html


def test_contributor_edit_becomes_proposal_under_default_policy(db, contributor, make_page):
    page = make_page("Guide", BODY)
    base = page.current_revision_id
    result = editing.save(
        contributor, title="Guide", body="proposed\n", page=page, base_revision_id=base
    )
    assert not result.published and result.revision.status == "pending"
    assert page.current_revision_id == base


# --- merging ------------------------------------------------------------------------------


def test_merge_clean():
    base = "a\nb\nc\nd\ne\n"
    result = merge(base, "A\nb\nc\nd\ne\n", "a\nb\nc\nd\nE\n")
    assert result.clean and result.text == "A\nb\nc\nd\nE\n"


def test_merge_conflict_keeps_both_sides_with_markers():
    result = merge("a\nb\nc\n", "a\nmine\nc\n", "a\ntheirs\nc\n")
    assert not result.clean and result.conflicts == 1
    assert "<<<<<<< your version" in result.text and ">>>>>>> published version" in result.text
    assert "mine" in result.text and "theirs" in result.text


def test_merge_identical_changes_are_clean():
    result = merge("a\nb\n", "a\nsame\n", "a\nsame\n")
    assert result.clean and result.text == "a\nsame\n"


@pytest.mark.parametrize(
    "mine,theirs,expected",
    [("a\nb\n", "a\nX\n", "a\nX\n"), ("a\nX\n", "a\nb\n", "a\nX\n")],
)
def test_merge_one_side_unchanged(mine, theirs, expected):
    assert merge("a\nb\n", mine, theirs).text == expected


def test_merge_crlf_does_not_conflict():
    base = "a\r\nb\r\nc\r\nd\r\n"
    result = merge(base, "A\r\nb\r\nc\r\nd\r\n", "a\nb\nc\nD\n")
    assert result.clean and result.text == "A\nb\nc\nD\n"


def test_normalise_line_endings():
    assert normalise("a\r\nb\rc") == "a\nb\nc\n"
    assert normalise("") == ""
