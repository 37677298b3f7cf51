"""`flask wiki ...` commands: users, import/export, reindex, backup."""

from __future__ import annotations

import secrets

import click
from flask.cli import AppGroup
from sqlalchemy import select

from wiki import accounts
from wiki.extensions import db
from wiki.models import User
from wiki.models.users import ROLES

wiki_cli = AppGroup("wiki", help="Nexus Wiki administration.")


@wiki_cli.command("create-user")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), default="contributor", show_default=True)
@click.option("--password", help="Prompted for when omitted.")
@click.option("--email", default=None)
def create_user(name: str, role: str, password: str | None, email: str | None) -> None:
    """Create an account with the given role."""
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = accounts.create_user(name, password, email=email, role=role)
    except accounts.AccountError as exc:
        raise click.ClickException(str(exc))
    click.echo(f"Created {user.role} {user.username}.")


@wiki_cli.command("ensure-admin")
def ensure_admin() -> None:
    """Create the first admin with a random password, printed once, if no admin exists."""
    if db.session.scalars(select(User).where(User.role == "admin")).first() is not None:
        return
    name = "admin"
    if accounts.find_user(name) is not None:
        name = f"admin-{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(15)
    accounts.create_user(name, password, role="admin")
    bar = "=" * 64
    click.echo(
        f"\n{bar}\n  First run: created the admin account.\n"
        f"    username: {name}\n    password: {password}\n"
        f"  This is shown once: log in and change it at /auth/password.\n{bar}\n"
    )


def register_commands() -> None:
    """Attach the commands that live next to what they drive."""
    from wiki.backup import backup_command, restore_command
    from wiki.importer import export_command, import_command
    from wiki.search.cli import reindex_command

    for command in (
        import_command,
        export_command,
        reindex_command,
        backup_command,
        restore_command,
    ):
        wiki_cli.add_command(command)


register_commands()
