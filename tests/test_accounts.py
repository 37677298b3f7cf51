"""Accounts: registration, login and back-off, sessions, CLI user commands, the admin page."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from tests.conftest import PASSWORD
from wiki import accounts
from wiki.models import AuditLog, User

NEW_PASSWORD = "another long passphrase"


def _register(client, **fields):
    data = {"username": "newbie", "email": "", "password": PASSWORD, "confirm": PASSWORD}
    data.update(fields)
    return client.submit("/auth/register", data, token_from="/auth/register")


def _users(db) -> int:
    return db.session.scalar(select(func.count()).select_from(User))


def _logged_in_as(client) -> str | None:
    """The username the header shows, or None when the visitor is anonymous."""
    html = client.get("/special/recent").get_data(as_text=True)
    if "Log out" not in html:
        return None
    return html


# --- registration -------------------------------------------------------------------------


def test_register_creates_contributor_and_logs_in(client, db):
    r = _register(client, username="Newbie", email="new@example.org")
    assert r.status_code == 302
    user = accounts.find_user("newbie")
    assert user is not None and user.username == "Newbie"
    assert user.role == "contributor" and user.email == "new@example.org"
    assert user.password_hash != PASSWORD and user.check_password(PASSWORD)
    assert user.password_hash.startswith(("scrypt:", "pbkdf2:"))  # werkzeug's default hash
    html = client.get(r.headers["Location"], follow_redirects=True).get_data(as_text=True)
    assert "Welcome, Newbie" in html and "Log out" in html


def test_register_email_is_optional(client, db):
    assert _register(client, email="").status_code == 302
    assert accounts.find_user("newbie").email is None


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"password": "short", "confirm": "short"}, "Use at least 10 characters."),
        ({"confirm": "something else entirely"}, "The passwords differ."),
        ({"password": "password123", "confirm": "password123"}, "most common ones"),
        ({"username": "x"}, "Use 2 to 64 letters"),
        ({"username": "bad name!"}, "Use 2 to 64 letters"),
        ({"username": ""}, "This field is required."),
        ({"email": "not-an-email"}, "does not look like an email"),
        (
            {"username": "longpassword", "password": "longpassword", "confirm": "longpassword"},
            "must not be your username",
        ),
    ],
)
def test_register_refuses_bad_input(client, db, fields, message):
    r = _register(client, **fields)
    assert r.status_code == 422
    assert message in r.get_data(as_text=True)
    assert _users(db) == 0


@pytest.mark.parametrize("name", ["carl", "CARL", "Carl"])
def test_usernames_unique_without_regard_to_case(client, db, contributor, name):
    r = _register(client, username=name)
    assert r.status_code == 422 and "That username is taken." in r.get_data(as_text=True)
    assert _users(db) == 1


def test_create_user_domain_refuses_case_duplicate(db, contributor):
    with pytest.raises(accounts.AccountError, match="taken"):
        accounts.create_user("CaRl", PASSWORD)


def test_register_keeps_typed_values(client, db):
    html = _register(client, username="keepme", confirm="different password!").get_data(
        as_text=True
    )
    assert 'value="keepme"' in html and PASSWORD not in html


# --- login / logout -----------------------------------------------------------------------


def test_login_without_remember_sets_no_remember_cookie(client, contributor):
    r = client.login("carl")
    assert r.status_code == 302
    assert client.get_cookie("remember_token") is None
    assert _logged_in_as(client)


def test_login_with_remember_sets_cookie_that_survives_session_loss(client, contributor):
    assert client.login("carl", remember=True).status_code == 302
    cookie = client.get_cookie("remember_token")
    assert cookie is not None and cookie.http_only
    client.delete_cookie("session")
    assert _logged_in_as(client)


def test_login_username_is_case_insensitive(client, contributor):
    assert client.login("CARL").status_code == 302


@pytest.mark.parametrize("username,password", [("carl", "wrong password!"), ("nobody", PASSWORD)])
def test_wrong_credentials(client, contributor, username, password):
    r = client.login(username, password)
    assert r.status_code == 401
    assert "Wrong username or password." in r.get_data(as_text=True)
    assert not _logged_in_as(client)


def test_deactivated_user_cannot_log_in_and_session_ends(app, client, admin, contributor):
    assert client.login("carl").status_code == 302
    assert _logged_in_as(client)
    accounts.set_active(admin, contributor.id, False)
    assert not _logged_in_as(client)
    r = client.get("/wiki/x/edit")
    assert r.status_code == 302 and "/auth/login" in r.headers["Location"]
    other = app.test_client()
    r = other.login("carl")
    assert r.status_code == 401 and "deactivated" in r.get_data(as_text=True)


def test_back_off_after_repeated_failures(settings, app, client, contributor):
    limit = app.config["LOGIN_MAX_FAILURES"]
    for _ in range(limit):
        assert client.login("carl", "wrong password!").status_code == 401
    r = client.login("carl")  # the right password, but the account is cooling down
    assert r.status_code == 401
    assert "Too many failed attempts" in r.get_data(as_text=True)
    assert not _logged_in_as(client)
    user = accounts.find_user("carl")
    assert user.locked_until is not None and user.failed_logins == limit


def test_success_before_limit_resets_failures(client, app, contributor):
    for _ in range(app.config["LOGIN_MAX_FAILURES"] - 1):
        client.login("carl", "wrong password!")
    assert client.login("carl").status_code == 302
    assert accounts.find_user("carl").failed_logins == 0


def test_logout_is_post_only_and_needs_csrf(contributor_client):
    assert contributor_client.get("/auth/logout").status_code == 405
    r = contributor_client.post("/auth/logout")
    assert r.status_code == 400
    assert _logged_in_as(contributor_client)


def test_logout_clears_session_and_remember_cookie(client, contributor):
    client.login("carl", remember=True)
    assert client.get_cookie("remember_token") is not None
    r = client.submit("/auth/logout", token_from="/special/recent")
    assert r.status_code == 302
    assert client.get_cookie("remember_token") is None
    assert not _logged_in_as(client)


def test_change_password_logs_out_other_sessions(app, contributor):
    here, elsewhere, remembered = app.test_client(), app.test_client(), app.test_client()
    here.login("carl")
    elsewhere.login("carl")
    remembered.login("carl", remember=True)
    r = here.submit(
        "/auth/password",
        {"current": PASSWORD, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
        token_from="/auth/password",
    )
    assert r.status_code == 302
    assert _logged_in_as(here)
    assert not _logged_in_as(elsewhere)
    remembered.delete_cookie("session")
    assert not _logged_in_as(remembered)
    assert app.test_client().login("carl", NEW_PASSWORD).status_code == 302
    assert app.test_client().login("carl", PASSWORD).status_code == 401


def test_change_password_wrong_current(contributor_client):
    r = contributor_client.submit(
        "/auth/password",
        {"current": "not my password", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
        token_from="/auth/password",
    )
    assert r.status_code == 422 and "current password is wrong" in r.get_data(as_text=True)


@pytest.mark.parametrize(
    "target,expected",
    [
        ("//evil.example", "/"),
        ("https://evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("/wiki/docker/edit", "/wiki/docker/edit"),
    ],
)
def test_login_next_only_same_site(client, contributor, target, expected):
    r = client.submit(
        "/auth/login",
        {"username": "carl", "password": PASSWORD, "next": target},
        token_from="/auth/login",
    )
    assert r.status_code == 302
    location = r.headers["Location"]
    assert "evil.example" not in location
    assert location.endswith(expected) or location == expected


# --- CLI ----------------------------------------------------------------------------------


def test_cli_create_user_with_options(app, db):
    result = app.test_cli_runner().invoke(
        args=[
            "wiki",
            "create-user",
            "Rose",
            "--role",
            "reviewer",
            "--password",
            PASSWORD,
            "--email",
            "rose@example.org",
        ]
    )
    assert result.exit_code == 0, result.output
    assert "Created reviewer Rose" in result.output
    user = accounts.find_user("rose")
    assert user.role == "reviewer" and user.email == "rose@example.org"
    assert user.check_password(PASSWORD)


def test_cli_create_user_prompts_for_password(app, db):
    result = app.test_cli_runner().invoke(
        args=["wiki", "create-user", "sam"], input=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output  # hidden input
    user = accounts.find_user("sam")
    assert user.role == "contributor" and user.check_password(PASSWORD)


@pytest.mark.parametrize(
    "args,message",
    [
        (["carl", "--password", PASSWORD], "taken"),
        (["weak", "--password", "short"], "at least 10"),
        (["x!", "--password", PASSWORD], "Use 2 to 64"),
    ],
)
def test_cli_create_user_refuses(app, db, contributor, args, message):
    result = app.test_cli_runner().invoke(args=["wiki", "create-user", *args])
    assert result.exit_code != 0 and message in result.output


def test_cli_create_user_bad_role(app, db):
    result = app.test_cli_runner().invoke(
        args=["wiki", "create-user", "bob", "--role", "god", "--password", PASSWORD]
    )
    assert result.exit_code != 0 and accounts.find_user("bob") is None


def test_cli_ensure_admin_once(app, db):
    runner = app.test_cli_runner()
    first = runner.invoke(args=["wiki", "ensure-admin"])
    assert first.exit_code == 0, first.output
    admins = db.session.scalars(select(User).where(User.role == "admin")).all()
    assert len(admins) == 1 and admins[0].username == "admin"
    password = first.output.split("password:")[1].split()[0]
    assert len(password) >= 16 and password not in admins[0].password_hash
    assert accounts.authenticate("admin", password).id == admins[0].id
    second = runner.invoke(args=["wiki", "ensure-admin"])
    assert second.exit_code == 0 and second.output.strip() == ""
    assert db.session.scalar(select(func.count()).where(User.role == "admin")) == 1


def test_cli_ensure_admin_when_name_taken_by_contributor(app, db):
    accounts.create_user("admin", PASSWORD)
    result = app.test_cli_runner().invoke(args=["wiki", "ensure-admin"])
    assert result.exit_code == 0
    admins = db.session.scalars(select(User).where(User.role == "admin")).all()
    assert len(admins) == 1 and admins[0].username.startswith("admin-")


# --- admin page ---------------------------------------------------------------------------


def _admin_post(client, user_id, **data):
    return client.submit(f"/admin/users/{user_id}", data, token_from="/admin/users")


def test_admin_users_page_lists_users(admin_client, contributor):
    html = admin_client.get("/admin/users").get_data(as_text=True)
    assert "carl" in html and "alice" in html and "<h1>Users</h1>" in html


def test_admin_changes_role_and_it_is_audited(admin_client, db, contributor):
    r = _admin_post(admin_client, contributor.id, action="role", role="reviewer")
    assert r.status_code == 302
    html = admin_client.get(r.headers["Location"]).get_data(as_text=True)
    assert "carl is now reviewer." in html
    db.session.expire_all()
    assert db.session.get(User, contributor.id).role == "reviewer"
    audit = admin_client.get("/admin/audit").get_data(as_text=True)
    assert "contributor -&gt; reviewer" in audit and "carl" in audit
    entry = db.session.scalars(select(AuditLog)).one()
    assert entry.action == "role" and entry.target == "carl"


def test_admin_deactivates_and_reactivates(admin_client, db, contributor):
    r = _admin_post(admin_client, contributor.id, action="deactivate")
    assert r.status_code == 302
    db.session.expire_all()
    assert not db.session.get(User, contributor.id).active
    _admin_post(admin_client, contributor.id, action="activate")
    db.session.expire_all()
    assert db.session.get(User, contributor.id).active
    actions = list(db.session.scalars(select(AuditLog.action).order_by(AuditLog.id)))
    assert actions == ["deactivate", "activate"]


def test_admin_cannot_demote_or_deactivate_self(admin_client, db, admin):
    r = _admin_post(admin_client, admin.id, action="role", role="contributor")
    html = admin_client.get(r.headers["Location"]).get_data(as_text=True)
    assert "cannot take away your own admin role" in html
    _admin_post(admin_client, admin.id, action="deactivate")
    db.session.expire_all()
    me = db.session.get(User, admin.id)
    assert me.role == "admin" and me.active


@pytest.mark.parametrize(
    "data,status",
    [({"action": "role", "role": "emperor"}, 302), ({"action": "explode"}, 400)],
)
def test_admin_bad_input(admin_client, db, contributor, data, status):
    r = _admin_post(admin_client, contributor.id, **data)
    assert r.status_code == status
    db.session.expire_all()
    assert db.session.get(User, contributor.id).role == "contributor"


def test_admin_unknown_user(admin_client):
    r = _admin_post(admin_client, 987654, action="deactivate")
    assert r.status_code == 302
    assert "No such user." in admin_client.get(r.headers["Location"]).get_data(as_text=True)


@pytest.mark.parametrize("url", ["/admin/users", "/admin/audit"])
def test_admin_pages_forbidden_for_non_admins(reviewer_client, contributor_client, url):
    assert contributor_client.get(url).status_code == 403
    assert reviewer_client.get(url).status_code == 403


def test_admin_post_forbidden_for_non_admins(reviewer_client, db, contributor):
    r = reviewer_client.submit(
        f"/admin/users/{contributor.id}",
        {"action": "role", "role": "admin"},
        token_from="/special/recent",
    )
    assert r.status_code == 403
    db.session.expire_all()
    assert db.session.get(User, contributor.id).role == "contributor"


def test_admin_pages_send_anonymous_to_login(client):
    r = client.get("/admin/users")
    assert r.status_code == 302 and "/auth/login?next=" in r.headers["Location"]
