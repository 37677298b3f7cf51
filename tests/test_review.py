"""Peer review in the domain (wiki/editing.py): one test per transition and per invariant."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.conftest import propose
from wiki import editing, management, notify
from wiki.models import Notification, Review, Revision

BODY = "First line.\n\nMiddle line.\n\nLast line.\n"


def publish(user, page, body, summary="direct"):
    result = editing.save(
        user,
        title=page.title,
        body=body,
        summary=summary,
        page=page,
        base_revision_id=page.current_revision_id,
    )
    assert result.published
    return result.revision


def fresh(db, revision_id):
    return db.session.get(Revision, revision_id, populate_existing=True)


def decisions(db, revision_id):
    return [
        r.decision
        for r in db.session.scalars(
            select(Review).where(Review.revision_id == revision_id).order_by(Review.id)
        )
    ]


# --- transitions ----------------------------------------------------------------------------


def test_propose_makes_a_pending_revision_on_its_base(db, contributor, make_page):
    page = make_page("Queues", BODY)
    base_id = page.current_revision_id
    p = propose(contributor, page, BODY.replace("Last", "Final"))
    p = fresh(db, p.id)
    assert p.base_revision_id == base_id
    assert p.thread_id == p.id
    assert p.merge_state == "clean"
    assert p.decided_by_id is None and p.decided_at is None
    assert page.current_revision_id == base_id  # readers still see the old text


def test_reviewer_publishes_directly_or_asks_for_review(db, reviewer, make_page):
    page = make_page("Queues", BODY)
    direct = publish(reviewer, page, BODY + "More.\n")
    assert fresh(db, direct.id).status == "published"
    asked = propose(reviewer, page, BODY + "Even more.\n", ask_review=True)
    assert fresh(db, asked.id).status == "pending"
    assert page.current_revision_id == direct.id


def test_comment_adds_to_the_thread(db, contributor, reviewer, make_page):
    page = make_page("Queues", BODY)
    p = propose(contributor, page, BODY + "x\n")
    entry = editing.comment(reviewer, p.id, "Why this line?")
    editing.comment(contributor, p.id, "Because.")
    assert entry.decision == "comment" and entry.reviewer_id == reviewer.id
    assert [e.comment for e in editing.thread(fresh(db, p.id))] == ["Why this line?", "Because."]
    assert fresh(db, p.id).status == "pending"
    with pytest.raises(editing.ReviewError):
        editing.comment(reviewer, p.id, "   ")
    with pytest.raises(editing.ReviewError):
        editing.comment(reviewer, p.id, "\x00")
    assert editing.comment(reviewer, p.id, "a\x00b").comment == "ab"  # storable everywhere


def test_request_changes_keeps_the_proposal_open(
    db, contributor, contributor2, reviewer, make_page
):
    page = make_page("Queues", BODY)
    p = propose(contributor, page, BODY + "x\n")
    entry = editing.request_changes(reviewer, p.id, "Add a source, please.")
    assert entry.decision == "request_changes" and entry.created_at is not None
    assert fresh(db, p.id).status == "pending"
    for who in (contributor, contributor2):
        with pytest.raises(editing.PermissionDenied):
            editing.request_changes(who, p.id, "no")
    assert decisions(db, p.id) == ["request_changes"]


def test_approve_on_current_base_publishes_the_proposal(db, contributor, reviewer, make_page):
    page = make_page("Queues", BODY)
    p = propose(contributor, page, BODY.replace("Last", "Final"))
    published = editing.approve(reviewer, p.id, "Looks good")
    assert published is not None and published.id == p.id
    p = fresh(db, p.id)
    assert p.status == "published" and p.merge_state is None
    assert p.decided_by_id == reviewer.id and p.decided_at is not None
    assert page.current_revision_id == p.id
    assert page.current_revision.body == BODY.replace("Last", "Final")
    assert decisions(db, p.id) == ["approve"]


def test_approve_on_stale_base_merges_and_credits_the_author(
    db, contributor, reviewer, admin, make_page
):
    page = make_page("Queues", BODY)
    p = propose(contributor, page, BODY.replace("Last line", "Last line, improved"))
    publish(admin, page, BODY.replace("First line", "First line, edited"))
    assert fresh(db, p.id).merge_state == "clean"

    merged = editing.approve(reviewer, p.id)
    assert merged is not None and merged.id != p.id
    merged = fresh(db, merged.id)
    assert merged.status == "published"
    assert merged.merged_from_id == p.id
    assert merged.author_id == contributor.id  # the proposal's author is credited
    assert merged.decided_by_id == reviewer.id and merged.decided_at is not None
    assert "First line, edited" in merged.body and "Last line, improved" in merged.body
    p = fresh(db, p.id)
    assert p.status == "merged" and p.decided_by_id == reviewer.id and p.decided_at
    assert page.current_revision_id == merged.id


def test_approve_with_conflict_is_refused_and_nothing_is_recorded(
    db, contributor, reviewer, admin, make_page
):
    page = make_page("Queues", BODY)
    p = propose(contributor, page, BODY.replace("Middle line", "Middle, theirs"))
    current = publish(admin, page, BODY.replace("Middle line", "Middle, admin's"))

    with pytest.raises(editing.ReviewConflict) as info:
        editing.approve(reviewer, p.id, "ok")
    assert "update" in str(info.value)
    p = fresh(db, p.id)
    assert p.status == "pending" and p.merge_state == "conflict"
    assert p.decided_by_id is None
    assert decisions(db, p.id) == []  # the approval was not recorded
    assert page.current_revision_id == current.id


def test_update_proposal_supersedes_in_place_keeping_the_thread(
    db, contributor, reviewer, reviewer2, admin, make_page
):
    page = make_page("Queues", BODY)
    p = propose(contributor, page, BODY.replace("Middle line", "Middle, theirs"))
    editing.comment(reviewer, p.id, "Nice idea")
    current = publish(admin, page, BODY.replace("Middle line", "Middle, admin's"))
    assert fresh(db, p.id).merge_state == "conflict"

    text, base_id, conflicts = editing.proposal_draft(fresh(db, p.id))
    assert conflicts and base_id == current.id
    assert "<<<<<<< your version" in text and "Middle, admin's" in text

    resolved = BODY.replace("Middle line", "Middle, theirs and admin's")
    new = editing.update_proposal(
        contributor, p.id, title=page.title, body=resolved, base_revision_id=base_id
    )
    new, old = fresh(db, new.id), fresh(db, p.id)
    assert new.status == "pending" and new.merge_state == "clean"
    assert new.thread_id == old.thread_id == p.id
    assert old.status == "superseded" and old.superseded_by_id == new.id
    assert old.decided_by_id == contributor.id and old.decided_at is not None
    entries = editing.thread(new)
    assert [(e.decision, e.comment) for e in entries][:1] == [("comment", "Nice idea")]
    assert entries[-1].decision == "update"

    # the superseded version can take no more decisions; the new one publishes
    with pytest.raises(editing.ReviewError):
        editing.approve(reviewer, p.id)
    assert editing.approve(reviewer2, new.id).id == new.id
    assert page.current_revision.body == resolved


def test_update_proposal_by_reviewer_allowed_by_other_contributor_refused(
    db, contributor, contributor2, reviewer, make_page
):
    page = make_page("Queues", BODY)
    p = propose(contributor, page, BODY + "a\n")
    with pytest.raises(editing.PermissionDenied):
        editing.update_proposal(contributor2, p.id, title=page.title, body=BODY + "b\n")
    assert fresh(db, p.id).status == "pending"
    new = editing.update_proposal(reviewer, p.id, title=page.title, body=BODY + "c\n")
    assert fresh(db, new.id).status == "pending"
    assert fresh(db, p.id).status == "superseded"


def test_update_proposal_refuses_a_base_that_is_not_published(db, contributor, make_page):
    page = make_page("Queues", BODY)
    p = propose(contributor, page, BODY + "a\n")
    with pytest.raises(editing.InvalidEdit):
        editing.update_proposal(
            contributor, p.id, title=page.title, body=BODY + "b\n", base_revision_id=p.id
        )
    assert fresh(db, p.id).status == "pending"


def test_reject_needs_a_comment(db, contributor, reviewer, make_page):
    page = make_page("Queues", BODY)
    p = propose(contributor, page, BODY + "x\n")
    with pytest.raises(editing.ReviewError):
        editing.reject(reviewer, p.id, "  ")
    assert fresh(db, p.id).status == "pending"
    editing.reject(reviewer, p.id, "Off topic.")
    p = fresh(db, p.id)
    assert p.status == "rejected" and p.decided_by_id == reviewer.id and p.decided_at
    assert decisions(db, p.id) == ["reject"]
    with pytest.raises(editing.ReviewError):
        editing.approve(reviewer, p.id)


def test_withdraw_is_the_authors_alone(db, contributor, contributor2, reviewer, admin, make_page):
    page = make_page("Queues", BODY)
    p = propose(contributor, page, BODY + "x\n")
    for who in (contributor2, reviewer, admin):
        with pytest.raises(editing.PermissionDenied):
            editing.withdraw(who, p.id)
    assert fresh(db, p.id).status == "pending"
    editing.withdraw(contributor, p.id, "Never mind")
    p = fresh(db, p.id)
    assert p.status == "withdrawn" and p.decided_by_id == contributor.id and p.decided_at


def test_unknown_proposal_is_a_review_error(db, reviewer, make_page):
    make_page("Queues", BODY)
    with pytest.raises(editing.ReviewError):
        editing.approve(reviewer, 999999)


# --- invariants -----------------------------------------------------------------------------


def test_readers_only_see_published_text(client, db, contributor, contributor2, make_page, app):
    page = make_page("Queues", BODY)
    p = propose(contributor, page, BODY + "SECRET PROPOSAL TEXT\n", summary="SECRET SUMMARY")
    urls = [
        "/wiki/queues",
        "/wiki/queues/history",
        "/wiki/queues/diff",
        "/special/recent",
        "/special/recent.atom",
        "/user/carl",
    ]
    readers = [client, app.test_client()]
    readers[1].login(contributor2.username)
    for reader in readers:
        for url in urls:
            r = reader.get(url)
            assert r.status_code == 200, url
            text = r.get_data(as_text=True)
            assert "SECRET PROPOSAL TEXT" not in text, url
            assert "SECRET SUMMARY" not in text, url
        assert reader.get(f"/wiki/queues/revisions/{p.id}").status_code == 404
        assert reader.get(f"/wiki/queues/diff?to={p.id}").status_code == 404
        assert reader.get(f"/wiki/queues/diff?from={p.id}").status_code == 404
    assert "First line" in client.get("/wiki/queues").get_data(as_text=True)


def test_search_and_export_hold_only_published_text(
    client, db, contributor, reviewer, make_page, tmp_path
):
    from wiki.importer import export_folder

    page = make_page("Queues", BODY + "Zebrafish are published.\n")
    p = propose(contributor, page, BODY + "Okapis are only proposed.\n")
    editing.save(contributor, title="Secret Page", body="Okapis on a new page.\n")
    r = client.get("/search?q=okapis")
    assert r.status_code == 200 and "Okapis" not in r.get_data(as_text=True)
    assert "Queues" in client.get("/search?q=zebrafish").get_data(as_text=True)
    assert "Secret" not in client.get("/search/suggest?q=secr").get_data(as_text=True)
    assert export_folder(tmp_path / "out") == 1
    exported = (tmp_path / "out" / "queues.md").read_text()
    assert "Zebrafish" in exported and "Okapis" not in exported
    assert not (tmp_path / "out" / "secret-page.md").exists()

    editing.approve(reviewer, p.id)  # once approved, search finds it
    assert "Queues" in client.get("/search?q=okapis").get_data(as_text=True)


def test_a_contributors_new_page_is_404_until_approved(
    client, db, app, contributor, contributor2, reviewer
):
    result = editing.save(contributor, title="Brand New", body="Fresh text.\n", summary="new")
    assert not result.published
    assert editing.find_page("brand-new") is None
    other = app.test_client()
    other.login(contributor2.username)
    for reader in (client, other):
        assert reader.get("/wiki/brand-new").status_code == 404
        assert reader.get("/wiki/brand-new/history").status_code == 404
        assert "Brand New" not in reader.get("/special/all").get_data(as_text=True)
    # a second proposal for the same new page is refused, not silently shadowed
    with pytest.raises(editing.PageExists):
        editing.save(contributor2, title="Brand New", body="Other.\n")

    editing.approve(reviewer, result.revision.id)
    r = client.get("/wiki/brand-new")
    assert r.status_code == 200 and "Fresh text." in r.get_data(as_text=True)


def test_nobody_approves_their_own_work(db, reviewer, reviewer2, make_page):
    page = make_page("Queues", BODY)
    p = propose(reviewer, page, BODY + "mine\n", ask_review=True)
    with pytest.raises(editing.PermissionDenied):
        editing.approve(reviewer, p.id)
    assert fresh(db, p.id).status == "pending" and decisions(db, p.id) == []
    assert not editing.can_review(reviewer, fresh(db, p.id))
    assert editing.approve(reviewer2, p.id) is not None


def test_admin_waits_for_someone_else_under_everyone(app, db, admin, reviewer, make_page):
    page = make_page("Queues", BODY)
    app.config["REVIEW_POLICY"] = "everyone"
    p = propose(admin, page, BODY + "admin's\n")
    for decide in (editing.approve, editing.request_changes):
        with pytest.raises(editing.PermissionDenied):
            decide(admin, p.id, "self")
    with pytest.raises(editing.PermissionDenied):
        editing.reject(admin, p.id, "self")
    assert fresh(db, p.id).status == "pending"
    assert editing.approve(reviewer, p.id).id == p.id


def test_contributors_cannot_decide(db, contributor, contributor2, make_page):
    page = make_page("Queues", BODY)
    p = propose(contributor, page, BODY + "x\n")
    for decide in (editing.approve, editing.request_changes, editing.reject):
        with pytest.raises(editing.PermissionDenied):
            decide(contributor2, p.id, "I decide")
    assert fresh(db, p.id).status == "pending"
    assert decisions(db, p.id) == []


def test_an_approved_change_is_never_silently_dropped(
    db, contributor, contributor2, reviewer, make_page
):
    """Approve proposals on every line in turn: each lands in the text or is refused loudly."""
    page = make_page("Queues", BODY)
    first = propose(contributor, page, BODY.replace("First line", "First line A"))
    last = propose(contributor2, page, BODY.replace("Last line", "Last line B"))
    clash = propose(contributor2, page, BODY.replace("First line", "First line C"))
    landed = []
    for p in (first, last, clash):
        try:
            landed.append(editing.approve(reviewer, p.id))
        except editing.ReviewConflict:
            assert fresh(db, p.id).status == "pending"
            assert fresh(db, p.id).merge_state == "conflict"
    body = page.current_revision.body
    assert "First line A" in body and "Last line B" in body and "First line C" not in body
    assert fresh(db, first.id).status == "published"
    assert fresh(db, last.id).status == "merged"
    assert len(landed) == 2


def test_every_state_change_has_who_and_when(
    db, contributor, contributor2, reviewer, reviewer2, admin, make_page
):
    page = make_page("Queues", BODY)
    a = propose(contributor, page, BODY.replace("First line", "First A"))
    b = propose(contributor2, page, BODY.replace("Last line", "Last B"))
    c = propose(contributor, page, BODY + "c\n")
    d = propose(contributor2, page, BODY + "d\n")
    e = propose(contributor, page, BODY.replace("Middle line", "Middle E"))
    editing.comment(reviewer2, a.id, "hm")
    editing.request_changes(reviewer2, a.id, "tweak")
    editing.approve(reviewer, a.id)  # published
    editing.approve(reviewer2, b.id)  # merged
    editing.reject(reviewer, c.id, "no")  # rejected
    editing.withdraw(contributor2, d.id)  # withdrawn
    editing.update_proposal(admin, e.id, title=page.title, body=BODY + "e2\n")  # superseded
    expected = {
        a.id: ("published", reviewer.id),
        b.id: ("merged", reviewer2.id),
        c.id: ("rejected", reviewer.id),
        d.id: ("withdrawn", contributor2.id),
        e.id: ("superseded", admin.id),
    }
    for rid, (status, who) in expected.items():
        r = fresh(db, rid)
        assert (r.status, r.decided_by_id) == (status, who)
        assert r.decided_at is not None and r.decided_at >= r.created_at
    for entry in db.session.scalars(select(Review)):
        assert entry.reviewer_id is not None and entry.created_at is not None
    for r in db.session.scalars(select(Revision).where(Revision.status == "published")):
        assert r.decided_by_id is not None and r.decided_at is not None


@pytest.mark.parametrize(
    ("policy", "role", "ask", "waits"),
    [
        ("off", "contributor", False, False),
        ("off", "reviewer", True, False),
        ("contributors", "contributor", False, True),
        ("contributors", "reviewer", False, False),
        ("contributors", "reviewer", True, True),
        ("contributors", "admin", False, False),
        ("everyone", "reviewer", False, True),
        ("everyone", "admin", False, True),
        ("everyone", "contributor", False, True),
    ],
)
def test_review_policy(app, db, contributor, reviewer, admin, make_page, policy, role, ask, waits):
    page = make_page("Queues", BODY)
    app.config["REVIEW_POLICY"] = policy
    user = {"contributor": contributor, "reviewer": reviewer, "admin": admin}[role]
    assert editing.needs_review(user, ask) is waits
    result = editing.save(
        user,
        title=page.title,
        body=BODY + "x\n",
        page=page,
        base_revision_id=page.current_revision_id,
        ask_review=ask,
    )
    assert result.published is not waits
    assert fresh(db, result.revision.id).status == ("pending" if waits else "published")


def test_two_approvals_from_distinct_reviewers(
    app, db, contributor, reviewer, reviewer2, make_page
):
    app.config["REVIEW_MIN_APPROVALS"] = 2
    page = make_page("Queues", BODY)
    base = page.current_revision_id
    p = propose(contributor, page, BODY + "x\n")
    assert editing.approve(reviewer, p.id, "one") is None
    assert editing.approve(reviewer, p.id, "same one again") is None
    p = fresh(db, p.id)
    assert p.status == "pending" and editing.approvals(p) == 1
    assert page.current_revision_id == base
    assert editing.approve(reviewer2, p.id, "two").id == p.id
    assert fresh(db, p.id).status == "published"


def test_open_proposals_are_rechecked_at_once_after_a_publish(
    db, contributor, contributor2, reviewer, admin, make_page
):
    page = make_page("Queues", BODY)
    winner = propose(contributor, page, BODY.replace("First line", "First, winner"))
    loser = propose(contributor2, page, BODY.replace("First line", "First, loser"))
    other = propose(contributor2, page, BODY.replace("Last line", "Last, other"))
    editing.approve(reviewer, winner.id)
    assert fresh(db, loser.id).merge_state == "conflict"
    assert fresh(db, other.id).merge_state == "clean"
    # a direct publish rechecks too
    publish(admin, page, page.current_revision.body.replace("Last line", "Last, admin"))
    assert fresh(db, other.id).merge_state == "conflict"


def _notes(db, user):
    return [
        (n.kind, n.revision_id)
        for n in db.session.scalars(
            select(Notification).where(Notification.user_id == user.id).order_by(Notification.id)
        )
    ]


def test_notifications(db, contributor, contributor2, reviewer, reviewer2, make_page):
    page = make_page("Queues", BODY)
    management.set_watch(contributor2, page, True)
    p = propose(contributor, page, BODY + "x\n")
    # reviewers and watchers hear of the new proposal; the author does not notify themself
    assert ("proposal", p.id) in _notes(db, reviewer)
    assert ("proposal", p.id) in _notes(db, reviewer2)
    assert ("proposal", p.id) in _notes(db, contributor2)
    assert _notes(db, contributor) == []

    editing.comment(reviewer, p.id, "Question")
    editing.request_changes(reviewer2, p.id, "Fix it")
    editing.approve(reviewer, p.id)
    kinds = [kind for kind, rid in _notes(db, contributor) if rid == p.id]
    assert kinds == ["comment", "request_changes", "approve"]
    assert ("publish", p.id) in _notes(db, contributor2)  # watchers hear of publishes
    messages = [n.message for n in db.session.scalars(select(Notification))]
    assert "rita approved your change to “Queues”" in messages

    assert notify.unread_count(contributor.id) == 3
    notify.mark_all_read(contributor.id)
    assert notify.unread_count(contributor.id) == 0


def test_rejection_notifies_the_author(db, contributor, reviewer, make_page):
    page = make_page("Queues", BODY)
    p = propose(contributor, page, BODY + "x\n")
    editing.reject(reviewer, p.id, "No thanks")
    assert _notes(db, contributor) == [("reject", p.id)]
