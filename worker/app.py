"""The worker's entry point: `celery -A gisp_service.worker.app worker -Q prune` (embedded:
`--pool solo`; production, docker/entrypoint-worker.sh: `--pool prefork --max-tasks-per-child 1`).

It holds the Celery app, the one task (it carries only a job id) and the signal handlers that
give each process its own runtime and run the reconciler beside the pool. The broker client
(app factory, enqueue, queue depth) is `gisp_service.core.queue`, which the API uses too.
"""

from __future__ import annotations

from celery.signals import (
    setup_logging,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)

from gisp_service.core.logging import bind_log_context, clear_log_context, configure_logging
from gisp_service.core.model_policy import worker_hub_environment
from gisp_service.core.queue import TASK_NAME, make_celery
from gisp_service.core.runtime import Runtime
from gisp_service.core.settings import get_settings
from gisp_service.worker.process import SHUTDOWN_REQUESTED, ProcessRuntime, worker_id
from gisp_service.worker.reconciler import ReconcilerThread

worker_hub_environment(get_settings())  # before anything imports huggingface_hub
app = make_celery(get_settings())
# The runtime of the tasks of this process: with --pool solo, the worker's own process; with
# prefork, each child (built after its fork, never the parent's).
task_runtime = ProcessRuntime(lambda: Runtime.build(get_settings(), celery=app))


@app.task(name=TASK_NAME)
def prune(job_id: str) -> str:
    # imported here, not at the top: it loads torch, and `celery -A ... inspect ping` (the image's
    # healthcheck) loads this module too; `_warm_up` imports it once in the worker
    from gisp_service.worker.runner import run_job

    clear_log_context()  # nothing of the previous task rides on this one's lines
    bind_log_context(job_id=job_id, worker_id=worker_id())
    try:
        return run_job(job_id, worker_id(), task_runtime.get())
    finally:
        clear_log_context()


_reconciler: ReconcilerThread | None = None


@setup_logging.connect
def _configure_logging(loglevel=None, **_kwargs) -> None:
    """Connected, so Celery leaves the root logger to `configure_logging` (children inherit it)."""
    configure_logging(loglevel or get_settings().log_level, get_settings().log_format)


@worker_init.connect
def _warm_up(sender=None, **_kwargs) -> None:
    """Import the engine (torch, transformers) before taking messages, so that a delivered job is
    claimed at once rather than after seconds of imports (prefork children inherit the imports)."""
    import torch

    import gisp_service.worker.runner  # noqa: F401

    threads = get_settings().torch_threads
    if threads > 0:  # on a shared CPU, oversubscribed torch threads make steps many times slower
        torch.set_num_threads(threads)


@worker_process_init.connect
def _own_connections(sender=None, **_kwargs) -> None:
    """A prefork child: its own database pool, not the parent's."""
    task_runtime.after_fork()


@worker_process_shutdown.connect
def _close_child(sender=None, **_kwargs) -> None:
    task_runtime.close()


@worker_ready.connect
def _start_reconciler(sender=None, **_kwargs) -> None:
    global _reconciler
    _reconciler = ReconcilerThread(get_settings(), app)
    _reconciler.start()


@worker_shutting_down.connect
def _flag_shutdown(sender=None, **_kwargs) -> None:
    SHUTDOWN_REQUESTED.set()


@worker_shutdown.connect
def _stop(sender=None, **_kwargs) -> None:
    if _reconciler is not None:
        _reconciler.stop()
    task_runtime.close()
