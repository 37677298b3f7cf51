"""Page management (rename, delete, restore, protect, watch) and the lists that keep a wiki tidy."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from sqlalchemy import func, select

from wiki import editing, management, queries
from wiki.models import Page, Redirect, Revision

ATOM = "{http://www.w3.org/2005/Atom}"


def _fresh(db, page: Page) -> Page:
    db.session.expire_all()
    return db.session.get(Page, page.id)


def _html(db, page: Page) -> str:
    return _fresh(db, page).current_revision.html


def _published_count(db, page: Page) -> int:
    return db.session.scalar(
        select(func.count(Revision.id)).where(
            Revision.page_id == page.id, Revision.status == "published"
        )
    )


# --- rename -------------------------------------------------------------------------------


def test_rename_changes_title_and_slug_keeps_history_and_leaves_a_redirect(
    db, make_page, contributor
):
    page = make_page("Old Name", "first\n")
    editing.save(
        page.current_revision.author,
        title="Old Name",
        body="second\n",
        page=page,
        base_revision_id=page.current_revision_id,
    )
    management.rename(contributor, page, "New Name")
    page = _fresh(db, page)
    assert (page.slug, page.title) == ("new-name", "New Name")
    assert _published_count(db, page) == 3  # both edits kept, plus the rename
    assert db.session.get(Redirect, "old-name").page_id == page.id
    assert editing.redirect_target("old-name").id == page.id


def test_rename_to_a_taken_title_raises_page_exists(db, make_page, contributor):
    page = make_page("First")
    make_page("Second")
    with pytest.raises(editing.PageExists):
        management.rename(contributor, page, "second")
    assert _fresh(db, page).slug == "first"


@pytest.mark.parametrize("title", ["", "   ", "!!!", "x" * 201])
def test_rename_refuses_bad_titles(make_page, contributor, title):
    page = make_page("Stays")
    with pytest.raises(editing.InvalidEdit):
        management.rename(contributor, page, title)


def test_rename_updates_links_when_asked(db, make_page, contributor):
    target = make_page("Target")
    linker = make_page("Linker", "See [[Target]] and [[target|the target]].\n")
    other = make_page("Other", "Also [[Target]].\n")
    updated = management.rename(contributor, target, "Bullseye", update_links=True)
    assert updated == 2
    body = _fresh(db, linker).current_revision.body
    assert body == "See [[Bullseye]] and [[Bullseye|the target]].\n"
    assert "[[Bullseye]]" in _fresh(db, other).current_revision.body
    assert 'href="/wiki/bullseye"' in _html(db, linker)


def test_rename_link_update_leaves_protected_pages_to_reviewers(db, make_page, admin, contributor):
    target = make_page("Target")
    guarded = make_page("Guarded", "See [[Target]].\n")
    management.protect(admin, guarded, True)
    assert management.rename(contributor, target, "Bullseye", update_links=True) == 0
    assert _fresh(db, guarded).current_revision.body == "See [[Target]].\n"
    assert "wikilink new" not in _html(db, guarded)


def test_rename_without_link_update_keeps_links_blue_through_the_redirect(
    db, make_page, contributor
):
    make_page("Target")
    linker = make_page("Linker", "See [[Target]].\n")
    management.rename(contributor, editing.find_page("target"), "Bullseye")
    assert _fresh(db, linker).current_revision.body == "See [[Target]].\n"
    assert "wikilink new" not in _html(db, linker)


def test_rename_of_protected_page_needs_a_reviewer(db, make_page, admin, contributor, reviewer):
    page = make_page("Guarded")
    management.protect(admin, page, True)
    with pytest.raises(editing.PermissionDenied):
        management.rename(contributor, _fresh(db, page), "Unguarded")
    management.rename(reviewer, _fresh(db, page), "Still Guarded")
    assert _fresh(db, page).slug == "still-guarded"


def test_rename_over_http_redirects_old_urls_with_301(db, make_page, contributor_client):
    make_page("Old Name", "text\n")
    make_page("Fan", "I like [[Old Name]].\n")
    form = contributor_client.get("/wiki/old-name/rename")
    assert form.status_code == 200
    html = form.get_data(as_text=True)
    assert "Also update the links on the 1 page that point here" in html and "Fan" in html
    response = contributor_client.submit(
        "/wiki/old-name/rename",
        {"title": "New Name", "update_links": "1"},
        token_from="/wiki/old-name/rename",
    )
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/wiki/new-name")
    for old, new in [
        ("/wiki/old-name", "/wiki/new-name"),
        ("/wiki/old-name/history", "/wiki/new-name/history"),
    ]:
        moved = contributor_client.get(old)
        assert moved.status_code == 301
        assert moved.headers["Location"].endswith(new)
    moved = contributor_client.get("/wiki/old-name/rename")
    assert moved.status_code == 301 and moved.headers["Location"].endswith("/wiki/new-name/rename")
    history = contributor_client.get("/wiki/new-name/history").get_data(as_text=True)
    assert "Renamed from" in history
    assert "[[New Name]]" in editing.find_page("fan").current_revision.body


def test_rename_over_http_reports_a_taken_title(make_page, contributor_client):
    make_page("One")
    make_page("Two")
    response = contributor_client.submit(
        "/wiki/one/rename", {"title": "Two"}, token_from="/wiki/one/rename"
    )
    assert response.status_code == 422
    assert "Another page has that title already." in response.get_data(as_text=True)


def test_rename_needs_login_and_protected_rename_is_403_for_contributors(
    db, client, make_page, admin, contributor_client, reviewer_client
):
    page = make_page("Guarded")
    management.protect(admin, page, True)
    assert client.get("/wiki/guarded/rename").status_code == 302
    assert contributor_client.get("/wiki/guarded/rename").status_code == 403
    response = contributor_client.submit(
        "/wiki/guarded/rename", {"title": "Mine"}, token_from="/special/recent"
    )
    assert response.status_code == 403
    assert reviewer_client.get("/wiki/guarded/rename").status_code == 200


# --- delete and restore ---------------------------------------------------------------------


@pytest.mark.parametrize("who", ["contributor_client", "reviewer_client"])
def test_only_admins_delete(request, make_page, who):
    make_page("Precious")
    c = request.getfixturevalue(who)
    assert c.get("/wiki/precious/delete").status_code == 403
    assert c.submit("/wiki/precious/delete", {}, token_from="/wiki/precious").status_code == 403
    assert c.get("/special/deleted").status_code == 403
    assert editing.find_page("precious") is not None


def test_delete_domain_refuses_non_admins(make_page, reviewer):
    with pytest.raises(editing.PermissionDenied):
        management.delete_page(reviewer, make_page("Precious"))


def test_delete_and_restore_over_http(db, client, make_page, admin_client):
    page = make_page("Doomed", "text\n", tags="fate")
    linker = make_page("Linker", "See [[Doomed]].\n")
    assert "wikilink new" not in _html(db, linker)
    assert admin_client.get("/wiki/doomed/delete").status_code == 200
    response = admin_client.submit("/wiki/doomed/delete", {}, token_from="/wiki/doomed/delete")
    assert response.status_code == 302 and response.headers["Location"].endswith("/special/deleted")
    assert client.get("/wiki/doomed").status_code == 404
    assert client.get("/wiki/doomed/history").status_code == 404
    assert admin_client.get("/wiki/doomed").status_code == 404
    assert 'class="wikilink new"' in _html(db, linker)  # links to it turn red
    assert _published_count(db, page) == 1  # history kept
    assert "Doomed" not in client.get("/special/all").get_data(as_text=True)
    assert "Doomed" not in client.get("/special/tags/fate").get_data(as_text=True)
    deleted = admin_client.get("/special/deleted").get_data(as_text=True)
    assert "Doomed" in deleted
    assert "doomed" in client.get("/special/wanted").get_data(as_text=True)

    restored = admin_client.submit(
        f"/special/deleted/{page.id}/restore", {}, token_from="/special/deleted"
    )
    assert restored.status_code == 302
    assert client.get("/wiki/doomed").status_code == 200
    assert 'class="wikilink new"' not in _html(db, linker)  # and blue again
    assert "Doomed" in client.get("/special/tags/fate").get_data(as_text=True)
    assert "No deleted pages." in admin_client.get("/special/deleted").get_data(as_text=True)


def test_restore_of_unknown_or_live_page(make_page, admin_client):
    page = make_page("Alive")
    assert (
        admin_client.submit("/special/deleted/99999/restore", {}, token_from="/special/deleted")
    ).status_code == 404
    response = admin_client.submit(
        f"/special/deleted/{page.id}/restore",
        {},
        token_from="/special/deleted",
        follow_redirects=True,
    )
    assert "This page is not deleted." in response.get_data(as_text=True)


def test_restore_is_admin_only(make_page, admin, contributor_client):
    page = make_page("Gone")
    management.delete_page(admin, page)
    response = contributor_client.submit(
        f"/special/deleted/{page.id}/restore", {}, token_from="/special/recent"
    )
    assert response.status_code == 403
    assert editing.find_page("gone") is None


def test_a_deleted_title_cannot_be_reused_until_restored(make_page, admin, contributor):
    page = make_page("Gone")
    management.delete_page(admin, page)
    with pytest.raises(editing.PageExists):
        editing.save(admin, title="Gone", body="again\n")


# --- protect and watch ------------------------------------------------------------------------


def test_protect_is_admin_only_and_limits_editing(
    db, make_page, admin_client, contributor_client, reviewer_client
):
    page = make_page("Policy", "v1\n")
    for c in (contributor_client, reviewer_client):
        denied = c.submit("/wiki/policy/protect", {"protected": "1"}, token_from="/wiki/policy")
        assert denied.status_code == 403
    ok = admin_client.submit("/wiki/policy/protect", {"protected": "1"}, token_from="/wiki/policy")
    assert ok.status_code == 302
    assert _fresh(db, page).protected
    assert "protected" in admin_client.get("/wiki/policy").get_data(as_text=True)

    form = {
        "title": "Policy",
        "body": "v2 by contributor\n",
        "base_revision_id": str(page.current_revision_id),
    }
    denied = contributor_client.submit("/wiki/policy/edit", form, token_from="/wiki/policy")
    assert denied.status_code == 403
    assert "protected" in denied.get_data(as_text=True)
    assert contributor_client.get("/wiki/policy/edit").status_code == 403
    allowed = reviewer_client.submit(
        "/wiki/policy/edit", {**form, "body": "v2 by reviewer\n"}, token_from="/wiki/policy"
    )
    assert allowed.status_code == 302
    assert _fresh(db, page).current_revision.body == "v2 by reviewer\n"

    admin_client.submit("/wiki/policy/protect", {"protected": "0"}, token_from="/wiki/policy")
    assert not _fresh(db, page).protected
    assert contributor_client.get("/wiki/policy/edit").status_code == 200


def test_watch_and_unwatch(db, make_page, contributor, contributor_client):
    page = make_page("Watched")
    response = contributor_client.submit(
        "/wiki/watched/watch", {"watch": "1"}, token_from="/wiki/watched"
    )
    assert response.status_code == 302
    assert queries.is_watching(contributor, page)
    assert "Unwatch" in contributor_client.get("/wiki/watched").get_data(as_text=True)
    contributor_client.submit("/wiki/watched/watch", {"watch": "1"}, token_from="/wiki/watched")
    contributor_client.submit("/wiki/watched/watch", {"watch": "0"}, token_from="/wiki/watched")
    db.session.expire_all()
    assert not queries.is_watching(contributor, page)


def test_watch_needs_login_and_a_page(client, contributor_client):
    response = client.post("/wiki/nowhere/watch", data={"watch": "1"})
    assert response.status_code in (302, 400)
    missing = contributor_client.submit(
        "/wiki/nowhere/watch", {"watch": "1"}, token_from="/special/recent"
    )
    assert missing.status_code == 404


# --- links, wanted, tags ----------------------------------------------------------------------


def test_links_page_lists_backlinks(make_page, client):
    make_page("Hub")
    make_page("Spoke One", "To [[Hub]].\n")
    make_page("Spoke Two", "To [[hub|the hub]].\n")
    make_page("Loner", "Nothing.\n")
    html = client.get("/wiki/hub/links").get_data(as_text=True)
    assert "Spoke One" in html and "Spoke Two" in html and "Loner" not in html
    assert "No page links here yet." in client.get("/wiki/loner/links").get_data(as_text=True)
    assert client.get("/wiki/nowhere/links").status_code == 404


def test_wanted_pages_count_links_and_drop_created_pages(make_page, client):
    make_page("A", "[[Missing Topic]] and [[Other Gap]].\n")
    make_page("B", "[[Missing Topic]] again.\n")
    html = client.get("/special/wanted").get_data(as_text=True)
    assert "Missing topic</a></td><td>2</td>" in html
    assert "Other gap</a></td><td>1</td>" in html
    assert html.index("Missing topic") < html.index("Other gap")  # most wanted first
    make_page("Missing Topic")
    html = client.get("/special/wanted").get_data(as_text=True)
    assert "Missing topic" not in html and "Other gap" in html


def test_tags_from_the_editor_and_the_tag_pages(make_page, reviewer_client, client):
    make_page("Tagged Before", tags="python web")
    response = reviewer_client.submit(
        "/new",
        {"title": "Fresh Page", "body": "Body\n", "tags": "Python, Django"},
        token_from="/new",
    )
    assert response.status_code == 302
    html = client.get("/special/tags").get_data(as_text=True)
    assert '>python</a> <span class="count">2</span>' in html
    assert '>django</a> <span class="count">1</span>' in html
    tagged = client.get("/special/tags/python").get_data(as_text=True)
    assert "Fresh Page" in tagged and "Tagged Before" in tagged
    assert "No page has this tag." in client.get("/special/tags/nothing").get_data(as_text=True)
    view = client.get("/wiki/fresh-page").get_data(as_text=True)
    assert 'href="/special/tags/django"' in view


# --- all pages, recent changes, feed ----------------------------------------------------------


def test_all_pages_filter_treats_percent_and_underscore_literally(make_page, client):
    for title in ["100% Uptime", "snake_case names", "Snake Case", "Plain"]:
        make_page(title)
    assert "100% Uptime" in client.get("/special/all?q=%25").get_data(as_text=True)
    only_percent = client.get("/special/all?q=%25").get_data(as_text=True)
    assert "Plain" not in only_percent and "Snake Case" not in only_percent
    underscore = client.get("/special/all?q=_").get_data(as_text=True)
    assert "snake_case names" in underscore
    assert "Snake Case" not in underscore and "Plain" not in underscore
    case = client.get("/special/all?q=SNAKE").get_data(as_text=True)
    assert "snake_case names" in case and "Snake Case" in case


def test_all_pages_sorted_and_paginated(make_page, client):
    for n in range(102):
        make_page(f"Page {n:03d}")
    first = client.get("/special/all").get_data(as_text=True)
    assert "102 pages." in first and "Page 1 of 2" in first
    assert first.index("Page 000") < first.index("Page 099")
    assert "Page 100" not in first
    second = client.get("/special/all?page=2").get_data(as_text=True)
    assert "Page 100" in second and "Page 101" in second and "Page 000" not in second
    assert client.get("/special/all?page=abc").status_code == 200
    assert client.get("/special/all?page=999").status_code == 200


def test_recent_changes_links_the_atom_feed_in_its_head(make_page, client):
    make_page("Anything")
    html = client.get("/special/recent").get_data(as_text=True)
    head = html[: html.index("</head>")]
    assert 'rel="alternate" type="application/atom+xml"' in head
    assert 'href="/special/recent.atom"' in head


def test_atom_feed_is_valid_atom_with_escaped_titles(make_page, client):
    make_page("Tom <&> Jerry", "text\n")
    make_page("Second", "text\n")
    response = client.get("/special/recent.atom")
    assert response.status_code == 200
    assert response.mimetype == "application/atom+xml"
    root = ET.fromstring(response.data)
    assert root.tag == f"{ATOM}feed"
    for name in ("id", "title", "updated"):
        assert (root.findtext(f"{ATOM}{name}") or "").strip(), name
    entries = root.findall(f"{ATOM}entry")
    assert len(entries) == 2
    for entry in entries:
        for name in ("id", "title", "updated"):
            assert (entry.findtext(f"{ATOM}{name}") or "").strip(), name
        assert entry.find(f"{ATOM}link").get("href").startswith("http")
        assert entry.findtext(f"{ATOM}updated").endswith("Z")
    titles = [e.findtext(f"{ATOM}title") for e in entries]
    assert any(t.startswith("Tom <&> Jerry") for t in titles)
    ids = [e.findtext(f"{ATOM}id") for e in entries]
    assert len(set(ids)) == 2


def test_atom_feed_of_an_empty_wiki_is_valid(client):
    root = ET.fromstring(client.get("/special/recent.atom").data)
    assert root.tag == f"{ATOM}feed"
    assert root.findtext(f"{ATOM}updated")
    assert root.findall(f"{ATOM}entry") == []
