"""Migrations build exactly the schema the models describe, on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text

from tests.conftest import fresh_postgres
from wiki import create_app
from wiki.extensions import db as _db


def _app(url: str, tmp_path):
    return create_app(
        {"ENV": "testing", "SECRET_KEY": "x", "INSTANCE_PATH": str(tmp_path), "DATABASE_URL": url}
    )


def _differences() -> list:
    """What autogenerate would change to make the database match the models (nothing, ideally)."""
    with _db.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": False}
        )
        return compare_metadata(context, _db.metadata)


def _upgrade_and_compare(url: str, tmp_path) -> None:
    app = _app(url, tmp_path)
    with app.app_context():
        assert set(inspect(_db.engine).get_table_names()) == set()
        upgrade()
        try:
            assert _differences() == []
            tables = set(inspect(_db.engine).get_table_names())
            assert {t.name for t in _db.metadata.sorted_tables} | {"alembic_version"} == tables
            head = _db.session.execute(text("SELECT version_num FROM alembic_version")).scalar()
            assert head
        finally:
            _db.session.remove()
            _db.engine.dispose()


def test_sqlite_upgrade_matches_models(tmp_path):
    _upgrade_and_compare(f"sqlite:///{tmp_path / 'fresh.db'}", tmp_path)


def test_postgresql_upgrade_matches_models(tmp_path):
    with fresh_postgres("nexus_migrations") as url:
        _upgrade_and_compare(url, tmp_path)


def test_sqlite_downgrade_to_base_and_up_again(tmp_path):
    app = _app(f"sqlite:///{tmp_path / 'roundtrip.db'}", tmp_path)
    with app.app_context():
        upgrade()
        downgrade(revision="base")
        assert set(inspect(_db.engine).get_table_names()) <= {"alembic_version"}
        assert not [n for n in inspect(_db.engine).get_table_names() if n.startswith("_alembic")]
        upgrade()
        assert _differences() == []
        _db.engine.dispose()


def test_postgresql_downgrade_to_base(tmp_path):
    with fresh_postgres("nexus_migrations") as url:
        app = _app(url, tmp_path)
        with app.app_context():
            upgrade()
            downgrade(revision="base")
            assert set(inspect(_db.engine).get_table_names()) <= {"alembic_version"}
            _db.session.remove()
            _db.engine.dispose()


@pytest.mark.parametrize("revision", ["head"])
def test_upgrade_is_idempotent(tmp_path, revision):
    app = _app(f"sqlite:///{tmp_path / 'twice.db'}", tmp_path)
    with app.app_context():
        upgrade(revision=revision)
        upgrade(revision=revision)  # a second `flask db upgrade` at start-up changes nothing
        assert _differences() == []
        _db.engine.dispose()
