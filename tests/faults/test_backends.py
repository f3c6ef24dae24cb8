"""The production shape's back-ends fail under running jobs: Redis (a redis-server of the test's
own, with an append-only file) is restarted, and PostgreSQL terminates every connection of the
service (`pg_terminate_backend`, on a database created for the test). Every job reaches a
terminal state, with a reason if it failed; nothing is lost (each job's steps 1..N and its
checkpoints are all there) or duplicated (no step, checkpoint or outcome recorded twice)."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.faults.conftest import KILLABLE

pytestmark = [pytest.mark.service, pytest.mark.timeout(600)]
JOBS = 3


def _terminate_connections(database_url: str) -> int:
    """pg_terminate_backend of every other session on the service's database."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = make_url(database_url).database
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            killed = connection.execute(
                text(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            ).scalar_one()
    finally:
        admin.dispose()
    return int(killed)


def test_redis_restart_and_terminated_database_connections_lose_nothing(production) -> None:
    s, redis, database_url = production.stack, production.redis, production.database_url
    ids = [s.submit({**KILLABLE, "seed": seed})["id"] for seed in range(JOBS)]
    s.wait(ids[0], lambda j: j["status"] == "running" and j["progress"]["step"] >= 3)
    redis.restart()  # the worker's broker connection drops mid-job; queued messages persist
    s.wait(ids[0], lambda j: j["status"] != "running" or j["progress"]["step"] >= 6)
    assert _terminate_connections(database_url) >= 1  # the worker's (and the API's) sessions
    s.wait(ids[1], lambda j: j["status"] != "queued")
    redis.restart()
    assert _terminate_connections(database_url) >= 0
    jobs = [s.finished(job_id, timeout=300) for job_id in ids]

    for job in jobs:
        assert job["status"] in ("succeeded", "failed"), job
        if job["status"] == "failed":
            assert job["error"]["code"] and job["error"]["message"], job
    assert [j["status"] for j in jobs] == ["succeeded"] * JOBS, [j.get("error") for j in jobs]
    for job in jobs:
        events = s.events(job["id"])
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        kinds = Counter(e["type"] for e in events)
        assert kinds["finished"] == 1 and kinds["checkpoint"] == len(KILLABLE["targets"])
        steps = Counter(e["data"]["step"] for e in events if e["type"] == "step")
        # every step there; one recorded twice only if its worker was presumed dead meanwhile
        assert sorted(steps) == list(range(1, KILLABLE["steps"] + 1))
        started = kinds["started"]
        assert all(n <= started for n in steps.values())
        listing = s.client.get(f"/v1/jobs/{job['id']}/checkpoints", headers=s.headers).json()["data"]
        assert sorted(c["target_sparsity"] for c in listing) == KILLABLE["targets"]
    assert s.client.get("/readyz").status_code == 200
