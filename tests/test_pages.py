"""Pages over HTTP: reading, editing, preview, conflicts, history, revisions, diffs, revert."""

from __future__ import annotations

import re
from html import unescape

import pytest
from sqlalchemy import func, select

from wiki import editing
from wiki.models import Page, Revision

BODY = "line one\nline two\nline three\nline four\nline five\n"
LONG = "Intro.\n\n## Install\n\ntext\n\n## Configure\n\ntext\n\n## Run\n\ntext\n"


def _revision_count(db) -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(Revision))


def _page(db, slug: str) -> Page | None:
    db.session.rollback()
    return db.session.scalars(select(Page).where(Page.slug == slug)).first()


def _textarea(html: str) -> str:
    match = re.search(r"<textarea[^>]*name=\"body\"[^>]*>(.*?)</textarea>", html, re.S)
    assert match, "no body textarea"
    return unescape(match.group(1)).lstrip("\r\n")


def _edit(client, slug: str, **fields):
    data = {"title": "", "body": "", "summary": "", "tags": "", "base_revision_id": ""}
    data.update(fields)
    return client.submit(f"/wiki/{slug}/edit", data, token_from=f"/wiki/{slug}/edit")


# --- reading ------------------------------------------------------------------------------


def test_view_shows_title_body_editor_and_actions(client, make_page):
    make_page("Docker Basics", "Containers are **processes**.\n")
    r = client.get("/wiki/docker-basics")
    html = r.get_data(as_text=True)
    assert r.status_code == 200
    assert "<h1>Docker Basics" in html
    assert "<strong>processes</strong>" in html
    assert "Last edited by" in html and "system-test" in html
    for action in ("/wiki/docker-basics/edit", "/wiki/docker-basics/history", "/links"):
        assert action in html
    assert "Contents" not in html  # short page: no table of contents


def test_long_page_has_table_of_contents(client, make_page):
    make_page("Guide", LONG)
    html = client.get("/wiki/guide").get_data(as_text=True)
    assert 'id="toc-title"' in html
    for anchor in ("#install", "#configure", "#run"):
        assert f'href="{anchor}"' in html


def test_home_redirects_to_main_page(client):
    r = client.get("/")
    assert r.status_code == 302 and r.headers["Location"].endswith("/wiki/main-page")


def test_missing_page_offers_create_link_when_logged_in(contributor_client):
    r = contributor_client.get("/wiki/no-such-page")
    html = r.get_data(as_text=True)
    assert r.status_code == 404
    assert "Create this page" in html and 'href="/wiki/no-such-page/edit"' in html


def test_missing_page_offers_login_to_anonymous(client):
    r = client.get("/wiki/no-such-page")
    html = r.get_data(as_text=True)
    assert r.status_code == 404
    assert "Create this page" not in html
    assert "/auth/login?next=/wiki/no-such-page/edit" in unescape(html).replace("%2F", "/")


@pytest.mark.parametrize(
    "path,target",
    [
        ("/wiki/Main Page", "/wiki/main-page"),
        ("/wiki/Main_Page", "/wiki/main-page"),
        ("/wiki/DOCKER", "/wiki/docker"),
        ("/wiki/Docker/history", "/wiki/docker/history"),
    ],
)
def test_non_canonical_slug_redirects_permanently(client, make_page, path, target):
    make_page("Main Page")
    make_page("Docker")
    r = client.get(path)
    assert r.status_code == 301 and r.headers["Location"].endswith(target)


def test_etag_and_not_modified(client, make_page):
    make_page("Docker", "text\n")
    first = client.get("/wiki/docker")
    etag = first.headers["ETag"]
    assert etag and first.headers["Last-Modified"]
    again = client.get("/wiki/docker", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""


def test_etag_changes_after_edit(reviewer_client, client, make_page):
    page = make_page("Docker", "text\n")
    etag = client.get("/wiki/docker").headers["ETag"]
    _edit(
        reviewer_client,
        "docker",
        title="Docker",
        body="new text\n",
        base_revision_id=str(page.current_revision_id),
    )
    r = client.get("/wiki/docker", headers={"If-None-Match": etag})
    assert r.status_code == 200 and "new text" in r.get_data(as_text=True)


# --- creating and editing -----------------------------------------------------------------


def test_new_page_form_and_create(reviewer_client, db):
    r = reviewer_client.get("/new")
    assert r.status_code == 200 and 'name="title"' in r.get_data(as_text=True)
    r = reviewer_client.submit(
        "/new",
        {"title": "Redis Notes", "body": "# Redis\n\nFast.\n", "summary": "start"},
        token_from="/new",
    )
    assert r.status_code == 302 and r.headers["Location"].endswith("/wiki/redis-notes")
    html = reviewer_client.get("/wiki/redis-notes").get_data(as_text=True)
    assert "Saved." in html and "Fast." in html


def test_new_page_needs_login(client):
    r = client.get("/new")
    assert r.status_code == 302 and "/auth/login" in r.headers["Location"]


def test_new_page_with_taken_title(reviewer_client, db, make_page):
    make_page("Docker", "original\n")
    r = reviewer_client.submit("/new", {"title": "docker", "body": "dup"}, token_from="/new")
    html = r.get_data(as_text=True)
    assert r.status_code == 409 and "exists already" in html and "dup" in html
    assert _revision_count(db) == 1


def test_red_link_leads_to_editor_then_turns_blue(reviewer_client, make_page):
    make_page("Guide", "See [[Docker Basics]].\n")
    html = reviewer_client.get("/wiki/guide").get_data(as_text=True)
    match = re.search(r'<a class="wikilink new" href="([^"]+)"', html) or re.search(
        r'<a href="([^"]+)" class="wikilink new"', html
    )
    assert match, html
    editor_url = match.group(1)
    editor = reviewer_client.get(editor_url)
    assert editor.status_code == 200 and 'value="Docker basics"' in editor.get_data(as_text=True)
    r = reviewer_client.submit(
        editor_url, {"title": "Docker Basics", "body": "Hi\n"}, token_from=editor_url
    )
    assert r.status_code == 302
    html = reviewer_client.get("/wiki/guide").get_data(as_text=True)
    assert "wikilink new" not in html and 'href="/wiki/docker-basics"' in html


def test_anonymous_editor_goes_to_login_and_back(client, contributor, make_page):
    make_page("Docker")
    r = client.get("/wiki/docker/edit")
    assert r.status_code == 302
    location = r.headers["Location"]
    assert "/auth/login" in location and "next=" in location
    login_page = client.get(location).get_data(as_text=True)
    assert 'value="/wiki/docker/edit"' in login_page
    r = client.submit(
        "/auth/login",
        {"username": "carl", "password": "correct horse battery", "next": "/wiki/docker/edit"},
        token_from=location,
    )
    assert r.status_code == 302 and r.headers["Location"].endswith("/wiki/docker/edit")
    r = client.get(r.headers["Location"])
    assert r.status_code == 200 and "Editing" in r.get_data(as_text=True)


def test_editor_prefills_current_text(reviewer_client, make_page):
    page = make_page("Docker", "Hello <b>world</b>\n")
    html = reviewer_client.get("/wiki/docker/edit").get_data(as_text=True)
    assert _textarea(html) == "Hello <b>world</b>\n"
    assert f'value="{page.current_revision_id}"' in html


def test_preview_button_renders_without_saving(reviewer_client, db, make_page):
    page = make_page("Docker", "old\n")
    before = _revision_count(db)
    r = _edit(
        reviewer_client,
        "docker",
        title="Docker",
        body="**bold** <script>alert(1)</script>",
        base_revision_id=str(page.current_revision_id),
        preview="Preview",
    )
    html = r.get_data(as_text=True)
    assert r.status_code == 200
    assert "<strong>bold</strong>" in html and "<script>alert" not in html
    assert _textarea(html).startswith("**bold**")
    assert _revision_count(db) == before


def test_save_publishes_for_reviewer(reviewer_client, db, make_page):
    page = make_page("Docker", "old\n")
    r = _edit(
        reviewer_client,
        "docker",
        title="Docker",
        body="new\n",
        summary="update",
        base_revision_id=str(page.current_revision_id),
    )
    assert r.status_code == 302
    page = _page(db, "docker")
    assert page.current_revision.body == "new\n" and page.current_revision.summary == "update"


def test_unchanged_save_says_so(reviewer_client, db, make_page):
    page = make_page("Docker", "same\n")
    r = _edit(
        reviewer_client,
        "docker",
        title="Docker",
        body="same\n",
        base_revision_id=str(page.current_revision_id),
    )
    html = reviewer_client.get(r.headers["Location"]).get_data(as_text=True)
    assert "Nothing changed" in html and _revision_count(db) == 1


@pytest.mark.parametrize(
    "fields,message",
    [({"title": ""}, "needs a title"), ({"title": "Other"}, "use Rename")],
)
def test_invalid_edit_keeps_text(reviewer_client, db, make_page, fields, message):
    page = make_page("Docker", "old\n")
    data = {"title": "Docker", "body": "my precious text\n"}
    data.update(fields)
    r = _edit(reviewer_client, "docker", base_revision_id=str(page.current_revision_id), **data)
    html = r.get_data(as_text=True)
    assert r.status_code == 422 and message in html and "my precious text" in html
    assert _revision_count(db) == 1


@pytest.mark.parametrize("base", ["abc", "-1", "99999999999999999999", "1.5"])
def test_malformed_base_revision_is_not_a_500(reviewer_client, make_page, base):
    make_page("Docker", "old\n")
    r = _edit(reviewer_client, "docker", title="Docker", body="new\n", base_revision_id=base)
    assert r.status_code in (302, 409, 422)


def test_contributor_edit_is_proposed(contributor_client, db, make_page):
    page = make_page("Docker", "old\n")
    r = _edit(
        contributor_client,
        "docker",
        title="Docker",
        body="proposed\n",
        base_revision_id=str(page.current_revision_id),
    )
    assert r.status_code == 302 and "/review/" in r.headers["Location"]
    assert _page(db, "docker").current_revision.body == "old\n"


def test_protected_page_editor_forbidden(contributor_client, admin, make_page):
    from wiki import management

    page = make_page("Docker", "old\n")
    management.protect(admin, page, True)
    assert contributor_client.get("/wiki/docker/edit").status_code == 403


# --- live preview -------------------------------------------------------------------------


def test_live_preview_returns_sanitised_fragment(contributor_client):
    token = contributor_client.csrf_token("/new")
    r = contributor_client.post(
        "/preview",
        data={"body": "# Hi\n\n<img src=x onerror=alert(1)> [x](javascript:alert(1))"},
        headers={"X-CSRFToken": token},
    )
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and r.mimetype == "text/html"
    assert "<h1" in html and "Hi" in html
    assert "onerror" not in html and "javascript:" not in html and "<html" not in html


def test_live_preview_form_token(contributor_client):
    r = contributor_client.submit("/preview", {"body": "*x*"}, token_from="/new")
    assert r.status_code == 200 and "<em>x</em>" in r.get_data(as_text=True)


def test_live_preview_anonymous_401(client):
    r = client.submit("/preview", {"body": "x"}, token_from="/auth/login")
    assert r.status_code == 401


def test_live_preview_without_csrf_400(contributor_client):
    assert contributor_client.post("/preview", data={"body": "x"}).status_code == 400


# --- conflicts ----------------------------------------------------------------------------


def test_edit_conflict_from_two_clients(reviewer_client, reviewer2_client, db, make_page):
    page = make_page("Guide", BODY)
    base = str(page.current_revision_id)
    # Both open the editor on the same revision.
    assert f'value="{base}"' in reviewer_client.get("/wiki/guide/edit").get_data(as_text=True)
    assert f'value="{base}"' in reviewer2_client.get("/wiki/guide/edit").get_data(as_text=True)
    first = _edit(
        reviewer2_client,
        "guide",
        title="Guide",
        body=BODY.replace("line two", "their line two"),
        summary="their fix",
        base_revision_id=base,
    )
    assert first.status_code == 302
    count = _revision_count(db)
    mine = BODY.replace("line two", "my line two") + "my extra paragraph\n"
    r = _edit(
        reviewer_client,
        "guide",
        title="Guide",
        body=mine,
        summary="mine",
        base_revision_id=base,
    )
    html = r.get_data(as_text=True)
    assert r.status_code == 409
    assert "Nothing was saved" in html
    assert _textarea(html).replace("\r\n", "\n") == mine  # the user's own text, intact
    assert "What changed while you were editing" in html
    assert "their fix" in html and "ravi" in html
    assert "<ins>their</ins>" in html or "<ins>their " in html
    assert _revision_count(db) == count
    # The editor now builds on the published revision: resubmitting saves.
    current = _page(db, "guide").current_revision_id
    assert f'value="{current}"' in html
    r = _edit(
        reviewer_client,
        "guide",
        title="Guide",
        body=mine,
        summary="mine, merged by hand",
        base_revision_id=str(current),
    )
    assert r.status_code == 302
    assert _page(db, "guide").current_revision.body == mine


def test_clean_merge_from_two_clients(reviewer_client, reviewer2_client, db, make_page):
    page = make_page("Guide", BODY)
    base = str(page.current_revision_id)
    _edit(
        reviewer2_client,
        "guide",
        title="Guide",
        body=BODY.replace("line one", "line ONE"),
        base_revision_id=base,
    )
    r = _edit(
        reviewer_client,
        "guide",
        title="Guide",
        body=BODY.replace("line five", "line FIVE"),
        base_revision_id=base,
    )
    assert r.status_code == 302
    html = reviewer_client.get(r.headers["Location"]).get_data(as_text=True)
    assert "both were kept" in html
    body = _page(db, "guide").current_revision.body
    assert "line ONE" in body and "line FIVE" in body


# --- history, revisions, diffs ------------------------------------------------------------


def _many_revisions(page, author, n: int) -> list[int]:
    ids = [page.current_revision_id]
    for i in range(n):
        result = editing.save(
            author,
            title=page.title,
            body=f"version {i}\n",
            summary=f"edit {i}",
            page=page,
            base_revision_id=ids[-1],
        )
        ids.append(result.revision.id)
    return ids


def test_history_newest_first_paginated_with_compare_form(client, reviewer, make_page):
    page = make_page("Guide", "v0\n")
    ids = _many_revisions(page, reviewer, 55)  # 56 revisions in all
    first = client.get("/wiki/guide/history")
    html = first.get_data(as_text=True)
    assert first.status_code == 200
    assert f"#{ids[-1]}" in html and f"#{ids[0]}<" not in html
    assert html.index(f"#{ids[-1]}") < html.index(f"#{ids[-2]}")
    assert 'name="from"' in html and 'name="to"' in html and "Compare selected" in html
    assert "Page 1 of 2" in html and 'rel="next"' in html
    second = client.get("/wiki/guide/history?page=2").get_data(as_text=True)
    assert f"#{ids[0]}<" in second and f"#{ids[-1]}<" not in second
    assert client.get("/wiki/guide/history?page=999").status_code in (200, 404)
    assert client.get("/wiki/guide/history?page=abc").status_code == 200


def test_compare_form_submits_to_diff(client, reviewer, make_page):
    page = make_page("Guide", "v0\n")
    ids = _many_revisions(page, reviewer, 2)
    r = client.get(f"/wiki/guide/diff?from={ids[0]}&to={ids[2]}&view=inline")
    assert r.status_code == 200 and f"Revision {ids[0]}" in r.get_data(as_text=True)


def test_old_revision_marked_with_link_to_current(client, reviewer, make_page):
    page = make_page("Guide", "first text\n")
    ids = _many_revisions(page, reviewer, 1)
    html = client.get(f"/wiki/guide/revisions/{ids[0]}").get_data(as_text=True)
    assert "old revision" in html and "not the current text" in html
    assert "first text" in html
    assert 'href="/wiki/guide">Go to the current version' in html
    current = client.get(f"/wiki/guide/revisions/{ids[1]}").get_data(as_text=True)
    assert "This is the current revision" in current


def test_diff_inline_and_split(client, reviewer, make_page):
    page = make_page("Guide", "The quick brown fox\nsecond line\n")
    old_id = page.current_revision_id
    new = editing.save(
        reviewer,
        title="Guide",
        body="The quick red fox\nsecond line\n",
        summary="colour fix",
        page=page,
        base_revision_id=old_id,
    ).revision
    inline = client.get(f"/wiki/guide/diff?from={old_id}&to={new.id}")
    html = inline.get_data(as_text=True)
    assert inline.status_code == 200 and "diff-inline" in html
    assert "<del>brown</del>" in html and "<ins>red</ins>" in html
    assert "colour fix" in html and "created" in html  # summaries of both sides
    assert "system-test" in html and "rita" in html  # authors of both sides
    split = client.get(f"/wiki/guide/diff?from={old_id}&to={new.id}&view=split")
    html = split.get_data(as_text=True)
    assert split.status_code == 200 and "diff-split" in html
    assert "<del>brown</del>" in html and "<ins>red</ins>" in html


def test_diff_defaults_to_last_change_and_orders_sides(client, reviewer, make_page):
    page = make_page("Guide", "a\n")
    ids = _many_revisions(page, reviewer, 1)
    html = client.get("/wiki/guide/diff").get_data(as_text=True)
    assert f"Revision {ids[0]}" in html and f"Revision {ids[1]}" in html
    swapped = client.get(f"/wiki/guide/diff?from={ids[1]}&to={ids[0]}").get_data(as_text=True)
    assert swapped.index(f"Revision {ids[0]}") < swapped.index(f"Revision {ids[1]}")


@pytest.mark.parametrize(
    "url",
    [
        "/wiki/guide/revisions/abc",
        "/wiki/guide/revisions/999999",
        "/wiki/guide/revisions/{other}",
        "/wiki/guide/revisions/99999999999999999999999",
        "/wiki/guide/diff?from=999999&to={own}",
        "/wiki/guide/diff?from={other}&to={own}",
        "/wiki/guide/diff?to=999999",
        "/wiki/guide/diff?to={other}",
        "/wiki/nope/history",
        "/wiki/nope/diff",
        "/wiki/nope/revisions/1",
        "/wiki/nope/links",
    ],
)
def test_bad_revision_ids_are_404(client, make_page, url):
    own = make_page("Guide", "x\n").current_revision_id
    other = make_page("Other", "y\n").current_revision_id
    r = client.get(url.format(own=own, other=other))
    assert r.status_code == 404


@pytest.mark.parametrize("query", ["from=abc&to=xyz", "from=&to=", "from=-1", "view=weird"])
def test_odd_diff_parameters_are_not_500(client, make_page, query):
    make_page("Guide", "x\n")
    assert client.get(f"/wiki/guide/diff?{query}").status_code in (200, 404)


def test_revert_via_post(reviewer_client, reviewer, db, make_page):
    page = make_page("Guide", "original\n")
    ids = _many_revisions(page, reviewer, 1)
    r = reviewer_client.submit(f"/wiki/guide/revert/{ids[0]}", token_from="/wiki/guide/history")
    assert r.status_code == 302
    html = reviewer_client.get(r.headers["Location"]).get_data(as_text=True)
    assert f"Reverted to revision {ids[0]}" in html
    current = _page(db, "guide").current_revision
    assert current.body == "original\n" and current.summary == f"Reverted to revision {ids[0]}"
    history = reviewer_client.get("/wiki/guide/history").get_data(as_text=True)
    assert f"Reverted to revision {ids[0]}" in history


def test_revert_get_is_405(reviewer_client, make_page):
    page = make_page("Guide", "x\n")
    assert reviewer_client.get(f"/wiki/guide/revert/{page.current_revision_id}").status_code == 405


def test_revert_needs_login(client, make_page):
    page = make_page("Guide", "x\n")
    r = client.submit(f"/wiki/guide/revert/{page.current_revision_id}", token_from="/auth/login")
    assert r.status_code == 302 and "/auth/login" in r.headers["Location"]


@pytest.mark.parametrize("target", ["999999", "current"])
def test_revert_bad_target_flashes(reviewer_client, db, make_page, target):
    page = make_page("Guide", "x\n")
    revision_id = page.current_revision_id if target == "current" else target
    r = reviewer_client.submit(f"/wiki/guide/revert/{revision_id}", token_from="/wiki/guide")
    assert r.status_code == 302
    html = reviewer_client.get(r.headers["Location"]).get_data(as_text=True)
    assert "current one already" in html or "no such published revision" in html
    assert _revision_count(db) == 1


def test_contributor_revert_is_proposed(contributor_client, reviewer, db, make_page):
    page = make_page("Guide", "original\n")
    ids = _many_revisions(page, reviewer, 1)
    r = contributor_client.submit(f"/wiki/guide/revert/{ids[0]}", token_from="/wiki/guide")
    assert r.status_code == 302 and "/review/" in r.headers["Location"]
    assert _page(db, "guide").current_revision_id == ids[1]


# --- recent changes and contributions -----------------------------------------------------


def test_recent_changes_lists_latest(client, reviewer, make_page):
    page = make_page("Guide", "a\n")
    _many_revisions(page, reviewer, 1)
    make_page("Docker", "b\n")
    r = client.get("/special/recent")
    html = r.get_data(as_text=True)
    assert r.status_code == 200
    assert html.index("Docker") < html.index("edit 0")  # newest first
    assert "rita" in html and "system-test" in html and "diff" in html
    assert "+2" in html  # size change


def test_recent_changes_paginated(client, reviewer, make_page):
    page = make_page("Guide", "a\n")
    _many_revisions(page, reviewer, 52)
    html = client.get("/special/recent").get_data(as_text=True)
    assert "Page 1 of 2" in html
    assert "edit 0<" not in html
    assert "edit 0<" in client.get("/special/recent?page=2").get_data(as_text=True)


def test_user_contributions(client, reviewer, make_page):
    page = make_page("Guide", "a\n")
    _many_revisions(page, reviewer, 2)
    r = client.get("/user/rita")
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and "rita" in html
    assert "edit 0" in html and "edit 1" in html
    assert client.get("/user/RITA").status_code == 200


def test_user_contributions_hide_pending_from_others(
    client, contributor_client, reviewer_client, make_page
):
    page = make_page("Guide", "a\n")
    _edit(
        contributor_client,
        "guide",
        title="Guide",
        body="proposal\n",
        summary="secret idea",
        base_revision_id=str(page.current_revision_id),
    )
    assert "secret idea" not in client.get("/user/carl").get_data(as_text=True)
    assert "secret idea" in contributor_client.get("/user/carl").get_data(as_text=True)
    assert "secret idea" in reviewer_client.get("/user/carl").get_data(as_text=True)


def test_unknown_user_404(client):
    assert client.get("/user/nobody-here").status_code == 404


def test_links_here(client, make_page):
    make_page("Docker", "x\n")
    make_page("Guide", "See [[Docker]].\n")
    html = client.get("/wiki/docker/links").get_data(as_text=True)
    assert 'href="/wiki/guide"' in html


def test_a_message_after_a_redirect_is_shown_even_when_the_page_is_unchanged(
    reviewer_client, make_page
):
    page = make_page("Steady", "Same text.\n")
    first = reviewer_client.get("/wiki/steady")
    etag = first.headers["ETag"]
    r = reviewer_client.submit(
        "/wiki/steady/edit",
        {"title": "Steady", "body": "Same text.\n", "base_revision_id": page.current_revision_id},
        token_from="/wiki/steady/edit",
    )
    assert r.status_code == 302
    again = reviewer_client.get("/wiki/steady", headers={"If-None-Match": etag})
    assert again.status_code == 200 and "Nothing changed" in again.get_data(as_text=True)
    assert reviewer_client.get("/wiki/steady", headers={"If-None-Match": etag}).status_code == 304


@pytest.mark.parametrize("path", ["/wiki/fixed/revisions/{rid}", "/wiki/fixed/diff?to={rid}"])
def test_old_revisions_and_diffs_answer_conditional_requests(client, make_page, path):
    page = make_page("Fixed", "Settled text.\n")
    url = path.format(rid=page.current_revision_id)
    first = client.get(url)
    assert first.status_code == 200 and first.headers.get("ETag")
    assert first.headers.get("Last-Modified")
    assert client.get(url, headers={"If-None-Match": first.headers["ETag"]}).status_code == 304
