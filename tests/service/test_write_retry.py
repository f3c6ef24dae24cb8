"""A write whose database connection is dropped under it (the fault tests' `pg_terminate_backend`,
which once failed a running job with `AdminShutdown`) is written again on a fresh connection, once;
any other database error is raised at once. Real PostgreSQL: the drop is a real termination of the
session's own backend, not a fake."""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import text

pytestmark = pytest.mark.service


@pytest.fixture
def postgres():
    from gisp_service.db.session import make_engine, make_sessionmaker

    url = os.environ.get("GISP_TEST_DATABASE_URL")
    if not url:
        pytest.skip("set GISP_TEST_DATABASE_URL to run against PostgreSQL")
    engine = make_engine(url)
    table = f"retry_{uuid.uuid4().hex[:8]}"
    with engine.begin() as connection:
        connection.execute(text(f"CREATE TABLE {table} (id integer PRIMARY KEY)"))
    try:
        yield engine, make_sessionmaker(engine), table
    finally:
        with engine.begin() as connection:
            connection.execute(text(f"DROP TABLE {table}"))
        engine.dispose()


def test_a_write_whose_connection_is_terminated_is_written_once_on_a_fresh_one(postgres) -> None:
    from gisp_service.db.session import write_retrying

    engine, sessions, table = postgres
    attempts = []

    def work(session) -> None:
        attempts.append(1)
        if len(attempts) == 1:  # the server ends this session's backend mid-transaction
            pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with engine.connect() as admin:
                admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        session.execute(text(f"INSERT INTO {table} VALUES (1)"))

    write_retrying(sessions, work)
    assert len(attempts) == 2
    with engine.connect() as connection:
        assert connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == 1


def test_any_other_database_error_is_raised_without_a_retry(postgres) -> None:
    from sqlalchemy.exc import IntegrityError

    from gisp_service.db.session import write_retrying

    engine, sessions, table = postgres
    attempts = []

    def work(session) -> None:
        attempts.append(1)
        session.execute(text(f"INSERT INTO {table} VALUES (1), (1)"))

    with pytest.raises(IntegrityError):
        write_retrying(sessions, work)
    assert len(attempts) == 1
