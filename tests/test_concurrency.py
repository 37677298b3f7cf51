"""Races between reviewers (and editors) on one page, with real threads and connections.

Each racer runs in its own thread with its own app context, so its own session and database
connection, against the same database. Whatever the interleaving, every change either lands
(published or merged) or is refused with a WikiError the user sees: never lost, never a 500.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from tests.conftest import PASSWORD, fresh_postgres
from wiki import accounts, create_app, editing
from wiki.extensions import db
from wiki.models import Page, Review, Revision, User

ROUNDS = 12
LINES = [f"Line {i} of the page." for i in range(8)]
BODY = "\n\n".join(LINES) + "\n"


def changed(line: int, tag: str, body: str = BODY) -> str:
    """The body with one line rewritten, marked with `tag` so we can find it later."""
    return body.replace(LINES[line], f"{LINES[line]} [{tag}]")


def race(app: Flask, jobs: list[Callable[[], Any]]) -> list[tuple[str, Any]]:
    """Run the jobs at the same moment, each in its own thread and app context.

    Returns ("ok", value), ("refused", WikiError) or ("error", exception) per job.
    """
    barrier = threading.Barrier(len(jobs))
    results: list[tuple[str, Any]] = [("error", "did not run")] * len(jobs)

    def run(i: int, job: Callable[[], Any]) -> None:
        with app.app_context():
            try:
                barrier.wait(timeout=30)
                results[i] = ("ok", job())
            except editing.WikiError as exc:
                results[i] = ("refused", exc)
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                results[i] = ("error", exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a racer hung"
    db.session.rollback()  # see what the racers committed
    errors = [value for kind, value in results if kind == "error"]
    assert not errors, f"unexpected exceptions: {errors!r}"
    return results


def approver(user_id: int, revision_id: int) -> Callable[[], int | None]:
    def job() -> int | None:
        published = editing.approve(db.session.get(User, user_id), revision_id, "race")
        return published.id if published is not None else None

    return job


def saver(user_id: int, page_id: int, base_id: int, body: str) -> Callable[[], bool]:
    def job() -> bool:
        user = db.session.get(User, user_id)
        page = db.session.get(Page, page_id)
        result = editing.save(
            user, title=page.title, body=body, page=page, base_revision_id=base_id, summary="race"
        )
        assert result.published
        return result.merged

    return job


def fresh(revision_id: int) -> Revision:
    return db.session.get(Revision, revision_id, populate_existing=True)


def current_body(page_id: int) -> str:
    page = db.session.get(Page, page_id, populate_existing=True)
    return fresh(page.current_revision_id).body


def published_count(page_id: int) -> int:
    return db.session.scalar(
        select(func.count(Revision.id)).where(
            Revision.page_id == page_id, Revision.status == "published"
        )
    )


def approvals_of(revision_id: int) -> int:
    return db.session.scalar(
        select(func.count(Review.id)).where(
            Review.revision_id == revision_id, Review.decision == "approve"
        )
    )


def new_page(author: User, n: int, tag: str):
    result = editing.save(author, title=f"Race {tag} {n}", body=BODY, summary="start")
    return result.revision.page


def users(*names: str) -> list[User]:
    return [db.session.scalars(select(User).where(User.username == n)).one() for n in names]


def check_approval_races(app: Flask, rounds: int = ROUNDS) -> None:
    """Two reviewers approve two proposals of one page at once, round after round."""
    admin, carl, cleo, rita, ravi = users("alice", "carl", "cleo", "rita", "ravi")
    outcomes = {"both": 0, "one": 0}
    for n in range(rounds):
        overlapping = n % 2 == 1  # odd rounds: both proposals rewrite the same line
        page = new_page(admin, n, "approve")
        p1 = editing.save(carl, title=page.title, body=changed(1, "carl"), page=page).revision
        line = 1 if overlapping else 6
        p2 = editing.save(cleo, title=page.title, body=changed(line, "cleo"), page=page).revision
        p1_id, p2_id, page_id = p1.id, p2.id, page.id
        if n % 4 < 2:
            jobs = [approver(rita.id, p1_id), approver(ravi.id, p2_id)]
        else:
            jobs = [approver(ravi.id, p2_id), approver(rita.id, p1_id)]
        results = race(app, jobs)

        body = current_body(page_id)
        states = {pid: fresh(pid) for pid in (p1_id, p2_id)}
        landed = [pid for pid, r in states.items() if r.status in ("published", "merged")]
        for pid, r in states.items():
            tag = "carl" if pid == p1_id else "cleo"
            if pid in landed:
                assert f"[{tag}]" in body, "an approved change was lost"
                if r.status == "merged":
                    merged = db.session.scalars(
                        select(Revision).where(Revision.merged_from_id == pid)
                    ).one()
                    assert merged.status == "published" and merged.author_id == r.author_id
            else:
                # refused: still open, marked, and the approval was not recorded
                assert r.status == "pending" and r.merge_state == "conflict"
                assert f"[{tag}]" not in body
                assert approvals_of(pid) == 0
        refused = [value for kind, value in results if kind == "refused"]
        assert all(isinstance(exc, editing.ReviewConflict) for exc in refused)
        assert len(refused) == 2 - len(landed)
        if overlapping:
            assert len(landed) == 1, "two overlapping changes cannot both land"
        else:
            assert len(landed) == 2, "changes to different lines must both land"
        outcomes["both" if len(landed) == 2 else "one"] += 1
        assert published_count(page_id) == 1 + len(landed)  # the start, plus one per landed change
    assert outcomes == {"both": (rounds + 1) // 2, "one": rounds // 2}


def check_double_approval(app: Flask, rounds: int = ROUNDS) -> None:
    """Two reviewers approve the same proposal at once: it is published exactly once."""
    admin, carl, rita, ravi = users("alice", "carl", "rita", "ravi")
    for n in range(rounds):
        page = new_page(admin, n, "same")
        p = editing.save(carl, title=page.title, body=changed(3, "carl"), page=page).revision
        p_id, page_id = p.id, page.id
        results = race(app, [approver(rita.id, p_id), approver(ravi.id, p_id)])
        kinds = sorted(kind for kind, _ in results)
        assert kinds == ["ok", "refused"], results
        refused = next(value for kind, value in results if kind == "refused")
        assert "published already" in str(refused)
        assert fresh(p_id).status == "published"
        assert published_count(page_id) == 2  # the start and the proposal, once
        assert approvals_of(p_id) == 1


def check_decision_races(app: Flask, rounds: int = ROUNDS) -> None:
    """Approve and reject the same proposal at once: exactly one decision sticks."""
    admin, carl, rita, ravi = users("alice", "carl", "rita", "ravi")
    for n in range(rounds):
        page = new_page(admin, n, "decide")
        p_id = editing.save(carl, title=page.title, body=changed(2, "c"), page=page).revision.id

        def rejecter(pid: int = p_id) -> None:
            editing.reject(db.session.get(User, ravi.id), pid, "no")

        results = race(app, [approver(rita.id, p_id), rejecter])
        assert sorted(kind for kind, _ in results) == ["ok", "refused"], results
        status = fresh(p_id).status
        decisions = set(
            db.session.scalars(select(Review.decision).where(Review.revision_id == p_id))
        )
        assert (status, decisions) in (("published", {"approve"}), ("rejected", {"reject"}))


def check_save_races(app: Flask, rounds: int = ROUNDS) -> None:
    """Two reviewers save the same page from the same base at once: merge or EditConflict."""
    admin, rita, ravi = users("alice", "rita", "ravi")
    for n in range(rounds):
        overlapping = n % 2 == 1
        page = new_page(admin, n, "save")
        page_id, base_id = page.id, page.current_revision_id
        line = 0 if overlapping else 7
        results = race(
            app,
            [
                saver(rita.id, page_id, base_id, changed(0, "rita")),
                saver(ravi.id, page_id, base_id, changed(line, "ravi")),
            ],
        )
        body = current_body(page_id)
        ok = [value for kind, value in results if kind == "ok"]
        refused = [value for kind, value in results if kind == "refused"]
        assert all(isinstance(exc, editing.EditConflict) for exc in refused)
        if overlapping:
            assert len(ok) == 1 and len(refused) == 1
            assert ("[rita]" in body) != ("[ravi]" in body)
        else:
            assert len(ok) == 2 and sorted(ok) == [False, True]  # the second one merged
            assert "[rita]" in body and "[ravi]" in body


CHECKS = [check_approval_races, check_double_approval, check_decision_races, check_save_races]


# --- on the suite's database (SQLite file, or PostgreSQL when TEST_DATABASE_URL says so) ---------


@pytest.mark.parametrize("check", CHECKS, ids=lambda f: f.__name__)
def test_races_on_the_suite_database(
    app, admin, contributor, contributor2, reviewer, reviewer2, check
):
    check(app)


# --- explicitly on PostgreSQL, in a throwaway database -------------------------------------------


@pytest.fixture(scope="module")
def pg_app(tmp_path_factory):
    """An app on a throwaway, freshly migrated PostgreSQL database with the five test users."""
    from flask_migrate import upgrade

    instance = tmp_path_factory.mktemp("pg_race")
    with fresh_postgres("review_race") as url:
        app = create_app(
            {
                "ENV": "testing",
                "DATABASE_URL": url,
                "SECRET_KEY": "test-secret-key",
                "INSTANCE_PATH": str(instance),
                "SEARCH_INDEX_DIR": str(instance / "index"),
                "RATELIMIT_ENABLED": False,
                "SESSION_COOKIE_SECURE": False,
            }
        )
        with app.app_context():
            upgrade()
            for username, role in [
                ("alice", "admin"),
                ("carl", "contributor"),
                ("cleo", "contributor"),
                ("rita", "reviewer"),
                ("ravi", "reviewer"),
            ]:
                accounts.create_user(username, PASSWORD, role=role)
            yield app
            db.session.remove()
            db.engine.dispose()


@pytest.mark.parametrize("check", CHECKS, ids=lambda f: f.__name__)
def test_races_on_postgresql(pg_app, check):
    assert db.engine.dialect.name == "postgresql"
    check(pg_app)
