"""Register, log in, log out, change password."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from wiki import accounts
from wiki.auth.forms import LoginForm, PasswordForm, RegisterForm
from wiki.extensions import limiter
from wiki.web import rate_limit

bp = Blueprint("auth", __name__, url_prefix="/auth")


def _safe_next(target: str | None) -> str:
    """Only same-site paths (stops open redirects through ?next=)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("pages.home")


def _start_session(user, remember: bool) -> None:
    session.clear()  # a fresh session at login (stops session fixation)
    login_user(user, remember=remember)


@bp.route("/register", methods=["GET", "POST"])
@limiter.limit(rate_limit("RATELIMIT_REGISTER"), methods=["POST"])
def register():
    if current_user.is_authenticated:
        return redirect(url_for("pages.home"))
    form = RegisterForm()
    if form.validate_on_submit():
        try:
            user = accounts.create_user(
                form.username.data, form.password.data, email=form.email.data
            )
        except accounts.AccountError as exc:
            form.username.errors.append(str(exc))
        else:
            _start_session(user, remember=False)
            flash(f"Welcome, {user.username}! Your account is ready.", "success")
            return redirect(url_for("pages.home"))
    return render_template("auth/register.html", form=form), 200 if not form.errors else 422


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(rate_limit("RATELIMIT_LOGIN"), methods=["POST"])
def login():
    form = LoginForm()
    if request.method == "GET":
        form.next.data = request.args.get("next", "")
    if current_user.is_authenticated and request.method == "GET":
        return redirect(_safe_next(form.next.data))
    if form.validate_on_submit():
        try:
            user = accounts.authenticate(form.username.data.strip(), form.password.data)
        except accounts.AccountError as exc:
            flash(str(exc), "error")
            return render_template("auth/login.html", form=form), 401
        _start_session(user, remember=form.remember.data)
        flash(f"Logged in as {user.username}.", "success")
        return redirect(_safe_next(form.next.data))
    return render_template("auth/login.html", form=form), 200 if not form.errors else 422


@bp.route("/logout", methods=["POST"])
def logout():
    session.clear()
    logout_user()  # after clear(): it marks the remember-me cookie for deletion in the session
    flash("You are logged out.", "info")
    return redirect(url_for("pages.home"))


@bp.route("/password", methods=["GET", "POST"])
@login_required
@limiter.limit(rate_limit("RATELIMIT_PASSWORD"), methods=["POST"])
def password():
    form = PasswordForm()
    if form.validate_on_submit():
        try:
            accounts.change_password(current_user, form.current.data, form.password.data)
        except accounts.AccountError as exc:
            form.password.errors.append(str(exc))
        else:
            user = accounts.find_user(current_user.username)
            _start_session(user, remember=False)
            flash("Password changed. Your other sessions are logged out.", "success")
            return redirect(url_for("special.user", username=user.username))
    return render_template("auth/password.html", form=form), 200 if not form.errors else 422
