"""Engines and the two kinds of unit of work: a read session and a write transaction.

SQLite gets WAL, a busy timeout and foreign keys. A write transaction starts with BEGIN
IMMEDIATE, so concurrent writers queue on the busy timeout instead of failing halfway; a read
session starts a deferred transaction (plain BEGIN) with `query_only` on, which takes no write
lock: WAL lets it read a consistent snapshot beside the worker's writes. On PostgreSQL a read
session is a READ ONLY transaction. Either way a read session that tries to write fails loudly.
Any session used without an explicit `begin()` is a read session (`ReadUnlessBegun`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, SessionTransactionOrigin, sessionmaker

READ_ONLY = "gisp_read_only"  # execution option of the read engine; the SQLite begin hook reads it


def make_engine(url: str, pool_size: int = 5) -> Engine:
    """`pool_size`: connections kept per process; with no overflow, a thread that finds none
    free waits for one (`pool_timeout`), so size it to the threads that may ask at once."""
    pool = {"pool_size": pool_size, "max_overflow": 0, "pool_timeout": 60}
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **pool)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record) -> None:
            dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(connection) -> None:
            read_only = bool(connection.get_execution_options().get(READ_ONLY))
            if connection.info.get("query_only") is not read_only:  # a pooled connection remembers
                connection.exec_driver_sql(f"PRAGMA query_only={'ON' if read_only else 'OFF'}")
                connection.info["query_only"] = read_only
            connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, **pool)


def read_engine(engine: Engine) -> Engine:
    """The same engine and pool, whose transactions only read."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(**{READ_ONLY: True}, postgresql_readonly=True)
    return engine.execution_options(**{READ_ONLY: True})


class ReadUnlessBegun(Session):
    """A session that reads unless its transaction was begun with `session.begin()`.

    The service writes only in `write_transaction` (an explicit begin, committed at the end); a
    session used without one autobegins and is closed without a commit, so whatever it does is a
    read. Such a transaction goes to the read engine (deferred, read-only), and so no plain
    `with rt.sessions() as session:` read takes SQLite's write lock, wherever it is written."""

    def __init__(self, *args, read_bind: Engine | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.read_bind = read_bind

    def get_bind(self, *args, **kwargs):
        transaction = self.get_transaction()  # None: this call is about to autobegin one
        autobegun = transaction is None or transaction.origin is SessionTransactionOrigin.AUTOBEGIN
        if self.read_bind is not None and autobegun:
            return self.read_bind
        return super().get_bind(*args, **kwargs)


def make_sessionmaker(engine: Engine, *, read_unless_begun: bool = True) -> sessionmaker[Session]:
    """Sessions on `engine`; by default an autobegun transaction reads (see `ReadUnlessBegun`)."""
    if not read_unless_begun:
        return sessionmaker(engine, expire_on_commit=False)
    return sessionmaker(engine, class_=ReadUnlessBegun, read_bind=read_engine(engine), expire_on_commit=False)


@contextmanager
def write_transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work that writes: commit on success, roll back on error."""
    with factory() as session, session.begin():
        yield session


T = TypeVar("T")
log = logging.getLogger("gisp.db")
WRITE_ATTEMPTS = 3


def write_retrying(factory: sessionmaker[Session], work: Callable[[Session], T]) -> T:
    """`work` in one write transaction, run again on a fresh connection when the database drops the
    connection under it (a restart, `pg_terminate_backend`). Only a drop *before* the commit is
    retried: nothing of that attempt was written, so running it again writes it once. A drop
    during the commit itself is raised (the write may or may not have landed)."""
    attempt = 0
    while True:
        attempt += 1
        with factory() as session:
            session.begin()
            try:
                result = work(session)
                session.flush()
            except DBAPIError as exc:
                session.rollback()
                if not exc.connection_invalidated or attempt == WRITE_ATTEMPTS:
                    raise
                log.warning("the database dropped the connection (attempt %d); writing again: %s", attempt, exc.orig)
                continue
            except BaseException:
                session.rollback()
                raise
            session.commit()
            return result


@contextmanager
def read_session(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session for reads (`Runtime.read_sessions`, or any of `make_sessionmaker`'s: used without
    `begin()`, they read). It takes a connection at its first query, not before, and ends by
    rolling back."""
    with factory() as session:
        yield session
