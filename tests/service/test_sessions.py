"""Reads are reads (issue 12, item 10): a read session takes no write lock, so the API answers
while the worker holds one, and a read session that tries to write fails instead of dropping it."""

from __future__ import annotations

import threading
import time

import pytest

pytestmark = pytest.mark.service


def test_api_reads_answer_while_a_writer_holds_the_lock(service, finished_job):
    """The worker's step transaction holds SQLite's write lock; a poll of the job must not wait
    for it (before: every request began with BEGIN IMMEDIATE and queued behind the writer)."""
    from sqlalchemy import update

    from gisp_service.db.models import Job
    from gisp_service.db.session import write_transaction

    locked, release = threading.Event(), threading.Event()

    def writer() -> None:
        with write_transaction(service.rt.sessions) as session:
            session.execute(update(Job).where(Job.id == finished_job["id"]).values(eta_seconds=1.0))
            locked.set()
            release.wait(30)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert locked.wait(10)
        started = time.monotonic()
        response = service.client.get(f"/v1/jobs/{finished_job['id']}", headers=service.headers())
        listed = service.client.get("/v1/jobs", headers=service.headers())
        elapsed = time.monotonic() - started
    finally:
        release.set()
        thread.join()
    assert response.status_code == 200 and listed.status_code == 200
    assert elapsed < 5, f"the reads waited {elapsed:.1f}s for the writer"


@pytest.mark.parametrize("factory", ["read_sessions", "sessions"])
def test_a_read_session_refuses_to_write(service, factory):
    """`read_sessions`, and any session used without begin() (it would never commit): a write
    there fails instead of being dropped at the rollback."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from gisp_service.db.session import read_session

    with pytest.raises(DBAPIError, match="(?i)read.?only"):
        with read_session(getattr(service.rt, factory)) as session:
            session.execute(text("UPDATE tenants SET name = name"))


def test_a_plain_session_reads_beside_a_writer(service, finished_job):
    """`with rt.sessions() as session:` (no begin) is a read: it does not queue behind a writer."""
    from gisp_service.db.models import Job
    from gisp_service.db.session import write_transaction

    locked, release = threading.Event(), threading.Event()

    def writer() -> None:
        with write_transaction(service.rt.sessions) as session:
            session.get(Job, finished_job["id"]).eta_seconds = 2.0
            session.flush()
            locked.set()
            release.wait(30)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert locked.wait(10)
        started = time.monotonic()
        with service.rt.sessions() as session:
            status = session.get(Job, finished_job["id"]).status
        elapsed = time.monotonic() - started
    finally:
        release.set()
        thread.join()
    assert status == "succeeded" and elapsed < 5, elapsed


def test_a_write_after_a_read_on_the_same_connection_still_writes(service):
    """The pool hands one connection to reads and writes in turn: the read-only mode is per transaction."""
    from sqlalchemy import select

    from gisp_service.db.models import Tenant
    from gisp_service.db.session import read_session, write_transaction

    for _ in range(3):
        with read_session(service.rt.read_sessions) as session:
            names = set(session.scalars(select(Tenant.name)))
        with write_transaction(service.rt.sessions) as session:
            tenant = session.scalar(select(Tenant).where(Tenant.name == "bob"))
            tenant.name = "bob"  # a no-op UPDATE still needs a writable transaction
            session.flush()
    assert {"alice", "bob"} <= names
