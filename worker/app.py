"""The Celery app: `celery -A gisp_service.worker.app worker -Q prune --concurrency 1 --pool solo`.

Late acks, prefetch 1 and reject-on-worker-lost make a message outlive a crashed worker where
the broker supports redelivery; the database decides whether a delivered job still needs work,
and the reconciler re-queues jobs whose worker died where the broker does not redeliver.
"""

from __future__ import annotations

import logging
import os
import socket

from celery import Celery
from celery.signals import worker_init, worker_ready, worker_shutdown, worker_shutting_down

from gisp_service.core.settings import Settings, get_settings

TASK_NAME = "gisp.prune"
log = logging.getLogger("gisp.worker")


def _transport_options(broker: str) -> dict:
    if broker.startswith("sqla+sqlite"):
        # the SQLAlchemy transport hands its options to create_engine: wait for SQLite's lock
        # (the API sends while the worker polls) instead of failing after the default 5 s
        return {"connect_args": {"timeout": 30}}
    if broker.startswith("sqla+"):
        return {}
    return {"polling_interval": 0.5}


def make_celery(settings: Settings) -> Celery:
    # the webhook delivery task lives with its domain; `include` registers it in every worker
    app = Celery("gisp", broker=settings.broker, set_as_current=False, include=["gisp_service.api.webhooks.delivery"])
    app.conf.update(
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_default_queue=settings.queue,
        task_routes={TASK_NAME: {"queue": settings.queue}},
        broker_connection_retry_on_startup=True,
        broker_transport_options=_transport_options(settings.broker),
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return app


def enqueue(celery_app: Celery, settings: Settings, job_id: str) -> None:
    celery_app.send_task(TASK_NAME, args=[job_id], queue=settings.queue)


app = make_celery(get_settings())


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@app.task(name=TASK_NAME, bind=True, acks_late=True)
def prune(self, job_id: str) -> str:
    from gisp_service.worker.runner import run_job

    return run_job(job_id, worker_id())


_reconciler = None


@worker_ready.connect
def _start_reconciler(sender=None, **_kwargs) -> None:
    from gisp_service.worker.reconciler import ReconcilerThread

    global _reconciler
    _reconciler = ReconcilerThread(get_settings(), app)
    _reconciler.start()


@worker_init.connect
def _warm_up(sender=None, **_kwargs) -> None:
    """Import the engine (torch, transformers) before taking messages, so that a delivered job is
    claimed at once rather than after seconds of imports."""
    import torch

    import gisp_service.worker.runner  # noqa: F401

    threads = get_settings().torch_threads
    if threads > 0:  # on a shared CPU, oversubscribed torch threads make steps many times slower
        torch.set_num_threads(threads)


@worker_shutting_down.connect
def _flag_shutdown(sender=None, **_kwargs) -> None:
    from gisp_service.worker.runtime import SHUTTING_DOWN

    SHUTTING_DOWN.set()


@worker_shutdown.connect
def _stop_reconciler(sender=None, **_kwargs) -> None:
    if _reconciler is not None:
        _reconciler.stop()


def queue_depth(celery_app: Celery, queue: str) -> int:
    """Messages waiting in the queue (not those a worker holds); raises when the broker is down."""
    from kombu.exceptions import ChannelError

    with celery_app.connection_for_read() as connection:
        connection.ensure_connection(max_retries=1)
        channel = connection.channel()
        try:
            return int(channel.queue_declare(queue=queue, passive=True).message_count)
        except ChannelError:
            return 0  # never declared: nothing was ever sent
        finally:
            channel.close()
