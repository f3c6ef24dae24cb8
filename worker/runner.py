"""Running one job: claim it in the database, drive the engine with a `JobObserver`, record the
outcome. Safe to call for any delivered message: a job that is finished, cancelled or alive on
another worker is left alone, so duplicate deliveries never run a job twice."""

from __future__ import annotations

import errno
import json
import logging
import threading
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session

import gisp
from gisp.config import PruneSettings
from gisp.trajectory import Trajectory
from gisp_service.api.checkpoints.materialize import materialize_checkpoint
from gisp_service.api.datasets.sources import job_data_paths
from gisp_service.api.webhooks import events as webhook_events
from gisp_service.core import model_refs
from gisp_service.core.logging import bind_log_context
from gisp_service.core.queue import enqueue
from gisp_service.core.runtime import Runtime
from gisp_service.db.models import Job, utcnow
from gisp_service.db.repos import checkpoints as checkpoint_repo
from gisp_service.db.repos import events as event_repo
from gisp_service.db.repos import jobs as job_repo
from gisp_service.db.session import write_retrying, write_transaction
from gisp_service.worker.observer import JobObserver
from gisp_service.worker.process import SHUTDOWN_REQUESTED

log = logging.getLogger("gisp.worker")


class Heartbeat(threading.Thread):
    """Keeps the job's heartbeat fresh during long steps (a step of a large model takes minutes)."""

    def __init__(self, rt: Runtime, job_id: str, lease: str) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{job_id}")
        self.rt, self.job_id, self.lease = rt, job_id, lease
        self.interval = max(0.2, min(10.0, rt.settings.heartbeat_timeout / 4))
        self.stopped = threading.Event()

    def run(self) -> None:
        bind_log_context(job_id=self.job_id)  # a thread starts with an empty context
        while not self.stopped.wait(self.interval):
            try:
                with write_transaction(self.rt.sessions) as session:
                    if not job_repo.heartbeat(session, self.job_id, self.lease):
                        return
            except Exception:  # a transient database error must not kill the job
                log.exception("heartbeat of job %s failed", self.job_id)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)


def _error_for(exc: BaseException) -> tuple[str, str]:
    import torch

    from gisp.errors import GispError

    if isinstance(exc, GispError):
        return exc.code, exc.message
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" writing {Path(exc.filename).name}" if exc.filename else ""
        return "disk_full", f"no space left on the artifact store (GISP_DATA_DIR){where}: {exc.strerror}"
    if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower():
        return "out_of_memory", str(exc).splitlines()[0] if str(exc) else "out of memory"
    return "internal_error", f"{type(exc).__name__}: {exc}"


def _deadline(rt: Runtime, started_at: datetime | None) -> float | None:
    """When (on time.monotonic()) the job passes GISP_JOB_TIME_LIMIT, counted from its first start."""
    limit = rt.settings.job_time_limit
    if limit <= 0:
        return None
    ran = (utcnow() - started_at).total_seconds() if started_at is not None else 0.0
    return time.monotonic() + limit - ran


def _claim(
    session: Session, job_id: str, worker_id: str, lease: str, stale_before: datetime, trajectory_file: Path
) -> Job | None:
    """Claim the job for this worker (None: not ours to run), and log its start and every step a
    killed worker left without its event; one transaction, so written again whole if it drops."""
    if not job_repo.claim(session, job_id, worker_id, lease, stale_before):
        job = job_repo.get_any(session, job_id)
        log.info("job %s not claimed (status %s)", job_id, job.status if job else "missing")
        return None
    job = job_repo.get_any(session, job_id)
    assert job is not None
    resume_step = 0
    if trajectory_file.is_file():
        resume_step = int(json.loads(trajectory_file.read_text()).get("completed_steps", 0))
    event_repo.append(
        session,
        job_id,
        "started",
        {"worker_id": worker_id, "attempt": job.attempts, "resumed_from_step": resume_step},
    )
    # a worker killed between writing a step's trajectory and its progress row left that step
    # without its event: record it now (from the trajectory), so the log has every step once
    for step in range(job.step + 1, resume_step + 1):
        event_repo.append(
            session,
            job_id,
            "step",
            {
                "step": step,
                "total_steps": job.total_steps,
                "sparsity": None,
                "loss": None,
                "seconds": None,
                "recovered": True,
            },
        )
    if resume_step > job.step:
        job_repo.heartbeat(session, job_id, lease, step=resume_step)
    return job


def _finish(
    session: Session, rt: Runtime, job_id: str, lease: str, outcome: str, code: str, message: str, seconds: float
) -> bool:
    """Record the job's outcome and its last event (and the webhook's), if the lease is still ours."""
    count = checkpoint_repo.count_for_job(session, job_id)
    if outcome == "failed":
        done = job_repo.finish(session, job_id, lease, "failed", code, message)
        if done:
            event_repo.append(session, job_id, "error", {"code": code, "message": message})
    else:
        done = job_repo.finish(session, job_id, lease, outcome)
        if done:
            event_repo.append(
                session,
                job_id,
                "finished" if outcome == "succeeded" else "cancelled",
                {"seconds": seconds, "checkpoint_count": count},
            )
    if done:
        webhook_events.job_finished(session, rt.settings, job_id)
    return done


def run_job(job_id: str, worker_id: str, rt: Runtime) -> str:
    """Run (or resume) `job_id` on this process's runtime; returns the outcome (`skipped` when
    there was nothing to do)."""
    if SHUTDOWN_REQUESTED.is_set():  # a message taken during warm shutdown: leave the job to the next worker
        enqueue(rt.celery, rt.settings, job_id)
        return "deferred"
    lease = uuid.uuid4().hex
    stale_before = utcnow() - timedelta(seconds=rt.settings.heartbeat_timeout)
    trajectory_file = rt.store.trajectory_path(job_id)
    job = write_retrying(
        rt.sessions, lambda session: _claim(session, job_id, worker_id, lease, stale_before, trajectory_file)
    )
    if job is None:
        return "skipped"
    bind_log_context(tenant_id=job.tenant_id)
    heartbeat = Heartbeat(rt, job_id, lease)
    heartbeat.start()
    started = time.perf_counter()
    observer: JobObserver | None = None
    code = message = ""
    try:
        settings = PruneSettings.from_dict(job.settings, device=rt.settings.device)
        source = model_refs.resolve(job.model, rt.settings.model_root_paths)
        observer = JobObserver(
            rt,
            job_id,
            job.tenant_id,
            lease,
            settings.dtype,
            deadline=_deadline(rt, job.started_at),
            targets=settings.targets,
            seed=settings.seed,
        )
        resume = Trajectory.load(trajectory_file) if trajectory_file.is_file() else None
        data_path, eval_path = job_data_paths(rt, job)
        gisp.run(
            source,
            data_path,
            settings,
            observer=observer,
            resume=resume,
            eval_data=eval_path,
            state_dir=rt.store.job_dir(job_id),  # tyr's ladders persist there for a resume
        )
        outcome = "succeeded"
    except gisp.PruningStopped:
        outcome = observer.stop_reason if observer is not None and observer.stop_reason else "cancelled"
        if outcome == "timed_out":
            outcome, code = "failed", "time_limit"
            limit = rt.settings.job_time_limit
            message = f"the job ran longer than its time limit of {limit:g} s (GISP_JOB_TIME_LIMIT)"
    except BaseException as exc:  # noqa: BLE001  (recorded on the job; the worker keeps serving)
        outcome = "failed"
        code, message = _error_for(exc)
        log.exception("job %s failed: %s", job_id, code)
        if not isinstance(exc, Exception):
            heartbeat.stop()
            raise
    finally:
        heartbeat.stop()
    seconds = time.perf_counter() - started
    if outcome == "lost":
        log.warning("job %s was taken over by another worker; stopping here", job_id)
        return outcome
    if outcome == "interrupted":
        with write_transaction(rt.sessions) as session:
            requeued = job_repo.release(session, job_id, lease)
            if requeued:
                event_repo.append(session, job_id, "queued", {"requeued": True, "reason": "worker shutdown"})
        if requeued:
            enqueue(rt.celery, rt.settings, job_id)
        log.warning("job %s interrupted by shutdown after %.2fs; re-queued to resume", job_id, seconds)
        return outcome
    done = write_retrying(
        rt.sessions, lambda session: _finish(session, rt, job_id, lease, outcome, code, message, seconds)
    )
    if done:  # a finished job is never resumed: what was kept to resume it only costs disk
        gisp.discard_resume_state(rt.store.job_dir(job_id))
    log.info("job %s %s in %.2fs", job_id, outcome, seconds)
    if outcome == "succeeded" and rt.settings.eager_materialize:
        materialize_all(rt, job_id)
    return outcome


def materialize_all(rt: Runtime, job_id: str) -> None:
    with write_transaction(rt.sessions) as session:
        ids = [c.id for c in checkpoint_repo.for_job(session, job_id)]
    for checkpoint_id in ids:
        try:
            materialize_checkpoint(
                rt.sessions,
                rt.store,
                checkpoint_id,
                lambda name: model_refs.resolve(name, rt.settings.model_root_paths),
            )
        except Exception:
            log.exception("eager materialization of %s failed; it will be built on download", checkpoint_id)
