"""Database engine set-up: SQLite pragmas and write transactions that take the lock up front."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from wiki.extensions import db

_IMMEDIATE: ContextVar[bool] = ContextVar("immediate", default=False)


def configure_engine(engine: Engine) -> None:
    """On SQLite: WAL, foreign keys, busy timeout, and BEGIN IMMEDIATE for write transactions.

    A deferred BEGIN that reads then writes fails with "database is locked" under several
    workers whatever the busy timeout; taking the write lock first makes writers queue instead.
    """
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # noqa: ANN001
        dbapi_conn.isolation_level = None  # let SQLAlchemy's begin event emit BEGIN
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # noqa: ANN001
        conn.exec_driver_sql("BEGIN IMMEDIATE" if _IMMEDIATE.get() else "BEGIN")


@contextmanager
def writing() -> Iterator[None]:
    """Run the block in a fresh write transaction; commit on success, roll back on error."""
    if db.session().in_transaction():
        db.session.commit()
    token = _IMMEDIATE.set(True)
    try:
        yield
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    finally:
        _IMMEDIATE.reset(token)


def is_sqlite() -> bool:
    return db.engine.dialect.name == "sqlite"


def read_connection() -> Connection:
    """A connection of its own in a read transaction (plain BEGIN, even inside `writing()`)."""
    token = _IMMEDIATE.set(False)
    try:
        conn = db.engine.connect()
        conn.begin()
    finally:
        _IMMEDIATE.reset(token)
    return conn
