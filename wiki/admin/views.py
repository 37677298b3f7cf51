"""Admin: users and roles."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select

from wiki import accounts, queries
from wiki.models import AuditLog, User
from wiki.models.users import ROLES
from wiki.web import login_required

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
@login_required
def _admins_only():
    if not current_user.is_admin:
        abort(403, "Only admins can open this page.")


@bp.route("/users")
def users():
    stmt = select(User).order_by(func.lower(User.username))
    return render_template(
        "admin/users.html", users=queries.paginate(stmt, per_page=100), roles=ROLES
    )


@bp.route("/users/<int:user_id>", methods=["POST"])
def update_user(user_id: int):
    action = request.form.get("action", "")
    try:
        if action == "role":
            user = accounts.set_role(current_user, user_id, request.form.get("role", ""))
            flash(f"{user.username} is now {user.role}.", "success")
        elif action in ("deactivate", "activate"):
            user = accounts.set_active(current_user, user_id, action == "activate")
            flash(f"{user.username} is {'active' if user.active else 'deactivated'}.", "success")
        else:
            abort(400, "Unknown action.")
    except accounts.AccountError as exc:
        flash(str(exc), "error")
    return redirect(url_for("admin.users", page=request.args.get("page", 1, type=int)))


@bp.route("/audit")
def audit():
    stmt = select(AuditLog).order_by(AuditLog.id.desc())
    return render_template("admin/audit.html", entries=queries.paginate(stmt, per_page=100))
