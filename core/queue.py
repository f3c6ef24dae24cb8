"""The broker client: the Celery app of a process, sending a job's message, reading the queue
depth. The API, the worker and the reconciler import this; only the worker imports
`gisp_service.worker.app` (the task and its signal handlers).

Late acks, prefetch 1 and reject-on-worker-lost make a message outlive a crashed worker where
the broker supports redelivery; the database decides whether a delivered job still needs work,
and the reconciler re-queues jobs whose worker died where the broker does not redeliver.
"""

from __future__ import annotations

from celery import Celery

from gisp_service.core.settings import Settings

TASK_NAME = "gisp.prune"


def _transport_options(broker: str) -> dict:
    if broker.startswith("sqla+sqlite"):
        # the SQLAlchemy transport hands its options to create_engine: wait for SQLite's lock
        # (the API sends while the worker polls) instead of failing after the default 5 s
        return {"connect_args": {"timeout": 30}}
    if broker.startswith("sqla+"):
        return {}
    return {"polling_interval": 0.5}


def make_celery(settings: Settings) -> Celery:
    """A Celery app for `settings`; building it connects to nothing."""
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
    """Send the job's message (it carries only the id; the database holds the rest)."""
    celery_app.send_task(TASK_NAME, args=[job_id], queue=settings.queue)


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
