"""Re-queuing jobs whose worker died. A job counts as dead when it is `running` and its heartbeat
is older than GISP_HEARTBEAT_TIMEOUT (the worker heartbeats every step and from a thread during
long steps), or `queued` ten times that long while the queue is empty (its message was lost). Requeueing
is one conditional UPDATE, so of several reconcilers only one re-sends a job; a late duplicate
message is harmless because a worker must claim the job in the database before running it."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from celery import Celery
from sqlalchemy.orm import Session

import gisp
from gisp_service.api.webhooks import events as webhook_events
from gisp_service.core.logging import bind_log_context, bound_log_context
from gisp_service.core.queue import enqueue, queue_depth
from gisp_service.core.runtime import Runtime
from gisp_service.core.settings import Settings
from gisp_service.db.models import utcnow
from gisp_service.db.repos import events as event_repo
from gisp_service.db.repos import jobs as job_repo
from gisp_service.db.session import write_transaction
from gisp_service.worker.process import worker_id

log = logging.getLogger("gisp.worker")


QUEUED_GRACE = 10  # a queued job is presumed lost after this many heartbeat timeouts with an empty queue


def reconcile(rt: Runtime) -> list[str]:
    """One pass; returns the ids of the jobs re-queued."""
    now = utcnow()
    stale_before = now - timedelta(seconds=rt.settings.heartbeat_timeout)
    lost_before = now - timedelta(seconds=rt.settings.heartbeat_timeout * QUEUED_GRACE)
    with write_transaction(rt.sessions) as session:
        candidates = [
            (j.id, j.status, j.cancel_requested)
            for j in job_repo.stale(session, stale_before)
            if j.status == "running" or j.heartbeat_at < lost_before
        ]
    if not candidates:
        return []
    try:
        queue_empty = queue_depth(rt.celery, rt.settings.queue) == 0
    except Exception:
        log.warning("broker unreachable; reconciling running jobs only")
        queue_empty = False
    requeued = []
    for job_id, status, cancel_requested in candidates:
        if status == "queued" and not queue_empty:
            continue  # its message is most likely still waiting behind others
        # (a message a worker has taken but not yet claimed is not in the queue either: hence the
        # long grace for queued jobs; a duplicate would be harmless, the claim decides)
        with write_transaction(rt.sessions) as session:
            if cancel_requested:
                if job_repo.finish(session, job_id, None, "cancelled"):
                    event_repo.append(session, job_id, "cancelled", {"reason": "cancelled while its worker was gone"})
                    webhook_events.job_finished(session, rt.settings, job_id)
                    gisp.discard_resume_state(rt.store.job_dir(job_id))  # never resumed: only costs disk
                continue
            if status == "running":
                lost, step = event_repo.starts_without_progress(session, job_id)
                if lost >= rt.settings.max_attempts:
                    _fail_lost(session, rt, job_id, lost, step, stale_before)
                    continue
            if not job_repo.mark_requeued(session, job_id, stale_before):
                continue
            event_repo.append(session, job_id, "queued", {"requeued": True, "previous_status": status})
        enqueue(rt.celery, rt.settings, job_id)
        requeued.append(job_id)
        with bound_log_context(job_id=job_id):
            log.warning("re-queued job %s (was %s with a stale heartbeat)", job_id, status)
    return requeued


def _fail_lost(session: Session, rt: Runtime, job_id: str, lost: int, step: int, stale_before: datetime) -> None:
    message = (
        f"its worker was lost {lost} times in a row during step {step + 1}, with no step completed in "
        f"between (GISP_MAX_ATTEMPTS={rt.settings.max_attempts}); it is not retried again"
    )
    if job_repo.fail_stale(session, job_id, stale_before, "worker_lost", message):
        event_repo.append(session, job_id, "error", {"code": "worker_lost", "message": message, "attempts": lost})
        webhook_events.job_finished(session, rt.settings, job_id)
        gisp.discard_resume_state(rt.store.job_dir(job_id))
        with bound_log_context(job_id=job_id):
            log.error("job %s failed: %s", job_id, message)


class ReconcilerThread(threading.Thread):
    """Runs `reconcile` at worker start and then every GISP_RECONCILE_INTERVAL seconds, on a
    runtime of its own: its connections are never those of a task (in this process or, after a
    fork, in a child)."""

    def __init__(self, settings: Settings, celery_app: Celery) -> None:
        super().__init__(daemon=True, name="gisp-reconciler")
        self.settings, self.celery_app = settings, celery_app
        self.stopped = threading.Event()

    def run(self) -> None:
        bind_log_context(worker_id=worker_id())
        rt = Runtime.build(self.settings, celery=self.celery_app)
        try:
            while True:
                try:
                    reconcile(rt)
                except Exception:
                    log.exception("reconcile pass failed")
                if self.stopped.wait(self.settings.reconcile_interval):
                    return
        finally:
            rt.close()

    def stop(self) -> None:
        self.stopped.set()
